"""`airadev init` then `airadev up -d` on projects airadev was not written for, as a new user
runs them: look-alikes (tests/projects) of a single-file FastAPI Twilio voice app and of a
FastAPI + Next.js template (Compose file, uv, pnpm, a prestart task, POSTGRES_DB=app). The only
hand edits are the ones a user makes: the secrets. What the test itself changes is said where
it does it (ports, so that nothing on this machine is in the way; the one image from a registry;
the virtualenv and node_modules a developer would have installed)."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path

from tests.harness import Stack, free_port

PROJECTS = Path(__file__).resolve().parents[1] / "projects"
REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "examples" / "demo" / "aira-ui" / "node_modules"  # next, react: what pnpm install gives


def copy_project(name: str, root: Path) -> None:
    shutil.copytree(PROJECTS / name, root, dirs_exist_ok=True, symlinks=True)


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return answer.status, answer.read().decode()


def test_a_single_file_fastapi_voice_app(stack: Stack) -> None:
    copy_project("voice-single-file", stack.root)
    (stack.root / ".venv").symlink_to(REPO / ".venv")  # `python -m venv .venv && pip install -r ...`
    dry = stack.cli("init", "--dry-run", str(stack.root))
    assert dry.returncode == 0 and not (stack.root / "airadev.toml").exists()
    assert "found app: FastAPI app in main.py (app = FastAPI())" in dry.stderr
    result = stack.cli("init", str(stack.root))
    assert result.returncode == 0, result.stderr
    assert (stack.root / "airadev.toml").read_text() == dry.stdout
    created = stack.root / ".env"
    assert f"created {created} from its template" in result.stdout and created.stat().st_mode & 0o777 == 0o600
    text = dry.stdout
    assert '[services.app]\ncommand = "python main.py"' in text and "port = 5050" in text
    # doctor names exactly what is missing: the secret its .env.example lists.
    doctor = stack.cli("doctor", "--offline", "--json")
    errors = [c for c in json.loads(doctor.stdout)["checks"] if c["status"] == "error"]
    assert [(c["id"], c["message"]) for c in errors] == [("env.required:.env", ".env: empty: OPENAI_API_KEY")]
    # The secret, as its README says; and the port, which main.py reads from PORT (5050 taken
    # here is no failure of airadev's: the test keeps clear of whatever runs on this machine).
    port = free_port()
    created.write_text(f"OPENAI_API_KEY=sk-test-{'x' * 40}\nPORT={port}\n")
    assert stack.cli("init", "--force", str(stack.root)).returncode == 0  # the port, read again from .env
    assert f"port = {port}" in (stack.root / "airadev.toml").read_text()
    doctor = stack.cli("doctor", "--offline")
    assert doctor.returncode == 0, doctor.stdout
    up = stack.up()
    assert up.returncode == 0, up.stderr
    assert stack.service("app")["state"] == "healthy"
    status, body = get(f"http://127.0.0.1:{port}/incoming-call")
    assert status == 200 and "<Connect><Stream" in body
    assert stack.cli("down").returncode == 0


def test_a_fastapi_and_nextjs_template_with_compose_uv_pnpm_and_a_prestart_task(stack: Stack) -> None:
    copy_project("fullstack", stack.root)
    root = stack.root
    ports = {old: free_port() for old in (5432, 8000, 3000, 1080)}
    for path in (root / "docker-compose.yml", root / "docker-compose.override.yml", root / ".env"):
        text = path.read_text()
        for old, new in ports.items():
            text = re.sub(rf"\b{old}\b", str(new), text)
        path.write_text(text)
    # No registry here: the mail catcher's image stood in by a local one serving HTTP.
    replace(
        root / "docker-compose.yml",
        "image: schickling/mailcatcher",
        f"image: airadev-local/python:3.11\n    command: python -m http.server {ports[1080]}",
    )
    (root / "backend" / ".venv").symlink_to(REPO / ".venv")  # `uv sync`
    (root / "frontend" / "node_modules").symlink_to(NODE_MODULES)  # `pnpm install`
    result = stack.cli("init", str(root))
    assert result.returncode == 0, result.stderr
    for line in (
        "found db: compose service db (postgres:17)",
        "found prestart: compose service prestart: `bash scripts/prestart.sh` in backend/",
        "found backend: compose service backend, built from backend/: run as a process",
        "found frontend: compose service frontend, built from frontend/: run as a process",
        "found mailcatcher: compose service mailcatcher: a container",
    ):
        assert line in result.stdout
    assert "playwright" not in result.stdout  # in a profile: Compose does not start it either
    config = (root / "airadev.toml").read_text()
    assert 'database = "app"' in config and f"port = {ports[5432]}" in config
    # pnpm by its lockfile; the port Compose publishes, passed to next dev; the backend's
    # interpreter the .venv that `uv sync` made.
    assert f'command = "pnpm run dev -p {ports[3000]}"' in config
    assert f'command = "uvicorn app.main:app --host 127.0.0.1 --port {ports[8000]}"' in config

    doctor = stack.cli("doctor", "--offline")
    assert doctor.returncode == 0, doctor.stdout  # nothing to edit: its secrets are in its .env
    up = stack.up(timeout=240)
    assert up.returncode == 0, up.stderr + up.stdout
    services = json.loads(stack.cli("status", "--json").stdout)["services"]
    states = {name: s["state"] for name, s in services.items()}
    assert states == {
        "db": "healthy",
        "mailcatcher": "healthy",  # its published port answers
        "prestart": "completed",
        "backend": "healthy",
        "frontend": "healthy",
    }, states
    assert services["db"]["database_url"].endswith(f"@127.0.0.1:{ports[5432]}/app")
    # The prestart task made the tables in the app's database before the backend started, and
    # the backend reaches it with the template's own settings (POSTGRES_SERVER rewritten from
    # Compose's `db` to this machine).
    status, body = get(f"http://127.0.0.1:{ports[8000]}/api/v1/utils/health-check/")
    assert status == 200 and json.loads(body) == {"ok": True, "users": 1}
    status, page = get(f"http://127.0.0.1:{ports[3000]}/")
    assert status == 200 and f"API at http://127.0.0.1:{ports[8000]}" in page.replace("<!-- -->", "")
    assert stack.cli("down").returncode == 0
