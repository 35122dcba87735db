"""The Supabase CLI: where it is, what `supabase status` says (its URLs and keys), which of
those are secrets. The runtime that runs it as a service is airadev/runtimes/supabase.py.

The CLI is the UI repo's own (``node_modules/.bin/supabase``) or the one on PATH. Its progress
text goes to stderr and its answers to stdout (FACTS.md), so stdout is parsed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from airadev.errors import AiradevError
from airadev.integrations.envfile import secrets_of

INSTALL = "npm i -D -E supabase@2.117.0 (in the UI repo), or install the Supabase CLI on PATH"


class SupabaseError(AiradevError):
    pass


def find_cli(project: Path, env: Mapping[str, str] | None = None) -> str | None:
    local = project / "node_modules" / ".bin" / "supabase"
    if local.exists():
        return str(local)
    return shutil.which("supabase", path=(env or {}).get("PATH"))


def status(cli: str, project: Path, timeout: float = 30) -> dict[str, str]:
    """``supabase status -o json``: the running stack's URLs and keys. SupabaseError when it is
    not running (the CLI exits 1) or answers something else."""
    try:
        result = subprocess.run(
            [cli, "status", "-o", "json", "--workdir", str(project)],
            capture_output=True,
            check=False,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SupabaseError(f"`supabase status` did not answer: {exc}", "see `airadev logs supabase`") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[0]
        raise SupabaseError(f"Supabase is not running: {last[:200]}", "start it: `airadev up supabase`")
    data = parse_status(result.stdout)
    if "API_URL" not in data:
        raise SupabaseError(
            "`supabase status -o json` printed no API_URL",
            "update the Supabase CLI (2.x), and do not exclude its API gateway (kong)",
        )
    return data


_ENV_LINE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))')
_ENV_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def parse_status(text: str, fmt: str = "json") -> dict[str, str]:
    """The values of `supabase status -o json` (or ``fmt="env"``: ``-o env``) from its stdout:
    names to non-empty strings. Anything else in the text (a line of progress, a warning, junk)
    is passed over; a value that is null, empty or not a string or number is left out, so a
    missing key is absent, never "None". Nothing found: {}."""
    found: dict[str, object] = {}
    if fmt == "env":
        for line in text.splitlines():
            match = _ENV_LINE.fullmatch(line.strip())
            if match:
                quoted, bare = match.group(2), match.group(3)
                found[match.group(1)] = (
                    bare
                    if quoted is None
                    else re.sub(r"\\(.)", lambda m: _ENV_ESCAPES.get(m.group(1), m.group(1)), quoted)
                )
    else:
        # Each object that begins a line; the one holding API_URL, else the last (what the CLI
        # prints last: a warning or a JSON log line may come first).
        decoder, objects = json.JSONDecoder(), []
        for match in re.finditer(r"^[ \t]*\{", text, re.MULTILINE):
            try:
                data, _ = decoder.raw_decode(text, match.end() - 1)
            except ValueError:
                continue
            if isinstance(data, dict):
                objects.append(data)
        found = next((o for o in objects if "API_URL" in o), objects[-1] if objects else {})
    return {
        str(k): str(v)
        for k, v in found.items()
        if isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v) != ""
    }


# Values of `supabase status` to hide besides those whose names say secret (envfile.is_secret):
# the S3 access key id is half of a credential pair, printed beside its secret.
HIDDEN = ("S3_PROTOCOL_ACCESS_KEY_ID",)


def secrets(found: Mapping[str, str]) -> dict[str, str]:
    """The values of `supabase status` that must never be shown: every key, JWT and secret."""
    return {**secrets_of(found), **{name: found[name] for name in HIDDEN if found.get(name)}}


# The keys AiRa's code was written for, and the newer ones that take their place when a CLI no
# longer prints them (supabase-js 2 accepts either).
FALLBACKS = {"ANON_KEY": "PUBLISHABLE_KEY", "SERVICE_ROLE_KEY": "SECRET_KEY"}
SOURCES = {
    "NEXT_PUBLIC_SUPABASE_ANON_KEY": "ANON_KEY",
    "SUPABASE_SERVICE_ROLE_KEY": "SERVICE_ROLE_KEY",
    "SUPABASE_KEY": "SERVICE_ROLE_KEY",
}  # the env variables wired with a key, and which


def keys(found: Mapping[str, str]) -> tuple[str, str]:
    """(the public key, the server key): the JWT anon/service-role keys the AiRa code uses,
    else the newer publishable/secret keys; "" when neither."""
    return (
        found.get("ANON_KEY") or found.get("PUBLISHABLE_KEY", ""),
        found.get("SERVICE_ROLE_KEY") or found.get("SECRET_KEY", ""),
    )


def substitutions(found: Mapping[str, str]) -> list[str]:
    """Lines (naming keys, never values) for each older key `supabase status` did not print and
    whose newer one is wired in its place."""
    return [
        f"`supabase status` printed no {old}: its {new} is wired in its place (supabase-js 2 accepts "
        "it; code that decodes the key as a JWT does not)"
        for old, new in FALLBACKS.items()
        if not found.get(old) and found.get(new)
    ]
