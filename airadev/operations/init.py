"""`airadev init`: a commented airadev.toml for what is on disk: the AiRa layout (aira-ui/,
voice-agent/, kb-updater/) as the guide describes it, or any other project's apps and what it
declares (``airadev.detect``), each service written with why it was found so."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from airadev import detect
from airadev.config import CONFIG_NAME
from airadev.errors import AiradevError
from airadev.workspace import ensure_ignored

STANDARD_FOLDERS = ("aira-ui", "voice-agent", "kb-updater")

TEMPLATE = """\
# airadev.toml: how `airadev up` runs the AiRa stack in this workspace.
#
# Layout: aira-ui/, voice-agent/ and kb-updater/ side by side, next to this file.
# Paths: cwd is relative to this file; env_files, watch and venv to the service's cwd.
# Durations: "500ms", "2s", "1m". A command string with shell syntax (|, &&, $VAR, ...) runs
# through /bin/sh -c; otherwise it is split like a shell would split it.
# Each service's virtualenv (.venv/ or venv/ in its folder) is used when it exists.
# Reference: the README's "airadev.toml" section.

[logs]
max_size = "20MB"   # per service; rotated, keeping `keep` older files in .airadev/logs/
keep = 3

[services.redis]
command = "redis-server --port 6379 --save '' --appendonly no"
port = 6379
health = { tcp = true }
# `airadev up --runtime docker` (or runtime = "docker") runs a service that has a docker table
# as a container; `airadev export compose` writes the same as a Compose file.
docker = { image = "redis:7-alpine", command = "redis-server --port 6379 --protected-mode no --save '' --appendonly no", port = 6379, healthcheck = "redis-cli -p 6379 ping" }

[services.voice-agent]
template = "voice-agent"  # checked by `airadev doctor` against env-templates/
aliases = ["voice"]
cwd = "voice-agent"
command = "python server.py"
env_files = [".env"]          # loaded into the process environment (secrets are redacted in logs)
port = 8000
health = { http = "/health" }
depends_on = { redis = "healthy" }
watch = ["."]                 # restart on code changes (venv, __pycache__, .git are ignored)
# restart = { policy = "on-failure", max_restarts = 5, backoff = "500ms", backoff_max = "30s" }
# stop_signal = "SIGTERM"
# stop_grace = "10s"
# As a container: airadev builds the image (when missing, on `up --build`, by `airadev build`).
{voice_docker}

[services.kb-updater]
template = "kb-updater"
aliases = ["kb"]
cwd = "kb-updater"
# airadev's own watcher replaces uvicorn's --reload; 0.0.0.0 so Supabase's containers reach it.
command = "uvicorn updater:app --host 0.0.0.0 --port 8080"
env_files = [".env"]
port = 8080
health = { http = "/health" }
watch = ["."]
{kb_docker}

