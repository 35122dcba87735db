"""The dependency graph: closure, order, cycles and the critical path.

Graphs are plain ``{name: [dependency names]}`` mappings so that this module knows nothing of
the config model and is trivially testable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as ``[a, b, ..., a]``, or None. Deterministic: the first cycle met
    when walking the services in their order."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for dep in graph.get(node, ()):
            if colour.get(dep) == GREY:
                return stack[stack.index(dep) :] + [dep]
            if colour.get(dep) == WHITE:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        colour[node] = BLACK
        return None

    for node in graph:
        if colour[node] == WHITE:
            found = visit(node)
            if found:
                return found
    return None


def closure(graph: Mapping[str, Sequence[str]], roots: Iterable[str]) -> list[str]:
    """``roots`` and everything they depend on, in the graph's own order."""
    wanted: set[str] = set()
    todo = list(roots)
    while todo:
        node = todo.pop()
        if node not in wanted:
            wanted.add(node)
            todo.extend(graph.get(node, ()))
    return [node for node in graph if node in wanted]


def subgraph(graph: Mapping[str, Sequence[str]], names: Iterable[str]) -> dict[str, list[str]]:
    """The graph of ``names`` only, in the graph's own order: a dependency outside it is dropped
    (`up --no-deps`: what is not in the run is not waited for)."""
    keep = set(names)
    return {node: [d for d in deps if d in keep] for node, deps in graph.items() if node in keep}


def dependents(graph: Mapping[str, Sequence[str]], node: str) -> list[str]:
    """The services that depend on ``node`` directly."""
    return [other for other, deps in graph.items() if node in deps]


def start_order(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Waves of services that can start together: each wave depends only on earlier ones."""
    remaining = dict(graph)
    done: set[str] = set()
    waves = []
    while remaining:
        wave = [n for n, deps in remaining.items() if all(d in done or d not in graph for d in deps)]
        if not wave:
            raise ValueError(f"dependency cycle among {sorted(remaining)}")
        waves.append(wave)
        done.update(wave)
        for n in wave:
            del remaining[n]
    return waves


def critical_path(
    graph: Mapping[str, Sequence[str]],
    ready_at: Mapping[str, float],
    started_at: Mapping[str, float],
) -> list[str]:
    """The chain that decided when the last service became ready.

    Walk back from the service that was ready last through the dependency that became ready
    last before it started (the one that held it back).
    """
    if not ready_at:
        return []
    node = max(ready_at, key=lambda n: ready_at[n])
    path = [node]
    while True:
        deps = [d for d in graph.get(node, ()) if d in ready_at and ready_at[d] <= started_at.get(node, 0.0) + 1e-9]
        if not deps:
            break
        node = max(deps, key=lambda d: ready_at[d])
        path.append(node)
    path.reverse()
    return path
