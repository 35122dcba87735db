"""Services a project already declares: its Compose file (with the override file Compose merges),
its Procfile (foreman's and honcho's convention), its supabase/config.toml."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airadev.detect.found import Found, env_value, read_text, slug

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
CONDITIONS = {
    "service_started": "started",
    "service_healthy": "healthy",
    "service_completed_successfully": "completed",
}
REDIS_IMAGES = re.compile(r"^(?:[\w.-]+/)*(?:redis|valkey|redis-stack-server)(?::|$)")
POSTGRES_IMAGES = re.compile(r"^(?:[\w.-]+/)*(?:postgres|postgis|pgvector)(?::|$)")
# A compose command that runs the app's server (its detected command replaces it); any other
# command on an app's build (a migration, a prestart script) is a service of its own.
SERVER_COMMAND = re.compile(
    r"\b(?:uvicorn|gunicorn|hypercorn|fastapi|flask|runserver|next|vite|npm|pnpm|yarn|bun)\b|^(?:python\S*|node) \S+\.(?:py|js)$"
)
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}|\$(\w+)")


@dataclass
class ComposeService:
    name: str
    image: str = ""
    build: Path | None = None  # the folder of its code: the Dockerfile's, else the context
    context: Path | None = None  # the build context
    build_keys: dict[str, str] = field(default_factory=dict)
    command: str = ""
    ports: list[tuple[int | None, int]] = field(default_factory=list)  # (host, container)
    environment: dict[str, str | None] = field(default_factory=dict)
    env_file: list[str] = field(default_factory=list)
    depends_on: dict[str, str] = field(default_factory=dict)
    healthcheck: str = ""
    volumes: list[str] = field(default_factory=list)


def compose_file(root: Path) -> Path | None:
    for name in COMPOSE_FILES:
        if (root / name).is_file():
            return root / name
    return None


def read_compose(path: Path) -> list[ComposeService]:
    """The services of a Compose file, merged with its override file as `docker compose up`
    merges them; those in a profile (not started by default) left out."""
    import yaml

    def load(p: Path) -> dict[str, Any]:
        try:
            data = yaml.safe_load(read_text(p)) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{p.name} is not valid YAML ({str(exc).splitlines()[0]})") from None
        services = data.get("services") if isinstance(data, dict) else None
        return services if isinstance(services, dict) else {}

    services = load(path)
    override = path.with_name(path.name.replace(".y", ".override.y", 1))
    for name, extra in (load(override) if override.is_file() else {}).items():
        services[name] = _merge(services.get(name) or {}, extra or {})
    root = path.parent
    return [
        _service(str(name), spec if isinstance(spec, dict) else {}, root)
        for name, spec in services.items()
        if not (isinstance(spec, dict) and spec.get("profiles"))
    ]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if key in ("ports", "volumes") and isinstance(value, list):
            merged[key] = [*(base.get(key) or []), *value]
        elif key in ("environment", "depends_on"):
            merged[key] = {**_mapping(base.get(key)), **_mapping(value)}
        else:
            merged[key] = value
    return merged


def _mapping(value: Any) -> dict[str, Any]:
    """environment and depends_on: a list (`KEY=value`, `KEY`, `name`) or a mapping."""
    if isinstance(value, dict):
        return dict(value)
    result: dict[str, Any] = {}
    for item in value or []:
        key, sep, rest = str(item).partition("=")
        result[key] = rest if sep else None
    return result


def _service(name: str, spec: dict[str, Any], root: Path) -> ComposeService:
    s = ComposeService(name=name, image=str(spec.get("image") or ""))
    build = spec.get("build")
    if build is not None:
        keys = (
            {"context": build}
            if isinstance(build, str)
            else {k: str(v) for k, v in build.items() if k in ("context", "dockerfile", "target")}
        )
        context = (root / keys.get("context", ".")).resolve()
        dockerfile = keys.get("dockerfile", "")
        s.build = (context / dockerfile).parent if "/" in dockerfile else context
        s.context = context
        s.build_keys = keys
    command = spec.get("command")
    s.command = shlex.join(map(str, command)) if isinstance(command, list) else str(command or "")
    for port in spec.get("ports") or []:
        parsed = _port(port, root)
        if parsed:
            s.ports.append(parsed)
    s.environment = {str(k): _text(v) for k, v in _mapping(spec.get("environment")).items()}
    env_file = spec.get("env_file") or []
    for item in [env_file] if isinstance(env_file, (str, dict)) else env_file:
        path = str(item.get("path", "")) if isinstance(item, dict) else str(item)
        optional = isinstance(item, dict) and item.get("required") is False
        if path and (not optional or (root / path).is_file()):  # an optional file that is not there: none
            s.env_file.append(path)
    for dep, how in _mapping(spec.get("depends_on")).items():
        dep = str(dep)
        condition = how.get("condition", "service_started") if isinstance(how, dict) else "service_started"
        s.depends_on[dep] = CONDITIONS.get(condition, "started")
    test = (spec.get("healthcheck") or {}).get("test")
    if isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
        s.healthcheck = test[1] if test[0] == "CMD-SHELL" and len(test) == 2 else shlex.join(map(str, test[1:]))
    elif isinstance(test, str):
        s.healthcheck = test
    s.volumes = [str(v) for v in spec.get("volumes") or [] if isinstance(v, str) and v.startswith((".", "/"))]
    return s


def _text(value: Any) -> str | None:
    """An environment value as Compose passes it: YAML's true is "true", not Python's "True"."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _port(value: Any, root: Path) -> tuple[int | None, int] | None:
    """(published, target) of a port, Compose's ${VAR} resolved; None for what is not one port
    (a range, a variable without a value)."""
    try:
        if isinstance(value, dict):
            target, published = value.get("target"), value.get("published")
            if not target:
                return None
            host = interpolate(str(published), root)[0] if published else ""
            return (int(host) if host else None, int(target))
        parts = interpolate(str(value), root)[0].split("/")[0].split(":")
        if len(parts) == 1:
            return None, int(parts[0])
        return (int(parts[-2]) if parts[-2] else None), int(parts[-1])
    except ValueError:
        return None


