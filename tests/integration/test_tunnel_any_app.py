"""`airadev tunnel` for a voice app that is not AiRa's (one FastAPI service with Twilio's
/incoming-call, no UI), and nothing touched before it is known to work: the real pyngrok and
twilio-python against the stand-ins of tests/fakes."""

from __future__ import annotations

import json

from tests.fakes.twilio_api import FakeTwilio
from tests.harness import FAKES, Stack, fake, free_port, toml_list
from tests.integration.test_tunnel import (
    stand_ins,
    BEFORE,
    NUMBER,
    ORIGINAL,
    SID,
    TOKEN,
    tunnel_stack,
    twilio,
    wiring,
)

__all__ = ["twilio"]  # the fixture, used here


def voice_app(stack: Stack, twilio: FakeTwilio) -> int:
    root = stack.root
    (root / "app").mkdir()
    (root / "app" / ".env").write_text(f"TWILIO_ACCOUNT_SID={SID}\nTWILIO_AUTH_TOKEN={TOKEN}\n")
    port = free_port()
    stack.write(f"""
[services.app]
cwd = "app"
command = {toml_list(fake("voice_stub.py", port))}
env_files = [".env"]
port = {port}
health = {{ http = "/health" }}

[tunnel]
service = "app"
ngrok_path = "{FAKES / "bin" / "ngrok"}"

[twilio]
test_number = "{NUMBER}"
voice_path = "/incoming-call"
sms_path = false
status_path = false
""")
    stand_ins(stack, twilio)
    return port


def test_a_one_service_voice_app_gets_only_its_voice_url(stack: Stack, twilio: FakeTwilio) -> None:
    voice_app(stack, twilio)
    assert stack.up().returncode == 0
    opened = stack.cli("tunnel", "-d", "--verify")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    address = json.loads(stack.cli("tunnel", "--status", "--json").stdout)["address"]
    # The signed test call got TwiML naming a media stream on the tunnel's host, and the
    # WebSocket upgrade to it went through the tunnel (Host passed on as ngrok passes it).
    assert f"verify: POST {address}/incoming-call → 200" in opened.stdout
    host = address.split("://")[1]
    assert f"verify: media stream wss://{host}/media-stream → HTTP 101" in opened.stdout
    assert f"media stream upgraded (Host {host})" in stack.log("app")
    # Only the voice URL: the app has no SMS or status route, and those stay as they were.
    assert wiring(twilio) == {**BEFORE, "voice_url": f"{address}/incoming-call", "voice_method": "POST"}
    log = stack.log("airadev")
    assert "tunnel: no env file gets the address (the stack has no UI service): Twilio and the database only" in log
    assert f"Twilio {NUMBER}: voice webhooks → {address} (the others left as they are)" in log
    assert stack.cli("tunnel", "--stop").returncode == 0
    assert wiring(twilio) == BEFORE
    # A tunnel setting changed after `up`: the tunnel says the running stack's are used.
    toml = stack.root / "airadev.toml"
    toml.write_text(toml.read_text().replace('voice_path = "/incoming-call"', 'voice_path = "/voice"'))
    again = stack.cli("tunnel", "-d")
    assert "airadev.toml changed since up: the tunnel uses the running stack's settings" in again.stderr
    assert wiring(twilio)["voice_url"].endswith("/incoming-call")
    assert stack.cli("tunnel", "--stop").returncode == 0
    # `up` applies it: no service restarts, and the next tunnel uses the new path.
    applied = stack.cli("up", "-d")
    assert "airadev.toml applied: no service needed a restart" in applied.stdout, applied.stdout + applied.stderr
    assert stack.cli("tunnel", "-d").returncode == 0
    assert wiring(twilio)["voice_url"].endswith("/voice")


