"""The supervisor: dependency graph, lifecycle, runtimes, probes, logs, state and control."""
