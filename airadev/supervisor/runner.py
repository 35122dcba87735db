"""The supervisor: starts services in dependency order, watches them, restarts them, stops them.

Concurrency model (DESIGN.md, habit 2): one asyncio loop owns all state. Output arrives through
``add_reader`` callbacks, exits through pidfds, probe results through tasks, file changes from
the watcher thread through ``call_soon_threadsafe``, control requests through the socket
server, signals through ``add_signal_handler``; every one of them runs on the loop, so no lock
guards a service's state. Each service has one lifecycle task that alone starts its instances.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import random
import re
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from airadev.errors import AiradevError
from airadev.model import Condition, Config, ProbeKind, RestartPolicy, Service, State
from airadev.model import Runtime as RuntimeKind
from airadev.state import DOWN_REASON, SCHEMA, Paths, write_json_atomic
from airadev import control, graph, logstore, reaper
from airadev.integrations import engine
from airadev.supervisor import probes
from airadev.supervisor.watchdog import CREATED, CREATING, Watchdog
from airadev.runtimes.environment import service_env, stack_env, stack_secrets
from airadev.runtimes import Context, Fatal, Instance, runtime_for

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


@dataclass(frozen=True)
class ReadySummary:
    # (name, seconds from the start of `up` to ready, seconds from its own start to ready)
    services: tuple[tuple[str, float, float], ...]
    critical_path: tuple[str, ...]
    total: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "services": [{"name": n, "ready_after": round(t, 3), "own_time": round(o, 3)} for n, t, o in self.services],
            "critical_path": list(self.critical_path),
            "total": round(self.total, 3),
        }


def backoff_delay(restart_number: int, base: float, cap: float, jitter: float, rng: random.Random) -> float:
    """Seconds to wait before the ``restart_number``-th restart in a row (from 1): exponential,
    capped, and scaled down by up to ``jitter`` so that services failing together do not
    restart in lockstep."""
    delay = min(cap, base * (2 ** (restart_number - 1)))
    return delay * (1 - jitter * rng.random())


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

    @property
    def name(self) -> str:
        return self.service.name


class Supervisor:
    def __init__(
        self,
        config: Config,
        names: Iterable[str],
        *,
        observer: Observer | None = None,
        marker: str,
        colour: bool = False,
        rng: random.Random | None = None,
        tunnel: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.paths = Paths(config.root)
        self.marker = marker
        self.observer = observer or NullObserver()
        self.colour = colour
        self.rng = rng or random.Random()
        deps = {s.name: [d.name for d in s.depends_on] for s in config.services}
        self.graph = {n: deps[n] for n in graph.closure(deps, names)}
        self.units = {n: Unit(config.get(n)) for n in self.graph}
        self.redact = logstore.Redactor(stack_secrets(config))
        self.clock = logstore.Clock()
        ui = config.ui_service()
        self._tunnel_ui = ui.name if ui else None  # never given the variable the tunnel rewrites
        self.t0 = time.monotonic()
        self.started_wall = time.time()
        self.phase = "starting"
        self.summary: ReadySummary | None = None
        self.failure: dict[str, Any] | None = None
        self._changed = asyncio.Event()
        self._shutdown = asyncio.Event()
        self._signals = 0
        self._server: asyncio.AbstractServer | None = None
        self._watcher: Any = None
        self.watchdog = Watchdog()
        self._own_log: logstore.LogFile | None = None
        self.exit_reason = ""
        self.internal_error: str | None = None
        self.tunnel_request = tunnel  # `up --tunnel`: open one once the voice agent is ready
        self.tunnel: Any = None  # the TunnelController, made when first needed
        # The engine of this run's containers, if it has any: the watchdog and the next run
        # remove them by label from there.
        self.docker_host = ""
        if any(u.service.runtime is RuntimeKind.DOCKER for u in self.units.values()):
            self.docker_host = engine.engine_host()
        # `supabase stop` for the watchdog and the next run, when Supabase is part of this one.
        self.supabase_stop: list[str] = []
        for unit in self.units.values():
            if unit.service.runtime is RuntimeKind.SUPABASE and unit.service.database:
                from airadev.integrations.supabase import find_cli

                project = unit.service.database.project
                cli = find_cli(project, os.environ) if project else None
                if cli:
                    self.supabase_stop = [cli, "stop", "--workdir", str(project)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unclean = False  # a second signal killed everything at once
        self._loop_thread = 0
        self.runtime_context = Context(config, marker, self._on_loop(self.event), hide=self._on_loop(self.redact.add),
                                       creating=lambda begun: self.watchdog.tell(CREATING if begun else CREATED))
        self._output_waiters: dict[str, list[tuple[re.Pattern[bytes], asyncio.Future[None]]]] = {}

    # --- the run ----------------------------------------------------------------------------

    def _on_loop(self, fn: Any) -> Any:
        """``fn`` made callable from a runtime's worker thread: it runs on the loop, which owns
        the logs and the redactor (in call order, so a secret is hidden before output after it)."""
        def call(*args: Any) -> None:
            loop = self._loop
            if loop is None or self._loop_thread == threading.get_ident():
                fn(*args)
            else:
                loop.call_soon_threadsafe(fn, *args)
        return call

    async def run(self) -> str:
        """Run until asked to stop (signal or control request); stop everything; return why."""
        loop = asyncio.get_running_loop()
        self._loop, self._loop_thread = loop, threading.get_ident()
        self.paths.ensure()
        self._open_logs()
        self.watchdog.start(self.marker, max((u.service.stop_grace for u in self.units.values()), default=10.0),
                            self.paths.state, self.docker_host, self.supabase_stop)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            self._server = await asyncio.start_unix_server(self._serve, sock=control.bind(self.paths.socket))
            self.write_state()
            self.event(None, f"starting {len(self.units)} services: {', '.join(self.units)}")
            for unit in self.units.values():
                unit.task = self.spawn_task(self._lifecycle(unit), f"lifecycle-{unit.name}")
            self._start_watcher()
            if self.tunnel_request is not None:
                self.spawn_task(self._tunnel_when_ready(self.tunnel_request), "tunnel-on-start")
            await self._shutdown.wait()
        finally:
            await self._stop_everything()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return self.exit_reason

    def spawn_task(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A task whose unexpected exception stops the whole stack: a bug in airadev must not
        leave services running unwatched."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        return task

    def _log_trace(self, what: str, exc: BaseException) -> None:
        import traceback

        trace = "".join(traceback.format_exception(exc)).rstrip()
        self.event(None, f"{what}: {exc!r}\n{trace}", "error")

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        import traceback

        exc = task.exception()
        trace = "".join(traceback.format_exception(exc)).rstrip()
        self.internal_error = f"{type(exc).__name__}: {exc}"
        self.request_shutdown(f"internal error: {exc!r}")
        self.event(None, f"internal error in {task.get_name()}: {exc!r}; stopping everything\n{trace}", "error")

    def request_shutdown(self, reason: str) -> None:
        if not self._shutdown.is_set():
            self.exit_reason = reason
            self._shutdown.set()

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        name = signal.Signals(sig).name
        # Act before telling: the console may be the terminal that just hung up.
        if self._signals == 1:
            self.request_shutdown(f"stopped by {name}")
            self.event(None, f"{name}: stopping (again to kill at once)")
        else:
            self._kill_now()
            self.event(None, f"{name} again: killing everything now", "warning")

    def _kill_now(self) -> None:
        self._unclean = True  # what was cut short (a `supabase stop`, say) is the watchdog's to finish
        for unit in self.units.values():
            pgid = getattr(unit.instance, "pgid", None)
            if pgid:
                reaper.signal_group(pgid, signal.SIGKILL)
        reaper.signal_pids(reaper.marked(self.marker), signal.SIGKILL)
        if self.docker_host:
            threading.Thread(target=engine.remove_containers, args=(self.docker_host, f"{engine.RUN_LABEL}={self.marker}", 0),
                             daemon=True).start()

    # --- lifecycle of one service -------------------------------------------------------------

    async def _lifecycle(self, unit: Unit) -> None:
        """The one task that starts instances of a service, one after another, until the
        service is stopped or settles (completed, failed, crash-loop, blocked)."""
        while not unit.stop_requested:
            # Every start, restarts too, waits for what the service depends on.
            if not await self._wait_for_dependencies(unit) or unit.stop_requested:
                return
            try:
                instance = await self._start_instance(unit)
            except AiradevError as exc:
                unit.fix = exc.fix
                self._set_state(unit, State.FAILED, exc.message)
                self.event(unit.name, f"cannot start: {exc.message} ({exc.fix})", "error")
                return
            code = await instance.exited
            restart = self._on_exit(unit, code)
            if unit.fatal:
                await instance.stop(unit.service.stop_signal, unit.service.stop_grace)
                return
            # Whatever this start left behind (children of a crashed leader, daemons) goes
            # before the next start, or it may hold the port; a requested stop does the same.
            left = await instance.stop(unit.service.stop_signal, unit.service.stop_grace)
            if left and not (unit.stop_requested or unit.restart_requested):
                self.event(unit.name, f"it left {left} processes running after it exited; they were stopped "
                            "(a service must stay in the foreground: turn off its daemon mode)", "warning")
            if unit.stop_requested:
                return
            if unit.restart_requested:
                unit.restart_requested = False
                unit.streak = 0
                continue
            if not restart or not await self._backoff(unit, code):
                return

    def _on_exit(self, unit: Unit, code: int) -> bool:
        """Record an exit at once (so nothing sees a dead service as healthy) and decide whether
        the restart policy restarts it."""
        self._cancel_probe(unit)
        self._flush_partial(unit, force=True)
        unit.exit_code = code
        unit.instance = None
        unit.pid = None
        unit.pgid_start = None
        if unit.fatal:
            self._set_state(unit, State.FAILED, unit.fatal)
            return False
        if unit.stop_requested or unit.restart_requested:
            return False
        self.event(unit.name, f"exited: {_describe_exit(code)}", "warning" if code else "info")
        policy = unit.service.restart.policy
        restart = policy is RestartPolicy.ALWAYS or (policy is RestartPolicy.ON_FAILURE and code != 0)
        if restart:
            self._set_state(unit, State.RESTARTING, _describe_exit(code))
        elif code == 0:
            self._set_state(unit, State.COMPLETED, _describe_exit(code))
            unit.ready_at = unit.ready_at or time.monotonic()
            self._check_all_ready()
        else:
            self._set_state(unit, State.FAILED, _describe_exit(code))
        return restart

    async def _backoff(self, unit: Unit, code: int) -> bool:
        """Wait out the backoff before a restart; False when the service is left stopped
        (crash-loop, or a stop request)."""
        policy = unit.service.restart
        ran = time.monotonic() - (unit.started_at or time.monotonic())
        if ran >= policy.reset_after:
            unit.streak = 0
        if unit.streak >= policy.max_restarts:
            message = f"crash-loop: exited {unit.streak + 1} times in a row (last: {_describe_exit(code)})"
            self._set_state(unit, State.CRASH_LOOP, message)
            lines = self.last_lines(unit.name, 10)
            self.event(unit.name, message + "; last lines:\n" + "\n".join(lines), "error")
            return False
        unit.streak += 1
        delay = backoff_delay(unit.streak, policy.backoff, policy.backoff_max, policy.jitter, self.rng)
        self._set_state(unit, State.RESTARTING, f"restart {unit.streak}/{policy.max_restarts} in {delay:.1f}s")
        self.event(unit.name, f"restarting in {delay:.1f}s ({unit.streak}/{policy.max_restarts})")
        if not unit.restart_requested:
            unit.wake.clear()
            try:
                await asyncio.wait_for(unit.wake.wait(), delay)
            except asyncio.TimeoutError:
                pass
        if unit.stop_requested:
            return False
        if unit.restart_requested:  # asked for during the backoff: counted when it was asked
            unit.restart_requested = False
            unit.streak = 0
        else:
            unit.restarts += 1
        return True

    async def _wait_for_dependencies(self, unit: Unit) -> bool:
        for dep in unit.service.depends_on:
            other = self.units[dep.name]
            announced = False
            while True:
                changed = self._changed
                if unit.stop_requested:
                    return False
                verdict = _dependency_verdict(other, dep.condition)
                if verdict is True:
                    break
                if verdict is False:
                    message = f"not started: {dep.name} is {other.state}"
                    self._set_state(unit, State.BLOCKED, message)
                    self.event(unit.name, message, "error")
                    return False
                if not announced:
                    self._set_state(unit, State.WAITING, f"waiting for {dep.name} ({dep.condition})")
                    if unit.starts:  # a restart held back: say why it does not come
                        self.event(unit.name, f"held: waiting for {dep.name} ({dep.condition}), now {other.state}")
                    announced = True
                await changed.wait()
        return True

    async def _start_instance(self, unit: Unit) -> Instance:
        service = unit.service
        unit.fatal = unit.fix = ""
        # Env files may have changed since the last start (a watch restart, say): their new
        # secret values are hidden from now on, and the old ones still.
        self.redact.add(stack_secrets(self.config))
        unit.starts += 1
        env = service_env(service, self.marker, colour=self.colour, instance=unit.starts,
                          stack=stack_env(self.config, service))
        if service.name == self._tunnel_ui:
            # Next.js prefers the process environment to .env.local: the variable the tunnel
            # rewrites in the file must not be there (even when the shell exports it).
            env.pop(self.config.tunnel.variable, None)
        if service.health is not None and service.health.kind is ProbeKind.LOG:
            # Armed before the start: a container's first lines may arrive while it is created.
            unit.log_regex = re.compile(str(service.health.target).encode())
            unit.awaiting_log_match, unit.matched_early = True, False
        runtime = runtime_for(service.runtime, self.runtime_context)
        try:
            started = runtime.start(service, env, lambda data, u=unit: self._on_output(u, data))
            instance = await started if inspect.isawaitable(started) else started
        except AiradevError:
            raise
        except Exception as exc:  # noqa: BLE001  (nothing was started: this service fails, not the stack)
            self._log_trace(f"{service.name}: its {service.runtime} runtime failed to start it", exc)
            raise AiradevError(f"its {service.runtime} runtime failed: {type(exc).__name__}: {exc}",
                               f"the traceback is in {self.paths.log('airadev')}; please report it") from None
        if unit.stop_requested:  # asked to stop while a container was being created
            self.spawn_task(instance.stop(service.stop_signal, service.stop_grace), f"stop-{unit.name}")
        now = time.monotonic()
        unit.instance = instance
        unit.runtime_info = instance.info()
        unit.restart_requested = False  # a restart asked for before this start is fulfilled by it
        unit.pid = instance.pid
        unit.pgid_start = reaper.start_time(instance.pid) if instance.pid else None
        unit.started_at = now
        unit.started_wall = time.time()
        unit.first_start = unit.first_start or now
        unit.exit_code = None
        unit.health = ""
        unit.ever_started = True
        probe = probes.retarget(service.health, getattr(instance, "probe_host", None)) if service.health else None
        what = f"pid {instance.pid}" if instance.pid else instance.describe()  # type: ignore[attr-defined]
        own_check = getattr(instance, "check", None)
        if probe is None and own_check is not None:
            self._set_state(unit, State.STARTING, f"waiting for {instance.readiness}")  # type: ignore[attr-defined]
            self.event(unit.name, f"started ({what}), waiting for {instance.readiness}")  # type: ignore[attr-defined]
            unit.probe_task = self.spawn_task(self._own_check_loop(unit, instance), f"check-{unit.name}")
        elif probe is None:
            self._set_state(unit, State.RUNNING, "")
            self.event(unit.name, f"started ({what})")
            self._became_ready(unit)
        else:
            self._set_state(unit, State.STARTING, f"waiting for {probe.describe()}")
            self.event(unit.name, f"started ({what}), waiting for {probe.describe()}")
            if probe.kind is ProbeKind.LOG and unit.matched_early:
                unit.health = "log line matched"
                self._set_state(unit, State.HEALTHY, "log line matched")
                self._became_ready(unit)
            elif probe.kind is not ProbeKind.LOG:
                unit.probe_task = self.spawn_task(self._probe_loop(unit, instance), f"probe-{unit.name}")
        return instance

    # --- health -----------------------------------------------------------------------------

    async def _probe_loop(self, unit: Unit, instance: Instance) -> None:
        assert unit.service.health is not None
        probe = probes.retarget(unit.service.health, getattr(instance, "probe_host", None))
        env = (service_env(unit.service, self.marker, colour=False, instance=unit.starts)
               if probe.kind is ProbeKind.EXEC else None)
        started = time.monotonic()
        failures = 0
        healthy_once = False
        while True:
            ok, message = await probes.check(probe, env=env, cwd=str(unit.service.cwd),
                                             proxied=getattr(instance, "port_proxied", False))
            if unit.instance is not instance:
                return
            message = self.redact.text(message)  # an exec probe's output may hold anything
            unit.health = message
            if ok:
                failures = 0
                self._probe_passed(unit, message, first=not healthy_once)
                healthy_once = True
            else:
                in_start_period = not healthy_once and time.monotonic() - started < probe.start_period
                if not in_start_period:
                    failures += 1
                    if failures >= probe.retries:
                        self._probe_failing(unit, f"{probe.describe()}: {message}")
            if healthy_once:
                # Probes of all services wake on the same ticks: one wake-up of the loop per
                # interval instead of one per service keeps an idle stack nearly free.
                now = asyncio.get_running_loop().time()
                await asyncio.sleep(probe.interval - now % probe.interval)
            else:
                await asyncio.sleep(probe.start_interval)

    async def _own_check_loop(self, unit: Unit, instance: Instance) -> None:
        """Readiness the runtime itself knows (a container's HEALTHCHECK, a database that
        accepts connections and has its migrations): until ready, then every few seconds."""
        failures = 0
        healthy_once = False
        while True:
            try:
                ok, message = await instance.check()  # type: ignore[attr-defined]
            except Exception as caught:  # noqa: BLE001  (this service fails, not the whole stack)
                if unit.instance is not instance:
                    return
                exc = caught if isinstance(caught, Fatal) else Fatal(
                    f"its readiness check failed: {type(caught).__name__}: {caught}",
                    f"the traceback is in {self.paths.log('airadev')}; please report it")
                if not isinstance(caught, Fatal):
                    self._log_trace(f"{unit.name}: readiness check", caught)
                unit.fatal, unit.fix = exc.message, exc.fix
                self.event(unit.name, f"{exc.message} ({exc.fix})", "error")
                self._set_state(unit, State.STOPPING, exc.message)
                await instance.stop(unit.service.stop_signal, unit.service.stop_grace)
                return
            if unit.instance is not instance:
                return
            message = self.redact.text(message)
            unit.health = message
            if ok:
                failures = 0
                self._probe_passed(unit, message, first=not healthy_once)
                healthy_once = True
            elif healthy_once:
                failures += 1
                if failures >= 3:
                    self._probe_failing(unit, message)
            await asyncio.sleep(5.0 if healthy_once else 0.1)

    def _probe_passed(self, unit: Unit, message: str, first: bool) -> None:
        if unit.state is State.HEALTHY:
            return
        if unit.state is State.UNHEALTHY:
            self.event(unit.name, f"healthy again ({message})")
        self._set_state(unit, State.HEALTHY, message)
        if first:
            self._became_ready(unit)

    def _probe_failing(self, unit: Unit, why: str) -> None:
        if unit.state is not State.UNHEALTHY:
            self._set_state(unit, State.UNHEALTHY, why)
            self.event(unit.name, f"unhealthy: {why}", "warning")

    def _became_ready(self, unit: Unit) -> None:
        if unit.starts > 1:
            self._restart_dependents(unit)
        now = time.monotonic()
        own = now - (unit.started_at or now)
        if unit.ready_at is None:
            unit.ready_at = now
        if unit.state is not State.RUNNING:
            self.event(unit.name, f"ready in {own:.2f}s")
        self._check_all_ready()

    def _check_all_ready(self) -> None:
        if self.summary is not None or not all(u.state.ready for u in self.units.values()):
            return
        ready = {n: u.ready_at - self.t0 for n, u in self.units.items() if u.ready_at is not None}
        started = {n: (u.first_start or self.t0) - self.t0 for n, u in self.units.items()}
        own = {n: ready[n] - started[n] for n in ready}
        path = graph.critical_path(self.graph, ready, started)
        self.summary = ReadySummary(
            services=tuple((n, ready[n], own[n]) for n in sorted(ready, key=ready.get)),  # type: ignore[arg-type]
            critical_path=tuple(path),
            total=max(ready.values(), default=0.0),
        )
        self.phase = "ready"
        self.write_state()
        self.observer.ready(self.summary)

    def _cancel_probe(self, unit: Unit) -> None:
        if unit.probe_task and not unit.probe_task.done():
            unit.probe_task.cancel()
        unit.probe_task = None
        unit.awaiting_log_match = False

    # --- output -----------------------------------------------------------------------------

    def _on_output(self, unit: Unit, data: bytes) -> None:
        """The hot path: called for every chunk read from a service's pipe."""
        unit.last_output = time.monotonic()
        lines = unit.framer.feed(data)
        if lines:
            self._emit(unit, lines)
        if unit.framer.pending and unit.flush_handle is None:
            unit.flush_handle = asyncio.get_running_loop().call_later(
                PARTIAL_LINE_PAUSE, self._flush_partial, unit)

    def _flush_partial(self, unit: Unit, force: bool = False) -> None:
        unit.flush_handle = None
        if not unit.framer.pending:
            return
        quiet = time.monotonic() - unit.last_output
        if force or quiet >= PARTIAL_LINE_PAUSE:
            lines = unit.framer.flush(final=force)
            if lines:
                self._emit(unit, lines)
        else:
            unit.flush_handle = asyncio.get_running_loop().call_later(
                PARTIAL_LINE_PAUSE - quiet, self._flush_partial, unit)

    def _emit(self, unit: Unit, lines: bytes) -> None:
        if self.redact:
            lines = self.redact(lines)
        assert unit.log is not None
        unit.log.writev(logstore.prefixed(lines, self.clock.stamp()))
        unit.tail = (unit.tail + lines[-TAIL_BYTES:])[-TAIL_BYTES:]
        self.observer.output(unit.name, lines)
        if self._output_waiters:
            self._check_waiters(unit.name, lines)
        if unit.awaiting_log_match and unit.log_regex is not None and unit.log_regex.search(lines):
            unit.awaiting_log_match = False
            if unit.instance is None:  # its runtime is still starting it: _start_instance decides
                unit.matched_early = True
                return
            unit.health = "log line matched"
            self._set_state(unit, State.HEALTHY, "log line matched")
            self._became_ready(unit)

    @property
    def stopping(self) -> bool:
        return self._shutdown.is_set()

    async def wait_or_stop(self, future: asyncio.Future[Any], timeout: float) -> bool:
        """Wait for ``future`` at most ``timeout`` seconds, or until the stack stops; True if it
        completed."""
        stop = asyncio.ensure_future(self._shutdown.wait())
        try:
            await asyncio.wait({future, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        return future.done()

    async def wait_until(self, condition: Any) -> None:
        """Wait until ``condition()`` holds, re-checking at every state change (or shutdown)."""
        while not condition() and not self._shutdown.is_set():
            waits = {asyncio.ensure_future(self._changed.wait()), asyncio.ensure_future(self._shutdown.wait())}
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()

    def wait_for_output(self, unit: Unit, pattern: re.Pattern[bytes]) -> asyncio.Future[None]:
        """A future that resolves when the service next prints a line matching ``pattern``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._output_waiters.setdefault(unit.name, []).append((pattern, future))
        return future

    def _check_waiters(self, name: str, lines: bytes) -> None:
        waiting = self._output_waiters.get(name)
        if not waiting:
            return
        kept = []
        for pattern, future in waiting:
            if future.done():
                continue
            if pattern.search(lines):
                future.set_result(None)
            else:
                kept.append((pattern, future))
        if kept:
            self._output_waiters[name] = kept
        else:
            del self._output_waiters[name]

    def last_lines(self, name: str, count: int) -> list[str]:
        unit = self.units[name]
        text = unit.tail.decode("utf-8", "replace")
        return text.splitlines()[-count:]

    def _open_logs(self) -> None:
        settings = self.config.logs
        for unit in self.units.values():
            unit.framer = logstore.LineFramer(redactor=self.redact)
            unit.log = logstore.LogFile(self.paths.log(unit.name), settings.max_size, settings.keep)
        self._own_log = logstore.LogFile(self.paths.log("airadev"), settings.max_size, settings.keep)

    def event(self, service: str | None, message: str, level: str = "info") -> None:
        message = self.redact.text(message)
        if self._own_log is not None:
            text = f"{service}: {message}" if service else message
            self._own_log.write(logstore.prefix_lines(text.encode() + b"\n", self.clock.stamp()))
        try:
            self.observer.event(service, message, level)
        except Exception:  # noqa: BLE001  (telling must never stop the supervisor)
            pass

    # --- state ------------------------------------------------------------------------------

    def _set_state(self, unit: Unit, state: State, message: str | None = None) -> None:
        was_ready = unit.state.ready
        unit.state = state
        if message is not None:
            unit.message = self.redact.text(message)
        if state.ready and not was_ready:
            self._resume_blocked(unit)
        elif was_ready and not state.ready:
            self._tell_dependents(unit)
        if state.failed and self.summary is None and self.failure is None:
            self.failure = {"service": unit.name, "state": str(state), "message": unit.message, "fix": unit.fix}
            self.phase = "failed"
        self._changed.set()
        self._changed = asyncio.Event()
        self.write_state()

    def write_state(self) -> None:
        """Rewrite the state file now: it changes only with a service's state, and whoever
        reads it next (a detached `up` waiting, a test, `down` after a crash) needs it current."""
        write_json_atomic(self.paths.state, self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "schema": SCHEMA,
            "workspace": str(self.config.root),
            "marker": self.marker,
            "supervisor_pid": os.getpid(),
            "supervisor_start": reaper.start_time(os.getpid()),
            "reaper_pid": self.watchdog.pid,
            "started_at": self.started_wall,
            "phase": self.phase,
            "failure": self.failure,
            "summary": self.summary.as_dict() if self.summary else None,
            "docker_host": self.docker_host,
            "containers_left": bool(self.runtime_context.stop_options.get("containers_left")),
            "supabase_left": bool(self.runtime_context.stop_options.get("supabase_left") or
                                  (self._unclean and self.supabase_stop)),
            "supabase_stop": self.supabase_stop,
            "tunnel": self.tunnel.status() if self.tunnel else (
                {"state": "requested"} if self.tunnel_request is not None else None),
            "services": {
                name: {
                    "state": str(u.state),
                    "message": u.message,
                    "pid": u.pid,
                    "pgid": getattr(u.instance, "pgid", None),
                    "pgid_start": u.pgid_start,
                    "port": u.service.port,
                    "health": u.health,
                    "started_at": u.started_wall,
                    "uptime": round(now - u.started_at, 3) if u.started_at and u.instance else None,
                    "restarts": u.restarts,
                    "exit_code": u.exit_code,
                    "runtime": str(u.service.runtime),
                    "container": u.runtime_info.get("container"),
                    "image": u.runtime_info.get("image"),
                }
                for name, u in self.units.items()
            },
        }

    # --- control ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            if control.peer_uid(sock) != os.getuid():
                answer: dict[str, Any] = {"ok": False, "error": "refused: not the user who started the stack",
                                          "fix": "run airadev as the same user"}
            else:
                line = await reader.readline()
                try:
                    request = json.loads(line)
                    op = request.get("op", "")
                except (ValueError, AttributeError):
                    request, op = None, ""
                if request is None:
                    answer = {"ok": False, "error": "malformed request", "fix": "update airadev: the CLI and supervisor differ"}
                else:
                    try:
                        answer = {"ok": True, "result": await self.handle(op, request)}
                    except AiradevError as exc:
                        answer = {"ok": False, "error": exc.message, "fix": exc.fix}
                    except Exception as exc:  # noqa: BLE001  (a bug: say so, keep the stack running)
                        import traceback

                        trace = "".join(traceback.format_exception(exc)).rstrip()
                        self.event(None, f"internal error in '{op}': {exc!r}\n{trace}", "error")
                        answer = {"ok": False, "error": f"internal error in '{op}': {type(exc).__name__}: {exc}",
                                  "fix": f"the traceback is in {self.paths.log('airadev')}; please report it"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(self, op: str, request: dict[str, Any]) -> Any:
        if op == "status":
            return self.status()
        if op == "down":
            self.runtime_context.stop_options["volumes"] = bool(request.get("volumes"))
            self.request_shutdown(DOWN_REASON)
            return {"stopping": list(self.units)}
        if op == "tunnel":
            return await self._tunnel_op(request)
        if op in ("restart", "stop", "start"):
            if self._shutdown.is_set():
                raise AiradevError("the stack is stopping", "start it again with `airadev up`")
            unit = self._unit(str(request.get("service", "")))
            if op == "stop":
                await self.stop_unit(unit)
                return {"service": unit.name, "state": str(unit.state)}
            if op == "start":
                await self.start_unit(unit)
            else:
                await self.restart_unit(unit, "requested")
            return await self._wait_settled(unit, float(request.get("wait", 60)))
        raise AiradevError(f"unknown request '{op}'", "update airadev: the CLI and supervisor differ")

    def tunnel_controller(self) -> Any:
        if self.tunnel is None:
            from airadev.supervisor.tunnel import TunnelController

            self.tunnel = TunnelController(self)
        return self.tunnel

    async def _tunnel_op(self, request: dict[str, Any]) -> Any:
        action = request.get("action", "status")
        if action == "status":
            return self.tunnel.status() if self.tunnel else {"state": "closed"}
        if self._shutdown.is_set():
            raise AiradevError("the stack is stopping", "start it again with `airadev up`")
        if action == "open":
            env = request.get("env") if isinstance(request.get("env"), dict) else {}
            return await self.tunnel_controller().open(str(request.get("domain") or ""),
                                                       str(request.get("region") or ""), bool(request.get("keep")),
                                                       {str(k): str(v) for k, v in env.items()})
        if action == "close":
            keep = request.get("keep")
            return await self.tunnel_controller().close(None if keep is None else bool(keep), "airadev tunnel --stop")
        raise AiradevError(f"unknown tunnel action '{action}'", "update airadev: the CLI and supervisor differ")

    async def _tunnel_when_ready(self, options: dict[str, Any]) -> None:
        """`up --tunnel`: open the tunnel once the voice agent is ready (never, if it fails)."""
        try:
            name = self.config.voice_service().name
        except AiradevError as exc:
            self.tunnel_controller().mark("failed", exc.message)
            self.event(None, f"tunnel: {exc.message} ({exc.fix})", "error")
            return
        unit = self.units.get(name)
        if unit is not None:
            await self.wait_until(lambda: unit.state.ready or unit.state.failed)
        if self._shutdown.is_set():
            return
        try:
            await self.tunnel_controller().open(options.get("domain", ""), options.get("region", ""),
                                                bool(options.get("keep")))
        except AiradevError:
            pass  # reported by the controller; the stack keeps running

    def _unit(self, name: str) -> Unit:
        for unit in self.units.values():
            if name in unit.service.names:
                return unit
        from airadev.errors import did_you_mean

        raise AiradevError(f"no service '{name}' in this run{did_you_mean(name, self.units)}",
                           f"services running: {', '.join(self.units)}")

    async def _wait_settled(self, unit: Unit, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            changed = self._changed
            if unit.state.ready or unit.state.failed or unit.state is State.STOPPED:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return {"service": unit.name, "state": str(unit.state), "message": unit.message,
                "last_lines": self.last_lines(unit.name, 10) if unit.state.failed else []}

    def status(self) -> dict[str, Any]:
        """The snapshot plus CPU and memory of each service's whole process tree: every process
        carrying its marker or in its process group. CPU is the percent of one core since the
        previous status call (or since the service started)."""
        snap = self.snapshot()
        now = time.monotonic()
        groups = {pgid: u.name for u in self.units.values() if (pgid := getattr(u.instance, "pgid", None))}
        usage = reaper.usage(self.marker, groups)
        for name, unit in self.units.items():
            count, cpu_seconds, rss = usage.get(name, (0, 0.0, 0))
            cpu: float | None = None
            if unit.instance is not None:
                since, before = unit.cpu_sample or (unit.started_at or now, 0.0)
                cpu = round(max(0.0, (cpu_seconds - before) / (now - since) * 100), 1) if now > since else 0.0
                unit.cpu_sample = (now, cpu_seconds)
            snap["services"][name].update({
                "cpu_percent": cpu, "rss_bytes": rss if count else None, "processes": count})
        return snap

    # --- stopping and restarting -------------------------------------------------------------

    async def stop_unit(self, unit: Unit) -> None:
        task = unit.task
        unit.stop_requested = True
        unit.wake.set()
        self._changed.set()
        self._changed = asyncio.Event()
        self._cancel_probe(unit)
        instance = unit.instance
        if instance is not None:
            self._set_state(unit, State.STOPPING, "")
            service = unit.service
            await instance.stop(service.stop_signal, service.stop_grace)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        if unit.task is task:  # unless a `start` came meanwhile and started it again
            self._set_state(unit, State.STOPPED, "")
            unit.pid = None

    async def start_unit(self, unit: Unit) -> None:
        """Start a service whose lifecycle has ended (stopped, failed, crash-loop, blocked); a
        stop still in progress is waited for first."""
        if unit.task is not None and not unit.task.done():
            if not unit.stop_requested:
                return  # already running, or on its way
            await asyncio.gather(asyncio.shield(unit.task), return_exceptions=True)
        unit.stop_requested = False
        unit.restart_requested = False
        unit.streak = 0
        self._set_state(unit, State.WAITING, "starting")
        unit.task = self.spawn_task(self._lifecycle(unit), f"lifecycle-{unit.name}")

    async def restart_unit(self, unit: Unit, why: str) -> None:
        self.event(unit.name, f"restarting: {why}")
        if unit.task is None or unit.task.done() or unit.stop_requested:
            await self.start_unit(unit)
            return
        unit.restart_requested = True
        unit.restarts += 1
        instance = unit.instance
        if instance is None:
            # Between instances (cleaning up after an exit, or in backoff): the lifecycle sees
            # the request and starts again at once, once its dependencies allow.
            if unit.state is not State.WAITING:
                self._set_state(unit, State.RESTARTING, why)
            unit.wake.set()
            return
        self._cancel_probe(unit)
        self._set_state(unit, State.STOPPING, why)
        await instance.stop(unit.service.stop_signal, unit.service.stop_grace)

    def _dependents(self, unit: Unit) -> list[tuple[Unit, Any]]:
        """The services that depend on ``unit``, each with its dependency on it."""
        found = []
        for name in graph.dependents(self.graph, unit.name):
            other = self.units[name]
            found += [(other, dep) for dep in other.service.depends_on if dep.name == unit.name]
        return found

    def _tell_dependents(self, unit: Unit) -> None:
        """A service that needs ``unit`` healthy keeps running when it is not any more (airadev
        cannot know whether it copes), but the user is told, and its next start is held."""
        if self._shutdown.is_set() or unit.stop_requested:
            return
        for other, dep in self._dependents(unit):
            if dep.condition is Condition.HEALTHY and other.instance is not None and not other.stop_requested:
                then = (f"it is restarted after {unit.name} restarts" if dep.restart
                        else f"a restart of it waits for {unit.name}")
                self.event(other.name, f"{unit.name} is {unit.state} now ({unit.message or 'no reason given'}); {then}",
                           "warning")

    def _restart_dependents(self, unit: Unit) -> None:
        """``unit`` was restarted and is ready again: restart those that asked for it."""
        if self._shutdown.is_set():
            return
        for other, dep in self._dependents(unit):
            started = other.started_at or 0.0
            if dep.restart and dep.condition is not Condition.COMPLETED and other.instance is not None \
                    and not other.stop_requested and not other.restart_requested and started < (unit.started_at or 0.0):
                self.spawn_task(self.restart_unit(other, f"{unit.name} was restarted"), f"restart-{other.name}")

    def _resume_blocked(self, ready: Unit) -> None:
        """A service that became ready again unblocks the dependents it had blocked."""
        for name in graph.dependents(self.graph, ready.name):
            other = self.units[name]
            if other.state is State.BLOCKED and not other.stop_requested and not self._shutdown.is_set():
                self.event(name, f"{ready.name} is {ready.state} now: starting")
                self.spawn_task(self.start_unit(other), f"unblock-{name}")

    async def _stop_everything(self) -> None:
        self.phase = "stopping"
        self._stop_watcher()
        if self._server is not None:
            self._server.close()
        if self.tunnel is not None:
            try:
                await self.tunnel.close(why=self.exit_reason or "the stack stopped")
            except Exception as exc:  # noqa: BLE001  (stopping the services must go on)
                self.event(None, f"tunnel: closing failed: {exc!r}", "error")
        done: dict[str, asyncio.Event] = {name: asyncio.Event() for name in self.units}

        async def stop_in_order(unit: Unit) -> None:
            for other in graph.dependents(self.graph, unit.name):
                await done[other].wait()
            try:
                if unit.instance is not None or (unit.task and not unit.task.done()):
                    await self.stop_unit(unit)
                    self.event(unit.name, "stopped")
                else:
                    self._set_state(unit, unit.state if unit.state.failed else State.STOPPED)
            finally:
                done[unit.name].set()

        await asyncio.gather(*(stop_in_order(u) for u in self.units.values()), return_exceptions=True)
        if self.docker_host:  # the containers are gone: their network too
            from airadev.integrations import docker

            await asyncio.to_thread(docker.remove_network, self.config.root)
        # Anything of the run that escaped its group (setsid daemons, probe children).
        left = await asyncio.to_thread(reaper.terminate, self.marker, grace=2.0)
        if left:
            self.event(None, f"ended {left} stray processes of this run", "warning")
        self.phase = "stopped"
        self.write_state()
        self.event(None, f"all stopped ({self.exit_reason or 'done'})")
        for unit in self.units.values():
            if unit.log:
                unit.log.close()
        if self._own_log:
            self._own_log.close()
        self.paths.socket.unlink(missing_ok=True)
        left = self.runtime_context.stop_options
        self.watchdog.stop(clean=not (self._unclean or left.get("supabase_left") or left.get("containers_left")))

    # --- watcher ----------------------------------------------------------------

    def _start_watcher(self) -> None:
        watched = {u.name: u.service for u in self.units.values() if u.service.watch}
        if not watched:
            return
        from airadev.supervisor.watch import Watcher

        self._watcher = Watcher(watched, self._on_files_changed)
        self._watcher.start(asyncio.get_running_loop())
        self.event(None, f"watching {', '.join(watched)} for changes ({self._watcher.backend})")

    def _stop_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def _on_files_changed(self, name: str, paths: list[Path]) -> None:
        unit = self.units[name]
        if unit.stop_requested or self._shutdown.is_set():
            return
        shown = ", ".join(_relative(p, unit.service.cwd) for p in paths[:3])
        if len(paths) > 3:
            shown += f" and {len(paths) - 3} more"
        self.spawn_task(self.restart_unit(unit, f"{shown} changed"), f"watch-restart-{name}")


def _dependency_verdict(unit: Unit, condition: Condition) -> bool | None:
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


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)
