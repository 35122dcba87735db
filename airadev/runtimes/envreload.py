"""An env file of a running UI rewritten under the supervisor (the tunnel's address, the Stripe
listener's signing secret): journaled, and the UI seen to reload it (Next.js says `Reload env:
.env.local`), else restarted. Loop-only; ``sup`` is the supervisor."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airadev import rewiring

RELOAD_ENV = re.compile(rb"Reload env: \S*\.env")
RELOAD_WAIT = 10.0


async def rewire(
    sup: Any,
    journal: rewiring.Journal,
    ui_name: str | None,
    path: Path,
    variable: str,
    value: str,
    check: Callable[[], None] = lambda: None,
    written: Callable[[], None] = lambda: None,
) -> str:
    """Set ``variable`` to ``value`` in ``path``; what the UI did about it: "no UI running",
    "not needed (the value was already there)", "reloaded by Next.js" or "restarted". ``check``
    raises to give up between the steps (the stack stopping); ``written`` is told once the file
    holds the value."""
    ui_unit = sup.units.get(ui_name) if ui_name else None
    if ui_unit is not None and ui_unit.instance is not None and not ui_unit.state.ready:
        # A UI still starting may or may not have read the file yet; once it is ready, a
        # change is one it will notice (or be restarted for).
        await sup.wait_until(lambda: ui_unit.state.ready or ui_unit.state.failed or ui_unit.instance is None)
        check()
    reloaded = sup.output.wait_for(ui_unit, RELOAD_ENV) if ui_unit is not None and ui_unit.instance else None
    changed = await asyncio.to_thread(rewiring.rewire_env_file, journal, path, variable, value)
    written()
    if reloaded is None or ui_unit is None or not changed:
        return "no UI running" if reloaded is None else "not needed (the value was already there)"
    if await sup.wait_or_stop(reloaded, RELOAD_WAIT):
        sup.event(ui_unit.name, f"reloaded {path.name} by itself")
        return "reloaded by Next.js"
    check()
    sup.event(ui_unit.name, f"did not reload {path.name} within {RELOAD_WAIT:g}s: restarting it", "warning")
    await sup.restart_unit(ui_unit, f"{path.name} changed and it did not reload it")
    return "restarted"


def relative(path: Any, root: Any) -> str:
    """``path`` as the log and status show it: from the workspace, when it is in it."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
