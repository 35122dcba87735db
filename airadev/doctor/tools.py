"""Tools: the programs the stack needs, and each service's installed dependencies."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airadev.doctor.base import Action, Context, Result, check, error, ok, skipped, warning


def _version(argv: list[str], ctx: Context, timeout: float = 2.5) -> tuple[str | None, str]:
    """(first version-looking token of the output, the output); None when it did not run."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=dict(ctx.env)
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    out = (done.stdout + done.stderr).strip()
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return (match.group(0) if match and done.returncode == 0 else None), out


def _major(version: str) -> int:
    return int(version.split(".")[0])


@check("tools.python", "Python 3.11 or newer runs airadev")
def python(ctx: Context) -> Result:
    version = ".".join(map(str, ctx.python_version))
    if tuple(ctx.python_version) < (3, 11):
        return error(
            "tools.python",
            f"Python {version} runs airadev; it needs 3.11 or newer",
            "install Python 3.11+ and reinstall airadev with it",
        )
    return ok("tools.python", f"Python {version}")


@check("tools.node", "Node.js 18 or newer (20 recommended)")
def node(ctx: Context) -> Result:
    exe = shutil.which("node", path=ctx.env.get("PATH"))
    if exe is None:
        return error(
            "tools.node",
            "node is not installed (the UI needs it)",
            "install Node.js 20 (https://nodejs.org, or your package manager)",
        )
    version, out = _version([exe, "--version"], ctx)
    if version is None:
        return error("tools.node", f"`node --version` failed: {out[:100]}", "reinstall Node.js 20")
    if _major(version) < 18:
        return error("tools.node", f"Node.js {version}: Next.js needs 18 or newer", "install Node.js 20")
    if _major(version) < 20:
        return warning("tools.node", f"Node.js {version} works; 20 is recommended", "install Node.js 20")
    return ok("tools.node", f"Node.js {version}")


@check("tools.npm", "npm", requires=("tools.node",), timeout=8)
def npm(ctx: Context) -> Result:
    exe = shutil.which("npm", path=ctx.env.get("PATH"))
    if exe is None:
        return error("tools.npm", "npm is not installed", "install it with Node.js (https://nodejs.org)")
    version, out = _version([exe, "--version"], ctx, timeout=7)
    if version is None:
        return error("tools.npm", f"`npm --version` failed: {out[:100]}", "reinstall Node.js and npm")
    return ok("tools.npm", f"npm {version}")


@check("tools.deps", "each service's dependencies are installed", timeout=10)
def deps(ctx: Context) -> list[Result]:
    config = ctx.config
    if config is None:
        return [skipped("tools.deps", "no valid airadev.toml")]
    from concurrent.futures import ThreadPoolExecutor

    jobs: list[tuple[Callable[[str, Any, Context], Result], str, Any]] = []
    for service in config.services:
        rid = f"tools.deps:{service.name}"
        if (service.cwd / "package.json").is_file():
            jobs.append((_node_deps, rid, service.cwd))
        elif (service.cwd / "requirements.txt").is_file():
            jobs.append((_python_deps, rid, service))
    if not jobs:
        return [ok("tools.deps", "no service declares dependencies")]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:  # each starts an interpreter: overlap them
        return list(pool.map(lambda job: job[0](job[1], job[2], ctx), jobs))


def _lock_root(folder: Path) -> Path:
    """Where npm installs for ``folder``: the nearest folder up with a package-lock.json (an npm
    workspaces monorepo keeps one lock and one node_modules at its root), else the folder."""
    for candidate in (folder, *list(folder.parents)[:4]):
        if (candidate / "package-lock.json").is_file():
            return candidate
    return folder


