"""`airadev dash`'s costs, measured in tmux windows of 80×24 as a person would see them.

- start: from starting `airadev dash` to the services' rows on the screen (tmux capture-pane,
  every 10 ms). Floor in the same runs: a bare textual app (a table, a log, a footer) to its
  first rows, which is what the library costs anyone.
- idle: five idle services (a TCP probe each, as bench/idle.py runs them) and the dashboard
  attached for a window: the dashboard's CPU, and the supervisor's and watchdog's CPU with and
  without it (interleaved windows). Peer: `watch -n 2 airadev status`, what a developer runs
  without a dashboard (its CPU with its children's).
- flood: a service prints 1,000,000 lines of 100 bytes as fast as it can while the dashboard
  shows all services. Measured: how long a key takes to show its effect during the flood (`/`
  opens the search box), the rate the title shows, and how long after the last line reached the
  log file the pane shows it (it catches up). Peer: `airadev logs -f` in the same kind of
  window, the plain stream, to the same last line.

Targets (issue 17): dashboard ≤ 1 % of a core idle and the supervisor's idle CPU unmoved; start
≤ 1 s; the flood does not freeze it. Medians and min–max over the runs.

usage: python bench/dash.py [--runs 5] [--seconds 30]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import FAKES, PY, airadev, cpu_seconds, env, free_port, load, report, run_airadev, spread, state, workspace

N = 5
LAST = "flood 0000999999"


class Window:
    """A program in a tmux window of its own (80×24)."""

    def __init__(self, argv: list[str], extra: dict[str, str] | None = None) -> None:
        self.socket = Path(tempfile.mkdtemp(prefix="bench-tmux-")) / "s"
        self.started = time.perf_counter()
        command = shlex.join(argv) + "; exec sleep 3600"
        self.tmux("new-session", "-d", "-x", "80", "-y", "24", command, environ={**env(), **(extra or {})})

    def tmux(self, *args: str, environ: dict[str, str] | None = None) -> str:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, env=environ, check=True
        ).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def until(self, text: str, timeout: float = 120) -> float:
        """Seconds from now until the window shows ``text``."""
        start = time.perf_counter()
        while text not in self.screen():
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"{text!r} never showed; the window shows:\n{self.screen()}")
            time.sleep(0.01)
        return time.perf_counter() - start

    def program(self) -> int:
        import psutil

        shell = int(self.tmux("display-message", "-p", "#{pane_pid}").strip())
        for _ in range(500):
            kids = psutil.Process(shell).children()
            if kids:
                return kids[0].pid
            time.sleep(0.01)
        raise TimeoutError("no program in the window")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True)
        shutil.rmtree(self.socket.parent, ignore_errors=True)


FLOOR = """
from textual.app import App
from textual.widgets import DataTable, Footer, Log
class Floor(App):
    def compose(self):
        yield DataTable()
        yield Log()
        yield Footer()
    def on_mount(self):
        table = self.query_one(DataTable)
        table.add_columns("service", "state")
        for i in range(5):
            table.add_row(f"s{i}", "healthy")
Floor().run()
"""


def stack(flood: bool = False) -> Path:
    body = []
    for i in range(N):
        port = free_port()
        body.append(f"""
[services.s{i}]
command = ["{PY}", "{FAKES / "slow_starter.py"}", "{port}", "0"]
port = {port}
health = {{ tcp = true }}
""")
    if flood:
        body.append(f"""
