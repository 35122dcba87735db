"""A service's output on its way: framed into lines (never one split in the middle of a
secret), redacted, stamped into its log file, shown on the console, matched by log probes and by
whoever waits for a line (the tunnel waits for Next.js's `Reload env`), kept as its last lines.

The hot path works on chunks, with bytes operations: ``feed`` is called for every read of a
service's pipe. Loop-only.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable

from airadev import logstore
from airadev.model import LogSettings
from airadev.state import Paths
from airadev.supervisor.unit import PARTIAL_LINE_PAUSE, TAIL_BYTES, Observer, Unit


class Output:
    def __init__(
        self, redact: logstore.Redactor, clock: logstore.Clock, observer: Observer, log_matched: Callable[[Unit], None]
    ) -> None:
        self.redact = redact
        self.clock = clock
        self.observer = observer
        self.log_matched = log_matched  # a service's log probe matched (its runtime has started it)
        self._waiters: dict[str, list[tuple[re.Pattern[bytes], asyncio.Future[None]]]] = {}

    def open_logs(self, units: Iterable[Unit], paths: Paths, settings: LogSettings) -> logstore.LogFile:
        """Open each service's log file; the supervisor's own one is returned."""
        for unit in units:
            unit.framer = logstore.LineFramer(redactor=self.redact)
            unit.log = logstore.LogFile(paths.log(unit.name), settings.max_size, settings.keep)
        return logstore.LogFile(paths.log("airadev"), settings.max_size, settings.keep)

    def feed(self, unit: Unit, data: bytes) -> None:
        """The hot path: called for every chunk read from a service's pipe."""
        unit.last_output = time.monotonic()
        lines = unit.framer.feed(data)
        if lines:
            self._emit(unit, lines)
        if unit.framer.pending and unit.flush_handle is None:
            unit.flush_handle = asyncio.get_running_loop().call_later(PARTIAL_LINE_PAUSE, self.flush_partial, unit)

    def flush_partial(self, unit: Unit, force: bool = False) -> None:
        """Show a partial line once the output has been quiet for PARTIAL_LINE_PAUSE (``force``:
        now, the service having exited)."""
        unit.flush_handle = None
        if not unit.framer.pending:
            return
        quiet = time.monotonic() - unit.last_output
        if force or quiet >= PARTIAL_LINE_PAUSE:
            lines = unit.framer.flush(final=force)
            if lines:
                self._emit(unit, lines)
        else:
            unit.flush_handle = asyncio.get_running_loop().call_later(
                PARTIAL_LINE_PAUSE - quiet, self.flush_partial, unit
            )

    def _emit(self, unit: Unit, lines: bytes) -> None:
        if self.redact:
            lines = self.redact(lines)
        assert unit.log is not None
        unit.log.writev(logstore.prefixed(lines, self.clock.stamp()))
        unit.tail = (unit.tail + lines[-TAIL_BYTES:])[-TAIL_BYTES:]
        self.observer.output(unit.name, lines)
        if self._waiters:
            self._check_waiters(unit.name, lines)
        if unit.awaiting_log_match and unit.log_regex is not None and unit.log_regex.search(lines):
            unit.awaiting_log_match = False
            if unit.instance is None:  # its runtime is still starting it: _start_instance decides
                unit.matched_early = True
                return
            self.log_matched(unit)

    def wait_for(self, unit: Unit, pattern: re.Pattern[bytes]) -> asyncio.Future[None]:
        """A future that resolves when the service next prints a line matching ``pattern``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(unit.name, []).append((pattern, future))
        return future

    def _check_waiters(self, name: str, lines: bytes) -> None:
        waiting = self._waiters.get(name)
        if not waiting:
            return
        kept = []
        for pattern, future in waiting:
            if future.done():
                continue
            if pattern.search(lines):
                future.set_result(None)
            else:
                kept.append((pattern, future))
        if kept:
            self._waiters[name] = kept
        else:
            del self._waiters[name]

    @staticmethod
    def last_lines(unit: Unit, count: int) -> list[str]:
        return unit.tail.decode("utf-8", "replace").splitlines()[-count:]