def test_wrong_credentials_touch_nothing_and_start_no_agent(stack: Stack, twilio: FakeTwilio) -> None:
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    (stack.root / "voice" / ".env").write_text(f"TWILIO_ACCOUNT_SID={SID}\nTWILIO_AUTH_TOKEN={'0' * 32}\n")
    restarts = stack.service("aira-ui")["restarts"]
    result = stack.cli("tunnel", "-d")
    assert result.returncode == 1 and "Twilio" in result.stderr, result.stderr
    assert env_local.read_bytes() == ORIGINAL, "the env file is not rewritten"
    assert stack.service("aira-ui")["restarts"] == restarts and "reload" not in stack.log("aira-ui").lower()
    assert wiring(twilio) == BEFORE and not [r for r in twilio.requests if r[0] == "POST"]
    assert not (stack.state_dir / "logs" / "ngrok.log").exists(), "the agent was never started"
    assert not (stack.state_dir / "tunnel.json").exists()


def test_a_failing_verify_leaves_nothing_rewired_even_detached(stack: Stack, twilio: FakeTwilio) -> None:
    """The TwiML names a media stream on another host (an app that builds it from a fixed
    setting, say): Twilio would fail there. `tunnel -d --verify` exits 1 and puts back what it
    opened; `--status` says why it closed."""
    voice_app(stack, twilio)
    stack.env["STUB_STREAM_HOST"] = "old-tunnel.ngrok.app"
    assert stack.up().returncode == 0
    failed = stack.cli("tunnel", "-d", "--verify")
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert lines[0].startswith("error: the TwiML's media stream goes to old-tunnel.ngrok.app, not to the tunnel (")
    assert "Host header" in lines[-1] and len(lines) == 2
    assert wiring(twilio) == BEFORE and not (stack.state_dir / "tunnel.json").exists()
    status = json.loads(stack.cli("tunnel", "--status", "--json").stdout)
    assert (status["state"], status["message"]) == ("closed", "the test call failed")


def test_a_voice_agent_that_went_away_is_named_by_ngrok_s_code(stack: Stack, twilio: FakeTwilio) -> None:
    voice_app(stack, twilio)
    assert stack.up().returncode == 0
    assert stack.cli("tunnel", "-d").returncode == 0
    assert stack.cli("stop", "app").returncode == 0
    result = stack.cli("tunnel", "--verify")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "error: ngrok could not reach the voice agent (ERR_NGROK_8012)" and "airadev status" in lines[-1]
    # Not opened by this command: it stays open (the app may come back).
    assert json.loads(stack.cli("tunnel", "--status", "--json").stdout)["state"] == "open"


def test_ctrl_c_of_the_voice_app_s_tunnel_puts_its_voice_url_back(stack: Stack, twilio: FakeTwilio) -> None:
    import signal
    import subprocess
    import sys

    from tests.harness import wait_for

    voice_app(stack, twilio)
    assert stack.up().returncode == 0
    foreground = subprocess.Popen(
        [sys.executable, "-m", "airadev", "--workspace", str(stack.root), "tunnel", "--verify"],
        env=stack.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: (stack.state().get("tunnel") or {}).get("state") == "open", timeout=30, what="open")
        wait_for(lambda: "media stream upgraded" in stack.log("app"), timeout=30, what="the verify")
        foreground.send_signal(signal.SIGINT)
        out, _ = foreground.communicate(timeout=30)
        assert foreground.returncode == 0, out
        assert "media stream wss://" in out and "HTTP 101" in out
        assert wiring(twilio) == BEFORE
    finally:
        if foreground.poll() is None:
            foreground.kill()


def test_a_url_left_alone_may_change_meanwhile_and_the_voice_url_still_goes_back(
    stack: Stack, twilio: FakeTwilio
) -> None:
    """Found by review: with sms_path = false the SMS URL is its owner's; changed while the tunnel
    is open, it must not make the close leave the voice URL on the dead tunnel."""
    voice_app(stack, twilio)
    assert stack.up().returncode == 0
    assert stack.cli("tunnel", "-d").returncode == 0
    twilio.number(NUMBER)["sms_url"] = "https://owner.example/sms"
    assert stack.cli("tunnel", "--stop").returncode == 0
    assert wiring(twilio) == {**BEFORE, "sms_url": "https://owner.example/sms"}
