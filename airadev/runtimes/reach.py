"""How the stack's containers and this machine reach each other.

A container's environment with this machine's loopback written as the container reaches it (the
stack's other containers by name on the stack's own network, the rest at host.docker.internal);
that network; the address at which containers reach this machine (the default bridge's
gateway), where airadev's PostgreSQL and the KB updater's published port also listen; and the
stack's services of this machine that listen on loopback alone, out of a container's reach.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from airadev.integrations.docker import DockerError, engine_call, message_of, network_name
from airadev.integrations.engine import RUN_LABEL, WORKSPACE_LABEL, engine_host, is_local
from airadev.model import Service
from airadev.runtimes.base import Context
from airadev.state import workspace_id


def peers_of(containers: list[Service], service: Service) -> dict[int, tuple[str, int]]:
    """The other containers of the stack by the port they publish: (name, port inside)."""
    return {
        s.port: (s.name, s.docker.port or s.port) for s in containers if s.port and s.docker and s.name != service.name
    }


def container_env(service: Service, env: Mapping[str, str], peers: Mapping[int, tuple[str, int]]) -> dict[str, str]:
    """What the container gets: not this machine's environment (PATH, HOME, ... are the
    image's business), only what is the service's: its env files and tables, the stack's, the
    markers; with addresses on this machine's loopback as the container reaches them.

    ``peers``: host port → (name, container port) of the stack's other containers."""
    from airadev.runtimes.environment import env_file_values

    values = env_file_values(service) if service.load_env_files else {}
    values.update(dict(service.env))
    values.update(dict(service.docker.env if service.docker else ()))
    for key in ("DATABASE_URL", "PYTHONUNBUFFERED", "AIRADEV_RUN", "AIRADEV_SERVICE", "AIRADEV_INSTANCE"):
        if key in env and key not in values:
            values[key] = env[key]
    out = {key: _from_inside(value, peers) for key, value in values.items()}
    # A bare host (REDIS_HOST=localhost) goes with its port (REDIS_PORT=6379): when that port is
    # another container's, both become that container's name and port on the stack's network.
    for key, value in values.items():
        port_key = _port_key(key)
        if value in _LOOPBACK_NAMES and values.get(port_key, "").isdigit() and int(values[port_key]) in peers:
            name, inner = peers[int(values[port_key])]
            out[key], out[port_key] = name, str(inner)
    return out


_HOST_PORT = re.compile(r"host\.docker\.internal:(\d+)")


def loopback_only(ctx: Context, inside: Mapping[str, str], gateway: str | None) -> list[tuple[Service, int]]:
    """The stack's services of this machine (not containers) that the container's environment
    reaches at host.docker.internal (``gateway``) and that answer on loopback but not there: a
    connection to each, both ways. One not listening yet is not judged."""
    if gateway is None:
        return []
    ports = {int(port) for value in inside.values() for port in _HOST_PORT.findall(value)}
    for key, value in inside.items():
        if value == "host.docker.internal" and inside.get(_port_key(key), "").isdigit():
            ports.add(int(inside[_port_key(key)]))
    by_port = {s.port: s for s in ctx.config.services if s.port in ports and s.runtime.value != "docker"}
    return [
        (by_port[port], port) for port in sorted(by_port) if _answers("127.0.0.1", port) and not _answers(gateway, port)
    ]


def _port_key(key: str) -> str:
    """REDIS_HOST's port variable, REDIS_PORT ("" for a name that is not a *_HOST)."""
    return key[: -len("_HOST")] + "_PORT" if key.endswith("_HOST") else ""


