"""Shared by the benchmark scripts: throwaway workspaces, process measurements, reporting."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKES = ROOT / "tests" / "fakes"
PY = sys.executable
BIN = Path(PY).parent


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.pop("AIRADEV_WORKSPACE", None)
    e["NO_COLOR"] = "1"
    return e


def workspace(toml: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="airadev-bench-"))
    (root / "airadev.toml").write_text(toml)
    return root


def airadev(root: Path, *args: str) -> list[str]:
    return [PY, "-m", "airadev", "--workspace", str(root), *args]


def run_airadev(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(airadev(root, *args), capture_output=True, text=True, env=env(), timeout=timeout)


def state(root: Path) -> dict:
    try:
        return json.loads((root / ".airadev" / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def free_port() -> int:
    """A loopback port nobody listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("benchmark setup timed out")


def status_field(pid: int, field: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM) in bytes; 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU seconds of one process, all its threads, in nanosecond resolution (schedstat);
    /proc/PID/stat counts in 10 ms ticks, too coarse for an idle process."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def pss(pids: list[int]) -> int:
    """The proportional set size of ``pids`` together, in bytes: pages shared between them
    (a forked worker's copy-on-write pages, shared libraries) are counted once, split among
    their sharers, where a sum of RSS would count them once per process. Gone processes
    count 0."""
    import psutil

    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except psutil.Error:
            pass
    return total


def children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def median_wall(argv: list[str], runs: int, cwd: Path | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), cwd=cwd)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def honcho() -> str | None:
    return shutil.which("honcho", path=str(BIN)) or shutil.which("honcho")


def supervisord() -> str | None:
    return shutil.which("supervisord", path=str(BIN)) or shutil.which("supervisord")


def supervisord_config(folder: Path, programs: dict[str, list[str]]) -> Path:
    """A minimal supervisord.conf in ``folder``: each program started once, never restarted,
    stdout and stderr into ``folder/NAME.log`` (no rotation below 1 GB), no control socket."""
    import shlex

    parts = [
        f"""[supervisord]
nodaemon = true
logfile = {folder / "supervisord.log"}
pidfile = {folder / "supervisord.pid"}
childlogdir = {folder}
loglevel = warn
"""
    ]
    for name, argv in programs.items():
        parts.append(f"""[program:{name}]
command = {shlex.join(argv)}
autorestart = false
startsecs = 0
redirect_stderr = true
stdout_logfile = {folder / (name + ".log")}
stdout_logfile_maxbytes = 1GB
""")
    conf = folder / "supervisord.conf"
    conf.write_text("\n".join(parts))
    return conf


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    """``median (min–max)`` of several runs."""
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def report(title: str, rows: list[tuple[str, str, str]], verdicts: list[tuple[str, bool]]) -> bool:
    """Print a small table (what, airadev, peer) and the target checks; True if all met."""
    print(f"\n== {title} ==")
    width = max(len(r[0]) for r in rows)
    ours_w = max(16, *(len(r[1]) for r in rows))
    peer_w = max(16, *(len(r[2]) for r in rows))
    print(f"{'':{width}}  {'airadev':>{ours_w}}  {'peer':>{peer_w}}")
    for what, ours, peer in rows:
        print(f"{what:{width}}  {ours:>{ours_w}}  {peer:>{peer_w}}")
    ok = True
    for text, met in verdicts:
        print(f"  target: {text}: {'met' if met else 'NOT MET'}")
        ok &= met
    return ok


def mb(value: float) -> str:
    return f"{value / 1e6:.1f} MB"
