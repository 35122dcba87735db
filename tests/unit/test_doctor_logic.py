"""Doctor's pure parts: running checks (prerequisites, a check that crashes or overruns), the
exit code and JSON, the safe fixes, and the value rules (placeholders, formats, JWT roles).
The checks themselves are exercised on whole workspaces in tests/integration/test_doctor.py."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from airadev import doctor
from airadev.doctor import Action, Check, Context, Result, Status, fixes
from airadev.doctor.templates import FORMATS, is_placeholder, jwt_payload, service_role_problem, template_for
from airadev.errors import UsageError
from airadev.model import Service
from airadev.operations import doctor as op
from airadev.logstore import Redactor


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Check]]:
    """Checks of the test's own, registered for the test only."""
    doctor._load_all()
    added: dict[str, Check] = {}

    def add(check: Check) -> Check:
        monkeypatch.setitem(doctor.REGISTRY, check.id, check)
        added[check.id] = check
        return check

    yield add  # type: ignore[misc]


def make(id: str, outcome, requires: tuple[str, ...] = (), timeout: float = 3.0) -> Check:  # type: ignore[no-untyped-def]
    return Check(id, id.split(".")[0], "a test check", outcome, requires, timeout)


def test_dependents_of_a_failed_or_skipped_check_are_skipped_with_the_reason(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ran: list[str] = []

    def record(result: Result):  # type: ignore[no-untyped-def]
        def run(ctx: Context) -> Result:
            ran.append(result.id)
            return result

        return run

    checks = [
        registry(make("tools.a", record(doctor.error("tools.a", "a is missing", "install a")))),
        registry(make("tools.b", record(doctor.skipped("tools.b", "not here")))),
        registry(make("tools.c", record(doctor.warning("tools.c", "c is old", "update c")))),
        registry(make("env.needs-a", record(doctor.ok("env.needs-a", "fine")), requires=("tools.a",))),
        registry(make("env.needs-b", record(doctor.ok("env.needs-b", "fine")), requires=("tools.b",))),
        registry(make("env.needs-c", record(doctor.ok("env.needs-c", "fine")), requires=("tools.c",))),
    ]
    results = {r.id: r for r in doctor.run(checks, Context(tmp_path))}
    assert results["env.needs-a"].status is Status.SKIPPED
    assert results["env.needs-a"].message == "needs tools.a, which failed"
    assert results["env.needs-b"].message == "tools.b was skipped: not here"
    assert results["env.needs-c"].status is Status.OK, "a warning does not block"
    assert sorted(ran) == ["env.needs-c", "tools.a", "tools.b", "tools.c"]
    # A prerequisite that was not asked for is not waited for.
    alone = doctor.run([checks[3]], Context(tmp_path))
    assert [r.status for r in alone] == [Status.OK]


def test_a_check_that_crashes_or_overruns_is_a_result(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()

    def crash(ctx: Context) -> Result:
        raise KeyError("boom")

    def hang(ctx: Context) -> Result:
        release.wait(10)
        return doctor.ok("tools.hang", "late")

    checks = [
        registry(make("tools.crash", crash)),
        registry(make("tools.hang", hang, timeout=0.2)),
        registry(make("tools.fine", lambda ctx: [doctor.ok("tools.fine:1", "one"), doctor.ok("tools.fine:2", "two")])),
    ]
    try:
        results = {r.id: r for r in doctor.run(checks, Context(tmp_path))}
    finally:
        release.set()
    assert results["tools.crash"].status is Status.ERROR
    assert results["tools.crash"].message == "the check itself failed: KeyError: 'boom'"
    assert results["tools.crash"].fix == "report this (--debug shows the traceback)"
    assert results["tools.hang"].message == "did not finish within its time limit (0.2s)"
    assert results["tools.hang"].duration == 0.2
    assert results["tools.fine:1"].message == "one" and results["tools.fine:2"].message == "two"
    debug = doctor.run([checks[0]], Context(tmp_path, debug=True))
    assert "Traceback" in debug[0].message and "KeyError" in debug[0].message


def test_selecting_checks_by_id_or_prefix_brings_prerequisites() -> None:
    chosen = [c.id for c in doctor.select(["env.required"], offline=True)]
    assert chosen == ["env.required", "workspace.config"]
    every = doctor.select([], offline=False)
    offline = doctor.select([], offline=True)
    assert {c.id for c in every} - {c.id for c in offline} == {c.id for c in every if c.live} != set()
    assert {c.group for c in doctor.select(["secrets"], offline=True)} == {"secrets", "workspace"}
    with pytest.raises(UsageError, match="no check named 'secret.modes'; did you mean 'secrets.modes'"):
        doctor.select(["secret.modes"], offline=True)


def test_exit_code_summary_and_json(tmp_path: Path) -> None:
    results = [
        doctor.ok("a.x", "fine"),
        doctor.warning("a.y", "hmm token-1234567", "fix token-1234567"),
        doctor.skipped("a.z", "no"),
    ]
    assert doctor.exit_code(results) == 0
    assert doctor.exit_code(results, strict=True) == 1
    assert doctor.exit_code([*results, doctor.error("a.e", "bad", "fix")]) == 1
    assert doctor.summary(results) == {"ok": 1, "warning": 1, "error": 0, "skipped": 1}
    data = op.as_json(
        results,
        Context(tmp_path, offline=True),
        True,
        Redactor({"API_TOKEN": "token-1234567"}),
        [("chmod 600 .env", "done with token-1234567")],
    )
    text = json.dumps(data)
    assert "token-1234567" not in text
    assert data["schema"] == 1 and data["exit_code"] == 1 and data["workspace"] is None
    assert data["checks"][1] == {
        "id": "a.y",
        "group": "a",
        "status": "warning",
        "message": "hmm [redacted:API_TOKEN]",
        "fix": "fix [redacted:API_TOKEN]",
        "duration": 0.0,
    }
    assert data["fixes"] == [{"fix": "chmod 600 .env", "outcome": "done with [redacted:API_TOKEN]"}]


# --- fixes --------------------------------------------------------------------------------------------


def test_fixes_are_planned_once_and_carried_out_safely(tmp_path: Path) -> None:
    (tmp_path / "airadev.toml").write_text("")
    (tmp_path / "voice-agent").mkdir()
    env = tmp_path / "voice-agent" / ".env"
    loose = tmp_path / "loose.env"
    loose.write_text("A=1\n")
    loose.chmod(0o644)
    create = Action("create-env", "voice-agent/.env", "env-templates/voice-agent.env")
    actions = [create, Action("chmod", "loose.env"), create, Action("gitignore", ".gitignore", ".airadev/")]
    assert fixes.plan(actions) == [actions[0], actions[1], actions[3]]
    assert create.describe() == "create voice-agent/.env from env-templates/voice-agent.env (mode 0600)"
    ctx = Context(tmp_path)

    assert fixes.apply(create, ctx).startswith("created voice-agent/.env from env-templates/voice-agent.env")
    assert env.stat().st_mode & 0o777 == 0o600 and "TWILIO_AUTH_TOKEN=" in env.read_text()
    env.write_text("MINE=1\n")
    assert fixes.apply(create, ctx) == "voice-agent/.env exists already: left as it is"
    assert env.read_text() == "MINE=1\n"
    missing = Action("create-env", "kb-updater/.env", "env-templates/kb-updater.env")
    assert "its folder kb-updater/ is missing" in fixes.apply(missing, ctx)
    assert not (tmp_path / "kb-updater").exists(), "a service folder is never created"

    assert fixes.apply(Action("chmod", "loose.env"), ctx) == "loose.env is mode 0600 now"
    assert loose.stat().st_mode & 0o777 == 0o600

    assert fixes.apply(actions[3], ctx) == "added .airadev/ to .gitignore"
    assert fixes.apply(actions[3], ctx) == ".gitignore already ignores .airadev/"
    assert (tmp_path / ".gitignore").read_text() == ".airadev/\n"


def test_fix_dry_run_and_installs_only_when_asked(tmp_path: Path) -> None:
    results = [
        doctor.error("tools.deps:ui", "modules missing", "npm ci", Action("npm-ci", "ui", install=True)),
        doctor.warning("secrets.modes:x", "mode", "chmod", Action("chmod", "x")),
        doctor.ok("secrets.modes:y", "fine"),
    ]
    ctx = Context(tmp_path)
    assert op.fix(results, ctx, dry_run=True, install=False, ask=None) == [
        ("run npm ci in ui", "would do (with --install)"),
        ("chmod 600 x", "would do"),
    ]
    asked: list[str] = []
    done = op.fix(results[:1], ctx, dry_run=False, install=False, ask=lambda q: asked.append(q) or False)
    assert done == [("run npm ci in ui", "not done: installs only with --install")]
    assert asked == ["run npm ci in ui?"]


# --- the value rules -------------------------------------------------------------------------------------


def jwt(payload: object) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part(payload)}.c2ln"


@pytest.mark.parametrize(
    ("value", "placeholder"),
    [
        ("xxxx", True),
        ("your-api-key", True),
        ("<token>", True),
        ("changeme", True),
        ("...", True),
        ("TODO", True),
        ("sk_test_xxxxxxxx", True),
        ("sk-proj-...", True),
        ("whsec_", True),
        ("AC", True),
        ("eyJ***", True),
        ("sk_test_51Hx8a", False),
        ("AC0123456789abcdef0123456789abcdef", False),
        ("redis", False),
        ("", False),
        ("prefix-your_key", True),
    ],
)
def test_placeholders(value: str, placeholder: bool) -> None:
    assert is_placeholder(value) is placeholder


def test_jwt_roles_and_service_role_keys() -> None:
    assert jwt_payload(jwt({"role": "anon"})) == {"role": "anon"}
    assert jwt_payload("eyJ.not-base64!.x") is None
    assert jwt_payload(jwt([1, 2])) is None, "a payload that is not an object"
    assert jwt_payload("abc.def.ghi") is None
    assert service_role_problem(jwt({"role": "anon"})) == "the anon key (its JWT role is anon)"
    assert service_role_problem("sb_publishable_abc") == "a publishable key, not a secret one"
    assert service_role_problem(jwt({"role": "service_role"})) is None
    assert service_role_problem("sb_secret_abc") is None


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("hex32", "0123456789abcdef0123456789ABCDEF", "0123"),
        ("twilio-sid", "AC0123456789abcdef0123456789abcdef", "SK0123456789abcdef0123456789abcdef"),
        ("stripe-key", "rk_live_abc", "pk_test_abc"),
        ("url", "http://127.0.0.1:54321", "127.0.0.1:54321"),
        ("url", "https://x.supabase.co", "http://x:99999"),
        ("jwt", "sb_secret_abc", "not-a-jwt"),
        ("port", "6379", "65536"),
        ("host", "redis.internal", "bad host"),
        ("environment", "staging", "prod"),
        ("name", "anything", "  "),
    ],
)
def test_formats(fmt: str, good: str, bad: str) -> None:
    test, _ = FORMATS[fmt]
    assert test(good) and not test(bad)


