"""The ``supabase`` runtime: local Supabase through the real CLI, as one service of the stack.

``supabase start`` brings up its containers and returns; the service is ready once
``supabase status -o json`` succeeds and the API answers. Then, once per start, airadev writes
the API URL and keys into the services' env files (only what differs; atomically, with a
backup), applies pending migrations with ``supabase migration up``, and points the KB updater's
trigger at ``host.docker.internal``. Stopping runs ``supabase stop``, which keeps the data
(``down --volumes``: ``--no-backup``).

The CLI is the UI repo's own (``node_modules/.bin/supabase``) or the one on PATH. Its progress
text goes to stderr and its answers to stdout (FACTS.md), so stdout is parsed.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from airadev.errors import AiradevError
from airadev.integrations.envfile import secrets_of
from airadev.model import Config, Service
from airadev.supervisor.process import ProcessInstance, ProcessRuntime
from airadev.supervisor.runtime import Context, Fatal, OnOutput

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
        result = subprocess.run([cli, "status", "-o", "json", "--workdir", str(project)], capture_output=True,
                                check=False, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SupabaseError(f"`supabase status` did not answer: {exc}", "see `airadev logs supabase`") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[0]
        raise SupabaseError(f"Supabase is not running: {last[:200]}", "start it: `airadev up supabase`")
    data = parse_status(result.stdout)
    if "API_URL" not in data:
        raise SupabaseError("`supabase status -o json` printed no API_URL",
                            "update the Supabase CLI (2.x), and do not exclude its API gateway (kong)")
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
                found[match.group(1)] = bare if quoted is None else re.sub(
                    r"\\(.)", lambda m: _ENV_ESCAPES.get(m.group(1), m.group(1)), quoted)
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
    return {str(k): str(v) for k, v in found.items()
            if isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v) != ""}


# Values of `supabase status` to hide besides those whose names say secret (envfile.is_secret):
# the S3 access key id is half of a credential pair, printed beside its secret.
HIDDEN = ("S3_PROTOCOL_ACCESS_KEY_ID",)


def secrets(found: Mapping[str, str]) -> dict[str, str]:
    """The values of `supabase status` that must never be shown: every key, JWT and secret."""
    return {**secrets_of(found), **{name: found[name] for name in HIDDEN if found.get(name)}}


# The keys AiRa's code was written for, and the newer ones that take their place when a CLI no
# longer prints them (supabase-js 2 accepts either).
FALLBACKS = {"ANON_KEY": "PUBLISHABLE_KEY", "SERVICE_ROLE_KEY": "SECRET_KEY"}
SOURCES = {"NEXT_PUBLIC_SUPABASE_ANON_KEY": "ANON_KEY", "SUPABASE_SERVICE_ROLE_KEY": "SERVICE_ROLE_KEY",
           "SUPABASE_KEY": "SERVICE_ROLE_KEY"}  # the env variables wired with a key, and which


def keys(found: Mapping[str, str]) -> tuple[str, str]:
    """(the public key, the server key): the JWT anon/service-role keys the AiRa code uses,
    else the newer publishable/secret keys; "" when neither."""
    return (found.get("ANON_KEY") or found.get("PUBLISHABLE_KEY", ""),
            found.get("SERVICE_ROLE_KEY") or found.get("SECRET_KEY", ""))


def substitutions(found: Mapping[str, str]) -> list[str]:
    """Lines (naming keys, never values) for each older key `supabase status` did not print and
    whose newer one is wired in its place."""
    return [f"`supabase status` printed no {old}: its {new} is wired in its place (supabase-js 2 accepts "
            "it; code that decodes the key as a JWT does not)"
            for old, new in FALLBACKS.items() if not found.get(old) and found.get(new)]


def wiring(config: Config, found: Mapping[str, str]) -> list[tuple[Path, dict[str, str]]]:
    """Which env file gets which values: the UI's .env.local its public URL and anon key and the
    service-role key; the voice agent's and KB updater's env file the URL and service-role key."""
    from airadev.integrations.database import kb_service

    public, server = keys(found)
    url = found["API_URL"]
    plan: list[tuple[Path, dict[str, str]]] = []
    if config.ui_service() is not None or config.tunnel.env_file is not None:
        plan.append((config.ui_env_file(), {"NEXT_PUBLIC_SUPABASE_URL": url, "NEXT_PUBLIC_SUPABASE_ANON_KEY": public,
                                           "SUPABASE_SERVICE_ROLE_KEY": server}))
    for service in (config.find(config.tunnel.service, ("voice", "voice-agent")), kb_service(config)):
        if service is not None and service.env_files:
            plan.append((service.env_files[0], {"SUPABASE_URL": url, "SUPABASE_KEY": server}))
    return plan


def wire(config: Config, found: Mapping[str, str], backup_dir: Path) -> tuple[list[str], list[str]]:
    """Write the values into the env files. Returns (what changed, what was skipped or is
    missing), as lines that name variables, never values. A value `supabase status` did not
    give is never written (the variable keeps what it held) and is said so."""
    from airadev.integrations import envfile

    changed, skipped = [], []
    for path, values in wiring(config, found):
        where = _relative(path, config.root)
        if not path.is_file():
            skipped.append(f"{where} does not exist (create it: `airadev doctor --fix`)")
            continue
        names = envfile.set_values(path, {k: v for k, v in values.items() if v}, backup_dir)
        if names:
            changed.append(f"{where}: {', '.join(names)}")
        for name in (k for k, v in values.items() if not v):
            old = SOURCES.get(name, "SERVICE_ROLE_KEY")
            skipped.append(f"{where} {name}: `supabase status` printed neither {old} nor {FALLBACKS[old]}; "
                           "left as it was")
    return changed, skipped


class SupabaseRuntime:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def start(self, service: Service, env: Mapping[str, str], on_output: OnOutput) -> SupabaseInstance:
        spec = service.database
        assert spec is not None and spec.project is not None
        cli = find_cli(spec.project, env)
        if cli is None:
            raise SupabaseError(f"services.{service.name}: the Supabase CLI is not installed", INSTALL)
        command = [cli, "start", "--workdir", str(spec.project)]
        if spec.exclude:
            command += ["-x", ",".join(spec.exclude)]
        held = HeldOutput(on_output)
        starter = ProcessRuntime(self.ctx.marker).start(replace(service, command=tuple(command), cwd=spec.project),
                                                         env, held.write)
        return SupabaseInstance(starter, cli, service, self.ctx, env, held)


class HeldOutput:
    """`supabase start` prints the stack's keys (and JWT secret) when it is done, before airadev
    knows them to hide them: its output is held until they are known (or it failed), then let
    through the redactor in order. Loop-only."""

    LIMIT = 4 << 20

    def __init__(self, on_output: OnOutput) -> None:
        self.on_output = on_output
        self.chunks: list[bytes] = []
        self.size = 0
        self.holding = True

    def write(self, data: bytes) -> None:
        if not self.holding:
            self.on_output(data)
        elif self.size < self.LIMIT:
            self.chunks.append(data)
            self.size += len(data)

    def drop(self) -> None:
        """Its keys could not be learnt: none of it is shown (it may hold them)."""
        if self.chunks:
            self.chunks = [b"(the output of `supabase start` is not shown: its keys could not be read to hide them)\n"]

    def release(self) -> None:
        self.holding = False
        chunks, self.chunks = self.chunks, []
        for chunk in chunks:
            self.on_output(chunk)


class SupabaseInstance:
    """Local Supabase: first the `supabase start` process, then its containers until
    `supabase stop`. Owned by the supervisor's loop."""

    readiness = "`supabase status` and the API"

    def __init__(self, starter: ProcessInstance, cli: str, service: Service, ctx: Context,
                 env: Mapping[str, str], held: HeldOutput) -> None:
        self.starter = starter
        self.pid = starter.pid
        self.pgid = starter.pgid
        self.cli = cli
        self.service = service
        self.ctx = ctx
        self.env = dict(env)
        self.held = held
        self._on_output = held.write
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._prepared = False
        self.api_url = ""
        self._stopping: asyncio.Future[int] | None = None

    @property
    def exited(self) -> asyncio.Future[int]:
        return self._exited

    @property
    def project(self) -> Path:
        assert self.service.database is not None and self.service.database.project is not None
        return self.service.database.project

    def describe(self) -> str:
        return "supabase start"

    def info(self) -> dict[str, Any]:
        spec = self.service.database
        return {"container": f"supabase_*_{spec.project_id if spec else ''}", "image": "(Supabase CLI)",
                "api": self.api_url}

    async def check(self) -> tuple[bool, str]:
        if not self.starter.exited.done():
            return False, "supabase start is running"
        code = self.starter.exited.result()
        if code != 0:
            self.held.release()  # it failed before printing any key: its words are the error
            raise Fatal(f"`supabase start` failed (exit code {code})",
                        f"see `airadev logs {self.service.name}`; Docker must run and reach Supabase's images")
        self.pid = None
        return await asyncio.to_thread(self._check)

    def _check(self) -> tuple[bool, str]:
        import httpx

        try:
            found = status(self.cli, self.project)
        except SupabaseError as exc:
            return False, exc.message
        self.ctx.hide(secrets(found))
        self._loop.call_soon_threadsafe(self.held.release)  # after the hiding above: same queue
        self.api_url = found["API_URL"]
        try:
            answer = httpx.get(self.api_url.rstrip("/") + "/rest/v1/", timeout=3)
        except httpx.HTTPError as exc:
            return False, f"the API at {self.api_url} does not answer ({type(exc).__name__})"
        if answer.status_code >= 500:
            return False, f"the API at {self.api_url} answers {answer.status_code}"
        if not self._prepared:
            self._prepare(found)
            self._prepared = True
        return True, f"API at {self.api_url}"

    def _prepare(self, found: Mapping[str, str]) -> None:
        """Once per start: keys into the env files, pending migrations, the trigger's URL."""
        from airadev.integrations import database
        from airadev.state import Paths
        from airadev.supervisor.postgres import prepare_database

        config, name = self.ctx.config, self.service.name
        try:
            changed, skipped = wire(config, found, Paths(config.root).dir / "backups")
        except AiradevError as exc:
            raise Fatal(f"wiring Supabase's keys failed: {exc.message}", exc.fix) from None
        for line in substitutions(found):
            self.ctx.event(name, line, "warning")
        for line in changed:
            self.ctx.event(name, f"wired Supabase into {line}", "info")
        for line in skipped:
            self.ctx.event(name, f"not wired: {line}", "warning")
        result = subprocess.run([self.cli, "migration", "up", "--local", "--workdir", str(self.project)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=self.env, check=False)
        self._deliver(result.stdout)
        if result.returncode != 0:
            last = result.stdout.decode("utf-8", "replace").strip().splitlines()[-1:] or ["(no output)"]
            raise Fatal(f"`supabase migration up` failed: {last[0][:200]}",
                        f"fix the migration it names in {_relative(self.project / 'supabase' / 'migrations', config.root)}")
        try:
            with database.connect(found.get("DB_URL") or database.url(self.service)) as conn:
                prepare_database(self.ctx, self.service, conn)
        except database.DatabaseError as exc:
            raise Fatal(exc.message, exc.fix) from None

    def _deliver(self, data: bytes) -> None:
        """A finished command's output, from a worker thread, as whole lines."""
        if data:
            self._loop.call_soon_threadsafe(self._on_output, data if data.endswith(b"\n") else data + b"\n")

    async def stop(self, sig: int, grace: float) -> int:
        """One stop, however many ask for it: a second caller waits for the first one's
        `supabase stop` rather than seeing the service gone before it is."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(sig, grace))
        return await asyncio.shield(self._stopping)

    async def _stop(self, sig: int, grace: float) -> int:
        found = await self.starter.stop(sig, grace)
        # Stopped before its keys were known: learn them now, or show none of its output.
        if self.held.holding and not await asyncio.to_thread(self._learn_keys):
            self.held.drop()
        self.held.release()
        found += await asyncio.to_thread(self._supabase_stop)
        if not self._exited.done():
            self._exited.set_result(0)
        return found

    def _learn_keys(self) -> bool:
        try:
            found = status(self.cli, self.project, timeout=15)
        except SupabaseError:
            return False
        self.ctx.hide(secrets(found))
        return True

    def _supabase_stop(self) -> int:
        command = [self.cli, "stop", "--workdir", str(self.project)]
        if self.ctx.stop_options.get("volumes"):
            command.append("--no-backup")
        try:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=self.env, timeout=180, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            result = subprocess.CompletedProcess(command, -1, str(exc).encode() + b"\n")
        self._deliver(result.stdout)
        if result.returncode != 0:
            # Its containers may still run: the watchdog, or the next `up` or `down`, tries again.
            self.ctx.stop_options["supabase_left"] = True
            self.ctx.event(self.service.name, f"`supabase stop` failed (exit code {result.returncode}); "
                           "the next `airadev up` or `down` tries again", "error")
        return 1


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
