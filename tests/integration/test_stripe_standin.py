"""The Stripe CLI stand-in (tests/fakes/bin/stripe) speaks as the real CLI does: `listen` prints
the real lines and forwards what `trigger` sends, signed so that the official `stripe` package
(the demo UI's, run by node) verifies it with the printed secret and rejects it with another."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
from pathlib import Path

from tests.harness import FAKES, wait_for

STRIPE = FAKES / "bin" / "stripe"
UI = Path(__file__).resolve().parents[2] / "examples" / "demo" / "aira-ui"
KEY = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"

VERIFY = """
const Stripe = require("stripe");
let body = ""; process.stdin.on("data", d => body += d).on("end", () => {
  const { payload, header, secret } = JSON.parse(body);
  try { const e = Stripe.webhooks.constructEvent(payload, header, secret); console.log("verified " + e.type); }
  catch (err) { console.log("rejected " + err.message); }
});
"""


def verify(payload: str, header: str, secret: str) -> str:
    done = subprocess.run(
        ["node", "-e", VERIFY],
        input=json.dumps({"payload": payload, "header": header, "secret": secret}),
        capture_output=True,
        text=True,
        cwd=UI,
        timeout=60,
    )
    return done.stdout.strip() or done.stderr


def test_listen_and_trigger_as_the_real_cli_and_a_signature_the_stripe_package_verifies(tmp_path: Path) -> None:
    got: list[tuple[str, str]] = []

    class Webhook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            got.append((body, self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/payment/webhook"
    env = {**os.environ, "FAKE_STRIPE_DIR": str(tmp_path / "stripe"), "STRIPE_API_KEY": KEY}
    listener = subprocess.Popen(
        [str(STRIPE), "listen", "--forward-to", url, "--events", "checkout.session.completed,payment_intent.succeeded"],
        stdout=open(tmp_path / "out", "w"),
        stderr=open(tmp_path / "err", "w"),
        env=env,
    )
    try:
        ready = wait_for(lambda: "(^C to quit)" in (err := (tmp_path / "err").read_text()) and err, what="Ready!")
        assert ready.startswith("Getting ready...\nReady! You are using Stripe API Version [")
        secret = re.search(r"Your webhook signing secret is (whsec_\w+) \(\^C to quit\)", ready)[1]  # type: ignore[index]
        assert (tmp_path / "out").read_text().startswith("Checking for new versions...\n\n")
        done = subprocess.run(
            [str(STRIPE), "trigger", "checkout.session.completed"], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0 and done.stdout.rstrip().endswith(
            "Trigger succeeded! Check dashboard for event details."
        )
        assert "Setting up fixture for: checkout_session\nRunning fixture for: checkout_session" in done.stdout
        wait_for(lambda: got, what="the forwarded event")
        payload, header = got[0]
        event = json.loads(payload)
        assert event["type"] == "checkout.session.completed" and event["object"] == "event"
        out = wait_for(lambda: "<--" in (text := (tmp_path / "out").read_text()) and text, what="the response line")
        assert re.search(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d   --> checkout.session.completed \[{event['id']}\]", out)
        assert re.search(rf"\d\d:\d\d:\d\d  <--  \[200\] POST {re.escape(url)} \[{event['id']}\]", out)
        # The official package verifies it with the printed secret, and only with it.
        assert verify(payload, header, secret) == "verified checkout.session.completed"
        assert verify(payload, header, "whsec_" + "0" * 40).startswith("rejected No signatures found matching")
        # Not in --events: not forwarded. A second listener of the same key gets the same secret.
        subprocess.run(
            [str(STRIPE), "trigger", "payment_intent.payment_failed"], capture_output=True, env=env, check=True
        )
        subprocess.run([str(STRIPE), "trigger", "payment_intent.succeeded"], capture_output=True, env=env, check=True)
        wait_for(lambda: len(got) == 2, what="the second event")
        assert [json.loads(p)["type"] for p, _ in got] == ["checkout.session.completed", "payment_intent.succeeded"]
    finally:
        listener.terminate()
        listener.wait(10)
        server.shutdown()
    # The key is checked as the real CLI checks it; with none, it says how to give one.
    bad = subprocess.run(
        [str(STRIPE), "listen", "--forward-to", url],
        capture_output=True,
        text=True,
        env={**env, "STRIPE_API_KEY": "pk_test_abcdefghijklmnop"},
    )
    assert bad.returncode == 1 and "the CLI only supports using a secret or restricted key" in bad.stderr
    none = {k: v for k, v in env.items() if k != "STRIPE_API_KEY"} | {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    missing = subprocess.run([str(STRIPE), "listen", "--forward-to", url], capture_output=True, text=True, env=none)
    assert missing.returncode == 1 and "set STRIPE_API_KEY or pass --api-key <key>" in missing.stderr
