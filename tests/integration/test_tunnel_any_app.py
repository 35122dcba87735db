"""`airadev tunnel` for a voice app that is not AiRa's (one FastAPI service with Twilio's
/incoming-call, no UI), and nothing touched before it is known to work: the real pyngrok and
twilio-python against the stand-ins of tests/fakes."""

from __future__ import annotations

import json

from tests.fakes.twilio_api import FakeTwilio
from tests.harness import FAKES, Stack, fake, free_port, toml_list
from tests.integration.test_tunnel import (
    BEFORE,
    NGROK_TOKEN,
    NUMBER,
    ORIGINAL,
    SID,
    TOKEN,
    tunnel_stack,
    twilio,
    wiring,
)
from tests.fakes import tls

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
    home = root.parent / "home"
    home.mkdir(exist_ok=True)
    stack.env.update(
        {
            "NGROK_AUTHTOKEN": NGROK_TOKEN,
            "AIRADEV_TWILIO_API_BASE": twilio.base_url,
            "XDG_CONFIG_HOME": str(home),
            **tls.env(),
        }
    )
    return port


def test_a_one_service_voice_app_gets_only_its_voice_url(stack: Stack, twilio: FakeTwilio) -> None:
    voice_app(stack, twilio)
    assert stack.up().returncode == 0
    opened = stack.cli("tunnel", "-d")
    assert opened.returncode == 0, opened.stderr
    address = json.loads(stack.cli("tunnel", "--status", "--json").stdout)["address"]
    # Only the voice URL: the app has no SMS or status route, and those stay as they were.
    assert wiring(twilio) == {**BEFORE, "voice_url": f"{address}/incoming-call", "voice_method": "POST"}
    log = stack.log("airadev")
    assert "tunnel: no env file gets the address (the stack has no UI service): Twilio and the database only" in log
    assert f"Twilio {NUMBER}: voice webhooks → {address} (the others left as they are)" in log
    assert stack.cli("tunnel", "--stop").returncode == 0
    assert wiring(twilio) == BEFORE


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
