"""`airadev doctor` on projects that are not AiRa's: the app's own .env.example as the reference,
dependencies by the package manager and interpreter `up` will use (pnpm, uv, a global python
that is never installed into), and each command resolving. Real interpreters and files; the
package managers' installs themselves are not run (they would reach a registry)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from airadev import doctor
from airadev.doctor import fixes

REPO = Path(__file__).resolve().parents[2]


def run(root: Path, *checks: str, path: str | None = None) -> dict[str, doctor.Result]:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    ctx = doctor.Context(root, offline=True, env=env)
    return {r.id: r for r in doctor.run(doctor.select(list(checks), True), ctx)}


def project(root: Path, toml: str, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "airadev.toml").write_text(toml)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_app_s_own_example_is_the_reference_and_aira_s_templates_need_saying(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        '[services.voice]\ncommand = "python main.py"\nenv_files = [".env"]\n',
        {
            "main.py": "",
            ".env.example": "OPENAI_API_KEY=\nSECRET_KEY=changethis\nPORT=5050\nLOG_LEVEL=\n",
            ".env": "SECRET_KEY=changethis\nPORT=5050\nLOG_LEVEL=\n",
        },
    )
    result = run(root, "env.required")["env.required:.env"]
    # Missing is an error; an empty non-secret (LOG_LEVEL) is a choice, not a problem.
    assert (result.status, result.message) == (doctor.Status.ERROR, ".env: missing: OPENAI_API_KEY")
    assert result.fix == "set them (they are listed in .env.example)"
    (root / ".env").write_text(f"OPENAI_API_KEY=sk-{'a' * 40}\nSECRET_KEY=changethis\nPORT=5050\n")
    result = run(root, "env.required")["env.required:.env"]
    assert result.status is doctor.Status.ERROR and result.message == ".env: missing: LOG_LEVEL"
    (root / ".env").write_text(f"OPENAI_API_KEY=sk-{'a' * 40}\nSECRET_KEY=changethis\nPORT=5050\nLOG_LEVEL=\n")
    result = run(root, "env.required")["env.required:.env"]
    # A secret still the example's own value: a warning (it works, but is no secret).
    assert (result.status, result.message) == (doctor.Status.WARNING, ".env: still the example's value: SECRET_KEY")
    # Named like AiRa's voice agent, but not said to be: no AiRa checks, and the hint to say it.
    (root / ".env.example").unlink()
    result = run(root, "env.required")["env.required:.env"]
    assert result.status is doctor.Status.SKIPPED
    assert 'if it is AiRa\'s voice-agent, add template = "voice-agent" to [services.voice]' in result.message
    (root / "airadev.toml").write_text(
        '[services.voice]\ntemplate = "voice-agent"\ncommand = "python main.py"\nenv_files = [".env"]\n'
    )
    result = run(root, "env.required")["env.required:.env"]
    assert result.status is doctor.Status.ERROR and "TWILIO_ACCOUNT_SID" in result.message


def test_python_deps_in_a_global_interpreter_get_a_new_virtualenv_never_a_global_install(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        '[services.app]\ncwd = "app"\ncommand = "python main.py"\n',
        {"app/main.py": "", "app/requirements.txt": "no-such-package-xyz\n"},
    )
    # PATH's python is a plain interpreter (no virtualenv): this test's own python's base.
    base = Path(sys.base_prefix) / "bin"
    result = run(root, "tools.deps", path=f"{base}{os.pathsep}/usr/bin:/bin")["tools.deps:app"]
    assert result.status is doctor.Status.ERROR and "lacks no-such-package-xyz" in result.message
    assert result.fix == "python3 -m venv app/.venv && app/.venv/bin/pip install -r app/requirements.txt"
    assert result.action is not None and result.action.kind == "new-venv" and result.action.detail == ""
    # The fix makes the service's own .venv (which `up` then uses) and installs there.
    (root / "app" / "requirements.txt").write_text("# nothing yet\n")
    outcome = fixes.apply(result.action, doctor.Context(root, offline=True))
    assert "installed app/requirements.txt with" in outcome and outcome.endswith("done")
    assert (root / "app" / ".venv" / "bin" / "python").exists()


def test_a_uv_project_is_checked_in_its_venv_and_synced_with_uv(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        '[services.api]\ncwd = "api"\ncommand = "uv run uvicorn app:app"\n',
        {
            "api/app.py": "",
            "api/uv.lock": "version = 1\n",
            "api/pyproject.toml": '[project]\nname = "api"\nversion = "0"\nrequires-python = ">=3.10"\ndependencies = ["fastapi", "no-such-package-xyz>=1"]\n',
        },
    )
    no_uv = f"{Path(sys.base_prefix) / 'bin'}{os.pathsep}/usr/bin:/bin"
    result = run(root, "tools.deps", "workspace.commands", path=no_uv)
    assert result["tools.deps:api"].message == "api: a uv project (uv.lock) without its .venv; uv is not installed"
    assert result["workspace.commands:api"].message == "api: `uv` is not found (PATH (the service has no virtualenv))"
    (root / "api" / ".venv").symlink_to(REPO / ".venv")  # what `uv sync` makes
    result = run(root, "tools.deps")["tools.deps:api"]
    # Its pyproject's dependencies, in its .venv.
    assert result.status is doctor.Status.ERROR and "lacks no-such-package-xyz" in result.message
    assert "uv" in result.fix


def test_node_deps_by_the_lockfile_s_package_manager(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        '[services.web]\ncwd = "web"\ncommand = "pnpm run dev -p 3000"\n',
        {"web/package.json": '{"scripts": {"dev": "next dev"}}', "web/pnpm-lock.yaml": "lockfileVersion: '9.0'\n"},
    )
    without = f"{Path(sys.base_prefix) / 'bin'}{os.pathsep}/usr/bin:/bin"
    result = run(root, "tools.deps", path=without)["tools.deps:web"]
    assert result.message == "web: pnpm is not installed (the project's lockfile is pnpm-lock.yaml)"
    with_pnpm = f"{REPO / '.venv' / 'bin'}{os.pathsep}{without}"
    result = run(root, "tools.deps", path=with_pnpm)["tools.deps:web"]
    assert (result.message, result.fix) == ("web: node_modules is missing", "cd web && pnpm install --frozen-lockfile")
    assert result.action is not None and result.action.kind == "node-install"
    (root / "web" / "node_modules").mkdir()
    (root / "web" / "node_modules" / ".modules.yaml").write_text("")
    os.utime(root / "web" / "node_modules" / ".modules.yaml", (1, 1))  # installed before the lock changed
    result = run(root, "tools.deps", path=with_pnpm)["tools.deps:web"]
    assert result.message == "web: pnpm-lock.yaml changed since node_modules was installed"
    os.utime(root / "web" / "node_modules" / ".modules.yaml")
    assert run(root, "tools.deps", path=with_pnpm)["tools.deps:web"].status is doctor.Status.OK


def test_each_command_resolves_where_up_will_look(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        """
[services.a]
command = "python main.py"
[services.b]
command = "uvicorn app.api:app --port 8001"
venv = "../venv"
[services.c]
cwd = "web"
command = "npm run develop"
[services.d]
command = "no-such-program-xyz --serve"
[services.e]
command = "bash scripts/prestart.sh"
""",
        {"web/package.json": '{"scripts": {"dev": "next dev"}}', "app/__init__.py": ""},
    )
    (tmp_path.parent / "venv").mkdir(exist_ok=True)
    (tmp_path.parent / "venv" / "bin").mkdir(exist_ok=True)
    for name in ("python", "uvicorn"):
        target = tmp_path.parent / "venv" / "bin" / name
        if not target.exists():
            target.symlink_to(REPO / ".venv" / "bin" / name)
    found = {k.split(":")[1]: r for k, r in run(root, "workspace.commands").items() if ":" in k}
    assert found["a"].message == f"a: main.py does not exist in {root}"
    assert found["b"].message == f"b: app.api:app: no module app.api (app/api.py) in {root}"
    assert found["c"].message == "c: package.json has no `develop` script"
    assert found["d"].message == "d: `no-such-program-xyz` is not found (PATH (the service has no virtualenv))"
    assert found["e"].message == f"e: scripts/prestart.sh does not exist in {root}"
    (root / "main.py").write_text("")
    (root / "app" / "api.py").write_text("")
    assert run(root, "workspace.commands")["workspace.commands:a"].status is doctor.Status.OK
    b = run(root, "workspace.commands")["workspace.commands:b"]
    assert b.status is doctor.Status.OK and b.message.startswith("b: uvicorn is ") and "venv/bin/uvicorn" in b.message


def test_the_example_is_checked_against_everything_the_service_gets(tmp_path: Path) -> None:
    """Found by review: Next.js reads .env.local and .env, an env table and the stack's
    DATABASE_URL give variables too; a variable any of them gives is not missing, and a service
    with two env files gets one verdict."""
    root = project(
        tmp_path,
        """
[services.db]
runtime = "postgres"
[services.web]
cwd = "web"
command = "npm run dev"
env_files = [".env.local", ".env"]
load_env_files = false
env = { NEXT_PUBLIC_SITE = "http://127.0.0.1:3000" }
depends_on = { db = "healthy" }
""",
        {
            "web/package.json": '{"scripts": {"dev": "next dev"}}',
            "web/.env.example": "NEXT_PUBLIC_API_URL=\nSTRIPE_SECRET_KEY=\nDATABASE_URL=\nNEXT_PUBLIC_SITE=\nMISSING_ONE=\n",
            "web/.env.local": "NEXT_PUBLIC_API_URL=http://127.0.0.1:8000\n",
            "web/.env": f"STRIPE_SECRET_KEY=sk_test_{'a' * 24}\n",
        },
    )
    results = {k: r for k, r in run(root, "env.required").items() if k.startswith("env.required:")}
    assert [(k, r.message) for k, r in results.items()] == [
        ("env.required:web/.env.local", "web/.env.local: missing: MISSING_ONE")
    ]
