"""The log path: framing, redaction, prefixes, files, tails, --since and following."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airadev import logstore
from airadev.logstore import LineFramer, Redactor


def frame_all(chunks: list[bytes], framer: LineFramer) -> bytes:
    return b"".join(framer.feed(c) for c in chunks) + framer.flush()


@given(st.lists(st.binary(max_size=40), max_size=30), st.data())
@settings(max_examples=300, deadline=None)
def test_framing_is_independent_of_chunk_boundaries(pieces: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    framer = LineFramer()
    out = []
    for chunk in chunks:
        emitted = framer.feed(chunk)
        assert emitted == b"" or emitted.endswith(b"\n"), "only whole lines leave the framer"
        out.append(emitted)
    out.append(framer.flush())
    expected = stream if stream.endswith(b"\n") or not stream else stream + b"\n"
    assert b"".join(out) == expected


def test_partial_line_waits_then_flushes() -> None:
    framer = LineFramer()
    assert framer.feed(b"abc") == b""
    assert framer.feed(b"def\nghi") == b"abcdef\n"
    assert framer.pending == b"ghi"
    assert framer.flush() == b"ghi\n"
    assert framer.flush() == b""


@given(st.integers(0, 200), st.lists(st.integers(1, 60), min_size=1, max_size=8))
@settings(max_examples=400, deadline=None)
def test_a_long_line_is_broken_but_never_through_a_secret(prefix: int, chunk_sizes: list[int]) -> None:
    secret = "S3CRET-VALUE-1234567"
    redact = Redactor({"API_KEY": secret})
    framer = LineFramer(max_line=64, redactor=redact)
    stream = b"x" * prefix + secret.encode() + b"y" * 30 + b"\n"
    out, pos, i = b"", 0, 0
    while pos < len(stream):
        size = chunk_sizes[i % len(chunk_sizes)]
        out += framer.feed(stream[pos : pos + size])
        pos, i = pos + size, i + 1
    out += framer.flush(final=True)
    shown = redact(out)  # what the supervisor writes: every emitted piece passes redaction
    assert secret.encode() not in shown.replace(b"\n", b"")
    assert shown.count(b"[redacted:API_KEY]") == 1
    assert max(len(line) for line in shown.split(b"\n")) <= 64 + max(chunk_sizes) + len("[redacted:API_KEY]")


def test_partial_flush_holds_back_the_start_of_a_secret() -> None:
    redact = Redactor({"DB_PASSWORD": "hunter2-long-password"})
    framer = LineFramer(redactor=redact)
    assert framer.feed(b"connecting with hunter2-lo") == b""
    assert framer.flush() == b"connecting with \n"  # the pause: shown, but not the secret's start
    assert framer.pending == b"hunter2-lo"
    assert redact(framer.feed(b"ng-password ok\n")) == b"[redacted:DB_PASSWORD] ok\n"
    framer.feed(b"last words hunter2-lo")
    assert framer.flush(final=True) == b"last words [redacted:DB_PASSWORD]\n"


def test_redactor_keeps_old_values_when_secrets_change() -> None:
    redact = Redactor({"TOKEN_SECRET": "first-value-1"})
    redact.add({"TOKEN_SECRET": "second-value-2"})
    assert redact(b"first-value-1 second-value-2") == b"[redacted:TOKEN_SECRET] [redacted:TOKEN_SECRET]"


def test_memory_stays_bounded_without_newlines() -> None:
    framer = LineFramer(max_line=1024)
    for _ in range(1000):
        framer.feed(b"y" * 700)
        assert len(framer.pending) <= 1024


def test_redaction() -> None:
    redact = Redactor(
        {"TWILIO_AUTH_TOKEN": "fedcba9876543210", "LONG_KEY": "fedcba9876543210-extended", "TINY_KEY": "ab"}
    )
    line = b"token fedcba9876543210 and fedcba9876543210-extended, ab stays\n"
    assert redact(line) == b"token [redacted:TWILIO_AUTH_TOKEN] and [redacted:LONG_KEY], ab stays\n"
    assert redact.text("x fedcba9876543210") == "x [redacted:TWILIO_AUTH_TOKEN]"
    assert not Redactor({})
    assert Redactor({}).text("plain") == "plain"


def test_prefix_lines() -> None:
    assert logstore.prefix_lines(b"a\nb\n", b"p | ") == b"p | a\np | b\n"
    assert logstore.prefix_lines(b"\n", b"p | ") == b"p | \n"


def test_clock_formats_utc_with_millis() -> None:
    stamp = logstore.Clock().stamp(0.25)
    assert stamp == b"1970-01-01T00:00:00.250Z "
    assert len(stamp) == logstore.TS_FIELD


def write_log(path: Path, count: int, start: float = 1_800_000_000.0, step: float = 0.01) -> None:
    clock = logstore.Clock()
    with open(path, "wb") as f:
        for i in range(count):
            f.write(clock.stamp(start + i * step) + b"line %d\n" % i)


def test_tail_reads_from_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.log"
    write_log(path, 200_000)
    assert path.stat().st_size > 6_000_000
    read = []
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, off: read.append(n) or real_pread(fd, n, off))
    lines = logstore.tail(path, 100)
    assert [line.split(b" ", 1)[1] for line in lines] == [b"line %d\n" % i for i in range(199_900, 200_000)]
    assert sum(read) <= 128 * 1024, "only the end of the file is read"


def test_tail_spans_rotated_files_and_ignores_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    write_log(logstore.rotated(path, 1), 5)
    with open(path, "wb") as f:
        f.write(logstore.Clock().stamp(1_900_000_000.0) + b"new\n" + b"half a li")
    lines = logstore.tail(path, 3)
    assert [line[logstore.TS_FIELD :] for line in lines] == [b"line 3\n", b"line 4\n", b"new\n"]
    assert logstore.tail(path, 0) == []
    assert logstore.tail(tmp_path / "missing.log", 5) == []


def test_since_bisects(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    write_log(path, 50_000, start=1_800_000_000.0, step=0.01)
    since = logstore.Clock().stamp(1_800_000_000.0 + 400.005)[: logstore.TS_LEN]
    lines = list(logstore.read_since(path, since))
    assert lines[0][logstore.TS_FIELD :] == b"line 40001\n"
    assert len(lines) == 50_000 - 40_001
    assert list(logstore.read_since(path, b"2100")) == []
    assert len(list(logstore.read_since(path, b"1999"))) == 50_000


def test_log_file_rotates_by_size(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    log = logstore.LogFile(path, max_size=1000, keep=2)
    for i in range(100):
        log.write(b"%060d\n" % i)
    log.close()
    files = logstore.log_files(path)
    assert [f.name for f in files] == ["svc.log.2", "svc.log.1", "svc.log"]
    assert all(f.stat().st_size <= 1000 + 61 for f in files)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    kept = b"".join(f.read_bytes() for f in files)
    numbers = [int(x) for x in kept.split()]
    assert numbers == list(range(numbers[0], 100)), "the newest lines survive, in order"


def test_merge_orders_by_time_and_keeps_file_order_for_ties() -> None:
    a = [b"2026-01-01T00:00:00.000Z a1\n", b"2026-01-01T00:00:02.000Z a2\n"]
    b = [b"2026-01-01T00:00:00.000Z b1\n", b"2026-01-01T00:00:01.000Z b2\n"]
    merged = [(line.service, line.text) for line in logstore.merge({"a": a, "b": b})]
    assert merged == [("a", b"a1\n"), ("b", b"b1\n"), ("b", b"b2\n"), ("a", b"a2\n")]


def test_follower_loses_nothing_to_a_rotation_during_a_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "svc.log"
    log = logstore.LogFile(path, max_size=10**9, keep=5)
    follower = logstore.Follower(path)
    log.write(b"one\n")
    real_stat = os.stat
    rotated_once = []

    def stat_then_rotate(p, *a, **k):  # type: ignore[no-untyped-def]
        result = real_stat(p, *a, **k)
        if p == path and not rotated_once:
            rotated_once.append(1)
            log.write(b"two\n")  # written after the follower looked...
            log.rotate()  # ...then rotated away
            log.write(b"three\n")
        return result

    monkeypatch.setattr(os, "stat", stat_then_rotate)
    got = follower.read()
    monkeypatch.setattr(os, "stat", real_stat)
    got += follower.read()
    assert got == [b"one\n", b"two\n", b"three\n"]
    # Several rotations between two reads: the files in between are read whole.
    for word in (b"four\n", b"five\n", b"six\n"):
        log.write(word)
        log.rotate()
    log.write(b"seven\n")
    assert follower.read() == [b"four\n", b"five\n", b"six\n", b"seven\n"]
    log.close()


def test_follower_survives_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    log = logstore.LogFile(path, max_size=10**9, keep=2)
    log.write(b"old\n")
    follower = logstore.Follower(path)
    assert follower.read() == []
    log.write(b"one\ntw")
    assert follower.read() == [b"one\n"]
    log.write(b"o\n")
    assert follower.read() == [b"two\n"]
    log.write(b"three\n")
    log.rotate()
    log.write(b"four\n")
    assert follower.read() == [b"three\n", b"four\n"]
    log.close()
    path.write_bytes(b"5\n")  # truncated by hand, shorter than before
    assert follower.read() == [b"5\n"]
    follower.close()
