"""What a project on disk is made of, for `airadev init`: its apps (Python web apps, Node dev
servers), and what it already declares (a Compose file, a Procfile, supabase/config.toml).

Compose's Redis and PostgreSQL become airadev's native runtimes; a Compose service built from an
app's folder becomes that app as a process (the code you edit runs on the host, restarted on
change), or, when its command is not the server (a migration, a prestart script), that command
in the app's folder; every other Compose service stays a container."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airadev.config.service import SERVICE_KEYS
from airadev.detect import apps, compose
from airadev.detect.found import Found, read_text, service_toml, slug

__all__ = ["Detection", "Found", "scan", "service_toml"]


@dataclass
class Detection:
    services: list[Found] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was seen and not used, and why


def scan(root: Path) -> Detection:
    detection = Detection()
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir() and _candidate(p))]
    found_apps: dict[Path, list[Found]] = {}
    for folder in folders:
        for finder in (apps.python_app, apps.node_app):
            app = finder(folder)
            if app is not None:
                found_apps.setdefault(folder, []).append(app)
    claimed: set[int] = set()
    services: list[Found] = []

    compose_path = compose.compose_file(root)
    if compose_path is not None:
        try:
            declared = compose.read_compose(compose_path)
        except ValueError as exc:
            declared = []
            detection.notes.append(f"{exc}: its services were not read")
        services += _from_compose(declared, root, found_apps, claimed, detection)

    builds = any(f.kind in ("python", "node", "process") for f in services)
    if (root / "Procfile").is_file() and builds:
        detection.notes.append(
            "the Procfile was not used: the Compose file already runs the apps (both would run them twice)"
        )
    elif (root / "Procfile").is_file():
        for entry in compose.procfile(root):
            if entry.name not in {s.name for s in services}:
                services.append(entry)
        for app in found_apps.get(root, []):  # the Procfile says how the root's app starts
            claimed.add(id(app))

    if not any(s.kind == "postgres" for s in services):
        project = compose.supabase_project(root)
        if project is not None:
            services.append(compose.supabase_db(project, root))

    for folder, found in found_apps.items():
        for app in found:
            if id(app) in claimed:
                continue
            base = ("app" if app.kind == "python" else "web") if folder == root else slug(folder.name)
            if len(found) > 1 and app.kind == "node":
                base = f"{base}-web"
            app.name = _unique(base, services)
            clash = next(
                (s for s in services if app.keys.get("port") and s.keys.get("port") == app.keys.get("port")), None
            )
            if clash is not None:  # the same app under another name, most likely
                detection.notes.append(
                    f"{app.why[0]} ({folder.relative_to(root).as_posix() or '.'}/) not added: its port "
                    f"{app.keys['port']} is {clash.name}'s"
                )
                continue
            _depend_on_stack(app, services)
            services.append(app)
    detection.services = services
    return detection


def _candidate(folder: Path) -> bool:
    return not folder.name.startswith((".", "_")) and folder.name not in apps.SKIP_DIRS


def _unique(name: str, services: list[Found]) -> str:
    taken = {s.name for s in services}
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def _depend_on_stack(app: Found, services: list[Found]) -> None:
    """An app whose env files name the database or Redis waits for them."""
    text = " ".join(read_text(app.folder / name) for name in (".env", ".env.example", ".env.sample", ".env.local"))
    depends = {}
    for s in services:
        if s.kind == "postgres" and re.search(r"DATABASE_URL|POSTGRES_|SUPABASE_", text):
            depends[s.name] = "healthy"
        elif s.kind == "redis" and "REDIS" in text:
            depends[s.name] = "healthy"
    if depends:
        app.keys["depends_on"] = depends
        app.why.append("waits for " + ", ".join(depends) + " (named in its env files)")


def _from_compose(
    declared: list[compose.ComposeService],
    root: Path,
    found_apps: dict[Path, list[Found]],
    claimed: set[int],
    detection: Detection,
) -> list[Found]:
    # A stack has one local database: the PostgreSQL the others depend on (else the first);
    # another (a test database) stays a container.
    postgres = [s.name for s in declared if compose.POSTGRES_IMAGES.match(s.image)]
    targets = {dep for s in declared for dep in s.depends_on}
    database = next((n for n in postgres if n in targets), postgres[0] if postgres else None)
    completed = {dep for s in declared for dep, how in s.depends_on.items() if how == "completed"}
    found: dict[str, Found] = {}
    kinds: dict[str, str] = {}
    for s in declared:
        left_out = compose.left_out(s)
        if left_out:
            detection.notes.append(f"{s.name}: left out: {left_out}")
            continue
        app = _app_for(s, found_apps)
        if compose.REDIS_IMAGES.match(s.image):
            kinds[s.name], found[s.name] = "native", compose.native_redis(s, root)
        elif s.name == database:
            kinds[s.name], found[s.name] = "native", compose.native_postgres(s, root)
        elif app is not None and compose.is_server(s.command) and id(app) not in claimed:
            claimed.add(id(app))
            kinds[s.name], found[s.name] = "app", _compose_app(s, app, root, detection)
        elif app is not None and s.command:
            keys: dict[str, object] = {"command": s.command}
            why = [f"compose service {s.name}: `{s.command}` in {app.folder.name}/, in the app's interpreter"]
            if s.name in completed:
                keys["restart"] = {"policy": "no"}
                why.append("a one-shot task: what depends on it waits until it completes")
            kinds[s.name] = "app"
            found[s.name] = Found(name=slug(s.name), kind="process", folder=app.folder, keys=keys, why=why)
        else:
            kinds[s.name], found[s.name] = "docker", compose.docker_service(s, root)
            extra = [h for h, c in s.ports[1:] if h]
            if extra:
                detection.notes.append(
                    f"{s.name}: Compose publishes {len(extra) + 1} ports; airadev publishes one a container "
                    f"({found[s.name].keys.get('port')}; not {', '.join(map(str, extra))})"
                )
    # Where each is reached from this machine: the port it listens on here (an app, a native
    # runtime) or publishes (a container), by the port Compose's network used.
    inner = {"redis": 6379, "postgres": 5432}
    reach: dict[str, dict[int, int]] = {}
    for s in declared:
        if s.name not in found:
            continue
        port = found[s.name].keys.get("port")
        published = {c: h for h, c in s.ports if h}
        if kinds[s.name] != "docker" and isinstance(port, int):
            published = {**{c: port for c in (*published, *inner.values(), port)}}
        reach[s.name] = published

    def rewrite(value: str, inside: bool) -> str:
        """A Compose service's name in a URL (`@db:5432`, `http://backend:8000`), or a bare
        host name, as where the service is now: this machine's loopback (a container's
        runtime turns it into host.docker.internal); a container stays reached by its name
        from another container, on the stack's network."""
        for name, ports in reach.items():
            if kinds[name] == "docker" and (inside or not ports):  # (no port: nowhere to reach it from here)
                continue

            def one(m: re.Match[str], ports: dict[int, int] = ports) -> str:
                port = int(m.group(2)) if m.group(2) else None
                host_port = ports.get(port, port) if port else None
                return f"{m.group(1)}127.0.0.1" + (f":{host_port}" if host_port else "")

            value = re.sub(rf"(//|@){re.escape(name)}(?::(\d+))?(?=[/?#\s]|$)", one, value)
            if value == name:
                value = "127.0.0.1"
        return value

    for s in declared:
        if s.name not in found:
            continue
        item = found[s.name]
        if kinds[s.name] == "docker":
            compose.container_env(s, item, lambda v: rewrite(v, True))
        elif kinds[s.name] == "app":
            _carry_env(s, item, root, lambda v: rewrite(v, False))
        unreachable = [d for d in s.depends_on if kinds.get(d) == "docker" and not reach.get(d)]
        if kinds[s.name] == "app" and unreachable:
            detection.notes.append(
                f"{s.name} runs on this machine, and {', '.join(unreachable)} publishes no port: "
                "add one to its docker table for the app to reach it"
            )
        depends = {
            slug(dep): ("healthy" if kinds.get(dep) == "native" and how == "started" else how)
            for dep, how in s.depends_on.items()
            if dep in found
        }
        if depends:
            item.keys["depends_on"] = depends
    return list(found.values())


