"""Service output: framing into whole lines, redaction, log files, and reading them back.

The write path works on chunks, not lines (DESIGN.md, habit 8): a chunk read from a pipe is cut
at its last newline, redacted and prefixed with ``bytes.replace`` and written with one
``os.write``. Per-line Python work is what keeps other supervisors at tens of thousands of
lines per second.

File format: one line per output line, ``<UTC timestamp, 24 bytes> <line>``, for example
``2026-11-25T23:17:45.123Z voice agent ready``. Timestamps never decrease within a file, which
lets ``--since`` bisect a file instead of scanning it.
"""

from __future__ import annotations

import heapq
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

TS_LEN = 24  # len("2026-11-25T23:17:45.123Z")
TS_FIELD = TS_LEN + 1  # with the space after it
MIN_SECRET_LEN = 8  # a shorter value is too common to replace everywhere (doctor warns instead)
# Words and placeholders people put in local env files: replacing them everywhere would rewrite
# ordinary text ("/password-recovery/", a folder name), so they are left alone, like any value
# of lowercase letters alone (a word), and doctor warns about them (secrets.weak).
COMMON_VALUES = frozenset(
    {
        "password",
        "passw0rd",
        "password1",
        "changethis",
        "changeme",
        "postgres",
        "12345678",
        "123456789",
        "1234567890",
        "qwertyuiop",
        "admin123",
        "letmein1",
        "test1234",
        "example1",
        "localhost",
        "secret123",
        "your-secret-key",
        "your_secret_key",
        "your-api-key",
        "your_api_key",
        "development",
        "placeholder",
    }
)
_BLOCK = 64 * 1024


def too_weak_to_hide(value: str) -> bool:
    """A secret's value that redaction leaves alone: shorter than MIN_SECRET_LEN, a common
    placeholder, or a word (lowercase letters alone, under 16): hiding it everywhere would
    corrupt ordinary text."""
    value = value.strip()
    word = value.isascii() and value.isalpha() and value.islower() and len(value) < 16
    return len(value) < MIN_SECRET_LEN or value.lower() in COMMON_VALUES or word


# --- framing -----------------------------------------------------------------------------------


class LineFramer:
    """Cuts a byte stream into whole lines.

    ``feed`` returns the whole lines now available (ending in ``\\n``) or ``b""``; a partial
    line waits in ``pending`` until its newline comes or ``flush`` is called (the supervisor
    calls it after a short pause, and when the process ends). A line longer than ``max_line``
    is broken so that memory stays bounded. Neither a break nor a flush may cut a secret in
    two, so that both halves would pass redaction: whole secrets are redacted first, and a
    tail that could be the start of one is held back.
    """

    __slots__ = ("pending", "max_line", "redactor")

    def __init__(self, max_line: int = 64 * 1024, redactor: Redactor | None = None) -> None:
        self.pending = b""
        self.max_line = max_line
        self.redactor = redactor

    def feed(self, data: bytes) -> bytes:
        if self.pending:
            data = self.pending + data
        cut = data.rfind(b"\n") + 1
        if cut and self.redactor is not None and self.redactor.multiline:
            # A secret with newlines in it (a PEM key) may have begun before the cut: hold back
            # from the line it starts on, or its first lines would pass redaction on their own.
            begins = cut - self.redactor.held(data[:cut], multiline=True)
            if begins < cut:
                cut = data.rfind(b"\n", 0, begins) + 1
        if cut:
            out, self.pending = data[:cut], data[cut:]
        else:
            out, self.pending = b"", data
        if len(self.pending) > self.max_line:
            out += self._release()
        return out

    def flush(self, final: bool = False) -> bytes:
        """The partial line as a line of its own. Unless ``final``, a tail that may be the start
        of a secret stays pending; when ``final`` (the writer has gone) it is redacted."""
        if not self.pending:
            return b""
        if final:
            out, self.pending = self.pending, b""
            if self.redactor:
                out = self.redactor.scrub_tail(out)
            return out + b"\n"
        return self._release()

    def _release(self) -> bytes:
        data = self.pending
        hold = 0
        if self.redactor:
            data = self.redactor(data)
            hold = self.redactor.held(data)
        out, self.pending = data[: len(data) - hold], data[len(data) - hold :]
        return out + b"\n" if out else b""


# --- redaction ---------------------------------------------------------------------------------


