"""What `airadev dash` shows, read without textual (and so testable alone): the stack from its
state file, each service's CPU and memory from /proc, the logs from their files, and inotify to
know when to look again.

The dashboard asks the supervisor nothing to watch it: the supervisor rewrites
``.airadev/state.json`` at every change (states, health, the tunnel), and appends to
``.airadev/logs/*.log``. inotify wakes the dashboard when either changes, so an idle stack costs
it no wake-up at all but its own 2-second look at CPU and memory, and costs the supervisor
nothing (`status` would: its answer scans /proc).
"""

from __future__ import annotations

import collections
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from airadev import logstore, reaper
from airadev.state import Paths, read_state, supervisor_alive
from airadev.status import StackStatus, Usage

STATE_FILE = "state.json"
SEARCHED = 20_000  # stored lines of each service a search looks through
LOG_SUFFIX = ".log"


class Stack:
    """The running stack as its state file says, read again when it changes."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.status: StackStatus | None = None
        self.alive = False
        self._raw: dict | None = None

    def read(self) -> bool:
        """Read the state file; True if anything shown changed (the supervisor's life included)."""
        raw = read_state(self.paths)
        alive = supervisor_alive(raw)
        if raw == self._raw and alive == self.alive:
            return False
        self._raw, self.alive = raw, alive
        self.status = StackStatus.from_json(raw) if raw else None
        return True


class UsageSampler:
    """CPU (percent of one core since the last sample) and memory of each service's processes,
    found as `status` finds them (reaper.usage), remembering which processes are not the
    stack's so that their environments are read once."""

    def __init__(self) -> None:
        self._foreign: dict[int, int] = {}
        self._last: dict[str, tuple[int | None, float, float]] = {}  # name → (pid, when, cpu seconds)
        self.samples = 0

    def sample(self, status: StackStatus) -> dict[str, Usage]:
        if len(self._foreign) > 16384:  # pids are reused: forget now and then
            self._foreign.clear()
        self.samples += 1
        groups = {s.pgid: name for name, s in status.services.items() if s.pgid and s.pid}
        found = reaper.usage(status.marker, groups, self._foreign)
        now = time.monotonic()
        out = {}
        for name, svc in status.services.items():
            count, cpu_seconds, rss = found.get(name, (0, 0.0, 0))
            pid, when, before = self._last.get(name, (None, now, cpu_seconds))
            cpu = None
            if svc.pid is not None and pid == svc.pid and now > when:
                cpu = round(max(0.0, (cpu_seconds - before) / (now - when) * 100), 1)
            self._last[name] = (svc.pid, now, cpu_seconds)
            out[name] = Usage(cpu, rss if count else None, count)
        return out


class Chunk(NamedTuple):
    lines: list[bytes]  # the last whole lines read (at most `keep`), stamps included
    arrived: int  # how many lines arrived, shown or not
    skipped: int  # of those, how many were passed over unread (an estimate: a flood)


class LogTail:
    """New lines of one log file since the last read, across rotation and truncation, read at
    most ``budget`` bytes at a time: behind a flood, it jumps to near the end and says how
    many lines it passed over, rather than reading them all."""

    def __init__(self, path: Path, budget: int = 4 << 20, from_end: bool = True) -> None:
        self.path = path
        self.budget = budget
        self._f: Any = None
        self._ino: int | None = None
        self._buf = b""
        self._per_line = 100.0  # bytes a line, as last seen: to count whole files passed over
        self._open(from_end=from_end)

    @property
    def position(self) -> int:
        """Where the next read starts in the current file (what is before it has been read)."""
        return self._f.tell() - len(self._buf) if self._f is not None else 0

    def _open(self, from_end: bool) -> None:
        self._f, self._ino = logstore.open_log(self.path, from_end)

    def read(self, keep: int) -> Chunk:
        if self._f is None:
            self._open(from_end=False)
            if self._f is None:
                return Chunk([], 0, 0)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        lines: collections.deque[bytes] = collections.deque(maxlen=keep)
        count = skipped = 0
        # What is left in the file we have open (renamed away by a rotation: it grows no more).
        count, skipped = self._drain(lines)
        if st is not None and st.st_ino != self._ino:
            between = self._rotated_since()  # whole files rotated out between two reads: passed over
            self._f.close()
            self._buf = b""
            self._open(from_end=False)
            more, passed = self._drain(lines)
            count, skipped = count + more + between, skipped + passed + between
        elif st is not None and st.st_size < self._f.tell():  # truncated by hand
            self._f.seek(0)
            self._buf = b""
            more, passed = self._drain(lines)
            count, skipped = count + more, skipped + passed
        return Chunk(list(lines), count, skipped)

    def _rotated_since(self) -> int:
        """Lines (estimated from sizes) of the files rotated out after ours, before the current one."""
        files = logstore.log_files(self.path)[:-1]  # rotated ones, oldest first
        sizes = []
        found = False
        for file in files:
            try:
                st = os.stat(file)
            except FileNotFoundError:
                continue
            if found:
                sizes.append(st.st_size)
            found = found or st.st_ino == self._ino
        return int(sum(sizes) / self._per_line)

    def _drain(self, lines: collections.deque[bytes]) -> tuple[int, int]:
        if self._f is None:
            return 0, 0
        skipped = 0
        end = os.fstat(self._f.fileno()).st_size
        behind = end - self._f.tell()
        if behind < 0:  # truncated: the caller starts again from its beginning
            return 0, 0
        if behind > self.budget:  # a flood: pass over all but the last quarter of the budget
            start = self._f.tell()
            self._f.seek(end - self.budget // 4)
            sample = self._f.read(self.budget // 4)
            per_line = self._per_line = max(1.0, len(sample) / max(1, sample.count(b"\n")))
            skipped = int((end - self.budget // 4 - start) / per_line)
            cut = sample.find(b"\n") + 1  # the first line is a piece: it counts as passed over
            data = sample[cut:]
            self._buf = b""
        else:
            data = self._buf + self._f.read(behind)
        last = data.rfind(b"\n") + 1
        self._buf = data[last:]
        body = data[:last]
        count = body.count(b"\n")
        if count:
            tail = body[:-1].rsplit(b"\n", lines.maxlen or count)
            lines.extend(line + b"\n" for line in tail[-(lines.maxlen or count) :])
        return count + skipped, skipped

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class Rate:
    """Lines per second over the last few seconds."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self._events: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, count: int, now: float | None = None) -> None:
        if count:
            self._events.append((time.monotonic() if now is None else now, count))

    def per_second(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._events and self._events[0][0] < now - self.window:
            self._events.popleft()
        return sum(n for _, n in self._events) / self.window


class Watcher:
    """inotify on ``.airadev/`` (the state file) and its logs folder: ``fd`` is readable when
    something changed; ``changes()`` says what (the state, and which logs by name)."""

    def __init__(self, paths: Paths) -> None:
        from inotify_simple import INotify, flags

        self._inotify = INotify(nonblocking=True)
        self.fd = self._inotify.fileno()
        self._state = self._inotify.add_watch(paths.dir, flags.MOVED_TO | flags.CLOSE_WRITE)
        self._logs = self._inotify.add_watch(paths.logs, flags.MODIFY | flags.CREATE | flags.MOVED_TO)

    def changes(self) -> tuple[bool, set[str]]:
        state = False
        logs: set[str] = set()
        for event in self._inotify.read(timeout=0):
            if event.wd == self._state and event.name == STATE_FILE:
                state = True
            elif event.wd == self._logs and event.name.endswith(LOG_SUFFIX):
                logs.add(event.name[: -len(LOG_SUFFIX)])
        return state, logs

    def close(self) -> None:
        self._inotify.close()


# --- the log pane's lines --------------------------------------------------------------------

_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b.|[\x00-\x08\x0b-\x1f\x7f]")


def shown(line: logstore.Line, prefix: bool, width: int = 0) -> str:
    """A stored line as the pane shows it: no stamp, no terminal escapes, ``service | `` first
    when several services share the pane."""
    text = _CONTROL.sub("", line.text.decode("utf-8", "replace").rstrip("\n")).replace("\t", "    ")
    return f"{line.service:<{width}} | {text}" if prefix else text


def matches(line: logstore.Line, needle: str) -> bool:
    return not needle or needle.lower() in line.text.decode("utf-8", "replace").lower()


def history(
    paths: Paths, names: Sequence[str], count: int, needle: str = "", ends: Mapping[str, int] | None = None
) -> list[logstore.Line]:
    """The last ``count`` stored lines of ``names`` (matching ``needle``, looked for among the
    last 20 000 of each), merged in time order; ``ends`` bounds each current file (where its
    tail goes on reading: no line shown twice)."""
    look = count if not needle else max(count, SEARCHED)
    streams: dict[str, Iterable[bytes]] = {}
    for name in names:
        raw = logstore.tail(paths.log(name), look, (ends or {}).get(name))
        streams[name] = [r for r in raw if matches(logstore.Line(name, r), needle)] if needle else raw
    return list(collections.deque(logstore.merge(streams), maxlen=count))
