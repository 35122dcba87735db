"""The ``docker`` runtime: a service as a container.

A container is created with a stable name (``airadev-<workspace id>-<service>``) and labels
for the workspace, the service and the run, so airadev finds its own and never touches anyone
else's. Its output, read from the engine from its first byte, flows into the same framing,
redaction and log files as a process's. ``DOCKER_HOST`` (and the SDK's TLS variables) choose
the engine, as for the docker CLI.

The start path (network, create, start, inspect) and the health checks speak the Engine API
themselves (``engine_call``): the SDK's import takes a fifth of a second, as long as creating
a container, so it is left to the threads that follow a started container (logs, waiting,
stop, removal) and to what is rare (pulls, names to clear). Importing it in the background
from the supervisor's start was tried: it slowed the start path by 30 ms (the GIL).

Threads: the SDK is blocking. Each instance has a reader thread (the log stream) and a
waiter thread (``wait``); both hand results to the loop with ``call_soon_threadsafe``, so the
loop stays the one owner of state.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from airadev.integrations.docker import (
    BAKED,
    baked_env_files,
    build_image,
    DockerError,
    client,
    container_name,
    engine_call,
    ensure_image,
    failures,
    image_of,
    message_of,
    network_name,
    ours,
    remove_and_wait,
    why_of,
)
from airadev.integrations.engine import (
    RUN_LABEL,
    SERVICE_LABEL,
    WORKSPACE_LABEL,
    engine_host,
    engine_hostname,
    is_local,
)
from airadev.model import Service
from airadev.runtimes.base import Context, OnOutput
from airadev.state import workspace_id

HEALTH_INTERVAL_NS = 10**9  # docker.healthcheck's interval (the same in the Compose export)


class DockerRuntime:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def start(self, service: Service, env: Mapping[str, str], on_output: OnOutput) -> DockerInstance:
        loop = asyncio.get_running_loop()

        def from_thread(data: bytes) -> None:  # a build's output, on its way from the worker thread
            loop.call_soon_threadsafe(on_output, data)

        container = await asyncio.to_thread(self._run, service, env, from_thread)
        return DockerInstance(container, service, loop, on_output, self.ctx)

    def _run(self, service: Service, env: Mapping[str, str], on_output: OnOutput) -> dict[str, Any]:
        """Build its image if asked to (`up --build`), create and start the service's container;
        the engine's inspection of it."""
        host = engine_host()
        wanted = service.name in self.ctx.rebuild or self.ctx.build and service.name not in self.ctx.built
        if wanted and service.docker and service.docker.build:
            self._build(service, image_of(service, env), on_output, host)
        cid = self._create(service, env, host, on_output)
        try:
            status, answer = engine_call(host, "POST", f"/containers/{cid}/start")
            if status not in (204, 304):  # 304: started already
                raise DockerError(
                    f"services.{service.name}: its container does not start: {message_of(answer)}",
                    "is the port taken (`airadev doctor`), or the command wrong?",
                )
            status, attrs = engine_call(host, "GET", f"/containers/{cid}/json")
            if status != 200:
                raise DockerError(
                    f"services.{service.name}: its container is gone after its start: {message_of(attrs)}",
                    "see `docker ps -a` and `docker events`",
                )
            return attrs
        except DockerError:
            self._discard(host, cid)  # a container that is not watched must not stay
            raise

    def _build(self, service: Service, image: str, on_output: OnOutput, host: str) -> None:
        self.ctx.event(service.name, f"building its image {image}", "info")
        for name in baked_env_files(service):
            self.ctx.event(service.name, BAKED.format(name=name), "warning")
        seconds = build_image(service, image, on_output, host=host)
        self.ctx.built.add(service.name)
        self.ctx.rebuild.discard(service.name)
        self.ctx.event(service.name, f"built its image {image} in {seconds:.1f}s", "info")

    def _create(self, service: Service, env: Mapping[str, str], host: str, on_output: OnOutput) -> str:
        image = image_of(service, env)
        name = container_name(self.ctx.config.root, service)
        body = self._config(service, env, image, host)
        # Straight to `create`, the common case; what it refuses says what to do first.
        for _ in range(3):
            with announced(self.ctx):
                status, answer = engine_call(host, "POST", f"/containers/create?name={name}", body)
            if status == 201:
                return str(answer["Id"])
            if status == 404 and "image" in message_of(answer).lower():
                if service.docker and service.docker.build and service.name not in self.ctx.built:
                    self._build(service, image, on_output, host)  # missing: built (not pulled)
                else:
                    ensure_image(client(), service, image)  # pulls it, or explains why not
            elif status == 409:  # the name is taken
                self._clear_name(client(), service, name)
            else:
                raise DockerError(
                    f"services.{service.name}: cannot create its container: {message_of(answer)}",
                    "check docker.image, docker.volumes and the port in airadev.toml",
                )
        raise DockerError(
            f"services.{service.name}: its container could not be created",
            "see `docker ps -a`; `airadev down` removes this workspace's containers",
        )

    def _config(self, service: Service, env: Mapping[str, str], image: str, host: str) -> dict[str, Any]:
        """The engine's container configuration (the body of ``POST /containers/create``)."""
        spec = service.docker
        assert spec is not None
        root = self.ctx.config.root
        containers = container_services(self.ctx)
        peers = peers_of(containers, service)
        host_config: dict[str, Any] = {"Binds": list(spec.volumes), "ExtraHosts": ["host.docker.internal:host-gateway"]}
        inside = container_env(service, env, peers)
        gateway = host_gateway(host)
        for peer, port in loopback_only(self.ctx, inside, gateway):
            self.ctx.event(
                service.name,
                f"its environment reaches {peer.name} at host.docker.internal:{port}, but {peer.name} listens on "
                f"this machine's loopback only, which a container cannot reach; make it listen on {gateway} "
                "too (redis-server: --bind 127.0.0.1 <that address>), or give it a docker table and run it as "
                "a container",
                "warning",
            )
        config: dict[str, Any] = {
            "Image": image,
            "Cmd": list(spec.command) or None,
            "Env": [f"{key}={value}" for key, value in inside.items()],
            "Labels": {
                WORKSPACE_LABEL: workspace_id(root),
                SERVICE_LABEL: service.name,
                RUN_LABEL: self.ctx.marker,
                "dev.airadev.root": str(root),
            },
            "StopSignal": signal.Signals(service.stop_signal).name,
            "HostConfig": host_config,
        }
        if service.port is not None:
            inner = f"{spec.port or service.port}/tcp"
            config["ExposedPorts"] = {inner: {}}
            # Loopback only on this machine (on a remote engine, where this machine must reach it);
            # the KB updater also where containers reach this machine (host.docker.internal), for
            # Supabase's database, whose trigger posts to it.
            bindings = [{"HostIp": "127.0.0.1" if is_local(host) else "", "HostPort": str(service.port)}]
            if gateway and _is_trigger_target(self.ctx, service):
                bindings.append({"HostIp": gateway, "HostPort": str(service.port)})
            host_config["PortBindings"] = {inner: bindings}
        if needs_network(self.ctx):  # a network of their own, to find each other by name
            network = ensure_network(host, root, self.ctx)
            host_config["NetworkMode"] = network
            config["NetworkingConfig"] = {"EndpointsConfig": {network: {"Aliases": list(service.names)}}}
        if spec.healthcheck:
            config["Healthcheck"] = {
                "Test": ["CMD-SHELL", spec.healthcheck],
                "Interval": HEALTH_INTERVAL_NS,
                "Timeout": 3 * 10**9,
                "Retries": 30,
            }
        return config

    def _discard(self, host: str, cid: str) -> None:
        try:
            status, _ = engine_call(host, "DELETE", f"/containers/{cid}?force=1")
        except DockerError:
            status = 0
        if status not in (204, 404):
            # It may still be there: the state says so, and the next `up` or `down` removes it.
            self.ctx.stop_options["containers_left"] = True

    def _clear_name(self, api: Any, service: Service, name: str) -> None:
        """The name is taken: by an old container of ours (a new one replaces it), or by someone
        else's (never touched)."""
        import docker

        try:
            existing = api.containers.get(name)
        except docker.errors.NotFound:
            return
        if not ours(existing, self.ctx.config.root):
            raise DockerError(
                f"services.{service.name}: the container name {name} is taken by a container airadev did not make",
                f"remove it if it is yours to remove (docker rm -f {name})",
            )
        remove_and_wait(api, existing)


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
        port_key = key[: -len("_HOST")] + "_PORT" if key.endswith("_HOST") else ""
        if value in _LOOPBACK_NAMES and values.get(port_key, "").isdigit() and int(values[port_key]) in peers:
            name, inner = peers[int(values[port_key])]
            out[key], out[port_key] = name, str(inner)
    return out


