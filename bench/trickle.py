"""Trickle: the cost of relaying a steady, slow stream. One service prints 100 lines of 100
bytes a second, each on its own write (bench/trickle_source.py); airadev runs it detached, as a
developer leaves a stack running, and stores every line in its log file.

Measured over a fixed window after start-up settles: the CPU time of airadev's own processes
(the supervisor and its watchdog), from /proc/PID/task/*/schedstat (nanoseconds), as a
percentage of one core, and their PSS together. Peers in the same run, interleaved with
airadev's: honcho (console to a file; its own processes: the manager and its workers) and
supervisord (the service's output to a log file). Each side's stored lines are counted, so a
side that relayed less is not mistaken for a cheaper one.

Not quite like for like, said plainly: airadev reads a steady trickle every 100 ms (one chunk of
about 10 lines; airadev/supervisor/process.py, _HOLD), so its lines reach the log up to 100 ms
after they were written; honcho and supervisord read each line as it comes.

Target: at most 0.5% of one core at 100 lines/s.

usage: python bench/trickle.py [--runs 3] [--seconds 30] [--rate 100] [--no-peer]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import (
    PY,
    children,
    cpu_seconds,
    env,
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
    wait_for,
    workspace,
)

SOURCE = Path(__file__).resolve().parent / "trickle_source.py"
SETTLE = 3.0


def window(pids: list[int], seconds: float, log: Path) -> tuple[float, int, float]:
    """(percent of one core, PSS in bytes, lines stored per second) of ``pids`` over ``seconds``."""
    size = log.stat().st_size
    before = sum(cpu_seconds(p) for p in pids)
    start = time.monotonic()
    time.sleep(seconds)
    used = sum(cpu_seconds(p) for p in pids) - before
    elapsed = time.monotonic() - start
    lines = (log.read_bytes()[size:]).count(b"trickle ")
    return used / elapsed * 100, pss(pids), lines / elapsed


def run_ours(seconds: float, rate: float) -> tuple[float, int, float]:
    root = workspace(f"""
[services.trickle]
command = ["{PY}", "{SOURCE}", "{rate}"]
restart = "no"
""")
    result = run_airadev(root, "up", "--detach")
    assert result.returncode == 0, result.stderr
    try:
        st = state(root)
        time.sleep(SETTLE)
        return window([st["supervisor_pid"], st["reaper_pid"]], seconds, root / ".airadev" / "logs" / "trickle.log")
    finally:
        run_airadev(root, "down")


def run_honcho(seconds: float, rate: float) -> tuple[float, int, float]:
    exe = honcho()
    assert exe, "honcho is not installed: pip install -e '.[bench]'"
    folder = Path(tempfile.mkdtemp(prefix="honcho-trickle-"))
    (folder / "Procfile").write_text(f"trickle: {PY} {SOURCE} {rate}\n")
    console = folder / "console.txt"
    with open(console, "wb") as out:
        proc = subprocess.Popen([exe, "start"], cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env())
    try:
        time.sleep(SETTLE)
        own = [proc.pid] + [p for p in children(proc.pid) if not _is_source(p)]
        return window(own, seconds, console)
    finally:
        proc.terminate()
        proc.wait(20)


def run_supervisord(seconds: float, rate: float) -> tuple[float, int, float]:
    exe = supervisord()
    assert exe, "supervisord is not installed: pip install -e '.[bench]'"
    folder = Path(tempfile.mkdtemp(prefix="supervisord-trickle-"))
    conf = supervisord_config(folder, {"trickle": [PY, str(SOURCE), str(rate)]})
    proc = subprocess.Popen(
        [exe, "-n", "-c", str(conf)], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env()
    )
    try:
        log = folder / "trickle.log"
        wait_for(log.exists, 10)
        time.sleep(SETTLE)
        own = [proc.pid] + [p for p in children(proc.pid) if not _is_source(p)]
        return window(own, seconds, log)
    finally:
        proc.terminate()
        proc.wait(20)


def _is_source(pid: int) -> bool:
    try:
        return str(SOURCE) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    print(f"before: {load()}")
    sides = (
        {"airadev": run_ours}
        if args.no_peer
        else {"airadev": run_ours, "honcho": run_honcho, "supervisord": run_supervisord}
    )
    results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in sides}
    for _ in range(args.runs):
        for name, run in sides.items():  # interleaved: a drift in the machine touches all sides
            results[name].append(run(args.seconds, args.rate))
    print(f"after: {load()}")

    def col(name: str, index: int, fmt) -> str:  # type: ignore[no-untyped-def]
        return spread([r[index] for r in results[name]], fmt) if name in results else "-"

    def peers(index: int, fmt) -> str:  # type: ignore[no-untyped-def]
        return "; ".join(f"{name} {col(name, index, fmt)}" for name in results if name != "airadev") or "-"

    def pct(v: float) -> str:

        return f"{v:.2f}%"

    rows = [
        ("CPU, % of one core", col("airadev", 0, pct), peers(0, pct)),
        ("PSS (own processes together)", col("airadev", 1, mb), peers(1, mb)),
        ("lines stored per second", col("airadev", 2, lambda v: f"{v:.1f}"), peers(2, lambda v: f"{v:.1f}")),
    ]
    cpu = statistics.median(r[0] for r in results["airadev"])
    stored = min(r[2] for r in results["airadev"])
    return (
        0
        if report(
            f"trickle: {args.rate:.0f} lines/s for {args.seconds:.0f} s, median (min–max) of {args.runs} runs",
            rows,
            [
                ("CPU at most 0.5% of a core (median)", cpu <= 0.5),
                ("every line stored (at least 95% of the rate in every run)", stored >= 0.95 * args.rate),
            ],
        )
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
