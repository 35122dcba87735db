"""compose/docker-compose.yml is `airadev export compose` of the demo stack, and says what the
docker runtime does with the same airadev.toml."""

from __future__ import annotations

import signal
from pathlib import Path

import yaml

from airadev import config as config_module
from airadev.operations.export import compose

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose" / "docker-compose.yml"
PIP = ["PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_TRUSTED_HOST"]


def demo():
    return config_module.load(REPO / "examples" / "demo")


def test_the_committed_compose_file_is_the_current_export() -> None:
    assert COMPOSE.read_text() == compose(demo(), COMPOSE.parent), (
        "compose/docker-compose.yml is stale: run `airadev --workspace examples/demo export compose "
        "-o compose/docker-compose.yml`"
    )


# What a person would write by hand for the demo's three containers, read off
# examples/demo/airadev.toml (not produced by the code under test): the images overridable as
# the tests need, the Python services built from the guide's Dockerfile (its base image from
# the environment, and pip's settings too), ports on loopback only, Redis's healthcheck, the
# voice agent waiting for it and finding Redis by name (its .env says 127.0.0.1), Supabase's
# API on this machine as containers reach it.
EXPECTED_DEMO = """
services:
  redis:
    image: ${AIRADEV_REDIS_IMAGE:-redis:7-alpine}
    command: [redis-server, --port, "6379", --protected-mode, "no", --save, "", --appendonly, "no"]
    ports: ["127.0.0.1:6379:6379"]
    healthcheck: {test: [CMD-SHELL, redis-cli -p 6379 ping], interval: 1s, timeout: 3s, retries: 30}
    extra_hosts: ["host.docker.internal:host-gateway"]
    stop_signal: SIGTERM
    stop_grace_period: 10s
  voice-agent:
    image: ${AIRADEV_VOICE_AGENT_IMAGE:-aira/voice-agent:dev}
    build: {context: ../examples/demo/voice-agent, dockerfile: ../Dockerfile.python, network: host,
            args: [PYTHON_BASE, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, PIP_TRUSTED_HOST]}
    command: [python, server.py]
    ports: ["127.0.0.1:8000:8000"]
    env_file: [../examples/demo/voice-agent/.env]
    environment: {REDIS_HOST: redis, SUPABASE_URL: "http://host.docker.internal:54321"}
    volumes: ["../examples/demo/voice-agent:/app:ro"]
    depends_on: {redis: {condition: service_healthy}}
    extra_hosts: ["host.docker.internal:host-gateway"]
    stop_signal: SIGTERM
    stop_grace_period: 10s
  kb-updater:
    image: ${AIRADEV_KB_UPDATER_IMAGE:-aira/kb-updater:dev}
    build: {context: ../examples/demo/kb-updater, dockerfile: ../Dockerfile.python, network: host,
            args: [PYTHON_BASE, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, PIP_TRUSTED_HOST]}
    command: [uvicorn, "updater:app", --host, 0.0.0.0, --port, "8080"]
    ports: ["127.0.0.1:8080:8080"]
    env_file: [../examples/demo/kb-updater/.env]
    environment: {SUPABASE_URL: "http://host.docker.internal:54321"}
    volumes: ["../examples/demo/kb-updater:/app:ro"]
    extra_hosts: ["host.docker.internal:host-gateway"]
    stop_signal: SIGTERM
    stop_grace_period: 10s
"""


def test_the_demo_exports_what_a_person_would_write() -> None:
    assert yaml.safe_load(compose(demo(), COMPOSE.parent)) == yaml.safe_load(EXPECTED_DEMO)


def test_compose_and_airadev_toml_agree_service_by_service() -> None:
    config = demo()
    data = yaml.safe_load(COMPOSE.read_text())
    containers = {s.name: s for s in config.services if s.docker is not None}
    assert set(data["services"]) == set(containers) == {"redis", "voice-agent", "kb-updater"}
    for name, entry in data["services"].items():
        service = containers[name]
        spec = service.docker
        assert entry["image"] == "${%s:-%s}" % (spec.image_variable(name), spec.image)
        assert entry["ports"] == [f"127.0.0.1:{service.port}:{spec.port or service.port}"]
        assert entry.get("command", []) == list(spec.command)
        assert [(COMPOSE.parent / p).resolve() for p in entry.get("env_file", [])] == list(service.env_files)
        assert entry["stop_signal"] == signal.Signals(service.stop_signal).name
        # `healthy` only where Compose can know it: a docker.healthcheck (the same command).
        deps = {d.name: d.condition for d in service.depends_on if d.name in containers}
        expected = {
            k: (
                "service_healthy"
                if str(v) == "healthy" and containers[k].docker.healthcheck
                else {
                    "started": "service_started",
                    "healthy": "service_started",
                    "completed": "service_completed_successfully",
                }[str(v)]
            )
            for k, v in deps.items()
        }
        assert {k: v["condition"] for k, v in entry.get("depends_on", {}).items()} == expected
        if spec.healthcheck:
            assert entry["healthcheck"]["test"] == ["CMD-SHELL", spec.healthcheck]
        else:
            assert "healthcheck" not in entry
    assert data["services"]["voice-agent"]["depends_on"] == {"redis": {"condition": "service_healthy"}}


