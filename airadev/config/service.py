"""One service of airadev.toml: ``[services.NAME]`` and its tables (docker, health, restart,
depends_on, the database's project), read into a frozen ``model.Service``."""

from __future__ import annotations

import os
import re
import signal
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airadev.config.table import NAME_RE, RESERVED_NAMES, Table, command, show, slug, valid_url
from airadev.errors import ConfigError, did_you_mean
from airadev.model import (
    BuildSpec,
    Condition,
    DatabaseSpec,
    Dependency,
    DockerSpec,
    Probe,
    ProbeKind,
    Restart,
    RestartPolicy,
    Runtime,
    Service,
)

SERVICE_KEYS = (
    "aliases",
    "runtime",
    "command",
    "cwd",
    "env_files",
    "load_env_files",
    "env",
    "port",
    "health",
    "depends_on",
    "restart",
    "stop_signal",
    "stop_grace",
    "watch",
    "watch_ignore",
    "watch_debounce",
    "venv",
    "description",
    "template",
    "docker",
    "project",
    "migrations",
    "exclude",
    "database",
    "user",
    "password",
)
# `template = "..."`: the AiRa service whose env template (env-templates/) its env file follows.
AIRA_TEMPLATES = ("aira-ui", "voice-agent", "kb-updater")
DB_KEYS = ("project", "migrations", "exclude", "database", "user", "password")
# PostgreSQL names airadev creates (unquoted identifiers; a hyphen is quoted when created).
SQL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.$-]{0,62}$")
# `supabase start -x`: the containers it may leave out (Supabase CLI 2.x).
SUPABASE_CONTAINERS = (
    "gotrue",
    "realtime",
    "storage-api",
    "imgproxy",
    "kong",
    "mailpit",
    "inbucket",
    "postgrest",
    "postgres-meta",
    "studio",
    "edge-runtime",
    "logflare",
    "vector",
    "supavisor",
)
DOCKER_KEYS = ("image", "command", "port", "volumes", "env", "healthcheck", "build")
BUILD_KEYS = ("context", "dockerfile", "target", "args", "network")
DB_DEFAULT_PORT = {Runtime.POSTGRES: 54322, Runtime.SUPABASE: 54321}
HEALTH_KEYS = ("http", "tcp", "exec", "log", "interval", "start_interval", "timeout", "start_period", "retries")
RESTART_KEYS = ("policy", "max_restarts", "backoff", "backoff_max", "jitter", "reset_after")


