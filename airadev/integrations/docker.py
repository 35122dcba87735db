"""The Docker engine through the docker SDK: the client (DOCKER_HOST, TLS, ssh), calls to the
Engine API that work on any engine (``engine_call``), images, and what a dead run left. The
``docker`` runtime (a service as a container) is airadev/runtimes/docker.py; the standard
library's client of plain engines, which the watchdog uses too, is integrations/engine.py.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from airadev.errors import AiradevError
from airadev.model import BuildSpec, Service
from airadev.state import workspace_id
from airadev.integrations.engine import WORKSPACE_LABEL, engine_host, engine_request, plain_engine

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


class DockerError(AiradevError):
    pass


def failures() -> tuple[type[Exception], ...]:
    """What a call through the SDK raises when the engine refuses or is not there: its own
    errors, and requests' (a vanished socket is a requests ConnectionError, not a DockerException)."""
    import docker
    import requests

    return (docker.errors.DockerException, requests.exceptions.RequestException)


def client(timeout: float = 60, host: str = "") -> Any:
    """The SDK's client for ``host`` (default ``DOCKER_HOST``), made once per engine;
    DockerError when no engine answers there."""
    import docker

    host = host or engine_host()
    with _clients_lock:
        found = _clients.get(host)
        if found is not None:
            return found
        try:
            # No ping: the version negotiation of from_env already asks the engine.
            made = docker.from_env(timeout=timeout, max_pool_size=32, environment={**os.environ, "DOCKER_HOST": host})
        except failures() as exc:
            raise engine_unreachable(host, exc) from None
        _clients[host] = made
        return made


def why_of(exc: BaseException, limit: int = 200) -> str:
    """What the engine said (its explanation when it gave one), cut to ``limit``."""
    return str(getattr(exc, "explanation", None) or exc)[:limit]


def engine_unreachable(host: str, exc: Exception) -> DockerError:
    why = str(exc).split("(", 1)[0].strip() or type(exc).__name__
    fix = (
        "start it: `sudo systemctl start docker` (or `dockerd &`), or point DOCKER_HOST at a running engine"
        if host.startswith("unix://")
        else f"check that the engine at {host} runs and is reachable"
    )
    return DockerError(f"the Docker engine at {host} does not answer: {why}", fix)


def engine_call(host: str, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    """One call to the Engine API, its status and its answer. A plain engine (a socket, plain
    TCP) is asked with the standard library, so a start never waits for the SDK's import; a TLS
    or ssh one through the SDK's session, which knows its certificates."""
    import json

    if plain_engine(host):
        try:
            status, raw = engine_request(host, method, path, body, timeout=60)
        except OSError as exc:  # all that can go wrong on the way (engine_request)
            raise engine_unreachable(host, exc) from None
    else:
        api = client().api
        try:
            response = api.request(method, f"{api.base_url}/v{api.api_version}{path}", json=body, timeout=60)
        except failures() as exc:
            raise engine_unreachable(host, exc) from None
        status, raw = response.status_code, response.content
    try:
        answer = json.loads(raw) if raw.strip() else {}
    except ValueError:
        answer = {"message": raw.decode(errors="replace")}
    return status, answer if isinstance(answer, dict) else {}


def message_of(answer: Mapping[str, Any], limit: int = 200) -> str:
    return str(answer.get("message") or "no reason given")[:limit]


def container_name(root: Any, service: Service) -> str:
    return f"airadev-{workspace_id(root)}-{service.name}"


def image_of(service: Service, env: Mapping[str, str] | None = None) -> str:
    """The service's image: ``AIRADEV_<NAME>_IMAGE`` when set (as in the Compose files), else
    the one in airadev.toml."""
    assert service.docker is not None
    return (os.environ if env is None else env).get(service.docker.image_variable(service.name)) or service.docker.image


def ensure_image(api: Any, service: Service, image: str) -> None:
    import docker

    try:
        api.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    except failures() as exc:
        raise engine_unreachable(engine_host(), exc) from None
    try:
        api.images.pull(image)
    except failures() as exc:
        assert service.docker is not None  # only a docker service has an image (image_of asserts it)
        raise DockerError(
            f"services.{service.name}: image {image} is not on the engine and cannot be pulled: {why_of(exc, 160)}",
            f"build it (docker build -t {image} .), or name a local image with "
            f"{service.docker.image_variable(service.name)} or docker.image in airadev.toml",
        ) from None


def ours(container: Any, root: Any) -> bool:
    return container.labels.get(WORKSPACE_LABEL) == workspace_id(root)


def remove_leftovers(root: Any, grace: float = 10.0, host: str = "") -> list[str]:
    """Stop and remove this workspace's containers (a dead run's) on the engine that run used
    (``host``; default DOCKER_HOST); their names. Call only under the run lock. An engine that
    does not answer has nothing we can do anything about now: nothing is done."""
    import docker

    try:
        api = client(timeout=30, host=host)
        found = api.containers.list(all=True, filters={"label": f"{WORKSPACE_LABEL}={workspace_id(root)}"})
    except (DockerError, *failures()):  # type: ignore[misc]  # mypy cannot check a starred tuple of classes
        return []
    names = []
    for container in found:
        try:
            if container.status == "running":
                container.stop(timeout=math.ceil(grace))
            remove_and_wait(api, container)
            names.append(container.name)
        except docker.errors.NotFound:
            continue
        except (DockerError, *failures()):  # type: ignore[misc]  # mypy cannot check a starred tuple of classes
            continue  # the next up or down tries again
    remove_network(root, api)
    return names


def port_holder(port: int) -> str | None:
    """The name of the container that publishes ``port``, if a container does."""
    try:
        api = client(timeout=10)
        for container in api.containers.list():
            for bindings in (container.ports or {}).values():
                if any(b.get("HostPort") == str(port) for b in bindings or ()):
                    return container.name
    except Exception:  # noqa: BLE001  (only an improvement of an error message)
        return None
    return None


def remove_and_wait(api: Any, container: Any, timeout: float = 15.0) -> None:
    """Remove a container and return once its name is free (a removal already under way, by
    this run's waiter thread say, is waited for rather than fought)."""
    import time

    import docker

    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: its removal is in progress already
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api.containers.get(container.id)
        except docker.errors.NotFound:
            return
        time.sleep(0.05)
    raise DockerError(
        f"the old container {container.name} is not removed after {timeout:.0f}s",
        f"remove it by hand (docker rm -f {container.name})",
    )


def network_name(root: Any) -> str:
    return f"airadev-{workspace_id(root)}"


def remove_network(root: Any, api: Any = None) -> None:
    """Remove the workspace's networks (by label: by name would be ambiguous if there ever were
    two) once no container is on them (one that is, stays)."""
    try:
        api = api or client(timeout=30)
        found = api.networks.list(filters={"label": f"{WORKSPACE_LABEL}={workspace_id(root)}"})
    except Exception:  # noqa: BLE001  (no engine: the next down tries again)
        return
    for network in found:
        try:
            network.remove()
        except Exception:  # noqa: BLE001  (gone, or still in use)
            pass


# --- building an image ------------------------------------------------------------------------

BUILD_TIMEOUT = 3600  # a build's step may run for minutes without a word (pip, apt)
_STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")


BAKED = "{name} is in the build context: its values, secrets too, go into the image (add {name} to .dockerignore)"


def baked_env_files(service: Service) -> list[str]:
    """The service's env files that lie in its build context and that its .dockerignore does not
    leave out: a `COPY . .` puts them, and their secrets, into the image. Relative to the context."""
    import fnmatch

    assert service.docker is not None and service.docker.build is not None
    context = service.docker.build.context
    try:
        ignore = (context / ".dockerignore").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        ignore = []
    patterns = [line.strip().lstrip("/") for line in ignore if line.strip() and not line.startswith(("#", "!"))]
    found = []
    for path in service.env_files:
        if path.is_file() and path.resolve().is_relative_to(context):
            relative = str(path.resolve().relative_to(context))
            if not any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(path.name, p) for p in patterns):
                found.append(relative)
    return found


