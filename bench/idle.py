"""Idle cost: five idle services for 60 s (after start-up settles).

airadev runs them detached, as a developer leaves a stack running all day, with what a real
config has: a TCP health probe on each (every 10 s once healthy) and a file watcher on two.
Measured over a fixed window: the CPU time of airadev's own processes (the supervisor and its
watchdog) from /proc/PID/task/*/schedstat (nanoseconds), and their PSS together at the end of
the window (PSS, not RSS: pages two processes share count once). Target: at most 0.05% of one
core and 50 MB. Peers in the same run, interleaved with airadev's runs: honcho running the same
five services (its own processes: the manager and its workers, forked, so sharing pages) and
supervisord (its one process). Medians and min–max over the runs.

usage: python bench/idle.py [--runs 3] [--seconds 30] [--no-peer]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import (
    FAKES,
    PY,
    children,
    cpu_seconds,
    env,
    free_port,
    honcho,
    load,
    mb,
    pss,
    report,
    run_airadev,
    spread,
    state,
    supervisord,
    supervisord_config,
    workspace,
)

N = 5
WATCHED = int(__import__("os").environ.get("BENCH_WATCHED", "2"))


def sampled(pids: list[int], seconds: float) -> tuple[float, float]:
    """(percent of one core, PSS in bytes) of ``pids`` over ``seconds``."""
    before = sum(cpu_seconds(p) for p in pids)
    start = time.monotonic()
    time.sleep(seconds)
    used = sum(cpu_seconds(p) for p in pids) - before
    elapsed = time.monotonic() - start
    return used / elapsed * 100, pss(pids)


def run_ours(seconds: float) -> tuple[float, float]:

    ports = [free_port() for _ in range(N)]
    src = Path(tempfile.mkdtemp(prefix="airadev-src-"))
    body = []
    for i, port in enumerate(ports):
        watch = f'\nwatch = ["{src}"]' if i < WATCHED else ""
        body.append(f"""
[services.s{i}]
command = ["{PY}", "{FAKES / "slow_starter.py"}", "{port}", "0"]
port = {port}
health = {{ tcp = true }}{watch}
""")
    root = workspace("\n".join(body))
    result = run_airadev(root, "up", "--detach")
    assert result.returncode == 0, result.stderr
    st = state(root)
    pids = [st["supervisor_pid"], st["reaper_pid"]]
    time.sleep(5)
    try:
        return sampled(pids, seconds)
    finally:
        run_airadev(root, "down")


def run_honcho(seconds: float) -> tuple[float, float]:
    exe = honcho()
    assert exe, "honcho is not installed: pip install -e '.[bench]'"
    folder = Path(tempfile.mkdtemp(prefix="honcho-idle-"))
    lines = [f"s{i}: {PY} {FAKES / 'slow_starter.py'} {free_port()} 0" for i in range(N)]
    (folder / "Procfile").write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([exe, "start"], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    time.sleep(5)
    services = {
        p for p in children(proc.pid) if "slow_starter" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
    }
    own = [proc.pid] + [p for p in children(proc.pid) if p not in services]
    try:
        return sampled(own, seconds)
    finally:
        proc.terminate()
        proc.wait(20)


def run_supervisord(seconds: float) -> tuple[float, float]:
    exe = supervisord()
    assert exe, "supervisord is not installed: pip install -e '.[bench]'"
    folder = Path(tempfile.mkdtemp(prefix="supervisord-idle-"))
    conf = supervisord_config(
        folder, {f"s{i}": [PY, str(FAKES / "slow_starter.py"), str(free_port()), "0"] for i in range(N)}
    )
    proc = subprocess.Popen(
        [exe, "-n", "-c", str(conf)], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env()
    )
    time.sleep(5)
    services = {
        p for p in children(proc.pid) if "slow_starter" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
    }
    assert len(services) == N, "supervisord did not start the services"
    own = [proc.pid] + [p for p in children(proc.pid) if p not in services]
    try:
        return sampled(own, seconds)
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    print(f"before: {load()}")
    sides = (
        {"airadev": run_ours}
        if args.no_peer
        else {"airadev": run_ours, "honcho": run_honcho, "supervisord": run_supervisord}
    )
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for _ in range(args.runs):  # interleaved: a drift in the machine touches every side
        for name, run in sides.items():
            results[name].append(run(args.seconds))
    print(f"after: {load()}")

    def col(name: str, index: int, fmt) -> str:  # type: ignore[no-untyped-def]
        return spread([r[index] for r in results[name]], fmt)

    def peers(index: int, fmt) -> str:  # type: ignore[no-untyped-def]
        return "; ".join(f"{name} {col(name, index, fmt)}" for name in results if name != "airadev") or "-"

    def pct(v: float) -> str:

        return f"{v:.3f}%"

    rows = [
        ("CPU, % of one core", col("airadev", 0, pct), peers(0, pct)),
        ("PSS (own processes together)", col("airadev", 1, mb), peers(1, mb)),
    ]
    cpu = statistics.median(r[0] for r in results["airadev"])
    memory = statistics.median(r[1] for r in results["airadev"])
    return (
        0
        if report(
            f"idle: {N} services for {args.seconds:.0f} s, median (min–max) of {args.runs} runs",
            rows,
            [
                ("CPU at most 0.05% of a core (median)", cpu <= 0.05),
                ("PSS at most 50 MB (median)", memory <= 50e6),
            ],
        )
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
