"""`airadev run SERVICE [--] CMD...`: a one-off command in a service's environment, as compose
`run` and honcho `run` give one: its folder, its virtualenv first on PATH, its env files and env
table, what the stack gives it (the database's DATABASE_URL), whether or not the stack runs.

The command replaces this process (exec): it has this terminal (stdin, tty, signals, job
control) and its exit code is `airadev run`'s. It carries no marker of the run, so `down` and
the reaper leave it alone: it is the user's, not the stack's."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from airadev.errors import AiradevError
from airadev.model import Config, Runtime
from airadev.reaper import MARKER_VARS
from airadev.runtimes.environment import service_env, stack_env


def command_env(config: Config, name: str) -> tuple[dict[str, str], str]:
    """(the environment, the folder) a one-off command of ``name`` runs with."""
    service = config.get(name)
    if service.runtime is not Runtime.PROCESS:
        kind = service.runtime.what
        raise AiradevError(
            f"services.{name} runs as {kind}: `airadev run` runs commands in a process service's environment",
            "run a command in the container with `docker exec`; for the database, `airadev run` another "
            "service with psql (it gets DATABASE_URL)",
        )
    env = service_env(service, "", colour=False, stack=stack_env(config, service))
    for var in MARKER_VARS:
        env.pop(var, None)
    return env, str(service.cwd)


def exec_in(config: Config, name: str, argv: Sequence[str]) -> None:
    """Replace this process with ``argv`` (default: the user's shell) in ``name``'s environment."""
    env, cwd = command_env(config, name)
    argv = list(argv) or [os.environ.get("SHELL") or "/bin/sh"]
    program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH"))
    if program is None:
        raise AiradevError(
            f"{argv[0]} is not found in {name}'s environment (its virtualenv, then PATH)",
            f"install it there, or give its path: airadev run {name} -- /path/to/{argv[0]}",
        )
    os.chdir(cwd)
    os.execve(program, argv, env)
