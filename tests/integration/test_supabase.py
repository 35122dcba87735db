"""Supabase as a service of the stack. The real CLI (npm supabase@2.117.0, in the demo UI's
node_modules) for what it does without Supabase's images; for the running case the stand-in
tests/fakes/bin/supabase, which replays `start`, `status -o json` and `migration up` (against a
real PostgreSQL of this test's) as FACTS.md documents them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg

from airadev.integrations.database import set_trigger_url
import pytest

from airadev.integrations import supabase
from tests.figures import count
from tests.harness import FAKES, PY, Stack, fake, free_port, toml_list, wait_for

REPO = Path(__file__).resolve().parents[2]
REAL_CLI = REPO / "examples" / "demo" / "aira-ui" / "node_modules" / ".bin" / "supabase"
ANON = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.anon-signature-0123456789"
SERVICE = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.service-signature-9876543210"
UI_BEFORE = (
    b"# AiRa UI\r\nNEXT_PUBLIC_SUPABASE_URL=https://xxxx.supabase.co\r\n"
    b"export NEXT_PUBLIC_SUPABASE_ANON_KEY='your-anon-key'  # from supabase status\r\n"
    b"NEXT_PUBLIC_APP_URL=http://localhost:3000"
)  # CRLF, export, quotes, no final newline
VOICE_BEFORE = b"SUPABASE_URL=https://xxxx.supabase.co\nSUPABASE_KEY=\nREDIS_HOST=localhost\n"
MIGRATION = """CREATE TABLE business_numbers (phone_number text PRIMARY KEY, voice_url text, sms_url text,
  status_callback_url text);
CREATE FUNCTION notify_kb_updater_webhook() RETURNS TRIGGER AS $$
DECLARE
  webhook_url TEXT := 'https://kb-updater-production.up.railway.app/process-document';
