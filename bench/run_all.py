"""Runs every benchmark in turn (about 25 minutes with the peers); exit 1 if a target is missed.

usage: python bench/run_all.py [--quick]   (--quick: fewer lines, shorter idle, no peers)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    quick = "--quick" in sys.argv
    runs = [
        ["log_throughput.py"] + (["--lines", "200000", "--no-peer"] if quick else []),
        ["idle.py"] + (["--seconds", "10", "--no-peer"] if quick else []),
        ["trickle.py"] + (["--seconds", "10", "--runs", "1", "--no-peer"] if quick else []),
        ["cli.py"] + (["--runs", "7"] if quick else []),
        ["startup.py"] + (["--runs", "2"] if quick else []),
        ["tunnel.py"] + (["--runs", "2"] if quick else []),
        ["doctor.py"] + (["--runs", "3"] if quick else []),
        ["containers.py"] + (["--runs", "3"] if quick else []),
        ["kb_trigger.py"] + (["--inserts", "10"] if quick else []),
        ["dash.py"] + (["--runs", "2", "--seconds", "10"] if quick else []),
    ]
    failed = []
    for argv in runs:
        code = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]], cwd=HERE).returncode
        if code:
            failed.append(argv[0])
    print("\nall targets met" if not failed else f"\ntargets missed in: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
