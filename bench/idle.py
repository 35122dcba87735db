"""Idle cost: five idle services for 60 s (after start-up settles).

airadev runs them detached, as a developer leaves a stack running all day, with what a real
config has: a TCP health probe on each (every 10 s once healthy) and a file watcher on two.
Measured: the CPU time and RSS of airadev's own processes (the supervisor and its watchdog).
Target: at most 0.05% of one core and 50 MB. Peer: honcho running the same five services
(its own processes: the manager and one reader per service).

usage: python bench/idle.py [--seconds 60] [--no-peer]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from common import FAKES, PY, children, cpu_seconds, env, honcho, mb, report, run_airadev, state, status_field, workspace

N = 5
WATCHED = int(__import__("os").environ.get("BENCH_WATCHED", "2"))


def sampled(pids: list[int], seconds: float) -> tuple[float, float]:
    """(percent of one core, mean RSS in bytes) of ``pids`` over ``seconds``."""
    before = sum(cpu_seconds(p) for p in pids)
    rss = []
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        rss.append(sum(status_field(p, "VmRSS") for p in pids))
        time.sleep(1)
    elapsed = time.monotonic() - start
    used = sum(cpu_seconds(p) for p in pids) - before
    return used / elapsed * 100, sum(rss) / len(rss)


def run_ours(seconds: float) -> tuple[float, float]:

    ports = [_free_port() for _ in range(N)]
    src = Path(tempfile.mkdtemp(prefix="airadev-src-"))
    body = []
    for i, port in enumerate(ports):
        watch = f"\nwatch = [\"{src}\"]" if i < WATCHED else ""
        body.append(f"""
[services.s{i}]
command = ["{PY}", "{FAKES / 'slow_starter.py'}", "{port}", "0"]
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
    if exe is None:
        return 0.0, 0.0
    folder = Path(tempfile.mkdtemp(prefix="honcho-idle-"))
    lines = [f"s{i}: {PY} {FAKES / 'slow_starter.py'} {_free_port()} 0" for i in range(N)]
    (folder / "Procfile").write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([exe, "start"], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    time.sleep(5)
    services = {p for p in children(proc.pid) if "slow_starter" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")}
    own = [proc.pid] + [p for p in children(proc.pid) if p not in services]
    try:
        return sampled(own, seconds)
    finally:
        proc.terminate()
        proc.wait(20)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    cpu, rss = run_ours(args.seconds)
    peer = run_honcho(args.seconds) if not args.no_peer else (0.0, 0.0)
    rows = [
        ("CPU, % of one core", f"{cpu:.3f}%", f"{peer[0]:.3f}%" if peer[1] else "-"),
        ("RSS (own processes)", mb(rss), mb(peer[1]) if peer[1] else "-"),
    ]
    return 0 if report(f"idle: {N} services for {args.seconds:.0f} s", rows, [
        ("CPU at most 0.05% of a core", cpu <= 0.05),
        ("RSS at most 50 MB", rss <= 50e6),
    ]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
