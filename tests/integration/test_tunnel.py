"""`airadev tunnel` with the real pyngrok and twilio-python, against stand-ins that speak their
protocols: tests/fakes/bin/ngrok (an agent that really forwards HTTP, from https public addresses
whose certificate the test run's CA signed: tests/fakes/tls.py) and tests/fakes/twilio_api.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airadev.state import workspace_id
from airadev import reaper
from tests.fakes import tls
from tests.fakes.twilio_api import FakeTwilio
from tests.figures import count
from tests.harness import FAKES, Stack, fake, free_port, toml_list, wait_for

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "fedcba9876543210fedcba9876543210"
NUMBER = "+15551230000"
NGROK_TOKEN = "2bXfakeNgrokAuthtokenValue_1234567890"
ORIGINAL = (
    b"# AiRa UI\r\nexport VOICE_AGENT_SERVICE_URL='http://localhost:8000'  # local agent\r\n"
    b"NEXT_PUBLIC_APP_URL=http://localhost:3000"
)  # CRLF, export, quotes, no final newline
BEFORE = {
    "voice_url": "https://old.example/voice",
    "voice_method": "POST",
    "sms_url": "https://old.example/sms",
    "sms_method": "GET",
    "status_callback": "",
    "status_callback_method": "POST",
}


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    server = FakeTwilio(SID, TOKEN).start()
    server.add_number(NUMBER, **BEFORE)
    yield server
    server.stop()


def tunnel_stack(
    stack: Stack, twilio: FakeTwilio, *, deaf: bool = False, tunnel: str = "", number: str = NUMBER, db_port: int = 0
) -> Path:
    root = stack.root
    (root / "voice").mkdir()
    (root / "voice" / ".env").write_text(f"TWILIO_ACCOUNT_SID={SID}\nTWILIO_AUTH_TOKEN={TOKEN}\n")
    (root / "ui").mkdir()
    env_local = root / "ui" / ".env.local"
    env_local.write_bytes(ORIGINAL)
    port = free_port()
    ui_command = fake("ui_stub.py", ".env.local") + (["--deaf"] if deaf else [])
    stack.write(f"""
[services.voice-agent]
aliases = ["voice"]
cwd = "voice"
command = {toml_list(fake("voice_stub.py", port))}
env_files = [".env"]
port = {port}
health = {{ http = "/health" }}

[services.aira-ui]
aliases = ["ui"]
cwd = "ui"
command = {toml_list(ui_command)}
env_files = [".env.local"]
load_env_files = false
health = {{ log = "ui stub reading" }}

{db_service(stack, db_port) if db_port else ""}
[tunnel]
ngrok_path = "{FAKES / "bin" / "ngrok"}"
{tunnel}

[twilio]
{f'test_number = "{number}"' if number else ""}
""")
    stand_ins(stack, twilio)
    return env_local


def stand_ins(stack: Stack, twilio: FakeTwilio) -> None:
    """What every airadev of the test runs with: the ngrok token, the Twilio stand-in's address,
    a home with no ngrok config of the developer's, and the test CA trusted."""
    home = stack.root.parent / "home"
    home.mkdir(exist_ok=True)
    stack.env.update(
        {
            "NGROK_AUTHTOKEN": NGROK_TOKEN,
            "AIRADEV_TWILIO_API_BASE": twilio.base_url,
            "XDG_CONFIG_HOME": str(home),
            **tls.env(),
        }
    )


DB_BEFORE = ("https://old.example/voice", "https://old.example/sms", None)


def db_service(stack: Stack, port: int) -> str:
    migrations = stack.root / "ui" / "supabase" / "migrations"
    migrations.mkdir(parents=True)
    (migrations / "1_numbers.sql").write_text(
        "CREATE TABLE business_numbers (phone_number text PRIMARY KEY, voice_url text, sms_url text, "
        "status_callback_url text, is_active boolean DEFAULT true);\n"
        f"INSERT INTO business_numbers VALUES ('{NUMBER}', '{DB_BEFORE[0]}', '{DB_BEFORE[1]}', NULL);\n"
        "INSERT INTO business_numbers VALUES ('+15559990000', 'https://other/voice', NULL, NULL);\n"
    )
    return f'[services.db]\nruntime = "postgres"\nproject = "ui"\nport = {port}\n'


def db_rows(port: int) -> dict[str, tuple]:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres") as conn:
        rows = conn.execute("SELECT phone_number, voice_url, sms_url, status_callback_url FROM business_numbers")
        return {row[0]: row[1:] for row in rows}


def wiring(twilio: FakeTwilio) -> dict[str, str]:
    record = twilio.number(NUMBER)
    return {key: record[key] for key in BEFORE}


def ngrok_agents(stack: Stack) -> list[int]:
    return [
        p
        for p in reaper.marked(workspace_id(stack.root) + ".", exact=False)
        if b"ngrok" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]