class Redactor:
    """Replaces secret values with ``[redacted:NAME]`` in bytes and text.

    Longer values are replaced first, so a secret that contains another is hidden whole. A
    value too weak to hide (``too_weak_to_hide``) is left alone: replacing a word everywhere
    would corrupt ordinary text.
    Values are only ever added (``add``): a secret changed in an env file stays hidden in its
    old form too.
    """

    def __init__(self, secrets: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        self._by_value: dict[bytes, bytes] = {}
        self._pairs: list[tuple[bytes, bytes]] = []
        self._pattern: re.Pattern[bytes] | None = None
        self.longest = 0
        self.multiline = False  # some secret spans lines: LineFramer must not cut inside one
        self.add(secrets or {})

    def add(self, secrets: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        """Hide these values from now on: a mapping by name, or (name, value) pairs (one name
        may come with several values)."""
        changed = False
        for name, value in secrets.items() if isinstance(secrets, Mapping) else secrets:
            if value and not too_weak_to_hide(value) and value.encode() not in self._by_value:
                self._by_value[value.encode()] = f"[redacted:{name}]".encode()
                changed = True
        if changed:
            self._pairs = sorted(self._by_value.items(), key=lambda p: -len(p[0]))
            self.longest = len(self._pairs[0][0])
            self.multiline = any(b"\n" in secret for secret, _ in self._pairs)
            # One pass, longest first at each place: a replacement is never searched again, so
            # a secret that happens to be part of a marker ("redacted") cannot rewrite it.
            self._pattern = re.compile(b"|".join(re.escape(secret) for secret, _ in self._pairs))

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __call__(self, data: bytes) -> bytes:
        # Most output holds no secret: a substring test per secret is far cheaper than a regex
        # scan, so the pattern only runs over data that holds one.
        for secret, _ in self._pairs:
            if secret in data:
                assert self._pattern is not None
                return self._pattern.sub(self._replacement, data)
        return data

    def _replacement(self, found: re.Match[bytes]) -> bytes:
        return self._by_value[found.group()]

    def text(self, text: str) -> str:
        if not self._pairs:
            return text
        return self(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")

    def held(self, data: bytes, multiline: bool = False) -> int:
        """Length of the longest tail of ``data`` that is the start of a secret. With
        ``multiline``, of a secret that spans lines only, for ``data`` that ends a line: then
        only its prefixes ending in a newline can be that tail."""
        best = 0
        for secret, _ in self._pairs:
            if multiline:
                sizes: Sequence[int] = [at + 1 for at in range(len(secret) - 1) if secret[at] == 10]  # b"\n"
                sizes = [size for size in reversed(sizes) if size <= len(data)]
            else:
                sizes = range(min(len(secret) - 1, len(data)), 0, -1)
            for size in sizes:
                if size <= best:
                    break
                if data.endswith(secret[:size]):
                    best = size
                    break
        return best

    def scrub_tail(self, data: bytes) -> bytes:
        """Redact ``data``, including a tail that is the start of a secret (its end never came)."""
        data = self(data)
        size = self.held(data)
        if size < MIN_SECRET_LEN:
            return data
        tail = data[-size:]
        for secret, replacement in self._pairs:
            if secret.startswith(tail):
                return data[:-size] + replacement
        return data


# --- prefixing ---------------------------------------------------------------------------------


def prefix_lines(lines: bytes, prefix: bytes) -> bytes:
    """``prefix`` before every line of ``lines`` (whole lines, ending in ``\\n``)."""
    return prefix + lines[:-1].replace(b"\n", b"\n" + prefix) + b"\n"


def prefixed(lines: bytes, prefix: bytes) -> tuple[bytes, memoryview]:
    """``prefix_lines`` as two pieces for ``os.writev``, made in one pass over ``lines`` (whole
    lines, ending in ``\\n``): the replace puts the prefix after every newline, the last
    one's is cut off by a view, and the first line's is the first piece. Joining or trimming
    would copy the chunk again, and every copy of a large chunk is fresh memory the kernel
    must zero."""
    body = lines.replace(b"\n", b"\n" + prefix)
    return prefix, memoryview(body)[: len(body) - len(prefix)]


class Clock:
    """UTC timestamps as bytes, formatted once per second."""

    __slots__ = ("_second", "_head")

    def __init__(self) -> None:
        self._second = -1
        self._head = b""

    def stamp(self, now: float | None = None) -> bytes:
        now = time.time() if now is None else now
        second = int(now)
        if second != self._second:
            self._second = second
            self._head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        return self._head + b".%03dZ " % int((now - second) * 1000)


# --- writing -----------------------------------------------------------------------------------


class LogFile:
    """An append-only log file that rotates by size: ``name.log`` → ``name.log.1`` → ... keeping
    ``keep`` old files. Not thread-safe: one owner (the supervisor's loop) writes."""

    def __init__(self, path: Path, max_size: int, keep: int) -> None:
        self.path = path
        self.max_size = max_size
        self.keep = keep
        self._fd = -1
        self._size = 0
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        self._write_all(memoryview(data))
        self._size += len(data)
        if self._size >= self.max_size:
            self.rotate()

    def writev(self, parts: tuple[bytes, memoryview]) -> None:
        """Write the pieces ``prefixed`` makes, with one system call."""
        size = len(parts[0]) + len(parts[1])
        written = os.writev(self._fd, parts)
        if written < size:  # a regular file takes all unless the disk is full: EFBIG, ENOSPC follow
            self._write_all(memoryview(b"".join(parts))[written:])
        self._size += size
        if self._size >= self.max_size:
            self.rotate()

    def _write_all(self, view: memoryview) -> None:
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def rotate(self) -> None:
        os.close(self._fd)
        for index in range(self.keep, 0, -1):
            older = rotated(self.path, index)
            newer = rotated(self.path, index - 1)
            if newer.exists():
                os.replace(newer, older)
        self._open()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def rotated(path: Path, index: int) -> Path:
    return path if index == 0 else path.with_name(f"{path.name}.{index}")


def log_files(path: Path) -> list[Path]:
    """A log and its rotated predecessors, oldest first."""
    older = []
    index = 1
    while rotated(path, index).exists():
        older.append(rotated(path, index))
        index += 1
    older.reverse()
    return older + ([path] if path.exists() else [])


# --- reading -----------------------------------------------------------------------------------


def tail(path: Path, count: int, end: int | None = None) -> list[bytes]:
    """The last ``count`` lines of a log and its rotated files, read from the end: a 1 GB file
    costs as much as a small one. ``end`` bounds the current file (a Follower's position)."""
    if count <= 0:
        return []
    lines: list[bytes] = []
    for file in reversed(log_files(path)):
        lines = _tail_file(file, count - len(lines), end if file == path else None) + lines
        if len(lines) >= count:
            break
    return lines


def _tail_file(path: Path, count: int, end: int | None = None) -> list[bytes]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        size = os.fstat(fd).st_size
        end = size if end is None else min(end, size)
        data = b""
        pos = end
        # count newlines: the last line ends in one, so count+1 newlines frame count lines.
        while pos > 0 and data.count(b"\n") <= count:
            step = min(_BLOCK, pos)
            pos -= step
            data = os.pread(fd, step, pos) + data
    finally:
        os.close(fd)
    if not data:
        return []
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    else:
        # A partial last line (a write in progress): leave it for the next read.
        parts.pop()
    if pos > 0:
        parts = parts[1:]  # the first piece may be the tail end of a longer line
    return [p + b"\n" for p in parts[-count:]]


def offset_since(path: Path, since: bytes) -> int:
    """Byte offset of the first line whose timestamp is ``>= since`` (bisection)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        lo, hi = 0, size
        while lo < hi:
            mid = (lo + hi) // 2
            start = _line_start_after(f, mid)
            if start >= size:
                hi = mid
                continue
            f.seek(start)
            stamp = f.read(TS_LEN)
            if stamp < since:
                lo = mid + 1
            else:
                hi = mid
        return _line_start_after(f, lo) if lo else 0


def _line_start_after(f, offset: int) -> int:
    """The start of the first line that begins at or after ``offset``."""
    if offset == 0:
        return 0
    f.seek(offset - 1)
    while True:
        block = f.read(_BLOCK)
        if not block:
            return f.tell()
        nl = block.find(b"\n")
        if nl >= 0:
            return f.tell() - len(block) + nl + 1


def read_since(path: Path, since: bytes, end: int | None = None) -> Iterator[bytes]:
    """Lines of a log and its rotated files with timestamps ``>= since``; ``end`` bounds the
    current file."""
    for file in log_files(path):
        try:
            with open(file, "rb") as f:
                start = offset_since(file, since)
                f.seek(start)
                limit = end if file == path and end is not None else None
                for line in f:
                    if limit is not None:
                        start += len(line)
                        if start > limit:
                            break
                    if line.endswith(b"\n"):
                        yield line
        except FileNotFoundError:
            continue


def since_stamp(seconds_ago: float, now: float | None = None) -> bytes:
    return Clock().stamp((time.time() if now is None else now) - seconds_ago)[:TS_LEN]


# --- merging and following ---------------------------------------------------------------------


class Line:
    """One stored line of one service (timestamp included, ending in a newline)."""

    __slots__ = ("service", "raw")

    def __init__(self, service: str, raw: bytes) -> None:
        self.service = service
        self.raw = raw

    @property
    def stamp(self) -> bytes:
        return self.raw[:TS_LEN]

    @property
    def text(self) -> bytes:
        return self.raw[TS_FIELD:] if has_stamp(self.raw) else self.raw


_STAMP_RE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def has_stamp(raw: bytes) -> bool:
    return _STAMP_RE.match(raw) is not None


def merge(streams: Mapping[str, Iterable[bytes]]) -> Iterator[Line]:
    """Lines of several services in time order (ties keep each file's own order)."""

    def lines_of(name: str, raw_lines: Iterable[bytes]) -> Iterator[Line]:
        for raw in raw_lines:
            yield Line(name, raw)

    iterators = [lines_of(name, lines) for name, lines in streams.items()]
    return heapq.merge(*iterators, key=lambda line: line.stamp)


def open_log(path: Path, from_end: bool) -> tuple[Any, int | None]:
    """A log file open for reading (at its end, or its start) and its inode; (None, None) if there
    is none yet. A reader that meets another inode at the path knows the file was rotated."""
    try:
        f = open(path, "rb")  # (kept open between reads)
    except FileNotFoundError:
        return None, None
    st = os.fstat(f.fileno())
    if from_end:
        f.seek(st.st_size)
    return f, st.st_ino


class Follower:
    """Reads what has been appended to a log since the last call, across rotations (however
    many happened between two calls) and truncation. Used by ``airadev logs -f``; polling
    keeps it simple and robust.

    ``position`` is where reading starts: the end of the file when the follower was made, so
    that `logs -f` can print the stored tail up to exactly there and lose no line between the
    two.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: Any = None
        self._ino: int | None = None
        self._buf = b""
        self.position = 0
        self._open(from_end=True)

    def _open(self, from_end: bool) -> None:
        self._f, self._ino = open_log(self.path, from_end)
        if from_end and self._f is not None:
            self.position = self._f.tell()

    def read(self) -> list[bytes]:
        if self._f is None:
            self._open(from_end=False)
            if self._f is None:
                return []
        # Look before reading: once the file has been renamed away, nothing more is written
        # to it, so what is read after this look is all it will ever hold.
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._drain()
        out = self._drain()
        if st.st_ino != self._ino:
            out.extend(self._newer_rotated())
            self._f.close()
            self._buf = b""
            self._open(from_end=False)
            out.extend(self._drain())
        elif os.fstat(self._f.fileno()).st_size < self._f.tell():  # truncated by hand
            self._f.seek(0)
            self._buf = b""
            out.extend(self._drain())
        return out

    def _newer_rotated(self) -> list[bytes]:
        """Whole files rotated out after ours and before the current one (several rotations
        between two reads)."""
        files = log_files(self.path)[:-1]  # rotated ones, oldest first
        inodes: list[int | None] = []
        for file in files:
            try:
                inodes.append(os.stat(file).st_ino)
            except FileNotFoundError:
                inodes.append(None)
        if self._ino not in inodes:
            return []
        out: list[bytes] = []
        for file in files[inodes.index(self._ino) + 1 :]:
            try:
                data = file.read_bytes()
            except FileNotFoundError:
                continue
            out.extend(line + b"\n" for line in data.split(b"\n")[:-1])
        return out

    def _drain(self) -> list[bytes]:
        assert self._f is not None
        data = self._buf + self._f.read()
        cut = data.rfind(b"\n") + 1
        self._buf = data[cut:]
        if not cut:
            return []
        return [line + b"\n" for line in data[: cut - 1].split(b"\n")]

    def close(self) -> None:
        if self._f:
            self._f.close()
