"""One service as the supervisor sees it (``Unit``, loop-owned), and the pure parts of its
lifecycle: the restart policy's decision and backoff, whether a dependency's condition holds,
how an exit is described. The console's side of the supervisor (``Observer``) is here too."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from airadev import logstore, reaper
from airadev.graph import critical_path
from airadev.model import Condition, Config, RestartPolicy, Service, State
from airadev.runtimes import Instance
from airadev.status import ReadySummary

if TYPE_CHECKING:
    from airadev.supervisor.attach import Handover

# A partial line is shown after this long without more output. Well above the process
# runtime's pause in a steady trickle (process._HOLD, 0.1 s): a line written in two parts
# across such a pause must not be cut in two.
PARTIAL_LINE_PAUSE = 0.25
TAIL_BYTES = 8192  # recent output kept per service, shown when it crash-loops


class Observer(Protocol):
    """Who is told what happens: the console renderer in the foreground, nobody when detached
    (the log files are written either way). Called on the loop thread only."""

    def output(self, service: str, lines: bytes) -> None: ...
    def event(self, service: str | None, message: str, level: str = "info") -> None: ...
    def ready(self, summary: ReadySummary) -> None: ...


class NullObserver:
    def output(self, service: str, lines: bytes) -> None:
        pass

    def event(self, service: str | None, message: str, level: str = "info") -> None:
        pass

    def ready(self, summary: ReadySummary) -> None:
        pass


def backoff_delay(restart_number: int, base: float, cap: float, jitter: float, rng: random.Random) -> float:
    """Seconds to wait before the ``restart_number``-th restart in a row (from 1): exponential,
    capped, and scaled down by up to ``jitter`` so that services failing together do not
    restart in lockstep."""
    delay = min(cap, base * (2 ** (restart_number - 1)))
    return delay * (1 - jitter * rng.random())


def restarts_after(policy: RestartPolicy, code: int) -> bool:
    """Whether the restart policy restarts a service that exited with ``code``."""
    return policy is RestartPolicy.ALWAYS or (policy is RestartPolicy.ON_FAILURE and code != 0)


@dataclass(eq=False)
class Unit:
    """The supervisor's mutable record of one service. Loop-owned."""

    service: Service
    state: State = State.WAITING
    message: str = ""
    instance: Instance | None = None
    pid: int | None = None
    pgid_start: int | None = None  # start time (clock ticks) of the group leader, to recognise it later
    started_at: float | None = None  # monotonic, of the current instance
    started_wall: float | None = None
    first_start: float | None = None
    ready_at: float | None = None  # monotonic, first time ready in this run
    ever_started: bool = False
    restarts: int = 0
    starts: int = 0
    streak: int = 0
    exit_code: int | None = None
    health: str = ""
    task: asyncio.Task[None] | None = None
    probe_task: asyncio.Task[None] | None = None
    stop_requested: bool = False
    restart_requested: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    framer: logstore.LineFramer = field(default_factory=logstore.LineFramer)
    log: logstore.LogFile | None = None
    tail: bytes = b""
    last_output: float = 0.0
    flush_handle: asyncio.TimerHandle | None = None
    log_regex: re.Pattern[bytes] | None = None
    awaiting_log_match: bool = False
    matched_early: bool = False  # the log probe's line came while the runtime was still starting it
    cpu_sample: tuple[float, float] | None = None
    runtime_info: dict[str, Any] = field(default_factory=dict)  # the last instance's info()
    fix: str = ""  # how to fix why it could not start (shown by `up -d`)
    fatal: str = ""  # why the last instance can never become ready (a broken migration)
    # A task (a migration, a prestart script): ready when it has completed, not while it runs
    # (`one_shot`); its ready time in the summary is its real run time.
    one_shot: bool = False
    handover: Handover | None = None  # its next start goes to the terminal of `airadev attach`
    quiet_start: bool = False  # the next start (attached, given back) restarts no dependent

    @property
    def ready(self) -> bool:
        return self.state is State.COMPLETED if self.one_shot else self.state.ready

    @property
    def name(self) -> str:
        return self.service.name

    def started(self, instance: Instance) -> None:
        """Record that ``instance`` was started (a restart asked for before it is fulfilled by it)."""
        now = time.monotonic()
        self.instance = instance
        self.runtime_info = instance.info()
        self.restart_requested = False
        self.pid = instance.pid
        self.pgid_start = reaper.start_time(instance.pid) if instance.pid else None
        self.started_at = now
        self.started_wall = time.time()
        self.first_start = self.first_start or now
        self.exit_code = None
        self.health = ""
        self.ever_started = True


def dependency_verdict(unit: Unit, condition: Condition) -> bool | None:
    """True: satisfied; False: never will be; None: not yet."""
    state = unit.state
    if condition is Condition.COMPLETED:
        if state is State.COMPLETED:
            return True
        return False if state in (State.FAILED, State.CRASH_LOOP, State.BLOCKED) else None
    if state in (State.FAILED, State.CRASH_LOOP, State.BLOCKED):
        return False
    if condition is Condition.STARTED:
        return True if unit.ever_started else None
    if state is State.STOPPED:  # stopped by the user: blocked until started again (_resume_blocked)
        return False
    return True if state.ready else None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def changed_files(paths: list[Path], base: Path) -> str:
    """The files a watch restart names: the first three, relative to the service's folder."""
    shown = ", ".join(relative(p, base) for p in paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def is_one_shot(service: Service, config: Config) -> bool:
    """A task: something waits for it to complete (`depends_on = { NAME = "completed" }`). (Not
    every service that is never restarted: a worker with restart = "no" runs until stopped.)"""
    return any(
        d.name == service.name and d.condition is Condition.COMPLETED for s in config.services for d in s.depends_on
    )


def exit_message(unit: Unit, code: int) -> str:
    """What the log says when an instance exits; a task that completed, how long it ran."""
    if unit.one_shot and code == 0:
        return f"completed in {time.monotonic() - (unit.started_at or time.monotonic()):.2f}s"
    return f"exited: {describe_exit(code)}"


def summarize(units: Mapping[str, Unit], graph: Mapping[str, list[str]], t0: float) -> ReadySummary:
    """Once every service is ready: when each was, how long it took itself, the critical path."""
    ready = {n: u.ready_at - t0 for n, u in units.items() if u.ready_at is not None}
    started = {n: (u.first_start or t0) - t0 for n, u in units.items()}
    own = {n: ready[n] - started[n] for n in ready}
    return ReadySummary(
        services=tuple((n, ready[n], own[n]) for n in sorted(ready, key=ready.__getitem__)),
        critical_path=tuple(critical_path(graph, ready, started)),
        total=max(ready.values(), default=0.0),
    )