BEGIN
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
"""


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real PostgreSQL standing in for the database inside Supabase's containers."""
    home = tmp_path_factory.mktemp("pg")
    wrap = ["unshare", "--user"] if os.geteuid() == 0 else []  # PostgreSQL refuses root
    subprocess.run(
        [*wrap, "initdb", "-D", str(home / "data"), "-U", "postgres", "--auth=trust"], check=True, capture_output=True
    )
    port = free_port()
    server = subprocess.Popen(
        [
            *wrap,
            "postgres",
            "-D",
            str(home / "data"),
            "-p",
            str(port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ready() -> bool:
        try:
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres").close()
            return True
        except psycopg.Error:
            return False

    wait_for(ready, timeout=30, what="the test's PostgreSQL")
    yield port
    server.terminate()
    server.wait(30)


@pytest.fixture
def api() -> Iterator[int]:
    """Supabase's API gateway, as far as readiness goes: /rest/v1/ answers."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path.startswith("/rest/v1/") else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def fresh_database(port: int) -> str:
    name = "db_" + os.urandom(4).hex()
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres:postgres@127.0.0.1:{port}/{name}"


def supabase_stack(
    stack: Stack, postgres: int, api: int, *, exclude: str = "", status: dict | None = None, extra: str = ""
) -> dict[str, Path]:
    """The stack; ``status`` replaces values `supabase status` prints (None: leaves one out),
    ``extra`` is more of airadev.toml."""
    root = stack.root
    ui, voice, kb = root / "aira-ui", root / "voice-agent", root / "kb-updater"
    for folder in (ui / "supabase" / "migrations", voice, kb):
        folder.mkdir(parents=True)
    (ui / "supabase" / "config.toml").write_text(f'project_id = "aira"\n[api]\nport = {api}\n[db]\nport = {postgres}\n')
    (ui / "supabase" / "migrations" / "20260101000000_numbers.sql").write_text(MIGRATION)
    files = {"ui": ui / ".env.local", "voice": voice / ".env", "kb": kb / ".env"}
    files["ui"].write_bytes(UI_BEFORE)
    files["voice"].write_bytes(VOICE_BEFORE)
    files["kb"].write_bytes(VOICE_BEFORE)
    kb_port = free_port()
    stack.write(f"""
[services.supabase]
runtime = "supabase"
project = "aira-ui"
{exclude}

[services.voice-agent]
aliases = ["voice"]
cwd = "voice-agent"
command = {toml_list(fake("printer.py", "--env", "SUPABASE_KEY", "--env", "DATABASE_URL"))}
env_files = [".env"]
health = {{ log = "DATABASE_URL is" }}
depends_on = {{ supabase = "healthy" }}

[services.kb-updater]
aliases = ["kb"]
cwd = "kb-updater"
command = {toml_list(fake("printer.py", "--env", "HOST"))}
env_files = [".env"]
port = {kb_port}
health = {{ log = "HOST is" }}
depends_on = {{ supabase = "healthy" }}

[services.aira-ui]
aliases = ["ui"]
cwd = "aira-ui"
command = {toml_list(fake("printer.py", "--env", "NEXT_PUBLIC_SUPABASE_ANON_KEY"))}
env_files = [".env.local"]
load_env_files = false
{extra}""")
    db_url = fresh_database(postgres)
    stack.env.update(
        {
            "PATH": f"{FAKES / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "FAKE_SUPABASE_STATE": str(root.parent / "supabase-state.json"),
            "FAKE_SUPABASE_CALLS": str(root.parent / "supabase-calls.jsonl"),
            "FAKE_SUPABASE_STATUS": json.dumps(
                {
                    "API_URL": f"http://127.0.0.1:{api}",
                    "DB_URL": db_url,
                    "ANON_KEY": ANON,
                    "SERVICE_ROLE_KEY": SERVICE,
                    **(status or {}),
                }
            ),
        }
    )
    return {**files, "kb_port": kb_port, "db_url": db_url}  # type: ignore[dict-item]


def calls(stack: Stack) -> list[list[str]]:
    path = stack.root.parent / "supabase-calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_supabase_starts_keys_are_wired_migrations_applied_and_trigger_pointed_home(
    stack: Stack, postgres: int, api: int
) -> None:
    files = supabase_stack(stack, postgres, api, exclude='exclude = ["studio", "imgproxy"]')
    result = stack.up()
    assert result.returncode == 0, result.stderr
    assert ["start", "--workdir", str(stack.root / "aira-ui"), "-x", "studio,imgproxy"] in calls(stack)
    # The env files: exactly those values changed, every other byte as it was.
    url = f"http://127.0.0.1:{api}"
    assert (
        files["ui"].read_bytes()
        == (
            f"# AiRa UI\r\nNEXT_PUBLIC_SUPABASE_URL={url}\r\n"
            f"export NEXT_PUBLIC_SUPABASE_ANON_KEY='{ANON}'  # from supabase status\r\n"
            f"NEXT_PUBLIC_APP_URL=http://localhost:3000\r\nSUPABASE_SERVICE_ROLE_KEY={SERVICE}"
        ).encode()
    )
    for name in ("voice", "kb"):
        assert (
            files[name].read_bytes() == f"SUPABASE_URL={url}\nSUPABASE_KEY={SERVICE}\nREDIS_HOST=localhost\n".encode()
        )
    backups = list((stack.state_dir / "backups").iterdir())
    assert sorted(b.read_bytes() for b in backups) == sorted([UI_BEFORE, VOICE_BEFORE, VOICE_BEFORE])
    # Dependents started after the wiring, with the new values and the database's URL.
    voice_log = stack.log("voice-agent")
    assert f"SUPABASE_KEY is {SERVICE}" not in voice_log and "SUPABASE_KEY is [redacted:" in voice_log
    assert f"DATABASE_URL is postgresql://postgres:postgres@127.0.0.1:{postgres}/postgres" in voice_log
    assert "HOST is 0.0.0.0" in stack.log("kb-updater")
    # Migrations through `supabase migration up`, and the trigger pointed at the KB updater.
    with psycopg.connect(str(files["db_url"])) as conn:
        assert conn.execute("SELECT version FROM supabase_migrations.schema_migrations").fetchall() == [
            ("20260101000000",)
        ]
        definition = conn.execute("SELECT pg_get_functiondef('notify_kb_updater_webhook'::regproc)").fetchone()[0]
    assert f"'http://host.docker.internal:{files['kb_port']}/process-document'" in definition

    # doctor: a trigger URL on loopback is the database's container itself, not the KB updater.
    def kb_check() -> dict:
        report = json.loads(stack.cli("doctor", "--json", "live.kb-deliveries").stdout)
        return next(c for c in report["checks"] if c["id"] == "live.kb-deliveries")

    # (doctor reads the database the services get, `postgres` on that server; this test's stand-in
    # keeps its migrations in a database of its own: the function is made there for the check.)
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{postgres}/postgres", autocommit=True) as conn:
        conn.execute(definition.replace("host.docker.internal", "127.0.0.1"))
        try:
            found = kb_check()
            set_trigger_url(conn, f"http://host.docker.internal:{files['kb_port']}/process-document")
            fixed = kb_check()
        finally:
            conn.execute("DROP FUNCTION notify_kb_updater_webhook()")
    assert found["status"] == "error" and "that is the container itself, never the KB updater" in found["message"], (
        found
    )
    assert fixed["status"] == "skipped" and "no pg_net" in fixed["message"]  # nothing more to read here
    # Shown in a summary, secrets never.
    events = stack.log("airadev")
    assert (
        "wired Supabase into aira-ui/.env.local: NEXT_PUBLIC_SUPABASE_URL, NEXT_PUBLIC_SUPABASE_ANON_KEY, "
        "SUPABASE_SERVICE_ROLE_KEY" in events
    )
    written = "".join(p.read_text(errors="replace") for p in stack.state_dir.rglob("*.log"))
    assert ANON not in written and SERVICE not in written
    # `supabase start` printed its boxes (2.117.0: publishable and secret keys, not the JWTs).
    assert "\u2502 Publishable \u2502 [redacted:PUBLISHABLE_KEY]" in stack.log("supabase")
    assert "super-secret-jwt-token" not in written
    status = json.loads(stack.cli("status", "--json").stdout)["services"]["supabase"]
    assert status["runtime"] == "supabase" and status["state"] == "healthy" and status["container"] == "supabase_*_aira"

    # Down: `supabase stop`, data kept. Up again: nothing to rewrite, nothing rewritten.
    assert stack.cli("down").returncode == 0
    assert ["stop", "--workdir", str(stack.root / "aira-ui")] in calls(stack)
    inode = files["ui"].stat().st_ino
    assert stack.up().returncode == 0
    assert files["ui"].stat().st_ino == inode and len(list((stack.state_dir / "backups").iterdir())) == 3
    assert stack.log("airadev").count("wired Supabase into") == 3  # the first run's three lines only


def test_down_volumes_asks_then_passes_no_backup(stack: Stack, postgres: int, api: int) -> None:
    supabase_stack(stack, postgres, api)
    assert stack.up().returncode == 0
    refused = stack.cli("down", "--volumes")  # not a terminal: no prompt, a clear refusal
    assert refused.returncode == 2 and "add --yes to confirm" in refused.stderr
    assert stack.state()["phase"] != "stopped"
    down = stack.cli("down", "--volumes", "--yes")
    assert down.returncode == 0, down.stderr
    assert ["stop", "--workdir", str(stack.root / "aira-ui"), "--no-backup"] in calls(stack)


def test_a_failing_supabase_start_fails_up_with_the_cli_s_words(stack: Stack, postgres: int, api: int) -> None:
    supabase_stack(stack, postgres, api)
    stack.env["FAKE_SUPABASE_FAIL"] = "start"
    result = stack.up()
    assert result.returncode == 1
    assert "`supabase start` failed (exit code 1)" in result.stderr
    assert "public.ecr.aws" in result.stderr  # its last lines are shown
    assert stack.service("voice-agent")["state"] in ("waiting", "blocked")
    count("bad inputs tried")


def test_a_dead_run_s_supabase_is_stopped_by_the_watchdog_and_by_down(stack: Stack, postgres: int, api: int) -> None:
    supabase_stack(stack, postgres, api)
    assert stack.up().returncode == 0
    os.kill(stack.state()["supervisor_pid"], 9)
    wait_for(
        lambda: ["stop", "--workdir", str(stack.root / "aira-ui")] in calls(stack),
        timeout=30,
        what="the watchdog to run supabase stop",
    )
    assert stack.up().returncode == 0
    state = stack.state()
    os.kill(state["reaper_pid"], 9)
    os.kill(state["supervisor_pid"], 9)
    before = len(calls(stack))
    assert stack.cli("down").returncode == 0
    assert ["stop", "--workdir", str(stack.root / "aira-ui")] in calls(stack)[before:]


def test_the_real_cli_inits_and_reports_nothing_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert REAL_CLI.exists(), "scripts/bootstrap installs it (npm ci in examples/demo/aira-ui)"
    version = subprocess.run([str(REAL_CLI), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert version.stdout.strip() == "2.117.0"
    init = subprocess.run(
        [str(REAL_CLI), "init", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        input="n\nn\n",
        check=False,
    )
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "supabase" / "config.toml").is_file()
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    status = subprocess.run(
        [str(REAL_CLI), "status", "-o", "json", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert status.returncode == 1 and status.stdout.strip() == ""
    # airadev reads that as "not running", in one line.
    monkeypatch.setenv("DOCKER_HOST", env["DOCKER_HOST"])
    with pytest.raises(supabase.SupabaseError) as caught:
        supabase.status(str(REAL_CLI), tmp_path)
    assert caught.value.message.startswith("Supabase is not running: ")


def test_a_failed_supabase_stop_is_tried_again_by_the_next_down(stack: Stack, postgres: int, api: int) -> None:
    supabase_stack(stack, postgres, api)
    assert stack.up().returncode == 0
    fail = Path(stack.env["FAKE_SUPABASE_STATE"] + ".fail-stop")
    fail.touch()
    stack.cli("down")
    assert "`supabase stop` failed (exit code 1)" in stack.log("airadev")
    assert stack.state()["supabase_left"] is True
    assert Path(stack.env["FAKE_SUPABASE_STATE"]).exists(), "still running, as far as the CLI knows"
    fail.unlink()
    again = stack.cli("down")
    assert again.returncode == 0, again.stderr
    assert not Path(stack.env["FAKE_SUPABASE_STATE"]).exists()


def test_start_output_is_never_shown_with_keys_airadev_could_not_learn(stack: Stack, postgres: int, api: int) -> None:
    supabase_stack(stack, postgres, api)
    stack.env["FAKE_SUPABASE_FAIL"] = "status"  # started, but `status` never answers
    proc = stack.foreground()
    wait_for(lambda: Path(stack.env["FAKE_SUPABASE_STATE"]).exists(), timeout=30, what="supabase start")
    wait_for(lambda: any(call[:1] == ["status"] for call in calls(stack)), timeout=30, what="the first check")
    proc.send_signal(2)
    assert proc.wait(60) == 0
    written = "".join(p.read_text(errors="replace") for p in stack.state_dir.rglob("*.log"))
    assert ANON not in written and SERVICE not in written and "super-secret-jwt-token" not in written
    assert "the output of `supabase start` is not shown: its keys could not be read" in stack.log("supabase")


# What 2.117.0 prints besides the JWTs: publishable and secret keys, the S3 protocol's key pair,
# each unlike any other value here so that a leak is found wherever it goes.
REAL = {
    "PUBLISHABLE_KEY": "sb_publishable_" + os.urandom(16).hex()[:22] + "_" + os.urandom(4).hex(),
    "SECRET_KEY": "sb_secret_" + os.urandom(16).hex()[:22] + "_" + os.urandom(4).hex(),
    "JWT_SECRET": "jwt-secret-" + os.urandom(20).hex(),
    "S3_PROTOCOL_ACCESS_KEY_ID": os.urandom(16).hex(),
    "S3_PROTOCOL_ACCESS_KEY_SECRET": os.urandom(32).hex(),
}
SECRETS = {**REAL, "ANON_KEY": ANON, "SERVICE_ROLE_KEY": SERVICE}


def reference_start(stack: Stack, tmp: Path) -> str:
    """What `supabase start` prints (stdout and stderr, in order) for this stack, from the
    stand-in itself, run apart from airadev."""
    env = {
        **os.environ,
        **stack.env,
        "FAKE_SUPABASE_STATE": str(tmp / "reference-state.json"),
        "FAKE_SUPABASE_CALLS": str(tmp / "reference-calls.jsonl"),
    }
    done = subprocess.run(
        [str(FAKES / "bin" / "supabase"), "start", "--workdir", str(stack.root / "aira-ui")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout
    return done.stdout


def shown(line: str) -> re.Pattern[str]:
    """A line as airadev must show it: each secret replaced by [redacted:NAME], all else as it was."""
    pattern = re.escape(line)
    for value in sorted(SECRETS.values(), key=len, reverse=True):
        pattern = pattern.replace(re.escape(value), r"\[redacted:[A-Z0-9_]+\]")
    return re.compile(rf"^(?:supabase +\| )?{pattern}$", re.MULTILINE)


def test_the_real_wording_of_supabase_start_goes_through_with_every_secret_hidden(
    stack: Stack, postgres: int, api: int, tmp_path: Path
) -> None:
    # A service that prints the keys it was given (as an app's debug logging might): none is in
    # its env files, so only what airadev learnt from `supabase status` can hide them.
    leaky = stack.root / "leaky"
    leaky.mkdir()
    (leaky / "said.txt").write_text(
        "".join(f"{name.lower()}={value}\n" for name, value in SECRETS.items()) + "all said\n"
    )
    supabase_stack(
        stack,
        postgres,
        api,
        status=REAL,
        extra=f"""
[services.leaky]
cwd = "leaky"
command = "cat said.txt && exec {PY} -c 'import time; time.sleep(3600)'"
health = {{ log = "all said" }}
depends_on = {{ supabase = "healthy" }}
""",
    )
    reference = reference_start(stack, tmp_path)
    for value in REAL.values():
        assert value in reference or value == REAL["JWT_SECRET"], "the stand-in prints the keys 2.117.0 prints"
    for gone in (ANON, SERVICE, REAL["JWT_SECRET"], "anon key:", "service_role key:", "JWT secret:"):
        assert gone not in reference, "2.117.0's start shows no JWT and no JWT secret"

    out = tmp_path / "up.out"
    proc = stack.foreground(out=out)
    for name in ("supabase", "voice-agent", "kb-updater", "aira-ui", "leaky"):
        stack.wait_state(name, "healthy", "running", timeout=60)
    logs = stack.cli("logs", "-n", "1000")
    assert logs.returncode == 0, logs.stderr
    supabase_log = stack.cli("logs", "supabase", "--no-prefix", "-n", "1000").stdout
    leaky_log = stack.cli("logs", "leaky", "--no-prefix").stdout
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    console = out.read_text(errors="replace")

    # Not one secret anywhere: the console, `airadev logs`, every file airadev keeps.
    kept = {
        p: p.read_bytes()
        for p in stack.state_dir.rglob("*")
        if p.is_file() and "backups" not in p.relative_to(stack.state_dir).parts
    }
    assert any(p.suffix == ".log" for p in kept) and (stack.state_dir / "state.json") in kept
    for name, value in SECRETS.items():
        for where, text in (
            ("the console of up", console),
            ("airadev logs", logs.stdout + logs.stderr),
            ("airadev logs supabase", supabase_log),
        ):
            assert value not in text, f"{name} shown in {where}"
        for path, data in kept.items():
            assert value.encode() not in data, f"{name} written to {path.relative_to(stack.root)}"

    # Every line `supabase start` printed is there, in its place: URLs and labels unchanged,
    # each key replaced by [redacted:NAME].
    lines = [line for line in reference.splitlines() if line.strip()]
    assert any("Project URL" in line for line in lines) and any("Secret Key" in line for line in lines)
    for line in lines:
        for where, text in (("airadev logs supabase", supabase_log), ("the console of up", console)):
            assert shown(line).search(text), f"not shown as it should be in {where}: {line!r}"
    assert f"Project URL    \u2502 http://127.0.0.1:{api}" in supabase_log
    assert "\u2502 Secret Key \u2502 [redacted:S3_PROTOCOL_ACCESS_KEY_SECRET]" in supabase_log
    assert "\u2502 Publishable \u2502 [redacted:PUBLISHABLE_KEY]" in supabase_log
    # And what the leaky service printed, every key hidden by what `supabase status` gave.
    for name in SECRETS:
        assert re.search(rf"^{name.lower()}=\[redacted:[A-Z0-9_]+\]$", leaky_log, re.MULTILINE), name


@pytest.mark.parametrize("gone", [("ANON_KEY",), ("ANON_KEY", "SERVICE_ROLE_KEY")])
def test_a_cli_without_the_jwt_keys_gets_the_newer_keys_wired_and_says_so(
    stack: Stack, postgres: int, api: int, gone: tuple[str, ...]
) -> None:
    files = supabase_stack(stack, postgres, api, status={**REAL, **dict.fromkeys(gone)})
    result = stack.up()
    assert result.returncode == 0, result.stderr
    url = f"http://127.0.0.1:{api}"
    server = SERVICE if "SERVICE_ROLE_KEY" not in gone else REAL["SECRET_KEY"]
    assert (
        files["ui"].read_bytes()
        == (
            f"# AiRa UI\r\nNEXT_PUBLIC_SUPABASE_URL={url}\r\n"
            f"export NEXT_PUBLIC_SUPABASE_ANON_KEY='{REAL['PUBLISHABLE_KEY']}'  # from supabase status\r\n"
            f"NEXT_PUBLIC_APP_URL=http://localhost:3000\r\nSUPABASE_SERVICE_ROLE_KEY={server}"
        ).encode()
    )
    assert files["voice"].read_bytes() == f"SUPABASE_URL={url}\nSUPABASE_KEY={server}\nREDIS_HOST=localhost\n".encode()
    events = stack.log("airadev")
    assert "`supabase status` printed no ANON_KEY: its PUBLISHABLE_KEY is wired in its place" in events
    assert ("`supabase status` printed no SERVICE_ROLE_KEY: its SECRET_KEY is wired in its place" in events) == (
        "SERVICE_ROLE_KEY" in gone
    )
    written = "".join(p.read_text(errors="replace") for p in stack.state_dir.rglob("*.log"))
    for value in (*REAL.values(), SERVICE):
        assert value not in written
    assert stack.service("supabase")["state"] == "healthy"


def test_a_cli_that_prints_no_public_key_at_all_leaves_the_variable_and_says_which_key_is_missing(
    stack: Stack, postgres: int, api: int
) -> None:
    files = supabase_stack(stack, postgres, api, status={**REAL, "ANON_KEY": None, "PUBLISHABLE_KEY": None})
    result = stack.up()
    assert result.returncode == 0, result.stderr
    ui = files["ui"].read_bytes()
    assert b"export NEXT_PUBLIC_SUPABASE_ANON_KEY='your-anon-key'  # from supabase status\r\n" in ui  # as it was
    assert f"SUPABASE_SERVICE_ROLE_KEY={SERVICE}".encode() in ui and b"None" not in ui
    assert (
        "not wired: aira-ui/.env.local NEXT_PUBLIC_SUPABASE_ANON_KEY: `supabase status` printed neither "
        "ANON_KEY nor PUBLISHABLE_KEY; left as it was"
    ) in stack.log("airadev")
    for name in ("voice-agent", "kb-updater", "aira-ui"):
        assert stack.service(name)["state"] in ("healthy", "running"), name
