"""Each service's installed dependencies, in what `up` will run it with: Python packages in the
service's interpreter (its virtualenv, a uv project's .venv, else the python its command runs),
Node modules by the package manager of its lockfile (npm, pnpm, yarn, bun).

A fix installs only into the service's own environment: a service without a virtualenv gets a
new .venv in its folder (which `up` then uses), never packages in a global interpreter."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airadev.doctor.base import Action, Context, Result, check, error, ok, skipped, warning


@check("tools.deps", "each service's dependencies are installed", timeout=10)
def deps(ctx: Context) -> list[Result]:
    config = ctx.config
    if config is None:
        return [skipped("tools.deps", "no valid airadev.toml")]
    from concurrent.futures import ThreadPoolExecutor

    jobs: list[tuple[Callable[[str, Any, Context], Result], str, Any]] = []
    seen: set[Path] = set()
    for service in config.services:
        rid = f"tools.deps:{service.name}"
        if service.database is not None or service.cwd in seen:  # a task in an app's folder: checked once
            continue
        seen.add(service.cwd)
        if (service.cwd / "package.json").is_file():
            jobs.append((_node_deps, rid, service.cwd))
        elif any((service.cwd / name).is_file() for name in PYTHON_PROJECT):
            jobs.append((_python_deps, rid, service))
    if not jobs:
        return [ok("tools.deps", "no service declares dependencies")]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:  # each starts an interpreter: overlap them
        return list(pool.map(lambda job: job[0](job[1], job[2], ctx), jobs))


def lock_root(folder: Path) -> Path:
    """Where npm installs for ``folder``: the nearest folder up with a package-lock.json (an npm
    workspaces monorepo keeps one lock and one node_modules at its root), else the folder."""
    for candidate in (folder, *list(folder.parents)[:4]):
        if (candidate / "package-lock.json").is_file():
            return candidate
    return folder


PYTHON_PROJECT = ("requirements.txt", "pyproject.toml", "uv.lock")
# How each package manager installs exactly its lockfile; the file its install leaves in
# node_modules (newer than the lockfile when the install followed the lockfile's last change).
NODE_INSTALL = {
    "pnpm": ("pnpm install --frozen-lockfile", ".modules.yaml"),
    "yarn": ("yarn install --frozen-lockfile", ".yarn-integrity"),
    "bun": ("bun install --frozen-lockfile", ""),
}


def _node_deps(rid: str, service_folder: Path, ctx: Context) -> Result:
    from airadev.detect.apps import package_manager

    manager, why = package_manager(service_folder)
    if manager in NODE_INSTALL:
        return _other_manager(rid, service_folder, manager, why, ctx)
    folder = lock_root(service_folder)
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


def _other_manager(rid: str, folder: Path, manager: str, why: str, ctx: Context) -> Result:
    """pnpm, yarn or bun: the program there, node_modules installed, not older than the lockfile."""
    root = folder.parent if why.startswith("../") else folder
    where = ctx.relative(root)
    command, marker = NODE_INSTALL[manager]
    install = f"cd {where} && {command}"
    if shutil.which(manager, path=ctx.env.get("PATH")) is None:
        return error(
            rid,
            f"{where}: {manager} is not installed (the project's lockfile is {why.removeprefix('../')})",
            f"install it (`npm install -g {manager}`, or `corepack enable`), then {install}",
        )
    action = Action("node-install", where, command, install=True)
    modules = root / "node_modules"
    if not modules.is_dir():
        return error(rid, f"{where}: node_modules is missing", install, action)
    lock = root / why.removeprefix("../")
    installed = modules / marker if marker else None
    if (
        lock.is_file()
        and installed is not None
        and installed.is_file()
        and lock.stat().st_mtime > installed.stat().st_mtime
    ):
        return error(rid, f"{where}: {lock.name} changed since node_modules was installed", install, action)
    return ok(rid, f"{where}: node_modules installed ({manager}, by {why})")


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
print(json.dumps([missing, wrong, broken, list(sys.version_info[:3]), sys.prefix != sys.base_prefix]))
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
    from airadev.runtimes.environment import find_venv

    uv = (cwd / "uv.lock").is_file()
    if uv and find_venv(service) is None:  # a uv project without its .venv
        return _uv_sync(rid, where, ctx)
    requirements = cwd / "requirements.txt"
    wanted = _requirements(requirements) if requirements.is_file() else _pyproject(cwd / "pyproject.toml")
    how = f"-r {where}/requirements.txt" if requirements.is_file() else f"-e {where}"
    new_venv = f"python3 -m venv {where}/.venv && {where}/.venv/bin/pip install {how}"
    if python is None:
        return error(rid, f"{where}: no virtualenv and no python on PATH", new_venv)
    try:
        done = subprocess.run(
            [python, "-c", _IMPORT_CHECK, json.dumps(wanted)],
            capture_output=True,
            text=True,
            timeout=6,
            stdin=subprocess.DEVNULL,
            env=dict(ctx.env),
        )
        missing, wrong, broken, version, in_venv = json.loads(done.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return error(rid, f"{where}: cannot run {shown}", f"recreate the virtualenv ({shown})")
    minimum = (3, 11) if service.template else _requires_python(cwd / "pyproject.toml")
    if minimum and tuple(version) < minimum:
        wanted_version = ".".join(map(str, minimum))
        return error(
            rid,
            f"{where}: {shown} is Python {'.'.join(map(str, version))}; the service needs {wanted_version}+",
            f"recreate the virtualenv with Python {wanted_version}+ (python{wanted_version} -m venv {where}/.venv)",
        )
    if not (missing or wrong or broken):
        return ok(rid, f"{where}: {shown} has its {len(wanted)} requirements")
    parts = (
        ([f"lacks {', '.join(missing[:4])}"] if missing else [])
        + ([f"has {', '.join(wrong[:3])}"] if wrong else [])
        + ([f"cannot import {', '.join(broken[:3])}"] if broken else [])
    )
    message = f"{where}: {shown} " + "; ".join(parts)
    if uv:
        return _uv_sync(rid, where, ctx, message)
    if in_venv:
        fix = f"{python} -m pip install {how}"
        return error(
            rid, message, fix, Action("pip-install", where, python, install=True) if requirements.is_file() else None
        )
    # A global interpreter: never installed into; the service gets its own virtualenv, which `up`
    # uses from then on (unless airadev.toml says venv = false).
    if not service.venv:
        return error(rid, message, f"install them where {shown} finds them, or remove venv = false and: {new_venv}")
    action = Action("new-venv", where, install=True) if requirements.is_file() else None
    return error(rid, message, new_venv, action)


def _uv_sync(rid: str, where: str, ctx: Context, message: str = "") -> Result:
    message = message or f"{where}: a uv project (uv.lock) without its .venv"
    if shutil.which("uv", path=ctx.env.get("PATH")) is None:
        return error(
            rid, message + "; uv is not installed", f"install uv (pip install --user uv), then cd {where} && uv sync"
        )
    return error(rid, message, f"cd {where} && uv sync", Action("uv-sync", where, install=True))


def _pyproject(path: Path) -> list[str]:
    """[project] dependencies of a pyproject.toml (a uv or a pip project without requirements.txt)."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return []
    found = data.get("project", {}).get("dependencies", [])
    return [d for d in found if isinstance(d, str)]


def _requires_python(path: Path) -> tuple[int, ...] | None:
    """The lowest Python its pyproject.toml's requires-python (">=3.10") allows."""
    import tomllib

    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {}).get("requires-python", "")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    match = re.search(r">=\s*(\d+)\.(\d+)", str(spec))
    return (int(match.group(1)), int(match.group(2))) if match else None
