from __future__ import annotations

from pathlib import Path

from airadev.integrations import envfile
from airadev.model import Service
from airadev.runtimes.environment import service_env


def test_secret_rules() -> None:
    for name in (
        "TWILIO_AUTH_TOKEN",
        "OPENAI_API_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "DB_PASSWORD",
        "NGROK_AUTHTOKEN",
        "SUPABASE_SERVICE_ROLE_KEY",
        "SUPABASE_KEY",
    ):
        assert envfile.is_secret(name), name
    for name in ("TWILIO_ACCOUNT_SID", "PORT", "NEXT_PUBLIC_SUPABASE_ANON_KEY", "REDIS_HOST", "KEYBOARD"):
        assert not envfile.is_secret(name), name
    assert envfile.is_secret("DAILY_ROOM", marked=["DAILY_ROOM"])


def test_templates_hold_the_guides_checklist_and_mark_secrets() -> None:
    checklist = {
        "aira-ui.env.local": {
            "NEXT_PUBLIC_SUPABASE_URL",
            "NEXT_PUBLIC_SUPABASE_ANON_KEY",
            "NEXT_PUBLIC_APP_URL",
            "SUPABASE_SERVICE_ROLE_KEY",
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "VOICE_AGENT_SERVICE_URL",
            "STRIPE_SECRET_KEY",
            "STRIPE_WEBHOOK_SECRET",
        },
        "voice-agent.env": {
            "SUPABASE_URL",
            "SUPABASE_KEY",
            "DAILY_API_KEY",
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "OPENAI_API_KEY",
            "DEEPGRAM_API_KEY",
            "CARTESIA_API_KEY",
            "PINECONE_API_KEY",
            "PINECONE_INDEX_NAME",
            "REDIS_HOST",
            "REDIS_PORT",
            "HOST",
            "PORT",
            "ENVIRONMENT",
        },
        "kb-updater.env": {
            "SUPABASE_URL",
            "SUPABASE_KEY",
            "PINECONE_API_KEY",
            "PINECONE_INDEX_NAME",
            "PINECONE_CLOUD",
            "PINECONE_REGION",
            "SENTENCE_TRANSFORMER_MODEL",
            "VECTOR_DB_TYPE",
            "HOST",
            "PORT",
            "ENVIRONMENT",
        },
    }
    for name, expected in checklist.items():
        found = envfile.template_vars(envfile.TEMPLATES / name)
        assert {v.name for v in found} == expected, name
        for var in found:
            assert var.visibility in ("public", "server", "secret") and var.format and var.description, var
            assert (var.visibility == "public") == var.name.startswith("NEXT_PUBLIC_"), var
            if var.visibility == "secret":
                assert var.default == "", f"{var.name}: a template holds no credential"
    secrets = envfile.marked_secret()
    assert {"TWILIO_AUTH_TOKEN", "SUPABASE_SERVICE_ROLE_KEY", "STRIPE_WEBHOOK_SECRET", "DAILY_API_KEY"} <= secrets
    assert "TWILIO_ACCOUNT_SID" not in secrets and "NEXT_PUBLIC_SUPABASE_ANON_KEY" not in secrets


def test_read_handles_dotenv_syntax(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("# c\nexport A=1\nB=\"two words\"\nC='x#y'\nEMPTY=\nNOVALUE\n")
    assert envfile.read(path) == {"A": "1", "B": "two words", "C": "x#y", "EMPTY": ""}


VALID = [
    b'A=1\nexport B=\'two words\'\nC="esc\\"aped\\nline"\n# comment\nD= spaced # note\nE\nF=\n',
    b"A=1\r\nB=\"l1\r\nl2\"\r\nC='x'\r\n",  # CRLF, a quoted value across lines
    b"\xef\xbb\xbfA=1\nB=2",  # a byte order mark, no final newline
    b'PEM="-----BEGIN KEY-----\nabc\n-----END KEY-----"\nA=${B}\n',
]


def test_read_agrees_with_python_dotenv_on_valid_files(tmp_path: Path) -> None:
    from dotenv import dotenv_values

    path = tmp_path / ".env"
    for data in VALID:
        path.write_bytes(data)
        expected = {
            k: v for k, v in dotenv_values(path, interpolate=False, encoding="utf-8-sig").items() if v is not None
        }
        assert envfile.read(path) == expected, data


def test_read_names_the_line_of_what_it_cannot_read_and_never_shows_it(tmp_path: Path) -> None:
    import pytest

    from airadev.errors import AiradevError

    path = tmp_path / ".env"
    for data, line in (
        (b"A=1\nTOKEN secret-value\n", 2),
        (b"\xef\xbb\xbfA=1\n\xffB=2", 2),
        (b"A='open\n", 1),
        (b"A=1\nB=x\x00y\n", 2),
    ):
        path.write_bytes(data)
        with pytest.raises(AiradevError) as caught:
            envfile.read(path)
        assert f"{path} line {line}:" in caught.value.message and "secret-value" not in caught.value.message
        assert "A" in envfile.read(path, strict=False) or line == 1


def test_service_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FROM_FILE=1\nSHARED=file\n")
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    service = Service(
        name="voice",
        command=("python",),
        cwd=tmp_path,
        env_files=(tmp_path / ".env",),
        env=(("SHARED", "table"),),
        venv=(venv, tmp_path / "venv"),
    )
    env = service_env(service, "ws.run", colour=True, base={"PATH": "/usr/bin", "AIRADEV_RUN": "stale"})
    assert env["FROM_FILE"] == "1" and env["SHARED"] == "table"
    assert env["PYTHONUNBUFFERED"] == "1" and env["FORCE_COLOR"] == "1"
    assert env["AIRADEV_RUN"] == "ws.run" and env["AIRADEV_SERVICE"] == "voice" and env["AIRADEV_INSTANCE"] == "voice.0"
    assert env["PATH"] == f"{venv}/bin:/usr/bin" and env["VIRTUAL_ENV"] == str(venv)
    ui = Service(name="ui", command=("npm",), cwd=tmp_path, env_files=(tmp_path / ".env",), load_env_files=False)
    env = service_env(ui, "ws.run", colour=False, base={"PATH": "/usr/bin"})
    assert "FROM_FILE" not in env, "a service that reads its own env file does not get it injected"
    assert "FORCE_COLOR" not in env
