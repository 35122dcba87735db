"""Stripe's webhooks to the demo UI (issue 16): [stripe] runs the Stripe CLI (the stand-in in
tests/fakes/bin, which prints and signs as the real one) as a service of the stack; its signing
secret goes into the UI's .env.local (hidden everywhere), the real `next dev` reloads it, a
triggered checkout.session.completed is verified by the UI with the official stripe package,
and `down` puts the file back byte for byte. A live key is refused before anything starts."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal

import pytest

from tests.e2e.test_demo import copy_demo
from tests.harness import FAKES, Stack, wait_for

pytestmark = pytest.mark.e2e


def check(stack: Stack, name: str) -> dict:
    report = json.loads(stack.cli("doctor", "--json", name).stdout)
    return next(c for c in report["checks"] if c["id"] == name)


def test_stripe_events_reach_the_ui_with_the_listener_s_secret_wired_and_put_back(stack: Stack) -> None:
    ports = copy_demo(stack.root)
    toml = stack.root / "airadev.toml"
    toml.write_text(toml.read_text() + "\n[stripe]\n")
    env_local = stack.root / "aira-ui" / ".env.local"
    before = env_local.read_bytes()
    key = re.search(rb"^STRIPE_SECRET_KEY=(\S+)$", before, re.M)[1].decode()  # type: ignore[index]
    stack.env["PATH"] = f"{FAKES / 'bin'}{os.pathsep}{os.environ['PATH']}"
    stack.env["FAKE_STRIPE_DIR"] = str(stack.root.parent / "stripe")
    # Exported in the shell, it would win over the file in Next.js: the UI does not get it.
    stack.env["STRIPE_WEBHOOK_SECRET"] = "whsec_" + "7" * 40
    # The stand-in's secret for this key (as the real CLI's, the same on every run).
    secret = "whsec_" + hashlib.sha256(("signing:" + key).encode()).hexdigest()[:40]

    resolved = stack.cli("config").stdout  # as it will run, no value of the key
    assert f'forward_to = "http://127.0.0.1:{ports["ui"]}/api/payment/webhook"' in resolved and key not in resolved

    result = stack.up("stripe", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stack.service("stripe")["state"] == "healthy"
    after = env_local.read_bytes()
    assert f"STRIPE_WEBHOOK_SECRET={secret}\n".encode() in after
    assert after.replace(f"STRIPE_WEBHOOK_SECRET={secret}".encode(), b"") == re.sub(
        rb"STRIPE_WEBHOOK_SECRET=\S+", b"", before
    ), "only that line changed"
    wait_for(lambda: "Reload env: .env.local" in stack.log("aira-ui"), what="next dev to reload .env.local")

    sent = stack.cli("stripe", "trigger", "checkout.session.completed")
    assert sent.returncode == 0 and "Trigger succeeded! Check dashboard for event details." in sent.stdout, sent.stderr
    verified = wait_for(
        lambda: re.search(r"stripe webhook: checkout.session.completed (evt_\w+) verified", stack.log("aira-ui")),
        timeout=120,
        what="the UI to verify the event",
    )
    url = f"http://127.0.0.1:{ports['ui']}/api/payment/webhook"
    assert f"<--  [200] POST {url} [{verified[1]}]" in stack.log("stripe")
    # The secret is hidden wherever airadev shows or keeps output.
    listener = stack.cli("logs", "stripe")
    assert (
        listener.returncode == 0
        and "Your webhook signing secret is [redacted:STRIPE_WEBHOOK_SECRET]" in listener.stdout
    )
    shown = listener.stdout + stack.cli("status").stdout + stack.cli("logs", "airadev").stdout
    assert "[redacted:STRIPE_WEBHOOK_SECRET]" in stack.log("stripe") and secret not in shown
    for path in (stack.root / ".airadev" / "logs").iterdir():
        assert secret.encode() not in path.read_bytes(), path

    # doctor: the CLI and the test key; the file holds the running listener's secret, until edited.
    assert check(stack, "tools.stripe")["status"] == "ok" and check(stack, "live.stripe")["status"] == "ok"
    env_local.write_bytes(after.replace(secret.encode(), b"whsec_" + b"9" * 40))
    found = check(stack, "live.stripe")
    assert found["status"] == "error" and "is not the running listener's signing secret" in found["message"]
    assert secret not in json.dumps(found)
    env_local.write_bytes(after)

    # A changed [stripe] is a changed service: `up` restarts the listener (and it wires again).
    toml.write_text(toml.read_text().replace("\n[stripe]\n", '\n[stripe]\nevents = ["checkout.session.completed"]\n'))
    applied = stack.cli("up", timeout=120)
    assert applied.returncode == 0 and "restarted: stripe" in applied.stdout, applied.stdout + applied.stderr
    assert env_local.read_bytes() == after

    # The supervisor killed: `down` puts the file back (the journal says what), as `up` would.
    os.kill(stack.state()["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: stack.cli("status").returncode == 3, what="the stack to be gone")
    assert stack.cli("down").returncode == 0
    assert env_local.read_bytes() == before, "put back byte for byte"
    assert not (stack.root / ".airadev" / "stripe.json").exists()

    # A live key: refused in one line before anything starts; the file is left as it is.
    live = before.replace(f"STRIPE_SECRET_KEY={key}".encode(), b"STRIPE_SECRET_KEY=sk_live_" + b"1" * 24)
    env_local.write_bytes(live)
    refused = stack.up("stripe")
    assert refused.returncode == 1
    assert "aira-ui/.env.local: STRIPE_SECRET_KEY is a live key: airadev forwards test events only" in refused.stderr
    assert env_local.read_bytes() == live and stack.cli("status").returncode == 3
