"""Runtime: ports, what a dead run left, and where the Python services listen."""

from __future__ import annotations

import re
from pathlib import Path

from airadev.doctor.base import Action, Context, Result, check, error, ok, skipped, warning


def _running_state(ctx: Context) -> dict | None:
    from airadev.state import Paths, read_state, supervisor_alive

    state = read_state(Paths(ctx.root)) if ctx.root else None
    return state if supervisor_alive(state) else None


def _running_marker(ctx: Context) -> str | None:
    state = _running_state(ctx)
    return state["marker"] if state else None


# A service in one of these states holds its port (a container's through the engine's proxy).
_HOLDING = ("starting", "healthy", "running", "unhealthy", "restarting")


def _ours(pid: int, service: str, state: dict | None, marked: set[int]) -> bool:
    """Whether ``pid``, holding ``service``'s port, is the running stack's: a process with the
    run's marker, or in the process group the state file names for a service (Redis rewrites
    its environment, so its marker is gone), or the port of a container (or Supabase) service
    the stack runs (held by the engine's proxy)."""
    import os

    if pid in marked:
        return True
    services = (state or {}).get("services") or {}
    try:
        group = os.getpgid(pid)
    except OSError:
        group = None
    if group is not None and any(s.get("pgid") == group for s in services.values()):
        return True
    mine = services.get(service) or {}
    return mine.get("runtime") in ("docker", "supabase") and mine.get("state") in _HOLDING


@check("runtime.ports", "each port is free, or held by this stack", requires=("workspace.config",))
def ports(ctx: Context) -> list[Result]:
    from airadev.ports import port_holder, port_in_use
    from airadev import reaper

    state = _running_state(ctx)
    marker = state["marker"] if state else None
    ours = set(reaper.marked(marker)) if marker else set()
    results = []
    for service in ctx.config.services:
        if service.port is None:
            continue
        rid = f"runtime.ports:{service.name}"
        if not port_in_use(service.port):
            results.append(ok(rid, f"port {service.port} ({service.name}) is free"))
            continue
        holder = port_holder(service.port)
        if holder and (_ours(holder[0], service.name, state, ours) or marker and not ours):
            results.append(ok(rid, f"port {service.port} is held by this stack ({service.name})"))
        elif holder:
            pid, cmdline = holder  # (whole: cut before redaction, a secret's start would show)
            results.append(
                error(
                    rid,
                    f"port {service.port} ({service.name}) is held by pid {pid}: {cmdline}",
                    f"stop it (kill {pid}), or give services.{service.name} another port",
                )
            )
        elif marker:
            results.append(ok(rid, f"port {service.port} is in use while this stack runs"))
        else:
            results.append(
                error(
                    rid,
                    f"port {service.port} ({service.name}) is held by another user's process",
                    f"find it with `ss -ltnp 'sport = :{service.port}'`, or change the port",
                )
            )
    return results or [skipped("runtime.ports", "no service has a port")]


@check("runtime.leftovers", "nothing is left of a dead run", requires=("workspace.config",))
def leftovers(ctx: Context) -> Result:
    from airadev.state import workspace_id
    from airadev import reaper

    if _running_marker(ctx):
        return ok("runtime.leftovers", "the stack is running; nothing of an earlier run is left")
    assert ctx.root is not None  # it requires workspace.config, which fails without a root
    found = reaper.marked(workspace_id(ctx.root) + ".", exact=False)
    if found:
        return warning(
            "runtime.leftovers",
            f"{len(found)} processes of a run that did not stop are still running",
            "`airadev down` ends them (so does airadev doctor --fix)",
            Action("reap", str(ctx.root), str(len(found))),
        )
    return ok("runtime.leftovers", "no process of an earlier run is left")


