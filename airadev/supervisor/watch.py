"""Restart-on-change: one watcher for every service's watch paths.

On Linux the watcher is inotify read on the supervisor's own loop (through inotify_simple):
nothing runs while nothing changes. watchfiles, the portable choice, is the fallback elsewhere
(or with ``AIRADEV_WATCH=watchfiles``); its Rust loop wakes every ``step`` ms to poll, which
here costs about 85 µs a wake-up, i.e. 0.09% of a core at a 100 ms step: more than the whole
idle budget of the supervisor.

Folders that never hold source (virtualenvs, caches, node_modules, .git, .airadev, .next) are
not watched at all, and changes are debounced: a service restarts once its files have been
quiet for ``watch_debounce`` seconds (and at most 2 s after the first change).
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airadev.model import Runtime, Service
from airadev.supervisor.unit import changed_files

if TYPE_CHECKING:
    from airadev.supervisor.runner import Supervisor

IGNORED_DIRS = frozenset(
    {
        ".airadev",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "__pycache__",
        "node_modules",
        ".next",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        ".tox",
        ".idea",
        ".vscode",
    }
)
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", "~", ".tmp", ".log")
MAX_DELAY = 2.0  # a steady stream of changes still restarts the service this often

OnChange = Callable[[str, list[Path]], None]


def wanted(relative: Path) -> bool:
    """Whether a change at ``relative`` (to its watch root) is source worth a restart. Only
    the part below the root counts: a workspace may well live under a folder named venv."""
    parts = relative.parts
    if any(part in IGNORED_DIRS for part in parts[:-1]):
        return False
    return bool(parts) and parts[-1] not in IGNORED_DIRS and not parts[-1].endswith(IGNORED_SUFFIXES)


def dispatch(services: dict[str, Service], paths: Iterable[Path]) -> dict[str, list[Path]]:
    """Which services each changed path belongs to (a path may be watched by several)."""
    found: dict[str, set[Path]] = {}
    for path in paths:
        for name, service in services.items():
            for root in service.watch:
                if path == root or path.is_relative_to(root):
                    relative = path.relative_to(root) if path != root else Path(path.name)
                    if wanted(relative) and not any(
                        fnmatch.fnmatch(str(relative), g) or fnmatch.fnmatch(path.name, g) for g in service.watch_ignore
                    ):
                        found.setdefault(name, set()).add(path)
                    break
    return {name: sorted(paths_of) for name, paths_of in found.items()}


class Watcher:
    """Watches the services' paths; ``on_change(service, paths)`` is called on the loop."""

    def __init__(self, services: dict[str, Service], on_change: OnChange) -> None:
        self.services = services
        self.on_change = on_change
        self.roots = sorted({path for s in services.values() for path in s.watch if path.exists()})
        self.debounce = min((s.watch_debounce for s in services.values()), default=0.3)
        self._backend: _Inotify | _Watchfiles | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.roots:
            return
        use_inotify = sys.platform == "linux" and os.environ.get("AIRADEV_WATCH") != "watchfiles"
        if use_inotify:
            try:
                self._backend = _Inotify(self, loop)
            except (ImportError, OSError):
                self._backend = None
        if self._backend is None:
            self._backend = _Watchfiles(self, loop)
        self._backend.start()

    def stop(self) -> None:
        if self._backend is not None:
            self._backend.stop()
            self._backend = None

    @property
    def backend(self) -> str:
        return type(self._backend).__name__.strip("_").lower() if self._backend else "none"

    def changed(self, paths: Iterable[Path]) -> None:
        for name, found in dispatch(self.services, paths).items():
            self.on_change(name, found)


