"""How the process runtime reads a service's output: a steady trickle is gathered into fewer
chunks (one wake-up of the supervisor per pause, not per line), a line after a quiet spell is
read on its own, a flood is read whole, a fast stream of small writes too, and nothing is lost
or reordered either way. (That pausing never slows a fast writer is a speed, measured by hand
in the commit that made it, not asserted here.)"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from airadev.model import Service
from airadev import reaper
from airadev.runtimes.process import ProcessRuntime

WRITER = r"""
import os, sys, time
count, gap, size, batch = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lines = []
for i in range(count):
    lines.append(b"line %06d %s\n" % (i, b"." * size))
    if len(lines) == batch:
        os.write(1, b"".join(lines))
        lines.clear()
    if gap:
        time.sleep(gap)
os.write(1, b"".join(lines))
"""


def _read_all(tmp_path: Path, *args: str) -> list[bytes]:
    """The chunks the runtime delivered for one run of WRITER, until it exited."""
    chunks: list[bytes] = []

    async def main() -> None:
        service = Service(name="w", command=(sys.executable, "-c", WRITER, *args), cwd=tmp_path)
        env = {**os.environ, reaper.INSTANCE_VAR: "w.1"}
        instance = ProcessRuntime("test-marker").start(service, env, chunks.append)
        assert await asyncio.wait_for(instance.exited, 60) == 0

    asyncio.run(main())
    return chunks


def _expected(count: int, size: int) -> bytes:
    return b"".join(b"line %06d %s\n" % (i, b"." * size) for i in range(count))


def test_a_steady_trickle_is_gathered_and_complete(tmp_path: Path) -> None:
    chunks = _read_all(tmp_path, "60", "0.01", "60", "1")  # 100 lines a second, one write each
    assert b"".join(chunks) == _expected(60, 60)
    # One read per line would be 60 chunks; pausing 100 ms at a time gathers about 10 lines each.
    assert len(chunks) <= 30, len(chunks)
    assert max(chunk.count(b"\n") for chunk in chunks) >= 3


def test_lines_after_quiet_spells_are_read_one_by_one(tmp_path: Path) -> None:
    chunks = _read_all(tmp_path, "6", "0.2", "10", "1")
    assert b"".join(chunks) == _expected(6, 10)
    assert len(chunks) == 6


def test_a_flood_is_read_whole_and_in_order(tmp_path: Path) -> None:
    chunks = _read_all(tmp_path, "200000", "0", "90", "1000")  # 20 MB in 100 kB writes, as fast as it goes
    assert b"".join(chunks) == _expected(200_000, 90)
    assert max(len(chunk) for chunk in chunks) <= 64 * 1024


def test_a_fast_stream_of_small_writes_is_complete_and_in_order(tmp_path: Path) -> None:
    # One write per line, as fast as the writer goes: reads come small and quick, and may be
    # taken for a trickle for a moment (pausing, then back to reading as it comes).
    chunks = _read_all(tmp_path, "100000", "0", "90", "1")
    assert b"".join(chunks) == _expected(100_000, 90)
