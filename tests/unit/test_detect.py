"""`airadev init` reading the disk (airadev.detect): each kind of project it recognises, on small
folders of the same shape as public ones (FastAPI/Flask/Django apps, Next.js and Vite with each
package manager, Compose files, Procfiles, supabase/config.toml). Every config init writes must
load (init checks that itself); here, what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from airadev import config
from airadev.operations.init import init, plan

FASTAPI = "from fastapi import FastAPI\n\napp = FastAPI()\n\n\n@app.get('/health')\ndef health():\n    return {}\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def services(root: Path) -> dict[str, dict[str, object]]:
    found = plan(root).found
    return {f.name: {"cwd": f.folder.relative_to(root).as_posix(), **f.keys} for f in found}


def loaded(root: Path) -> config.Config:
    init(root, force=True)
    return config.load(root)


def test_a_fastapi_module_is_run_by_uvicorn_on_its_port_with_its_health_route(tmp_path: Path) -> None:
    write(tmp_path, {"api/app/__init__.py": "", "api/app/main.py": FASTAPI, "api/.env": "PORT=8123\n"})
    (tmp_path / "api" / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / "api" / ".venv" / "bin" / "python").touch()
    found = services(tmp_path)["api"]
    assert found["command"] == "uvicorn app.main:app --host 127.0.0.1 --port 8123"
    assert (found["port"], found["health"], found["env_files"]) == (8123, {"http": "/health"}, [".env"])
    cfg = loaded(tmp_path)
    assert cfg.get("api").cwd == tmp_path / "api" and cfg.get("api").watch == (tmp_path / "api",)


def test_a_file_that_runs_uvicorn_itself_is_run_as_it_is_on_the_port_its_code_reads(tmp_path: Path) -> None:
    code = (
        "import os\nfrom fastapi import FastAPI\nPORT = int(os.getenv('PORT', 5050))\napp = FastAPI()\n"
        "if __name__ == '__main__':\n    import uvicorn\n    uvicorn.run(app, host='0.0.0.0', port=PORT)\n"
    )
    write(tmp_path, {"main.py": code, ".env.example": "OPENAI_API_KEY=\n"})
    found = plan(tmp_path).found[0]
    assert (found.name, found.keys["command"], found.keys["port"]) == ("app", "python main.py", 5050)
    assert found.keys["health"] == {"tcp": True}  # no health route of its own
    assert "port 5050 from main.py" in found.why
    result = init(tmp_path)
    assert result.env_files == [tmp_path / ".env"]  # from .env.example, the values to fill in
    assert (tmp_path / ".env").read_text() == "OPENAI_API_KEY=\n"
    write(tmp_path, {".env": "PORT=6000\n"})
    assert plan(tmp_path).found[0].keys["port"] == 6000  # what the code will read


def test_the_interpreter_uv_and_the_fastapi_cli(tmp_path: Path) -> None:
    write(tmp_path, {"svc/main.py": FASTAPI, "svc/uv.lock": "version = 1\n", "svc/start.sh": "fastapi dev main.py\n"})
    found = services(tmp_path)["svc"]
    assert found["command"] == "uv run fastapi dev main.py --no-reload --host 127.0.0.1 --port 8000"
    (tmp_path / "svc" / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / "svc" / ".venv" / "bin" / "python").touch()
    assert services(tmp_path)["svc"]["command"] == "fastapi dev main.py --no-reload --host 127.0.0.1 --port 8000"


def test_flask_and_django(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "flaskapp/app.py": "from flask import Flask\napp = Flask(__name__)\n",
            "site/manage.py": "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site.settings')\nfrom django.core.management import execute_from_command_line\n",
        },
    )
    found = services(tmp_path)
    assert found["flaskapp"]["command"] == "flask --app app run --port 5000"
    assert found["site"]["command"] == "python manage.py runserver 127.0.0.1:8000 --noreload"
    assert loaded(tmp_path).names() == ["flaskapp", "site"]


@pytest.mark.parametrize(
    ("lockfile", "command"),
    [
        ("package-lock.json", "npm run dev -- -p 3000"),
        ("pnpm-lock.yaml", "pnpm run dev -p 3000"),
        ("yarn.lock", "yarn run dev -p 3000"),
        ("bun.lock", "bun run dev -p 3000"),
    ],
)
def test_a_next_app_is_run_by_the_package_manager_of_its_lockfile(tmp_path: Path, lockfile: str, command: str) -> None:
    write(
        tmp_path,
        {"web/package.json": '{"scripts": {"dev": "next dev"}}', f"web/{lockfile}": "", "web/.env.local": "A=1\n"},
    )
    found = plan(tmp_path).found[0]
    assert (found.name, found.keys["command"], found.keys["port"]) == ("web", command, 3000)
    assert found.keys["load_env_files"] is False and found.keys["env_files"] == [".env.local"]
    assert any("node_modules/ is missing" in line for line in found.why)


def test_a_port_in_the_dev_script_is_kept_and_vite_gets_its_own(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a/package.json": '{"scripts": {"dev": "next dev --port 4100"}}',
            "b/package.json": '{"scripts": {"dev": "vite"}}',
        },
    )
    found = services(tmp_path)
    assert (found["a"]["command"], found["a"]["port"]) == ("npm run dev", 4100)
    assert (found["b"]["command"], found["b"]["port"]) == ("npm run dev -- --port 5173 --strictPort", 5173)


def test_supabase_config_gives_a_database_that_the_app_waits_for(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "ui/supabase/config.toml": "[db]\nport = 55432\n",
            "ui/package.json": '{"scripts": {"dev": "next dev"}}',
            "voice/main.py": FASTAPI,
            "voice/.env.example": "DATABASE_URL=\nSUPABASE_URL=\n",
        },
    )
    found = services(tmp_path)
    # No Supabase CLI here: the database from PostgreSQL's binaries, on the project's DB port.
    assert found["db"] == {"cwd": ".", "runtime": "postgres", "project": "ui", "port": 55432}
    assert found["voice"]["depends_on"] == {"db": "healthy"}
    cfg = loaded(tmp_path)
    assert (
        cfg.get("db").database is not None
        and cfg.get("db").database.migrations == tmp_path / "ui" / "supabase" / "migrations"
    )


COMPOSE = """
services:
  cache:
    image: redis:7-alpine
    ports: ["6380:6379"]
  db:
    image: postgres:16
    environment:
      POSTGRES_USER: app
      POSTGRES_PASSWORD: devpass
  api:
    build: ./api
    ports: ["9000:8000"]
    environment:
      - REDIS_URL=redis://cache:6379/0
      - DATABASE_URL=postgresql://app:devpass@db:5432/app
      - SECRET=${SECRET:?set it}
    depends_on: [db, cache]
  worker:
    build: ./api
    command: python -m worker
    depends_on:
      db: {condition: service_healthy}
  adminer:
    image: adminer:4
    ports: ["8081:8080"]
    environment: {ADMINER_DEFAULT_SERVER: db}
    healthcheck: {test: ["CMD", "wget", "-q", "-O-", "http://localhost:8080"]}
  e2e:
    image: playwright
    profiles: [test]
