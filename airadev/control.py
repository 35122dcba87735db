"""The control channel: a Unix socket in ``.airadev/`` speaking one JSON object per line.

Request ``{"op": "status"}``, answer ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "...", "fix": "..."}``. The socket file is 0600 inside a 0700 folder,
and the server also checks the peer's uid (SO_PEERCRED), so only the user who started the
stack can drive it.

Socket paths are limited to 107 bytes; a deep workspace goes through ``/proc/self/fd/N``,
which the kernel resolves like the real path.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airadev.errors import AiradevError, NotRunning

_MAX_PATH = 107


class Op(enum.StrEnum):
    """What a request asks of the supervisor (``{"op": ...}``)."""

    STATUS = "status"
    DOWN = "down"
    TUNNEL = "tunnel"  # with "action": TunnelAction
    RESTART = "restart"  # with "service" and "wait"
    STOP = "stop"
    START = "start"
    APPLY = "apply"  # with "services": airadev.toml read again and applied (reload.apply)
    ATTACH = "attach"  # with "service" and "tty": a conversation (Session; supervisor/attach.py)


class TunnelAction(enum.StrEnum):
    STATUS = "status"
    OPEN = "open"  # with "domain", "region", "keep", "env"
    CLOSE = "close"  # with "keep"
    VERIFIED = "verified"  # with "address" and "result": a test call's outcome, kept with the open tunnel


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    if len(os.fsencode(path)) <= _MAX_PATH:
        yield str(path)
        return
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{dir_fd}/{path.name}"
    finally:
        os.close(dir_fd)


def bind(path: Path) -> socket.socket:
    """A listening socket at ``path`` (mode 0600), replacing a stale one."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        with _short_path(path) as address:
            sock.bind(address)
    finally:
        os.umask(old_umask)
    sock.listen(16)
    sock.setblocking(False)
    return sock


def peer_uid(sock: socket.socket) -> int:
    import struct

    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def request(path: Path, op: Op, *, timeout: float = 10.0, **args: Any) -> Any:
    """Send one request and return its result. Raises NotRunning when nothing listens, and
    AiradevError with the supervisor's message when it refuses."""
    session = Session(path, op, timeout=timeout, **args)
    try:
        return session.answer(timeout)
    finally:
        session.close()


class Session:
    """One connection: the request, then its answer; `attach` goes on with more lines each way."""

    def __init__(self, path: Path, op: Op, *, timeout: float = 10.0, **args: Any) -> None:
        self.op = op
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self._data = b""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with _short_path(path) as address:
                    self.sock.connect(address)
                break
            except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
                self.sock.close()
                raise NotRunning("nothing is running in this workspace", "start the stack with `airadev up`") from None
            except (BlockingIOError, socket.timeout):  # its backlog is full: it is not taking requests
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise AiradevError(
                        f"the supervisor did not take the '{op}' request within {timeout:g}s",
                        "see `airadev logs airadev`; `airadev down` stops the stack",
                    ) from None
                time.sleep(0.02)
        self.send(op=op, **args)

    def send(self, **message: Any) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def answer(self, timeout: float | None) -> Any:
        """The next answer's result (None: wait as long as it takes)."""
        self.sock.settimeout(timeout)
        while b"\n" not in self._data:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise AiradevError(
                    f"the supervisor did not answer '{self.op}' within {timeout:g}s",
                    "see `airadev logs airadev`; `airadev down` stops the stack",
                ) from None
            if not chunk:
                raise AiradevError(
                    f"the supervisor closed the connection during '{self.op}'",
                    "it may be stopping; run `airadev status`",
                )
            self._data += chunk
        line, self._data = self._data.split(b"\n", 1)
        answer = json.loads(line)
        if not answer.get("ok"):
            raise AiradevError(answer.get("error", "the supervisor refused"), answer.get("fix", ""))
        return answer.get("result")

    def close(self) -> None:
        self.sock.close()
