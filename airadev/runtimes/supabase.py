"""The ``supabase`` runtime: local Supabase through the real CLI, as one service of the stack.

``supabase start`` brings up its containers and returns; the service is ready once
``supabase status -o json`` succeeds and the API answers. Then, once per start, airadev writes
the API URL and keys into the services' env files (only what differs; atomically, with a
backup), applies pending migrations with ``supabase migration up``, and points the KB updater's
trigger at ``host.docker.internal``. Stopping runs ``supabase stop``, which keeps the data
(``down --volumes``: ``--no-backup``). The CLI itself is reached through
airadev/integrations/supabase.py.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from airadev.errors import AiradevError
from airadev.integrations.supabase import (
    FALLBACKS,
    INSTALL,
    SOURCES,
    SupabaseError,
    find_cli,
    keys,
    secrets,
    status,
    substitutions,
)
from airadev.model import Config, Service
from airadev.runtimes.base import Context, Fatal, OnOutput
from airadev.runtimes.process import ProcessInstance, ProcessRuntime


def wiring(config: Config, found: Mapping[str, str]) -> list[tuple[Path, dict[str, str]]]:
    """Which env file gets which values: the UI's .env.local its public URL and anon key and the
    service-role key; the voice agent's and KB updater's env file the URL and service-role key."""
    from airadev.integrations.database import kb_service

    public, server = keys(found)
    url = found["API_URL"]
    plan: list[tuple[Path, dict[str, str]]] = []
    ui_file = config.ui_env_file()
    if ui_file is not None:
        plan.append(
            (
                ui_file,
                {
                    "NEXT_PUBLIC_SUPABASE_URL": url,
                    "NEXT_PUBLIC_SUPABASE_ANON_KEY": public,
                    "SUPABASE_SERVICE_ROLE_KEY": server,
                },
            )
        )
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
            skipped.append(
                f"{where} {name}: `supabase status` printed neither {old} nor {FALLBACKS[old]}; left as it was"
            )
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
        starter = ProcessRuntime(self.ctx.marker).start(
            replace(service, command=tuple(command), cwd=spec.project), env, held.write
        )
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

    def __init__(
        self,
        starter: ProcessInstance,
        cli: str,
        service: Service,
        ctx: Context,
        env: Mapping[str, str],
        held: HeldOutput,
    ) -> None:
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
        return {
            "container": f"supabase_*_{spec.project_id if spec else ''}",
            "image": "(Supabase CLI)",
            "api": self.api_url,
        }

    async def check(self) -> tuple[bool, str]:
        if not self.starter.exited.done():
            return False, "supabase start is running"
        code = self.starter.exited.result()
        if code != 0:
            self.held.release()  # it failed before printing any key: its words are the error
            raise Fatal(
                f"`supabase start` failed (exit code {code})",
                f"see `airadev logs {self.service.name}`; Docker must run and reach Supabase's images",
            )
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
        from airadev.runtimes.postgres import prepare_database

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
        result = subprocess.run(
            [self.cli, "migration", "up", "--local", "--workdir", str(self.project)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            check=False,
        )
        self._deliver(result.stdout)
        if result.returncode != 0:
            last = result.stdout.decode("utf-8", "replace").strip().splitlines()[-1:] or ["(no output)"]
            raise Fatal(
                f"`supabase migration up` failed: {last[0][:200]}",
                f"fix the migration it names in {_relative(self.project / 'supabase' / 'migrations', config.root)}",
            )
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
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self.env,
                timeout=180,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            result = subprocess.CompletedProcess(command, -1, str(exc).encode() + b"\n")
        self._deliver(result.stdout)
        if result.returncode != 0:
            # Its containers may still run: the watchdog, or the next `up` or `down`, tries again.
            self.ctx.stop_options["supabase_left"] = True
            self.ctx.event(
                self.service.name,
                f"`supabase stop` failed (exit code {result.returncode}); the next `airadev up` or `down` tries again",
                "error",
            )
        return 1


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
