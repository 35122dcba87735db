"""End to end on examples/demo with the tunnel: real `next dev` and the FastAPI voice agent,
pyngrok driving the stand-in agent, twilio-python talking to the stand-in Twilio API."""

from __future__ import annotations

import json
import os
import signal
import ssl
import urllib.request

import pytest

from airadev.integrations.twilio import signature
from tests.e2e.test_demo import copy_demo, http
from tests.fakes import tls
from tests.fakes.twilio_api import FakeTwilio
from tests.harness import FAKES, Stack, wait_for

pytestmark = pytest.mark.e2e

SID = "AC0123456789abcdef0123456789abcdef"  # the demo's fake credentials (voice-agent/.env)
TOKEN = "fedcba9876543210fedcba9876543210"
NUMBER = "+15551230000"
BEFORE = {
    "voice_url": "https://old.example/voice",
    "voice_method": "POST",
    "sms_url": "https://old.example/sms",
    "sms_method": "POST",
    "status_callback": "https://old.example/status",
    "status_callback_method": "POST",
}


def wiring(twilio: FakeTwilio) -> dict[str, str]:
    return {key: twilio.number(NUMBER)[key] for key in BEFORE}


def signed_call(address: str) -> tuple[int, str, str]:
    url = f"{address}/webhooks/twilio/call"
    params = {"CallSid": "CAe2etunnel", "From": "+15005550006", "To": NUMBER, "AccountSid": SID}
    body = "&".join(f"{k}={urllib.request.quote(v)}" for k, v in params.items()).encode()
    request = urllib.request.Request(url, data=body, headers={"X-Twilio-Signature": signature(TOKEN, url, params)})
    trusting = ssl.create_default_context(cafile=str(tls.session_ca().ca_cert))  # the address is https
    with urllib.request.urlopen(request, timeout=30, context=trusting) as answer:
        return answer.status, answer.headers.get("content-type", ""), answer.read().decode()


def test_demo_with_tunnel_end_to_end(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    twilio = FakeTwilio(SID, TOKEN).start()
    twilio.add_number(NUMBER, **BEFORE)
    try:
        ports = copy_demo(stack.root)
        env_local = stack.root / "aira-ui" / ".env.local"
        original = env_local.read_bytes()
        (tmp_path / "home").mkdir()
        stack.env.update(
            {
                "NGROK_AUTHTOKEN": "demo-ngrok-token-0000",
                "PYNGROK_NGROK_PATH": str(FAKES / "bin" / "ngrok"),
                "AIRADEV_TWILIO_API_BASE": twilio.base_url,
                "TWILIO_TEST_NUMBER": NUMBER,
                "XDG_CONFIG_HOME": str(tmp_path / "home"),
                **tls.env(),
            }
        )
        proc = stack.foreground("--tunnel")
        tunnel = wait_for(
            lambda: (t := stack.state().get("tunnel") or {}).get("state") in ("open", "failed") and t,
            timeout=240,
            what="the tunnel",
        )
        assert tunnel["state"] == "open", tunnel
        address = tunnel["address"]
        stack.wait_phase("ready", timeout=240)

        # The UI page shows the tunnel address (Next.js reloaded .env.local by itself).
        assert tunnel["ui_reload"] == "reloaded by Next.js"
        page = http(f"http://127.0.0.1:{ports['ui']}/", timeout=120)[2]
        assert f'id="voice-agent-service-url">{address}<' in page
        # Twilio holds the new webhooks.
        assert wiring(twilio)["voice_url"] == f"{address}/webhooks/twilio/call"
        assert wiring(twilio)["status_callback"] == f"{address}/webhooks/twilio/status"
        # A signed POST to the tunnel address gets TwiML from the voice agent.
        status, ctype, body = signed_call(address)
        assert status == 200 and "xml" in ctype and "<Response><Say>" in body
        wait_for(lambda: "CallSid=CAe2etunnel" in stack.log("voice-agent"), what="the call in the agent's log")

        # Ctrl-C puts everything back.
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert env_local.read_bytes() == original
        assert wiring(twilio) == BEFORE

        # The same after SIGKILL of airadev, followed by `airadev down`.
        started = stack.up("--tunnel", timeout=240)
        assert started.returncode == 0, started.stdout + started.stderr
        assert "tunnel: http" in started.stdout
        assert env_local.read_bytes() != original and wiring(twilio) != BEFORE
        os.kill(stack.state()["supervisor_pid"], signal.SIGKILL)
        down = stack.cli("down")
        assert down.returncode == 0, down.stderr
        assert env_local.read_bytes() == original
        assert wiring(twilio) == BEFORE
        stack.wait_nothing_left(timeout=15)
        status_json = (
            json.loads(stack.cli("tunnel", "--status", "--json").stdout or "{}")
            if stack.cli("tunnel", "--status").returncode == 0
            else {}
        )
        assert status_json == {}, "nothing runs any more"
    finally:
        twilio.stop()