def everything_written(stack: Stack) -> str:
    text = ""
    for path in stack.state_dir.rglob("*"):
        if path.is_file() and not path.is_socket():
            text += path.read_text(errors="replace")
    return text


def test_tunnel_rewires_verifies_and_puts_everything_back(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    opened = stack.cli("tunnel", "-d", "--verify")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    status = json.loads(stack.cli("tunnel", "--status", "--json").stdout)
    address = status["address"]
    assert status["schema"] == 1 and status["state"] == "open" and address.startswith("https://127.0.0.1:")
    # The env file: that one value changed, every other byte as it was.
    assert env_local.read_bytes() == ORIGINAL.replace(b"http://localhost:8000", address.encode())
    # Twilio: the three webhooks point at the tunnel, read back.
    assert wiring(twilio) == {
        "voice_url": f"{address}/webhooks/twilio/call",
        "voice_method": "POST",
        "sms_url": f"{address}/webhooks/twilio/sms",
        "sms_method": "POST",
        "status_callback": f"{address}/webhooks/twilio/status",
        "status_callback_method": "POST",
    }
    assert [item["kind"] for item in status["rewired"]] == ["envfile", "twilio"]
    # `status` has the tunnel's line: where, since when, what is rewired to it.
    line = next(x for x in stack.cli("status").stdout.splitlines() if x.startswith("tunnel: "))
    assert line.startswith(f"tunnel: {address}, open since ")
    assert line.endswith(f"; rewired: .env.local VOICE_AGENT_SERVICE_URL, Twilio {NUMBER}")
    # The signed test call went through the tunnel over https (the test CA trusted through
    # SSL_CERT_FILE), and the voice agent found the signature, over the public https URL, right.
    assert f"verify: POST {address}/webhooks/twilio/call → 200" in opened.stdout and "TwiML" in opened.stdout
    assert "signature valid" in stack.log("voice-agent") and "INVALID" not in stack.log("voice-agent")
    # Without the test CA, the certificate is refused like any other unknown one: one clear line.
    trusted = stack.env.pop("SSL_CERT_FILE")
    untrusted = stack.cli("tunnel", "--verify")
    stack.env["SSL_CERT_FILE"] = trusted
    assert untrusted.returncode == 1, untrusted.stdout + untrusted.stderr
    lines = untrusted.stderr.strip().splitlines()
    assert (
        lines[0].startswith(
            f"error: the test call to {address}/webhooks/twilio/call failed: its TLS certificate is not trusted here ("
        )
        and "SSL_CERT_FILE" in lines[-1]
    ), lines
    assert len(lines) == 2 and stack.log("voice-agent").count("signature valid") == 1, "the call never got through"
    assert json.loads(stack.cli("tunnel", "--status", "--json").stdout)["state"] == "open", "the tunnel stays"
    # Next.js (here its stand-in) reloaded the file by itself: no restart.
    assert status["ui_reload"] == "reloaded by Next.js"
    assert stack.log("aira-ui").count("ui stub reading") == 1
    assert len(ngrok_agents(stack)) == 1
    assert "starting web service" in stack.cli("logs", "ngrok", "-n", "50").stdout

    closed = stack.cli("tunnel", "--stop")
    assert closed.returncode == 0, closed.stderr
    assert env_local.read_bytes() == ORIGINAL
    assert wiring(twilio) == BEFORE
    assert not (stack.state_dir / "tunnel.json").exists()
    wait_for(lambda: not ngrok_agents(stack), timeout=5, what="the agent to stop")
    assert json.loads(stack.cli("tunnel", "--status", "--json").stdout)["state"] == "closed"
    assert NGROK_TOKEN not in everything_written(stack) and TOKEN not in everything_written(stack)


def test_ctrl_c_of_up_with_tunnel_puts_everything_back(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    proc = stack.foreground("--tunnel")
    wait_for(lambda: (stack.state().get("tunnel") or {}).get("state") == "open", timeout=30, what="the tunnel")
    assert env_local.read_bytes() != ORIGINAL and wiring(twilio) != BEFORE
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    assert env_local.read_bytes() == ORIGINAL
    assert wiring(twilio) == BEFORE
    assert not ngrok_agents(stack)


def test_after_sigkill_the_next_down_or_up_puts_everything_back(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    assert stack.cli("tunnel", "-d").returncode == 0
    agents = ngrok_agents(stack)
    assert agents
    os.kill(stack.state()["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not any(reaper.alive(p) for p in agents), timeout=15, what="the watchdog to end the agent")
    assert env_local.read_bytes() != ORIGINAL, "still rewired: the journal has it"
    down = stack.cli("down")
    assert down.returncode == 0, down.stderr
    assert "put back what the tunnel left" in down.stdout
    assert env_local.read_bytes() == ORIGINAL
    assert wiring(twilio) == BEFORE

    # The same through the next `up`.
    assert stack.up().returncode == 0
    assert stack.cli("tunnel", "-d").returncode == 0
    os.kill(stack.state()["reaper_pid"], signal.SIGKILL)
    os.kill(stack.state()["supervisor_pid"], signal.SIGKILL)
    again = stack.up()
    assert again.returncode == 0, again.stderr
    assert "put back what an earlier tunnel left" in again.stderr
    assert env_local.read_bytes() == ORIGINAL and wiring(twilio) == BEFORE


def test_the_local_database_s_business_numbers_row_is_rewired_and_put_back(stack: Stack, twilio: FakeTwilio) -> None:
    port = free_port()
    tunnel_stack(stack, twilio, db_port=port)
    assert stack.up().returncode == 0
    other = db_rows(port)["+15559990000"]
    assert stack.cli("tunnel", "-d").returncode == 0
    address = json.loads(stack.cli("tunnel", "--status", "--json").stdout)["address"]
    rows = db_rows(port)
    assert rows[NUMBER] == (
        f"{address}/webhooks/twilio/call",
        f"{address}/webhooks/twilio/sms",
        f"{address}/webhooks/twilio/status",
    )
    assert rows["+15559990000"] == other  # only the test number's row
    status = json.loads(stack.cli("tunnel", "--status", "--json").stdout)
    assert [item["kind"] for item in status["rewired"]] == ["envfile", "twilio", "db"]
    assert stack.cli("tunnel", "--stop").returncode == 0
    assert db_rows(port)[NUMBER] == DB_BEFORE

    # After a SIGKILL the database went down with the stack: `down` puts back what it can and
    # says the row waits in the journal; the database's next start puts it back by itself.
    assert stack.cli("tunnel", "-d").returncode == 0
    os.kill(stack.state()["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not stack.stack_processes(), timeout=15, what="the watchdog to end the stack")
    down = stack.cli("down")
    assert down.returncode == 0, down.stderr
    assert f"business_numbers {NUMBER}: put back once the database runs again" in down.stdout
    assert wiring(twilio) == BEFORE
    assert stack.up().returncode == 0
    assert db_rows(port)[NUMBER] == DB_BEFORE
    assert f"an earlier tunnel's business_numbers {NUMBER}: webhook URLs put back" in stack.log("airadev")
    assert not (stack.state_dir / "tunnel.json").exists()
    # A tunnel of this run is its own: a restart of the database does not undo it.
    assert stack.cli("tunnel", "-d").returncode == 0
    assert stack.cli("restart", "db").returncode == 0
    assert db_rows(port)[NUMBER] != DB_BEFORE
    assert stack.cli("tunnel", "--stop").returncode == 0
    assert db_rows(port)[NUMBER] == DB_BEFORE


def test_a_row_of_a_database_no_longer_in_the_stack_does_not_block_the_journal(
    stack: Stack, twilio: FakeTwilio
) -> None:
    tunnel_stack(stack, twilio)
    stack.state_dir.mkdir(exist_ok=True)
    urls = {"voice_url": "https://dead.example/call", "sms_url": None, "status_callback_url": None}
    (stack.state_dir / "tunnel.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "public_url": "https://dead.example",
                "agent_pid": None,
                "marker": "",
                "keep": False,
                "steps": [
                    {
                        "kind": "db",
                        "dsn": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres",
                        "phone_number": NUMBER,
                        "before": {**urls, "voice_url": "https://old"},
                        "after": urls,
                        "status": "applied",
                    }
                ],
            }
        )
    )
    down = stack.cli("down")
    assert down.returncode == 0, down.stderr
    assert "the local database is no longer part of the stack; its row is left as it is" in down.stdout
    assert not (stack.state_dir / "tunnel.json").exists()


def test_keep_leaves_the_rewiring(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    assert stack.cli("tunnel", "-d", "--keep").returncode == 0
    rewired = env_local.read_bytes()
    closed = stack.cli("tunnel", "--stop")
    assert closed.returncode == 0 and "kept" in closed.stdout
    assert env_local.read_bytes() == rewired and wiring(twilio) != BEFORE
    assert not (stack.state_dir / "tunnel.json").exists()


def test_a_ui_that_does_not_reload_is_restarted(stack: Stack, twilio: FakeTwilio) -> None:
    tunnel_stack(stack, twilio, deaf=True, tunnel='start_timeout = "10s"')
    assert stack.up().returncode == 0
    opened = stack.cli("tunnel", "-d")
    assert opened.returncode == 0, opened.stderr
    assert "UI: restarted" in opened.stdout
    wait_for(lambda: stack.log("aira-ui").count("ui stub reading") == 2, what="the UI's second start")


def test_a_number_routed_to_an_app_is_left_alone(stack: Stack, twilio: FakeTwilio) -> None:
    twilio.number(NUMBER)["voice_application_sid"] = "AP" + "1" * 32
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    opened = stack.cli("tunnel", "-d")
    assert opened.returncode == 0, opened.stderr
    assert "its calls go to the TwiML app AP" in opened.stdout and "Twilio ignores its webhook URLs" in opened.stdout
    assert wiring(twilio) == BEFORE and not [r for r in twilio.requests if r[0] == "POST"]
    assert env_local.read_bytes() != ORIGINAL


def _break_environment(case: str, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Breakages the supervisor must start with: it passes its environment to the agent."""
    if case == "bad token":
        stack.env["NGROK_AUTHTOKEN"] = "bad-token"
    elif case == "no token":
        stack.env.pop("NGROK_AUTHTOKEN")
        monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    elif case == "token refused":
        stack.env["FAKE_NGROK_MODE"] = "auth"
    elif case == "session limit":
        stack.env["FAKE_NGROK_MODE"] = "limit"
    elif case == "agent too old":
        stack.env["FAKE_NGROK_MODE"] = "old"
    elif case == "domain not the account's":
        stack.env["FAKE_NGROK_DOMAINS"] = "aira-dev.ngrok.app"
    elif case == "agent exits":
        stack.env["FAKE_NGROK_MODE"] = "exit"
    elif case == "agent silent":
        stack.env["FAKE_NGROK_MODE"] = "silent"


def _break(case: str, stack: Stack, twilio: FakeTwilio) -> None:
    if case == "twilio 401":
        twilio.auth_token = "a-different-token"
    elif case == "twilio 403":
        twilio.forbidden = True
    elif case == "twilio 5xx":
        twilio.fail_with = 503
    elif case == "twilio timeout":
        twilio.delay = 3.0
    elif case == "twilio 429 every time":
        twilio.throttle(100, retry_after="0")
    elif case == "env file missing":
        (stack.root / "ui" / ".env.local").unlink()
    elif case == "env file not writable":
        path = stack.root / "ui" / ".env.local"
        if os.getuid() == 0:
            subprocess.run(["chattr", "+i", str(path)], check=True)  # root ignores modes, not this
        else:
            os.chmod(path, 0o400)
    elif case == "voice agent not running":
        assert stack.cli("stop", "voice").returncode == 0


ERRORS = [
    ("bad token", "ngrok refused the auth token: it is not an ngrok authtoken (ERR_NGROK_105)", "NGROK_AUTHTOKEN"),
    (
        "token refused",
        ("ngrok refused the auth token: it is invalid (reset, revoked, or of a team you left) (ERR_NGROK_107)"),
        "NGROK_AUTHTOKEN",
    ),
    ("no token", "no ngrok auth token", "ngrok config add-authtoken"),
    (
        "session limit",
        ("ngrok allows this account one agent session at a time, and another one is running (ERR_NGROK_108)"),
        "stop the other ngrok agent",
    ),
    # Its text begins "authentication failed:" too; the code says what it is.
    ("agent too old", "this ngrok agent is too old for the ngrok service (ERR_NGROK_121)", "ngrok update"),
    (
        "domain not the account's",
        ("ngrok refused the domain someone-elses.ngrok.app: it is reserved for another ngrok account (ERR_NGROK_320)"),
        "dashboard.ngrok.com/domains",
    ),
    ("agent exits", "ngrok failed to start", "airadev logs ngrok"),
    ("agent silent", "did not become ready within 2s", "tunnel.start_timeout"),
    ("missing binary", "the ngrok agent is not installed", "ngrok.com/download"),
    ("twilio 401", "Twilio refused the credentials", "TWILIO_AUTH_TOKEN"),
    ("twilio 403", "Twilio forbade this account", "live credentials"),
    ("twilio 404", f"+15559999999 is not a number of the Twilio account {SID}", "twilio.test_number"),
    ("twilio 5xx", "Twilio failed while trying to look up the number (503)", "try again"),
    ("twilio timeout", "Twilio did not answer within 1s", "check the network"),
    (
        "twilio 429 every time",
        ("Twilio kept answering 429 Too Many Requests while trying to look up the number (error 20429, 3 retries)"),
        "try again in a minute",
    ),
    ("not E.164", '"5551234" is not an E.164 phone number', "+15551234567"),
    # (no .env.local.example beside it: no `cp` of a file that is not there)
    ("env file missing", ".env.local not found", "create it, or point the config at the right file"),
    ("env file not writable", ".env.local is not writable", "chmod u+w"),
    ("voice agent not running", "the voice agent (voice-agent) is not running (stopped)", "airadev start voice-agent"),
]


@pytest.mark.parametrize(("case", "message", "fix"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_are_one_clear_line_and_nothing_is_half_rewired(
    stack: Stack, twilio: FakeTwilio, case: str, message: str, fix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = {
        "agent silent": 'start_timeout = "2s"',
        "missing binary": "",
        "domain not the account's": 'domain = "someone-elses.ngrok.app"',
    }.get(case, "")
    number = {"twilio 404": "+15559999999", "not E.164": ""}.get(case, NUMBER)
    env_local = tunnel_stack(stack, twilio, tunnel=extra, number=number)
    if case == "missing binary":
        config = (stack.root / "airadev.toml").read_text()
        (stack.root / "airadev.toml").write_text(config.replace(str(FAKES / "bin" / "ngrok"), "/nonexistent/ngrok"))
    if case == "twilio timeout":
        config = (stack.root / "airadev.toml").read_text()
        (stack.root / "airadev.toml").write_text(config.replace("[twilio]\n", '[twilio]\ntimeout = "1s"\n'))
    if case == "not E.164":
        stack.env["TWILIO_TEST_NUMBER"] = "5551234"
    _break_environment(case, stack, monkeypatch)
    assert stack.up().returncode == 0
    _break(case, stack, twilio)
    try:
        result = stack.cli("tunnel", "-d")
        assert result.returncode == 1, result.stdout + result.stderr
        count("bad inputs tried")
        assert message in result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[0].startswith("error: ") and lines[-1].startswith("  fix: ") and fix in lines[-1]
        assert len(lines) == 2 and "Traceback" not in result.stderr
        # nothing half-rewired
        if env_local.exists():
            assert env_local.read_bytes() == ORIGINAL
        assert wiring(twilio) == BEFORE and not [r for r in twilio.requests if r[0] == "POST"]
        assert not (stack.state_dir / "tunnel.json").exists()
        wait_for(lambda: not ngrok_agents(stack), timeout=5, what="no agent left")
        assert json.loads(stack.cli("tunnel", "--status", "--json").stdout)["state"] == "failed"
        for secret in ("bad-token", NGROK_TOKEN, TOKEN):
            assert secret not in result.stdout + result.stderr + everything_written(stack)
    finally:
        if case == "env file not writable" and os.getuid() == 0:
            subprocess.run(["chattr", "-i", str(stack.root / "ui" / ".env.local")], check=True)


def test_tunnel_needs_a_running_stack(stack: Stack, twilio: FakeTwilio) -> None:
    tunnel_stack(stack, twilio)
    result = stack.cli("tunnel")
    assert result.returncode == 3
    assert "nothing is running" in result.stderr


def test_the_agent_is_found_on_path_but_never_pyngrok_s_own_script(tmp_path: Path) -> None:
    from airadev.integrations import ngrok

    shadow = tmp_path / "shadow"
    shadow.mkdir()
    script = shadow / "ngrok"
    script.write_text("#!/usr/bin/python3\n# -*- coding: utf-8 -*-\nimport re\nfrom pyngrok.ngrok import main\n")
    script.chmod(0o755)
    real = FAKES / "bin"
    env = {"PATH": f"{shadow}{os.pathsep}{real}"}
    assert ngrok.find_binary(None, env) == real / "ngrok"
    assert ngrok.find_binary(None, {**env, "PYNGROK_NGROK_PATH": str(script)}) == script
    assert ngrok.find_binary(real / "ngrok", {"PYNGROK_NGROK_PATH": "/nope"}) == real / "ngrok"
    with pytest.raises(ngrok.NgrokError, match="not installed"):
        ngrok.find_binary(None, {"PATH": str(shadow), "PYNGROK_NGROK_PATH": str(tmp_path / "missing")})
    assert shutil.which("ngrok", path=str(shadow)) == str(script), "the script really was first on PATH"


def test_domain_region_and_a_token_from_the_ngrok_config(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    token = "2bXtokenFromTheConfigFile_0000000000"
    config_dir = Path(stack.env["XDG_CONFIG_HOME"]) / "ngrok"
    config_dir.mkdir(parents=True)
    (config_dir / "ngrok.yml").write_text(f'version: "3"\nagent:\n  authtoken: {token}\n')
    del stack.env["NGROK_AUTHTOKEN"]
    stack.env["FAKE_NGROK_DOMAINS"] = "aira-dev.ngrok.app"  # the account's reserved domain
    assert stack.up().returncode == 0
    opened = stack.cli("tunnel", "-d", "--domain", "aira-dev.ngrok.app", "--region", "eu")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    assert json.loads(stack.cli("tunnel", "--status", "--json").stdout)["address"] == "https://aira-dev.ngrok.app"
    assert b"VOICE_AGENT_SERVICE_URL='https://aira-dev.ngrok.app'" in env_local.read_bytes()
    assert wiring(twilio)["voice_url"] == "https://aira-dev.ngrok.app/webhooks/twilio/call"
    assert "region=eu" in stack.log("ngrok")
    agent = ngrok_agents(stack)[0]
    assert token.encode() not in Path(f"/proc/{agent}/cmdline").read_bytes(), "never on the command line"
    assert token not in everything_written(stack)


def test_foreground_tunnel_is_undone_by_down_from_another_terminal(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    foreground = subprocess.Popen(
        [sys.executable, "-m", "airadev", "--workspace", str(stack.root), "tunnel"],
        env=stack.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: (stack.state().get("tunnel") or {}).get("state") == "open", timeout=30, what="the tunnel")
        assert env_local.read_bytes() != ORIGINAL
        assert stack.cli("down").returncode == 0
        out, _ = foreground.communicate(timeout=60)
        assert foreground.returncode == 0, f"the foreground tunnel ends well when `down` closed it:\n{out}"
        assert "closed by `airadev down`" in out and "stopped under the tunnel" not in out, out
        assert env_local.read_bytes() == ORIGINAL and wiring(twilio) == BEFORE
    finally:
        if foreground.poll() is None:
            foreground.kill()
            foreground.communicate()


def test_ctrl_c_of_a_foreground_tunnel_puts_everything_back(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    foreground = subprocess.Popen(
        [sys.executable, "-m", "airadev", "--workspace", str(stack.root), "tunnel"],
        env=stack.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: (stack.state().get("tunnel") or {}).get("state") == "open", timeout=30, what="the tunnel")
        foreground.send_signal(signal.SIGINT)
        out, _ = foreground.communicate(timeout=30)
        assert foreground.returncode == 0, out
        assert "tunnel: closed" in out and "put back" in out
        assert env_local.read_bytes() == ORIGINAL and wiring(twilio) == BEFORE
        after = json.loads(stack.cli("tunnel", "--status", "--json").stdout)
        assert (after["state"], after["message"]) == ("closed", "Ctrl-C")  # not "airadev tunnel --stop"
        assert stack.service("voice-agent")["state"] == "healthy", "the stack keeps running"
        wait_for(lambda: not ngrok_agents(stack), timeout=5, what="the agent to stop")
    finally:
        if foreground.poll() is None:
            foreground.kill()


# --- awkward moments -----------------------------------------------------------------------------


def journal(stack: Stack) -> dict | None:  # type: ignore[type-arg]
    path = stack.state_dir / "tunnel.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_an_undo_that_fails_keeps_its_journal_until_it_succeeds(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    assert stack.cli("tunnel", "-d").returncode == 0
    rewired = wiring(twilio)
    twilio.fail_with = 503
    closed = stack.cli("tunnel", "--stop")
    assert closed.returncode == 1
    assert "could not put back Twilio +15551230000" in closed.stderr + closed.stdout
    assert env_local.read_bytes() == ORIGINAL, "what could be put back was"
    assert wiring(twilio) == rewired
    pending = [s for s in journal(stack)["steps"] if s["status"] in ("planned", "applied")]  # type: ignore[index]
    assert [s["kind"] for s in pending] == ["twilio"]
    # A new tunnel must not throw that record away.
    again = stack.cli("tunnel", "-d")
    assert again.returncode == 1 and "could not put back what an earlier tunnel left" in again.stderr
    assert journal(stack) is not None
    # Once Twilio answers, the next try puts it back.
    twilio.fail_with = None
    assert stack.cli("tunnel", "--stop").returncode == 0
    assert wiring(twilio) == BEFORE and journal(stack) is None


def test_a_read_back_that_fails_is_undone_or_said(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    twilio.break_after_update = True  # the update lands; the read-back and the undo's look fail
    opened = stack.cli("tunnel", "-d")
    assert opened.returncode == 1
    assert "could not put back" in opened.stderr, "the number stays rewired, and the error says so"
    assert env_local.read_bytes() == ORIGINAL
    assert journal(stack) is not None
    twilio.break_after_update = False
    assert stack.cli("tunnel", "--stop").returncode == 0
    assert wiring(twilio) == BEFORE and journal(stack) is None


def test_an_agent_that_dies_puts_everything_back(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    assert stack.cli("tunnel", "-d").returncode == 0
    os.kill(ngrok_agents(stack)[0], signal.SIGKILL)
    wait_for(lambda: (stack.state().get("tunnel") or {}).get("state") == "closed", timeout=15, what="the undo")
    assert env_local.read_bytes() == ORIGINAL and wiring(twilio) == BEFORE
    assert "the ngrok agent exited" in stack.log("airadev")
    assert stack.service("voice-agent")["state"] == "healthy", "the stack keeps running"


def test_an_agent_that_dies_while_opening_fails_the_open(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio, deaf=True)  # the open then waits 10 s for a reload
    assert stack.up().returncode == 0
    opening = subprocess.Popen(
        [sys.executable, "-m", "airadev", "--workspace", str(stack.root), "tunnel", "-d"],
        env=stack.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: env_local.read_bytes() != ORIGINAL, timeout=30, what="the rewrite")
    os.kill(ngrok_agents(stack)[0], signal.SIGKILL)
    out, err = opening.communicate(timeout=60)
    assert opening.returncode == 1, out + err
    assert "the ngrok agent exited while the tunnel was opening" in err
    assert env_local.read_bytes() == ORIGINAL and wiring(twilio) == BEFORE
    assert json.loads(stack.cli("tunnel", "--status", "--json").stdout)["state"] == "failed"


def test_ctrl_c_while_opening_leaves_nothing_rewired(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio, deaf=True)
    assert stack.up().returncode == 0
    opening = subprocess.Popen(
        [sys.executable, "-m", "airadev", "--workspace", str(stack.root), "tunnel"],
        env=stack.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: (stack.state().get("tunnel") or {}).get("state") == "opening", timeout=30, what="the open")
    opening.send_signal(signal.SIGINT)
    out, _ = opening.communicate(timeout=60)
    assert opening.returncode == 130, out
    assert env_local.read_bytes() == ORIGINAL and wiring(twilio) == BEFORE
    assert journal(stack) is None


def test_an_unchanged_value_needs_no_reload_and_the_ui_never_sees_the_variable(
    stack: Stack, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICE_AGENT_SERVICE_URL", "https://exported-in-the-shell.example")
    env_local = tunnel_stack(stack, twilio, deaf=True)
    env_local.write_bytes(b"VOICE_AGENT_SERVICE_URL=https://aira-dev.ngrok.app\n")
    assert stack.up().returncode == 0
    assert "VOICE_AGENT_SERVICE_URL in the environment: absent" in stack.log("aira-ui")
    opened = stack.cli("tunnel", "-d", "--domain", "aira-dev.ngrok.app")
    assert opened.returncode == 0, opened.stderr
    assert "not needed (the value was already there)" in opened.stdout
    assert stack.log("aira-ui").count("ui stub reading") == 1, "not restarted"


def test_the_tunnel_command_brings_its_own_environment(stack: Stack, twilio: FakeTwilio) -> None:
    tunnel_stack(stack, twilio)
    token = stack.env.pop("NGROK_AUTHTOKEN")
    assert stack.up().returncode == 0  # the supervisor has no token
    stack.env["NGROK_AUTHTOKEN"] = token
    opened = stack.cli("tunnel", "-d")
    assert opened.returncode == 0, opened.stderr
    assert token not in everything_written(stack)


def test_twilio_404_and_a_non_twilio_answer(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    twilio.vanish_after_lookup = True
    gone = stack.cli("tunnel", "-d")
    assert gone.returncode == 1 and "Twilio found no such account or number" in gone.stderr
    assert env_local.read_bytes() == ORIGINAL
    twilio.vanish_after_lookup = False
    stack.env["AIRADEV_TWILIO_API_BASE"] = f"http://127.0.0.1:{_html_server()}"
    odd = stack.cli("tunnel", "-d")
    assert odd.returncode == 1 and "did not answer like Twilio" in odd.stderr, odd.stderr
    assert env_local.read_bytes() == ORIGINAL


def test_twilio_refuses_an_invalid_webhook_url_and_nothing_is_half_done(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    config = (stack.root / "airadev.toml").read_text()
    (stack.root / "airadev.toml").write_text(
        config.replace("[twilio]\n", '[twilio]\nsms_path = "/webhooks/twilio/sms now"\n')
    )
    assert stack.up().returncode == 0
    result = stack.cli("tunnel", "-d")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in result.stderr, lines
    assert lines[0].startswith(
        "error: Twilio refused a webhook URL while trying to update the number's webhooks: "
        "SmsUrl is not a valid URL: https://127.0.0.1:"
    ), lines[0]
    assert lines[0].endswith("/webhooks/twilio/sms now (400, error 21402)") and "sms_path" in lines[1]
    # The one update was refused whole: the number is as it was, and so is the env file.
    assert [a[3] for a in twilio.answers if a[1] == "POST"] == [400]
    assert wiring(twilio) == BEFORE and env_local.read_bytes() == ORIGINAL
    assert journal(stack) is None
    assert json.loads(stack.cli("tunnel", "--status", "--json").stdout)["state"] == "failed"


def test_a_429_from_twilio_is_retried_after_its_retry_after(stack: Stack, twilio: FakeTwilio) -> None:
    tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    twilio.throttle(1, {"POST"}, retry_after="1")  # Twilio's "Too Many Requests" (20429), once
    opened = stack.cli("tunnel", "-d")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    address = json.loads(stack.cli("tunnel", "--status", "--json").stdout)["address"]
    assert wiring(twilio)["voice_url"] == f"{address}/webhooks/twilio/call"
    posts = [(when, status) for when, method, _, status in twilio.answers if method == "POST"]
    assert [status for _, status in posts] == [429, 200], posts
    assert posts[1][0] - posts[0][0] >= 1.0, "sent again before Retry-After said"
    assert stack.cli("tunnel", "--stop").returncode == 0 and wiring(twilio) == BEFORE


def _html_server() -> int:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>captive portal</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def test_backups_are_private_and_few(stack: Stack, twilio: FakeTwilio) -> None:
    tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    for _ in range(7):
        assert stack.cli("tunnel", "-d").returncode == 0
        assert stack.cli("tunnel", "--stop").returncode == 0
    backups = sorted((stack.state_dir / "backups").iterdir())
    assert len(backups) == 5
    assert all(oct(b.stat().st_mode & 0o777) == "0o600" and b.read_bytes() == ORIGINAL for b in backups)


def test_a_twilio_that_is_gone_or_moved_has_a_way_out(stack: Stack, twilio: FakeTwilio, tmp_path: Path) -> None:
    """Twilio (here a Twilio-compatible server) goes away while the number points at the tunnel.
    The hint tells the truth: AIRADEV_TWILIO_API_BASE, when set, is where the step is put back;
    `tunnel --forget` shows what stays rewired and drops it; doctor reports it until then."""
    tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    assert stack.cli("tunnel", "-d").returncode == 0
    rewired, gone = wiring(twilio), twilio.base_url
    twilio.stop()
    closed = stack.cli("tunnel", "--stop")
    assert closed.returncode == 1
    said = closed.stdout + closed.stderr
    assert f"(Twilio at {gone}" in said and "set AIRADEV_TWILIO_API_BASE to where it is now" in said
    assert "`airadev tunnel --forget` drops the record" in said
    down = stack.cli("down")  # stops the stack; says what it could not put back (exit 1)
    assert down.returncode == 1 and "airadev tunnel --forget" in down.stderr
    doctor = json.loads(stack.cli("doctor", "runtime.tunnel-journal", "--offline", "--json").stdout)
    [check] = [c for c in doctor["checks"] if c["id"] == "runtime.tunnel-journal"]
    assert check["status"] == "warning" and f"Twilio {NUMBER}" in check["message"]
    assert "airadev tunnel --forget" in check["fix"]
    # The server came back elsewhere: pointed there, the leftover is put back from there.
    moved = FakeTwilio(SID, TOKEN).start()
    try:
        record = dict(twilio.number(NUMBER))  # the same number (its SID too), served from its new place
        moved.numbers = {record["sid"]: record}
        assert {key: record[key] for key in BEFORE} == rewired
        stack.env["AIRADEV_TWILIO_API_BASE"] = moved.base_url
        back = stack.cli("tunnel", "--stop")
        assert "put back what the last tunnel left: Twilio +15551230000: webhooks put back" in back.stdout, back.stderr
        assert {key: moved.number(NUMBER)[key] for key in BEFORE} == BEFORE and journal(stack) is None
    finally:
        moved.stop()


def test_forget_shows_what_stays_rewired_and_asks(stack: Stack, twilio: FakeTwilio) -> None:
    tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    assert stack.cli("tunnel", "-d").returncode == 0
    address = json.loads(stack.cli("tunnel", "--status", "--json").stdout)["address"]
    refused = stack.cli("tunnel", "--forget", "--yes")
    assert refused.returncode == 2 and "a tunnel is open" in refused.stderr  # --stop puts that back
    gone_now = twilio.base_url
    twilio.stop()
    failed = stack.cli("tunnel", "--stop")  # the record stays, held by the running supervisor
    assert failed.returncode == 1
    held = stack.cli("tunnel", "--forget", "--yes")
    assert held.returncode == 2 and "run `airadev down`" in held.stderr and journal(stack) is not None
    gone = gone_now
    assert stack.cli("down").returncode == 1
    asked = stack.cli("tunnel", "--forget")  # not at a terminal: no yes, no drop
    assert asked.returncode == 2 and "add --yes to confirm" in asked.stderr and journal(stack) is not None
    assert f"Twilio {NUMBER} (account {SID}, at {gone}): voice_url → {address}/webhooks/twilio/call" in asked.stdout
    forgot = stack.cli("tunnel", "--forget", "--yes")
    assert forgot.returncode == 0 and "forgotten" in forgot.stdout and journal(stack) is None
    doctor = json.loads(stack.cli("doctor", "runtime.tunnel-journal", "--offline", "--json").stdout)
    assert [c["status"] for c in doctor["checks"] if c["id"] == "runtime.tunnel-journal"] == ["ok"]
    assert stack.cli("tunnel", "--forget", "--yes").stdout.startswith("no tunnel left anything rewired")