def _node_deps(rid: str, service_folder: Path, ctx: Context) -> Result:
    folder = _lock_root(service_folder)
    where = ctx.relative(folder)
    action = Action("npm-ci", where, install=True)
    lock = folder / "package-lock.json"
    installed = folder / "node_modules" / ".package-lock.json"
    if not (folder / "node_modules").is_dir():
        return error(rid, f"{where}: node_modules is missing", f"cd {where} && npm ci", action)
    if not lock.is_file():
        return warning(
            rid,
            f"{where}: no package-lock.json, so installs are not reproducible",
            f"cd {where} && npm install (then commit package-lock.json)",
        )
    try:
        wanted = json.loads(lock.read_text()).get("packages", {})
        have = json.loads(installed.read_text()).get("packages", {}) if installed.is_file() else {}
    except (OSError, ValueError):
        return error(
            rid,
            f"{where}: package-lock.json or node_modules/.package-lock.json is unreadable",
            f"cd {where} && npm ci",
            action,
        )
    stale = sorted(
        name.removeprefix("node_modules/")
        for name, meta in wanted.items()
        if name.startswith("node_modules/")
        and not meta.get("optional")
        and have.get(name, {}).get("version") != meta.get("version")
    )
    if stale:
        shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        return error(
            rid,
            f"{where}: node_modules is out of step with package-lock.json ({shown})",
            f"cd {where} && npm ci",
            action,
        )
    return ok(rid, f"{where}: node_modules matches package-lock.json")


# Run by the service's own interpreter: is each requirement installed, at a version its
# specifier allows, and are its modules importable (found, not imported: that would run them)?
# Markers are evaluated there, with pip's own vendored `packaging` when nothing else is there.
_IMPORT_CHECK = r"""
import importlib.util, json, re, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    try:
        from pip._vendor.packaging.requirements import Requirement
    except ImportError:
        Requirement = None
modules = {}
for module, dists in (metadata.packages_distributions() if hasattr(metadata, "packages_distributions") else {}).items():
    for dist in dists:
        modules.setdefault(dist.lower().replace("_", "-"), []).append(module)
missing, wrong, broken = [], [], []
for line in json.loads(sys.argv[1]):
    spec = None
    if Requirement is not None:
        try:
            req = Requirement(line)
        except Exception:
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        name, spec = req.name, req.specifier
    else:
        name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        missing.append(name)
        continue
    if spec is not None and not spec.contains(version, prereleases=True):
        wrong.append(f"{name} {version} (wants {spec})")
    for module in modules.get(name.lower().replace("_", "-"), [])[:3]:
        if not module.startswith("_") and importlib.util.find_spec(module) is None:
            broken.append(name)
            break
print(json.dumps([missing, wrong, broken, list(sys.version_info[:3])]))
"""


def _requirements(path: Path, seen: set[Path] | None = None) -> list[str]:
    """The requirement lines of a requirements file, `-r` includes followed; options, editable
    installs and URLs are left out."""
    seen = seen if seen is not None else set()
    if path in seen or not path.is_file():
        return []
    seen.add(path)
    found = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        include = re.match(r"^(-r|--requirement)[ =]?\s*(\S+)", line)
        if include:
            found.extend(_requirements(path.parent / include.group(2), seen))
        elif not line.startswith("-") and "://" not in line:
            found.append(line)
    return found


def _interpreter(service: Any, ctx: Context) -> tuple[str | None, str]:
    """(the python the service runs with, how to call it): its virtualenv, else the python its
    command names (directly, or through a script's #! line, as with uvicorn), else python3."""
    from airadev.runtimes.environment import find_venv

    venv = find_venv(service)  # raises for an explicit venv that is not there
    if venv:
        return str(venv / "bin" / "python"), ctx.relative(venv)
    program = service.command[0] if service.command[0] != "/bin/sh" else "python3"
    exe = program if "/" in program else shutil.which(program, path=ctx.env.get("PATH"))
    if exe and Path(exe).name.startswith("python"):
        return exe, f"{program} on PATH"
    if exe:
        try:
            first = Path(exe).read_bytes()[:200].split(b"\n", 1)[0]
        except OSError:
            first = b""
        if first.startswith(b"#!") and b"python" in first:
            interpreter = first[2:].decode(errors="replace").split()[0]
            return interpreter, f"{interpreter} (from {program})"
    python3 = shutil.which("python3", path=ctx.env.get("PATH"))
    return python3, "python3 on PATH"


