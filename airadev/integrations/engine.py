"""The Docker engine's HTTP API, with the standard library: the one place that speaks it
directly (the watchdog, a container's start, `doctor`, `down`). The docker SDK (integrations/
docker.py) is the way to TLS and ssh engines, and does what is rare.

Standard library only: the watchdog (supervisor/watchdog.py) imports it without site-packages.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

# airadev's marks on what it makes on the engine (the environment's AIRADEV_RUN, as labels).
RUN_LABEL = "dev.airadev.run"
WORKSPACE_LABEL = "dev.airadev.workspace"  # the workspace id (state.workspace_id)
SERVICE_LABEL = "dev.airadev.service"

DEFAULT_ENGINE = "unix:///var/run/docker.sock"


def engine_host(env: Mapping[str, str] | None = None) -> str:
    """The engine the docker CLI would use: DOCKER_HOST, else the current `docker context`'s
    (rootless Docker, Docker Desktop), else the default socket."""
    own = env is None
    env = os.environ if env is None else env
    if env.get("DOCKER_HOST"):
        return env["DOCKER_HOST"]
    folder = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    if not own:
        return _context_host(folder)
    if folder not in _context_hosts:  # read once: a `docker context use` mid-run must not move a run
        _context_hosts[folder] = _context_host(folder)
    return _context_hosts[folder]


_context_hosts: dict[str, str] = {}


def _context_host(folder: str) -> str:
    """The current docker context's engine (its TLS material, if any, is not used: a TLS engine
    is named with DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as the SDK reads them)."""
    import hashlib
    import json

    try:
        with open(os.path.join(folder, "config.json")) as file:
            current = json.load(file).get("currentContext", "")
        if current and current != "default":
            meta = os.path.join(folder, "contexts", "meta", hashlib.sha256(current.encode()).hexdigest(), "meta.json")
            with open(meta) as file:
                return str(json.load(file)["Endpoints"]["docker"]["Host"]) or DEFAULT_ENGINE
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return DEFAULT_ENGINE


def engine_hostname(host: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(host if "://" in host else "tcp://" + host).hostname or ""


def is_local(host: str) -> bool:
    return host.startswith("unix://") or engine_hostname(host) in ("127.0.0.1", "localhost", "::1")


def plain_engine(host: str) -> bool:
    """Whether the engine at ``host`` can be asked with the standard library alone: a Unix
    socket or plain TCP (not TLS, which the docker SDK sets up from DOCKER_CERT_PATH, nor ssh)."""
    return (
        host.startswith(("unix://", "tcp://"))
        and not os.environ.get("DOCKER_TLS_VERIFY")
        and not os.environ.get("DOCKER_CERT_PATH")
    )


def engine_request(host: str, method: str, path: str, body: object = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request to a plain engine (see ``plain_engine``), stdlib only; its status and body,
    or OSError whatever went wrong on the way.
    The watchdog must not import the docker SDK (it is small, and it must start fast), and a
    container's start must not wait for that import either (integrations/docker.py)."""
    import http.client
    import json
    import socket as socketlib
    from urllib.parse import urlsplit

    try:
        if host.startswith("unix://"):

            class UnixConnection(http.client.HTTPConnection):
                def connect(self) -> None:
                    self.sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
                    self.sock.settimeout(timeout)
                    self.sock.connect(host[len("unix://") :])

            conn: http.client.HTTPConnection = UnixConnection("localhost", timeout=timeout)
        else:
            conn = http.client.HTTPConnection(engine_hostname(host), urlsplit(host).port or 2375, timeout=timeout)
    except ValueError as exc:  # a port that is not a number
        raise OSError(f"bad DOCKER_HOST {host}: {exc}") from None
    try:
        if body is None:
            conn.request(method, path)
        else:
            conn.request(method, path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as exc:  # whatever answered is not an engine speaking HTTP
        raise OSError(f"not an answer from a Docker engine: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


def labelled(host: str, kind: str, label: str) -> list[dict]:
    """The engine's ``kind`` (containers, networks) carrying ``label``; none when it cannot be
    asked this way (ssh:// or TLS: the next `up` or `down` does it, through the docker SDK)."""
    import json
    import urllib.parse

    if not plain_engine(host):
        return []
    filters = urllib.parse.quote(json.dumps({"label": [label]}))
    path = f"/containers/json?all=1&filters={filters}" if kind == "containers" else f"/networks?filters={filters}"
    try:
        found = json.loads(engine_request(host, "GET", path)[1])
    except (OSError, ValueError):
        return []
    # An error answer is an object ({"message": ...}), not a list.
    return [item for item in found if isinstance(item, dict) and "Id" in item] if isinstance(found, list) else []


def remove_containers(host: str, label: str, grace: float = 10.0) -> int:
    """Stop (its stop signal, then SIGKILL after ``grace``) and remove every container carrying
    ``label`` (``key=value``); how many."""
    found = labelled(host, "containers", label)
    for container in found:
        for method, path, limit in (
            ("POST", f"/containers/{container['Id']}/stop?t={math.ceil(grace)}", grace + 10),
            ("DELETE", f"/containers/{container['Id']}?force=1&v=0", 10.0),
        ):
            try:
                engine_request(host, method, path, timeout=limit)
            except OSError:
                pass
    return len(found)


def remove_networks(host: str, label: str) -> int:
    """Remove the networks carrying ``label``, by id (one still in use stays); how many found."""
    found = labelled(host, "networks", label)
    for network in found:
        try:
            engine_request(host, "DELETE", f"/networks/{network['Id']}")
        except OSError:
            pass
    return len(found)
