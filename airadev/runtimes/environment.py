"""What a service's process environment is, and which values must never be shown."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from airadev.errors import AiradevError
from airadev.integrations import envfile
from airadev.model import Config, Service
from airadev.reaper import INSTANCE_VAR, MARKER_VAR, MARKER_VARS, SERVICE_VAR


def env_file_values(service: Service) -> dict[str, str]:
    values: dict[str, str] = {}
    for path in service.env_files:
        if not path.is_file():
            example = _example_for(path)
            fix = f"cp {example} {path}" if example else f"create {path}, or remove it from env_files"
            raise AiradevError(f"services.{service.name}.env_files: {path} not found", fix)
        values.update(envfile.read(path))
    return values


def _example_for(path: Path) -> Path | None:
    for name in (path.name + ".example", ".env.example"):
        candidate = path.with_name(name)
        if candidate.is_file():
            return candidate
    return None


def find_venv(service: Service) -> Path | None:
    for candidate in service.venv:
        if (candidate / "bin" / "python").exists():
            return candidate
    if service.venv_explicit:
        raise AiradevError(
            f"services.{service.name}.venv: {service.venv[0]} is not a virtualenv",
            f"create it (python3 -m venv {service.venv[0]}) or fix venv in airadev.toml",
        )
    return None


def service_env(
    service: Service,
    marker: str,
    *,
    colour: bool,
    instance: int = 0,
    base: Mapping[str, str] | None = None,
    stack: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a service's process starts with.

    The user's own environment, then the service's env files (unless the service reads them
    itself, like Next.js), then its ``env`` table; Python output unbuffered; colour hints when
    the console is a terminal; and the markers by which every process of the run, of the
    service and of this one start of it (``instance``) is found.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in MARKER_VARS}
    env.update(stack or {})  # what the stack gives it (stack_env); its own files and table win
    if service.load_env_files:
        env.update(env_file_values(service))
    env.update(dict(service.env))
    venv = find_venv(service)
    if venv:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
        env.pop("PYTHONHOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    if colour:
        env.setdefault("FORCE_COLOR", "1")
        env.setdefault("CLICOLOR_FORCE", "1")
    env[MARKER_VAR] = marker
    env[SERVICE_VAR] = service.name
    env[INSTANCE_VAR] = f"{service.name}.{instance}"
    return env


def stack_secrets(config: Config) -> list[tuple[str, str]]:
    """Every secret value of every service's env files and env tables, with its variable's name,
    and the secrets inside any of their values (``envfile.secrets_in_values``). Pairs, not a
    mapping by name: two services may give one name two values (each its own database password),
    and both must be hidden.

    Missing env files are skipped here; starting the service reports them."""
    found: list[tuple[str, str]] = []
    for service in config.services:
        values: dict[str, str] = {}
        for path in service.env_files:
            if path.is_file():  # what can be read of it: a broken line is for `up` to report
                values.update(envfile.read(path, strict=False))
        values.update(dict(service.env))
        found += envfile.secrets_of(values).items()
        found += envfile.secrets_in_values(values).items()  # a URL's password, a PEM block, a JWT
        if service.database is not None and service.database.password != "postgres":
            from urllib.parse import quote

            password = service.database.password  # as it is, and as DATABASE_URL has it
            found += [(f"{service.name}.password", password), (f"{service.name}.password", quote(password, safe=""))]
    found += [(name, value) for name, value in os.environ.items() if envfile.is_secret(name) and value]
    return found


def stack_env(config: Config, service: Service) -> dict[str, str]:
    """What a service gets from the rest of the stack: the local database's ``DATABASE_URL``;
    and for the KB updater, when Supabase's database trigger must reach it from a container,
    ``HOST``/``UVICORN_HOST`` of 0.0.0.0 (uvicorn's default 127.0.0.1 is unreachable from
    there, FACTS.md)."""
    from airadev.integrations import database

    from airadev.model import Runtime

    db = config.database()
    if db is None or db.name == service.name:
        return {}
    env = {"DATABASE_URL": database.url(db)}
    kb = database.kb_service(config)
    if kb is not None and kb.name == service.name and db.runtime is Runtime.SUPABASE:
        env.update(HOST="0.0.0.0", UVICORN_HOST="0.0.0.0")
    # A service that reads env files itself (Next.js; python-dotenv, which never overrides the
    # environment) would have them overridden by the process environment: what such a file sets,
    # the stack does not. Its declared files when airadev does not load them, and a .env in its
    # folder that airadev.toml does not name (the app's own).
    own = [] if service.load_env_files else list(service.env_files)
    undeclared = service.cwd / ".env"
    if undeclared not in service.env_files:
        own.append(undeclared)
    for path in own:
        if path.is_file():
            for name in envfile.read(path, strict=False):
                env.pop(name, None)
    return env