@check("runtime.tunnel-journal", "no earlier tunnel left anything rewired", requires=("workspace.config",))
def tunnel_journal(ctx: Context) -> Result:
    """What a tunnel could not put back (Twilio gone, say) stays in .airadev/tunnel.json, and a
    new tunnel refuses to open over it."""
    from airadev.rewiring import FORGET_FIX, Journal, still_rewired
    from airadev.state import Paths, read_state

    assert ctx.root is not None
    paths = Paths(ctx.root)
    journal = Journal.load(paths)
    pending = still_rewired(journal) if journal is not None else []
    tunnel = ((read_state(paths) or {}).get("tunnel") or {}) if _running_marker(ctx) else {}
    if not pending or tunnel.get("state") == "open":  # an open tunnel's rewiring is no leftover
        return ok("runtime.tunnel-journal", "no tunnel left anything rewired")
    return warning(
        "runtime.tunnel-journal",
        f"an earlier tunnel left {len(pending)} things rewired and not put back: " + "; ".join(pending),
        FORGET_FIX,
    )


TRIGGER = re.compile(r"net\.http_post|notify_kb_updater_webhook", re.IGNORECASE)


@check(
    "runtime.bind", "the Python services listen where Supabase's containers reach them", requires=("workspace.config",)
)
def bind(ctx: Context) -> list[Result]:
    from airadev.runtimes.environment import env_file_values

    config = ctx.config
    ui = config.ui_service()
    migrations = ui.cwd / "supabase" / "migrations" if ui else None
    uses_trigger = (
        migrations is not None
        and migrations.is_dir()
        and any(TRIGGER.search(p.read_text(errors="replace")) for p in migrations.glob("*.sql"))
    )
    if not uses_trigger:
        return [skipped("runtime.bind", "no Supabase trigger calls a service")]
    results = []
    for service in config.services:
        if not {"kb", "kb-updater", "voice", "voice-agent"} & set(service.names):
            continue
        rid = f"runtime.bind:{service.name}"
        command = " ".join(service.command)
        try:
            host = {**(env_file_values(service) if service.load_env_files else {}), **dict(service.env)}.get("HOST", "")
        except Exception:  # noqa: BLE001  (a missing env file is env.present's to report)
            host = dict(service.env).get("HOST", "")
        flag = re.search(r"--host[= ](\S+)", command)
        listens = flag.group(1) if flag else (host or "127.0.0.1")
        if listens in ("0.0.0.0", "::"):
            results.append(ok(rid, f"{service.name} listens on {listens}"))
        else:
            results.append(
                error(
                    rid,
                    f"{service.name} listens on {listens} only: the Supabase trigger (pg_net, in a "
                    "container) cannot reach it",
                    f"set HOST=0.0.0.0 in its env file, or add --host 0.0.0.0 to services.{service.name}.command",
                )
            )
    return results or [skipped("runtime.bind", "no voice agent or KB updater service")]


# `body := payload::text` in a call of net.http_post (the AiRa guide's trigger): pg_net's body is jsonb.
_TEXT_BODY = re.compile(r"net\.http_post\s*\((?:[^;]*?)\bbody\s*:=\s*([^,;]*?)::\s*text\b", re.IGNORECASE | re.DOTALL)
_FUNCTION = re.compile(r"\bcreate\s+(?:or\s+replace\s+)?function\s+([\w.\"]+)", re.IGNORECASE)


def _latest_functions(files: list[Path]) -> dict[str, tuple[Path, str]]:
    """Each function's latest definition in the migrations (in their order): (file, its text)."""
    latest: dict[str, tuple[Path, str]] = {}
    for path in files:
        text = path.read_text(errors="replace")
        starts = list(_FUNCTION.finditer(text))
        for i, found in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            latest[found.group(1).replace('"', "").lower()] = (path, text[found.start() : end])
    return latest


