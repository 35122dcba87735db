"""`airadev dash`: a live terminal dashboard of the running stack (app.py, textual), fed by
feed.py (state file, /proc, log files, inotify). Nothing else in airadev imports textual."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from airadev.errors import UsageError
from airadev.model import Config
from airadev.state import Paths


def terminal_or_refuse() -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "the dashboard needs a terminal", "run it in one; `airadev status` and `logs -f` work anywhere"
        )


def show(paths: Paths, config: Callable[[], Config], *, owner: bool = False) -> None:
    """The dashboard in this terminal until it is quit (q, Ctrl-C). ``owner``: `up --dash`
    started the stack, and it is stopped afterwards, as Ctrl-C stops `up` (whatever ends the
    dashboard: its supervisor stops the stack by itself if this process is killed)."""
    terminal_or_refuse()
    from airadev import views
    from airadev.dash.app import Dash
    from airadev.operations import manage

    try:
        Dash(paths, config, owner=owner).run()
    finally:
        if owner:
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
    terminal_or_refuse()
    from airadev import render
    from airadev.operations import up as op

    held = op.start_held(config, names, tunnel=tunnel, runtime=runtime, build=build)
    for note in held.notes:
        render.warn(note)
    show(held.paths, load, owner=True)