"""


def test_compose_services_become_native_runtimes_processes_and_containers(tmp_path: Path) -> None:
    write(tmp_path, {"docker-compose.yml": COMPOSE, "api/app.py": FASTAPI})
    found = services(tmp_path)
    assert list(found) == ["cache", "db", "api", "worker", "adminer"]  # e2e is in a profile
    assert found["cache"]["command"] == "redis-server --port 6380 --save '' --appendonly no"
    # Compose's database, and the user and database the postgres image would have made.
    assert {k: found["db"][k] for k in ("runtime", "port", "user", "password")} == {
        "runtime": "postgres",
        "port": 5432,
        "user": "app",
        "password": "devpass",
    }
    api = found["api"]
    assert api["command"] == "uvicorn app:app --host 127.0.0.1 --port 9000"  # Compose's published port
    # Compose's service names, as this machine reaches them; ${...} left to the env files.
    assert api["env"] == {
        "REDIS_URL": "redis://127.0.0.1:6380/0",
        "DATABASE_URL": "postgresql://app:devpass@127.0.0.1:5432/app",
    }
    assert api["depends_on"] == {"db": "healthy", "cache": "healthy"}
    assert (found["worker"]["command"], found["worker"]["cwd"]) == ("python -m worker", "api")
    assert "restart" not in found["worker"]  # nothing waits for it to complete: a service that runs
    assert found["adminer"]["docker"] == {
        "image": "adminer:4",
        "port": 8080,
        "env": {"ADMINER_DEFAULT_SERVER": "127.0.0.1"},
        "healthcheck": "wget -q -O- http://localhost:8080",
    }
    cfg = loaded(tmp_path)
    assert cfg.get("db").database is not None and cfg.get("db").database.user == "app"
    assert cfg.get("adminer").docker is not None and cfg.get("adminer").port == 8081


def test_a_procfile_runs_as_foreman_runs_it(tmp_path: Path) -> None:
    """Every process gets PORT (5000, 5100, ...) and the folder's .env; `web` listens on its PORT
    (gunicorn reads it by itself); `release` runs first, as on Heroku; `VAR=value cmd` lines go
    through the shell."""
    procfile = "release: python manage.py migrate\nweb: gunicorn app.wsgi\nworker: REMAP_SIGTERM=SIGQUIT celery -A app worker\n# a note\n"
    write(tmp_path, {"Procfile": procfile, ".env": "DEBUG=1\n", "manage.py": "import django\n"})
    found = services(tmp_path)
    assert list(found) == ["release", "web", "worker"]  # the Django app is the Procfile's web
    assert found["release"] == {
        "cwd": ".",
        "command": "python manage.py migrate",
        "env_files": [".env"],
        "restart": {"policy": "no"},
    }
    assert found["web"] == {
        "cwd": ".",
        "command": "gunicorn app.wsgi",
        "env_files": [".env"],
        "env": {"PORT": "5100"},
        "port": 5100,
        "health": {"tcp": True},
        "depends_on": {"release": "completed"},
    }
    assert found["worker"]["env"] == {"PORT": "5200"} and "port" not in found["worker"]
    cfg = loaded(tmp_path)
    assert cfg.get("worker").command == ("/bin/sh", "-c", "REMAP_SIGTERM=SIGQUIT celery -A app worker")


def test_a_procfile_beside_a_compose_file_that_runs_the_apps_is_not_used_twice(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "docker-compose.yml": "services:\n  django:\n    build: {context: ., dockerfile: docker/local.Dockerfile}\n    ports: ['8000:8000']\n",
            "Procfile": "web: gunicorn app.wsgi\n",
            "manage.py": "import django\n",
        },
    )
    planned = plan(tmp_path)
    # The Compose service built from the project (its Dockerfile in docker/) is the Django app.
    assert [(f.name, f.keys["command"]) for f in planned.found] == [
        ("django", "python manage.py runserver 127.0.0.1:8000 --noreload")
    ]
    assert planned.notes == [
        "the Procfile was not used: the Compose file already runs the apps (both would run them twice)"
    ]


def test_a_broken_compose_file_is_said_and_the_apps_are_still_found(tmp_path: Path) -> None:
    write(tmp_path, {"compose.yaml": "services: [\n", "main.py": FASTAPI})
    planned = plan(tmp_path)
    assert [f.name for f in planned.found] == ["app"]
    assert planned.notes == ["compose.yaml is not valid YAML (while parsing a flow node): its services were not read"]


def test_the_aira_layout_still_gives_the_guide_s_config(tmp_path: Path) -> None:
    from airadev.operations.init import config_text

    write(tmp_path, {"voice-agent/server.py": FASTAPI, "docker-compose.yml": COMPOSE})
    planned = plan(tmp_path)
    assert planned.aira and planned.text == config_text(tmp_path)


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    write(tmp_path, {"main.py": FASTAPI, ".env.example": "A=\n"})
    result = init(tmp_path, dry_run=True)
    assert result.plan is not None and "[services.app]" in result.plan.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env.example", "main.py"]


def test_what_real_templates_showed(tmp_path: Path) -> None:
    """Found trying init on public FastAPI + frontend templates: a monorepo root's package.json
    is no app and its lockfile is its apps'; a second PostgreSQL (a test database) stays a
    container, as a stack has one local database; a Dockerfile.playwright built from an app's
    folder is not that app; ${...} in Compose's environment comes from the project's .env."""
    compose_text = """