@check(
    "runtime.pg-net", "the database triggers call net.http_post as pg_net defines it", requires=("workspace.config",)
)
def pg_net(ctx: Context) -> Result:
    """pg_net's net.http_post takes its body as jsonb; called with text, no function matches
    and the insert that fires the trigger fails, on Supabase and on airadev's postgres runtime.
    Only each function's latest definition counts (a later migration may have fixed it)."""
    from airadev.integrations.database import migration_files

    ui = ctx.config.ui_service()
    db = ctx.config.database()
    folder = db.database.migrations if db and db.database else None
    folder = folder or (ui.cwd / "supabase" / "migrations" if ui else None)
    if folder is None or not folder.is_dir():
        return skipped("runtime.pg-net", "no migrations folder")
    found = []
    for name, (path, text) in _latest_functions([p for _, p in migration_files(folder)]).items():
        for match in _TEXT_BODY.finditer(text):
            expression = match.group(1).strip()
            if expression.count("(") == expression.count(")"):  # not `to_jsonb(x::text)`
                found.append((name, path, expression))
    if not found:
        return ok("runtime.pg-net", "no trigger passes net.http_post a text body")
    name, path, expression = found[0]
    return error(
        "runtime.pg-net",
        f"{ctx.relative(path)}: {name}() calls net.http_post(body := {expression}::text): pg_net's body is "
        "jsonb, so no function matches and every insert that fires the trigger fails"
        + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""),
        f"in a new migration that replaces {name}(), pass a jsonb: body := {expression} if it is jsonb "
        f"already, else body := ({expression})::jsonb",
    )


@check("runtime.database", "the local database can start, and what it is", requires=("workspace.config",))
def database(ctx: Context) -> Result:
    from airadev.model import Runtime

    db = ctx.config.database()
    rid = "runtime.database"
    if db is None:
        return skipped(rid, 'no local database in airadev.toml (runtime = "postgres" or "supabase")')
    if db.runtime is Runtime.SUPABASE:
        return ok(
            rid,
            f"{db.name}: local Supabase through its CLI (API on :{db.port}, database on "
            f":{db.database.db_port if db.database else '?'})",
        )
    from airadev.runtimes.postgres import cluster_dir, find_binary

    server = find_binary("postgres")
    if server is None or find_binary("initdb") is None:
        return error(
            rid,
            f"{db.name}: the PostgreSQL server binaries (initdb, postgres) are missing",
            'apt-get install postgresql, or use runtime = "supabase" (Docker and the Supabase CLI)',
        )
    assert ctx.root is not None  # there is a config (db is of it): it was found under a root
    data = cluster_dir(ctx.root, db) / "data"
    if data.exists() and not (data / "PG_VERSION").is_file():
        return error(
            rid,
            f"{db.name}: {ctx.relative(data)} exists but is not a PostgreSQL cluster",
            "move it away (or delete it: `airadev down --volumes`); the next `airadev up` makes a new one",
        )
    return ok(
        rid,
        f"{db.name}: plain PostgreSQL ({server}), not Supabase: no REST API, no auth; "
        "SQL, migrations and the tunnel's business_numbers only",
    )


@check(
    "runtime.images", "each container's image is on the Docker engine", requires=("tools.docker-engine",), timeout=5.0
)
def images(ctx: Context) -> list[Result]:
    from airadev.model import Runtime

    wanted = [s for s in ctx.config.services if s.runtime is Runtime.DOCKER]
    if not wanted:
        return [ok("runtime.images", 'no service runs as a container (runtime = "docker"): no image needed')]
    import docker as sdk

    from airadev.integrations.docker import image_of
    from airadev.integrations.engine import engine_host

    try:
        client = sdk.DockerClient(base_url=engine_host(ctx.env), timeout=4)
    except sdk.errors.DockerException as exc:
        return [error("runtime.images", f"the Docker engine does not answer: {exc}", "see tools.docker")]
    results = []
    for service in wanted:
        image = image_of(service, ctx.env)
        rid = f"runtime.images:{service.name}"
        try:
            client.images.get(image)
            results.append(ok(rid, f"{service.name}: image {image} is on the engine"))
        except sdk.errors.ImageNotFound:
            if service.docker and service.docker.build:
                results.append(
                    ok(
                        rid,
                        f"{service.name}: image {image} is not built yet; `airadev up` (or `airadev build`) builds it",
                    )
                )
                continue
            results.append(
                warning(
                    rid,
                    f"{service.name}: image {image} is not on the engine; `airadev up` will try to pull it",
                    f"build or pull it (docker pull {image}), or set "
                    f"{service.docker.image_variable(service.name)} to a local image",
                )
            )
        except sdk.errors.DockerException as exc:
            results.append(
                error(rid, f"{service.name}: the engine did not answer: {str(exc)[:120]}", "see tools.docker")
            )
    return results
