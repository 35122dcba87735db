"""Env files: reading them, and telling secret variables from public ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

SECRET_SUFFIXES = ("_KEY", "_SECRET", "_TOKEN", "_PASSWORD", "_AUTHTOKEN")
PUBLIC_PREFIX = "NEXT_PUBLIC_"


def is_secret(name: str, marked_secret: Iterable[str] = ()) -> bool:
    """DESIGN.md, Contracts: secret when a template marks it so, or by its name's suffix;
    ``NEXT_PUBLIC_*`` variables are public by definition."""
    if name.startswith(PUBLIC_PREFIX):
        return False
    return name in set(marked_secret) or name.upper().endswith(SECRET_SUFFIXES)


def read(path: Path) -> dict[str, str]:
    """The variables of an env file (dotenv syntax: quotes, ``export``, comments)."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}


def secrets_of(values: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in values.items() if is_secret(name) and value}