[services.flood]
command = ["/bin/sh", "-c", "while [ ! -e go ]; do sleep 0.05; done; exec {PY} {FAKES / "flood.py"} 1000000 --stay"]
""")
    root = workspace("\n".join(body))
    result = run_airadev(root, "up", "--detach")
    assert result.returncode == 0, result.stderr
    return root


def start_times(root: Path, runs: int) -> tuple[list[float], list[float]]:
    ours, floor = [], []
    script = Path(tempfile.mkdtemp(prefix="bench-floor-")) / "floor.py"
    script.write_text(FLOOR)
    for _ in range(runs):
        window = Window(airadev(root, "dash"))
        try:
            window.until("s4 ")
            ours.append(time.perf_counter() - window.started)
        finally:
            window.close()
        window = Window([PY, str(script)])
        try:
            window.until("s4 ")
            floor.append(time.perf_counter() - window.started)
        finally:
            window.close()
    return ours, floor


def idle(root: Path, seconds: float) -> tuple[float, float, float, float]:
    """(dashboard %, supervisor % without it, supervisor % with it, `watch status` %)."""
    st = state(root)
    own = [st["supervisor_pid"], st["reaper_pid"]]

    def used(pids: list[int], window: float) -> float:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(window)
        return (sum(cpu_seconds(p) for p in pids) - before) / window * 100

    without = used(own, seconds)
    window = Window(airadev(root, "dash"))
    try:
        window.until("s4 ")
        time.sleep(3)  # its first look at CPU and memory
        dash = window.program()
        before = sum(cpu_seconds(p) for p in [dash, *own])
        mine = cpu_seconds(dash)
        time.sleep(seconds)
        dash_pct = (cpu_seconds(dash) - mine) / seconds * 100
        with_pct = (sum(cpu_seconds(p) for p in [dash, *own]) - before) / seconds * 100 - dash_pct
    finally:
        window.close()
    watch_pct = float("nan")
    if shutil.which("watch"):
        command = shlex.join(airadev(root, "status"))
        watcher = Window(["watch", "-n", "2", command])
        try:
            watcher.until("s4 ")
            pid = watcher.program()
            before_w = _with_children(pid)
            time.sleep(seconds)
            watch_pct = (_with_children(pid) - before_w) / seconds * 100
        finally:
            watcher.close()
    return dash_pct, without, with_pct, watch_pct


def _with_children(pid: int) -> float:
    """CPU seconds of a process and of its children it has waited for (utime, stime, cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def flood(runs: int) -> tuple[list[float], list[float], list[float], list[float], list[float]]:
    """(key latencies during the flood, catch-up of the dashboard, catch-up of logs -f, rates shown, flood seconds)."""
    keys, ours, peer, rates, durations = [], [], [], [], []
    for _ in range(runs):
        root = stack(flood=True)
        log = root / ".airadev" / "logs" / "flood.log"
        dash = Window(airadev(root, "dash"))
        follower = Window(airadev(root, "logs", "-f", "flood"))
        try:
            dash.until("flood ")
            started = time.perf_counter()
            (root / "go").touch()
            while log.stat().st_size < 20_000_000:  # well into the flood
                time.sleep(0.005)
            dash.tmux("send-keys", "/")
            keys.append(dash.until("show only lines with"))
            seen = ""
            while "lines/s" not in seen and LAST not in log.read_bytes()[-200:].decode(errors="replace"):
                seen = dash.screen()
            if "lines/s" in seen:
                rate = seen.split("lines/s")[0].rsplit("·", 1)[-1].strip().replace(",", "")
                rates.append(float(rate))
            dash.tmux("send-keys", "Escape")
            while LAST.encode() not in log.read_bytes()[-200:]:
                time.sleep(0.005)
            done = time.perf_counter()
            durations.append(done - started)
            shown = first_shown({"dash": dash, "logs": follower}, LAST)
            ours.append(shown["dash"] - done)
            peer.append(shown["logs"] - done)
        finally:
            dash.close()
            follower.close()
            run_airadev(root, "down")
    return keys, ours, peer, rates, durations


def first_shown(windows: dict[str, Window], text: str, timeout: float = 600) -> dict[str, float]:
    """When each window first showed ``text`` (perf_counter), watched together."""
    seen: dict[str, float] = {}
    deadline = time.perf_counter() + timeout
    while len(seen) < len(windows):
        for name, window in windows.items():
            if name not in seen and text in window.screen():
                seen[name] = time.perf_counter()
        if time.perf_counter() > deadline:
            missing = sorted(set(windows) - set(seen))
            raise TimeoutError(f"{text!r} never showed in {missing}:\n{windows[missing[0]].screen()}")
        time.sleep(0.01)
    return seen


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    assert shutil.which("tmux"), "tmux is not installed (scripts/bootstrap installs it)"
    print(f"before: {load()}")
    root = stack()
    try:
        starts, floors = start_times(root, args.runs)
        idles = [idle(root, args.seconds) for _ in range(max(1, args.runs // 2))]
    finally:
        run_airadev(root, "down")
    keys, caught, peer, rates, durations = flood(max(1, args.runs // 2))
    print(f"after: {load()}")

    def ms(v: float) -> str:
        return f"{v * 1000:.0f} ms"

    def s(v: float) -> str:
        return f"{v:.2f} s"

    def pct(v: float) -> str:
        return f"{v:.3f}%"

    column = list(zip(*idles))
    rows = [
        ("start, to the rows on screen", spread(starts, ms), f"bare textual app {spread(floors, ms)}"),
        ("idle: dashboard CPU", spread(list(column[0]), pct), f"watch -n2 status {spread(list(column[3]), pct)}"),
        ("idle: supervisor CPU without it", spread(list(column[1]), pct), "-"),
        ("idle: supervisor CPU with it", spread(list(column[2]), pct), "-"),
        ("flood: a key's effect shown", spread(keys, ms), "-"),
        ("flood: 1M lines written in", spread(durations, s), "-"),
        ("flood: last line shown after", spread(caught, ms), f"logs -f {spread(peer, ms)}"),
        ("flood: rate shown, lines/s", spread(rates, lambda v: f"{v:,.0f}") if rates else "-", "-"),
    ]
    supervisor_moved = statistics.median(column[2]) - statistics.median(column[1])
    met = report(
        f"airadev dash at 80×24: median (min–max); start {args.runs} runs, idle {len(idles)} windows of "
        f"{args.seconds:.0f} s, flood {len(keys)} runs",
        rows,
        [
            ("dashboard idle CPU at most 1% of a core (median)", statistics.median(column[0]) <= 1.0),
            ("supervisor idle CPU unmoved (within 0.01% of a core)", supervisor_moved <= 0.01),
            ("start at most 1 s (median)", statistics.median(starts) <= 1.0),
            ("a key shows its effect during the flood within 1 s (median)", statistics.median(keys) <= 1.0),
        ],
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
