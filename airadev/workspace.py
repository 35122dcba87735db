"""Finding the workspace: the folder holding airadev.toml.

Kept apart from the config pipeline so that commands which only need the workspace's
``.airadev/`` folder (status, down) do not pay for loading and validating the config.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from airadev.errors import ConfigError, UsageError

CONFIG_NAME = "airadev.toml"
WORKSPACE_ENV = "AIRADEV_WORKSPACE"


def find_root(start: Path | None = None, explicit: str | Path | None = None) -> Path:
    """The workspace root: ``explicit`` (``--workspace``), else ``$AIRADEV_WORKSPACE``, else
    the first folder from ``start`` upwards holding airadev.toml."""
    given = explicit or os.environ.get(WORKSPACE_ENV)
    if given:
        root = Path(given).expanduser().resolve()
        if not (root / CONFIG_NAME).is_file():
            source = "--workspace" if explicit else WORKSPACE_ENV
            raise ConfigError(
                f"{source} points at {root}, which has no {CONFIG_NAME}",
                f"run `airadev init` there, or point {source} at the folder holding {CONFIG_NAME}",
            )
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise ConfigError(
        f"no {CONFIG_NAME} in {here} or any folder above it",
        "run `airadev init` in your workspace folder (the one holding aira-ui/, voice-agent/, "
        "kb-updater/), or pass --workspace DIR",
    )


def service_names(root: Path) -> dict[str, tuple[str, ...]]:
    """Service names and their aliases, read straight from airadev.toml without validating the
    rest: `airadev logs` needs nothing else, and must work even while the config is broken."""
    import tomllib

    try:
        raw = tomllib.loads((root / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"{root / CONFIG_NAME}: cannot read the service names: {exc}",
            "fix the file (`airadev up` shows what is wrong)",
        ) from None
    services = raw.get("services")
    if not isinstance(services, dict):
        return {}
    names = {}
    for name, body in services.items():
        aliases = body.get("aliases", []) if isinstance(body, dict) else []
        names[name] = tuple(a for a in (aliases if isinstance(aliases, list) else [aliases]) if isinstance(a, str))
    stripe = raw.get("stripe")
    if isinstance(stripe, dict) and stripe.get("enabled", True) is not False:
        names.setdefault("stripe", ())  # the listener [stripe] adds
    return names


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?[bB]?|[bB])?\s*$")


def parse_duration(value: str | int | float) -> float | None:
    """Seconds from ``2``, ``1.5``, ``"500ms"``, ``"2s"``, ``"10m"``, ``"1h"``; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION_RE.match(value)
    if not match:
        return None
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def complete_services(incomplete: str) -> list[str]:
    """Shell completion of service names and aliases, from the airadev.toml found from here
    (or AIRADEV_WORKSPACE); nothing when there is none or it does not parse."""
    try:
        names = service_names(find_root())
    except Exception:  # noqa: BLE001  (completion must never print an error into the shell)
        return []
    every = sorted({n for name, aliases in names.items() for n in (name, *aliases)})
    return [n for n in every if n.startswith(incomplete)]


def config_digest(root: Path) -> str:
    """What `status` compares to tell that airadev.toml changed since `up` applied it (here, not
    in airadev.config: `status` must not pay for importing the config's parser). A checksum and
    the size, not a cryptographic hash: it tells an edit, and zlib loads in a third of the time
    hashlib (OpenSSL) takes."""
    import zlib

    try:
        data = (root / CONFIG_NAME).read_bytes()
    except OSError:
        return ""
    return f"{zlib.crc32(data):08x}{len(data):08x}"


def duration_option(option: str, text: str) -> float:
    """A command-line duration: "90s", "5m", "1.5s", or plain seconds; a bad one is a usage error."""
    seconds = parse_duration(text) if not text.replace(".", "", 1).isdigit() else float(text)
    if seconds is None or seconds <= 0:
        raise UsageError(f"{option} {text}: not a duration", f"write it like {option} 90s, {option} 5m or {option} 120")
    return seconds


def ensure_ignored(gitignore: Path, entry: str) -> bool:
    """Add ``entry`` to a .gitignore unless a line already ignores it."""
    text = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    wanted = {entry, entry.rstrip("/"), "/" + entry, "/" + entry.rstrip("/")}
    if any(line.strip() in wanted for line in text.splitlines()):
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    gitignore.write_text(text + entry + "\n", encoding="utf-8")
    return True