def test_aira_templates_apply_by_the_config_and_an_app_s_own_example_otherwise(tmp_path: Path) -> None:
    voice = Service(name="agent", aliases=("voice",), command=("x",), cwd=tmp_path, template="voice-agent")
    template = template_for(voice, tmp_path / ".env")
    assert template is not None and template.path.name == "voice-agent.env" and not template.own
    assert template.get("TWILIO_AUTH_TOKEN") is not None and template.get("NOPE") is None
    assert template_for(voice, tmp_path / ".env.local") is None, "the Python services' file is .env"
    # Named like AiRa's, but not said to be: AiRa's template does not apply (a voice app of
    # someone else's has its own variables).
    other = Service(name="voice", command=("x",), cwd=tmp_path)
    assert template_for(other, tmp_path / ".env") is None
    (tmp_path / ".env.example").write_text("OPENAI_API_KEY=\nPORT=5050\n")
    own = template_for(other, tmp_path / ".env")
    assert own is not None and own.own and own.path == tmp_path / ".env.example"
    assert [(v.name, v.visibility) for v in own.vars] == [("OPENAI_API_KEY", "secret"), ("PORT", "server")]
    (tmp_path / ".env.local.example").write_text("A=1\n")  # the file's own example comes first
    local = template_for(other, tmp_path / ".env.local")
    assert local is not None and local.path.name == ".env.local.example"
