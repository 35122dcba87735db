"""Start-up overhead: five services with known start delays and a dependency chain.

    a (0.30 s) → b (0.20 s) → c (0.25 s) ─┐
    d (0.40 s) ───────────────────────────┴→ e (0.10 s)      critical path a-b-c-e: 0.85 s

Each service sleeps its delay, then says "ready" (a log probe) and stays up; so everything
beyond 0.85 s is airadev's own overhead: spawning, reading output, releasing dependents.
Target: time to all-ready minus the critical path at most 150 ms, measured from the start of
the supervisor (the summary's figure). Also shown, as a user would time it: from typing
`airadev up -d` to its return (Python start-up, imports, preflight and the background
supervisor's own start-up included), and the same stack with TCP probes on Python listeners
(each service then also pays its interpreter's start-up).

No peer: honcho has neither dependencies nor health checks.

usage: python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import time

from common import FAKES, PY, ROOT, report, run_airadev, state, workspace

DELAYS = {"a": 0.30, "b": 0.20, "c": 0.25, "d": 0.40, "e": 0.10}
DEPENDS = {"b": ["a"], "c": ["b"], "e": ["c", "d"]}
CRITICAL = 0.30 + 0.20 + 0.25 + 0.10


def config(kind: str) -> str:
    import socket

    parts = []
    for name, delay in DELAYS.items():
        deps = ", ".join(f'{d} = "healthy"' for d in DEPENDS.get(name, []))
        if kind == "log":
            cmd = f'command = "sleep {delay}; echo ready; exec sleep 1000"\nhealth = {{ log = "ready" }}'
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cmd = (
                f'command = ["{PY}", "{FAKES / "slow_starter.py"}", "{port}", "{delay}"]\n'
                f"port = {port}\nhealth = {{ tcp = true }}"
            )
        parts.append(f"[services.{name}]\n{cmd}\ndepends_on = {{ {deps} }}\n")
    return "\n".join(parts)


def once(kind: str) -> tuple[float, float]:
    root = workspace(config(kind))
    start = time.perf_counter()
    result = run_airadev(root, "up", "--detach")
    wall = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    summary = state(root)["summary"]
    assert summary["critical_path"] == (["a", "b", "c", "e"]), summary
    run_airadev(root, "down")
    return summary["total"], wall


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "airadev"), quiet=1)
    log = [once("log") for _ in range(args.runs)]
    tcp = [once("tcp") for _ in range(args.runs)]
    supervisor = statistics.median(t for t, _ in log) - CRITICAL
    command = statistics.median(w for _, w in log) - CRITICAL
    tcp_supervisor = statistics.median(t for t, _ in tcp) - CRITICAL
    rows = [
        ("critical path of the delays", f"{CRITICAL * 1000:.0f} ms", ""),
        ("overhead, from supervisor start", f"{supervisor * 1000:.0f} ms", ""),
        ("overhead, from typing `up -d`", f"{command * 1000:.0f} ms", ""),
        ("overhead with TCP probes (sup.)", f"{tcp_supervisor * 1000:.0f} ms", ""),
    ]
    return (
        0
        if report(
            f"start-up: 5 services, dependency chain, median of {args.runs}",
            rows,
            [
                ("all-ready minus critical path at most 150 ms", supervisor <= 0.150),
            ],
        )
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
