"""Log throughput: one service prints N lines of 100 bytes (default 1,000,000) as fast as it
can; airadev runs in the foreground with its console redirected to a file, and writes its log
file too. Timed from starting `airadev up` to the last line stored (the service's state is
`completed` only once its pipe is drained into the log file).

Peers in the same run, interleaved with airadev's runs: honcho (the same service, console to a
file; timed until it exits) and supervisord (the service's output to its log file; timed until
the last line is in that file). For reference, the generator alone (to /dev/null) and the
generator through a plain pipe into a file (`flood.py N | cat > FILE`).

Memory: airadev's peak RSS (the supervisor's VmHWM), and for every side the peak PSS of its own
processes together (airadev: supervisor and watchdog; honcho: its manager and workers, which
share pages after the fork; supervisord: its one process), sampled every 50 ms.

Targets: at least 1,000,000 lines/s (median of the runs), every line present once and in order
(console and log file), the supervisor's peak RSS at most 60 MB.

usage: python bench/log_throughput.py [--runs 3] [--lines N] [--no-peer]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import (
    FAKES,
    PY,
    airadev,
    children,
    env,
    honcho,
    load,
    mb,
    pss,
    report,
    spread,
    state,
    status_field,
    supervisord,
    supervisord_config,
    workspace,
)

LINE = b"flood %010d " + b"." * 82 + b"\n"


class Run:
    """One side's figures from one run."""

    def __init__(self, elapsed: float, ok: bool, peak_pss: int, peak_rss: int = 0, relay: float = 0.0) -> None:
        self.elapsed = elapsed  # start → last line stored
        self.ok = ok
        self.peak_pss = peak_pss
        self.peak_rss = peak_rss
        self.relay = relay  # first line stored → last line stored


def check_lines(data: bytes, count: int, prefix: bytes) -> bool:
    """Every line of the flood once and in order (prefix per line, nothing else in between)."""
    body = [line for line in data.splitlines(keepends=True) if line.startswith(prefix)]
    if len(body) != count:
        print(f"  {len(body)} flood lines found, {count} expected")
        return False
    for i, line in enumerate(body):
        if line[len(prefix) :] != LINE % i:
            print(f"  line {i} wrong: {line[:60]!r}")
            return False
    return True


