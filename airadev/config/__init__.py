"""airadev.toml: find it, load it, apply defaults, validate, freeze.

The pipeline is ``find_root → load (tomllib) → Table readers (defaults + validation) →
model.Config``. Every error names the file, the service and the key, suggests the closest
valid key or name, and is raised as :class:`ConfigError` (exit code 2).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airadev.config.service import parse_service
from airadev.config.table import NAME_RE, RESERVED_NAMES, Table, service_ref, show
from airadev.config.table import parse_size, split_command  # noqa: F401  (part of this API)
from airadev.errors import ConfigError, did_you_mean
from airadev.model import (
    Condition,
    Config,
    Dependency,
    LogSettings,
    Restart,
    RestartPolicy,
    Runtime,
    Service,
    StripeSettings,
    TunnelSettings,
    TwilioSettings,
)
from airadev.workspace import CONFIG_NAME, find_root, parse_duration  # noqa: F401  (part of this API)

TOP_KEYS = ("services", "logs", "tunnel", "twilio", "stripe")
STRIPE_KEYS = ("enabled", "ui_service", "path", "events", "env_file", "variable", "key_variable", "cli")
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
    top = Table(raw, file, "")
    top.finish(TOP_KEYS)  # an unknown key first: [service.x] is a typo of [services.x]
    services_raw = top.get("services", dict)
    if not services_raw:
        raise ConfigError(
            f"{file}: no services are defined",
            "add a [services.NAME] table with its command (`airadev init` writes one for the AiRa repos)",
        )
    logs = _parse_logs(top.table("logs"))
    tunnel_table, twilio_table = top.table("tunnel"), top.table("twilio")

    services = []
    for name, body in services_raw.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{file}: services.{name}: expected a table", f"write it as [services.{name}]")
        services.append(parse_service(name, Table(body, file, f"services.{name}"), root))
        if services[-1].runtime is Runtime.STRIPE:
            raise ConfigError(
                f'{file}: services.{name}.runtime: "stripe" is the service [stripe] adds',
                "write a [stripe] table instead (see the README)",
            )
    stripe = _parse_stripe(top.table("stripe"), root) if "stripe" in raw else StripeSettings()
    if stripe.enabled:
        taken = next((s for s in services if "stripe" in s.names), None)
        if taken is not None:
            raise ConfigError(
                f'{file}: services.{taken.name}: the name "stripe" is the service [stripe] adds (the Stripe listener)',
                f"rename services.{taken.name} (or its alias), or remove [stripe]",
            )
        services.append(_stripe_service(stripe, services, file))
    _check_names(services, file)
    databases = [s.name for s in services if s.database is not None]
    if len(databases) > 1:
        raise ConfigError(
            f"{file}: services {', '.join(databases)}: a stack has one local database",
            'keep one service with runtime = "postgres" or "supabase"',
        )
    services = _resolve_dependencies(services, file)
    _check_ports(services, file)
    names = {n for s in services for n in s.names}
    tunnel = _parse_tunnel(tunnel_table, root, names)
    twilio = _parse_twilio(twilio_table, names)
    return Config(
        root=root, file=file, services=tuple(services), logs=logs, tunnel=tunnel, twilio=twilio, stripe=stripe
    )


def _parse_stripe(t: Table, root: Path) -> StripeSettings:
    path = t.get("path", str, default=StripeSettings.path)
    if not path.startswith("/"):
        raise t.error(
            "path", f"expected a path starting with /, got {show(path)}", 'write path = "/api/payment/webhook"'
        )
    events = t.get("events", list, default=list(StripeSettings.events))
    if not events or not all(isinstance(e, str) and re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)+|\*", e) for e in events):
        raise t.error(
            "events",
            f"expected Stripe event names, got {show(events)}",
            'write events = ["checkout.session.completed"]',
        )
    names = {}
    for key in ("variable", "key_variable"):
        names[key] = t.get(key, str, default=getattr(StripeSettings, key))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", names[key]):
            raise t.error(
                key, f'"{names[key]}" is not a variable name', f'write {key} = "{getattr(StripeSettings, key)}"'
            )
    env_file = t.get("env_file", str, default="")
    settings = StripeSettings(
        enabled=t.get("enabled", bool, default=True),
        ui_service=t.get("ui_service", str, default=""),
        path=path,
        events=tuple(events),
        env_file=(root / env_file) if env_file else None,
        cli=t.get("cli", str, default=StripeSettings.cli) or StripeSettings.cli,
        **names,
    )
    t.finish(STRIPE_KEYS)
    return settings


def _stripe_service(stripe: StripeSettings, services: list[Service], file: Path) -> Service:
    """The service [stripe] adds: `stripe listen` forwarding to the UI (runtimes/stripe.py
    builds its command), ready once its signing secret is in the UI's env file."""
    wanted = [stripe.ui_service] if stripe.ui_service else ["ui", "aira-ui"]
    ui = next((s for name in wanted for s in services if name in s.names), None)
    if ui is None:
        raise ConfigError(
            f"{file}: [stripe]: no UI service to forward Stripe's events to",
            'set [stripe] ui_service = "NAME" (the Next.js app serving the webhook path)',
        )
    if ui.port is None:
        raise ConfigError(f"{file}: [stripe]: services.{ui.name} has no port", f"set services.{ui.name}.port")
    env_file = stripe.env_file or next((p for p in ui.env_files if p.name == ".env.local"), ui.cwd / ".env.local")
    url = f"http://127.0.0.1:{ui.port}{stripe.path}"
    return Service(
        name="stripe",
        # What it runs with, whole (runtimes/stripe.py finds the CLI): a changed [stripe] or UI
        # port is a changed service, restarted by `up` on a running stack.
        command=(stripe.cli, "listen", "--forward-to", url, "--events", ",".join(stripe.events), "--skip-update"),
        cwd=ui.cwd,
        runtime=Runtime.STRIPE,
        env_files=(env_file,),
        depends_on=(Dependency(ui.name, Condition.STARTED),),
    )


