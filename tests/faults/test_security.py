"""Security: the state folder is private, only the user who started the stack can drive it, no
secret value reaches anything airadev writes or prints, the tunnel exposes the voice agent's
port and nothing else, and `doctor`'s report is safe to paste into a public issue."""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.figures import count
from tests.faults.demo import NGROK_TOKEN, Demo, demo_stack
from tests.harness import Stack, fake, toml_list

NOBODY = 65534
PLANTED = "pl4nted-" + secrets.token_hex(16)  # printed by a service, must never be shown
# Secrets that hide in values whose names say nothing: a URL's password, a DSN's key, a PEM
# block in a JSON value (its newlines escaped), a JWT. Each part must never be shown.
PARTS = {
    "PLANTED_DATABASE_URL.password": "pg-" + secrets.token_hex(12),
    "PLANTED_REDIS_URL.password": "rd-" + secrets.token_hex(12),
    "PLANTED_SENTRY_DSN.key": secrets.token_hex(16),
    "PLANTED_SA_JSON.private_key": "-----BEGIN PRIVATE KEY-----\\n"
    + secrets.token_urlsafe(48)
    + "\\n-----END PRIVATE KEY-----",
    "PLANTED_ROLE.jwt": "eyJ"
    + secrets.token_urlsafe(12)
    + ".eyJ"
    + secrets.token_urlsafe(24)
    + "."
    + secrets.token_urlsafe(32),
}
PLANTED_VALUES = {
    "PLANTED_DATABASE_URL": f"postgresql://app:{PARTS['PLANTED_DATABASE_URL.password']}@db:5432/app",
    "PLANTED_REDIS_URL": f"redis://:{PARTS['PLANTED_REDIS_URL.password']}@cache:6379/0",
    "PLANTED_SENTRY_DSN": f"https://{PARTS['PLANTED_SENTRY_DSN.key']}@o1.ingest.sentry.io/1",
    "PLANTED_SA_JSON": '{"type": "service_account", "private_key": "' + PARTS["PLANTED_SA_JSON.private_key"] + '"}',
    "PLANTED_ROLE": PARTS["PLANTED_ROLE.jwt"],
}

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    leaky = f"""
[services.leaky]
cwd = "voice-agent"
command = {toml_list(fake("printer.py", "--env", "PLANTED_SECRET_KEY", "--env", "TWILIO_AUTH_TOKEN", *[a for name in PLANTED_VALUES for a in ("--env", name)]))}
env_files = [".env"]
health = {{ log = "PLANTED_SECRET_KEY" }}
"""
    root = tmp_path_factory.mktemp("security") / "ws"
    with demo_stack(root, extra=leaky) as made:
        with open(root / "voice-agent" / ".env", "a") as env:
            env.write(f"PLANTED_SECRET_KEY={PLANTED}\n")
            env.write("".join(f"{name}='{value}'\n" for name, value in PLANTED_VALUES.items()))
        made.env_files[root / "voice-agent" / ".env"] = (root / "voice-agent" / ".env").read_bytes()
        yield made


def secret_values(demo: Demo) -> dict[str, str]:
    """Every secret value of the demo: its env files' secrets, the ngrok token, the planted ones
    (among them the parts of values that hide a secret)."""
    from airadev.integrations import envfile

    found = {"NGROK_AUTHTOKEN": NGROK_TOKEN, "PLANTED_SECRET_KEY": PLANTED, **PARTS}
    for path in [demo.env_local, *demo.env_files]:
        found.update(envfile.secrets_of(envfile.read(path)))
    return found


def agent_upstreams(demo: Demo) -> list[str]:
    """Where each endpoint the running ngrok agent serves leads, asked of the agent's own API
    (its address is in the line the agent logs when its web service starts)."""
    found = re.findall(r"starting web service.*? addr=(127\.0\.0\.1:\d+)", demo.stack.log("ngrok"))
    assert found, "the ngrok agent's log has no web service address"
    with urllib.request.urlopen(f"http://{found[-1]}/api/endpoints", timeout=10) as answer:
        return [endpoint["upstream"]["url"] for endpoint in json.load(answer)["endpoints"]]


def leaks(text: bytes, values: dict[str, str]) -> list[str]:
    return [name for name, value in values.items() if value.encode() in text]


