"""The whole demo with its Python services as containers whose images airadev builds from the
guide's compose/Dockerfile.python, beside Redis in a container, the database and the UI as
processes, the tunnel (the ngrok and Twilio stand-ins) to the voice agent's container.

No registry is reached: the images' base is scripts/test-images' airadev-local/python:3.11 (the
Dockerfile's PYTHON_BASE), and their pip installs from the demo's wheels, which scripts/bootstrap
downloaded and this test serves on loopback: airadev hands the host's pip settings (here
PIP_NO_INDEX and PIP_FIND_LINKS) into the build, which runs on the host's network.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
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
from tests.e2e.test_demo_tunnel import BEFORE, NUMBER, SID, TOKEN, signed_call
from tests.fakes import tls
from tests.fakes.twilio_api import FakeTwilio
from tests.harness import FAKES, Stack, wait_for

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


def test_the_whole_demo_with_its_python_services_and_redis_in_containers(
    stack: Stack, wheel_index: str, tmp_path: Path
) -> None:
    engine = docker.from_env()
    twilio = FakeTwilio(SID, TOKEN).start()
    twilio.add_number(NUMBER, **BEFORE)
    try:
        _whole_demo(stack, wheel_index, tmp_path, engine, twilio)
    finally:
        twilio.stop()


def _whole_demo(stack: Stack, wheel_index: str, tmp_path: Path, engine: Any, twilio: FakeTwilio) -> None:
    ports = copy_demo(stack.root)
    env_local = stack.root / "aira-ui" / ".env.local"
    original = env_local.read_bytes()
    (tmp_path / "home").mkdir()
    stack.env.update(
        PYTHON_BASE="airadev-local/python:3.11",
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=wheel_index,
        AIRADEV_REDIS_IMAGE="airadev-local/redis:7",
        NGROK_AUTHTOKEN="demo-ngrok-token-0000",
        PYNGROK_NGROK_PATH=str(FAKES / "bin" / "ngrok"),
        AIRADEV_TWILIO_API_BASE=twilio.base_url,
        TWILIO_TEST_NUMBER=NUMBER,
        XDG_CONFIG_HOME=str(tmp_path / "home"),
        **tls.env(),
    )
    result = stack.up("--runtime", "docker", "--build", "--tunnel", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 5 services ready" in result.stdout
    status = json.loads(stack.cli("status", "--json").stdout)["services"]
    assert {name: (s["runtime"], s["state"]) for name, s in status.items()} == {
        "redis": ("docker", "healthy"),
        "db": ("postgres", "healthy"),
        "voice-agent": ("docker", "healthy"),
        "kb-updater": ("docker", "healthy"),
        "aira-ui": ("process", "healthy"),
    }
    assert status["voice-agent"]["image"] == "aira/voice-agent:dev"
    # The voice agent answers on its published port, reaches Redis in its container by name and
    # the database (a process of this machine) through DATABASE_URL.
    code, _, body = http(f"http://127.0.0.1:{ports['voice']}/health")
    assert code == 200 and json.loads(body) == {"status": "ok", "redis": True, "database": True}
    assert http(f"http://127.0.0.1:{ports['kb']}/health")[0] == 200
    # The UI, a process, reaches both containers' published ports and shows the tunnel's address.
    address = stack.state()["tunnel"]["address"]
    page = http(f"http://127.0.0.1:{ports['ui']}/", timeout=120)[2]
    assert 'id="health-voice">ok<' in page and 'id="health-kb">ok<' in page
    assert f'id="voice-agent-service-url">{address}<' in page
    # The tunnel reaches the voice agent's container; Twilio was pointed at it.
    assert twilio.number(NUMBER)["voice_url"] == f"{address}/webhooks/twilio/call"
    status_code, ctype, twiml = signed_call(address)
    assert status_code == 200 and "xml" in ctype and "<Response><Say>" in twiml
    wait_for(
        lambda: "CallSid=CAe2etunnel" in stack.cli("logs", "voice", "-n", "50").stdout, what="the call in `logs voice`"
    )
    # The KB trigger's way in: from a container of this machine that is not the stack's (as
    # Supabase's database is), host.docker.internal reaches the KB updater's container.
    posted = engine.containers.run(
        "airadev-local/python:3.11",
        ["python3", "-c", POST_DOCUMENT.format(port=ports["kb"])],
        extra_hosts={"host.docker.internal": "host-gateway"},
        remove=True,
    )
    assert json.loads(posted) == {"status": "accepted", "document_id": 7}
    # That container is refused by the database, which trusts the stack's own network alone.
    answer = engine.containers.run(
        "airadev-local/python:3.11",
        ["python3", "-c", PG_STARTUP.format(port=ports["db"])],
        extra_hosts={"host.docker.internal": "host-gateway"},
        remove=True,
    )
    assert answer.startswith(b"b'E") and b"no pg_hba.conf entry" in answer, answer
    wait_for(
        lambda: "processing document 7 from kb_documents (INSERT)" in stack.log("kb-updater"),
        what="the document in the KB updater's log",
    )
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

    # `down` removes every container and the network, and puts the rewiring back.
    assert stack.cli("down").returncode == 0
    assert ours(engine, stack.root) == [] and engine.networks.list(names=[f"airadev-{workspace_id(stack.root)}"]) == []
    assert env_local.read_bytes() == original and twilio.number(NUMBER)["voice_url"] == BEFORE["voice_url"]
    # A SIGKILL of the supervisor leaves no container either (its watchdog removes them).
    again = stack.up("--runtime", "docker", "voice-agent", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(ours(engine, stack.root)) == 2  # Redis and the voice agent
    os.kill(stack.state()["supervisor_pid"], signal.SIGKILL)
    wait_for(
        lambda: (
            not ours(engine, stack.root)
            and not engine.networks.list(filters={"label": f"dev.airadev.workspace={workspace_id(stack.root)}"})
        ),
        timeout=30,
        what="the watchdog to remove the containers and their network",
    )


# What Supabase's pg_net does for the KB trigger: a POST of the trigger's payload.
POST_DOCUMENT = """
import urllib.request, json
body = json.dumps({{"type": "INSERT", "table": "kb_documents", "record": {{"id": 7}}}}).encode()
request = urllib.request.Request("http://host.docker.internal:{port}/process-document", data=body,
                                 headers={{"Content-Type": "application/json"}})
