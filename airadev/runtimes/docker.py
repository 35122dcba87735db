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
import math
import signal
import threading
from collections.abc import Mapping
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
from airadev.runtimes.reach import (
    announced,
    container_env,
    container_services,
    ensure_network,
    host_gateway,
    is_trigger_target,
    loopback_only,
    needs_network,
    peers_of,
)
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
            if gateway and is_trigger_target(self.ctx, service):
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
