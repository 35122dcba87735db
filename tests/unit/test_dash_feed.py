"""What `airadev dash` reads, without textual: log tails that pass over a flood and say how much,
the rate, the pane's lines, and the /proc scan that reads each stranger's environment once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airadev import logstore, reaper
from airadev.dash import feed
from airadev.state import Paths

STAMP = b"2026-12-06T10:00:00.000Z "


def lines(start: int, count: int) -> bytes:
    return b"".join(STAMP + b"line %08d %s\n" % (i, b"." * 60) for i in range(start, start + count))


def test_a_tail_reads_what_is_appended_after_it_was_made_and_holds_a_part_line(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    log.write_bytes(lines(0, 5))
    tail = feed.LogTail(log)
    assert tail.read(10) == feed.Chunk([], 0, 0)
    with log.open("ab") as f:
        f.write(lines(5, 2) + STAMP + b"half")
    chunk = tail.read(10)
    assert [line[len(STAMP) : len(STAMP) + 13] for line in chunk.lines] == [b"line 00000005", b"line 00000006"]
    assert (chunk.arrived, chunk.skipped) == (2, 0)
    with log.open("ab") as f:
        f.write(b" done\n")
    assert tail.read(10).lines == [STAMP + b"half done\n"]


def test_behind_a_flood_a_tail_jumps_to_the_end_and_counts_what_it_passed_over(tmp_path: Path) -> None:
    log = tmp_path / "flood.log"
    log.write_bytes(b"")
    tail = feed.LogTail(log, budget=64 * 1024)
    log.write_bytes(lines(0, 20_000))  # 1.7 MB: far more than the budget
    chunk = tail.read(50)
    assert len(chunk.lines) == 50
    assert chunk.lines[-1].startswith(STAMP + b"line 00019999")  # caught up: the newest line
    assert chunk.skipped > 19_000
    assert abs(chunk.arrived - 20_000) < 200  # the lines passed over are estimated from their size
    with log.open("ab") as f:
        f.write(lines(20_000, 3))
    after = tail.read(50)  # and from there on, line by line again
    assert (len(after.lines), after.arrived, after.skipped) == (3, 3, 0)


def test_a_tail_follows_a_rotation_and_a_truncation(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    log.write_bytes(lines(0, 1))
    tail = feed.LogTail(log)
    with log.open("ab") as f:
        f.write(lines(1, 2))
    log.rename(tmp_path / "web.log.1")  # rotated: what was written last to the old file counts too
    log.write_bytes(lines(3, 2))
    chunk = tail.read(10)
    assert [int(line.split()[2]) for line in chunk.lines] == [1, 2, 3, 4]
    log.write_bytes(lines(9, 1))  # truncated by hand, then written
    assert [int(line.split()[2]) for line in tail.read(10).lines] == [9]


def test_the_rate_counts_lines_in_its_window_and_falls_to_nothing() -> None:
    rate = feed.Rate(window=2.0)
    rate.add(1000, now=10.0)
    rate.add(3000, now=11.0)
    assert rate.per_second(now=11.5) == 2000
    assert rate.per_second(now=12.5) == 1500
    assert rate.per_second(now=20.0) == 0


def test_the_pane_shows_a_line_without_its_stamp_or_terminal_escapes() -> None:
    raw = STAMP + b"\x1b[32mready\x1b[0m on \x1b]8;;http://x\x07link\x1b]8;;\x07\tport\r\n"
    line = logstore.Line("voice", raw)
    assert feed.shown(line, prefix=False) == "ready on link    port"
    assert feed.shown(line, prefix=True, width=8) == "voice    | ready on link    port"
    assert feed.matches(line, "READY") and not feed.matches(line, "failed")


def test_history_merges_services_and_keeps_only_matching_lines(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    paths.ensure()
    paths.log("a").write_bytes(b"2026-12-06T10:00:01.000Z one\n2026-12-06T10:00:03.000Z three error\n")
    paths.log("b").write_bytes(b"2026-12-06T10:00:02.000Z two error\n2026-12-06T10:00:04.000Z four\n")
    assert [line.text for line in feed.history(paths, ["a", "b"], 3)] == [b"two error\n", b"three error\n", b"four\n"]
    assert [line.service for line in feed.history(paths, ["a", "b"], 10, "error")] == ["b", "a"]


def test_usage_reads_a_strangers_environment_once_but_not_a_young_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    marker = "0123456789.abcdef"
    env = {**os.environ, reaper.MARKER_VAR: marker, reaper.SERVICE_VAR: "web"}
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    young = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        read: list[int] = []
        real = reaper.environ
        monkeypatch.setattr(reaper, "environ", lambda pid: read.append(pid) or real(pid))
        foreign: dict[int, int] = {}
        deadline = time.monotonic() + 10
        while not reaper.usage(marker, {}, foreign).get("web"):  # until it has exec'd
            assert time.monotonic() < deadline
        assert reaper.usage(marker, {}, foreign)["web"][0] == 1
        assert 1 in foreign  # init: a stranger for good
        assert young.pid not in foreign and ours.pid not in foreign  # too young to judge / ours
        read.clear()
        reaper.usage(marker, {}, foreign)
        assert 1 not in read and young.pid in read and ours.pid in read
    finally:
        for proc in (ours, young):
            proc.kill()
            proc.wait()


def test_a_row_fits_its_columns_with_a_space_between_them() -> None:
    from airadev.dash.app import COLUMNS, clip, row
    from airadev.status import ServiceStatus, Usage

    svc = ServiceStatus(
        "crash-loop", health="connection refused by 127.0.0.1", pid=4194303, port=65535, started_at=time.time() - 7300,
        restarts=1234, runtime="supabase",
    )  # fmt: skip
    cells = row(svc, Usage(180.5, 123 * 1024**3, 3), time.time())
    assert cells == ("crash-loop", "connecti…", "4194303", "65535", "2h01m", "1k+", "180%", "123.0GB", "supabase")
    assert all(len(text) < width for text, (_, _, width) in zip(cells, COLUMNS[1:]))
    assert sum(width for _, _, width in COLUMNS) <= 80
    assert clip("voice-agent", 12) == "voice-agent" and clip("voice-agent-2", 12) == "voice-agen…"


def test_whole_files_rotated_out_between_two_reads_are_counted_as_passed_over(tmp_path: Path) -> None:
    log = tmp_path / "flood.log"
    log.write_bytes(b"")
    tail = feed.LogTail(log)
    line = b"x" * 99 + b"\n"  # 100 bytes a line: the count from sizes is exact

    def rotate() -> None:  # as logstore.LogFile.rotate does it
        for index in (2, 1):
            newer = logstore.rotated(log, index - 1)
            if newer.exists():
                os.replace(newer, logstore.rotated(log, index))
        log.write_bytes(b"")

    log.write_bytes(line * 10)  # ours, read to its end below
    rotate()
    log.write_bytes(line * 30)  # rotated out before the next read: never read
    rotate()
    log.write_bytes(line * 5)
    chunk = tail.read(100)
    assert (len(chunk.lines), chunk.arrived, chunk.skipped) == (15, 45, 30)


def test_a_tail_made_for_a_log_first_seen_reads_it_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "new.log"
    log.write_bytes(lines(0, 2))
    assert len(feed.LogTail(log, from_end=False).read(10).lines) == 2
    tail = feed.LogTail(log)
    with log.open("ab") as f:
        f.write(lines(2, 1) + b"part")
    assert tail.position == len(lines(0, 2))  # where reading goes on: history stops there
    tail.read(10)
    assert tail.position == len(lines(0, 3))  # the part line is not read yet


def test_closing_the_tunnel_says_what_was_and_was_not_put_back() -> None:
    from airadev.dash.app import closed

    assert closed({"restored": ["a"]}) == "tunnel: closed; everything is put back"
    assert closed({"kept": True}) == "tunnel: closed; the rewiring was kept (--keep)"
    assert "could not put back Twilio +1555" in closed({"failed": ["Twilio +1555"]})
    assert closed({"waiting": ["Twilio +1555: waiting"]}) == "tunnel: closed; Twilio +1555: waiting"