def interpolate(value: str, root: Path) -> tuple[str, list[str]]:
    """Compose's ``${VAR}`` from the environment and the project's .env, as Compose does; the
    names it used."""
    used: list[str] = []

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        used.append(name)
        found = os.environ.get(name) or env_value(root / ".env", name)
        default = re.match(r"\$\{\w+:?-(.*)\}$", match.group(0))
        return found if found is not None else default.group(1) if default else ""

    return _INTERPOLATION.sub(one, value), used


# --- what each becomes --------------------------------------------------------------------------


def native_redis(s: ComposeService, root: Path) -> Found:
    host = next((h for h, c in s.ports if h), None) or 6379
    return Found(
        name=slug(s.name),
        kind="redis",
        folder=root,
        keys={
            "command": f"redis-server --port {host} --save '' --appendonly no",
            "port": host,
            "health": {"tcp": True},
        },
        why=[f"compose service {s.name} ({s.image}): Redis, run from redis-server on port {host}"],
    )


def native_postgres(s: ComposeService, root: Path) -> Found:
    host = next((h for h, c in s.ports if h), None) or 5432
    keys: dict[str, object] = {"runtime": "postgres", "port": host}
    why = [f"compose service {s.name} ({s.image}): PostgreSQL, run from the server binaries on port {host}"]
    user = interpolate(s.environment.get("POSTGRES_USER") or "postgres", root)[0] or "postgres"
    database = interpolate(s.environment.get("POSTGRES_DB") or user, root)[0] or user
    if database != "postgres":
        keys["database"] = database
    if user != "postgres":
        keys["user"] = user
    password = s.environment.get("POSTGRES_PASSWORD")
    if password and "$" not in password:
        keys["password"] = password
    elif password:
        why.append("its password comes from .env: loopback is trusted, so any password the app sends is accepted")
    return Found(name=slug(s.name), kind="postgres", folder=root, keys=keys, why=why)


def docker_service(s: ComposeService, root: Path) -> Found:
    """A container, as Compose runs it: its image (or build), command, first published port,
    healthcheck and bind mounts; its env by ``container_env``."""
    docker: dict[str, object] = {}
    if s.image:
        docker["image"] = s.image
    if s.command:
        docker["command"] = s.command
    keys: dict[str, object] = {"runtime": "docker"}
    published = [(h, c) for h, c in s.ports if h]
    if published:
        keys["port"] = published[0][0]
        docker["port"] = published[0][1]
    if s.healthcheck:
        docker["healthcheck"] = s.healthcheck
    if s.volumes:
        docker["volumes"] = s.volumes
    if s.build is not None:
        docker["build"] = dict(s.build_keys) if len(s.build_keys) > 1 else s.build_keys.get("context", ".")
    keys["docker"] = docker
    return Found(
        name=slug(s.name), kind="docker", folder=root, keys=keys, why=[f"compose service {s.name}: a container"]
    )


def container_env(s: ComposeService, found: Found, rewrite: Callable[[str], str]) -> None:
    """A container's environment and command, other services' names as it reaches them."""
    docker = found.keys["docker"]
    assert isinstance(docker, dict)
    env, left_out = literal_env(s.environment, rewrite)
    if "command" in docker:
        docker["command"] = rewrite(str(docker["command"]))
    if env:
        docker["env"] = env
        found.keys["docker"] = {
            k: docker[k] for k in ("image", "command", "port", "env", "healthcheck", "volumes", "build") if k in docker
        }
    if left_out:
        found.why.append(f"left out (they read ${{...}}; give them in env): {', '.join(left_out)}")


