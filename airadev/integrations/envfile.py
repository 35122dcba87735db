"""Env files: reading them, and telling secret variables from public ones."""

from __future__ import annotations

import functools
import os
import re
import stat as stat_module
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from airadev.errors import AiradevError

SECRET_SUFFIXES = ("_KEY", "_SECRET", "_TOKEN", "_PASSWORD", "_AUTHTOKEN")
PUBLIC_PREFIX = "NEXT_PUBLIC_"


def _templates() -> Path:
    """The env templates, package data of airadev (airadev/env-templates): found beside the
    package's own files however it is installed (a venv, `pip install --prefix`, a system pip,
    an editable checkout)."""
    from importlib.resources import files

    return Path(str(files("airadev") / "env-templates"))


TEMPLATES = _templates()


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
                found.append(
                    TemplateVar(
                        name.strip(),
                        default.strip(),
                        fields[0],
                        fields[1] == "required",
                        fields[2],
                        " ".join(comments[:-1]).strip(),
                    )
                )
        comments = []
    return found


@functools.cache
def marked_secret() -> frozenset[str]:
    """Names the env templates mark secret."""
    if not TEMPLATES.is_dir():
        return frozenset()
    return frozenset(
        v.name
        for t in sorted(TEMPLATES.iterdir())
        if t.suffix != ".md"
        for v in template_vars(t)
        if v.visibility == "secret"
    )


def is_secret(name: str, marked: Iterable[str] | None = None) -> bool:
    """DESIGN.md, Contracts: secret when a template marks it so, or by its name's suffix;
    ``NEXT_PUBLIC_*`` variables are public by definition."""
    if name.startswith(PUBLIC_PREFIX):
        return False
    return name in (marked_secret() if marked is None else set(marked)) or name.upper().endswith(SECRET_SUFFIXES)


def read(path: Path, strict: bool = True) -> dict[str, str]:
    """The variables of an env file (dotenv syntax: quotes, ``export``, comments; no
    interpolation). Strict, a file that is not UTF-8 text, or a line that is neither an
    assignment, a comment nor blank, is an error naming the file and the line (python-dotenv
    alone would only warn and skip the line); else such lines are skipped. The line itself is
    never shown: it may hold a secret."""
    import io

    from dotenv.parser import parse_stream

    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a byte order mark is not part of the text
    try:
        text = data.decode("utf-8")
        if "\x00" in text:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\x00"), data.index(b"\x00") + 1, "a NUL byte")
    except UnicodeDecodeError as exc:
        if strict:
            line = data[: exc.start].count(b"\n") + 1
            raise AiradevError(
                f"{path} line {line}: not text (byte 0x{data[exc.start]:02x})",
                "an env file holds NAME=value lines of UTF-8 text: fix or remove that line",
            ) from None
        text = data.decode("utf-8", errors="replace").replace("\x00", "")
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text, newline=None)):  # CRLF read as LF, as open() does
        if binding.error:
            if strict:
                raise AiradevError(
                    f"{path} line {binding.original.line}: not a NAME=value line",
                    "fix or remove that line (quote a value that holds spaces, # or quotes)",
                )
            continue
        if binding.key is not None and binding.value is not None:
            values[binding.key] = binding.value
    return values


def secrets_of(values: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in values.items() if is_secret(name) and value}