print(urllib.request.urlopen(request, timeout=10).read().decode())
"""


# A PostgreSQL startup message (protocol 3.0, user and database postgres) and the answer, until
# the server closes: "R" (authentication) first for a trusted address, "E" (an error) for others.
PG_STARTUP = """
import socket, struct
body = struct.pack("!i", 196608) + b"user\\0postgres\\0database\\0postgres\\0\\0"
sock = socket.create_connection(("host.docker.internal", {port}), timeout=10)
sock.sendall(struct.pack("!i", len(body) + 4) + body)
answer = b""
while chunk := sock.recv(4096):
    answer += chunk
print(repr(answer))
"""


def ours(engine: Any, root: Path) -> list[Any]:
    return engine.containers.list(all=True, filters={"label": f"dev.airadev.workspace={workspace_id(root)}"})


def _container(engine: docker.DockerClient, name: str) -> Any:
    try:
        return engine.containers.get(name)
    except docker.errors.NotFound:
        return None


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) where the CLI has it, else v1 (Debian 12's docker-compose,
    which scripts/bootstrap installs)."""
    import shutil
    import subprocess

    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    found = shutil.which("docker-compose")
    assert found, "no Compose: run scripts/bootstrap (it installs docker-compose)"
    return [found]


def test_the_exported_compose_file_builds_and_runs_the_demo_s_containers_with_compose(
    stack: Stack, wheel_index: str
) -> None:
    """`airadev export compose` of the demo, run by Compose itself: it builds both Python images
    (the PIP_* settings from Compose's environment, as airadev passes this machine's), and the
    voice agent finds Redis by its service name (the export writes REDIS_HOST as airadev does)."""
    import subprocess

    engine = docker.from_env()
    ports = copy_demo(stack.root)
    out = stack.root / "compose" / "docker-compose.yml"
    out.parent.mkdir()
    assert stack.cli("export", "compose", "-o", str(out)).returncode == 0
    assert 'REDIS_HOST: "redis"' in out.read_text()
    project = f"airadevtest{workspace_id(stack.root)}".lower()
    images = {"voice-agent": f"airadev-test/{project}-voice:dev", "kb-updater": f"airadev-test/{project}-kb:dev"}
    env = dict(
        os.environ,
        PYTHON_BASE="airadev-local/python:3.11",
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=wheel_index,
        AIRADEV_REDIS_IMAGE="airadev-local/redis:7",
        AIRADEV_VOICE_AGENT_IMAGE=images["voice-agent"],
        AIRADEV_KB_UPDATER_IMAGE=images["kb-updater"],
    )
    compose = [*compose_command(), "-p", project, "-f", str(out)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*compose, *args], env=env, capture_output=True, text=True, timeout=600)

    try:
        built = run("build")
        assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
        started = run("up", "-d")
        assert started.returncode == 0, started.stdout + started.stderr

        def healthy() -> dict[str, Any] | None:
            try:
                return json.loads(http(f"http://127.0.0.1:{ports['voice']}/health", timeout=2)[2])
            except OSError:
                return None

        health = wait_for(lambda: (h := healthy()) and h.get("redis") and h, timeout=120, what="the voice agent")
        assert health == {"status": "ok", "redis": True, "database": None}  # no DATABASE_URL: not airadev's stack
        wait_for(lambda: _answers(f"http://127.0.0.1:{ports['kb']}/health"), timeout=120, what="the KB updater")
        assert "redis connected at redis:" in run("logs", "voice-agent").stdout
    finally:
        down = run("down", "--remove-orphans")
        for image in images.values():
            with contextlib.suppress(docker.errors.ImageNotFound):
                engine.images.remove(image, force=True)
    assert down.returncode == 0, down.stderr
    assert engine.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}) == []


def _answers(url: str) -> bool:
    try:
        return http(url, timeout=2)[0] == 200
    except OSError:
        return False