TEST_RUNNER = re.compile(r"playwright|cypress|selenium|\be2e\b|\btests?\b", re.I)


def left_out(s: ComposeService) -> str:
    """Why a Compose service has no place in a development run on this machine, or ""."""
    if any(v.startswith("/var/run/docker.sock") for v in s.volumes):
        return (
            "it mounts the Docker socket (a proxy routing to containers by label); "
            "the apps run as processes here: reach each on its own port"
        )
    if TEST_RUNNER.search(f"{s.name} {s.build_keys.get('dockerfile', '')}"):
        return "a test runner: run it when you test"
    return ""


def literal_env(environment: dict[str, str | None], rewrite: Callable[[str], str]) -> tuple[dict[str, str], list[str]]:
    """The values that need nothing from Compose (no ${...}), other services' names in them as
    ``rewrite`` gives them: in a URL anywhere; a bare value only in a host variable (REDIS_HOST,
    POSTGRES_SERVER), as a queue or service named like a service is no address."""
    env, left_out = {}, []
    for key, value in environment.items():
        if value is None or "$" in value:
            left_out.append(key)
        elif re.fullmatch(r"[\w.-]+", value) and not HOST_KEY.search(key):
            env[key] = value
        else:
            env[key] = rewrite(value)
    return env, left_out


HOST_KEY = re.compile(r"(HOST|SERVER|HOSTNAME|ADDR|ADDRESS)$", re.I)


def is_server(command: str) -> bool:
    return not command or bool(SERVER_COMMAND.search(command))


# --- Procfile and Supabase ----------------------------------------------------------------------


def procfile(root: Path) -> list[Found]:
    """Procfile lines `name: command`, as foreman and honcho run them: each gets PORT (5000,
    5100, ...) and the folder's .env; `web` is the one that listens (on its PORT, as gunicorn
    and the like read it); `release` (Heroku's step before the others start) is a task the
    others wait for."""
    entries = []
    for line in read_text(root / "Procfile").splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line.strip())
        if match:
            entries.append((slug(match.group(1)), match.group(2).strip()))
    release = any(name == "release" for name, _ in entries)
    found: list[Found] = []
    for index, (name, command) in enumerate(entries):
        port = 5000 + 100 * index
        keys: dict[str, object] = {"command": command}
        why = [f"Procfile's {name}"]
        if (root / ".env").is_file():
            keys["env_files"] = [".env"]
        if name == "release":
            keys["restart"] = {"policy": "no"}
            why.append("a one-shot task before the others, as on Heroku")
        else:
            keys["env"] = {"PORT": str(port)}
            why.append(f"PORT = {port}, as foreman and honcho number them")
        if name == "web" or "$PORT" in command or "${PORT}" in command:
            keys["port"] = port
            keys["health"] = {"tcp": True}
        if release and name != "release":
            keys["depends_on"] = {"release": "completed"}
        found.append(Found(name=name, kind="process", folder=root, keys=keys, why=why))
    return found


def _engine_here() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return True  # a remote engine: its answer is doctor's to check
    return Path(host.removeprefix("unix://") or "/var/run/docker.sock").exists()


def supabase_project(root: Path) -> Path | None:
    """The folder holding supabase/config.toml: the workspace, or one of its folders."""
    if (root / "supabase" / "config.toml").is_file():
        return root
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (folder / "supabase" / "config.toml").is_file():
            return folder
    return None


def supabase_db(project: Path, root: Path) -> Found:
    import tomllib

    cli = shutil.which("supabase") or (project / "node_modules" / ".bin" / "supabase").exists()
    docker = bool(cli) and _engine_here()
    keys: dict[str, object] = {"runtime": "supabase" if docker else "postgres"}
    rel = project.relative_to(root).as_posix() if project != root else "."
    if rel != ".":
        keys["project"] = rel
    why = [f"{rel}/supabase/config.toml: the project's Supabase"]
    if docker:
        why.append("run by the Supabase CLI (it and a Docker engine are here)")
    else:
        try:
            settings = tomllib.loads(read_text(project / "supabase" / "config.toml"))
        except tomllib.TOMLDecodeError:
            settings = {}
        port = (settings.get("db") or {}).get("port", 54322)
        keys["port"] = port if isinstance(port, int) else 54322
        missing = "a Docker engine" if cli else "the Supabase CLI (on PATH or the project's devDependency)"
        why.append(
            f"its database from PostgreSQL's server binaries, with supabase/migrations (no {missing} here: "
            'runtime = "supabase" once there is; until then no Supabase API, auth or storage)'
        )
    return Found(name="db", kind="postgres", folder=root, keys=keys, why=why)
