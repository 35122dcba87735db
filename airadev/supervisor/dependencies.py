"""What services do about each other: a start waits for what the service depends on (or is
blocked when that failed), a dependency that stops being healthy is told to its dependents, one
restarted restarts those that asked for it (``restart = true``), and one ready again starts the
dependents it had blocked. State changes go through the supervisor. Loop-only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airadev import graph
from airadev.model import Condition, State
from airadev.supervisor.unit import Unit, dependency_verdict

if TYPE_CHECKING:
    from airadev.supervisor.runner import Supervisor


class Dependencies:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    async def wait_for(self, unit: Unit) -> bool:
        """Wait until what ``unit`` depends on allows its start (every start, restarts too);
        False when it never will (a dependency failed: ``unit`` is blocked) or it was stopped."""
        for dep in unit.service.depends_on:
            other = self.sup.units.get(dep.name)
            if other is None:  # not in this run (`up --no-deps`): not waited for
                continue
            announced = False
            while True:
                changed = self.sup.changed
                if unit.stop_requested:
                    return False
                verdict = dependency_verdict(other, dep.condition)
                if verdict is True:
                    break
                if verdict is False:
                    message = f"not started: {dep.name} is {other.state}"
                    self.sup._set_state(unit, State.BLOCKED, message)
                    self.sup.event(unit.name, message, "error")
                    return False
                if not announced:
                    self.sup._set_state(unit, State.WAITING, f"waiting for {dep.name} ({dep.condition})")
                    if unit.starts:  # a restart held back: say why it does not come
                        self.sup.event(unit.name, f"held: waiting for {dep.name} ({dep.condition}), now {other.state}")
                    announced = True
                await changed.wait()
        return True

    def _of(self, unit: Unit) -> list[tuple[Unit, Any]]:
        """The services that depend on ``unit``, each with its dependency on it."""
        found = []
        for name in graph.dependents(self.sup.graph, unit.name):
            other = self.sup.units[name]
            found += [(other, dep) for dep in other.service.depends_on if dep.name == unit.name]
        return found

    def tell(self, unit: Unit) -> None:
        """A service that needs ``unit`` healthy keeps running when it is not any more (airadev
        cannot know whether it copes), but the user is told, and its next start is held."""
        if self.sup.stopping or unit.stop_requested:
            return
        for other, dep in self._of(unit):
            if dep.condition is Condition.HEALTHY and other.instance is not None and not other.stop_requested:
                then = (
                    f"it is restarted after {unit.name} restarts"
                    if dep.restart
                    else f"a restart of it waits for {unit.name}"
                )
                self.sup.event(
                    other.name,
                    f"{unit.name} is {unit.state} now ({unit.message or 'no reason given'}); {then}",
                    "warning",
                )

    def restart_after(self, unit: Unit) -> None:
        """``unit`` was restarted and is ready again: restart those that asked for it (not for a
        start of `airadev attach`, or when it is given back: its dependents keep running)."""
        quiet, unit.quiet_start = unit.quiet_start, False
        if self.sup.stopping or quiet:
            return
        for other, dep in self._of(unit):
            started = other.started_at or 0.0
            if (
                dep.restart
                and dep.condition is not Condition.COMPLETED
                and other.instance is not None
                and not other.stop_requested
                and not other.restart_requested
                and started < (unit.started_at or 0.0)
            ):
                self.sup.spawn_task(self.sup.restart_unit(other, f"{unit.name} was restarted"), f"restart-{other.name}")

    def resume_blocked(self, ready: Unit) -> None:
        """A service that became ready again unblocks the dependents it had blocked."""
        for name in graph.dependents(self.sup.graph, ready.name):
            other = self.sup.units[name]
            if other.state is State.BLOCKED and not other.stop_requested and not self.sup.stopping:
                self.sup.event(name, f"{ready.name} is {ready.state} now: starting")
                self.sup.spawn_task(self.sup.start_unit(other), f"unblock-{name}")