def test_export_quotes_what_compose_would_interpolate(tmp_path: Path) -> None:
    (tmp_path / "airadev.toml").write_text(
        """
[services.web]
command = "x"
port = 8000
volumes_note = 1
""".replace("volumes_note = 1\n", "")
        + """
[services.web.docker]
image = "web:1"
command = ["sh", "-c", "echo $HOME"]
volumes = ["data:/data", "./static:/srv:ro"]
env = { PRICE = "5$" }
"""
    )
    text = compose(config_module.load(tmp_path), tmp_path / "compose")
    data = yaml.safe_load(text)["services"]["web"]
    assert data["command"] == ["sh", "-c", "echo $$HOME"] and data["environment"] == {"PRICE": "5$$"}
    assert data["volumes"] == ["data:/data", "../static:/srv:ro"]
    assert yaml.safe_load(text)["volumes"] == {"data": {}}


def test_a_build_is_exported_as_compose_reads_it(tmp_path: Path) -> None:
    (tmp_path / "airadev.toml").write_text(
        """
[services.voice]
cwd = "voice-agent"
command = "x"
[services.voice.docker]
build = { dockerfile = "../compose/Dockerfile.python", target = "dev", args = { BASE = "python:3.11-slim", PRICE = "5$" } }
"""
    )
    data = yaml.safe_load(compose(config_module.load(tmp_path), tmp_path / "compose"))["services"]["voice"]
    assert data["build"] == {
        "context": "../voice-agent",  # from the Compose file's folder
        "dockerfile": "../compose/Dockerfile.python",  # from the context
        "target": "dev",
        # Values as written ($ doubled: not interpolated), then the pip settings airadev passes
        # to every build, by name (their values from Compose's environment).
        "args": ["BASE=python:3.11-slim", "PRICE=5$$", *PIP],
    }
    project = tmp_path.name.lower().replace("_", "-")  # as Compose names a project: [a-z0-9-]
    assert data["image"] == f"${{AIRADEV_VOICE_IMAGE:-airadev/{project}-voice:dev}}"


def test_env_files_in_a_build_context_are_found_unless_dockerignore_leaves_them_out(tmp_path: Path) -> None:
    from airadev.integrations.docker import baked_env_files

    app = tmp_path / "app"
    app.mkdir()
    (app / ".env").write_text("OPENAI_API_KEY=sk-test\n")
    (tmp_path / "shared.env").write_text("X=1\n")
    (tmp_path / "airadev.toml").write_text(
        '[services.voice]\ncwd = "app"\ncommand = "x"\nenv_files = [".env", "../shared.env"]\n'
        '[services.voice.docker]\nbuild = "."\n'
    )
    service = config_module.load(tmp_path).get("voice")
    assert baked_env_files(service) == [".env"]  # ../shared.env is outside the context
    for ignore in (".env\n", "# env\n/.env\n", ".env*\n", "*.env\n.env\n"):
        (app / ".dockerignore").write_text(ignore)
        assert baked_env_files(service) == [], ignore
    (app / ".dockerignore").write_text("__pycache__/\n")
    assert baked_env_files(service) == [".env"]


def test_addresses_the_container_sees_differently_are_exported_and_secrets_never(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / ".env").write_text(
        "REDIS_HOST=localhost\nREDIS_PORT=6379\n"
        "API_URL=http://127.0.0.1:9000/v1\n"
        "PLAIN=127.0.0.1 is loopback\n"
        "DATABASE_URL=postgresql://app:pa55/word@127.0.0.1:5432/app\n"
        "HOOK_URL=http://localhost:8080/hook?access_token=t0ken-value\n"
        "OPENAI_API_KEY=sk-test-0123456789\n"
        "ECHO_URL=http://localhost:7000/echo/sk-test-0123456789\n"
    )
    (tmp_path / "airadev.toml").write_text(
        """
[services.redis]
command = "redis-server"
port = 6379
docker = { image = "redis:7-alpine", port = 6379 }
[services.app]
cwd = "app"
command = "x"
env_files = [".env"]
docker = { image = "app:dev" }
[services.gone]
cwd = "app"
command = "x"
env_files = ["missing.env"]
docker = { image = "gone:dev" }
"""
    )
    text = compose(config_module.load(tmp_path), tmp_path)
    app = yaml.safe_load(text)["services"]["app"]
    # Redis is a service of the file, found by its name; the rest of this machine as
    # host.docker.internal; what does not change is left to the env file.
    assert app["environment"] == {"REDIS_HOST": "redis", "API_URL": "http://host.docker.internal:9000/v1"}
    for secret in ("pa55", "t0ken-value", "sk-test-0123456789"):
        assert secret not in text
    for name in ("DATABASE_URL", "HOOK_URL", "ECHO_URL"):
        assert f"# {name} (a secret of its env file) points at this machine's loopback" in text
    assert "#" in text.split("  gone:")[1] and "missing.env not found" in text.split("  gone:")[1]
    assert "environment" not in yaml.safe_load(text)["services"]["gone"]
