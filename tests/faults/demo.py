"""The demo stack as the fault suite runs it: examples/demo (the real voice agent, KB updater,
redis-server and PostgreSQL with the UI repo's migrations) with free ports; the UI is
tests/fakes/ui_stub.py, which watches .env.local as `next dev` does; misbehaving processes of
tests/fakes beside them (a grandchild in its own group, a daemon that leaves the session, a
SIGTERM ignorer); a Redis in a container (the local test image), so that containers are
reaped too; the stand-in ngrok agent and Twilio API for the tunnel."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from airadev.state import workspace_id
from airadev import reaper
from tests.e2e.test_demo import copy_demo
from tests.fakes import tls
from tests.fakes.twilio_api import FakeTwilio
from tests.harness import FAKES, Stack, fake, free_port, toml_list

SID = "AC0123456789abcdef0123456789abcdef"  # the demo's fake credentials (voice-agent/.env)
TOKEN = "fedcba9876543210fedcba9876543210"
NGROK_TOKEN = "demo-ngrok-token-0000"
NUMBER = "+15005550006"  # the demo database's business_numbers row
BEFORE = {
    "voice_url": "https://old.example/voice",
    "voice_method": "POST",
    "sms_url": "https://old.example/sms",
    "sms_method": "POST",
    "status_callback": "https://old.example/status",
    "status_callback_method": "POST",
}


class Demo:
    def __init__(self, stack: Stack, twilio: FakeTwilio, ports: dict[str, int]) -> None:
        self.stack, self.twilio, self.ports = stack, twilio, ports
        self.env_local = stack.root / "aira-ui" / ".env.local"
        self.original = self.env_local.read_bytes()
        self.env_files = {
            p: p.read_bytes() for p in (stack.root / "voice-agent" / ".env", stack.root / "kb-updater" / ".env")
        }
        self.db_before: tuple[str, ...] = ()  # the business_numbers row as the migrations made it

    def wiring(self) -> dict[str, str]:
        record = self.twilio.number(NUMBER)
        return {key: record[key] for key in BEFORE}

    def db_row(self) -> tuple[str, ...]:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.ports['db']}/postgres", connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT voice_url, sms_url, status_callback_url FROM business_numbers WHERE phone_number = %s",
                (NUMBER,),
            ).fetchone()
        return tuple(row)

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = self.stack.cli(*args, timeout=timeout)
        self.stack._remember()
        return result


@contextlib.contextmanager
def demo_stack(root: Path, extra: str = "") -> Iterator[Demo]:
    """The demo in ``root`` (made here), ``extra`` TOML appended; started and stopped once, so
    that its database exists and its original business_numbers row is known."""
    root.mkdir(parents=True)
    ports = copy_demo(root)
    toml = (root / "airadev.toml").read_text()
    toml = (
        toml[: toml.index("[services.aira-ui]")]
        + f"""[services.aira-ui]
aliases = ["ui"]
template = "aira-ui"
cwd = "aira-ui"
command = {toml_list(fake("ui_stub.py", ".env.local"))}
env_files = [".env.local"]
load_env_files = false
health = {{ log = "ui stub reading" }}
depends_on = {{ voice-agent = "started", kb-updater = "started" }}

[services.spawner]
command = {toml_list(fake("spawner.py"))}

[services.daemonizer]
command = {toml_list(fake("daemonizer.py"))}

[services.term-ignorer]
command = {toml_list(fake("term_ignorer.py"))}
stop_grace = "1s"

[services.cache]
runtime = "docker"
port = {ports.setdefault("cache", free_port())}
docker = {{ image = "airadev-local/redis:7", command = "redis-server --save ''", port = 6379 }}
{extra}"""
    )
    (root / "airadev.toml").write_text(toml)
    twilio = FakeTwilio(SID, TOKEN).start()
    twilio.add_number(NUMBER, **BEFORE)
    stack = Stack(root)
    home = root.parent / "home"
    home.mkdir(exist_ok=True)
    stack.env.update(
        {
            "NGROK_AUTHTOKEN": NGROK_TOKEN,
            "PYNGROK_NGROK_PATH": str(FAKES / "bin" / "ngrok"),
            "AIRADEV_TWILIO_API_BASE": twilio.base_url,
            "TWILIO_TEST_NUMBER": NUMBER,
            "XDG_CONFIG_HOME": str(home),
            **tls.env(),
        }
    )  # the agent's https certificate
    demo = Demo(stack, twilio, ports)
    try:
        started = demo.run("up", "--detach")
        assert started.returncode == 0, started.stderr
        demo.db_before = demo.db_row()
        assert demo.run("down").returncode == 0
        yield demo
    finally:
        stack.cleanup()
        twilio.stop()


def own_processes(stack: Stack) -> list[int]:
    """Every live process of the stack: marked ones, recorded groups, pids seen, and any
    supervisor or watchdog of this workspace (found by their command lines)."""
    found = set(stack.stack_processes())
    root, wsid = str(stack.root).encode(), workspace_id(stack.root).encode()
    for pid in reaper.pids():
        cmd = cmdline(pid)
        if (
            (b"airadev.supervisor.daemon" in cmd and root in cmd) or (b"watchdog.py" in cmd and wsid in cmd)
        ) and reaper.alive(pid):
            found.add(pid)
    return sorted(found)


def containers(stack: Stack) -> list[str]:
    """The names of the workspace's containers still on the engine."""
    import json
    import urllib.parse

    from airadev.integrations.engine import engine_host, engine_request

    label = urllib.parse.quote(json.dumps({"label": [f"dev.airadev.workspace={workspace_id(stack.root)}"]}))
    status, body = engine_request(engine_host(), "GET", f"/containers/json?all=1&filters={label}")
    assert status == 200, body
    return [c["Names"][0].lstrip("/") for c in json.loads(body)]


def supervisors(stack: Stack) -> list[int]:
    root = str(stack.root).encode()
    return [
        pid
        for pid in reaper.pids()
        if reaper.alive(pid) and b"airadev.supervisor.daemon" in cmdline(pid) and root in cmdline(pid)
    ]


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
