"""The ``postgres`` runtime: a local PostgreSQL cluster in ``.airadev/postgres/<service>/``.

Where there is no Docker engine or no Supabase CLI, this stands in for Supabase's database:
the server binaries (``initdb``, ``postgres``) run as an ordinary process group of the stack,
on the DB port (54322), trusting loopback (and the stack's own network, when the run has
containers). Readiness is "accepts connections, and the UI repo's migrations are applied"; a
broken migration leaves the service failed with the file and PostgreSQL's error. It is not
Supabase: no REST API, no auth service.

PostgreSQL refuses to run as root. As root, airadev runs it in a user namespace of its own
(``unshare -U``): inside, the server is the unmapped user, and the files it writes are still
root's, so ``.airadev/`` keeps its mode 0700 (found on this machine; see the README).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from airadev.errors import AiradevError
from airadev.model import Runtime, Service
from airadev.state import Paths
from airadev.runtimes.process import ProcessInstance, ProcessRuntime
from airadev.runtimes.base import Context, Fatal, OnOutput


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else from Debian's newest /usr/lib/postgresql/<major>/bin (by number:
    16 is newer than 9.6)."""
    found = shutil.which(name)
    if found:
        return found

    def major(path: str) -> tuple[int, ...]:
        version = Path(path).parts[-3]
        return tuple(int(p) for p in version.split(".") if p.isdigit())

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=major, reverse=True)
    return candidates[0] if candidates else None


def cluster_dir(root: Path, service: Service) -> Path:
    return Paths(root).dir / "postgres" / service.name


def _namespace() -> list[str]:
    return ["unshare", "--user"] if os.geteuid() == 0 else []


