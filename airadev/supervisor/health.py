"""Health loops: a service's probe (or its runtime's own readiness check) run over and over,
each result reported to the supervisor (``Report``), which alone changes the service's state.

A probe runs every ``start_interval`` until it first passes, then every ``interval``; after
``start_period``, ``retries`` failures in a row make the service unhealthy. A runtime's own
check (a container's HEALTHCHECK, a database that accepts connections and has its migrations)
runs every 0.1 s until ready, then every 5 s; it may find the service can never be ready
(``Fatal``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Protocol

from airadev.model import Probe, ProbeKind
from airadev.runtimes import Fatal, Instance
from airadev.supervisor import probes
from airadev.supervisor.unit import Unit


class Report(Protocol):
    """What the loops tell (the supervisor, on its loop)."""

    def passed(self, unit: Unit, message: str, first: bool) -> None: ...
    def failing(self, unit: Unit, why: str) -> None: ...
    async def fatal(self, unit: Unit, instance: Instance, exc: Fatal) -> None: ...
    def log_trace(self, what: str, exc: BaseException) -> None: ...
    def internal_fix(self) -> str: ...
    def hide(self, text: str) -> str: ...
    def write_state(self) -> None: ...


def _health(unit: Unit, message: str, report: Report, quiet: bool = False) -> None:
    """The last check's result; the state file is written again when it says something new
    (its words are stable: "HTTP 200", "port open"), so that the dashboard shows it. ``quiet``:
    an exec probe's words are its command's output, which may change every time (a clock, a
    count): for those, only a change between passing and failing is written."""
    if message != unit.health:
        unit.health = message
        if not quiet:
            report.write_state()


async def probe_loop(
    unit: Unit, instance: Instance, probe: Probe, env: Mapping[str, str] | None, report: Report
) -> None:
    started = time.monotonic()
    failures = 0
    healthy_once = False
    proxied = getattr(instance, "port_proxied", False)
    passing: bool | None = None
    while True:
        ok, message = await probes.check(probe, env=env, cwd=str(unit.service.cwd), proxied=proxied)
        if unit.instance is not instance:
            return
        message = report.hide(message)  # an exec probe's output may hold anything
        _health(unit, message, report, quiet=probe.kind is ProbeKind.EXEC and ok == passing)
        passing = ok
        if ok:
            failures = 0
            report.passed(unit, message, first=not healthy_once)
            healthy_once = True
        else:
            in_start_period = not healthy_once and time.monotonic() - started < probe.start_period
            if not in_start_period:
                failures += 1
                if failures >= probe.retries:
                    report.failing(unit, f"{probe.describe()}: {message}")
        if healthy_once:
            # Probes of all services wake on the same ticks: one wake-up of the loop per
            # interval instead of one per service keeps an idle stack nearly free.
            now = asyncio.get_running_loop().time()
            await asyncio.sleep(probe.interval - now % probe.interval)
        else:
            await asyncio.sleep(probe.start_interval)


async def own_check_loop(unit: Unit, instance: Instance, report: Report) -> None:
    """Readiness the runtime itself knows: until ready, then every few seconds."""
    failures = 0
    healthy_once = False
    while True:
        try:
            ok, message = await instance.check()  # type: ignore[attr-defined]
        except Exception as caught:  # noqa: BLE001  (this service fails, not the whole stack)
            if unit.instance is not instance:
                return
            exc = (
                caught
                if isinstance(caught, Fatal)
                else Fatal(f"its readiness check failed: {type(caught).__name__}: {caught}", report.internal_fix())
            )
            if not isinstance(caught, Fatal):
                report.log_trace(f"{unit.name}: readiness check", caught)
            await report.fatal(unit, instance, exc)
            return
        if unit.instance is not instance:
            return
        message = report.hide(message)
        _health(unit, message, report)
        if ok:
            failures = 0
            report.passed(unit, message, first=not healthy_once)
            healthy_once = True
        elif healthy_once:
            failures += 1
            if failures >= 3:
                report.failing(unit, message)
        await asyncio.sleep(5.0 if healthy_once else 0.1)