def parse_service(name: str, t: Table, root: Path) -> Service:
    if not NAME_RE.match(name) or name in RESERVED_NAMES:
        why = "is reserved" if name in RESERVED_NAMES else "must be lowercase letters, digits, - or _"
        raise ConfigError(
            f"{t.file}: services.{name}: the name {why}",
            f"rename [services.{name}], for example to [services.{slug(name)}]",
        )
    runtime_raw = t.get("runtime", str, default="process")
    try:
        runtime = Runtime(runtime_raw)
    except ValueError:
        runtime_names = [r.value for r in Runtime]
        raise t.error(
            "runtime",
            f'unknown runtime "{runtime_raw}"{did_you_mean(runtime_raw, runtime_names)}',
            f"use one of: {', '.join(runtime_names)}",
        ) from None

    cwd = (root / t.get("cwd", str, default=".")).resolve()
    docker = _parse_docker(t, root, cwd, name)
    database = _parse_database(t, runtime, cwd)
    if database is not None:
        # A database's command, readiness and container are its runtime's own.
        for key, what in (
            ("command", "its command"),
            ("health", "its readiness (connections, then migrations)"),
            ("docker", "how it runs"),
        ):
            if t.has(key):
                raise t.error(key, f'does not apply: runtime "{runtime}" decides {what}', f"remove {key}")
    # A database runtime builds its own command; a container may leave it to the image.
    command_needed = runtime is Runtime.PROCESS or (runtime is Runtime.DOCKER and docker is None)
    command = _command_value(t, "command", required=command_needed and runtime is Runtime.PROCESS)
    if runtime is Runtime.DOCKER and docker is None:
        raise t.error(
            "runtime",
            'is "docker" but the service has no image',
            f'add [services.{name}.docker] with image = "NAME:TAG"',
        )
    if runtime is Runtime.PROCESS and not command:
        raise t.error(
            "command", "is empty", 'write the command that runs the service, e.g. command = "python server.py"'
        )

    default_port = None
    if database is not None:  # postgres: the DB port; supabase: the API's, from its config.toml
        default_port = database.db_port if runtime is Runtime.POSTGRES else _supabase_api_port(database)
    port = t.get("port", int, default=default_port)
    if port is not None and not 1 <= port <= 65535:
        raise t.error("port", f"{port} is not a port number (1-65535)", "set port to the port the service listens on")
    if docker is not None and docker.port is not None and port is None:
        raise t.error(
            "port", "is missing: docker.port needs a host port to be published on", f"set services.{name}.port"
        )

    env_raw = t.get("env", dict, default={})
    env = []
    for key, value in env_raw.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise t.error(f"env.{key}", f"expected a string, got {show(value)}", f'write {key} = "value"')
        env.append((key, str(value)))

    venv_raw = t.get("venv", (str, bool), default=True)
    if venv_raw is True:
        venv: tuple[Path, ...] = (cwd / ".venv", cwd / "venv")
    elif venv_raw is False:
        venv = ()
    else:
        venv = ((cwd / venv_raw).resolve(),)

    template = t.get("template", str, default="")
    if template and template not in AIRA_TEMPLATES:
        raise t.error(
            "template",
            f"{show(template)} is not one of AiRa's env templates{did_you_mean(template, AIRA_TEMPLATES)}",
            f"use one of: {', '.join(AIRA_TEMPLATES)}; or remove it (the app's own .env.example is used)",
        )
    restart = _parse_restart(t)
    service = Service(
        template=template,
        restart_given=t.has("restart"),
        name=name,
        command=command,
        cwd=cwd,
        runtime=runtime,
        aliases=t.str_list("aliases"),
        env_files=tuple(Path(os.path.normpath(cwd / p)) for p in t.str_list("env_files")),
        load_env_files=t.get("load_env_files", bool, default=True),
        env=tuple(env),
        port=port,
        health=_parse_health(t, port),
        depends_on=_parse_depends_on(t),
        restart=restart,
        stop_signal=_parse_signal(t),
        stop_grace=t.duration("stop_grace", 10.0),
        watch=tuple((cwd / p).resolve() for p in _watch_paths(t)),
        watch_ignore=t.str_list("watch_ignore"),
        watch_debounce=t.duration("watch_debounce", 0.3),
        venv=venv,
        venv_explicit=isinstance(venv_raw, str),
        docker=docker,
        database=database,
    )
    t.get("description", str)
    t.finish(SERVICE_KEYS)
    return service


def _command_value(t: Table, key: str, *, required: bool) -> tuple[str, ...]:
    raw = t.get(key, (str, list), required=required, default="")
    if isinstance(raw, str):
        return command(t, key, raw) if raw.strip() else ()
    if not all(isinstance(part, str) for part in raw):
        raise t.error(key, "expected a string or a list of strings", f'write {key} = "python server.py"')
    return tuple(raw)


def _parse_docker(t: Table, root: Path, cwd: Path, name: str) -> DockerSpec | None:
    if not t.has("docker"):
        t.used.add("docker")
        return None
    d = t.table("docker")
    d.finish(DOCKER_KEYS)
    build = _parse_build(d, cwd)
    # An image that is built needs no name of its own: it gets one, as Compose gives one.
    if build is None and not d.has("image"):
        raise d.error(
            "image",
            "there is no image to run, and none to build",
            'add image = "NAME:TAG", or build = "." to build one',
        )
    image = d.get("image", str, default=default_image(root, name)).strip()
    if not image or any(c.isspace() for c in image):
        raise d.error("image", f"{show(image)} is not an image name", 'write image = "redis:7-alpine"')
    port = d.get("port", int, default=None)
    if port is not None and not 1 <= port <= 65535:
        raise d.error("port", f"{port} is not a port number (1-65535)", "set the port the container listens on")
    volumes = []
    for volume in d.str_list("volumes"):
        parts = volume.split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise d.error(
                "volumes",
                f"{show(volume)} is not SOURCE:TARGET[:ro]",
                'write volumes = ["redis-data:/data"] or ["./data:/data:ro"]',
            )
        if not parts[1].startswith("/"):
            raise d.error("volumes", f"the target of {show(volume)} is not an absolute path", 'write "SOURCE:/data"')
        if parts[0].startswith((".", "/", "~")):  # a folder of the host, not a named volume
            parts[0] = str((root / os.path.expanduser(parts[0])).resolve())
        volumes.append(":".join(parts))
    env = []
    for key, value in d.get("env", dict, default={}).items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise d.error(f"env.{key}", f"expected a string, got {show(value)}", f'write {key} = "value"')
        env.append((key, str(value)))
    return DockerSpec(
        image=image,
        command=_command_value(d, "command", required=False),
        port=port,
        volumes=tuple(volumes),
        env=tuple(env),
        healthcheck=d.get("healthcheck", str, default="").strip(),
        build=build,
    )


