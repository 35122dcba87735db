"""The parts every doctor check is made of: a result (ok, warning, error, skipped) with its fix
and the safe action that carries it out, the ``check`` decorator that registers a check, and
the context checks read (the workspace, its config, the env files, the environment)."""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from airadev.errors import AiradevError


class Status(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Action:
    """A safe, idempotent fix `doctor --fix` may carry out: ``kind`` names the fixer."""

    kind: str
    target: str
    detail: str = ""
    install: bool = False  # installs packages: only with --install, or when asked on a terminal

    def describe(self) -> str:
        return FIX_TEXT.get(self.kind, self.kind).format(target=self.target, detail=self.detail)


FIX_TEXT = {
    "create-env": "create {target} from {detail} (mode 0600)",
    "gitignore": "add {detail} to {target}",
    "chmod": "chmod 600 {target}",
    "reap": "end the {detail} processes a dead run left",
    "npm-ci": "run npm ci in {target}",
    "pip-install": "pip install -r {target}/requirements.txt with {detail}",
    "new-venv": "create {target}/.venv and pip install -r {target}/requirements.txt there",
    "node-install": "run {detail} in {target}",
    "uv-sync": "run uv sync in {target}",
}


@dataclass(frozen=True)
class Result:
    id: str
    group: str
    status: Status
    message: str
    fix: str = ""
    duration: float = 0.0
    action: Action | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "status": str(self.status),
            "message": self.message,
            "fix": self.fix,
            "duration": round(self.duration, 4),
        }


@dataclass(frozen=True)
class Check:
    id: str
    group: str
    title: str
    run: Callable[[Context], Result | list[Result]]
    requires: tuple[str, ...] = ()
    timeout: float = 3.0
    live: bool = False


REGISTRY: dict[str, Check] = {}
GROUPS = ("tools", "workspace", "env", "secrets", "runtime", "live")


def check(
    id: str, title: str, *, requires: Sequence[str] = (), timeout: float = 3.0, live: bool = False
) -> Callable[[Callable[[Context], Result | list[Result]]], Callable[..., Any]]:
    def register(fn: Callable[[Context], Result | list[Result]]) -> Callable[..., Any]:
        group = id.split(".", 1)[0]
        REGISTRY[id] = Check(id, group, title, fn, tuple(requires), timeout, live)
        return fn

    return register


def ok(id: str, message: str) -> Result:
    return Result(id, id.split(".", 1)[0], Status.OK, message)


def warning(id: str, message: str, fix: str, action: Action | None = None) -> Result:
    return Result(id, id.split(".", 1)[0], Status.WARNING, message, fix, action=action)


def error(id: str, message: str, fix: str, action: Action | None = None) -> Result:
    return Result(id, id.split(".", 1)[0], Status.ERROR, message, fix, action=action)


def skipped(id: str, message: str) -> Result:
    return Result(id, id.split(".", 1)[0], Status.SKIPPED, message)


# --- what checks look at ----------------------------------------------------------------------------


@dataclass
class Context:
    """The workspace as the checks see it. Read-only for checks; values are computed once."""

    start: Path
    explicit: str | None = None
    offline: bool = False
    debug: bool = False
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    python_version: tuple[int, ...] = field(default_factory=lambda: tuple(__import__("sys").version_info[:3]))

    @cached_property
    def root(self) -> Path | None:
        from airadev.workspace import find_root

        try:
            return find_root(self.start, self.explicit)
        except AiradevError:
            return None

    @cached_property
    def config_or_error(self) -> Any:
        from airadev.config import load

        if self.root is None:
            return AiradevError("no airadev.toml here or above", "run `airadev init` in your workspace folder")
        try:
            return load(self.root)
        except AiradevError as exc:
            return exc

    @property
    def config(self) -> Any:
        config = self.config_or_error
        return None if isinstance(config, AiradevError) else config

    @cached_property
    def env_files(self) -> list[EnvFile]:
        """Every env file of every service, with the template it is checked against."""
        from airadev.doctor.templates import template_for

        config = self.config
        if config is None:
            return []
        from airadev.model import Runtime

        found = []
        for service in config.services:
            if service.runtime is Runtime.STRIPE:  # the UI's env file, checked as the UI's
                continue
            for path in service.env_files:
                found.append(EnvFile(service.name, path, template_for(service, path)))
        return found

    def relative(self, path: Path) -> str:
        from airadev.integrations.envfile import TEMPLATES

        if path.is_relative_to(TEMPLATES):
            return str(path.relative_to(TEMPLATES.parent))  # airadev's own env-templates/
        if self.root is not None:
            try:
                return str(path.relative_to(self.root))
            except ValueError:
                pass
        return str(path)


@dataclass
class EnvFile:
    service: str
    path: Path
    template: Any  # doctor.templates.Template | None

    @cached_property
    def values(self) -> dict[str, str]:
        from airadev.integrations import envfile

        return envfile.read(self.path, strict=False) if self.path.is_file() else {}

    @cached_property
    def problem(self) -> AiradevError | None:
        """What makes the file unreadable to `up`, or None."""
        from airadev.integrations import envfile

        try:
            envfile.read(self.path)
        except AiradevError as exc:
            return exc
        return None