def generator_alone(count: int) -> float:
    start = time.perf_counter()
    subprocess.run([PY, str(FAKES / "flood.py"), str(count)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def plain_pipe(count: int) -> float:
    """The generator through a pipe into a file: what any relay is bounded by."""
    out = Path(tempfile.mkdtemp(prefix="pipe-bench-")) / "out.txt"
    start = time.perf_counter()
    subprocess.run(f"'{PY}' '{FAKES / 'flood.py'}' {count} | cat > '{out}'", shell=True, check=True)
    took = time.perf_counter() - start
    out.unlink()
    return took


def _watch(done, pids, first_file: Path | None, timeout: float = 900) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """Poll until ``done()``; (when done, when ``first_file`` first held a byte, peak PSS of
    ``pids()``), in perf_counter time."""
    deadline = time.perf_counter() + timeout
    first = 0.0
    peak = 0
    tick = 0
    while True:
        now = time.perf_counter()
        if done():
            return now, first or now, peak
        if first_file is not None and not first:
            try:
                if first_file.stat().st_size:
                    first = now
            except FileNotFoundError:
                pass
        if tick % 5 == 0:
            peak = max(peak, pss(pids()))
        tick += 1
        if now > deadline:
            raise TimeoutError("benchmark run timed out")
        time.sleep(0.01)


def run_airadev(count: int) -> Run:
    root = workspace(f"""
[logs]
max_size = "1GB"
[services.flood]
command = ["{PY}", "{FAKES / "flood.py"}", "{count}"]
restart = "no"
""")
    console = root / "console.txt"
    log = root / ".airadev" / "logs" / "flood.log"
    with open(console, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(airadev(root, "up"), stdout=out, stderr=subprocess.STDOUT, env=env())

        def own() -> list[int]:
            reaper = state(root).get("reaper_pid")
            return [proc.pid, reaper] if reaper else [proc.pid]

        end, first, peak = _watch(
            lambda: state(root).get("services", {}).get("flood", {}).get("state") == "completed", own, log
        )
        peak = max(peak, pss(own()))
        peak_rss = status_field(proc.pid, "VmHWM")
        proc.terminate()
        proc.wait(30)
    ok_console = check_lines(console.read_bytes(), count, b"flood   | ")
    stamped = log.read_bytes()
    unstamped = b"".join(line[25:] for line in stamped.splitlines(keepends=True))
    ok_file = check_lines(unstamped, count, b"")
    return Run(end - start, ok_console and ok_file, peak, peak_rss, end - first)


def run_honcho(count: int) -> Run:
    exe = honcho()
    assert exe, "honcho is not installed: pip install -e '.[bench]'"
    folder = Path(tempfile.mkdtemp(prefix="honcho-bench-"))
    (folder / "Procfile").write_text(f"flood: {PY} {FAKES / 'flood.py'} {count}\n")
    console = folder / "console.txt"
    with open(console, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([exe, "start"], cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env())
        end, _, peak = _watch(
            lambda: proc.poll() is not None,
            lambda: [proc.pid, *(c for c in children(proc.pid) if not _is_flood(c))],
            None,
        )
    data = console.read_bytes()
    found = re.findall(rb"flood (\d{10}) ", data)
    ok = len(found) == count and all(int(n) == i for i, n in enumerate(found))
    return Run(end - start, ok, peak)


def run_supervisord(count: int) -> Run:
    exe = supervisord()
    assert exe, "supervisord is not installed: pip install -e '.[bench]'"
    folder = Path(tempfile.mkdtemp(prefix="supervisord-bench-"))
    conf = supervisord_config(folder, {"flood": [PY, str(FAKES / "flood.py"), str(count)]})
    log = folder / "flood.log"
    size = count * len(LINE % 0)

    def stored() -> bool:
        try:
            return log.stat().st_size >= size
        except FileNotFoundError:
            return False

    start = time.perf_counter()
    proc = subprocess.Popen(
        [exe, "-n", "-c", str(conf)], cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env()
    )
    try:
        end, first, peak = _watch(stored, lambda: [proc.pid, *(c for c in children(proc.pid) if not _is_flood(c))], log)
    finally:
        proc.terminate()
        proc.wait(30)
    return Run(end - start, check_lines(log.read_bytes(), count, b""), peak, relay=end - first)


def _is_flood(pid: int) -> bool:
    try:
        return b"flood.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    n = args.lines
    print(f"before: {load()}")
    sides = (
        {"airadev": run_airadev}
        if args.no_peer
        else {"airadev": run_airadev, "honcho": run_honcho, "supervisord": run_supervisord}
    )
    results: dict[str, list[Run]] = {name: [] for name in sides}
    gen, pipe = [], []
    for _ in range(args.runs):  # interleaved: a drift in the machine touches every side
        gen.append(generator_alone(n))
        pipe.append(plain_pipe(n))
        for name, run in sides.items():
            results[name].append(run(n))
    print(f"after: {load()}")

    def col(name: str, figure, fmt) -> str:  # type: ignore[no-untyped-def]
        return spread([figure(r) for r in results[name]], fmt) if name in results else "-"

    def peers(figure, fmt) -> str:  # type: ignore[no-untyped-def]
        return "; ".join(f"{name} {col(name, figure, fmt)}" for name in results if name != "airadev") or "-"

    def rate(v: float) -> str:

        return f"{v:,.0f}"

    def secs(v: float) -> str:
        return f"{v:.2f} s"

    ours = results["airadev"]
    rows = [
        (
            "lines/s, start → last line stored",
            col("airadev", lambda r: n / r.elapsed, rate),
            peers(lambda r: n / r.elapsed, rate),
        ),
        ("wall time", col("airadev", lambda r: r.elapsed, secs), peers(lambda r: r.elapsed, secs)),
        (
            "lines/s, first → last line stored",
            col("airadev", lambda r: n / r.relay, rate),
            "; ".join(f"{name} {col(name, lambda r: n / r.relay, rate)}" for name in results if name == "supervisord")
            or "-",
        ),
        ("peak RSS (the supervisor)", col("airadev", lambda r: r.peak_rss, mb), ""),
        (
            "peak PSS (own processes together)",
            col("airadev", lambda r: r.peak_pss, mb),
            peers(lambda r: r.peak_pss, mb),
        ),
        (
            "all lines once, in order (every run)",
            str(all(r.ok for r in ours)),
            "; ".join(f"{name} {all(r.ok for r in results[name])}" for name in results if name != "airadev") or "-",
        ),
        ("generator alone, to /dev/null", spread(gen, secs), spread([n / g for g in gen], rate) + " lines/s"),
        ("generator | cat > file", spread(pipe, secs), spread([n / p for p in pipe], rate) + " lines/s"),
    ]
    median_rate = statistics.median(n / r.elapsed for r in ours)
    return (
        0
        if report(
            f"log throughput, {n:,} lines of 100 bytes, median (min–max) of {args.runs} runs",
            rows,
            [
                (f"at least 1,000,000 lines/s, median ({median_rate:,.0f})", median_rate >= 1_000_000),
                ("every line present once and in order, every run", all(r.ok for r in ours)),
                ("peak RSS at most 60 MB, every run", max(r.peak_rss for r in ours) <= 60e6),
            ],
        )
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