class _Debouncer:
    """Collects changed paths; hands them over once quiet for ``delay`` (at most MAX_DELAY
    after the first)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, flush: Callable[[list[Path]], None]) -> None:
        self.loop, self.delay, self.flush = loop, delay, flush
        self.paths: set[Path] = set()
        self.first = 0.0
        self.handle: asyncio.TimerHandle | None = None

    def add(self, paths: Iterable[Path]) -> None:
        now = self.loop.time()
        if not self.paths:
            self.first = now
        self.paths.update(paths)
        if self.handle:
            self.handle.cancel()
        due = min(now + self.delay, self.first + MAX_DELAY)
        self.handle = self.loop.call_at(due, self._fire)

    def _fire(self) -> None:
        paths, self.paths, self.handle = sorted(self.paths), set(), None
        if paths:
            self.flush(paths)

    def cancel(self) -> None:
        if self.handle:
            self.handle.cancel()


class _Inotify:
    def __init__(self, watcher: Watcher, loop: asyncio.AbstractEventLoop) -> None:
        from inotify_simple import INotify, flags

        self.flags = flags
        self.mask = (
            flags.MODIFY
            | flags.CLOSE_WRITE
            | flags.ATTRIB
            | flags.CREATE
            | flags.DELETE
            | flags.MOVED_FROM
            | flags.MOVED_TO
            | flags.DELETE_SELF
        )
        self.watcher = watcher
        self.loop = loop
        self.inotify = INotify(nonblocking=True)
        self.dirs: dict[int, Path] = {}
        self.debouncer = _Debouncer(loop, watcher.debounce, watcher.changed)

    def start(self) -> None:
        for root in self.watcher.roots:
            self._add_tree(root if root.is_dir() else root.parent, recursive=root.is_dir())
        self.loop.add_reader(self.inotify.fileno(), self._readable)

    def _add_tree(self, top: Path, recursive: bool = True) -> list[Path]:
        """Watch ``top`` (and its folders); return the files already in it, which for a folder
        created just now may have been written before its watch existed."""
        if not recursive:
            self._add(top)
            return []
        found: list[Path] = []
        for folder, subdirs, files in os.walk(top):
            subdirs[:] = [d for d in subdirs if d not in IGNORED_DIRS]
            if not self._add(Path(folder)):
                break
            found.extend(Path(folder) / name for name in files)
        return found

    def _add(self, folder: Path) -> bool:
        try:
            wd = self.inotify.add_watch(folder, self.mask)
        except FileNotFoundError:
            return True
        except OSError:  # out of inotify watches: keep what we have
            return False
        self.dirs[wd] = folder
        return True

    def _readable(self) -> None:
        changed = []
        try:
            events = self.inotify.read(timeout=0)
        except BlockingIOError:
            return
        for event in events:
            folder = self.dirs.get(event.wd)
            if event.mask & self.flags.IGNORED:
                self.dirs.pop(event.wd, None)
                continue
            if folder is None:
                continue
            path = folder / event.name if event.name else folder
            if event.mask & self.flags.ISDIR and event.mask & (self.flags.CREATE | self.flags.MOVED_TO):
                if path.name not in IGNORED_DIRS:
                    changed.extend(self._add_tree(path))
            changed.append(path)
        if changed:
            self.debouncer.add(changed)

    def stop(self) -> None:
        self.debouncer.cancel()
        self.loop.remove_reader(self.inotify.fileno())
        self.inotify.close()


class _Watchfiles:
    STEP_MS = 100

    def __init__(self, watcher: Watcher, loop: asyncio.AbstractEventLoop) -> None:
        self.watcher = watcher
        self.loop = loop
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="airadev-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        import watchfiles

        for changes in watchfiles.watch(
            *self.watcher.roots,
            watch_filter=None,
            debounce=int(self.watcher.debounce * 1000),
            step=self.STEP_MS,
            stop_event=self._stop,
            raise_interrupt=False,
            ignore_permission_denied=True,
        ):
            paths: list[Any] = [Path(p) for _, p in changes]
            self.loop.call_soon_threadsafe(self.watcher.changed, paths)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# Files whose change means a container's image must be built again, not only restarted.
REBUILDS = (
    "requirements.txt",
    "pyproject.toml",
    "uv.lock",
    "poetry.lock",
    "Pipfile.lock",
    "package-lock.json",
    "Dockerfile",
    ".dockerignore",
)


def rebuilds(paths: Iterable[Path]) -> bool:
    return any(
        path.name in REBUILDS or path.name.startswith("requirements") and path.suffix == ".txt" for path in paths
    )


def watch_for_restarts(sup: Supervisor) -> Watcher | None:
    """Start watching the services that have ``watch`` paths: a change restarts the service
    (unless it is being stopped, or the stack is). None when no service is watched."""
    watched = {u.name: u.service for u in sup.units.values() if u.service.watch}
    if not watched:
        return None

    def changed(name: str, paths: list[Path]) -> None:
        unit = sup.units.get(name)
        if unit is None or unit.stop_requested or sup.stopping:  # (removed from the run by `up`)
            return
        why = f"{changed_files(paths, unit.service.cwd)} changed"
        if unit.handover is not None:  # in a debugger, maybe: the user's terminal decides
            sup.event(name, f"{why}; not restarted while attached to {unit.handover.tty}")
            return
        docker = unit.service.docker
        if unit.service.runtime is Runtime.DOCKER and docker and docker.build and rebuilds(paths):
            # Its dependencies changed: the image is built again before the restart. (Code
            # alone needs no build: it is mounted, or the restart is what the user asked for.)
            sup.runtime_context.rebuild.add(name)
            why = f"{why}: rebuilding its image"
        sup.spawn_task(sup.restart_unit(unit, why), f"watch-restart-{name}")

    watcher = Watcher(watched, changed)
    watcher.start(asyncio.get_running_loop())
    sup.event(None, f"watching {', '.join(watched)} for changes ({watcher.backend})")
    return watcher