def default_image(root: Path, service: str) -> str:
    """The name of a built image that airadev.toml does not name: the workspace's folder and the
    service, as Compose names them (`docker images` shows whose it is)."""
    project = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-") or "stack"
    return f"airadev/{project}-{service}:dev"


def _parse_build(d: Table, cwd: Path) -> BuildSpec | None:
    """``build = "."`` (the context, relative to the service's folder) or a table with context,
    dockerfile (relative to the context), target and args."""
    raw = d.get("build", (str, dict), default=None)
    if raw is None:
        return None
    if isinstance(raw, str):
        if not raw.strip():
            raise d.error("build", "expected the folder to build in, got an empty string", 'write build = "."')
        return BuildSpec(context=(cwd / os.path.expanduser(raw)).resolve())
    b = d.table("build")
    b.finish(BUILD_KEYS)
    context = (cwd / os.path.expanduser(b.get("context", str, default="."))).resolve()
    dockerfile_raw = b.get("dockerfile", str, default="").strip()
    # Kept as written (a link is not followed), as Compose does: its export names the same file.
    dockerfile = Path(os.path.normpath(context / os.path.expanduser(dockerfile_raw))) if dockerfile_raw else None
    args: list[tuple[str, str | None]] = []
    raw_args = b.get("args", (dict, list), default={})
    if isinstance(raw_args, list):  # names only: their values come from the environment, as in Compose
        for key in raw_args:
            if not isinstance(key, str) or not key.strip() or "=" in key:
                raise b.error("args", f"expected names of variables, got {show(key)}", 'write args = ["PYTHON_BASE"]')
            args.append((key.strip(), None))
    for key, value in raw_args.items() if isinstance(raw_args, dict) else ():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise b.error(f"args.{key}", f"expected a string, got {show(value)}", f'write {key} = "value"')
        args.append((key, str(value)))
    network = b.get("network", str, default="").strip()
    return BuildSpec(
        context=context,
        dockerfile=dockerfile,
        target=b.get("target", str, default="").strip(),
        args=tuple(args),
        network=network,
    )


def _parse_database(t: Table, runtime: Runtime, cwd: Path) -> DatabaseSpec | None:
    applies = {
        "project": (Runtime.POSTGRES, Runtime.SUPABASE),
        "migrations": (Runtime.POSTGRES, Runtime.SUPABASE),
        "exclude": (Runtime.SUPABASE,),
        "database": (Runtime.POSTGRES,),
        "user": (Runtime.POSTGRES,),
        "password": (Runtime.POSTGRES,),
    }
    for key, runtimes in applies.items():
        if t.has(key) and runtime not in runtimes:
            names = " or ".join(f'runtime = "{r}"' for r in runtimes)
            raise t.error(key, f"applies only to {names}", f"remove {key}, or set the service's runtime")
    if runtime not in (Runtime.POSTGRES, Runtime.SUPABASE):
        return None
    project = (cwd / t.get("project", str, default=".")).resolve()
    if runtime is Runtime.SUPABASE and not (project / "supabase" / "config.toml").is_file():
        raise t.error(
            "project",
            f"{project / 'supabase' / 'config.toml'} not found",
            "point project at the folder holding supabase/ (the UI repo), or run `supabase init` there",
        )
    migrations_raw = t.get("migrations", str, default="")
    migrations = (project / migrations_raw).resolve() if migrations_raw else project / "supabase" / "migrations"
    if migrations_raw and not migrations.is_dir():
        raise t.error(
            "migrations", f"folder {migrations} does not exist", "create it, or fix the path (relative to project)"
        )
    exclude = t.str_list("exclude")
    for name in exclude:
        if name not in SUPABASE_CONTAINERS:
            raise t.error(
                "exclude",
                f"{show(name)} is not a Supabase container{did_you_mean(name, SUPABASE_CONTAINERS)}",
                f"use some of: {', '.join(SUPABASE_CONTAINERS)}",
            )
    db_port, project_id = DB_DEFAULT_PORT[Runtime.POSTGRES], ""
    if runtime is Runtime.SUPABASE:
        settings = _supabase_settings(t, project)
        db_port = _section_port(settings, "db", db_port, project)
        project_id = str(settings.get("project_id", project.name))
    else:
        db_port = t.get("port", int, default=db_port)
    made: dict[str, str] = {}
    for key in ("user", "database"):
        value = t.get(key, str, default=made.get("user", "postgres"))
        if not SQL_NAME.match(value):
            raise t.error(
                key, f"{show(value)} is not a PostgreSQL name", "use letters, digits, _ . $ or - (at most 63)"
            )
        made[key] = value
    password = t.get("password", str, default="postgres")
    if not password or "\0" in password:
        raise t.error("password", "is empty", 'remove it (the default is "postgres"), or give one')
    return DatabaseSpec(
        project=project,
        migrations=migrations,
        exclude=exclude,
        db_port=db_port,
        project_id=project_id,
        database=made["database"],
        user=made["user"],
        password=password,
    )


