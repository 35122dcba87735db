"""Tunnel: from typing `airadev tunnel -d --verify` to everything rewired (UI env file, Twilio
test number) and verified (a signed call through the tunnel answered with TwiML), minus the
ngrok agent's own start-up. Against the stand-ins on loopback (tests/fakes: the ngrok agent,
Twilio's API), with a running stack whose UI reloads its env file like `next dev`.

Target: at most 1 s. No peer: nothing else rewires a Twilio number to a tunnel (twilio-cli 6
dropped its ngrok feature).

usage: python bench/tunnel.py [--runs 5]
"""

from __future__ import annotations

import argparse
import compileall
import json
import statistics
import subprocess
import sys
import time

from common import BIN, FAKES, PY, ROOT, env, report, workspace

sys.path.insert(0, str(ROOT))
from tests.fakes import tls  # noqa: E402
from tests.fakes.twilio_api import FakeTwilio  # noqa: E402

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "fedcba9876543210fedcba9876543210"
NUMBER = "+15551230000"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "airadev"), quiet=1)
    twilio = FakeTwilio(SID, TOKEN).start()
    twilio.add_number(NUMBER)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = workspace(f"""
[services.voice-agent]
aliases = ["voice"]
cwd = "voice"
command = ["{PY}", "{FAKES / 'voice_stub.py'}", "{port}"]
env_files = [".env"]
port = {port}
health = {{ http = "/health" }}

[services.aira-ui]
aliases = ["ui"]
cwd = "ui"
command = ["{PY}", "{FAKES / 'ui_stub.py'}", ".env.local"]
env_files = [".env.local"]
load_env_files = false
health = {{ log = "ui stub reading" }}

[tunnel]
ngrok_path = "{FAKES / 'bin' / 'ngrok'}"

[twilio]
test_number = "{NUMBER}"
""")
    (root / "voice").mkdir()
    (root / "voice" / ".env").write_text(f"TWILIO_ACCOUNT_SID={SID}\nTWILIO_AUTH_TOKEN={TOKEN}\n")
    (root / "ui").mkdir()
    (root / "ui" / ".env.local").write_text("VOICE_AGENT_SERVICE_URL=http://localhost:8000\n")
    (root / "home").mkdir()
    run_env = {**env(), "NGROK_AUTHTOKEN": "bench-token-0000", "AIRADEV_TWILIO_API_BASE": twilio.base_url,
               "XDG_CONFIG_HOME": str(root / "home"), **tls.env()}  # https, the run's CA trusted
    airadev = [str(BIN / "airadev"), "--workspace", str(root)]
    up = subprocess.run([*airadev, "up", "-d"], env=run_env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    totals, agents, overheads = [], [], []
    try:
        for _ in range(args.runs):
            start = time.perf_counter()
            opened = subprocess.run([*airadev, "tunnel", "-d", "--verify"], env=run_env, capture_output=True, text=True)
            total = time.perf_counter() - start
            assert opened.returncode == 0, opened.stdout + opened.stderr
            assert "TwiML" in opened.stdout and twilio.number(NUMBER)["voice_url"].endswith("/webhooks/twilio/call")
            status = json.loads(subprocess.run([*airadev, "tunnel", "--status", "--json"], env=run_env,
                                               capture_output=True, text=True).stdout)
            agent = status["agent_start_seconds"]
            totals.append(total)
            agents.append(agent)
            overheads.append(total - agent)
            closed = subprocess.run([*airadev, "tunnel", "--stop"], env=run_env, capture_output=True, text=True)
            assert closed.returncode == 0, closed.stderr
    finally:
        subprocess.run([*airadev, "down"], env=run_env, capture_output=True)
        twilio.stop()
    overhead = statistics.median(overheads)
    rows = [
        ("`tunnel -d --verify`, wall", f"{statistics.median(totals) * 1000:.0f} ms", ""),
        ("of which the agent's start", f"{statistics.median(agents) * 1000:.0f} ms", ""),
        ("rewired and verified, minus that", f"{overhead * 1000:.0f} ms", ""),
    ]
    return 0 if report(f"tunnel, median of {args.runs}", rows, [("at most 1 s", overhead <= 1.0)]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