services:
  db: {image: "postgres:17", ports: ["5432:5432"]}
  db_test: {image: "postgres:17", ports: ["5433:5432"]}
  backend:
    build: {context: ., dockerfile: backend/Dockerfile}
    environment: {SECRET_KEY: "${SECRET_KEY:?Variable not set}"}
    depends_on: [db]
  playwright:
    build: {context: ., dockerfile: frontend/Dockerfile.playwright}
    ports: ["9323:9323"]
"""
    write(
        tmp_path,
        {
            "compose.yml": compose_text,
            ".env": "SECRET_KEY=changethis\n",
            "package.json": '{"workspaces": ["frontend"], "scripts": {"dev": "bun run --filter frontend dev"}}',
            "bun.lock": "",
            "frontend/package.json": '{"scripts": {"dev": "vite"}}',
            "backend/app/__init__.py": "",
            "backend/app/main.py": FASTAPI,
        },
    )
    planned = plan(tmp_path)
    found = services(tmp_path)
    assert list(found) == ["db", "db_test", "backend", "frontend"]
    assert found["db_test"]["runtime"] == "docker"
    assert planned.notes == ["playwright: left out: a test runner: run it when you test"]
    assert found["backend"]["env_files"] == ["../.env"]
    assert found["frontend"]["command"] == "bun run dev --port 5173 --strictPort"
    assert loaded(tmp_path).get("db").database is not None


def test_containers_keep_reaching_containers_by_name_and_the_host_s_services_by_loopback(tmp_path: Path) -> None:
    """Found on a Django + Celery + RabbitMQ project: a container reaches another container by
    its name on the stack's network, and what now runs on this machine by loopback (its
    runtime makes that host.docker.internal), in its env and its command alike; an app on this
    machine cannot reach a container that publishes no port, and is told."""
    write(
        tmp_path,
        {
            "compose.yml": """