def test_a_full_run_with_tunnel_writes_and_prints_no_secret_and_keeps_its_state_private(demo: Demo) -> None:
    values = secret_values(demo)
    assert len(values) >= 8, values
    outputs = b""
    exposed: list[str] = []
    for args in (
        ["up", "--detach"],
        ["status"],
        ["status", "--json"],
        ["tunnel", "--detach"],
        ["tunnel", "--status"],
        ["tunnel", "--status", "--json"],
        ["logs", "-n", "200"],
        ["logs", "leaky"],
        ["restart", "leaky"],
        ["logs", "leaky", "--since", "1h"],
        ["doctor", "--offline"],
        ["doctor", "--offline", "--json"],
        ["tunnel", "--stop"],
        ["down"],
    ):
        result = demo.run(*args)
        # Every command must work; only doctor may report a failed check (exit 1).
        assert result.returncode in ((0, 1) if args[0] == "doctor" else (0,)), (args, result.stdout, result.stderr)
        outputs += f"$ airadev {' '.join(args)}\n{result.stdout}{result.stderr}".encode()
        if args == ["tunnel", "--detach"]:
            exposed = agent_upstreams(demo)  # while the tunnel is open
    # The tunnel exposed one endpoint, and it leads to the voice agent's port.
    assert len(exposed) == 1, f"the agent serves {exposed}"
    assert urllib.parse.urlsplit(exposed[0]).port == demo.ports["voice"], exposed
    # The leaky service did print its secrets, and they are hidden.
    assert b"PLANTED_SECRET_KEY" in outputs and b"TWILIO_AUTH_TOKEN" in outputs
    assert b"PLANTED_DATABASE_URL is postgresql://app:[redacted:PLANTED_DATABASE_URL.password]@db:5432/app" in outputs
    assert b"PLANTED_SENTRY_DSN is https://[redacted:PLANTED_SENTRY_DSN.key]@o1.ingest.sentry.io/1" in outputs
    assert leaks(outputs, values) == [], "secrets in airadev's output"
    written = sorted(p for p in (demo.stack.root / ".airadev").rglob("*") if p.is_file())
    assert any(p.suffix == ".log" for p in written) and (demo.stack.root / ".airadev" / "state.json").exists()
    for path in written:
        if "backups" in path.parts:
            continue  # copies of the user's own env files, made before a rewrite (0600 like all here)
        found = leaks(path.read_bytes(), values)
        assert found == [], f"{path}: holds {found}"
        count("files scanned for secrets")
    # 0700 folders, 0600 files: no other user reads any of it.
    for path in [demo.stack.root / ".airadev", *(demo.stack.root / ".airadev").rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


def test_doctor_is_safe_to_paste_even_when_it_complains(demo: Demo) -> None:
    values = secret_values(demo)
    # Secrets with the wrong format are reported by name, never by value.
    broken = {**demo.env_files}
    voice_env = demo.stack.root / "voice-agent" / ".env"
    try:
        voice_env.write_text(voice_env.read_text().replace("TWILIO_AUTH_TOKEN=", "TWILIO_AUTH_TOKEN=zz-"))
        values["TWILIO_AUTH_TOKEN"] = "zz-" + values["TWILIO_AUTH_TOKEN"]
        text = demo.run("doctor", "--offline")
        as_json = demo.run("doctor", "--offline", "--json")
        assert text.returncode == 1 and "TWILIO_AUTH_TOKEN" in text.stdout + text.stderr
        assert leaks((text.stdout + text.stderr + as_json.stdout + as_json.stderr).encode(), values) == []
    finally:
        for path, content in broken.items():
            path.write_bytes(content)


NOBODY_SCRIPT = r"""
import json, os, socket, sys
state, sock_path = sys.argv[1], sys.argv[2]
out = {}
try:
    os.listdir(state)
    out["list"] = "allowed"
except PermissionError:
    out["list"] = "denied"
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sock_path)
    try:
        s.sendall(b'{"op": "down"}\n')
    except BrokenPipeError:
        pass  # refused and closed before the request was even sent: the refusal is still there to read
    out["answer"] = s.recv(4096).decode()
except PermissionError:
    out["connect"] = "denied"
print(json.dumps(out))
"""


def as_nobody(state: Path) -> dict[str, str]:
    result = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", NOBODY_SCRIPT, str(state), str(state / "control.sock")],
        capture_output=True,
        text=True,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_another_user_cannot_drive_the_stack() -> None:
    """The README's test command runs as root (bootstrap installs packages), which lets this
    test run a client as `nobody`."""
    # A workspace other users can walk to: only .airadev/ stands in their way.
    root = Path(tempfile.mkdtemp(prefix="airadev-other-user-"))
    os.chmod(root, 0o755)
    stack = Stack(root)
    try:
        stack.write(f"[services.a]\ncommand = {toml_list(fake('printer.py', '--lines', 1, '--tag', 'ready'))}\n")
        assert stack.up().returncode == 0
        state = root / ".airadev"
        socket_path = state / "control.sock"
        assert socket_path.exists() and stat.S_IMODE(socket_path.stat().st_mode) == 0o600
        assert as_nobody(state) == {"list": "denied", "connect": "denied"}
        # Even with the folder and the socket opened to all, the supervisor refuses another uid.
        os.chmod(state, 0o755)
        os.chmod(socket_path, 0o666)
        answer = as_nobody(state)
        assert json.loads(answer["answer"]) == {
            "ok": False,
            "error": "refused: not the user who started the stack",
            "fix": "run airadev as the same user",
        }
        assert stack.state()["phase"] == "ready" and stack.service("a")["state"] == "running"
    finally:
        if (root / ".airadev").exists():
            os.chmod(root / ".airadev", 0o700)
        stack.cleanup()
        subprocess.run(["rm", "-rf", str(root)], check=False)
