"""One folder's app: a Python web app (FastAPI, Flask, Django) by its entry file, or a Node app by
its package.json's dev script; how it starts, in which interpreter, on which port, probed how.

Read from the files only: nothing is imported or run."""

from __future__ import annotations

import json
import re
from pathlib import Path

from airadev.detect.found import Found, env_value, read_text

# Where a Python web app's `app = FastAPI()` is looked for, in this order: the folder's own
# entry files, then a package's (app/main.py, src/PKG/main.py).
ENTRY_FILES = ("main.py", "app.py", "server.py", "api.py", "asgi.py", "wsgi.py")
SKIP_DIRS = {
    ".venv",
    "venv",
    "env",
    "node_modules",
    "__pycache__",
    ".git",
    "tests",
    "test",
    "dist",
    "build",
    "migrations",
}
_APP_RE = {
    "FastAPI": re.compile(r"^(\w+)\s*(?::\s*[\w.]+\s*)?=\s*(?:fastapi\.)?FastAPI\(", re.M),
    "Flask": re.compile(r"^(\w+)\s*(?::\s*[\w.]+\s*)?=\s*(?:flask\.)?Flask\(", re.M),
}
_MAIN_RE = re.compile(r"""^if\s+__name__\s*==\s*['"]__main__['"]\s*:""", re.M)
_RUN_PORT_RE = re.compile(r"uvicorn\.run\([^)]*?\bport\s*=\s*([\w.]+)", re.S)
# PORT = int(os.getenv("PORT", 5050)) / os.environ.get('PORT', '5050')
_PORT_VAR_RE = r"^{name}\s*=\s*int\(\s*os\.(?:getenv|environ\.get)\(\s*['\"](\w+)['\"]\s*,\s*['\"]?(\d+)"
_FASTAPI_CLI_RE = re.compile(r"\bfastapi\s+(?:dev|run)\b")
DEFAULT_PORT = {"FastAPI": 8000, "Flask": 5000, "Django": 8000}


def python_app(folder: Path, default_port: int | None = None) -> Found | None:
    """The folder's Python web app, or None. ``default_port`` (Compose's published port) is
    used where neither the code nor the env files decide."""
    entry = _entry(folder)
    if entry is None:
        return None
    path, framework, variable = entry
    relative = path.relative_to(folder).as_posix()
    why = [f"{framework} app in {relative}" + (f" ({variable} = {framework}())" if variable else "")]
    text = read_text(path)
    port, port_var = default_port or DEFAULT_PORT[framework], "PORT"
    source = "the port Compose publishes" if default_port else f"{framework}'s default"
    runs_itself = framework == "FastAPI" and _MAIN_RE.search(text) and "uvicorn.run(" in text
    if runs_itself:
        code_port = _code_port(text)
        if code_port is not None:
            port, port_var = code_port[0], code_port[1] or port_var
            source = relative
    from_env = _env_port(folder, port_var)
    if from_env is not None:
        port, source = from_env
    module = relative[: -len(".py")].replace("/", ".")
    if runs_itself:
        command = f"python {relative}"
        why.append(f"started as `{command}`: the file runs uvicorn itself")
    elif framework == "Django":
        command = f"python manage.py runserver 127.0.0.1:{port} --noreload"
    elif framework == "Flask":
        command = f"flask --app {module} run --port {port}"
    elif _uses_fastapi_cli(folder):
        command = f"fastapi dev {relative} --no-reload --host 127.0.0.1 --port {port}"
        why.append("started with `fastapi dev` (as its scripts do), airadev's watcher reloading")
    else:
        command = f"uvicorn {module}:{variable} --host 127.0.0.1 --port {port}"
    why.append(f"port {port} from {source}")
    keys: dict[str, object] = {}
    venv = _venv(folder)
    if not venv and ((folder / "uv.lock").is_file() or (folder.parent / "uv.lock").is_file()):
        command = f"uv run {command}"
        why.append("a uv project and no .venv yet: run through `uv run`")
    elif venv:
        why.append(f"interpreter: {venv}/")
    else:
        why.append("no .venv or venv/ in the folder: the python on PATH (`airadev doctor` says how to make one)")
    keys["command"] = command
    if venv not in ("", ".venv", "venv"):  # airadev looks for .venv and venv by itself
        keys["venv"] = venv
    env_files = [name for name in (".env",) if (folder / name).is_file() or _example(folder)]
    if env_files:
        keys["env_files"] = env_files
    keys["port"] = port
    health = _health_path(text, variable) if framework == "FastAPI" else None
    keys["health"] = {"http": health} if health else {"tcp": True}
    keys["watch"] = ["."]
    return Found(
        name="",
        kind="python",
        folder=folder,
        keys=keys,
        why=why,
        port_fixed=bool(runs_itself) or source != f"{framework}'s default",
    )