_HOST_PORT = re.compile(r"host\.docker\.internal:(\d+)")


def loopback_only(ctx: Context, inside: Mapping[str, str], gateway: str | None) -> list[tuple[Service, int]]:
    """The stack's services of this machine (not containers) that the container's environment
    reaches at host.docker.internal (``gateway``) and that answer on loopback but not there: a
    connection to each, both ways. One not listening yet is not judged."""
    ports = {int(port) for value in inside.values() for port in _HOST_PORT.findall(value)}
    for key, value in inside.items():
        port_key = key[: -len("_HOST")] + "_PORT" if key.endswith("_HOST") else ""
        if value == "host.docker.internal" and inside.get(port_key, "").isdigit():
            ports.add(int(inside[port_key]))
    by_port = {s.port: s for s in ctx.config.services if s.port in ports and s.runtime.value != "docker"}
    if gateway is None:
        return []
    return [
        (by_port[port], port) for port in sorted(by_port) if _answers("127.0.0.1", port) and not _answers(gateway, port)
    ]


def _answers(address: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def _is_trigger_target(ctx: Context, service: Service) -> bool:
    from airadev.integrations.database import kb_service

    kb = kb_service(ctx.config)
    return kb is not None and kb.name == service.name


def container_services(ctx: Context) -> list[Service]:
    """The run's services that run as containers."""
    return [
        s
        for s in ctx.config.services
        if s.runtime.value == "docker" and s.docker and (not ctx.running or s.name in ctx.running)
    ]


def needs_network(ctx: Context) -> bool:
    """The run's containers get a network of their own when there are several (to find each
    other by name), or when the database is airadev's PostgreSQL (which trusts that network's
    subnet alone, never the default bridge's: any container of this machine is on that one)."""
    containers = container_services(ctx)
    database = any(
        s.runtime.value == "postgres" and (not ctx.running or s.name in ctx.running) for s in ctx.config.services
    )
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


class DockerInstance:
    """One container of a service. Owned by the loop that created it; its two threads only
    post to that loop."""

    pid: int | None = None

    def __init__(
        self,
        attrs: dict[str, Any],
        service: Service,
        loop: asyncio.AbstractEventLoop,
        on_output: OnOutput,
        ctx: Context,
    ) -> None:
        self._attrs = attrs  # the engine's inspection of the started container
        self._model: Any = None
        self.id = str(attrs["Id"])
        self.ctx = ctx
        self.service = service
        self.name = str(attrs.get("Name", "")).lstrip("/")
        self.image = attrs.get("Config", {}).get("Image", "")
        self._loop = loop
        self._on_output = on_output
        self._exited: asyncio.Future[int] = loop.create_future()
        self._has_healthcheck = bool(attrs.get("Config", {}).get("Healthcheck"))
        # On a remote engine the port is published there: airadev's probes go there too.
        self._host = host = engine_host()
        self.probe_host = None if is_local(host) else engine_hostname(host)
        self.port_proxied = True  # its port is published by the engine (probes.PROXY_SETTLE)
        self.readiness = "the image's HEALTHCHECK" if self._has_healthcheck else "the container to run"
        self._stopped = False
        self._stream: Any = None
        self._model_lock = threading.Lock()
        self._streaming = threading.Event()  # the reader holds its stream: the container may go
        # Its output from its first byte (the engine keeps it), however soon after the start.
        self._reader = threading.Thread(target=self._read, name=f"docker-logs-{service.name}", daemon=True)
        self._reader.start()
        threading.Thread(target=self._wait, name=f"docker-wait-{service.name}", daemon=True).start()

    @property
    def container(self) -> Any:
        """The SDK's model of the container, made on first use: only the worker threads use it
        (the first of them imports the SDK)."""
        with self._model_lock:
            if self._model is None:
                self._model = client().containers.prepare_model(self._attrs)
            return self._model

    @property
    def exited(self) -> asyncio.Future[int]:
        return self._exited

    def describe(self) -> str:
        return f"container {self.name}"

    def info(self) -> dict[str, Any]:
        return {"container": self.name, "image": self.image, "id": self.id[:12]}

    def _read(self) -> None:
        try:
            self._stream = self._open_stream()
        except Exception:  # noqa: BLE001  (gone already, or the engine went away)
            return
        finally:
            self._streaming.set()
        try:
            for chunk in self._stream:
                if chunk:
                    self._loop.call_soon_threadsafe(self._on_output, chunk)
        except Exception:  # noqa: BLE001  (the stream ends however the container ends)
            pass

    def _open_stream(self) -> Any:
        import docker

        try:
            return self.container.logs(stdout=True, stderr=True, stream=True, follow=True)
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                raise
            # A log driver that cannot be read back (`none`, or a remote one without Docker's
            # local cache): what the container prints from now on, and say so.
            self.ctx.event(
                self.service.name,
                f"its engine cannot give back its output ({why_of(exc, 120)}): "
                "only what it prints from now on is shown",
                "warning",
            )
            return self.container.attach(stdout=True, stderr=True, stream=True, logs=False)

    def _wait(self) -> None:
        """Wait for the container's end, however it comes; take the rest of its output, remove
        it, and only then report the exit: the next start finds its name free."""
        try:
            code = int(self.container.wait().get("StatusCode", -1))
        except Exception:  # noqa: BLE001  (removed under us, or the engine went away)
            code = -1
        self._streaming.wait(30)
        self._reader.join(10)  # the stream ends with the container: the rest of its output first
        self._close_stream()
        self._remove()
        self._loop.call_soon_threadsafe(self._set_exit, code)

    def _set_exit(self, code: int) -> None:
        if not self._exited.done():
            # Exit statuses 128+N mean "killed by signal N", as a process's negative code does.
            self._exited.set_result(-(code - 128) if 128 < code < 160 else code)

    async def check(self) -> tuple[bool, str]:
        state = await asyncio.to_thread(self._state)
        if state is None:
            return False, "the container is gone"
        health = (state.get("Health") or {}).get("Status")
        if self._has_healthcheck:
            if health == "healthy":
                return True, "healthy (the image's HEALTHCHECK)"
            log = (state.get("Health") or {}).get("Log") or []
            last = (log[-1].get("Output") or "").strip().splitlines()[-1:] if log else []
            return False, f"HEALTHCHECK {health or 'not run yet'}" + (f": {last[0][:120]}" if last else "")
        return (state.get("Status") == "running"), state.get("Status", "")

    def _state(self) -> dict[str, Any] | None:
        try:
            status, found = engine_call(self._host, "GET", f"/containers/{self.id}/json")
        except DockerError:
            return None
        return found.get("State") if status == 200 else None

    async def stop(self, sig: int, grace: float) -> int:
        found = await asyncio.to_thread(self._stop, sig, grace)
        if not self._exited.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), grace + 15)
            except asyncio.TimeoutError:
                self._set_exit(-1)
        return found

    def _stop(self, sig: int, grace: float) -> int:
        import docker

        if self._stopped:
            return 0
        self._stopped = True
        try:
            self.container.reload()
            running = self.container.status == "running"
            if running:
                if sig != self.service.stop_signal:
                    self.container.kill(signal=signal.Signals(sig).name)
                self.container.stop(timeout=max(0, math.ceil(grace)))
        except docker.errors.NotFound:
            return 0
        except (DockerError, *failures()):  # type: ignore[misc]  # mypy cannot check a starred tuple of classes
            running = True  # the engine went away: nothing more to do here; the next up or down
        self._remove()  # the waiter does it too; whichever is first, the other waits for it
        return 1 if running else 0

    def _remove(self) -> None:
        # Not before the reader holds its stream: the engine gives no output of a removed container.
        self._streaming.wait(30)
        try:
            remove_and_wait(self.container.client, self.container)
        except Exception:  # noqa: BLE001  (the engine went away)
            # It may still be there: the state says so, and the next `up` or `down` removes it.
            self.ctx.stop_options["containers_left"] = True

    def _close_stream(self) -> None:
        try:
            if self._stream is not None:
                self._stream.close()
        except Exception:  # noqa: BLE001
            pass
