"""What detection finds: a service's airadev.toml keys and why, and how it is written as TOML."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from airadev.integrations import envfile

MAX_READ = 256 * 1024  # a source file bigger than this is not an app's entry point


@dataclass
class Found:
    """One service found on disk. ``keys`` are airadev.toml's, in the order they are written;
    paths in them are relative to the service's ``folder`` (its cwd)."""

    name: str
    kind: str  # python | node | redis | postgres | supabase | docker | process
    folder: Path
    keys: dict[str, object]
    why: list[str] = field(default_factory=list)
    port_fixed: bool = True  # decided by the code or its env files, not a default airadev passes


def read_text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_READ:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def env_value(path: Path, name: str) -> str | None:
    if not path.is_file():
        return None
    try:
        return envfile.read(path, strict=False).get(name)
    except (OSError, ValueError):
        return None


def slug(text: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:32]
    return name or "app"


# --- TOML ---------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def toml_value(value: object) -> str:
    """A TOML value on one line: strings (JSON's escapes are TOML's), integers, booleans, arrays,
    inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def service_toml(found: Found, root: Path) -> str:
    lines = [f"# {line}" for line in found.why]
    lines.append(f"[services.{found.name}]")
    cwd = found.folder.relative_to(root).as_posix() if found.folder != root else ""
    if cwd:
        lines.append(f"cwd = {toml_value(cwd)}")
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in found.keys.items()]
    return "\n".join(lines) + "\n"