def build_args(build: BuildSpec, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The host's pip settings (integrations/pip.py), then docker.build.args; an arg named
    without a value takes airadev's environment's value, and is left out when it has none."""
    from airadev.integrations import pip

    env = os.environ if env is None else env
    args = pip.settings(env)
    for key, value in build.args:
        if value is not None:
            args[key] = value
        elif key in env:
            args[key] = env[key]
    return args


def build_image(
    service: Service, image: str, on_output: Callable[[bytes], None], *, no_cache: bool = False, host: str = ""
) -> float:
    """Build ``service``'s image (``docker.build``) and tag it ``image``, through the SDK's
    streaming build; each piece of the engine's output goes to ``on_output`` as it comes. Returns
    the seconds it took; raises DockerError naming the failing step and the engine's reason."""
    import time

    import docker

    spec = service.docker
    assert spec is not None and spec.build is not None
    build = spec.build
    host = host or engine_host()
    if not build.context.is_dir():
        raise DockerError(
            f"services.{service.name}: the build context {build.context} is not a folder",
            f"create it, or fix docker.build in airadev.toml (relative to {service.cwd})",
        )
    if build.dockerfile is not None and not build.dockerfile.is_file():
        raise DockerError(
            f"services.{service.name}: its Dockerfile {build.dockerfile} does not exist",
            "fix docker.build.dockerfile in airadev.toml (relative to the build context)",
        )
    began = time.monotonic()
    step = ""
    sdk = None
    try:
        sdk = docker.from_env(timeout=BUILD_TIMEOUT, environment={**os.environ, "DOCKER_HOST": host})
        stream = sdk.api.build(
            path=str(build.context),
            # Its content, wherever a link leads (config keeps the path as written).
            dockerfile=str(build.dockerfile.resolve()) if build.dockerfile else None,
            tag=image,
            target=build.target or None,
            buildargs=build_args(build) or None,
            network_mode=build.network or None,
            rm=True,
            forcerm=True,
            nocache=no_cache,
            decode=True,
        )
        for item in stream:
            text = item.get("stream")
            if text:
                for line in text.splitlines():
                    found = _STEP.match(line)
                    if found:
                        step = f"step {found.group(1)} ({found.group(2)[:80]})"
                on_output(text.encode(errors="replace"))
            elif item.get("status"):  # pulling a base image
                on_output(f"{item['status']} {item.get('id', '')}".rstrip().encode() + b"\n")
            if "error" in item or "errorDetail" in item:
                why = str(item.get("error") or (item.get("errorDetail") or {}).get("message") or "no reason given")
                on_output(why.encode(errors="replace") + b"\n")
                raise DockerError(
                    f"services.{service.name}: its image {image} does not build: {step + ': ' if step else ''}"
                    f"{why.strip()[:300]}",
                    f"fix that step (the build's output says why), then `airadev build {service.name}`",
                )
    except DockerError:
        raise
    except failures() as exc:
        raise DockerError(
            f"services.{service.name}: its image {image} does not build: {why_of(exc, 300)}",
            f"see `airadev logs {service.name}`; check docker.build in airadev.toml",
        ) from None
    finally:
        if sdk is not None:
            sdk.close()
    return time.monotonic() - began
