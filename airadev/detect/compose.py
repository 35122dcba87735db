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
    return [_service(name, spec or {}, root) for name, spec in services.items() if not (spec or {}).get("profiles")]


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
        s.build_keys = keys
    command = spec.get("command")
    s.command = shlex.join(map(str, command)) if isinstance(command, list) else str(command or "")
    for port in spec.get("ports") or []:
        parsed = _port(port)
        if parsed:
            s.ports.append(parsed)
    s.environment = {k: None if v is None else str(v) for k, v in _mapping(spec.get("environment")).items()}
    env_file = spec.get("env_file") or []
    for item in [env_file] if isinstance(env_file, (str, dict)) else env_file:
        s.env_file.append(str(item.get("path", "")) if isinstance(item, dict) else str(item))
    for dep, how in _mapping(spec.get("depends_on")).items():
        condition = how.get("condition", "service_started") if isinstance(how, dict) else "service_started"
        s.depends_on[dep] = CONDITIONS.get(condition, "started")
    test = (spec.get("healthcheck") or {}).get("test")
    if isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
        s.healthcheck = test[1] if test[0] == "CMD-SHELL" and len(test) == 2 else shlex.join(map(str, test[1:]))
    elif isinstance(test, str):
        s.healthcheck = test
    s.volumes = [str(v) for v in spec.get("volumes") or [] if isinstance(v, str) and v.startswith((".", "/"))]
    return s


def _port(value: Any) -> tuple[int | None, int] | None:
    if isinstance(value, dict):
        target, published = value.get("target"), value.get("published")
        return (int(published) if published else None, int(target)) if target else None
    parts = str(value).split("/")[0].split(":")
    try:
        if len(parts) == 1:
            return None, int(parts[0])
        return int(parts[-2]), int(parts[-1])
    except ValueError:
        return None  # a range ("8000-8010:8000-8010"): not a service's one port


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


def docker_service(s: ComposeService, root: Path, rewrite: Callable[[str], str]) -> Found:
    docker: dict[str, object] = {}
    why = [f"compose service {s.name}: a container"]
    if s.image:
        docker["image"] = s.image
    if s.command:
        docker["command"] = s.command
    keys: dict[str, object] = {"runtime": "docker"}
    published = [(h, c) for h, c in s.ports if h]
    if published:
        keys["port"] = published[0][0]
        docker["port"] = published[0][1]
    env, left_out = literal_env(s.environment, rewrite)
    if env:
        docker["env"] = env
    if left_out:
        why.append(f"left out (they read ${{...}}; give them in env): {', '.join(left_out)}")
    if s.healthcheck:
        docker["healthcheck"] = s.healthcheck
    if s.volumes:
        docker["volumes"] = s.volumes
    if s.build is not None:
        docker["build"] = dict(s.build_keys) if len(s.build_keys) > 1 else s.build_keys.get("context", ".")
    keys["docker"] = docker
    return Found(name=slug(s.name), kind="docker", folder=root, keys=keys, why=why)


def literal_env(environment: dict[str, str | None], rewrite: Callable[[str], str]) -> tuple[dict[str, str], list[str]]:
    env, left_out = {}, []
    for key, value in environment.items():
        if value is None or "$" in value:
            left_out.append(key)
        else:
            env[key] = rewrite(value)
    return env, left_out


def is_server(command: str) -> bool:
    return not command or bool(SERVER_COMMAND.search(command))


# --- Procfile and Supabase ----------------------------------------------------------------------


def procfile(root: Path) -> list[Found]:
    """Procfile lines `name: command`; `$PORT` gets 5000, 5100, ... as foreman and honcho give."""
    found: list[Found] = []
    for line in read_text(root / "Procfile").splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line.strip())
        if not match:
            continue
        name, command = slug(match.group(1)), match.group(2).strip()
        keys: dict[str, object] = {"command": command}
        why = [f"Procfile's {match.group(1)}"]
        if "$PORT" in command or "${PORT}" in command:
            port = 5000 + 100 * len(found)
            keys["env"] = {"PORT": str(port)}
            keys["port"] = port
            keys["health"] = {"tcp": True}
            why.append(f"$PORT = {port}, as foreman and honcho number them")
        found.append(Found(name=name, kind="process", folder=root, keys=keys, why=why))
    return found


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

    docker = shutil.which("supabase") is not None and Path("/var/run/docker.sock").exists()
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
        why.append(
            "its database from PostgreSQL's server binaries, with supabase/migrations "
            '(no Supabase CLI or Docker engine here: runtime = "supabase" once they are)'
        )
    return Found(name="db", kind="postgres", folder=root, keys=keys, why=why)