services:
  redis: {image: "redis:7"}
  rabbitmq: {image: "rabbitmq:3"}
  mail: {image: "axllent/mailpit", ports: ["8025:8025", "1025:1025"]}
  proxy: {image: "traefik:3", ports: ["80:80"], volumes: ["/var/run/docker.sock:/var/run/docker.sock:ro"]}
  web:
    build: .
    ports: ["8000:8000"]
    environment: {BROKER: "amqp://guest:guest@rabbitmq:5672//"}
    depends_on: [rabbitmq, redis]
  dashboard:
    image: "mher/flower"
    command: celery flower --broker=redis://redis:6379/0
    environment: {BROKER: "amqp://guest:guest@rabbitmq:5672//", API: "http://web:8000/api"}
""",
            "manage.py": "import django\n",
        },
    )
    planned = plan(tmp_path)
    found = {f.name: f.keys for f in planned.found}
    assert list(found) == ["redis", "rabbitmq", "mail", "web", "dashboard"]  # not the proxy
    dashboard = found["dashboard"]["docker"]
    assert isinstance(dashboard, dict)
    assert dashboard["command"] == "celery flower --broker=redis://127.0.0.1:6379/0"
    assert dashboard["env"] == {"BROKER": "amqp://guest:guest@rabbitmq:5672//", "API": "http://127.0.0.1:8000/api"}
    assert planned.notes == [
        "mail: Compose publishes 2 ports; airadev publishes one a container (8025; not 1025)",
        "proxy: left out: it mounts the Docker socket (a proxy routing to containers by label); "
        "the apps run as processes here: reach each on its own port",
        "web runs on this machine, and rabbitmq publishes no port: add one to its docker table for the app to reach it",
    ]
    assert loaded(tmp_path).get("dashboard").docker is not None


def test_interpreters_an_env_folder_and_a_uv_workspace_s_root_venv(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "voice/reminders.py": "from flask import Flask\napp = Flask(__name__)\n",  # not main.py or app.py
            "uv.lock": "version = 1\n",
            "backend/app/__init__.py": "",
            "backend/app/main.py": FASTAPI,
        },
    )
    for venv in (tmp_path / "voice" / "env", tmp_path / ".venv"):
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").touch()
    found = services(tmp_path)
    assert found["voice"]["command"] == "flask --app reminders run --port 5000" and found["voice"]["venv"] == "env"
    assert found["backend"]["command"] == "uvicorn app.main:app --host 127.0.0.1 --port 8000"
    assert found["backend"]["venv"] == "../.venv"  # the workspace's, where `uv sync` puts it
    cfg = loaded(tmp_path)
    assert cfg.get("backend").venv == (tmp_path / ".venv",)


def test_nothing_found_is_said_and_the_aira_layout_is_asked_for(tmp_path: Path) -> None:
    from airadev.errors import AiradevError

    write(tmp_path, {"notes.txt": "hello"})
    with pytest.raises(AiradevError) as info:
        init(tmp_path)
    assert info.value.message.startswith(f"found no service in {tmp_path}: no Python web app")
    assert "`airadev init --aira` writes the AiRa layout's" in info.value.fix
    assert not (tmp_path / "airadev.toml").exists()
    assert init(tmp_path, aira=True).plan is not None and loaded_names(tmp_path) == [
        "redis",
        "voice-agent",
        "kb-updater",
        "aira-ui",
    ]


def loaded_names(root: Path) -> list[str]:
    return config.load(root).names()


def test_compose_shapes_found_by_review(tmp_path: Path) -> None:
    """A port from a variable (the project's .env), a numeric service name, YAML's true, an
    optional env_file that is not there, a value named like a service that is no host, and a
    database user with a dot: each read as Compose reads it, and the config loads."""
    write(
        tmp_path,
        {
            ".env": "WEB_PORT=8090\n",
            "compose.yml": """
services:
  db:
    image: postgres:16
    environment: {POSTGRES_USER: app.user, POSTGRES_DB: app.db}
  worker:
    image: busybox
  1:
    image: busybox
  api:
    build: ./api
    ports: [{target: 8000, published: "${WEB_PORT:-8080}"}]
    env_file: [{path: ./.env.local, required: false}]
    environment:
      DEBUG: true
      QUEUE: worker
      WORKER_HOST: worker
      DATABASE_URL: postgres://app.user@db:5432/app.db
""",
            "api/main.py": FASTAPI,
        },
    )
    found = services(tmp_path)
    assert list(found) == ["db", "worker", "1", "api"]
    api = found["api"]
    assert api["port"] == 8090 and "env_files" not in api
    assert api["env"] == {
        "DEBUG": "true",
        "QUEUE": "worker",  # a queue's name, not an address
        "WORKER_HOST": "worker",  # a container without a published port: unreachable from here, said
        "DATABASE_URL": "postgres://app.user@127.0.0.1:5432/app.db",
    }
    cfg = loaded(tmp_path)
    spec = cfg.get("db").database
    assert spec is not None and (spec.user, spec.database) == ("app.user", "app.db")
