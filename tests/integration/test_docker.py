"""The docker runtime against a real Docker Engine and a locally built image (scripts/test-images
builds airadev-local/redis:7 with debootstrap and `docker import`; no registry is reachable)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator

import docker
import pytest

from airadev.state import workspace_id
from tests.figures import count
from tests.harness import FAKES, PY, Stack, fake, free_port, wait_for

IMAGE = "airadev-local/redis:7"


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    client.ping()  # the README's test command starts an engine (scripts/docker-engine)
    client.images.get(IMAGE)
    yield client
    client.close()


def redis_stack(stack: Stack, port: int, *, runtime: str = "docker", health: str = "") -> None:
    stack.write(f"""
[services.redis]
runtime = "{runtime}"
command = "redis-server --port {port}"
port = {port}
{health}
[services.redis.docker]
image = "redis:7-alpine"
port = 6379
""")
    stack.env["AIRADEV_REDIS_IMAGE"] = IMAGE


def ours(engine: docker.DockerClient, stack: Stack) -> list:
    return engine.containers.list(all=True, filters={"label": f"dev.airadev.workspace={workspace_id(stack.root)}"})


def networks(engine: docker.DockerClient, stack: Stack) -> list:
    return engine.networks.list(names=[f"airadev-{workspace_id(stack.root)}"])


def ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64)


def test_redis_in_a_container_healthy_logged_stopped_and_removed(engine: docker.DockerClient, stack: Stack) -> None:
    port = free_port()
    redis_stack(stack, port)
    result = stack.up()
    assert result.returncode == 0, result.stderr
    assert ping(port) == b"+PONG\r\n"
    [container] = ours(engine, stack)
    assert container.name == f"airadev-{workspace_id(stack.root)}-redis"
    assert container.labels["dev.airadev.service"] == "redis"
    assert container.labels["dev.airadev.run"] == stack.state()["marker"]
    status = json.loads(stack.cli("status", "--json").stdout)["services"]["redis"]
    assert status["runtime"] == "docker" and status["state"] == "healthy"
    assert status["container"] == container.name and status["image"] == IMAGE
    assert "HEALTHCHECK" in status["health"]
    table = stack.cli("status").stdout
    assert container.name in table and IMAGE in table and "docker" in table
    assert "Ready to accept connections" in stack.cli("logs", "redis", "-n", "50").stdout

    restarted = stack.cli("restart", "redis")
    assert restarted.returncode == 0, restarted.stderr
    [again] = ours(engine, stack)
    assert again.id != container.id and ping(port) == b"+PONG\r\n"

    down = stack.cli("down")
    assert down.returncode == 0, down.stderr
    assert ours(engine, stack) == [] and networks(engine, stack) == []
    assert "Received SIGTERM" in stack.log("redis")  # stopped by its stop signal, not killed


def test_up_runtime_docker_switches_services_that_have_an_image(engine: docker.DockerClient, stack: Stack) -> None:
    port = free_port()
    redis_stack(stack, port, runtime="process")
    assert stack.cli("up", "--detach", "--runtime", "docker").returncode == 0
    assert stack.service("redis")["runtime"] == "docker" and len(ours(engine, stack)) == 1
    assert stack.cli("down").returncode == 0
    assert ours(engine, stack) == []


def test_containers_of_a_dead_run_are_removed(engine: docker.DockerClient, stack: Stack) -> None:
    port = free_port()
    redis_stack(stack, port)
    # The supervisor killed: its watchdog removes the container.
    assert stack.up().returncode == 0
    os.kill(stack.state()["supervisor_pid"], signal.SIGKILL)
    wait_for(
        lambda: not ours(engine, stack) and not networks(engine, stack),
        timeout=30,
        what="the watchdog to remove the container and its network",
    )
    # Supervisor and watchdog both killed: the next `down` removes it.
    assert stack.up().returncode == 0
    state = stack.state()
    os.kill(state["reaper_pid"], signal.SIGKILL)
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    assert len(ours(engine, stack)) == 1
    down = stack.cli("down")
    assert down.returncode == 0, down.stderr
    assert ours(engine, stack) == [] and networks(engine, stack) == []
    # ... and so does the next `up`, which then starts a fresh one.
    assert stack.up().returncode == 0
    state = stack.state()
    old = ours(engine, stack)[0].id
    os.kill(state["reaper_pid"], signal.SIGKILL)
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    again = stack.up()
    assert again.returncode == 0, again.stderr
    assert [c.id for c in ours(engine, stack)] != [old] and len(ours(engine, stack)) == 1


class Forwarder:
    """tests/fakes/tcp_to_unix.py in front of the engine, holding the first container create;
    its lines collected as they come."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(FAKES / "tcp_to_unix.py"),
                "127.0.0.1",
                str(port),
                "/var/run/docker.sock",
                "--hold-create",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def said(self, prefix: str, after: int = 0) -> int:
        """Wait for a line starting with ``prefix`` (after the first ``after``); its index."""
        return wait_for(
            lambda: next((i + 1 for i, line in enumerate(self.lines) if i >= after and line.startswith(prefix)), 0),
            timeout=60,
            what=f"the forwarder to say {prefix}",
        )

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_a_create_still_on_its_way_when_the_supervisor_dies_is_removed_once_it_lands(
    engine: docker.DockerClient, stack: Stack
) -> None:
    """The engine carries out a create whose sender died before the answer, after a look made at
    once: CI's fault suite once found the Redis container of a run killed 0.33 s into `up`
    still there. Here the create is held until the supervisor is dead and its watchdog has
    looked once, then let through: the watchdog, told that a create was under way, looks again."""
    forwarder = Forwarder(port := free_port())
    try:
        forwarder.said("forwarding")
        redis_stack(stack, free_port())
        stack.env["DOCKER_HOST"] = f"tcp://127.0.0.1:{port}"
        began = int(time.time())
        up = subprocess.Popen(
            [PY, "-m", "airadev", "--workspace", str(stack.root), "up", "--detach"],
            env=stack.environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        held = forwarder.said("held POST /containers/create")
        state = stack.state()
        os.kill(state["supervisor_pid"], signal.SIGKILL)
        # The watchdog's first look (containers, then networks) goes through the forwarder too.
        forwarder.said("> GET /networks", after=held)
        forwarder.release()
        assert up.wait(60) != 0

        def actions() -> list[str]:
            return [
                event["Action"]
                for event in engine.events(
                    since=began,
                    until=int(time.time()) + 1,
                    decode=True,
                    filters={"type": "container", "label": f"dev.airadev.run={state['marker']}"},
                )
            ]

        wait_for(lambda: "create" in actions(), timeout=30, what="the held create to land")
        wait_for(lambda: not ours(engine, stack), timeout=30, what="the late container to be removed")
        assert "destroy" in actions()
        wait_for(lambda: not reaper_alive(state["reaper_pid"]), timeout=30, what="the watchdog to end")
    finally:
        forwarder.close()
        for container in ours(engine, stack):
            container.remove(force=True)


def test_foreign_containers_are_reported_never_touched(engine: docker.DockerClient, stack: Stack) -> None:
    port = free_port()
    redis_stack(stack, port)
    foreign = engine.containers.run(
        IMAGE, detach=True, name=f"foreign-{uuid.uuid4().hex[:8]}", ports={"6379/tcp": ("127.0.0.1", port)}
    )
    squatter = None
    try:
        result = stack.up()
        assert result.returncode == 1
        assert f"port {port} (services.redis) is published by the container {foreign.name}" in result.stderr
        assert "Traceback" not in result.stderr
        foreign.stop(timeout=5)
        foreign.remove()
        # A container airadev did not make, under the name airadev would give its own.
        squatter = engine.containers.create(IMAGE, name=f"airadev-{workspace_id(stack.root)}-redis")
        result = stack.up()
        assert result.returncode == 1
        assert "is taken by a container airadev did not make" in result.stderr
        assert f"docker rm -f {squatter.name}" in result.stderr
        squatter.reload()  # still there, untouched
        assert "dev.airadev.workspace" not in squatter.labels
        stack.cli("down")
    finally:
        for container in (foreign, squatter):
            if container is not None:
                try:
                    container.remove(force=True)
                except docker.errors.NotFound:
                    pass


def test_a_missing_image_and_a_missing_engine_are_clear_errors(engine: docker.DockerClient, stack: Stack) -> None:
    port = free_port()
    redis_stack(stack, port)
    stack.env["AIRADEV_REDIS_IMAGE"] = "airadev-local/missing:1"
    result = stack.up()
    assert result.returncode == 1
    assert "image airadev-local/missing:1 is not on the engine and cannot be pulled" in result.stderr
    assert "AIRADEV_REDIS_IMAGE" in result.stderr and "Traceback" not in result.stderr
    stack.cli("down")
    stack.env.update(AIRADEV_REDIS_IMAGE=IMAGE, DOCKER_HOST=f"unix://{stack.root}/no-engine.sock")
    result = stack.up()
    assert result.returncode == 1
    assert f"the Docker engine at unix://{stack.root}/no-engine.sock does not answer" in result.stderr
    assert "DOCKER_HOST" in result.stderr
    stack.cli("down")
    # Something answers there, but not an engine (an ssh server, say).
    with socket.socket() as banner:
        banner.bind(("127.0.0.1", 0))
        banner.listen(8)

        def serve() -> None:
            while True:
                try:
                    conn, _ = banner.accept()
                except OSError:
                    return
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                conn.close()

        import threading

        threading.Thread(target=serve, daemon=True).start()
        stack.env["DOCKER_HOST"] = f"tcp://127.0.0.1:{banner.getsockname()[1]}"
        result = stack.up()
    assert result.returncode == 1, result.stderr
    assert "the Docker engine at tcp://127.0.0.1:" in result.stderr and "does not answer" in result.stderr
    assert "Traceback" not in result.stderr and "report" not in result.stderr
    stack.cli("down")
    # The engine refuses the start itself (a command the image does not have): nothing stays.
    del stack.env["DOCKER_HOST"]
    stack.write(
        (stack.root / "airadev.toml").read_text().replace("port = 6379", 'port = 6379\ncommand = "no-such-program"')
    )
    result = stack.up()
    assert result.returncode == 1
    assert "redis" in result.stderr and "its container does not start" in result.stderr, result.stderr
    assert "no-such-program" in result.stderr and "Traceback" not in result.stderr
    assert ours(engine, stack) == []
    stack.cli("down")
    count("bad inputs tried", 4)  # a missing image, no engine, not an engine, a command not in the image


def test_a_remote_engine_through_docker_host_works_like_the_local_one(
    engine: docker.DockerClient, stack: Stack
) -> None:
    """DOCKER_HOST=tcp://127.0.0.2:PORT: not this machine's loopback address as far as airadev
    knows, so the port is published on all interfaces and the probes go to that host."""
    forward_port = free_port()
    forwarder = subprocess.Popen(
        [sys.executable, str(FAKES / "tcp_to_unix.py"), "127.0.0.2", str(forward_port), "/var/run/docker.sock"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert forwarder.stdout is not None and forwarder.stdout.readline().startswith("forwarding")
        port = free_port()
        redis_stack(stack, port, health="health = { tcp = true }")
        stack.env["DOCKER_HOST"] = f"tcp://127.0.0.2:{forward_port}"
        result = stack.up()
        assert result.returncode == 0, result.stderr
        assert "tcp 127.0.0.2:" in stack.log("airadev")  # the probe went to the engine's host
        [container] = ours(engine, stack)
        assert container.ports["6379/tcp"][0]["HostIp"] == "0.0.0.0"
        # Its output comes from the engine's log stream, which may trail the probe.
        wait_for(
            lambda: "Ready to accept connections" in stack.cli("logs", "redis", "-n", "50").stdout,
            timeout=30,
            what="Redis's banner in `airadev logs redis`",
        )
        assert stack.cli("down").returncode == 0
        assert ours(engine, stack) == []
    finally:
        forwarder.kill()
        forwarder.wait()


def test_a_tcp_probe_of_a_container_waits_for_the_service_not_the_engine_s_port_proxy(
    engine: docker.DockerClient, stack: Stack
) -> None:
    """The published port answers (docker-proxy) before Redis listens inside; Redis here waits
    for a file the test creates, so the probe is seen failing first."""
    port = free_port()
    gate = stack.root / "gate"
    gate.mkdir()
    stack.write(f"""
[services.redis]
runtime = "docker"
command = "redis-server"
port = {port}
health = {{ tcp = true, start_interval = "50ms" }}
[services.redis.docker]
image = "redis:7-alpine"
port = 6379
volumes = ["{gate}:/gate"]
command = ["sh", "-c", "while [ ! -e /gate/open ]; do sleep 0.05; done; exec redis-server --protected-mode no"]
""")
    stack.env["AIRADEV_REDIS_IMAGE"] = IMAGE
    up = subprocess.Popen(
        [PY, "-m", "airadev", "--workspace", str(stack.root), "up", "--detach"],
        env=stack.environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def redis() -> dict:
            status = stack.cli("status", "--json")
            return json.loads(status.stdout)["services"]["redis"] if status.returncode == 0 else {}

        seen = wait_for(
            lambda: "nothing listens in the container" in (r := redis()).get("health", "") and r,
            timeout=60,
            what="the probe to see the proxy alone",
        )
        assert seen["state"] == "starting"
        (gate / "open").touch()
        assert up.wait(60) == 0, up.stderr.read() if up.stderr else ""
        assert ping(port) == b"+PONG\r\n"
    finally:
        (gate / "open").touch()
        up.wait(60)


def test_an_engine_that_disappears_mid_run_fails_its_service_not_the_stack(
    engine: docker.DockerClient, stack: Stack
) -> None:
    forward_port = free_port()

    def forward() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(FAKES / "tcp_to_unix.py"), "127.0.0.2", str(forward_port), "/var/run/docker.sock"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().startswith("forwarding")
        return proc

    forwarder = forward()
    try:
        port = free_port()
        redis_stack(stack, port, health="health = { tcp = true }")
        with open(stack.root / "airadev.toml", "a") as f:
            f.write(f"""
[services.web]
command = {json.dumps(" ".join([sys.executable, str(FAKES / "printer.py"), "--tag", "web"]))}
""")
        stack.env["DOCKER_HOST"] = f"tcp://127.0.0.2:{forward_port}"
        assert stack.up().returncode == 0
        web_pid = stack.service("web")["pid"]
        forwarder.kill()  # the engine is gone, as far as airadev can tell
        forwarder.wait()
        stack.wait_state("redis", "failed", "crash-loop", "restarting", timeout=60)
        assert reaper_alive(stack.state()["supervisor_pid"]) and stack.service("web")["pid"] == web_pid
        assert "internal error" not in stack.log("airadev")
        assert stack.cli("down").returncode == 0
        assert stack.state()["containers_left"] is True  # its container could not be removed
        # With the engine back, the next down (or up) removes what was left.
        forwarder = forward()
        assert ours(engine, stack)
        stack.cli("down")
        assert ours(engine, stack) == []
        count("bad inputs tried")  # a Docker engine that disappears mid-run
    finally:
        forwarder.kill()
        forwarder.wait()
        for container in ours(engine, stack):
            container.remove(force=True)


def reaper_alive(pid: int) -> bool:
    from airadev import reaper

    return reaper.alive(pid)


CLIENT = """
import os, socket, time
host, port = os.environ["REDIS_HOST"], int(os.environ["REDIS_PORT"])
print("client: REDIS_HOST", host, "REDIS_PORT", port, "URL", os.environ["CACHE_URL"], flush=True)
with socket.create_connection((host, port), timeout=5) as sock:
    sock.sendall(b"PING\\r\\n")
    print("client: redis says", sock.recv(16).decode().strip(), flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("transport", ["stdlib", "sdk"])
def test_the_start_path_speaks_the_engine_api_alike_directly_and_through_the_sdk(
    engine: docker.DockerClient, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    """A plain engine is asked with the standard library; a TLS or ssh one through the SDK's
    session. Both give the engine's status and answer, unchanged."""
    from airadev.integrations import docker as runtime

    if transport == "sdk":
        monkeypatch.setattr(runtime, "plain_engine", lambda host: False)
    host = runtime.engine_host()
    name = f"airadev-test-transport-{uuid.uuid4().hex[:8]}"
    status, answer = runtime.engine_call(
        host, "POST", f"/containers/create?name={name}", {"Image": "airadev-local/missing:1"}
    )
    assert status == 404 and "No such image" in answer["message"]
    status, answer = runtime.engine_call(
        host, "POST", f"/containers/create?name={name}", {"Image": IMAGE, "Labels": {"test": transport}}
    )
    assert status == 201, answer
    try:
        assert runtime.engine_call(host, "POST", f"/containers/{answer['Id']}/start")[0] == 204
        status, found = runtime.engine_call(host, "GET", f"/containers/{name}/json")
        assert status == 200 and found["Id"] == answer["Id"] and found["Config"]["Labels"] == {"test": transport}
        assert found["State"]["Status"] == "running"
    finally:
        engine.containers.get(answer["Id"]).remove(force=True)
    assert runtime.engine_call(host, "GET", f"/containers/{name}/json")[0] == 404


def run_talker(stack: Stack, command: str, stop_after: float) -> tuple[bytes, int, list[tuple[str, ...]]]:
    """Start a container through the runtime in this process, stop it ``stop_after`` seconds
    later; its output, exit code and the events it told the user."""
    import asyncio

    from airadev import config as config_module
    from airadev.runtimes import Context
    from airadev.runtimes import docker as runtime

    stack.write(f"""
[services.talker]
runtime = "docker"
[services.talker.docker]
image = "{IMAGE}"
command = {json.dumps(command)}
""")
    config = config_module.load(stack.root)
    events: list[tuple[str, ...]] = []
    ctx = Context(config, f"{workspace_id(stack.root)}.talker", event=lambda *args: events.append(args))

    async def main() -> tuple[bytes, int]:
        out = bytearray()
        instance = await runtime.DockerRuntime(ctx).start(config.get("talker"), {}, out.extend)
        await asyncio.sleep(stop_after)
        await instance.stop(signal.SIGTERM, 1)
        return bytes(out), await instance.exited

    out, code = asyncio.run(main())
    return out, code, events


def test_a_container_stopped_at_once_still_gives_its_output(
    engine: docker.DockerClient, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader may be slow to open its stream (the SDK's import, a loaded machine): the
    container is not removed before it has, or its output would be gone with it."""
    import time

    from airadev.runtimes.docker import DockerInstance

    opened = DockerInstance._open_stream

    def slow(self: DockerInstance) -> object:
        time.sleep(1.5)
        return opened(self)

    monkeypatch.setattr(DockerInstance, "_open_stream", slow)
    out, code, _ = run_talker(stack, "sh -c 'echo first line; echo to stderr >&2; exec sleep 30'", stop_after=0)
    assert b"first line\n" in out and b"to stderr\n" in out
    assert ours(engine, stack) == []


def test_an_engine_that_cannot_give_back_output_is_attached_and_said(
    engine: docker.DockerClient, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airadev.runtimes.docker import DockerRuntime

    made = DockerRuntime._config

    def no_log(self: DockerRuntime, *args: object) -> dict:
        config = made(self, *args)  # type: ignore[arg-type]
        config["HostConfig"]["LogConfig"] = {"Type": "none"}  # as on a daemon whose default driver is none
        return config

    monkeypatch.setattr(DockerRuntime, "_config", no_log)
    out, _, events = run_talker(stack, "sh -c 'sleep 1; echo said later; exec sleep 30'", stop_after=2)
    assert b"said later\n" in out
    assert any("cannot give back its output" in event[1] for event in events), events
    assert ours(engine, stack) == []


def test_containers_of_the_stack_reach_each_other_by_name(engine: docker.DockerClient, stack: Stack) -> None:
    """The env files speak of this machine's loopback (REDIS_HOST=localhost, the host port); in
    a container that is the other container, by its name and its own port, on the stack's network."""
    port = free_port()
    redis_stack(stack, port)
    (stack.root / "client.env").write_text(
        f"REDIS_HOST=localhost\nREDIS_PORT={port}\nCACHE_URL=redis://127.0.0.1:{port}/0\n"
    )
    with open(stack.root / "airadev.toml", "a") as f:
        f.write(f"""
[services.client]
runtime = "docker"
command = "true"
env_files = ["client.env"]
depends_on = {{ redis = "healthy" }}
health = {{ log = "redis says" }}
[services.client.docker]
image = "airadev-local/debian:bookworm"
command = ["python3", "-c", {json.dumps(CLIENT)}]
""")
    result = stack.up()
    assert result.returncode == 0, result.stderr
    log = stack.log("client")
    assert "client: REDIS_HOST redis REDIS_PORT 6379 URL redis://redis:6379/0" in log
    assert "client: redis says +PONG" in log
    assert stack.cli("down").returncode == 0
    assert ours(engine, stack) == [] and networks(engine, stack) == []


# --- images built by airadev (docker.build) --------------------------------------------------------

BASE = "airadev-local/debian:bookworm"  # scripts/test-images: Debian's python3, no registry needed


def build_stack(stack: Stack, port: int, tag: str, bad_step: str = "") -> None:
    """web: an HTTP server whose image airadev builds (`build = "."`); api: one built from a
    Dockerfile outside its context (as compose/Dockerfile.python is used); other: a process."""
    (stack.root / "web").mkdir()
    (stack.root / "web" / "Dockerfile").write_text(
        f'FROM {BASE}\nRUN echo "built by airadev" > /built.txt\n{bad_step}WORKDIR /\n'
        'CMD ["python3", "-m", "http.server", "8000"]\n'
    )
    (stack.root / "api").mkdir()
    (stack.root / "shared").mkdir()
    (stack.root / "api" / "hello.txt").write_text("from the context\n")
    (stack.root / "shared" / "Dockerfile.api").write_text(
        f'FROM {BASE}\nCOPY hello.txt /hello.txt\nCMD ["sleep", "3600"]\n'
    )
    stack.write(f"""
[services.web]
runtime = "docker"
cwd = "web"
port = {port}
health = {{ http = "/built.txt" }}
stop_grace = "1s"  # PID 1 in a container ignores SIGTERM unless it handles it
[services.web.docker]
image = "{tag}-web:dev"
build = "."
port = 8000

[services.api]
runtime = "docker"
cwd = "api"
stop_grace = "1s"
[services.api.docker]
image = "{tag}-api:dev"
build = {{ context = ".", dockerfile = "../shared/Dockerfile.api" }}

[services.other]
command = {json.dumps(" ".join(fake("printer.py", "--tag", "other")))}
""")


@pytest.fixture
def tag(engine: docker.DockerClient) -> Iterator[str]:
    """A fresh image name for the test, whose images are removed after it."""
    name = f"airadev-test/build-{uuid.uuid4().hex[:8]}"
    yield name
    for image in engine.images.list(name=f"{name}-*"):
        for t in image.tags:
            engine.images.remove(t, force=True)


def test_an_image_with_a_build_is_built_when_missing_again_on_up_build_and_by_airadev_build(
    engine: docker.DockerClient, stack: Stack, tag: str
) -> None:
    port = free_port()
    build_stack(stack, port, tag)
    result = stack.up()
    assert result.returncode == 0, result.stderr
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/built.txt", timeout=10) as answer:
        assert answer.read() == b"built by airadev\n"  # the container runs the image it built
    assert engine.images.get(f"{tag}-web:dev") and engine.images.get(f"{tag}-api:dev")
    assert "Step 2/4 : RUN" in stack.cli("logs", "web", "-n", "100").stdout  # the build's output, in its log
    assert "Successfully tagged" in stack.log("api")  # built from a Dockerfile outside its context
    own = stack.log("airadev")
    assert own.count(f"web: building its image {tag}-web:dev") == 1 and "web: built its image" in own
    # Its image is there now: a restart and the next up do not build it again ...
    assert stack.cli("restart", "web").returncode == 0
    assert stack.cli("down").returncode == 0
    assert stack.up().returncode == 0
    assert stack.log("airadev").count("web: building its image") == 1
    assert stack.cli("down").returncode == 0
    # ... `up --build` does, once per run, and so does `airadev build`.
    result = stack.cli("up", "--detach", "--build")
    assert result.returncode == 0, result.stderr
    assert stack.log("airadev").count("web: building its image") == 2
    assert stack.cli("down").returncode == 0
    built = stack.cli("build", "web")
    assert built.returncode == 0, built.stderr
    assert "web     | Step 1/4 : FROM" in built.stdout and f"web: built its image {tag}-web:dev" in built.stdout


def test_an_image_that_does_not_build_fails_its_service_only_with_the_failing_step(
    engine: docker.DockerClient, stack: Stack, tag: str
) -> None:
    build_stack(stack, free_port(), tag, bad_step='RUN echo "about to fail" && exit 3\n')
    result = stack.up()
    assert result.returncode == 1
    assert "web: its image" in result.stderr and "does not build: step 3/5 (RUN echo" in result.stderr, result.stderr
    assert "returned a non-zero code: 3" in result.stderr and "about to fail" in result.stderr  # its last lines
    assert stack.service("web")["state"] == "failed"
    stack.wait_state("api", "healthy", "running")  # the rest of the stack runs on
    stack.wait_state("other", "running")
    assert "about to fail" in stack.cli("logs", "web").stdout
    built = stack.cli("build", "web")
    assert built.returncode == 1 and "step 3/5 (RUN echo" in built.stderr
    assert "Traceback" not in built.stderr + result.stderr
    assert stack.cli("down").returncode == 0
    count("bad inputs tried")  # a Dockerfile whose step fails


def test_a_container_reaches_a_process_of_the_stack_that_listens_where_containers_reach_this_machine(
    engine: docker.DockerClient, stack: Stack
) -> None:
    """Redis as a process, a client in a container given redis://127.0.0.1:PORT (which becomes
    host.docker.internal): Redis on loopback only is said to be out of the container's reach,
    with the address to add; listening there too, the container reaches it."""
    port = free_port()
    gateway = engine.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]

    def write(bind: str) -> None:
        stack.write(f"""
[services.redis]
command = "redis-server --port {port} --bind {bind} --protected-mode no --save ''"
port = {port}
health = {{ tcp = true }}

[services.client]
runtime = "docker"
env = {{ REDIS_URL = "redis://127.0.0.1:{port}/0" }}
depends_on = {{ redis = "healthy" }}
[services.client.docker]
image = "{IMAGE}"
command = ["sh", "-c", "while :; do redis-cli -u \\"$REDIS_URL\\" ping; sleep 0.2; done"]
healthcheck = "true"  # (the image's own pings a Redis of its own)
""")

    write("127.0.0.1")
    result = stack.up()
    assert result.returncode == 0, result.stderr
    warning = (
        f"client: its environment reaches redis at host.docker.internal:{port}, but redis listens on this "
        f"machine's loopback only, which a container cannot reach; make it listen on {gateway} too"
    )
    assert warning in stack.log("airadev")
    assert stack.cli("down").returncode == 0
    write(f"127.0.0.1 {gateway}")
    result = stack.up()
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "PONG" in stack.log("client"), timeout=30, what="the container's PING answered")
    assert stack.log("airadev").count("listens on this machine's loopback only") == 1  # the first run's
    assert stack.cli("down").returncode == 0