def _compose_app(s: compose.ComposeService, app: Found, root: Path, detection: Detection) -> Found:
    published = [(h, c) for h, c in s.ports if h]
    found = app
    if published and not app.port_fixed:  # the port the project uses with Compose
        finder = apps.python_app if app.kind == "python" else apps.node_app
        found = finder(app.folder, published[0][0]) or app
    found.name = slug(s.name)
    where = app.folder.relative_to(root).as_posix() or "."
    found.why.insert(0, f"compose service {s.name}, built from {where}/: run as a process")
    if published and published[0][0] != found.keys.get("port"):
        detection.notes.append(
            f"{s.name}: Compose publishes port {published[0][0]}, the app listens on {found.keys.get('port')} "
            "on the host: airadev uses the app's"
        )
    return found


def _app_for(s: compose.ComposeService, found_apps: dict[Path, list[Found]]) -> Found | None:
    """The app a Compose service builds: the app of its Dockerfile's folder, else of its build
    context (`docker/local.Dockerfile` built from `.`); a test runner's image built from the
    same code is not that app."""
    if s.build is None or compose.TEST_RUNNER.search(s.build_keys.get("dockerfile", "")):
        return None
    for folder in (s.build, s.context):
        candidates = found_apps.get(folder, []) if folder is not None else []
        if candidates:
            return candidates[0]
    return None


def _carry_env(s: compose.ComposeService, found: Found, root: Path, rewrite: Callable[[str], str]) -> None:
    env, left_out = compose.literal_env(s.environment, rewrite)
    if env:
        own = found.keys.get("env")
        found.keys["env"] = {**(own if isinstance(own, dict) else {}), **env}
    own_files = found.keys.get("env_files")
    files = [str(f) for f in own_files] if isinstance(own_files, list) else []
    for name in s.env_file:
        relative = os.path.relpath(root / name, found.folder)
        if relative not in files:
            files.append(relative)
    if left_out and (root / ".env").is_file() and os.path.relpath(root / ".env", found.folder) not in files:
        files.append(os.path.relpath(root / ".env", found.folder))  # where Compose reads them from
    if files:
        found.keys["env_files"] = files
    if left_out:
        found.why.append(
            f"from Compose's environment, left to the env files (they read ${{...}}): {', '.join(left_out)}"
        )
    # in the order airadev.toml's reference lists them: env files and env before port and health
    order = SERVICE_KEYS
    found.keys = {k: found.keys[k] for k in sorted(found.keys, key=lambda k: order.index(k) if k in order else 99)}
