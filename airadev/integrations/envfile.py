"""Env files: reading them, and telling secret variables from public ones."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SECRET_SUFFIXES = ("_KEY", "_SECRET", "_TOKEN", "_PASSWORD", "_AUTHTOKEN")
PUBLIC_PREFIX = "NEXT_PUBLIC_"


TEMPLATES = Path(__file__).resolve().parents[2] / "env-templates"


@dataclass(frozen=True)
class TemplateVar:
    """One variable of an env template (env-templates/README.md describes the format)."""

    name: str
    default: str
    visibility: str  # public | server | secret
    required: bool
    format: str
    description: str


def template_vars(path: Path) -> list[TemplateVar]:
    found = []
    comments: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#"):
            comments.append(line.lstrip("#").strip())
            continue
        if "=" in line and comments:
            name, _, default = line.partition("=")
            fields = [f.strip() for f in comments[-1].split("·")]
            if len(fields) == 3:
                found.append(TemplateVar(name.strip(), default.strip(), fields[0], fields[1] == "required",
                                         fields[2], " ".join(comments[:-1]).strip()))
        comments = []
    return found


@functools.cache
def marked_secret() -> frozenset[str]:
    """Names the env templates mark secret."""
    if not TEMPLATES.is_dir():
        return frozenset()
    return frozenset(v.name for t in sorted(TEMPLATES.iterdir()) if t.suffix != ".md"
                     for v in template_vars(t) if v.visibility == "secret")


def is_secret(name: str, marked: Iterable[str] | None = None) -> bool:
    """DESIGN.md, Contracts: secret when a template marks it so, or by its name's suffix;
    ``NEXT_PUBLIC_*`` variables are public by definition."""
    if name.startswith(PUBLIC_PREFIX):
        return False
    return name in (marked_secret() if marked is None else set(marked)) or name.upper().endswith(SECRET_SUFFIXES)


def read(path: Path) -> dict[str, str]:
    """The variables of an env file (dotenv syntax: quotes, ``export``, comments)."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}


def secrets_of(values: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in values.items() if is_secret(name) and value}
