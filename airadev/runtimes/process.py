"""The ``process`` runtime: a service as a child process in a session of its own.

Each service is the leader of its own session and process group (so a terminal's Ctrl-C
reaches only the supervisor, which then stops the services in order), with stdin on /dev/null
and stdout and stderr on one pipe (their order is kept). Output is read with ``add_reader`` on
the loop; the exit is noticed through a pidfd, so there is no SIGCHLD handler and no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from airadev.errors import AiradevError
from airadev.model import Service
from airadev import reaper
from airadev.runtimes.base import OnOutput

_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20
# Output is read into one buffer per service, allocated once. A fresh 1 MiB bytes object per
# read made the allocator map (and the kernel zero) that much memory for every chunk, however
# small, and unmap it again. 64 KiB chunks also keep the copies that follow (framing,
# prefixing) small enough for the allocator to reuse freed memory instead of asking the kernel
# for fresh pages: a 5M-line flood caused 1.1M page faults with 1 MiB reads, 6k with these.
# The pipe stays large (above) so that a fast writer does not wait for the supervisor.
_READ_SIZE = 64 * 1024
# A steady trickle of small writes (a service logging every request) woke the supervisor once
# per line: 100 lines/s cost 0.7-0.8% of a core, however little each wake-up did (a bare
# epoll/read/write loop in Python costs 30-100 us per wake-up on this kind of machine, more the
# longer it slept: its caches go cold). Once a service has written _STEADY small chunks in a
# row, each within _HOLD of the one before, at a rate at which a pause would gather less than a
# read takes, reading pauses and then takes what has gathered in one chunk. The first pause is
# _FIRST; each pause that gathers under half a read doubles the next, up to _HOLD: 10 wake-ups
# a second instead of one per line (measured: 0.2% at 100 lines/s; 0.4% with 50 ms). A pause
# that gathers more, or nothing, ends the pausing. So the pipe (1 MiB) cannot fill during a
# pause, and a fast stream of small writes taken for a trickle (its writer descheduled for a
# moment) is held at most _FIRST. Lines of a trickle wait up to _HOLD, and are stamped when
# read; the first lines after a quiet spell, short bursts (a server's start-up banner) and
# floods are never held. The runner's partial-line pause must stay well above _HOLD.
_HOLD = 0.1
_FIRST = 0.01
_SMALL = 4096
_STEADY = 4


class ProcessRuntime:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def start(self, service: Service, env: Mapping[str, str], on_output: OnOutput) -> ProcessInstance:
        if not service.cwd.is_dir():
            raise AiradevError(
                f"services.{service.name}.cwd: folder {service.cwd} does not exist",
                "create it, or fix cwd in airadev.toml",
            )
        rfd, wfd = os.pipe()
        try:
            popen = subprocess.Popen(
                service.command,
                cwd=service.cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=wfd,
                stderr=wfd,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            os.close(rfd)
            raise _spawn_error(service, exc) from None
        finally:
            os.close(wfd)
        return ProcessInstance(popen, rfd, self.marker, env[reaper.INSTANCE_VAR], on_output)


class ProcessInstance:
    """A running process group. Owned by the loop that created it."""

    def __init__(
        self, popen: subprocess.Popen[bytes], rfd: int, marker: str, instance: str, on_output: OnOutput
    ) -> None:
        self.popen = popen
        self.pid: int | None = popen.pid
        self.pgid = popen.pid  # leader of its own session and group
        self.marker = marker
        self.instance = instance
        self._on_output = on_output
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._rfd = rfd
        self._buffer = bytearray(_READ_SIZE)
        self._view = memoryview(self._buffer)
        self._quick = 0  # small chunks in a row, each within _HOLD of the one before
        self._quick_bytes = 0  # their size together
        self._quick_since = 0.0  # when the first of them came
        self._last_read = 0.0
        self._pause = _FIRST
        self._held: asyncio.TimerHandle | None = None
        os.set_blocking(rfd, False)
        with contextlib.suppress(OSError):
            fcntl.fcntl(rfd, _F_SETPIPE_SZ, _PIPE_SIZE)
        self._loop.add_reader(rfd, self._readable)
        self._pidfd = os.pidfd_open(popen.pid)
        self._loop.add_reader(self._pidfd, self._reaped)

    @property
    def exited(self) -> asyncio.Future[int]:
        return self._exited

    def info(self) -> dict[str, Any]:
        return {"pid": self.pid, "pgid": self.pgid}

    def _readable(self) -> None:
        size = self._read_once()
        if not size:
            return
        now = self._loop.time()
        if size < _SMALL and now - self._last_read < _HOLD:
            self._quick += 1
            self._quick_bytes += size
        else:
            self._quick, self._quick_bytes, self._quick_since = 0, 0, now
        self._last_read = now
        # At this streak's rate, would one pause gather less than one read takes?
        slow = self._quick_bytes * _HOLD < _READ_SIZE * (now - self._quick_since)
        if self._quick >= _STEADY and slow and self._rfd >= 0:
            self._loop.remove_reader(self._rfd)
            self._pause = _FIRST
            self._held = self._loop.call_later(self._pause, self._resume)

    def _resume(self) -> None:
        """The end of a pause in a steady trickle: take what gathered, then pause again (longer,
        up to _HOLD) while it stays a trickle; once it stops or speeds up, wait for output as
        usual."""
        self._held = None
        if self._rfd < 0:
            return
        size = self._read_once()
        if self._rfd < 0:
            return
        if 0 < size < _READ_SIZE // 2:
            self._pause = min(self._pause * 2, _HOLD)
            self._held = self._loop.call_later(self._pause, self._resume)
            return
        self._quick = 0
        self._last_read = self._loop.time()
        self._loop.add_reader(self._rfd, self._readable)

    def _read_once(self) -> int:
        """Deliver one read's worth of output; its size, 0 once the pipe is empty for now or
        closed."""
        try:
            size = os.readv(self._rfd, (self._buffer,))
        except BlockingIOError:
            return 0
        except OSError:
            size = 0
        if not size:
            self._close_pipe()
            return 0
        self._on_output(self._view[:size].tobytes())
        return size

    def _drain(self) -> None:
        """Deliver what the pipe holds now, without waiting for writers that outlive the leader."""
        while self._rfd >= 0 and self._read_once():
            pass

    def _close_pipe(self) -> None:
        if self._held is not None:
            self._held.cancel()
            self._held = None
        if self._rfd >= 0:
            self._loop.remove_reader(self._rfd)
            os.close(self._rfd)
            self._rfd = -1

    def _reaped(self) -> None:
        code = self.popen.poll()
        if code is None:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._drain()
        if not self._exited.done():
            self._exited.set_result(code)

    async def stop(self, sig: int, grace: float) -> int:
        found = await end_group(self.marker, self.pgid, self.instance, self._exited, sig, grace)
        self._drain()
        self._close_pipe()
        return found

    def close(self) -> None:
        """Forget the pipe even if writers (escaped daemons) still hold it."""
        self._close_pipe()


async def end_group(marker: str, pgid: int, instance: str, exited: asyncio.Future[int], sig: int, grace: float) -> int:
    """End an instance's process group and everything carrying its marker (reaper.terminate),
    then let the loop see its leader's end (``exited``). How many processes were found."""
    found = await asyncio.to_thread(reaper.terminate, marker, pgids=[pgid], instance=instance, sig=sig, grace=grace)
    if not exited.done():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), 5)
    return found


def _spawn_error(service: Service, exc: OSError) -> AiradevError:
    program = service.command[0]
    if exc.errno == errno.ENOENT:
        return AiradevError(
            f"services.{service.name}.command: {program} not found",
            "install it, or put its folder on PATH, or fix command in airadev.toml",
        )
    if exc.errno == errno.EACCES:
        return AiradevError(
            f"services.{service.name}.command: {program} is not executable",
            f"chmod +x {program}, or run it through its interpreter",
        )
    return AiradevError(
        f"services.{service.name}: cannot start {program}: {exc.strerror}", "check command and cwd in airadev.toml"
    )
