"""airadev.toml: find it, load it, apply defaults, validate, freeze.

The pipeline is ``find_root → load (tomllib) → _Table readers (defaults + validation) →
model.Config``. Every error names the file, the service and the key, suggests the closest
valid key or name, and is raised as :class:`ConfigError` (exit code 2).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airadev.errors import ConfigError, did_you_mean
from airadev.model import (
    Condition,
    Config,
    DatabaseSpec,
    Dependency,
    DockerSpec,
    LogSettings,
    Probe,
    ProbeKind,
    Restart,
    RestartPolicy,
    Runtime,
    Service,
    TunnelSettings,
    TwilioSettings,
)
from airadev.workspace import CONFIG_NAME, find_root, parse_duration  # noqa: F401  (part of this API)

RESERVED_NAMES = {"airadev", "all"}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# A command string with any of these is run by /bin/sh -c; otherwise it is split like a shell would.
_SHELL_CHARS = set("|&;<>()$`*?~\n")

SERVICE_KEYS = (
    "aliases", "runtime", "command", "cwd", "env_files", "load_env_files", "env", "port",
    "health", "depends_on", "restart", "stop_signal", "stop_grace", "watch", "watch_ignore",
    "watch_debounce", "venv", "description", "docker", "project", "migrations", "exclude",
)
DB_KEYS = ("project", "migrations", "exclude")
# `supabase start -x`: the containers it may leave out (Supabase CLI 2.x).
SUPABASE_CONTAINERS = ("gotrue", "realtime", "storage-api", "imgproxy", "kong", "mailpit", "inbucket", "postgrest",
                       "postgres-meta", "studio", "edge-runtime", "logflare", "vector", "supavisor")
DOCKER_KEYS = ("image", "command", "port", "volumes", "env", "healthcheck")
DB_DEFAULT_PORT = {Runtime.POSTGRES: 54322, Runtime.SUPABASE: 54321}
HEALTH_KEYS = ("http", "tcp", "exec", "log", "interval", "start_interval", "timeout",
               "start_period", "retries")
RESTART_KEYS = ("policy", "max_restarts", "backoff", "backoff_max", "jitter", "reset_after")
TOP_KEYS = ("services", "logs", "tunnel", "twilio")
TUNNEL_KEYS = ("service", "ui_service", "env_file", "variable", "ngrok_path", "domain", "region", "start_timeout")
TWILIO_KEYS = ("test_number", "credentials_from", "voice_path", "sms_path", "status_path", "timeout")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
LOG_KEYS = ("max_size", "keep")


def load(root: Path) -> Config:
    """Load and validate ``root/airadev.toml``."""
    path = root / CONFIG_NAME
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", "fix the syntax at that line") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", "save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", "check the file's permissions") from None
    return parse(raw, root=root, file=path)


def parse(raw: Mapping[str, Any], *, root: Path, file: Path) -> Config:
    top = _Table(raw, file, "")
    top.finish(TOP_KEYS)  # an unknown key first: [service.x] is a typo of [services.x]
    services_raw = top.get("services", dict)
    if not services_raw:
        raise ConfigError(f"{file}: no services are defined",
                          "add a [services.NAME] table with its command (`airadev init` writes one for the AiRa repos)")
    logs = _parse_logs(top.table("logs"))
    tunnel_table, twilio_table = top.table("tunnel"), top.table("twilio")

    services = []
    for name, body in services_raw.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{file}: services.{name}: expected a table", f"write it as [services.{name}]")
        services.append(_parse_service(name, _Table(body, file, f"services.{name}"), root))
    _check_names(services, file)
    databases = [s.name for s in services if s.database is not None]
    if len(databases) > 1:
        raise ConfigError(f"{file}: services {', '.join(databases)}: a stack has one local database",
                          "keep one service with runtime = \"postgres\" or \"supabase\"")
    services = _resolve_dependencies(services, file)
    _check_ports(services, file)
    names = {n for s in services for n in s.names}
    tunnel = _parse_tunnel(tunnel_table, root, names)
    twilio = _parse_twilio(twilio_table, names)
    return Config(root=root, file=file, services=tuple(services), logs=logs, tunnel=tunnel, twilio=twilio)


# --- one table -------------------------------------------------------------------------------

class _Table:
    """Typed reads from one TOML table, remembering which keys were used."""

    def __init__(self, data: Mapping[str, Any], file: Path, where: str) -> None:
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
            raise self.error(key, f"expected {_kind_name(kind)}, got {_show(value)}",
                             f"write {key} as {_kind_name(kind)}")
        return value

    def table(self, key: str) -> _Table:
        return _Table(self.get(key, dict, default={}), self.file, f"{self.where}.{key}".lstrip("."))

    def duration(self, key: str, default: float) -> float:
        value = self.get(key, (str, int, float), default=None)
        if value is None:
            return default
        seconds = parse_duration(value)
        if seconds is None or seconds < 0:
            raise self.error(key, f"expected a duration such as \"2s\" or \"500ms\", got {_show(value)}",
                             f"write {key} = \"2s\" (units: ms, s, m, h)")
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
                raise self.error(key, f"unknown key{did_you_mean(key, valid)}",
                                 f"valid keys here: {', '.join(valid)}")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a table"}


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in _as_tuple(kind))


def _show(value: Any) -> str:
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
    """argv for a command string: shell syntax goes through ``/bin/sh -c``."""
    if any(ch in _SHELL_CHARS for ch in command):
        return ("/bin/sh", "-c", command)
    return tuple(shlex.split(command))


def _command(t: _Table, key: str, raw: str) -> tuple[str, ...]:
    try:
        return split_command(raw)
    except ValueError as exc:  # shlex: "No closing quotation"
        raise t.error(key, f"cannot be split into words: {str(exc).lower()}",
                      "close the quote, or write it as a list: [\"prog\", \"arg\"]") from None


def _valid_url(raw: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _service_ref(t: _Table, key: str, names: set[str]) -> str:
    value = t.get(key, str, default="")
    if value and value not in names:
        raise t.error(key, f"unknown service \"{value}\"{did_you_mean(value, names)}",
                      f"services are: {', '.join(sorted(names))}")
    return value


def _parse_tunnel(t: _Table, root: Path, names: set[str]) -> TunnelSettings:
    env_file = t.get("env_file", str, default="")
    ngrok_path = t.get("ngrok_path", str, default="")
    variable = t.get("variable", str, default=TunnelSettings.variable)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
        raise t.error("variable", f"\"{variable}\" is not a variable name", 'write variable = "VOICE_AGENT_SERVICE_URL"')
    settings = TunnelSettings(
        service=_service_ref(t, "service", names),
        ui_service=_service_ref(t, "ui_service", names),
        env_file=(root / env_file) if env_file else None,
        variable=variable,
        ngrok_path=Path(ngrok_path).expanduser() if ngrok_path else None,
        domain=t.get("domain", str, default=""),
        region=t.get("region", str, default=""),
        start_timeout=t.duration("start_timeout", TunnelSettings.start_timeout),
    )
    t.finish(TUNNEL_KEYS)
    return settings


def _parse_twilio(t: _Table, names: set[str]) -> TwilioSettings:
    number = t.get("test_number", str, default="")
    if number and not E164.match(number):
        raise t.error("test_number", f"\"{number}\" is not an E.164 number", 'write it like "+15551234567"')
    paths = {}
    for key in ("voice_path", "sms_path", "status_path"):
        value = t.get(key, str, default=getattr(TwilioSettings, key))
        if not value.startswith("/"):
            raise t.error(key, f"expected a path starting with /, got {_show(value)}", f'write {key} = "/webhooks/twilio/..."')
        paths[key] = value
    settings = TwilioSettings(test_number=number, credentials_from=_service_ref(t, "credentials_from", names),
                              timeout=t.duration("timeout", TwilioSettings.timeout), **paths)
    t.finish(TWILIO_KEYS)
    return settings


def _parse_logs(table: _Table) -> LogSettings:
    size_raw = table.get("max_size", (str, int), default=None)
    max_size = LogSettings.max_size
    if size_raw is not None:
        max_size = parse_size(size_raw) or 0
        if max_size < 64 * 1024:
            raise table.error("max_size", f"expected a size of at least 64KB, got {_show(size_raw)}",
                              'write max_size = "20MB"')
    keep = table.positive_int("keep", LogSettings.keep, minimum=1)
    table.finish(LOG_KEYS)
    return LogSettings(max_size=max_size, keep=keep)


def _parse_service(name: str, t: _Table, root: Path) -> Service:
    if not _NAME_RE.match(name) or name in RESERVED_NAMES:
        why = "is reserved" if name in RESERVED_NAMES else "must be lowercase letters, digits, - or _"
        raise ConfigError(f"{t.file}: services.{name}: the name {why}",
                          f"rename [services.{name}], for example to [services.{_slug(name)}]")
    runtime_raw = t.get("runtime", str, default="process")
    try:
        runtime = Runtime(runtime_raw)
    except ValueError:
        runtime_names = [r.value for r in Runtime]
        raise t.error("runtime", f"unknown runtime \"{runtime_raw}\"{did_you_mean(runtime_raw, runtime_names)}",
                      f"use one of: {', '.join(runtime_names)}") from None

    cwd = (root / t.get("cwd", str, default=".")).resolve()
    docker = _parse_docker(t, root)
    database = _parse_database(t, runtime, cwd)
    if database is not None:
        # A database's command, readiness and container are its runtime's own.
        for key, what in (("command", "its command"), ("health", "its readiness (connections, then migrations)"),
                          ("docker", "how it runs")):
            if t.has(key):
                raise t.error(key, f"does not apply: runtime \"{runtime}\" decides {what}", f"remove {key}")
    # A database runtime builds its own command; a container may leave it to the image.
    command_needed = runtime is Runtime.PROCESS or (runtime is Runtime.DOCKER and docker is None)
    command = _command_value(t, "command", required=command_needed and runtime is Runtime.PROCESS)
    if runtime is Runtime.DOCKER and docker is None:
        raise t.error("runtime", "is \"docker\" but the service has no image",
                      f'add [services.{name}.docker] with image = "NAME:TAG"')
    if runtime is Runtime.PROCESS and not command:
        raise t.error("command", "is empty", 'write the command that runs the service, e.g. command = "python server.py"')

    default_port = None
    if database is not None:  # postgres: the DB port; supabase: the API's, from its config.toml
        default_port = database.db_port if runtime is Runtime.POSTGRES else _supabase_api_port(database)
    port = t.get("port", int, default=default_port)
    if port is not None and not 1 <= port <= 65535:
        raise t.error("port", f"{port} is not a port number (1-65535)", "set port to the port the service listens on")
    if docker is not None and docker.port is not None and port is None:
        raise t.error("port", "is missing: docker.port needs a host port to be published on",
                      f"set services.{name}.port")

    env_raw = t.get("env", dict, default={})
    env = []
    for key, value in env_raw.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise t.error(f"env.{key}", f"expected a string, got {_show(value)}", f'write {key} = "value"')
        env.append((key, str(value)))

    venv_raw = t.get("venv", (str, bool), default=True)
    if venv_raw is True:
        venv: tuple[Path, ...] = (cwd / ".venv", cwd / "venv")
    elif venv_raw is False:
        venv = ()
    else:
        venv = ((cwd / venv_raw).resolve(),)

    restart = _parse_restart(t)
    service = Service(
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


def _command_value(t: _Table, key: str, *, required: bool) -> tuple[str, ...]:
    raw = t.get(key, (str, list), required=required, default="")
    if isinstance(raw, str):
        return _command(t, key, raw) if raw.strip() else ()
    if not all(isinstance(part, str) for part in raw):
        raise t.error(key, "expected a string or a list of strings", f'write {key} = "python server.py"')
    return tuple(raw)


def _parse_docker(t: _Table, root: Path) -> DockerSpec | None:
    if not t.has("docker"):
        t.used.add("docker")
        return None
    d = t.table("docker")
    d.finish(DOCKER_KEYS)
    image = d.get("image", str, required=True).strip()
    if not image or any(c.isspace() for c in image):
        raise d.error("image", f"{_show(image)} is not an image name", 'write image = "redis:7-alpine"')
    port = d.get("port", int, default=None)
    if port is not None and not 1 <= port <= 65535:
        raise d.error("port", f"{port} is not a port number (1-65535)", "set the port the container listens on")
    volumes = []
    for volume in d.str_list("volumes"):
        parts = volume.split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise d.error("volumes", f"{_show(volume)} is not SOURCE:TARGET[:ro]",
                          'write volumes = ["redis-data:/data"] or ["./data:/data:ro"]')
        if not parts[1].startswith("/"):
            raise d.error("volumes", f"the target of {_show(volume)} is not an absolute path", 'write "SOURCE:/data"')
        if parts[0].startswith((".", "/", "~")):  # a folder of the host, not a named volume
            parts[0] = str((root / os.path.expanduser(parts[0])).resolve())
        volumes.append(":".join(parts))
    env = []
    for key, value in d.get("env", dict, default={}).items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise d.error(f"env.{key}", f"expected a string, got {_show(value)}", f'write {key} = "value"')
        env.append((key, str(value)))
    return DockerSpec(image=image, command=_command_value(d, "command", required=False), port=port,
                      volumes=tuple(volumes), env=tuple(env), healthcheck=d.get("healthcheck", str, default="").strip())


def _parse_database(t: _Table, runtime: Runtime, cwd: Path) -> DatabaseSpec | None:
    applies = {"project": (Runtime.POSTGRES, Runtime.SUPABASE), "migrations": (Runtime.POSTGRES, Runtime.SUPABASE),
               "exclude": (Runtime.SUPABASE,)}
    for key, runtimes in applies.items():
        if t.has(key) and runtime not in runtimes:
            names = " or ".join(f'runtime = "{r}"' for r in runtimes)
            raise t.error(key, f"applies only to {names}", f"remove {key}, or set the service's runtime")
    if runtime not in (Runtime.POSTGRES, Runtime.SUPABASE):
        return None
    project = (cwd / t.get("project", str, default=".")).resolve()
    if runtime is Runtime.SUPABASE and not (project / "supabase" / "config.toml").is_file():
        raise t.error("project", f"{project / 'supabase' / 'config.toml'} not found",
                      "point project at the folder holding supabase/ (the UI repo), or run `supabase init` there")
    migrations_raw = t.get("migrations", str, default="")
    migrations = (project / migrations_raw).resolve() if migrations_raw else project / "supabase" / "migrations"
    if migrations_raw and not migrations.is_dir():
        raise t.error("migrations", f"folder {migrations} does not exist", "create it, or fix the path (relative to project)")
    exclude = t.str_list("exclude")
    for name in exclude:
        if name not in SUPABASE_CONTAINERS:
            raise t.error("exclude", f"{_show(name)} is not a Supabase container{did_you_mean(name, SUPABASE_CONTAINERS)}",
                          f"use some of: {', '.join(SUPABASE_CONTAINERS)}")
    db_port, project_id = DB_DEFAULT_PORT[Runtime.POSTGRES], ""
    if runtime is Runtime.SUPABASE:
        settings = _supabase_settings(t, project)
        db_port = _section_port(settings, "db", db_port, project)
        project_id = str(settings.get("project_id", project.name))
    else:
        db_port = t.get("port", int, default=db_port)
    return DatabaseSpec(project=project, migrations=migrations, exclude=exclude, db_port=db_port, project_id=project_id)


def _supabase_settings(t: _Table, project: Path) -> dict[str, Any]:
    path = project / "supabase" / "config.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}", "fix it, or run `supabase init` again") from None


def _section_port(settings: Mapping[str, Any], section: str, default: int, project: Path) -> int:
    table = settings.get(section, {})
    port = table.get("port", default) if isinstance(table, dict) else None
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"{project / 'supabase' / 'config.toml'}: [{section}] port: expected a port number",
                          f'write [{section}] port = {default}')
    return port


def _supabase_api_port(database: DatabaseSpec | None) -> int:
    if database is None or database.project is None:
        return DB_DEFAULT_PORT[Runtime.SUPABASE]
    settings = tomllib.loads((database.project / "supabase" / "config.toml").read_text(encoding="utf-8"))
    return _section_port(settings, "api", DB_DEFAULT_PORT[Runtime.SUPABASE], database.project)


def _watch_paths(t: _Table) -> tuple[str, ...]:
    raw = t.get("watch", (bool, str, list), default=False)
    if raw is True:
        return (".",)
    if raw is False:
        return ()
    return t.str_list("watch")


def _parse_signal(t: _Table) -> int:
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
    raise t.error("stop_signal", f"unknown signal {_show(raw)}", 'use a signal name such as "SIGTERM" or "SIGINT"')


def _parse_restart(t: _Table) -> Restart:
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


def _restart_policy(t: _Table, key: str, raw: str) -> RestartPolicy:
    try:
        return RestartPolicy(raw)
    except ValueError:
        names = [p.value for p in RestartPolicy]
        raise t.error(key, f"unknown restart policy \"{raw}\"{did_you_mean(raw, names)}",
                      f"use one of: {', '.join(names)}") from None


def _parse_health(t: _Table, port: int | None) -> Probe | None:
    if not t.has("health"):
        t.used.add("health")
        return None
    h = t.table("health")
    h.finish(HEALTH_KEYS)  # an unknown key first: `htpp` is a typo of `http`
    kinds = [k for k in ("http", "tcp", "exec", "log") if h.has(k)]
    if len(kinds) != 1:
        problem = "has no probe" if not kinds else f"has {len(kinds)} probes ({', '.join(kinds)})"
        raise ConfigError(f"{t.file}: {h.where}: {problem}",
                          'give exactly one of http = "/health", tcp = true, exec = "cmd", log = "regex"')
    kind = ProbeKind(kinds[0])
    target: Any
    if kind is ProbeKind.HTTP:
        raw = h.get("http", str)
        if raw.startswith("/"):
            if port is None:
                raise h.error("http", "is a path but the service has no port", "set port, or give a full URL")
            target = f"http://127.0.0.1:{port}{raw}"
        elif _valid_url(raw):
            target = raw
        else:
            raise h.error("http", f"expected a path such as \"/health\" or an URL, got {_show(raw)}",
                          'write http = "/health" or http = "http://127.0.0.1:8000/health"')
    elif kind is ProbeKind.TCP:
        raw = h.get("tcp", (bool, int, str))
        target = _tcp_target(h, raw, port)
    elif kind is ProbeKind.EXEC:
        raw = h.get("exec", (str, list))
        target = _command(h, "exec", raw) if isinstance(raw, str) else tuple(str(x) for x in raw)
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


def _tcp_target(h: _Table, raw: bool | int | str, port: int | None) -> tuple[str, int]:
    if raw is True or raw is False:
        if port is None or raw is False:
            raise h.error("tcp", "needs a port: the service has none", "set port, or write tcp = 6379")
        return ("127.0.0.1", port)
    if isinstance(raw, int):
        host, number = "127.0.0.1", raw
    else:
        host, _, number_text = raw.rpartition(":")
        if not number_text.isdigit():
            raise h.error("tcp", f"expected host:port, got {_show(raw)}", 'write tcp = "127.0.0.1:6379"')
        host, number = host or "127.0.0.1", int(number_text)
    if not 1 <= number <= 65535:
        raise h.error("tcp", f"{number} is not a port number", "use a port between 1 and 65535")
    return (host.strip("[]"), number)


def _parse_depends_on(t: _Table) -> tuple[Dependency, ...]:
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
            raise t.error(f"depends_on.{name}.{extra}", f"unknown key{did_you_mean(extra, ['condition', 'restart'])}",
                          'write depends_on = { redis = "healthy" } or { redis = { condition = "healthy", restart = true } }')
        restart = spec.get("restart", False) if isinstance(spec, dict) else False
        if not isinstance(restart, bool):
            raise t.error(f"depends_on.{name}.restart", f"expected true or false, got {_show(restart)}",
                          "restart = true restarts this service whenever that one was restarted")
        names = [c.value for c in Condition]
        if not isinstance(cond_raw, str) or cond_raw not in names:
            raise t.error(f"depends_on.{name}",
                          f"unknown condition {_show(cond_raw)}{did_you_mean(str(cond_raw), names)}",
                          f"use one of: {', '.join(names)}")
        deps.append(Dependency(name, Condition(cond_raw), restart))
    return tuple(deps)


# --- whole-stack checks ----------------------------------------------------------------------

def _check_names(services: list[Service], file: Path) -> None:
    owner: dict[str, str] = {}
    for service in services:
        for alias in service.aliases:
            if not _NAME_RE.match(alias) or alias in RESERVED_NAMES:
                raise ConfigError(f"{file}: services.{service.name}.aliases: \"{alias}\" is not a valid name",
                                  "use lowercase letters, digits, - or _")
        for name in service.names:
            if name in owner and owner[name] != service.name:
                raise ConfigError(
                    f"{file}: services.{service.name}: the name \"{name}\" is already used by services.{owner[name]}",
                    "give each service and alias a name of its own")
            owner[name] = service.name


def _resolve_dependencies(services: list[Service], file: Path) -> list[Service]:
    """Dependencies may name aliases; store canonical names, and refuse unknowns and cycles."""
    canonical = {name: s.name for s in services for name in s.names}
    resolved = []
    for service in services:
        deps = []
        for dep in service.depends_on:
            if dep.name not in canonical:
                raise ConfigError(
                    f"{file}: services.{service.name}.depends_on: unknown service "
                    f"\"{dep.name}\"{did_you_mean(dep.name, canonical)}",
                    f"services are: {', '.join(s.name for s in services)}")
            if canonical[dep.name] == service.name:
                raise ConfigError(f"{file}: services.{service.name}.depends_on: a service cannot depend on itself",
                                  f"remove \"{dep.name}\" from its depends_on")
            deps.append(dataclasses.replace(dep, name=canonical[dep.name]))
        resolved.append(dataclasses.replace(service, depends_on=tuple(deps)))
    from airadev.graph import find_cycle

    cycle = find_cycle({s.name: [d.name for d in s.depends_on] for s in resolved})
    if cycle:
        raise ConfigError(f"{file}: dependency cycle: {' → '.join(cycle)}",
                          "remove one of these depends_on entries")
    return resolved


def _check_ports(services: list[Service], file: Path) -> None:
    seen: dict[int, str] = {}
    for service in services:
        if service.port is None:
            continue
        if service.port in seen:
            raise ConfigError(
                f"{file}: services.{service.name}.port: {service.port} is also the port of services.{seen[service.port]}",
                "give each service its own port")
        seen[service.port] = service.name


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-") or "service"