[services.aira-ui]
template = "aira-ui"
aliases = ["ui"]
cwd = "aira-ui"
command = "npm run dev -- -p 3000"   # always pass the port: next dev moves silently otherwise
env_files = [".env.local"]
# Next.js reads .env.local itself, and a variable in the process environment would override it.
load_env_files = false
env = { NEXT_TELEMETRY_DISABLED = "1" }
port = 3000
# The first request compiles the page: give it time.
health = { http = "/", timeout = "60s", start_period = "180s" }
"""


# A service folder without a Dockerfile of its own is built from the AiRa guide's, written beside
# airadev.toml; its code is mounted read-only, so an edit restarts the container (no build) and a
# change of requirements.txt builds the image again.
GUIDE_DOCKERFILE = "Dockerfile.python"
DOCKER_TABLES = {
    "voice-agent": ("aira/voice-agent:dev", "python server.py", 8000),
    "kb-updater": ("aira/kb-updater:dev", "uvicorn updater:app --host 0.0.0.0 --port 8080", 8080),
}


def docker_table(root: Path, folder: str) -> str:
    image, command, port = DOCKER_TABLES[folder]
    if (root / folder / "Dockerfile").is_file():
        # Its own Dockerfile: built as it is (mount the code with volumes = ["./{folder}:<its
        # WORKDIR>:ro"] for the edit-restart loop).
        return f'docker = {{ image = "{image}", port = {port}, build = "." }}'
    return (
        f'docker = {{ image = "{image}", command = "{command}", port = {port}, '
        f'volumes = ["./{folder}:/app:ro"], build = {{ dockerfile = "../{GUIDE_DOCKERFILE}" }} }}'
    )


def config_text(root: Path) -> str:
    """The airadev.toml for ``root``: the standard layout, each Python service's docker table
    after what is on disk (its own Dockerfile, or the guide's)."""
    return TEMPLATE.replace("{voice_docker}", docker_table(root, "voice-agent")).replace(
        "{kb_docker}", docker_table(root, "kb-updater")
    )


HEADER = """\
# airadev.toml: how `airadev up` runs this project, written by `airadev init` from what it found
# (each service says why). Check the commands and ports, then `airadev doctor` and `airadev up`.
#
# Paths: cwd is relative to this file; env_files, watch and venv to the service's cwd.
# Durations: "500ms", "2s", "1m". A command string with shell syntax (|, &&, $VAR, ...) runs
# through /bin/sh -c; otherwise it is split like a shell would split it.
# A service's virtualenv (.venv/ or venv/ in its folder) is used when it exists.
# Reference: the README's "airadev.toml" section.

[logs]
max_size = "20MB"   # per service; rotated, keeping `keep` older files in .airadev/logs/
keep = 3
"""


@dataclass(frozen=True)
class Plan:
    """What init would write: the config's text, and what it found (empty for the AiRa layout)."""

    text: str
    found: list[detect.Found]
    notes: list[str]

    @property
    def aira(self) -> bool:
        return not self.found


def plan(root: Path, *, aira: bool = False) -> Plan:
    """The AiRa layout when one of its folders is here (or ``aira``: asked for); otherwise what
    ``detect.scan`` finds. Nothing found is an error: a config for folders that are not there
    helps no one."""
    if aira or any((root / folder).is_dir() for folder in STANDARD_FOLDERS):
        return Plan(config_text(root), [], [])
    detection = detect.scan(root)
    if not detection.services:
        raise AiradevError(
            f"found no service in {root}: no Python web app (main.py, app.py, ... with FastAPI or Flask; "
            "manage.py), no package.json with a dev script, no Compose file, Procfile or supabase/config.toml"
            + (f" ({'; '.join(detection.notes)})" if detection.notes else ""),
            "run airadev init in the project's folder, or write airadev.toml yourself (README: airadev.toml); "
            "`airadev init --aira` writes the AiRa layout's",
        )
    body = "\n".join(detect.service_toml(found, root) for found in detection.services)
    return Plan(HEADER + "\n" + body, detection.services, detection.notes)


@dataclass(frozen=True)
class Initialised:
    config: Path
    gitignore: Path
    gitignore_updated: bool
    missing: list[str]
    env_files: list[Path]  # created from env-templates/ or the app's .env.example (they were missing)
    dockerfile: Path | None = None  # the guide's Dockerfile.python, written (it was missing)
    plan: Plan | None = None


# folder → (env file in it, its template in env-templates/)
ENV_FILES = {
    "aira-ui": (".env.local", "aira-ui.env.local"),
    "voice-agent": (".env", "voice-agent.env"),
    "kb-updater": (".env", "kb-updater.env"),
}


def init(directory: Path, *, force: bool = False, dry_run: bool = False, aira: bool = False) -> Initialised:
    root = directory.expanduser().resolve()
    if not root.is_dir():
        raise AiradevError(f"{root} is not a folder", "create it, or run airadev init in your workspace folder")
    target = root / CONFIG_NAME
    if target.exists() and not force and not dry_run:
        raise AiradevError(f"{target} already exists", "edit it, or pass --force to overwrite it")
    planned = plan(root, aira=aira)
    text = planned.text
    # What init writes must load: a detected value airadev.toml would refuse is init's bug, said
    # before anything is written.
    from airadev.config import parse

    try:
        parse(tomllib.loads(text), root=root, file=target)
    except (tomllib.TOMLDecodeError, AiradevError) as exc:
        raise AiradevError(
            f"the config init made from {root} does not load ({exc})",
            "run airadev init --dry-run to see it, and report this as a bug of airadev",
        ) from None
    gitignore = root / ".gitignore"
    if dry_run:
        return Initialised(target, gitignore, False, [], [], None, planned)
    target.write_text(text, encoding="utf-8")
    updated = ensure_ignored(gitignore, ".airadev/")
    if not planned.aira:
        return Initialised(target, gitignore, updated, [], _app_env_files(planned.found), None, planned)
    missing = [folder for folder in STANDARD_FOLDERS if not (root / folder).is_dir()]
    dockerfile = root / GUIDE_DOCKERFILE
    written = None
    if f"../{GUIDE_DOCKERFILE}" in text and not dockerfile.exists():
        dockerfile.write_bytes((Path(__file__).resolve().parents[1] / "templates" / GUIDE_DOCKERFILE).read_bytes())
        written = dockerfile
    return Initialised(target, gitignore, updated, missing, _env_files(root), written, planned)


def _env_files(root: Path) -> list[Path]:
    """Each present service folder's env file, from its template, where there is none yet."""
    from airadev.integrations.envfile import TEMPLATES

    created = []
    for folder, (name, template) in ENV_FILES.items():
        target = root / folder / name
        if not (root / folder).is_dir() or target.exists() or not (TEMPLATES / template).is_file():
            continue
        _copy_private(TEMPLATES / template, target)
        created.append(target)
    return created


def _app_env_files(found: list[detect.Found]) -> list[Path]:
    """A detected app's .env, from its own .env.example (.env.sample, .env.template), where
    there is none yet: the values to fill in are the app's own list."""
    created = []
    for service in found:
        if ".env" not in (service.keys.get("env_files") or []):  # type: ignore[operator]
            continue
        target = service.folder / ".env"
        example = next((service.folder / n for n in EXAMPLES if (service.folder / n).is_file()), None)
        if target.exists() or example is None:
            continue
        _copy_private(example, target)
        created.append(target)
    return created


EXAMPLES = (".env.example", ".env.sample", ".env.template")


def _copy_private(source: Path, target: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, source.read_bytes())
    finally:
        os.close(fd)
