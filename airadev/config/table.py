"""Reading one TOML table of airadev.toml: typed values with defaults, unknown keys caught with
the closest valid one suggested, every error naming the file, the table and the key."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airadev.errors import ConfigError, did_you_mean
from airadev.workspace import parse_duration

RESERVED_NAMES = {"airadev", "all"}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# A command string with any of these is run by /bin/sh -c; otherwise it is split like a shell would.
_SHELL_CHARS = set("|&;<>()$`*?~\n")


class Table:
    """Typed reads from one TOML table, remembering which keys were used."""

    def __init__(self, data: Mapping[str, Any], file: Path, where: str) -> None:
        self.used: set[str]
        self.data, self.file, self.where, self.used = data, file, where, set()

    def error(self, key: str, problem: str, fix: str) -> ConfigError:
        place = f"{self.where}.{key}" if self.where else key
        return ConfigError(f"{self.file}: {place}: {problem}", fix)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: type | tuple[type, ...], *, default: Any = None, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                where = f"[{self.where}]" if self.where else "the file"
                raise ConfigError(f"{self.file}: {where} has no '{key}'", f"add {key} = ... to {where}")
            return default
        value = self.data[key]
        # bool is an int in Python; never accept one for the other.
        if isinstance(value, bool) and bool not in _as_tuple(kind):
            value_ok = False
        else:
            value_ok = isinstance(value, kind)
        if not value_ok:
            raise self.error(
                key, f"expected {_kind_name(kind)}, got {show(value)}", f"write {key} as {_kind_name(kind)}"
            )
        return value

    def table(self, key: str) -> Table:
        return Table(self.get(key, dict, default={}), self.file, f"{self.where}.{key}".lstrip("."))

    def duration(self, key: str, default: float) -> float:
        value = self.get(key, (str, int, float), default=None)
        if value is None:
            return default
        seconds = parse_duration(value)
        if seconds is None or seconds < 0:
            raise self.error(
                key,
                f'expected a duration such as "2s" or "500ms", got {show(value)}',
                f'write {key} = "2s" (units: ms, s, m, h)',
            )
        return seconds

    def positive_int(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.get(key, int, default=default)
        if value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}", f"set {key} to {minimum} or more")
        return value

    def str_list(self, key: str, default: Iterable[str] = ()) -> tuple[str, ...]:
        value = self.get(key, (list, str), default=list(default))
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(item, str) for item in value):
            raise self.error(key, "expected a list of strings", f'write {key} = ["a", "b"]')
        return tuple(value)

    def finish(self, valid: Iterable[str]) -> None:
        valid = list(valid)
        for key in self.data:
            if key not in valid:
                raise self.error(key, f"unknown key{did_you_mean(key, valid)}", f"valid keys here: {', '.join(valid)}")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in _as_tuple(kind))


def show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 40 else text[:37] + "..."


# --- values ------------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?[bB]?|[bB])?\s*$")


def parse_size(value: str | int) -> int | None:
    """Bytes from ``1048576``, ``"20MB"``, ``"512k"``, ``"1GiB"`` (powers of 1024); None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(value)
    if not match:
        return None
    unit = (match.group(2) or "b")[0].lower()
    return int(float(match.group(1)) * {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit])


def split_command(command: str) -> tuple[str, ...]:
    """argv for a command string: shell syntax (and a leading ``VAR=value``, as Procfiles have)
    goes through ``/bin/sh -c``."""
    if any(ch in _SHELL_CHARS for ch in command) or re.match(r"^\s*[A-Za-z_]\w*=", command):
        return ("/bin/sh", "-c", command)
    return tuple(shlex.split(command))


def command(t: Table, key: str, raw: str) -> tuple[str, ...]:
    try:
        return split_command(raw)
    except ValueError as exc:  # shlex: "No closing quotation"
        raise t.error(
            key,
            f"cannot be split into words: {str(exc).lower()}",
            'close the quote, or write it as a list: ["prog", "arg"]',
        ) from None


def valid_url(raw: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(raw)
        parts.port  # (raises ValueError on a bad port)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def service_ref(t: Table, key: str, names: set[str]) -> str:
    value = t.get(key, str, default="")
    if value and value not in names:
        raise t.error(
            key, f'unknown service "{value}"{did_you_mean(value, names)}', f"services are: {', '.join(sorted(names))}"
        )
    return value


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "service"
