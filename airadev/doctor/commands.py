"""Each service's command resolves before `up` runs it: its program is found where `up` looks
(the service's virtualenv, then PATH), and what it names is there: `python main.py`'s file,
`uvicorn module:app`'s module, `fastapi dev path`'s file, `npm run dev`'s script."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

from airadev.doctor.base import Context, Result, check, error, ok, skipped

PYTHON_TOOLS = ("uvicorn", "gunicorn", "hypercorn", "fastapi", "flask", "celery", "alembic", "django-admin")
NODE_RUNNERS = ("npm", "pnpm", "yarn", "bun")


@check("workspace.commands", "each service's command resolves", requires=("workspace.config",))
def commands(ctx: Context) -> list[Result]:
    from airadev.model import Runtime

    config = ctx.config
    results = []
    for service in config.services:
        if service.runtime is not Runtime.PROCESS or not service.command:
            continue
        results.append(_resolve(service, ctx))
    return results or [skipped("workspace.commands", "no service runs as a process")]


def _argv(service: Any) -> list[str]:
    argv = list(service.command)
    if argv[:2] == ["/bin/sh", "-c"] and len(argv) > 2:
        try:
            argv = shlex.split(argv[2])
        except ValueError:
            return []
    while argv and re.match(r"^\w+=", argv[0]):  # VAR=value program ...
        argv.pop(0)
    return argv


def _resolve(service: Any, ctx: Context) -> Result:
    from airadev.errors import AiradevError
    from airadev.runtimes.environment import find_venv

    rid = f"workspace.commands:{service.name}"
    argv = _argv(service)
    if not argv or argv[0].startswith(("$", "(")) or argv[0] in ("exec", "cd", "."):
        return skipped(
            rid, f"{service.name}: a shell command airadev does not read ({shlex.join(service.command)[:60]})"
        )
    try:
        venv = find_venv(service)
    except AiradevError as exc:
        return error(rid, exc.message, exc.fix)
    path = os.pathsep.join([*([str(venv / "bin")] if venv else []), ctx.env.get("PATH", os.defpath)])
    looked = f"{ctx.relative(venv)}/bin and PATH" if venv else "PATH (the service has no virtualenv)"
    if argv[:2] == ["uv", "run"]:
        if shutil.which("uv", path=path) is None:
            return error(rid, f"{service.name}: `uv` is not found ({looked})", "install uv (pip install --user uv)")
        argv = argv[2:] or ["python"]
        if (service.cwd / ".venv" / "bin").is_dir():
            path = os.pathsep.join([str(service.cwd / ".venv" / "bin"), path])
        else:
            return ok(rid, f"{service.name}: uv run (uv makes the project's .venv on first run)")
    program = argv[0]
    if "/" in program:
        exe = (service.cwd / program).resolve()
        found = str(exe) if exe.is_file() and os.access(exe, os.X_OK) else None
    else:
        found = shutil.which(program, path=path)
    if found is None:
        fix = (
            f"install it into the service's virtualenv ({ctx.relative(venv)}/bin/pip install {program})"
            if venv and program in PYTHON_TOOLS
            else f"make a virtualenv with it (cd {ctx.relative(service.cwd)} && python3 -m venv .venv && .venv/bin/pip install {program})"
            if program in PYTHON_TOOLS
            else f"install {program}, or fix services.{service.name}.command"
        )
        return error(rid, f"{service.name}: `{program}` is not found ({looked})", fix)
    missing = _named_file(argv, service.cwd)
    if missing:
        return error(rid, f"{service.name}: {missing}", f"fix services.{service.name}.command, or its cwd")
    return ok(rid, f"{service.name}: {program} is {found}")


def _named_file(argv: list[str], cwd: Path) -> str:
    """What the command names that is not there, or ""."""
    program = Path(argv[0]).name
    args = argv[1:]
    if (program.startswith("python") and args and args[0].endswith(".py")) or (
        program in ("bash", "sh") and args and args[0].endswith(".sh")
    ):
        return "" if (cwd / args[0]).is_file() else f"{args[0]} does not exist in {cwd}"
    if program in ("uvicorn", "gunicorn", "hypercorn"):
        target = next((a for a in args if re.match(r"^[\w.]+:[\w()]+$", a)), None)
        app_dir = args[args.index("--app-dir") + 1] if "--app-dir" in args[:-1] else "."
        if target is not None:
            module = target.split(":")[0].replace(".", "/")
            base = cwd / app_dir
            if not ((base / f"{module}.py").is_file() or (base / module / "__init__.py").is_file()):
                return f"{target}: no module {target.split(':')[0]} ({module}.py) in {base}"
    if program == "fastapi" and len(args) > 1 and args[0] in ("dev", "run") and args[1].endswith(".py"):
        return "" if (cwd / args[1]).is_file() else f"{args[1]} does not exist in {cwd}"
    if program in NODE_RUNNERS and args:
        script = args[1] if args[0] == "run" and len(args) > 1 else args[0]
        try:
            package = json.loads((cwd / "package.json").read_text())
            scripts = package.get("scripts", {}) if isinstance(package, dict) else None
        except (OSError, ValueError):
            scripts = None
        scripts = scripts if isinstance(scripts, dict) else None
        builtin = ("install", "ci", "exec", "x", "dlx", "start", "test")
        if scripts is not None and script not in scripts and script not in builtin and not script.startswith("-"):
            return f"package.json has no `{script}` script"
    return ""