def _entry(folder: Path) -> tuple[Path, str, str] | None:
    manage = folder / "manage.py"
    if manage.is_file() and "django" in read_text(manage).lower():
        return manage, "Django", ""
    candidates = [folder / name for name in ENTRY_FILES]
    # then any other module of the folder (a Flask app in reminders.py), then packages'
    candidates += sorted(p for p in folder.glob("*.py") if p.name not in ENTRY_FILES)[:40]
    for package in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in SKIP_DIRS):
        if package.name == "src":
            candidates += [sub / name for sub in sorted(package.iterdir()) if sub.is_dir() for name in ENTRY_FILES]
        elif (package / "__init__.py").is_file():  # a package; a plain folder is an app of its own
            candidates += [package / name for name in ENTRY_FILES]
    for path in candidates:
        if not path.is_file():
            continue
        text = read_text(path)
        for framework, pattern in _APP_RE.items():
            match = pattern.search(text)
            if match:
                return path, framework, match.group(1)
    return None


def _code_port(text: str) -> tuple[int, str] | None:
    """uvicorn.run(..., port=5050) or port=PORT with PORT = int(os.getenv("PORT", 5050))."""
    match = _RUN_PORT_RE.search(text)
    if not match:
        return None
    value = match.group(1)
    if value.isdigit():
        return int(value), ""
    var = re.search(_PORT_VAR_RE.format(name=re.escape(value)), text, re.M)
    return (int(var.group(2)), var.group(1)) if var else None


def _env_port(folder: Path, name: str) -> tuple[int, str] | None:
    for file in (".env", ".env.local", *_example_names()):
        value = env_value(folder / file, name)
        if value and value.isdigit():
            return int(value), f"{name} in {file}"
    return None


def _example_names() -> tuple[str, ...]:
    return (".env.example", ".env.sample", ".env.template")


def _example(folder: Path) -> Path | None:
    for name in _example_names():
        if (folder / name).is_file():
            return folder / name
    return None


def _venv(folder: Path) -> str:
    """The app's virtualenv, relative to its folder: .venv, venv or env in it; or a uv
    workspace's, at the workspace root (the parent folder, holding uv.lock)."""
    for name in (".venv", "venv", "env"):
        if (folder / name / "bin" / "python").exists():
            return name
    if (folder.parent / "uv.lock").is_file() and (folder.parent / ".venv" / "bin" / "python").exists():
        return "../.venv"
    return ""


def _uses_fastapi_cli(folder: Path) -> bool:
    scripts = [folder / "start.sh", folder / "Dockerfile", *sorted((folder / "scripts").glob("*.sh"))]
    return any(p.is_file() and _FASTAPI_CLI_RE.search(read_text(p)) for p in scripts)


def _health_path(text: str, variable: str) -> str:
    """A health route declared on the app itself (`@app.get("/health")`); a router's prefix is
    not known from one file, so only the app's own routes count."""
    pattern = rf"@{re.escape(variable)}\.(?:get|api_route|route)\(\s*['\"](/[\w/.-]*health[\w/.-]*)['\"]"
    match = re.search(pattern, text)
    return match.group(1) if match else ""


# --- Node ------------------------------------------------------------------------------------