def _answers(address: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def is_trigger_target(ctx: Context, service: Service) -> bool:
    from airadev.integrations.database import kb_service

    kb = kb_service(ctx.config)
    return kb is not None and kb.name == service.name


def _in_run(ctx: Context) -> list[Service]:
    """The services of this run (all of the config's when the context does not say)."""
    return [s for s in ctx.config.services if not ctx.running or s.name in ctx.running]


def container_services(ctx: Context) -> list[Service]:
    """The run's services that run as containers."""
    return [s for s in _in_run(ctx) if s.runtime.value == "docker" and s.docker]


def needs_network(ctx: Context) -> bool:
    """The run's containers get a network of their own when there are several (to find each
    other by name), or when the database is airadev's PostgreSQL (which trusts that network's
    subnet alone, never the default bridge's: any container of this machine is on that one)."""
    containers = container_services(ctx)
    database = any(s.runtime.value == "postgres" for s in _in_run(ctx))
    return len(containers) > 1 or bool(containers) and database


def host_gateway(host: str) -> str | None:
    """The address at which a container reaches this machine: ``host.docker.internal``, which
    the engine maps to its default bridge's gateway. None when the engine is not on this
    machine, has no such bridge, does not answer, or when that address is not one of this
    machine's (rootless Docker, Docker Desktop: the bridge is the engine's own)."""
    if not is_local(host):
        return None
    try:
        status, bridge = engine_call(host, "GET", "/networks/bridge")
    except DockerError:
        return None
    import psutil

    mine = {a.address for addresses in psutil.net_if_addrs().values() for a in addresses}
    for ipam in ((bridge.get("IPAM") or {}).get("Config") or []) if status == 200 else []:
        gateway = ipam.get("Gateway")
        if gateway and ":" not in gateway and gateway in mine:
            return str(gateway)
    return None


def reach_from_containers(ctx: Context) -> tuple[str, str] | None:
    """For the postgres runtime, when the run's containers must reach it: the address to listen
    on besides loopback (host.docker.internal's) and the one subnet to trust, the stack's own
    network's (made now). None when the run has no container, the engine is elsewhere, or the
    network cannot be made (then said, and the database stays on loopback)."""
    if not container_services(ctx) or not needs_network(ctx):
        return None
    host = engine_host()
    gateway = host_gateway(host)
    if gateway is None:
        if is_local(host):
            ctx.event(
                None,
                "the containers cannot reach the database: the address host.docker.internal names is not this "
                "machine's (rootless Docker, Docker Desktop), so it stays on loopback; run the database as a "
                'container (runtime = "supabase")',
                "warning",
            )
        return None
    try:
        name = ensure_network(host, ctx.config.root, ctx)
        status, network = engine_call(host, "GET", f"/networks/{name}")
    except DockerError as exc:
        ctx.event(None, f"the containers cannot reach the database: {exc.message}", "warning")
        return None
    for ipam in ((network.get("IPAM") or {}).get("Config") or []) if status == 200 else []:
        if ipam.get("Subnet") and ":" not in ipam["Subnet"]:
            return gateway, str(ipam["Subnet"])
    return None


_LOOPBACK_NAMES = ("127.0.0.1", "localhost")
_LOOPBACK = re.compile(r"(?:(?<=//)|(?<=@))(127\.0\.0\.1|localhost)(?::(\d+))?(?=[:/?#]|$)")


def _from_inside(value: str, peers: Mapping[int, tuple[str, int]]) -> str:
    """This machine's loopback as a container sees it: another container of the stack by its
    name (when the port is one it publishes), else host.docker.internal. A service of the host
    must listen on more than 127.0.0.1 for a container to reach it."""
    if value in _LOOPBACK_NAMES:
        return "host.docker.internal"

    def swap(match: re.Match[str]) -> str:
        port = match.group(2)
        if port and int(port) in peers:
            name, inner = peers[int(port)]
            return f"{name}:{inner}"
        return "host.docker.internal" + (f":{port}" if port else "")

    return _LOOPBACK.sub(swap, value)


@contextlib.contextmanager
def announced(ctx: Context) -> Iterator[None]:
    """Around a request that makes a container or a network: should the supervisor die before
    the answer, the engine still makes it, and its watchdog then looks for it again."""
    ctx.creating(True)
    try:
        yield
    finally:
        ctx.creating(False)


_network_lock = threading.Lock()  # services start in parallel: one creates the network


def ensure_network(host: str, root: Any, ctx: Context) -> str:
    """The workspace's own network, on which its containers find each other by service name."""
    with _network_lock:
        return _ensure_network(host, root, ctx)


def _ensure_network(host: str, root: Any, ctx: Context) -> str:
    name, ours = network_name(root), workspace_id(root)
    for _ in range(3):
        status, found = engine_call(host, "GET", f"/networks/{name}")
        if status == 404:
            # CheckDuplicate: engines before 25 otherwise make a second network of that name.
            with announced(ctx):
                status, answer = engine_call(
                    host,
                    "POST",
                    "/networks/create",
                    {
                        "Name": name,
                        "Driver": "bridge",
                        "CheckDuplicate": True,
                        "Labels": {WORKSPACE_LABEL: ours, RUN_LABEL: ctx.marker},
                    },
                )
            if status == 409:  # made meanwhile by another service's start
                continue
            if status != 201:
                raise DockerError(
                    f"cannot create the network {name}: {message_of(answer)}",
                    "see `docker network ls`; `airadev down` removes this workspace's networks",
                )
            return name
        if status != 200:
            raise DockerError(f"cannot look up the network {name}: {message_of(found)}", "see `docker network ls`")
        if (found.get("Labels") or {}).get(WORKSPACE_LABEL) != ours:
            raise DockerError(f"the network {name} is not airadev's", f"remove it (docker network rm {name})")
        return name
    return name
