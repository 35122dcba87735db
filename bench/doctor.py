"""Doctor: a full `airadev doctor --offline` on the demo workspace (median wall time), and a run
with the live checks pointed at addresses that never answer (loopback sockets that accept and
stay silent): it must end within the longest check's time limit plus 0.5 s, never hang.

Targets: offline median at most 1.0 s; live-but-unreachable at most the longest limit + 0.5 s.
No peer is run: flutter doctor and expo-doctor are not installable here (no Flutter SDK; expo
needs an Expo project); `brew doctor` is macOS-only.

usage: python bench/doctor.py [--runs 11]
"""

from __future__ import annotations

import argparse
import compileall
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import BIN, ROOT, env, report

sys.path.insert(0, str(ROOT))
from airadev import doctor as dr

DEMO = ROOT / "examples" / "demo"


def silent_port() -> int:
    """A loopback port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            conn, _ = server.accept()
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "airadev"), quiet=1)
    airadev = [str(BIN / "airadev"), "--workspace", str(DEMO), "doctor"]
    for _ in range(2):
        subprocess.run([*airadev, "--offline"], env=env(), capture_output=True)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run([*airadev, "--offline"], env=env(), capture_output=True)
        times.append(time.perf_counter() - start)
    offline = statistics.median(times)

    dr._load_all()
    limit = max(c.timeout for c in dr.REGISTRY.values())
    port = silent_port()
    live_env = {
        **env(),
        "AIRADEV_TWILIO_API_BASE": f"http://127.0.0.1:{port}",
        "TWILIO_TEST_NUMBER": "+15551230000",
        "TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef",
        "TWILIO_AUTH_TOKEN": "fedcba9876543210fedcba9876543210",
    }
    # The voice URL too: in a copy of the demo whose .env.local points at the silent port.
    import shutil
    import tempfile

    copy = Path(tempfile.mkdtemp(prefix="doctor-bench-")) / "demo"
    shutil.copytree(DEMO, copy, ignore=shutil.ignore_patterns("node_modules", ".next", ".airadev"))
    (copy / "aira-ui" / "node_modules").symlink_to(DEMO / "aira-ui" / "node_modules")
    toml = copy / "airadev.toml"  # the demo names the repository's virtualenv relative to itself
    toml.write_text(toml.read_text().replace('venv = "../../../.venv"', f'venv = "{DEMO.parents[1] / ".venv"}"'))
    env_local = copy / "aira-ui" / ".env.local"
    env_local.write_text(env_local.read_text().replace("http://localhost:8000", f"http://127.0.0.1:{port}"))
    start = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "airadev"), "--workspace", str(copy), "doctor"],
        env=live_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    live = time.perf_counter() - start
    assert "Twilio did not answer" in done.stdout or "did not finish within" in done.stdout, done.stdout[-800:]
    assert "does not answer" in done.stdout, done.stdout[-800:]  # the voice URL
    rows = [
        ("doctor --offline, median", f"{offline * 1000:.0f} ms", ""),
        ("doctor, live checks unreachable", f"{live:.2f} s", ""),
        ("longest check time limit", f"{limit:g} s", ""),
    ]
    return (
        0
        if report(
            f"doctor on examples/demo, {args.runs} runs",
            rows,
            [
                ("offline median at most 1.0 s", offline <= 1.0),
                ("unreachable live checks within the longest limit + 0.5 s", live <= limit + 0.5),
            ],
        )
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