class PostgresRuntime:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def start(self, service: Service, env: Mapping[str, str], on_output: OnOutput) -> PostgresInstance:
        binaries = {name: find_binary(name) for name in ("initdb", "postgres")}
        missing = [name for name, path in binaries.items() if path is None]
        if missing:
            raise AiradevError(
                f"services.{service.name}: the PostgreSQL server binaries are missing ({', '.join(missing)})",
                'apt-get install postgresql (or put its bin/ on PATH), or use runtime = "supabase"',
            )
        home = cluster_dir(self.ctx.config.root, service)
        data = home / "data"
        if not (data / "PG_VERSION").is_file():
            if data.is_dir() and any(data.iterdir()):
                raise AiradevError(
                    f"services.{service.name}: {data} is not a PostgreSQL cluster",
                    "move it away (or `airadev down --volumes` deletes it); the next start makes a new one",
                )
            await asyncio.to_thread(self._initdb, service, str(binaries["initdb"]), data)
            self.ctx.event(
                service.name, f"created a new PostgreSQL cluster in {data.relative_to(self.ctx.config.root)}", "info"
            )
        command = (
            *_namespace(),
            str(binaries["postgres"]),
            "-D",
            str(data),
            "-p",
            str(service.port),
            # TCP only: a socket under a deep workspace path would pass the 107-byte limit of
            # socket paths.
            "-c",
            "unix_socket_directories=",
            "-c",
            "logging_collector=off",
            *await asyncio.to_thread(self._listen, home),
        )
        process = ProcessRuntime(self.ctx.marker).start(replace(service, command=command, cwd=home), env, on_output)
        return PostgresInstance(process, service, self.ctx, on_output)

    def _listen(self, home: Path) -> list[str]:
        """Loopback; and when containers of the run need it (``DATABASE_URL`` reaches them as
        host.docker.internal), the address they reach this machine at, trusted from the stack's
        own network only: the cluster's pg_hba.conf and that one line, in a file beside the
        cluster written at each start (0600, like everything in .airadev/)."""
        from airadev.runtimes.reach import reach_from_containers

        reach = reach_from_containers(self.ctx)
        if reach is None:
            return ["-c", "listen_addresses=127.0.0.1"]
        address, subnet = reach
        own = (home / "data" / "pg_hba.conf").read_text()
        text = (
            f"{own.rstrip()}\n\n# airadev: this run's containers (the stack's network)\nhost all all {subnet} trust\n"
        )
        hba = home / "pg_hba.conf"
        fd = os.open(hba, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return ["-c", f"listen_addresses=127.0.0.1,{address}", "-c", f"hba_file={hba}"]

    def _initdb(self, service: Service, initdb: str, data: Path) -> None:
        """A new cluster, made beside its final place and renamed into it, so a killed initdb
        never leaves a half-made cluster that the next start would try to use."""
        for folder in (data.parent.parent, data.parent):  # .airadev/postgres/<service>: private
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)
        building = data.with_name("data.new")
        shutil.rmtree(building, ignore_errors=True)
        user = "postgres"  # the cluster's superuser, as Supabase's; database.user is made by _prepare
        result = subprocess.run(
            [
                *_namespace(),
                initdb,
                "-D",
                str(building),
                "-U",
                user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if result.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            tail = " / ".join(result.stdout.strip().splitlines()[-3:])
            if _namespace() and "unshare" in tail:
                raise AiradevError(
                    f"services.{service.name}: PostgreSQL refuses to run as root, and this machine "
                    f"allows no user namespace to run it in ({tail})",
                    'run airadev as a normal user, or use runtime = "supabase"',
                )
            raise AiradevError(
                f"services.{service.name}: initdb failed: {tail}",
                f"check that {data.parent} is writable; run with --debug for more",
            )
        os.rename(building, data)


class PostgresInstance:
    """A PostgreSQL server process group, ready once its migrations are applied."""

    readiness = "connections and migrations"

    def __init__(self, process: ProcessInstance, service: Service, ctx: Context, on_output: OnOutput) -> None:
        self.process = process
        self.pid = process.pid
        self.pgid = process.pgid
        self.service = service
        self.ctx = ctx
        self._prepared = False
        self._on_output = on_output
        self._loop = asyncio.get_running_loop()
        self.deliverer: Any = None  # pgnet.Deliverer, once the database is prepared

    @property
    def exited(self) -> asyncio.Future[int]:
        return self.process.exited

    def describe(self) -> str:
        return f"postgres on :{self.service.port}"

    def info(self) -> dict[str, Any]:
        from airadev.integrations import database

        return {**self.process.info(), "database_url": database.shown_url(self.service)}

    async def stop(self, sig: int, grace: float) -> int:
        # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to leave;
        # SIGINT ("fast") rolls back open sessions and stops cleanly.
        if self.deliverer is not None:
            self.deliverer.stop()
        found = await self.process.stop(signal.SIGINT if sig == signal.SIGTERM else sig, grace)
        if self.deliverer is not None:  # its connection ended with the server (a request in
            await asyncio.to_thread(self.deliverer.join, 2)  # flight is sent again next start)
        return found

    async def check(self) -> tuple[bool, str]:
        from airadev.integrations import database

        return await asyncio.to_thread(self._check, database)

    def _check(self, database: Any) -> tuple[bool, str]:
        import psycopg

        try:
            if not self._prepared:
                with database.connect(database.url(self.service, admin=True), timeout=2) as conn:
                    made = database.ensure_database(conn, self.service.database)
                if made:
                    self.ctx.event(self.service.name, f"created {' and '.join(made)}", "info")
            with database.connect(database.url(self.service), timeout=2) as conn:
                if not self._prepared:
                    return True, self._prepare(database, conn)
                conn.execute("SELECT 1")
                return True, "accepting connections"
        except database.DatabaseError as exc:
            if exc.message.startswith("cannot connect"):
                return False, exc.message
            raise Fatal(exc.message, exc.fix) from None
        except psycopg.Error as exc:
            raise Fatal(
                f"preparing the database failed: {database._first_line(exc)}",
                "run with --debug, or look at the service's log: `airadev logs " + self.service.name + "`",
            ) from None

    def _prepare(self, database: Any, conn: Any) -> str:
        """Once per start: pending migrations, then the KB trigger's URL."""
        spec = self.service.database
        applied = database.apply_migrations(conn, spec.migrations if spec else None, shim=True)
        if applied:
            self.ctx.event(self.service.name, f"applied {len(applied)} migrations: {', '.join(applied)}", "info")
        prepare_database(self.ctx, self.service, conn)
        self._deliver(database)
        self._prepared = True
        return f"accepting connections, {len(applied)} migrations applied"

    def _deliver(self, database: Any) -> None:
        """Start sending what the database's triggers post (net.http_post), into its log."""
        from airadev.integrations.pgnet import Deliverer

        ports = {s.port: s.name for s in self.ctx.config.services if s.port and s.name != self.service.name}

        def write(line: str) -> None:
            self._loop.call_soon_threadsafe(self._on_output, (line + "\n").encode())

        self.deliverer = Deliverer(database.url(self.service), write, ports.get)
        self.deliverer.start()


def prepare_database(ctx: Context, service: Service, conn: Any) -> None:
    """What every local database of the stack gets once it is up: the KB updater's trigger
    pointed where the database's requests reach it (Supabase's pg_net, in a container, or
    airadev's, on this machine)."""
    from airadev.integrations import database

    kb = database.kb_service(ctx.config)
    target = None if kb is None else database.local_trigger_url(kb, from_containers=service.runtime is Runtime.SUPABASE)
    changed = None if target is None else database.set_trigger_url(conn, target)
    if changed:
        ctx.event(service.name, f"{database.TRIGGER_FUNCTION}() now posts to {changed[1]} (was {changed[0]})", "info")
    from airadev.rewiring import recover_database_rows
    from airadev.state import Paths

    for line in recover_database_rows(Paths(ctx.config.root), ctx.marker):
        ctx.event(None, f"tunnel: an earlier tunnel's {line}", "info")