def _python_deps(rid: str, service: Any, ctx: Context) -> Result:
    from airadev.errors import AiradevError

    cwd: Path = service.cwd
    where = ctx.relative(cwd)
    try:
        python, shown = _interpreter(service, ctx)
    except AiradevError as exc:
        return error(rid, exc.message, exc.fix)
    if python is None:
        return error(
            rid,
            f"{where}: no virtualenv and no python on PATH",
            f"python3 -m venv {where}/.venv && {where}/.venv/bin/pip install -r {where}/requirements.txt",
        )
    action = Action("pip-install", where, python, install=True)
    wanted = _requirements(cwd / "requirements.txt")
    try:
        done = subprocess.run(
            [python, "-c", _IMPORT_CHECK, json.dumps(wanted)],
            capture_output=True,
            text=True,
            timeout=6,
            stdin=subprocess.DEVNULL,
            env=dict(ctx.env),
        )
        missing, wrong, broken, version = json.loads(done.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return error(rid, f"{where}: cannot run {shown}", f"recreate the virtualenv ({shown})")
    if tuple(version) < (3, 11):
        return error(
            rid,
            f"{where}: {shown} is Python {'.'.join(map(str, version))}; the services need 3.11+",
            f"recreate the virtualenv with Python 3.11+ (python3.11 -m venv {where}/.venv)",
        )
    if missing or wrong or broken:
        parts = (
            ([f"lacks {', '.join(missing[:4])}"] if missing else [])
            + ([f"has {', '.join(wrong[:3])}"] if wrong else [])
            + ([f"cannot import {', '.join(broken[:3])}"] if broken else [])
        )
        return error(
            rid, f"{where}: {shown} " + "; ".join(parts), f"{python} -m pip install -r {where}/requirements.txt", action
        )
    return ok(rid, f"{where}: {shown} has its {len(wanted)} requirements")


@check("tools.docker-client", "the docker CLI")
def docker_client(ctx: Context) -> Result:
    exe = shutil.which("docker", path=ctx.env.get("PATH"))
    if exe is None:
        return warning(
            "tools.docker-client",
            "docker is not installed (needed for container services and Supabase)",
            "install Docker (Debian: apt-get install docker.io)",
        )
    version, out = _version([exe, "--version"], ctx)
    return (
        ok("tools.docker-client", f"docker {version}")
        if version
        else warning("tools.docker-client", f"`docker --version` failed: {out[:100]}", "reinstall Docker")
    )


@check("tools.docker-engine", "a Docker engine answers", requires=("tools.docker-client",), timeout=4)
def docker_engine(ctx: Context) -> Result:
    host = docker_host(ctx)
    try:
        version = docker_api(host, "/version", timeout=2.5).get("Version", "?")
    except OSError as exc:
        return warning(
            "tools.docker-engine",
            f"no Docker engine answers at {host} ({exc.strerror or exc})",
            "start it (sudo systemctl start docker, or dockerd), or set DOCKER_HOST",
        )
    return ok("tools.docker-engine", f"Docker engine {version} at {host}")


def docker_host(ctx: Context) -> str:
    from airadev.integrations.engine import engine_host

    return engine_host(ctx.env)


def docker_api(host: str, path: str, timeout: float) -> Any:
    """GET ``path`` of the Docker engine's API (unix:// or plain tcp://); OSError unless it
    answers 200 with JSON."""
    from airadev.integrations.engine import engine_request

    status, body = engine_request(host, "GET", path, timeout=timeout)
    if status != 200:
        raise OSError(f"the engine answered {status}")
    try:
        return json.loads(body)
    except ValueError:
        raise OSError("the engine did not answer JSON") from None


@check("tools.supabase-cli", "the Supabase CLI (the UI's devDependency, or on PATH)", timeout=8)
def supabase_cli(ctx: Context) -> Result:

    config = ctx.config
    ui = config.ui_service() if config else None
    local = _lock_root(ui.cwd) / "node_modules" / ".bin" / "supabase" if ui else None
    if ui is None or not (ui.cwd / "supabase" / "config.toml").is_file():
        return skipped("tools.supabase-cli", "the UI has no supabase/config.toml: Supabase is not part of this stack")
    exe = str(local) if local and local.exists() else shutil.which("supabase", path=ctx.env.get("PATH"))
    if exe is None:
        return error(
            "tools.supabase-cli",
            "the Supabase CLI is not installed",
            f"cd {ctx.relative(ui.cwd)} && npm i -D -E supabase@2.117.0",
        )
    package = Path(exe).resolve().parent.parent / "package.json"
    if local and exe == str(local) and package.is_file():
        # The UI's devDependency: its package says the version, and npm's wrapper starts the
        # binary of a platform package (@supabase/cli-linux-x64, ...), which must be there.
        # Running the CLI costs about a second.
        try:
            version = json.loads(package.read_text()).get("version")
        except (OSError, ValueError):
            version = None
        binaries = list(package.parent.parent.glob("@supabase/cli-*/bin/supabase"))
        if version and any(os.access(b, os.X_OK) for b in binaries):
            return ok("tools.supabase-cli", f"Supabase CLI {version} ({ctx.relative(Path(exe))})")
    version, out = _version([exe, "--version"], ctx, timeout=7)
    if version is None:
        return error("tools.supabase-cli", f"`supabase --version` failed: {out[:100]}", "reinstall the Supabase CLI")
    return ok("tools.supabase-cli", f"Supabase CLI {version} ({ctx.relative(Path(exe))})")


@check("tools.ngrok-agent", "a real ngrok agent (for `airadev tunnel`)")
def ngrok_agent(ctx: Context) -> Result:
    from airadev.integrations import ngrok

    config = ctx.config
    try:
        binary = ngrok.find_binary(config.tunnel.ngrok_path if config else None, ctx.env)
    except ngrok.NgrokError as exc:
        return warning("tools.ngrok-agent", exc.message, exc.fix)
    version, out = _version([str(binary), "--version"], ctx)
    if version is None or not out.startswith("ngrok version 3"):
        return warning("tools.ngrok-agent", f"{binary} is not an ngrok v3 agent ({out[:60]!r})", ngrok.INSTALL_HINT)
    return ok("tools.ngrok-agent", f"ngrok {version} ({binary})")


@check("tools.ngrok-token", "an ngrok auth token", requires=("tools.ngrok-agent",))
def ngrok_token(ctx: Context) -> Result:
    from airadev.integrations import ngrok

    if ngrok.auth_token(ctx.env) is None:
        return warning(
            "tools.ngrok-token",
            "no ngrok auth token (NGROK_AUTHTOKEN, or the ngrok config)",
            "run `ngrok config add-authtoken TOKEN` (dashboard.ngrok.com), or set NGROK_AUTHTOKEN",
        )
    source = "NGROK_AUTHTOKEN" if ctx.env.get("NGROK_AUTHTOKEN") else str(ngrok.default_config_path(ctx.env))
    return ok("tools.ngrok-token", f"an auth token is set ({source})")


@check("tools.redis", "redis-server, or a Redis image")
def redis(ctx: Context) -> Result:
    exe = shutil.which("redis-server", path=ctx.env.get("PATH"))
    if exe:
        version, _ = _version([exe, "--version"], ctx)
        return ok("tools.redis", f"redis-server {version or '?'}")
    try:
        filters = '{"reference":["redis","redis:*","*/redis:*"]}'
        from urllib.parse import quote

        images = docker_api(docker_host(ctx), f"/images/json?filters={quote(filters)}", timeout=2)
    except OSError:
        images = []
    if images:
        return ok("tools.redis", f"a Redis image: {images[0].get('RepoTags', ['?'])[0]}")
    return error(
        "tools.redis",
        "neither redis-server nor a Redis image is here (the voice agent needs Redis)",
        "apt-get install redis-server (or run Redis in a container)",
    )
