"""The workspace's ``.airadev/`` folder: state file, lock, logs and control socket.

``.airadev/`` is mode 0700 and its files 0600. The state file is written atomically
(temporary file and rename) by the supervisor alone, on every state change, so any other
process can read a consistent copy at any time, and a dead run's processes can be found and
reaped from it by the next ``up`` or ``down``.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from airadev.errors import AiradevError

# Why a stack stopped when `airadev down` stopped it: the foreground tunnel tells it apart.
DOWN_REASON = "stopped by airadev down"
SCHEMA = 1


class Paths:
    """Where a workspace keeps its state. (A plain class: `airadev status` should not pay
    for importing dataclasses.)"""

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def dir(self) -> Path:
        return self.root / ".airadev"

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def lock(self) -> Path:
        return self.dir / "lock"

    @property
    def socket(self) -> Path:
        return self.dir / "control.sock"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def supervisor_out(self) -> Path:
        """Where a detached supervisor's own stdout and stderr go (tracebacks of crashes)."""
        return self.dir / "supervisor.out"

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def ensure(self) -> None:
        for folder in (self.dir, self.logs):
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)


def workspace_id(root: Path) -> str:
    """A short, stable id of a workspace: the first part of every run marker."""
    import hashlib

    return hashlib.sha256(str(root).encode()).hexdigest()[:10]


def new_marker(root: Path) -> str:
    import secrets

    return f"{workspace_id(root)}.{secrets.token_hex(6)}"


def write_json_atomic(path: Path, data: dict[str, Any], durable: bool = False) -> None:
    """Replace ``path`` with ``data`` in one rename. ``durable`` also syncs it to disk (the
    tunnel journal: it must outlive a power cut as surely as the change it records)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(data, indent=1).encode())
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_state(paths: Paths) -> dict[str, Any] | None:
    try:
        data = json.loads(paths.state.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def supervisor_alive(state: dict[str, Any] | None) -> bool:
    """Whether the supervisor recorded in ``state`` is still running the stack: it has not
    recorded that it stopped, and it is still that same process (the pid and its start time
    both match, so a recycled pid is not mistaken for it)."""
    from airadev.reaper import alive, start_time

    if not state or state.get("phase") == "stopped":
        return False
    pid = state.get("supervisor_pid")
    return isinstance(pid, int) and alive(pid) and start_time(pid) == state.get("supervisor_start")


class Lock:
    """The run lock: held (flock) by the supervisor for its whole life; released by the kernel
    however it ends."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.fd = -1

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait`` seconds for a stopping supervisor to let go."""
        import time

        self.paths.ensure()
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise AlreadyRunning(read_state(self.paths)) from None
                time.sleep(0.05)
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class AlreadyRunning(AiradevError):
    def __init__(self, state: dict[str, Any] | None) -> None:
        if supervisor_alive(state):
            message = f"airadev is already running this workspace (supervisor pid {state['supervisor_pid']})"  # type: ignore[index]
        else:
            # The lock is held but the state file is not this run's yet: an `up` is starting.
            message = "another `airadev up` is starting in this workspace"
        super().__init__(message, "use `airadev status` to see it, or `airadev down` to stop it first")