def _supabase_settings(t: Table, project: Path) -> dict[str, Any]:
    path = project / "supabase" / "config.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}", "fix it, or run `supabase init` again") from None


def _section_port(settings: Mapping[str, Any], section: str, default: int, project: Path) -> int:
    table = settings.get(section, {})
    port = table.get("port", default) if isinstance(table, dict) else None
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(
            f"{project / 'supabase' / 'config.toml'}: [{section}] port: expected a port number",
            f"write [{section}] port = {default}",
        )
    return port


def _supabase_api_port(database: DatabaseSpec | None) -> int:
    if database is None or database.project is None:
        return DB_DEFAULT_PORT[Runtime.SUPABASE]
    settings = tomllib.loads((database.project / "supabase" / "config.toml").read_text(encoding="utf-8"))
    return _section_port(settings, "api", DB_DEFAULT_PORT[Runtime.SUPABASE], database.project)


def _watch_paths(t: Table) -> tuple[str, ...]:
    raw = t.get("watch", (bool, str, list), default=False)
    if raw is True:
        return (".",)
    if raw is False:
        return ()
    return t.str_list("watch")


def _parse_signal(t: Table) -> int:
    raw = t.get("stop_signal", (str, int), default="SIGTERM")
    if isinstance(raw, int):
        try:
            return int(signal.Signals(raw))
        except ValueError:
            pass
    else:
        candidate = raw.upper() if raw.upper().startswith("SIG") else "SIG" + raw.upper()
        if candidate in signal.Signals.__members__:
            return int(signal.Signals[candidate])
    raise t.error("stop_signal", f"unknown signal {show(raw)}", 'use a signal name such as "SIGTERM" or "SIGINT"')


def _parse_restart(t: Table) -> Restart:
    raw = t.get("restart", (str, dict), default="on-failure")
    defaults = Restart()
    if isinstance(raw, str):
        return Restart(policy=_restart_policy(t, "restart", raw))
    rt = t.table("restart")
    restart = Restart(
        policy=_restart_policy(rt, "policy", rt.get("policy", str, default=defaults.policy.value)),
        max_restarts=rt.positive_int("max_restarts", defaults.max_restarts, minimum=0),
        backoff=rt.duration("backoff", defaults.backoff),
        backoff_max=rt.duration("backoff_max", defaults.backoff_max),
        jitter=rt.get("jitter", (int, float), default=defaults.jitter),
        reset_after=rt.duration("reset_after", defaults.reset_after),
    )
    if not 0 <= restart.jitter < 1:
        raise rt.error("jitter", f"must be between 0 and 1, got {restart.jitter}", "write jitter = 0.2")
    if restart.backoff_max < restart.backoff:
        raise rt.error("backoff_max", "is smaller than backoff", "make backoff_max at least as large as backoff")
    rt.finish(RESTART_KEYS)
    return restart


def _restart_policy(t: Table, key: str, raw: str) -> RestartPolicy:
    try:
        return RestartPolicy(raw)
    except ValueError:
        names = [p.value for p in RestartPolicy]
        raise t.error(
            key, f'unknown restart policy "{raw}"{did_you_mean(raw, names)}', f"use one of: {', '.join(names)}"
        ) from None