def _parse_tunnel(t: Table, root: Path, names: set[str]) -> TunnelSettings:
    env_file_raw = t.get("env_file", (str, bool), default="")
    if env_file_raw is True:
        raise t.error("env_file", "true names no file", 'write env_file = "aira-ui/.env.local", or false for none')
    env_file = env_file_raw or ""
    ngrok_path = t.get("ngrok_path", str, default="")
    variable = t.get("variable", str, default=TunnelSettings.variable)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
        raise t.error("variable", f'"{variable}" is not a variable name', 'write variable = "VOICE_AGENT_SERVICE_URL"')
    settings = TunnelSettings(
        service=service_ref(t, "service", names),
        ui_service=service_ref(t, "ui_service", names),
        env_file=(root / env_file) if env_file else None,
        no_env_file=env_file_raw is False,
        variable=variable,
        ngrok_path=Path(ngrok_path).expanduser() if ngrok_path else None,
        domain=t.get("domain", str, default=""),
        region=t.get("region", str, default=""),
        start_timeout=t.duration("start_timeout", TunnelSettings.start_timeout),
    )
    t.finish(TUNNEL_KEYS)
    return settings


def _parse_twilio(t: Table, names: set[str]) -> TwilioSettings:
    number = t.get("test_number", str, default="")
    if number and not E164.match(number):
        raise t.error("test_number", f'"{number}" is not an E.164 number', 'write it like "+15551234567"')
    paths = {}
    for key in ("voice_path", "sms_path", "status_path"):
        value = t.get(key, (str, bool), default=getattr(TwilioSettings, key))
        if value is False:  # that URL of the number is left as it is
            paths[key] = ""
            continue
        if value is True or not value.startswith("/"):
            raise t.error(
                key, f"expected a path starting with /, got {show(value)}", f'write {key} = "/webhooks/twilio/..."'
            )
        paths[key] = value
    settings = TwilioSettings(
        test_number=number,
        credentials_from=service_ref(t, "credentials_from", names),
        timeout=t.duration("timeout", TwilioSettings.timeout),
        **paths,
    )
    t.finish(TWILIO_KEYS)
    return settings


def _parse_logs(table: Table) -> LogSettings:
    size_raw = table.get("max_size", (str, int), default=None)
    max_size = LogSettings.max_size
    if size_raw is not None:
        max_size = parse_size(size_raw) or 0
        if max_size < 64 * 1024:
            raise table.error(
                "max_size", f"expected a size of at least 64KB, got {show(size_raw)}", 'write max_size = "20MB"'
            )
    keep = table.positive_int("keep", LogSettings.keep, minimum=1)
    table.finish(LOG_KEYS)
    return LogSettings(max_size=max_size, keep=keep)


# --- whole-stack checks ----------------------------------------------------------------------


def _check_names(services: list[Service], file: Path) -> None:
    owner: dict[str, str] = {}
    for service in services:
        for alias in service.aliases:
            if not NAME_RE.match(alias) or alias in RESERVED_NAMES:
                raise ConfigError(
                    f'{file}: services.{service.name}.aliases: "{alias}" is not a valid name',
                    "use lowercase letters, digits, - or _",
                )
        for name in service.names:
            if name in owner and owner[name] != service.name:
                raise ConfigError(
                    f'{file}: services.{service.name}: the name "{name}" is already used by services.{owner[name]}',
                    "give each service and alias a name of its own",
                )
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
                    f'"{dep.name}"{did_you_mean(dep.name, canonical)}',
                    f"services are: {', '.join(s.name for s in services)}",
                )
            if canonical[dep.name] == service.name:
                raise ConfigError(
                    f"{file}: services.{service.name}.depends_on: a service cannot depend on itself",
                    f'remove "{dep.name}" from its depends_on',
                )
            deps.append(dataclasses.replace(dep, name=canonical[dep.name]))
        resolved.append(dataclasses.replace(service, depends_on=tuple(deps)))
    # A task others wait to complete (a migration) is not run again when it fails, unless its
    # restart says so: Compose's service_completed_successfully, and a failed migration's lines
    # stay the last ones.
    tasks = {d.name for s in resolved for d in s.depends_on if d.condition is Condition.COMPLETED}
    resolved = [
        dataclasses.replace(s, restart=Restart(policy=RestartPolicy.NO))
        if s.name in tasks and not s.restart_given
        else s
        for s in resolved
    ]
    from airadev.graph import find_cycle

    cycle = find_cycle({s.name: [d.name for d in s.depends_on] for s in resolved})
    if cycle:
        raise ConfigError(f"{file}: dependency cycle: {' → '.join(cycle)}", "remove one of these depends_on entries")
    return resolved


def _check_ports(services: list[Service], file: Path) -> None:
    seen: dict[int, str] = {}
    for service in services:
        if service.port is None:
            continue
        if service.port in seen:
            raise ConfigError(
                f"{file}: services.{service.name}.port: {service.port} is also the port of services.{seen[service.port]}",
                "give each service its own port",
            )
        seen[service.port] = service.name


# END
