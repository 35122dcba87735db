"""The demo's Python services as containers whose images airadev builds from the guide's
compose/Dockerfile.python, beside Redis in a container and the database as a process.

No registry is reached: the images' base is scripts/test-images' airadev-local/python:3.11 (the
Dockerfile's PYTHON_BASE), and their pip installs from the demo's wheels, which scripts/bootstrap
downloaded and this test serves on loopback: airadev hands the host's pip settings (here
PIP_NO_INDEX and PIP_FIND_LINKS) into the build, which runs on the host's network.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest

from airadev.state import workspace_id
from tests.e2e.test_demo import copy_demo, http
from tests.harness import Stack, wait_for

WHEELS = Path(__file__).resolve().parents[2] / ".cache" / "wheels"

pytestmark = pytest.mark.e2e


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def wheel_index() -> Iterator[str]:
    assert any(WHEELS.glob("*.whl")), "no wheels in .cache/wheels: run scripts/bootstrap"
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(WHEELS)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_the_demo_s_python_services_run_in_containers_airadev_built(stack: Stack, wheel_index: str) -> None:
    engine = docker.from_env()
    ports = copy_demo(stack.root)
    stack.env.update(
        PYTHON_BASE="airadev-local/python:3.11",
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=wheel_index,
        AIRADEV_REDIS_IMAGE="airadev-local/redis:7",
    )
    result = stack.cli("up", "--detach", "--runtime", "docker", "--build", "voice-agent", "kb-updater", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 4 services ready" in result.stdout
    status = json.loads(stack.cli("status", "--json").stdout)["services"]
    assert {name: s["runtime"] for name, s in status.items()} == {
        "redis": "docker",
        "db": "postgres",
        "voice-agent": "docker",
        "kb-updater": "docker",
    }
    assert status["voice-agent"]["image"] == "aira/voice-agent:dev"
    # The voice agent answers on its published port, and reaches Redis in its container by name.
    code, _, body = http(f"http://127.0.0.1:{ports['voice']}/health")
    assert code == 200 and json.loads(body) == {"status": "ok", "redis": True}
    assert http(f"http://127.0.0.1:{ports['kb']}/health")[0] == 200
    # Built from the guide's Dockerfile, with the wheels served here; the build's output and the
    # container's own are in its log.
    logs = stack.cli("logs", "voice-agent", "-n", "400").stdout
    assert re.search(r"Step 2/\d+ : FROM \$\{PYTHON_BASE\}", logs) and "Successfully installed" in logs
    base = engine.images.get("airadev-local/python:3.11").id
    assert any(layer["Id"] == base for layer in engine.images.get("aira/voice-agent:dev").history())
    assert "Uvicorn running on" in logs
    name = f"airadev-{workspace_id(stack.root)}-voice-agent"
    container = engine.containers.get(name)
    assert container.exec_run("id -u").output.strip() == b"1000"  # not root
    # Its .env reached it through airadev, not through the image (the demo's .dockerignore).
    assert b".env" not in engine.containers.run("aira/voice-agent:dev", "ls -a /app", remove=True)
    assert "is in the build context" not in stack.log("airadev")

    # The development loop: code is mounted, so a change restarts the container, no build ...
    def restarted_after(edit: Path, text: str) -> str:
        old_id = engine.containers.get(name).id
        with open(edit, "a") as f:
            f.write(text)
        wait_for(
            lambda: (c := _container(engine, name)) is not None and c.id != old_id, timeout=120, what="a new container"
        )
        stack.wait_state("voice-agent", "healthy", timeout=120)
        return stack.log("airadev")

    own = restarted_after(stack.root / "voice-agent" / "server.py", "\n# edited\n")
    assert "voice-agent: restarting: server.py changed" in own
    assert own.count("voice-agent: building its image") == 1
    assert b"# edited" in engine.containers.get(name).exec_run("tail -n 1 /app/server.py").output
    # ... a change of its requirements builds the image again, then restarts it.
    own = restarted_after(stack.root / "voice-agent" / "requirements.txt", "\n# pinned later\n")
    assert "voice-agent: restarting: requirements.txt changed: rebuilding its image" in own
    assert own.count("voice-agent: building its image") == 2
    assert http(f"http://127.0.0.1:{ports['voice']}/health")[0] == 200
    assert stack.cli("down").returncode == 0
    left = engine.containers.list(all=True, filters={"label": f"dev.airadev.workspace={workspace_id(stack.root)}"})
    assert left == [] and engine.networks.list(names=[f"airadev-{workspace_id(stack.root)}"]) == []


def _container(engine: docker.DockerClient, name: str) -> Any:
    try:
        return engine.containers.get(name)
    except docker.errors.NotFound:
        return None
