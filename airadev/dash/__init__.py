"""`airadev dash`: a live terminal dashboard of the running stack (app.py, textual), fed by
feed.py (state file, /proc, log files, inotify). Nothing else in airadev imports textual."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from airadev.errors import UsageError
from airadev.model import Config
from airadev.state import Paths


def refuse(detach: bool = False) -> None:
    """Before anything is done: the dashboard shows in this terminal, so it needs one."""
    if detach:
        raise UsageError("--dash shows the stack in this terminal: not with --detach", "leave out one of them")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "the dashboard needs a terminal", "run it in one; `airadev status` and `logs -f` work anywhere"
        )


def show(paths: Paths, config: Callable[[], Config], *, owner: str = "") -> None:
    """The dashboard in this terminal until it is quit (q, Ctrl-C). ``owner``: the run `up --dash`
    started, which is stopped afterwards, as Ctrl-C stops `up` (whatever ends the dashboard: its
    supervisor stops the stack by itself if this process is killed). Only that run: one started
    by another `up` since is left running."""
    refuse()
    from airadev import render, views
    from airadev.dash.app import Dash
    from airadev.operations import manage
    from airadev.state import read_state, supervisor_alive

    try:
        Dash(paths, config, owner=bool(owner)).run()
    finally:
        if owner:
            now = read_state(paths)
            if now and now.get("marker") != owner and supervisor_alive(now):
                render.info("the stack running now is not the one this `up --dash` started: left running")
            else:
                views.stopped(manage.down(paths))


def up(
    config: Config,
    names: Sequence[str],
    load: Callable[[], Config],
    *,
    tunnel: dict[str, Any] | None,
    runtime: str,
    build: bool,
) -> None:
    """`airadev up --dash`: start the stack held by this process, show it, stop it on quitting."""
    refuse()
    from airadev import render
    from airadev.operations import up as op

    held = op.start_held(config, names, tunnel=tunnel, runtime=runtime, build=build)
    for note in held.notes:
        render.warn(note)
    show(held.paths, load, owner=held.marker)