LOCKFILES = (
    ("pnpm-lock.yaml", "pnpm"),
    ("yarn.lock", "yarn"),
    ("bun.lockb", "bun"),
    ("bun.lock", "bun"),
    ("package-lock.json", "npm"),
)
_PORT_FLAG_RE = re.compile(r"(?:-p|--port)[ =](\d+)")


def package_manager(folder: Path) -> tuple[str, str]:
    """(npm | pnpm | yarn | bun, why): by lockfile, the folder's or, in a monorepo, its
    workspace root's; else package.json's packageManager; else npm."""
    monorepo = "workspaces" in _package(folder.parent) or (folder.parent / "pnpm-workspace.yaml").is_file()
    for where in (folder, folder.parent) if monorepo else (folder,):
        for name, manager in LOCKFILES:
            if (where / name).is_file():
                return manager, name if where == folder else f"../{name}"
    declared = _package(folder).get("packageManager", "")
    if isinstance(declared, str) and declared.split("@")[0] in ("npm", "pnpm", "yarn", "bun"):
        return declared.split("@")[0], "packageManager in package.json"
    return "npm", "no lockfile"


def _package(folder: Path) -> dict[str, object]:
    try:
        data = json.loads(read_text(folder / "package.json") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def node_app(folder: Path, default_port: int | None = None) -> Found | None:
    """The folder's Node app: its dev script, run by its package manager. ``default_port`` as
    for ``python_app``."""
    package = _package(folder)
    scripts = package.get("scripts")
    if not isinstance(scripts, dict) or "workspaces" in package:
        return None  # no scripts, or a monorepo's root: its apps are in their folders
    script_name = (
        "dev" if isinstance(scripts.get("dev"), str) else "start" if isinstance(scripts.get("start"), str) else ""
    )
    if not script_name:
        return None
    script = str(scripts[script_name])
    manager, lock_why = package_manager(folder)
    run = f"{manager} run {script_name}"
    why = [f"package.json's {script_name} script `{script}`, run by {manager} ({lock_why})"]
    keys: dict[str, object] = {}
    flag = _PORT_FLAG_RE.search(script)
    if "next" in script.split() or script.startswith("next "):
        port = int(flag.group(1)) if flag else _node_env_port(folder) or default_port or 3000
        extra = "" if flag else f" {'-- ' if manager == 'npm' else ''}-p {port}"
        keys["command"] = run + extra
        why.append(f"Next.js on port {port}" + ("" if flag else " (passed: next dev moves silently otherwise)"))
        local = [name for name in (".env.local", ".env") if (folder / name).is_file()]
        if local:
            keys["env_files"] = local
            keys["load_env_files"] = False  # Next.js reads them itself; the environment would win
        keys["env"] = {"NEXT_TELEMETRY_DISABLED": "1"}
        keys["port"] = port
        keys["health"] = {"http": "/", "timeout": "60s", "start_period": "180s"}
    elif "vite" in script.split():
        port = int(flag.group(1)) if flag else default_port or 5173
        extra = "" if flag else f" {'-- ' if manager == 'npm' else ''}--port {port} --strictPort"
        keys["command"] = run + extra
        why.append(f"Vite on port {port}")
        keys["port"] = port
        keys["health"] = {"http": "/", "timeout": "30s", "start_period": "60s"}
    else:
        keys["command"] = run
        given = int(flag.group(1)) if flag else _node_env_port(folder) or default_port
        if given:
            keys["port"] = given
            keys["health"] = {"tcp": True}
    if not (folder / "node_modules").is_dir():
        why.append(f"node_modules/ is missing: run `{manager} install` in {folder.name}/")
    fixed = bool(flag or _node_env_port(folder))
    return Found(name="", kind="node", folder=folder, keys=keys, why=why, port_fixed=fixed)


def _node_env_port(folder: Path) -> int | None:
    for name in (".env.local", ".env", ".env.example"):
        value = env_value(folder / name, "PORT")
        if value and value.isdigit():
            return int(value)
    return None
