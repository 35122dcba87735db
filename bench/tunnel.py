"""Tunnel: from typing `airadev tunnel -d --verify` to everything rewired (UI env file, Twilio
test number) and verified (a signed call through the tunnel answered with TwiML), minus the
ngrok agent's own start-up. Against the stand-ins on loopback (tests/fakes: the ngrok agent,
Twilio's API), with a running stack whose UI reloads its env file like `next dev`.

The agent's start-up is timed from outside airadev: a thread of this script watches the
supervisor's children for the agent, takes the agent process's creation time from the kernel
(its start time in /proc/PID/stat, on the CLOCK_BOOTTIME clock, in 10 ms ticks), finds the agent's API among its
listening sockets and polls it (every 2 ms) until it answers, then until it lists the tunnel's
endpoint. "The agent's start" is creation → endpoint listed: spawning the agent, its start-up,
and the one API call that opens the tunnel. airadev's own figure (what `tunnel --status`
reports) is printed beside it for the record.

Target: at most 1 s. No peer: nothing else rewires a Twilio number to a tunnel (twilio-cli 6
dropped its ngrok feature).

usage: python bench/tunnel.py [--runs 5]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from common import BIN, FAKES, PY, ROOT, env, load, report, spread, state, workspace

sys.path.insert(0, str(ROOT))
from tests.fakes import tls
from tests.fakes.twilio_api import FakeTwilio

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "fedcba9876543210fedcba9876543210"
NUMBER = "+15551230000"


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class AgentWatch(threading.Thread):
    """Sees the ngrok agent from outside: its creation (the kernel's record), its API's first
    answer and its first listed endpoint (this script's polls), all on CLOCK_BOOTTIME."""

    def __init__(self, supervisor: int, marker: bytes) -> None:
        super().__init__(daemon=True)
        self.supervisor = supervisor
        self.marker = marker
        self.created = self.api = self.listed = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        import psutil

        pid = self._find()
        # Field 22 of /proc/PID/stat: the start, in clock ticks since boot. (psutil's
        # create_time adds the boot time, which /proc/stat gives in whole seconds only.)
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        self.created = int(stat[stat.rfind(b")") + 2 :].split()[19]) / os.sysconf("SC_CLK_TCK")
        port = 0
        while not port:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and self._endpoints(conn.laddr.port) is not None:
                    port = conn.laddr.port
                    break
            else:
                time.sleep(0.002)
        self.api = boottime()
        while not self._endpoints(port):
            time.sleep(0.002)
        self.listed = boottime()
        self.done.set()

    def _find(self) -> int:
        """The agent among the supervisor's children (cheap to poll: no scan of /proc)."""
        while True:
            for task in Path(f"/proc/{self.supervisor}/task").iterdir():
                try:
                    kids = (task / "children").read_text().split()
                except OSError:
                    continue
                for kid in kids:
                    try:
                        cmdline = Path(f"/proc/{kid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if b"ngrok" in cmdline and self.marker in cmdline:
                        return int(kid)
            time.sleep(0.002)

    @staticmethod
    def _endpoints(port: int) -> list | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/endpoints", timeout=0.5) as answer:
                return json.loads(answer.read()).get("endpoints", [])
        except (OSError, ValueError, AttributeError):
            return None


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
command = ["{PY}", "{FAKES / "voice_stub.py"}", "{port}"]
env_files = [".env"]
port = {port}
health = {{ http = "/health" }}

[services.aira-ui]
aliases = ["ui"]
cwd = "ui"
command = ["{PY}", "{FAKES / "ui_stub.py"}", ".env.local"]
env_files = [".env.local"]
load_env_files = false
health = {{ log = "ui stub reading" }}

[tunnel]
ngrok_path = "{FAKES / "bin" / "ngrok"}"

[twilio]
test_number = "{NUMBER}"
""")
    (root / "voice").mkdir()
    (root / "voice" / ".env").write_text(f"TWILIO_ACCOUNT_SID={SID}\nTWILIO_AUTH_TOKEN={TOKEN}\n")
    (root / "ui").mkdir()
    (root / "ui" / ".env.local").write_text("VOICE_AGENT_SERVICE_URL=http://localhost:8000\n")
    (root / "home").mkdir()
    run_env = {
        **env(),
        "NGROK_AUTHTOKEN": "bench-token-0000",
        "AIRADEV_TWILIO_API_BASE": twilio.base_url,
        "XDG_CONFIG_HOME": str(root / "home"),
        **tls.env(),
    }  # https, the run's CA trusted
    airadev = [str(BIN / "airadev"), "--workspace", str(root)]
    up = subprocess.run([*airadev, "up", "-d"], env=run_env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    supervisor = state(root)["supervisor_pid"]
    totals, outside, api, own, overheads = [], [], [], [], []
    print(f"before: {load()}")
    try:
        for _ in range(args.runs):
            watch = AgentWatch(supervisor, str(root).encode())
            watch.start()
            start_boot = boottime()
            start = time.perf_counter()
            opened = subprocess.run([*airadev, "tunnel", "-d", "--verify"], env=run_env, capture_output=True, text=True)
            total = time.perf_counter() - start
            assert opened.returncode == 0, opened.stdout + opened.stderr
            assert "TwiML" in opened.stdout and twilio.number(NUMBER)["voice_url"].endswith("/webhooks/twilio/call")
            assert watch.done.wait(10), "the agent was not seen"
            assert watch.created >= start_boot - 0.02, "an older agent was seen"
            status = json.loads(
                subprocess.run(
                    [*airadev, "tunnel", "--status", "--json"], env=run_env, capture_output=True, text=True
                ).stdout
            )
            agent = watch.listed - watch.created
            totals.append(total)
            outside.append(agent)
            api.append(watch.api - watch.created)
            own.append(status["agent_start_seconds"])
            overheads.append(total - agent)
            closed = subprocess.run([*airadev, "tunnel", "--stop"], env=run_env, capture_output=True, text=True)
            assert closed.returncode == 0, closed.stderr
    finally:
        subprocess.run([*airadev, "down"], env=run_env, capture_output=True)
        twilio.stop()
    print(f"after: {load()}")

    def ms(v: float) -> str:
        return f"{v * 1000:.0f} ms"

    overhead = statistics.median(overheads)
    rows = [
        ("`tunnel -d --verify`, typing → return", spread(totals, ms), ""),
        ("the agent's start, seen from outside: created → tunnel listed", spread(outside, ms), ""),
        ("  of which created → its API answers", spread(api, ms), ""),
        ("  the agent's start as airadev reports it (for the record)", spread(own, ms), ""),
        ("rewired and verified, minus the agent's start", spread(overheads, ms), ""),
    ]
    return (
        0
        if report(
            f"tunnel, median (min–max) of {args.runs}",
            rows,
            [(f"at most 1 s, median ({overhead * 1000:.0f} ms)", overhead <= 1.0)],
        )
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
