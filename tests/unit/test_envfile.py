from __future__ import annotations

from pathlib import Path

from airadev.integrations import envfile
from airadev.model import Service
from airadev.supervisor.environment import service_env


def test_secret_rules() -> None:
    for name in ("TWILIO_AUTH_TOKEN", "OPENAI_API_KEY", "STRIPE_WEBHOOK_SECRET", "DB_PASSWORD", "NGROK_AUTHTOKEN",
                 "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_KEY"):
        assert envfile.is_secret(name), name
    for name in ("TWILIO_ACCOUNT_SID", "PORT", "NEXT_PUBLIC_SUPABASE_ANON_KEY", "REDIS_HOST", "KEYBOARD"):
        assert not envfile.is_secret(name), name
    assert envfile.is_secret("DAILY_ROOM", marked_secret=["DAILY_ROOM"])


def test_read_handles_dotenv_syntax(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text('# c\nexport A=1\nB="two words"\nC=\'x#y\'\nEMPTY=\nNOVALUE\n')
    assert envfile.read(path) == {"A": "1", "B": "two words", "C": "x#y", "EMPTY": ""}


def test_service_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FROM_FILE=1\nSHARED=file\n")
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    service = Service(name="voice", command=("python",), cwd=tmp_path, env_files=(tmp_path / ".env",),
                      env=(("SHARED", "table"),), venv=(venv, tmp_path / "venv"))
    env = service_env(service, "ws.run", colour=True, base={"PATH": "/usr/bin", "AIRADEV_RUN": "stale"})
    assert env["FROM_FILE"] == "1" and env["SHARED"] == "table"
    assert env["PYTHONUNBUFFERED"] == "1" and env["FORCE_COLOR"] == "1"
    assert env["AIRADEV_RUN"] == "ws.run" and env["AIRADEV_SERVICE"] == "voice" and env["AIRADEV_INSTANCE"] == "voice.0"
    assert env["PATH"] == f"{venv}/bin:/usr/bin" and env["VIRTUAL_ENV"] == str(venv)
    ui = Service(name="ui", command=("npm",), cwd=tmp_path, env_files=(tmp_path / ".env",), load_env_files=False)
    env = service_env(ui, "ws.run", colour=False, base={"PATH": "/usr/bin"})
    assert "FROM_FILE" not in env, "a service that reads its own env file does not get it injected"
    assert "FORCE_COLOR" not in env