def _parse_health(t: Table, port: int | None) -> Probe | None:
    if not t.has("health"):
        t.used.add("health")
        return None
    h = t.table("health")
    h.finish(HEALTH_KEYS)  # an unknown key first: `htpp` is a typo of `http`
    kinds = [k for k in ("http", "tcp", "exec", "log") if h.has(k)]
    if len(kinds) != 1:
        problem = "has no probe" if not kinds else f"has {len(kinds)} probes ({', '.join(kinds)})"
        raise ConfigError(
            f"{t.file}: {h.where}: {problem}",
            'give exactly one of http = "/health", tcp = true, exec = "cmd", log = "regex"',
        )
    kind = ProbeKind(kinds[0])
    target: Any
    if kind is ProbeKind.HTTP:
        raw = h.get("http", str)
        if raw.startswith("/"):
            if port is None:
                raise h.error("http", "is a path but the service has no port", "set port, or give a full URL")
            target = f"http://127.0.0.1:{port}{raw}"
        elif valid_url(raw):
            target = raw
        else:
            raise h.error(
                "http",
                f'expected a path such as "/health" or an URL, got {show(raw)}',
                'write http = "/health" or http = "http://127.0.0.1:8000/health"',
            )
    elif kind is ProbeKind.TCP:
        raw = h.get("tcp", (bool, int, str))
        target = _tcp_target(h, raw, port)
    elif kind is ProbeKind.EXEC:
        raw = h.get("exec", (str, list))
        target = command(h, "exec", raw) if isinstance(raw, str) else tuple(str(x) for x in raw)
        if not target:
            raise h.error("exec", "is empty", 'write exec = "redis-cli ping"')
    else:
        raw = h.get("log", str)
        try:
            re.compile(raw)
        except re.error as exc:
            raise h.error("log", f"is not a valid regular expression: {exc}", "fix the pattern") from None
        target = raw
    probe = Probe(
        kind=kind,
        target=target,
        interval=h.duration("interval", Probe.interval),
        start_interval=h.duration("start_interval", Probe.start_interval),
        timeout=h.duration("timeout", Probe.timeout),
        start_period=h.duration("start_period", Probe.start_period),
        retries=h.positive_int("retries", Probe.retries, minimum=1),
    )
    for key in ("interval", "start_interval", "timeout"):
        if getattr(probe, key) <= 0:
            raise h.error(key, "must be more than 0", f'write {key} = "1s"')
    return probe


def _tcp_target(h: Table, raw: bool | int | str, port: int | None) -> tuple[str, int]:
    if raw is True or raw is False:
        if port is None or raw is False:
            raise h.error("tcp", "needs a port: the service has none", "set port, or write tcp = 6379")
        return ("127.0.0.1", port)
    if isinstance(raw, int):
        host, number = "127.0.0.1", raw
    else:
        host, _, number_text = raw.rpartition(":")
        if not number_text.isdigit():
            raise h.error("tcp", f"expected host:port, got {show(raw)}", 'write tcp = "127.0.0.1:6379"')
        host, number = host or "127.0.0.1", int(number_text)
    if not 1 <= number <= 65535:
        raise h.error("tcp", f"{number} is not a port number", "use a port between 1 and 65535")
    return (host.strip("[]"), number)


def _parse_depends_on(t: Table) -> tuple[Dependency, ...]:
    raw = t.get("depends_on", (list, dict), default=[])
    if isinstance(raw, list):
        if not all(isinstance(x, str) for x in raw):
            raise t.error("depends_on", "expected a list of service names", 'write depends_on = ["redis"]')
        return tuple(Dependency(name) for name in raw)
    deps = []
    for name, spec in raw.items():
        cond_raw = spec.get("condition", "started") if isinstance(spec, dict) else spec
        if isinstance(spec, dict) and set(spec) - {"condition", "restart"}:
            extra = next(iter(set(spec) - {"condition", "restart"}))
            raise t.error(
                f"depends_on.{name}.{extra}",
                f"unknown key{did_you_mean(extra, ['condition', 'restart'])}",
                'write depends_on = { redis = "healthy" } or { redis = { condition = "healthy", restart = true } }',
            )
        restart = spec.get("restart", False) if isinstance(spec, dict) else False
        if not isinstance(restart, bool):
            raise t.error(
                f"depends_on.{name}.restart",
                f"expected true or false, got {show(restart)}",
                "restart = true restarts this service whenever that one was restarted",
            )
        names = [c.value for c in Condition]
        if not isinstance(cond_raw, str) or cond_raw not in names:
            raise t.error(
                f"depends_on.{name}",
                f"unknown condition {show(cond_raw)}{did_you_mean(str(cond_raw), names)}",
                f"use one of: {', '.join(names)}",
            )
        deps.append(Dependency(name, Condition(cond_raw), restart))
    return tuple(deps)
