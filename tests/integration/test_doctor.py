"""`airadev doctor`: every check passes on a good workspace and fails on a broken one, with its
fix; JSON, exit codes, secrets and --fix."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airadev import doctor
from airadev.state import workspace_id
from airadev import reaper
from tests.fakes.docker_engine import FakeEngine
from tests.fakes.twilio_api import FakeTwilio
from tests.e2e.test_demo import repoint_venv
from tests.harness import FAKES, PY, cli_env, free_port

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "fedcba9876543210fedcba9876543210"
NUMBER = "+15551230000"


def jwt(role: str) -> str:
    def part(obj: dict) -> str:  # type: ignore[type-arg]
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part({'role': role, 'iss': 'test'})}.c2lnbmF0dXJl"


ANON, SERVICE = jwt("anon"), jwt("service_role")


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]
    twilio: FakeTwilio
    engine: FakeEngine

    def path(self, relative: str) -> Path:
        return self.root / relative

    def set_var(self, relative: str, name: str, value: str) -> None:
        from airadev.integrations.envfile import set_value

        set_value(self.path(relative), name, value)

    def run(self, *checks: str, offline: bool = False) -> list[doctor.Result]:
        ctx = doctor.Context(self.root, offline=offline, env=self.env)
        return doctor.run(doctor.select(list(checks), offline), ctx)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PY, "-m", "airadev", "--workspace", str(self.root), "doctor", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """A workspace where every check passes: the demo's services and env files, Supabase
    config and migrations, git with the env files ignored, and stand-ins for what a machine
    here does not have (a Docker engine, the Supabase CLI, ngrok, Twilio)."""
    root = tmp_path / "ws"
    shutil.copytree(DEMO, root, ignore=shutil.ignore_patterns("node_modules", ".next", ".airadev", "__pycache__"))
    # The demo's node_modules, but for its Supabase CLI: the stand-in on PATH plays a running one.
    modules = root / "aira-ui" / "node_modules"
    (modules / ".bin").mkdir(parents=True)
    for entry in (DEMO / "aira-ui" / "node_modules").iterdir():
        if entry.name != ".bin":
            (modules / entry.name).symlink_to(entry)
    for entry in (DEMO / "aira-ui" / "node_modules" / ".bin").iterdir():
        if entry.name != "supabase":
            (modules / ".bin" / entry.name).symlink_to(entry)
    ports = {6379: free_port(), 8000: free_port(), 8080: free_port(), 3000: free_port(), 54322: free_port()}
    for relative in ("airadev.toml", "voice-agent/.env", "kb-updater/.env"):
        # One pass, whole numbers only: a new port may contain an old one (28000 holds 8000).
        text = re.sub(
            r"\b(?:6379|8000|8080|3000|54322)\b", lambda m: str(ports[int(m[0])]), root.joinpath(relative).read_text()
        )
        root.joinpath(relative).write_text(text)
    # Its database is Supabase (the stand-in CLI on PATH plays a running one), so that the
    # Supabase checks have something to check.
    toml = root / "airadev.toml"
    toml.write_text(toml.read_text().replace('runtime = "postgres"', 'runtime = "supabase"') + "\n[stripe]\n")
    repoint_venv(toml)
    for relative in ("aira-ui/.env.local", "voice-agent/.env", "kb-updater/.env"):
        os.chmod(root / relative, 0o600)
    supabase = root / "aira-ui" / "supabase"
    (supabase / "migrations").mkdir(parents=True, exist_ok=True)
    (supabase / "config.toml").write_text('project_id = "aira"\n[api]\nport = 54321\n')
    (supabase / "migrations" / "20261126000000_documents.sql").write_text(
        "create or replace function notify_kb_updater_webhook() returns trigger as $$\n"
        "begin perform net.http_post(url := 'http://host.docker.internal:8080/process-document'); "
        "return new; end; $$ language plpgsql;\n"
    )
    (root / ".gitignore").write_text(".airadev/\n.env\n.env.local\nnode_modules/\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "workspace")
    twilio = FakeTwilio(SID, TOKEN).start()
    twilio.add_number(NUMBER)
    engine = FakeEngine(tmp_path / "docker.sock")
    state = tmp_path / "supabase-state.json"
    state.write_text(
        json.dumps(
            {
                "API_URL": "http://127.0.0.1:54321",
                "ANON_KEY": _value(root, "aira-ui/.env.local", "NEXT_PUBLIC_SUPABASE_ANON_KEY"),
                "SERVICE_ROLE_KEY": _value(root, "aira-ui/.env.local", "SUPABASE_SERVICE_ROLE_KEY"),
            }
        )
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **cli_env(),
        "PATH": f"{FAKES / 'bin'}{os.pathsep}{cli_env()['PATH']}",
        "DOCKER_HOST": engine.host,
        "NGROK_AUTHTOKEN": "2bXdoctorToken000000000000000000",
        "TWILIO_TEST_NUMBER": NUMBER,
        "AIRADEV_TWILIO_API_BASE": twilio.base_url,
        "FAKE_SUPABASE_STATE": str(state),
        "XDG_CONFIG_HOME": str(home),
    }
    for name in ("NEXT_PUBLIC_APP_URL", "VOICE_AGENT_SERVICE_URL"):
        env.pop(name, None)
    workspace = Workspace(root, env, twilio, engine)
    workspace.set_var("aira-ui/.env.local", "VOICE_AGENT_SERVICE_URL", f"http://127.0.0.1:{_health_server()}")
    try:
        yield workspace
    finally:
        twilio.stop()
        engine.stop()


def _value(root: Path, relative: str, name: str) -> str:
    from airadev.integrations.envfile import read

    return read(root / relative)[name]


def _health_server() -> int:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def _without(env: dict[str, str], program: str) -> str:
    """PATH on which ``program`` is not found, but everything else beside it still is (for
    "it is not installed": npm and node share a folder)."""
    import tempfile

    shadow = Path(tempfile.mkdtemp(prefix="path-without-"))
    kept = []
    for folder in env["PATH"].split(os.pathsep):
        if not (Path(folder) / program).exists():
            kept.append(folder)
            continue
        for entry in Path(folder).iterdir():
            if entry.name != program and not (shadow / entry.name).exists():
                (shadow / entry.name).symlink_to(entry)
    return os.pathsep.join([str(shadow), *kept])


# --- every check: passes here, fails there ----------------------------------------------------------


def _python_too_old(w: Workspace) -> doctor.Context:
    return doctor.Context(w.root, env=w.env, python_version=(3, 9, 18))


BREAKS: dict[str, tuple[Callable[[Workspace], object], str, str]] = {
    # check id: (how to break it, status, a piece of the fix)
    "tools.python": (_python_too_old, "error", "install Python 3.11+"),
    "tools.stripe": (
        lambda w: w.path("aira-ui/.env.local").write_text(
            re.sub(
                r"STRIPE_SECRET_KEY=\S+",
                "STRIPE_SECRET_KEY=sk_live_" + "1" * 24,
                w.path("aira-ui/.env.local").read_text(),
            )
        ),
        "error",
        "use a test-mode key (sk_test_...)",
    ),
    "tools.node": (lambda w: w.env.update(PATH=_without(w.env, "node")), "error", "install Node.js 20"),
    "tools.npm": (lambda w: w.env.update(PATH=_without(w.env, "npm")), "error", "install it with Node.js"),
    "tools.deps": (
        lambda w: w.path("kb-updater/requirements.txt").write_text("no-such-package-xyz==1.0\n"),
        "error",
        "pip install -r kb-updater/requirements.txt",
    ),
    "tools.docker-client": (lambda w: w.env.update(PATH=_without(w.env, "docker")), "warning", "install Docker"),
    "tools.docker-engine": (
        lambda w: w.env.update(DOCKER_HOST="unix:///nonexistent/docker.sock"),
        "warning",
        "start it",
    ),
    "tools.supabase-cli": (lambda w: w.env.update(PATH=_without(w.env, "supabase")), "error", "npm i -D -E supabase"),
    "tools.ngrok-agent": (lambda w: w.env.update(PATH=_without(w.env, "ngrok")), "warning", "ngrok.com/download"),
    "tools.ngrok-token": (lambda w: w.env.pop("NGROK_AUTHTOKEN"), "warning", "ngrok config add-authtoken"),
    "tools.redis": (
        lambda w: w.env.update(PATH=_without(w.env, "redis-server")),
        "error",
        "apt-get install redis-server",
    ),
    "workspace.config": (lambda w: w.path("airadev.toml").write_text("[services.a\n"), "error", "fix the syntax"),
    "workspace.state-ignored": (
        lambda w: w.path(".gitignore").write_text(".env\n.env.local\n"),
        "warning",
        "add .airadev/ to .gitignore",
    ),
    "workspace.folders": (lambda w: shutil.rmtree(w.path("kb-updater")), "error", "clone the kb-updater repo"),
    "workspace.supabase-config": (  # (with runtime = "supabase", airadev.toml itself would not load)
        lambda w: (_postgres(w), w.path("aira-ui/supabase/config.toml").write_text("[api\n")),
        "error",
        "fix that line",
    ),
    "workspace.migrations": (
        lambda w: w.path("aira-ui/supabase/migrations/add_index.sql").write_text("select 1;"),
        "error",
        "rename them <timestamp>_name.sql",
    ),
    "env.present": (lambda w: w.path("voice-agent/.env").unlink(), "error", "airadev doctor --fix creates it"),
    "env.required": (
        lambda w: w.set_var("voice-agent/.env", "OPENAI_API_KEY", "your-openai-key"),
        "error",
        "fill them in",
    ),
    "env.format": (
        lambda w: w.set_var("voice-agent/.env", "TWILIO_ACCOUNT_SID", "AC123"),
        "error",
        "copy the values again",
    ),
    "env.consistent": (
        lambda w: w.set_var("kb-updater/.env", "SUPABASE_URL", "http://127.0.0.1:9999"),
        "error",
        "make them the same",
    ),
    "env.stack-agrees": (
        lambda w: w.set_var("voice-agent/.env", "PORT", "9"),
        "error",
        "make the env files and airadev.toml agree",
    ),
    "secrets.live": (
        lambda w: w.set_var("aira-ui/.env.local", "STRIPE_SECRET_KEY", "sk_live_abcdefghijklmnop"),
        "error",
        "use test keys",
    ),
    "secrets.public": (
        lambda w: w.set_var("aira-ui/.env.local", "NEXT_PUBLIC_SUPABASE_ANON_KEY", SERVICE),
        "error",
        "put the anon (publishable) key there",
    ),
    "secrets.git": (lambda w: w.path(".gitignore").write_text(".airadev/\n"), "error", "add /voice-agent/.env"),
    "secrets.modes": (lambda w: os.chmod(w.path("voice-agent/.env"), 0o644), "warning", "chmod 600"),
    "secrets.shell": (lambda w: w.env.update(NEXT_PUBLIC_APP_URL="https://prod.example"), "warning", "unset them"),
    "secrets.weak": (
        lambda w: w.set_var("kb-updater/.env", "SUPABASE_URL", "postgresql://app:changethis@127.0.0.1:5432/app"),
        "warning",
        "long random values",
    ),
    "runtime.ports": (lambda w: _hold(w, "voice-agent"), "error", "kill"),
    "runtime.leftovers": (lambda w: _leftover(w), "warning", "`airadev down` ends them"),
    "runtime.bind": (lambda w: _kb_on_loopback(w), "error", "add --host 0.0.0.0"),
    "runtime.tunnel-journal": (lambda w: _pending_journal(w), "warning", "airadev tunnel --forget"),
    "workspace.commands": (
        lambda w: w.path("airadev.toml").write_text(
            w.path("airadev.toml").read_text().replace("uvicorn updater:app", "uvicorn nowhere:app")
        ),
        "error",
        "fix services.kb-updater.command",
    ),
    "runtime.database": (
        lambda w: (_postgres(w), w.path(".airadev/postgres/db/data").mkdir(parents=True)),
        "error",
        "airadev down --volumes",
    ),
    "runtime.images": (
        lambda w: w.path("airadev.toml").write_text(
            w.path("airadev.toml").read_text().replace("[services.redis]\n", '[services.redis]\nruntime = "docker"\n')
        ),
        "warning",
        "AIRADEV_REDIS_IMAGE",
    ),
    "live.twilio": (lambda w: setattr(w.twilio, "auth_token", "not-the-token"), "error", "TWILIO_AUTH_TOKEN"),
    "live.supabase": (
        lambda w: w.set_var("voice-agent/.env", "SUPABASE_KEY", jwt("service_role") + "x"),
        "error",
        "supabase status -o env",
    ),
    "live.voice-url": (
        lambda w: w.set_var("aira-ui/.env.local", "VOICE_AGENT_SERVICE_URL", f"http://127.0.0.1:{free_port()}"),
        "warning",
        "airadev tunnel",
    ),
}

HELD: list[socket.socket] = []
SPAWNED: list[subprocess.Popen[bytes]] = []


def _hold(w: Workspace, name: str) -> None:
    from airadev.config import load

    port = load(w.root).get(name).port
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    HELD.append(sock)


def _leftover(w: Workspace) -> None:
    env = {**os.environ, reaper.MARKER_VAR: workspace_id(w.root) + ".deadbeef0000", reaper.SERVICE_VAR: "x"}
    SPAWNED.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env))
    import time

    time.sleep(0.2)


def _postgres(w: Workspace) -> None:
    """The database as the plain PostgreSQL runtime (the demo's own choice)."""
    text = w.path("airadev.toml").read_text().replace('runtime = "supabase"', 'runtime = "postgres"')
    w.path("airadev.toml").write_text(text)


def _pending_journal(w: Workspace) -> None:
    """What a tunnel could not put back: a Twilio step whose server went away."""
    from airadev.rewiring import Journal
    from airadev.state import Paths

    journal = Journal.new(Paths(w.root), "https://gone.ngrok.app", None, False)
    step = journal.add(
        {
            "kind": "twilio",
            "account_sid": "AC" + "0" * 32,
            "number_sid": "PN" + "0" * 32,
            "phone_number": "+15551230000",
            "api_base": "http://127.0.0.1:9",
            "before": {"voice_url": "https://old/voice"},
            "after": {"voice_url": "https://gone.ngrok.app/webhooks/twilio/call"},
        }
    )
    journal.mark(step, "applied")


def _kb_on_loopback(w: Workspace) -> None:
    text = w.path("airadev.toml").read_text().replace("--host 0.0.0.0", "--host 127.0.0.1")
    w.path("airadev.toml").write_text(text)


@pytest.fixture(autouse=True)
def _release() -> Iterator[None]:
    yield
    while HELD:
        HELD.pop().close()
    while SPAWNED:
        proc = SPAWNED.pop()
        proc.kill()
        proc.wait()


def test_the_good_workspace_passes_every_check(ws: Workspace) -> None:
    results = ws.run()
    problems = [(r.id, r.status, r.message) for r in results if r.status not in (doctor.Status.OK,)]
    # What only a running stack can tell (tests/integration/test_kb_trigger.py and
    # tests/e2e/test_demo_stripe.py run them on one) says so, and nothing else is not OK.
    assert problems == [
        ("live.kb-deliveries", doctor.Status.SKIPPED, "no local database is running"),
        ("live.stripe", doctor.Status.SKIPPED, "the Stripe listener is not running"),
    ], problems
    assert {r.id.split(":")[0] for r in results} == set(doctor.REGISTRY), "every check ran"


@pytest.mark.parametrize("check_id", sorted(BREAKS))
def test_each_check_fails_with_its_fix(ws: Workspace, check_id: str) -> None:
    ran = ws.run(check_id)
    before = [r for r in ran if r.id.split(":")[0] == check_id]
    assert before and all(r.status is doctor.Status.OK for r in before), [(r.id, r.status, r.message) for r in ran]
    breaker, status, fix = BREAKS[check_id]
    made = breaker(ws)
    if isinstance(made, doctor.Context):
        results = doctor.run(doctor.select([check_id], False), made)
    else:
        results = ws.run(check_id)
    failing = [r for r in results if r.id.split(":")[0] == check_id and str(r.status) == status]
    assert failing, [(r.id, r.status, r.message) for r in results]
    assert any(fix in r.fix for r in failing), [r.fix for r in failing]


def test_the_engine_of_the_current_docker_context_is_used_without_docker_host(ws: Workspace, tmp_path: Path) -> None:
    """Rootless Docker and Docker Desktop name their engine in a `docker context`, not in
    DOCKER_HOST: doctor (and `up`, through the same engine_host) find it there."""
    import hashlib

    config = tmp_path / "docker-config"
    meta = config / "contexts" / "meta" / hashlib.sha256(b"rootless").hexdigest()
    meta.mkdir(parents=True)
    (config / "config.json").write_text(json.dumps({"currentContext": "rootless"}))
    (meta / "meta.json").write_text(json.dumps({"Name": "rootless", "Endpoints": {"docker": {"Host": ws.engine.host}}}))
    ws.env.pop("DOCKER_HOST")
    ws.env["DOCKER_CONFIG"] = str(config)
    [result] = [r for r in ws.run("tools.docker-engine") if r.id == "tools.docker-engine"]
    assert result.status is doctor.Status.OK and ws.engine.host in result.message, result
    (config / "config.json").write_text(json.dumps({"currentContext": "default"}))
    [result] = [r for r in ws.run("tools.docker-engine") if r.id == "tools.docker-engine"]
    assert "unix:///var/run/docker.sock" in result.message, result


def test_a_failed_prerequisite_skips_its_dependents(ws: Workspace) -> None:
    ws.path("airadev.toml").write_text("[services.a\n")
    results = {r.id: r for r in ws.run("workspace", "env.present")}
    assert results["workspace.config"].status is doctor.Status.ERROR
    assert results["workspace.folders"].status is doctor.Status.SKIPPED
    assert "needs workspace.config" in results["env.present"].message


def test_a_check_that_overruns_is_reported_not_waited_for(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    release, returned = threading.Event(), threading.Event()

    def hangs(ctx: doctor.Context) -> doctor.Result:
        release.wait(120)  # until the test lets it go: doctor must not wait for it
        returned.set()
        return doctor.ok("tools.hang", "never")

    monkeypatch.setitem(doctor.REGISTRY, "tools.hang", doctor.Check("tools.hang", "tools", "hangs", hangs, timeout=0.5))
    try:
        results = ws.run("tools.hang", "tools.python")
        assert not returned.is_set(), "doctor waited for the check to end"
    finally:
        release.set()
    hang = next(r for r in results if r.id == "tools.hang")
    assert hang.status is doctor.Status.ERROR and "time limit (0.5s)" in hang.message
    assert next(r for r in results if r.id == "tools.python").status is doctor.Status.OK


# --- the command: output, JSON, exit codes, secrets, --fix -------------------------------------------


def test_json_exit_codes_and_strict(ws: Workspace) -> None:
    good = ws.cli("--offline", "--json")
    assert good.returncode == 0, good.stdout
    data = json.loads(good.stdout)
    assert data["schema"] == 1 and data["exit_code"] == 0 and data["offline"] is True
    assert set(data["summary"]) == {"ok", "warning", "error", "skipped"}
    for item in data["checks"]:
        assert set(item) == {"id", "group", "status", "message", "fix", "duration"}
        assert item["group"] in doctor.GROUPS and item["status"] in ("ok", "warning", "error", "skipped")
        assert isinstance(item["duration"], float)
    assert not [i for i in data["checks"] if i["group"] == "live"], "--offline skips the live checks"
    os.chmod(ws.path("voice-agent/.env"), 0o644)
    warned = ws.cli("--offline")
    assert warned.returncode == 0 and "1 warning" in warned.stdout
    assert ws.cli("--offline", "--strict").returncode == 1
    ws.set_var("voice-agent/.env", "ENVIRONMENT", "production")
    failed = ws.cli("--offline")
    assert failed.returncode == 1 and "ENVIRONMENT=production" in failed.stdout
    assert ws.cli("no-such-check").returncode == 2
    assert ws.cli("--dry-run").returncode == 2
    listing = ws.cli("--list-checks")
    assert listing.returncode == 0 and "secrets.public" in listing.stdout and "(live)" in listing.stdout


def test_output_lines_and_verbose(ws: Workspace) -> None:
    os.chmod(ws.path("voice-agent/.env"), 0o644)
    out = ws.cli("--offline").stdout
    assert "  ! voice-agent/.env is mode 0644: other users can read it" in out
    assert "      fix: chmod 600 voice-agent/.env" in out
    assert "fix:" not in out.split("! voice-agent/.env is mode")[0], "fixes only for problems"
    ws.env["PATH"] = _without(ws.env, "node")  # npm then has nothing to run on
    quiet, verbose = ws.cli("--offline").stdout, ws.cli("--offline", "-v").stdout
    assert "tools.npm: skipped (needs tools.node, which failed)" in verbose
    assert "skipped (" not in quiet and "1 skipped" in quiet
    assert " ms)" in verbose and " ms)" not in quiet


def test_no_secret_value_is_ever_printed(ws: Workspace) -> None:
    from airadev.integrations.envfile import is_secret, read

    secrets = {}
    for relative in ("aira-ui/.env.local", "voice-agent/.env", "kb-updater/.env"):
        for name, value in read(ws.path(relative)).items():
            if is_secret(name) and len(value) >= 8:
                secrets[name] = value
    # Break things so that the messages are about exactly these variables.
    ws.set_var("aira-ui/.env.local", "NEXT_PUBLIC_SUPABASE_ANON_KEY", secrets["SUPABASE_SERVICE_ROLE_KEY"])
    ws.set_var("aira-ui/.env.local", "STRIPE_SECRET_KEY", "sk_live_" + "9" * 24)
    ws.set_var("kb-updater/.env", "SUPABASE_KEY", "a-different-secret-value-123")
    secrets["STRIPE_LIVE"] = "sk_live_" + "9" * 24
    secrets["OTHER"] = "a-different-secret-value-123"
    outputs = [ws.cli(*args) for args in ([], ["-v"], ["--json"], ["--fix", "--dry-run"], ["--strict", "-v"])]
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert "would be sent to every browser" in text
    for name, value in secrets.items():
        for piece in (value, value[:12], value[-12:]):
            assert piece not in text, f"a part of {name} was printed"


def test_fix_then_check_again_and_fix_twice_changes_nothing(ws: Workspace) -> None:
    ws.path("voice-agent/.env").unlink()
    os.chmod(ws.path("kb-updater/.env"), 0o644)
    ws.path(".gitignore").write_text("node_modules/\n")
    _leftover(ws)
    before = ws.cli("--offline")
    assert before.returncode == 1
    dry = ws.cli("--offline", "--fix", "--dry-run")
    assert "would fix: create voice-agent/.env from env-templates/voice-agent.env" in dry.stdout
    assert not ws.path("voice-agent/.env").exists(), "a dry run changes nothing"
    fixed = ws.cli("--offline", "--fix")
    assert "fix: chmod 600 kb-updater/.env" in fixed.stdout
    assert "fix: add .airadev/ to .gitignore" in fixed.stdout
    assert "ended 1 processes a dead run left" in fixed.stdout
    created = ws.path("voice-agent/.env")
    assert created.exists() and oct(created.stat().st_mode & 0o777) == "0o600"
    assert oct(ws.path("kb-updater/.env").stat().st_mode & 0o777) == "0o600"
    assert ".airadev/" in ws.path(".gitignore").read_text()
    after = {r["id"]: r["status"] for r in json.loads(ws.cli("--offline", "--json").stdout)["checks"]}
    assert after["secrets.modes:kb-updater/.env"] == "ok" and after["runtime.leftovers"] == "ok"
    assert after["env.present:voice-agent/.env"] == "ok"
    assert after["env.required:voice-agent/.env"] == "error", "the created file still needs its values"
    snapshot = {
        p: p.read_bytes()
        for p in ws.root.rglob("*")
        if p.is_file() and ".git" not in p.parts and "node_modules" not in p.parts
    }
    again = ws.cli("--offline", "--fix")
    assert "fix: create" not in again.stdout and "chmod 600" not in again.stdout
    assert snapshot == {p: p.read_bytes() for p in snapshot}, "a second --fix changes nothing"


def test_installs_only_when_asked(ws: Workspace) -> None:
    ws.path("kb-updater/requirements.txt").write_text("no-such-package-xyz==1.0\n")
    out = ws.cli("tools.deps", "--fix").stdout
    assert "not done: installs only with --install" in out
    assert not ws.path("kb-updater/.venv").exists()


# --- what real workspaces do -------------------------------------------------------------------------


def _status(results: list[doctor.Result], prefix: str) -> list[tuple[str, str]]:
    return [(r.id, str(r.status)) for r in results if r.id.startswith(prefix)]


def test_no_secret_reaches_output_through_a_command_line_or_the_environment(ws: Workspace) -> None:
    token = _value(ws.root, "voice-agent/.env", "TWILIO_AUTH_TOKEN")
    _hold_with(
        ws,
        "voice-agent",
        [
            sys.executable,
            "-c",
            "import socket,sys,time; s=socket.socket(); "
            "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(60)",
            "PORT",
            token,
        ],
    )
    secrets = [token, ws.env["NGROK_AUTHTOKEN"]]
    outputs = [
        ws.cli(*args)
        for args in (
            ["--offline"],
            ["--offline", "--json"],
            ["--offline", "-v"],
            ["--offline", "--fix"],
            ["--offline", "--fix", "--json"],
        )
    ]
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert "is held by pid" in text
    for value in secrets:
        for piece in (value, value[:10], value[-10:]):
            assert piece not in text
    json.loads(outputs[-1].stdout)  # --fix --json is still one JSON object


def _hold_with(w: Workspace, name: str, argv: list[str]) -> None:
    from airadev.config import load

    port = load(w.root).get(name).port
    proc = subprocess.Popen([a if a != "PORT" else str(port) for a in argv])
    SPAWNED.append(proc)
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)


def test_fix_json_is_json_and_fixers_are_idempotent(ws: Workspace) -> None:
    os.chmod(ws.path("kb-updater/.env"), 0o644)
    done = ws.cli("--offline", "--fix", "--json")
    data = json.loads(done.stdout)
    assert {"fix": "chmod 600 kb-updater/.env", "outcome": "kb-updater/.env is mode 0600 now"} in data["fixes"]
    from airadev.doctor import Action, fixes

    ctx = doctor.Context(ws.root, env=ws.env)
    ws.path("voice-agent/.env").unlink()
    actions = [
        Action("create-env", "voice-agent/.env", "env-templates/voice-agent.env"),
        Action("chmod", "kb-updater/.env"),
        Action("gitignore", ".gitignore", ".airadev/"),
    ]
    for action in actions:
        fixes.apply(action, ctx)
    snapshot = {
        p: (p.read_bytes(), p.stat().st_mode)
        for p in (ws.path("voice-agent/.env"), ws.path("kb-updater/.env"), ws.path(".gitignore"))
    }
    outcomes = [fixes.apply(action, ctx) for action in actions]
    assert snapshot == {p: (p.read_bytes(), p.stat().st_mode) for p in snapshot}, "applied twice, nothing changes"
    assert "exists already" in outcomes[0] and "already ignores" in outcomes[2]


def test_fix_never_creates_a_missing_service_folder(ws: Workspace) -> None:
    shutil.rmtree(ws.path("kb-updater"))
    out = ws.cli("--offline", "--fix")
    assert not ws.path("kb-updater").exists()
    assert out.returncode == 1 and "clone the kb-updater repo" in out.stdout


def test_offline_skips_named_live_checks_and_named_checks_bring_their_prerequisites(ws: Workspace) -> None:
    data = json.loads(ws.cli("--offline", "--json", "live").stdout)
    live = [c for c in data["checks"] if c["group"] == "live"]
    assert live and all(c["status"] == "skipped" and c["message"] == "--offline" for c in live)
    assert not ws.twilio.requests, "offline means offline"
    ids = {c["id"].split(":")[0] for c in json.loads(ws.cli("--json", "live.supabase").stdout)["checks"]}
    assert {"live.supabase", "tools.supabase-cli"} <= ids


def test_placeholders_behind_real_prefixes_and_swapped_supabase_keys(ws: Workspace) -> None:
    ws.set_var("aira-ui/.env.local", "STRIPE_SECRET_KEY", "sk_test_xxxxxxxxxxxx")
    ws.set_var("voice-agent/.env", "OPENAI_API_KEY", "sk-proj-...")
    ws.set_var("voice-agent/.env", "SUPABASE_KEY", ANON)
    results = ws.run("env.required", "env.format")
    required = {r.id: r for r in results if r.id.startswith("env.required")}
    assert "STRIPE_SECRET_KEY" in required["env.required:aira-ui/.env.local"].message
    assert "OPENAI_API_KEY" in required["env.required:voice-agent/.env"].message
    fmt = next(r for r in results if r.id == "env.format:voice-agent/.env")
    assert fmt.status is doctor.Status.ERROR and "it is the anon key" in fmt.message


def test_consistency_compares_like_with_like(ws: Workspace) -> None:
    ws.set_var("voice-agent/.env", "SUPABASE_KEY", "sb_secret_" + "a" * 30)  # the new key kind: not comparable
    ws.set_var("kb-updater/.env", "SUPABASE_URL", "http://localhost:54321")  # the same place
    result = ws.run("env.consistent")
    assert [r.status for r in result if r.id == "env.consistent"] == [doctor.Status.OK], result


def test_tracked_env_file_and_git_refusing(ws: Workspace) -> None:
    _git(ws.root, "add", "-f", "voice-agent/.env")
    results = {r.id: r for r in ws.run("secrets.git")}
    assert "is tracked by git" in results["secrets.git:voice-agent/.env"].message
    assert "rotate every secret" in results["secrets.git:voice-agent/.env"].fix
    _git(ws.root, "reset", "-q", "voice-agent/.env")
    if os.getuid() == 0:
        subprocess.run(["chown", "-R", "1234:1234", str(ws.root)], check=True)
        try:
            results = {r.id: r for r in ws.run("secrets.git")}
            refused = results["secrets.git:voice-agent/.env"]
            assert refused.status is doctor.Status.WARNING and "git refuses to look" in refused.message
            assert "safe.directory" in refused.fix
        finally:
            subprocess.run(["chown", "-R", "0:0", str(ws.root)], check=True)


def test_an_env_file_outside_its_service_folder(ws: Workspace) -> None:
    shared = ws.path("shared")
    shared.mkdir()
    shutil.move(ws.path("voice-agent/.env"), shared / "voice.env")
    text = (
        ws.path("airadev.toml")
        .read_text()
        .replace(
            'cwd = "voice-agent"\ncommand = "python server.py"\nenv_files = [".env"]',
            'cwd = "voice-agent"\ncommand = "python server.py"\nenv_files = ["../shared/voice.env"]',
        )
    )
    ws.path("airadev.toml").write_text(text)
    first = {r.id: r for r in ws.run("secrets.git")}
    assert first["secrets.git:shared/voice.env"].status is doctor.Status.ERROR
    assert "/shared/voice.env" in first["secrets.git:shared/voice.env"].fix
    ws.cli("secrets.git", "--fix")
    again = {r.id: r for r in ws.run("secrets.git")}
    assert again["secrets.git:shared/voice.env"].status is doctor.Status.OK, "the fix converges"


def test_bind_reads_the_env_file_and_python_deps_honour_markers(ws: Workspace) -> None:
    text = ws.path("airadev.toml").read_text().replace("uvicorn updater:app --host 0.0.0.0", "python updater.py --x")
    ws.path("airadev.toml").write_text(text)
    assert [str(r.status) for r in ws.run("runtime.bind") if r.id == "runtime.bind:kb-updater"] == ["ok"], (
        "HOST=0.0.0.0 in its .env"
    )
    ws.path("kb-updater/requirements.txt").write_text('fastapi\npywin32==306; sys_platform == "win32"\n-r extra.txt\n')
    ws.path("kb-updater/extra.txt").write_text("uvicorn>=0.1\n")
    assert _status(ws.run("tools.deps"), "tools.deps:kb-updater") == [("tools.deps:kb-updater", "ok")]
    ws.path("kb-updater/extra.txt").write_text("uvicorn<0.1\n")
    wrong = next(r for r in ws.run("tools.deps") if r.id == "tools.deps:kb-updater")
    assert wrong.status is doctor.Status.ERROR and "wants <0.1" in wrong.message


def test_a_missing_explicit_venv_and_a_stale_node_lock(ws: Workspace) -> None:
    head, kb = ws.path("airadev.toml").read_text().split("[services.kb-updater]", 1)
    kb = re.sub(r"^venv = .*$", 'venv = "../venvs/kb"', kb, count=1, flags=re.MULTILINE)
    ws.path("airadev.toml").write_text(head + "[services.kb-updater]" + kb)
    kb = next(r for r in ws.run("tools.deps") if r.id == "tools.deps:kb-updater")
    assert kb.status is doctor.Status.ERROR and "is not a virtualenv" in kb.message
    lock = json.loads(ws.path("aira-ui/package-lock.json").read_text())
    lock["packages"]["node_modules/react"]["version"] = "0.0.1"
    ws.path("aira-ui/package-lock.json").write_text(json.dumps(lock))
    ui = next(r for r in ws.run("tools.deps") if r.id == "tools.deps:aira-ui")
    assert ui.status is doctor.Status.ERROR and "out of step with package-lock.json (react)" in ui.message
    assert ui.fix == "cd aira-ui && npm ci"


def test_a_number_routed_to_an_app_is_a_warning(ws: Workspace) -> None:
    ws.twilio.number(NUMBER)["voice_application_sid"] = "AP" + "2" * 32
    result = next(r for r in ws.run("live.twilio") if r.id == "live.twilio")
    assert result.status is doctor.Status.WARNING and "TwiML app" in result.message
