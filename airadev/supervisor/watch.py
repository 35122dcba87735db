"""Restart-on-change: one watchfiles watcher for every service's watch paths.

The watcher runs in one daemon thread and reports debounced batches of changed files per
service through a callback (which the supervisor turns into a call on its loop). Folders that
never hold source (virtualenvs, caches, node_modules, .git, .airadev, .next) are ignored, and so
are the service's own ``watch_ignore`` globs.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable
from pathlib import Path

from airadev.model import Service

IGNORED_DIRS = frozenset({
    ".airadev", ".git", ".hg", ".svn", ".venv", "venv", "__pycache__", "node_modules", ".next",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", ".tox", ".idea", ".vscode",
})
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", "~", ".tmp", ".log")
# How long the watcher waits for a batch of changes to end; also how often its thread wakes.
STEP_MS = 100


class Watcher:
    def __init__(self, services: dict[str, Service], on_change: Callable[[str, list[Path]], None]) -> None:
        self.services = services
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.roots = sorted({path for s in services.values() for path in s.watch if path.exists()})
        debounces = [s.watch_debounce for s in services.values()]
        self.debounce_ms = int(max(min(debounces, default=0.3), STEP_MS / 1000) * 1000)

    def start(self) -> None:
        if not self.roots:
            return
        self._thread = threading.Thread(target=self._run, name="airadev-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        import watchfiles

        for changes in watchfiles.watch(
            *self.roots, watch_filter=self.wanted, debounce=self.debounce_ms, step=STEP_MS,
            stop_event=self._stop, raise_interrupt=False, ignore_permission_denied=True,
        ):
            by_service = self.dispatch(Path(path) for _, path in changes)
            for name, paths in by_service.items():
                self.on_change(name, paths)

    @staticmethod
    def wanted(_change: object, path: str) -> bool:
        parts = Path(path).parts
        if any(part in IGNORED_DIRS for part in parts):
            return False
        return not parts[-1].endswith(IGNORED_SUFFIXES)

    def dispatch(self, paths: object) -> dict[str, list[Path]]:
        """Which services each changed path belongs to (a path may be watched by several)."""
        found: dict[str, list[Path]] = {}
        for path in paths:  # type: ignore[attr-defined]
            for name, service in self.services.items():
                for root in service.watch:
                    if path == root or path.is_relative_to(root):
                        relative = str(path.relative_to(root)) if path != root else path.name
                        if not any(fnmatch.fnmatch(relative, g) or fnmatch.fnmatch(path.name, g)
                                   for g in service.watch_ignore):
                            found.setdefault(name, []).append(path)
                        break
        for paths_of in found.values():
            paths_of.sort()
        return found
