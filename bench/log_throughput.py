"""Log throughput: one service prints N lines of 100 bytes (default 1,000,000); airadev runs
in the foreground with its console redirected to a file, writing its log file too.

Target: at least 400,000 lines/s, every line present once and in order (console and log
file), airadev's peak RSS at most 60 MB. Peer: honcho, same service, console to a file.

usage: python bench/log_throughput.py [--lines N] [--no-peer]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

from common import FAKES, PY, airadev, env, honcho, mb, report, state, status_field, wait_for, workspace

LINE = re.compile(rb"flood (\d{10}) \.{82}\n")


def check_lines(data: bytes, count: int, prefix: bytes) -> bool:
    """Every line of the flood once and in order (prefix per line, nothing else in between)."""
    body = [line for line in data.splitlines(keepends=True) if line.startswith(prefix)]
    if len(body) != count:
        print(f"  {len(body)} flood lines found, {count} expected")
        return False
    expected = b"flood %010d " + b"." * 82 + b"\n"
    for i, line in enumerate(body):
        if line[len(prefix):] != expected % i:
            print(f"  line {i} wrong: {line[:60]!r}")
            return False
    return True


def generator_alone(count: int) -> float:
    start = time.perf_counter()
    subprocess.run([PY, str(FAKES / "flood.py"), str(count)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run_airadev(count: int) -> tuple[float, int, bool]:
    root = workspace(f"""
[logs]
max_size = "1GB"
[services.flood]
command = ["{PY}", "{FAKES / 'flood.py'}", "{count}"]
restart = "no"
""")
    console = root / "console.txt"
    with open(console, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(airadev(root, "up"), stdout=out, stderr=subprocess.STDOUT, env=env())
        wait_for(lambda: state(root).get("services", {}).get("flood", {}).get("state") == "completed", 600, 0.01)
        elapsed = time.perf_counter() - start
        peak = status_field(proc.pid, "VmHWM")
        proc.terminate()
        proc.wait(30)
    ok_console = check_lines(console.read_bytes(), count, b"flood   | ")
    stamped = (root / ".airadev" / "logs" / "flood.log").read_bytes()
    unstamped = b"".join(line[25:] for line in stamped.splitlines(keepends=True))
    ok_file = check_lines(unstamped, count, b"")
    return elapsed, peak, ok_console and ok_file


def run_honcho(count: int) -> tuple[float, int, bool]:
    exe = honcho()
    if exe is None:
        return 0.0, 0, False
    folder = Path(tempfile.mkdtemp(prefix="honcho-bench-"))
    (folder / "Procfile").write_text(f"flood: {PY} {FAKES / 'flood.py'} {count}\n")
    console = folder / "console.txt"
    with open(console, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([exe, "start"], cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env())
        peak = 0
        while proc.poll() is None:
            peak = max(peak, status_field(proc.pid, "VmHWM") + sum(
                status_field(c, "VmHWM") for c in _honcho_workers(proc.pid)))
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
    data = console.read_bytes()
    found = len(re.findall(rb"flood \d{10} ", data))
    return elapsed, peak, found == count


def _honcho_workers(pid: int) -> list[int]:
    from common import children

    return [c for c in children(pid) if "honcho" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")
            or Path(f"/proc/{c}/comm").read_text().startswith("python")]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    n = args.lines
    gen = generator_alone(n)
    ours, peak, ok = run_airadev(n)
    peer = run_honcho(n) if not args.no_peer else (0.0, 0, False)
    rate = n / ours
    rows = [
        ("generator alone", f"{gen:.2f} s", ""),
        ("wall time", f"{ours:.2f} s", f"{peer[0]:.2f} s" if peer[0] else "-"),
        ("lines/s", f"{rate:,.0f}", f"{n / peer[0]:,.0f}" if peer[0] else "-"),
        ("peak RSS", mb(peak), mb(peer[1]) if peer[1] else "-"),
        ("all lines once, in order", str(ok), str(peer[2]) if peer[0] else "-"),
    ]
    if peer[0]:
        rows.append(("speed-up over honcho", f"{peer[0] / ours:.1f}x", ""))
    return 0 if report(f"log throughput, {n:,} lines of 100 bytes", rows, [
        ("at least 400,000 lines/s", rate >= 400_000),
        ("every line present once and in order", ok),
        ("peak RSS at most 60 MB", peak <= 60e6),
    ]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