# Secrets that hide in values whatever the variable's name: the password (or a DSN's key) of a
# URL, a PEM block, a JWT.
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:([^@/?#\s]+)@")
_URL_KEY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([A-Za-z0-9_-]{16,})@")  # Sentry's DSN: https://KEY@host/1
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----", re.DOTALL)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")


def secrets_in_values(values: Mapping[str, str]) -> dict[str, str]:
    """The secrets inside the values of ``values``, by ``NAME.part`` (``DATABASE_URL.password``,
    ``SENTRY_DSN.key``, ``GOOGLE_JSON.private_key``, ``X.jwt``), so that redaction hides that
    part and keeps the rest of the line readable. A PEM block is taken as written and with its
    ``\\n`` escapes (JSON) turned into newlines, and the other way round. ``NEXT_PUBLIC_*``
    values are public by definition."""
    from urllib.parse import unquote

    found: dict[str, str] = {}

    def keep(name: str, value: str) -> None:
        key, n = name, 1
        while key in found and found[key] != value:
            n += 1
            key = f"{name}{n}"
        found[key] = value

    for name, value in values.items():
        if name.startswith(PUBLIC_PREFIX) or not value:
            continue
        for match in _URL_PASSWORD.finditer(value):
            keep(f"{name}.password", match.group(1))
            if unquote(match.group(1)) != match.group(1):
                keep(f"{name}.password", unquote(match.group(1)))
        for match in _URL_KEY.finditer(value):
            keep(f"{name}.key", match.group(1))
        for match in _PEM.finditer(value):
            block = match.group()
            keep(f"{name}.private_key", block)
            if "\\n" in block:
                keep(f"{name}.private_key", block.replace("\\n", "\n"))
            elif "\n" in block:
                keep(f"{name}.private_key", block.replace("\n", "\\n"))
        for match in _JWT.finditer(value):
            keep(f"{name}.jwt", match.group())
    return found


# --- rewriting one variable -------------------------------------------------------------------


class EnvFileError(AiradevError):
    """An env file that cannot be rewritten; ``fix`` says what to do."""


@dataclass(frozen=True)
class EnvEdit:
    """One variable set in one env file: enough to undo it byte for byte.

    ``before`` is the original line (line ending included), or None when the variable was not
    there and ``after`` was appended (with the line ending that joined it to the file).
    """

    path: str
    name: str
    before: bytes | None
    after: bytes
    value: str

    def as_json(self) -> dict[str, object]:
        import base64

        def enc(b: bytes | None) -> str | None:
            return None if b is None else base64.b64encode(b).decode()

        return {
            "path": self.path,
            "name": self.name,
            "before": enc(self.before),
            "after": enc(self.after),
            "value": self.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> EnvEdit:
        import base64

        def dec(s: object) -> bytes | None:
            return None if s is None else base64.b64decode(str(s))

        return cls(
            str(data["path"]), str(data["name"]), dec(data["before"]), dec(data["after"]) or b"", str(data["value"])
        )


def _assignment(name: str) -> re.Pattern[bytes]:
    # indent, optional `export`, the name, `=` with its spacing, the rest of the line, the line end
    return re.compile(
        rb"^([ \t]*)(export[ \t]+)?(" + re.escape(name.encode()) + rb")([ \t]*=[ \t]*)(.*?)(\r\n|\n|\r)?$", re.DOTALL
    )


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _eol(data: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in data else b"\n"


def _new_value_part(old: bytes, value: str) -> bytes:
    """The value written in the style of the old one: same quotes, same trailing comment."""
    raw = value.encode()
    if old[:1] in (b'"', b"'"):
        quote = old[:1]
        end = _closing_quote(old, quote)
        if end < 0:
            raise ValueError("multiline")
        if quote == b'"':
            raw = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return quote + raw + quote + old[end + 1 :]
    comment = re.search(rb"[ \t]+#.*$", old, re.DOTALL)
    suffix = comment.group(0) if comment else b""
    if any(ch in value for ch in " #'\"\t"):
        return b'"' + raw + b'"' + suffix
    return raw + suffix


def _closing_quote(old: bytes, quote: bytes) -> int:
    """Index of the quote closing ``old``'s value (a backslash escapes one in double quotes)."""
    index = 1
    while index < len(old):
        char = old[index : index + 1]
        if char == b"\\" and quote == b'"':
            index += 2
            continue
        if char == quote:
            return index
        index += 1
    return -1


def plan_set(data: bytes, name: str, value: str) -> tuple[bytes, bytes | None, bytes]:
    """``(new file bytes, original line or None, line written)`` for setting ``name``.

    The last assignment wins (as in python-dotenv and Next.js's dotenv), so that one is
    rewritten; every other byte stays as it was. An absent variable is appended, keeping the
    file's line endings and its missing final newline, if it had one missing.
    """
    pattern = _assignment(name)
    lines = _lines(data)
    for index in range(len(lines) - 1, -1, -1):
        match = pattern.match(lines[index])
        if not match:
            continue
        indent, export, key, equals, old, end = match.groups()
        try:
            part = _new_value_part(old, value)
        except ValueError:
            raise EnvFileError(f"{name} spans several lines", f"put {name}=... on one line") from None
        after = indent + (export or b"") + key + equals + part + (end or b"")
        lines[index] = after
        return b"".join(lines), match.group(0), after
    line = f"{name}={value}".encode() if not any(ch in value for ch in " #'\"\t") else f'{name}="{value}"'.encode()
    if not data:
        after = line + b"\n"
    elif data.endswith((b"\n", b"\r")):
        after = line + _eol(data)
    else:
        after = _eol(data) + line  # keep the missing final newline missing
    return data + after, None, after


def plan_undo(data: bytes, edit: EnvEdit) -> bytes | None:
    """The file bytes with ``edit`` taken back, or None when the file no longer holds what
    airadev wrote (someone changed it since): then it is left alone."""
    if edit.before is None:
        # The appended bytes, still on a line of their own (lines may have been added after).
        at = data.rfind(edit.after)
        while at >= 0:
            end = at + len(edit.after)
            starts_line = edit.after[:1] in (b"\n", b"\r") or at == 0 or data[at - 1 : at] in (b"\n", b"\r")
            ends_line = edit.after[-1:] in (b"\n", b"\r") or end == len(data) or data[end : end + 1] in (b"\n", b"\r")
            if starts_line and ends_line:
                return data[:at] + data[end:]
            at = data.rfind(edit.after, 0, at)
        return None
    lines = _lines(data)
    matches = [i for i, line in enumerate(lines) if line == edit.after]
    if not matches:
        return None
    lines[matches[-1]] = edit.before
    return b"".join(lines)


def read_value(path: Path, name: str) -> str | None:
    """One variable's value as python-dotenv reads it (a broken line elsewhere does not matter)."""
    return read(path, strict=False).get(name) if path.is_file() else None


def writable(path: Path) -> Path:
    """The real file behind ``path``, after checking it can be rewritten."""
    target = path.resolve()
    if not target.is_file():
        example = next(
            (path.with_name(path.name + s) for s in (".example", ".sample") if path.with_name(path.name + s).is_file()),
            None,
        )
        make = f"cp {example.name} {path}" if example else "create it"
        raise EnvFileError(f"{path} not found", f"{make}, or point the config at the right file")
    if not os.access(target, os.R_OK | os.W_OK) or not os.access(target.parent, os.W_OK | os.X_OK):
        raise EnvFileError(
            f"{path} is not writable (by this user)", f"chmod u+w {target} {target.parent}, or run airadev as its owner"
        )
    return target


# Within one process (the supervisor: the tunnel and Supabase's key wiring both rewrite the UI's
# .env.local from worker threads), one read-modify-write of an env file at a time.
WRITE_LOCK = threading.RLock()


def write_atomic(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` in one rename: a reader sees the old file or the new
    one, never a mix. Same mode and owner; nothing is left behind on failure."""
    st = os.stat(target)
    tmp = target.with_name(f".{target.name}.airadev-{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, stat_module.S_IMODE(st.st_mode))
        if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except PermissionError:
                pass
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EnvFileError(
            f"cannot write {target}: {exc.strerror}", "free some disk space or fix permissions"
        ) from None
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class Planned:
    """A rewrite worked out but not yet written: journal ``edit`` first, then ``apply`` it."""

    target: Path  # the real file (a symlink's target)
    data: bytes
    new: bytes
    edit: EnvEdit

    @property
    def changes(self) -> bool:
        return self.new != self.data


def plan_file(path: Path, name: str, value: str) -> Planned:
    target = writable(path)
    data = target.read_bytes()
    new, before, after = plan_set(data, name, value)
    return Planned(target, data, new, EnvEdit(str(path), name, before, after, value))


BACKUPS_KEPT = 5


def apply(planned: Planned, backup_dir: Path | None = None) -> None:
    """Write a planned rewrite atomically, keeping a backup of the original (the newest
    BACKUPS_KEPT per file, mode 0600: they hold the file's secrets too)."""
    if planned.changes:
        _write_with_backup(planned.target, planned.data, planned.new, backup_dir)


def _write_with_backup(target: Path, data: bytes, new: bytes, backup_dir: Path | None) -> None:
    if backup_dir is not None:
        import time

        backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S") + f".{time.time_ns() % 10**9:09d}"
        fd = os.open(backup_dir / f"{target.name}.{stamp}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        for old in sorted(backup_dir.glob(f"{target.name}.*"))[:-BACKUPS_KEPT]:
            old.unlink(missing_ok=True)
    write_atomic(target, new)


def set_values(path: Path, values: Mapping[str, str], backup_dir: Path | None = None) -> list[str]:
    """Set several variables in one atomic rewrite (with a backup), each by the rules of
    ``plan_set``; only when one differs. Returns the names whose value changed."""
    with WRITE_LOCK:
        target = writable(path)
        data = target.read_bytes()
        current = read(target, strict=False)
        changed = [name for name, value in values.items() if current.get(name) != value]
        if not changed:
            return []
        new = data
        for name in changed:
            new = plan_set(new, name, values[name])[0]
        _write_with_backup(target, data, new, backup_dir)
        return changed


def set_value(path: Path, name: str, value: str, backup_dir: Path | None = None) -> EnvEdit:
    """Set ``name`` in the env file at ``path``, atomically, keeping a backup of the original."""
    planned = plan_file(path, name, value)
    apply(planned, backup_dir)
    return planned.edit


def undo(edit: EnvEdit) -> bool:
    """Take ``edit`` back; False when the file was changed since and is left alone."""
    with WRITE_LOCK:
        target = writable(Path(edit.path))
        data = target.read_bytes()
        new = plan_undo(data, edit)
        if new is None:
            return False
        if new != data:
            write_atomic(target, new)
        return True
