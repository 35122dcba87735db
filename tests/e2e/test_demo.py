"""End to end on examples/demo: the real `next dev`, uvicorn, redis-server, under airadev."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest

from airadev import reaper
from tests.harness import Stack, free_port, port_free, wait_for

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
DEFAULT_PORTS = {"redis": 6379, "voice": 8000, "kb": 8080, "ui": 3000, "db": 54322}

pytestmark = pytest.mark.e2e


def copy_demo(target: Path) -> dict[str, int]:
    """The demo in ``target`` with free ports, sharing the bootstrapped node_modules."""
    assert (DEMO / "aira-ui" / "node_modules" / "next").is_dir(), "run scripts/bootstrap first"
    shutil.copytree(
        DEMO,
        target,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("node_modules", ".next", ".airadev", "__pycache__"),
    )
    (target / "aira-ui" / "node_modules").symlink_to(DEMO / "aira-ui" / "node_modules")
    ports = {name: free_port() for name in DEFAULT_PORTS}
    for relative in ("airadev.toml", "voice-agent/.env", "kb-updater/.env"):
        path = target / relative
        # One pass: a port written for one service is never taken for another's default.
        new = {str(default): str(ports[name]) for name, default in DEFAULT_PORTS.items()}
        path.write_text(re.sub(r"\b(?:" + "|".join(new) + r")\b", lambda m: new[m[0]], path.read_text()))
    repoint_venv(target / "airadev.toml")
    return ports


def repoint_venv(toml: Path) -> None:
    """The demo names the repository's virtualenv relative to its folder: a copy elsewhere
    names it by its absolute path."""
    venv = DEMO.parents[1] / ".venv"
    toml.write_text(toml.read_text().replace('venv = "../../../.venv"', f'venv = "{venv}"'))


def http(url: str, data: bytes | None = None, timeout: float = 30) -> tuple[int, str, str]:
    request = urllib.request.Request(url, data=data)
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return answer.status, answer.headers.get("content-type", ""), answer.read().decode()


def test_demo_stack_end_to_end(stack: Stack) -> None:
    ports = copy_demo(stack.root)
    # From a terminal where the repository's virtualenv is not activated: the demo's Python
    # services name it (venv), so python and uvicorn are found there, and doctor checks there.
    own_bin = Path(sys.executable).parent
    stack.env["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != own_bin)
    result = stack.up(timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 5 services ready" in result.stdout

    data = json.loads(stack.cli("status", "--json").stdout)
    assert {n: s["state"] for n, s in data["services"].items()} == {
        "redis": "healthy",
        "db": "healthy",
        "voice-agent": "healthy",
        "kb-updater": "healthy",
        "aira-ui": "healthy",
    }
    assert {n: s["port"] for n, s in data["services"].items()} == {
        "redis": ports["redis"],
        "db": ports["db"],
        "voice-agent": ports["voice"],
        "kb-updater": ports["kb"],
        "aira-ui": ports["ui"],
    }
    assert data["services"]["db"]["runtime"] == "postgres"
    assert "not Supabase" in stack.cli("status").stdout

    # doctor on the running demo: no error. Its own Redis (which rewrites its environment, so
    # only its process group says it is the stack's) is not "held by pid N"; the Python services'
    # deps are checked where `up` runs them; nothing about a Supabase this stack does not run.
    # Twilio is reached at an address that refuses: a warning that says so, not "the credentials".
    stack.env["AIRADEV_TWILIO_API_BASE"] = f"http://127.0.0.1:{free_port()}"
    report = stack.cli("doctor", "--json")
    checks = json.loads(report.stdout)["checks"]
    assert [(c["id"], c["message"]) for c in checks if c["status"] == "error"] == []
    assert report.returncode == 0
    by_id = {c["id"]: c for c in checks}
    assert by_id["runtime.ports:redis"]["status"] == "ok" and "this stack" in by_id["runtime.ports:redis"]["message"]
    assert by_id["live.supabase"]["status"] == "skipped" and "not Supabase" in by_id["live.supabase"]["message"]
    assert by_id["live.twilio"]["status"] == "warning" and "cannot be reached" in by_id["live.twilio"]["message"]

    # The database: the UI repo's migrations applied, the KB trigger pointed at the KB updater.
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{ports['db']}/postgres") as conn:
        assert conn.execute("SELECT phone_number FROM business_numbers").fetchall() == [("+15005550006",)]
        definition = conn.execute("SELECT pg_get_functiondef('notify_kb_updater_webhook'::regproc)").fetchone()[0]
        # A new KB document reaches the KB updater through the trigger (airadev's pg_net).
        doc = conn.execute("INSERT INTO kb_documents (title) VALUES ('menu.pdf') RETURNING id").fetchone()[0]
        conn.commit()
    assert f"http://127.0.0.1:{ports['kb']}/process-document" in definition
    wait_for(
        lambda: f"processing document {doc} from kb_documents (INSERT)" in stack.log("kb-updater"),
        what="the new document at the KB updater",
    )
    assert f"POST http://127.0.0.1:{ports['kb']}/process-document → 200" in stack.log("db")
    assert all(reaper.alive(s["pid"]) for s in data["services"].values())
    assert data["services"]["aira-ui"]["processes"] >= 3, "npm → next → workers: the whole tree is counted"

    # The voice agent's logs, from another terminal; its deliberately leaky line is redacted.
    logs = stack.cli("logs", "voice", "-n", "5")
    assert logs.returncode == 0
    lines = logs.stdout.splitlines()
    assert 1 <= len(lines) <= 5 and all(line.startswith("voice-agent | ") for line in lines)
    everything = stack.cli("logs", "voice", "-n", "1000").stdout
    assert "auth token [redacted:TWILIO_AUTH_TOKEN]" in everything
    assert "fedcba9876543210fedcba9876543210" not in everything

    # Twilio's webhook answers TwiML and counts the call in the real Redis.
    status, ctype, body = http(
        f"http://127.0.0.1:{ports['voice']}/webhooks/twilio/call",
        b"From=%2B15550001111&To=%2B15559990000&CallSid=CAe2e",
    )
    assert status == 200 and "xml" in ctype and "<Response><Say>" in body
    assert json.loads(http(f"http://127.0.0.1:{ports['voice']}/calls")[2])["calls"] >= 1
    wait_for(lambda: "CallSid=CAe2e" in stack.log("voice-agent"), what="the call in the voice agent's log")

    # The UI reads VOICE_AGENT_SERVICE_URL from .env.local (airadev does not inject it).
    page = http(f"http://127.0.0.1:{ports['ui']}/", timeout=120)[2]
    assert 'id="voice-agent-service-url">http://localhost:8000<' in page
    assert 'id="health-voice">ok<' in page and 'id="health-kb">ok<' in page

    # restart from another process
    old = stack.service("voice-agent")["pid"]
    restart = stack.cli("restart", "voice")
    assert restart.returncode == 0 and "voice-agent: healthy" in restart.stdout
    restarted = stack.service("voice-agent")["pid"]
    assert restarted != old and not reaper.alive(old)

    # a code change restarts the voice agent (and only it)
    kb_pid = stack.service("kb-updater")["pid"]
    server = stack.root / "voice-agent" / "server.py"
    server.write_text(server.read_text() + "\n# touched by the e2e test\n")
    wait_for(
        lambda: (
            stack.service("voice-agent").get("pid") not in (None, restarted)
            and stack.service("voice-agent").get("state") == "healthy"
        ),
        timeout=30,
        what="the watch restart",
    )
    assert "voice-agent: restarting: server.py changed" in stack.log("airadev")
    assert stack.service("kb-updater")["pid"] == kb_pid

    tree = stack.stack_processes()
    down = stack.cli("down")
    assert down.returncode == 0, down.stderr
    assert stack.left_by_stop(tree) == [], "down returned before everything was gone"
    stack.wait_nothing_left(tree, timeout=60)
    for name, port in ports.items():
        assert port_free(port), f"{name}'s port {port} is still held"
