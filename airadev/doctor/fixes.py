"""`doctor --fix`: the safe, idempotent fixes checks ask for. Nothing destructive is ever done:
a file is created only where none is, modes are only tightened, lines are only added to a
.gitignore, and packages are installed only when asked (--install, or yes at a prompt)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from airadev.doctor.base import Action, Context


def plan(actions: Sequence[Action]) -> list[Action]:
    """Each action once, in a stable order."""
    seen: dict[tuple[str, str, str], Action] = {}
    for action in actions:
        seen.setdefault((action.kind, action.target, action.detail), action)
    return list(seen.values())


def apply(action: Action, ctx: Context) -> str:
    """Carry out one action; returns what was done (or why nothing was)."""
    root = ctx.root or Path.cwd()
    return FIXERS[action.kind](action, root)


def _create_env(action: Action, root: Path) -> str:
    from airadev.integrations.envfile import TEMPLATES

    target = root / action.target
    if target.exists():
        return f"{action.target} exists already: left as it is"
    if not target.parent.is_dir():
        return f"its folder {target.parent.name}/ is missing (clone the service first): left alone"
    template = TEMPLATES / action.detail.removeprefix("env-templates/")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, template.read_bytes())
    finally:
        os.close(fd)
    return f"created {action.target} from {action.detail} (mode 0600): fill in its values"


def _gitignore(action: Action, root: Path) -> str:
    from airadev.workspace import ensure_ignored

    added = ensure_ignored(root / action.target, action.detail)  # (target may be absolute: another repo's)
    return f"added {action.detail} to {action.target}" if added else f"{action.target} already ignores {action.detail}"


def _chmod(action: Action, root: Path) -> str:
    path = root / action.target
    os.chmod(path, os.stat(path).st_mode & 0o700 & ~0o111 | 0o600)
    return f"{action.target} is mode 0600 now"


def _reap(action: Action, root: Path) -> str:
    from airadev.supervisor.leftovers import reap_leftovers
    from airadev.state import AlreadyRunning, Lock, Paths

    paths = Paths(root)
    lock = Lock(paths)
    try:
        lock.acquire()
    except AlreadyRunning:
        return "a stack is starting or running: left alone"
    try:
        ended = reap_leftovers(paths)
    finally:
        lock.release()
    return f"ended {ended} processes a dead run left"


def _npm_ci(action: Action, root: Path) -> str:
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed: nothing done"
    # Its output goes to stderr: stdout is doctor's report (or its JSON).
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=root / action.target,
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno(),
    )
    return f"npm ci in {action.target}: " + ("done" if done.returncode == 0 else f"failed (exit {done.returncode})")


def _pip_install(action: Action, root: Path) -> str:
    """Into the service's virtualenv the check looked at (``action.detail``); without one
    ("new-venv"), into a new .venv/ in its folder: never into a global interpreter."""
    folder = root / action.target
    python = Path(action.detail) if action.detail else None
    if python is None or not python.exists():
        venv = folder / ".venv"
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], check=False, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno()
        )
        python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", "requirements.txt"],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr.fileno(),
    )
    return f"installed {action.target}/requirements.txt with {python}: " + (
        "done" if done.returncode == 0 else f"failed (exit {done.returncode})"
    )


def _node_install(action: Action, root: Path) -> str:
    """The package manager's own frozen install (``action.detail``), in the folder of its lockfile."""
    import shlex

    argv = shlex.split(action.detail)
    program = shutil.which(argv[0])
    if program is None:
        return f"{argv[0]} is not installed: nothing done"
    done = subprocess.run(
        [program, *argv[1:]], cwd=root / action.target, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno()
    )
    return f"{action.detail} in {action.target}: " + (
        "done" if done.returncode == 0 else f"failed (exit {done.returncode})"
    )


def _uv_sync(action: Action, root: Path) -> str:
    uv = shutil.which("uv")
    if uv is None:
        return "uv is not installed: nothing done"
    done = subprocess.run([uv, "sync"], cwd=root / action.target, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno())
    return f"uv sync in {action.target}: " + ("done" if done.returncode == 0 else f"failed (exit {done.returncode})")


FIXERS: dict[str, Callable[[Action, Path], str]] = {
    "node-install": _node_install,
    "uv-sync": _uv_sync,
    "create-env": _create_env,
    "gitignore": _gitignore,
    "chmod": _chmod,
    "reap": _reap,
    "npm-ci": _npm_ci,
    "pip-install": _pip_install,
    "new-venv": _pip_install,  # no interpreter given: a new .venv in the folder
}
