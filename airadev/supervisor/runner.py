"""The supervisor: starts services in dependency order, watches them, restarts them, stops them.

Concurrency model (DESIGN.md, habit 2): one asyncio loop owns all state. Output arrives through
``add_reader`` callbacks, exits through pidfds, probe results through tasks, file changes from
the watcher thread through ``call_soon_threadsafe``, control requests through the socket
server, signals through ``add_signal_handler``; every one of them runs on the loop, so no lock
guards a service's state. Each service has one lifecycle task that alone starts its instances."""

from __future__ import annotations

import asyncio
import inspect
import random
import re
import signal
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airadev.workspace import config_digest
from airadev.errors import AiradevError
from airadev.model import Config, ProbeKind, State
from airadev.state import Paths, write_json_atomic
from airadev import control, graph, logstore, reaper
from airadev.status import Failure, ReadySummary, StackStatus
from airadev.supervisor import health, leftovers, probes, snapshot
from airadev.supervisor.control_server import ControlServer
from airadev.supervisor.dependencies import Dependencies
from airadev.supervisor.output import Output
from airadev.supervisor.unit import NullObserver, Observer, Unit, backoff_delay, describe_exit
from airadev.supervisor.unit import exit_message, is_one_shot, restarts_after, summarize
from airadev.supervisor.watch import watch_for_restarts
from airadev.supervisor.watchdog import CREATED, CREATING, Watchdog
from airadev.runtimes.environment import service_env, stack_env, stack_secrets
from airadev.runtimes import Context, Fatal, Instance, runtime_for

if TYPE_CHECKING:
    from airadev.supervisor.tunnel import TunnelController
    from airadev.supervisor.watch import Watcher


class Supervisor:
    runtime_override = ""  # `up --runtime docker`: kept when `up` applies a changed airadev.toml
    config_digest = ""  # of airadev.toml as this run applied it (reload.digest): `status` tells a change

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
        build: bool = False,
    ) -> None:
        self.config = config
        self.paths = Paths(config.root)
        self.marker = marker
        self.observer = observer or NullObserver()
        self.colour = colour
        self.rng = rng or random.Random()
        deps = {s.name: [d.name for d in s.depends_on] for s in config.services}
        self.graph = graph.subgraph(deps, names)  # names as `up` chose them (with --no-deps: alone)
        self.units = {n: Unit(config.get(n), one_shot=is_one_shot(config.get(n), config)) for n in self.graph}
        self.redact = logstore.Redactor(stack_secrets(config))
        self.clock = logstore.Clock()
        self.output = Output(self.redact, self.clock, self.observer, self._log_matched)
        self.dependencies = Dependencies(self)
        ui = config.ui_service()
        self._tunnel_ui = ui.name if ui else None  # never given the variable the tunnel rewrites
        self.t0 = time.monotonic()
        self.started_wall = time.time()
        self.phase = "starting"
        self.summary: ReadySummary | None = None
        self.failure: Failure | None = None
        self._changed = asyncio.Event()
        self._shutdown = asyncio.Event()
        self._signals = 0
        self._server: asyncio.AbstractServer | None = None
        self._watcher: Watcher | None = None
        self.watchdog = Watchdog()
        self._own_log: logstore.LogFile | None = None
        self.exit_reason = ""
        self.internal_error: str | None = None
        self.tunnel_request = tunnel  # `up --tunnel`: open one once the voice agent is ready
        self.tunnel: TunnelController | None = None  # made when first needed
        # What the watchdog and the next run clean up should this run die: its containers (by
        # label, on this engine) and its Supabase stack (with this command).
        services = [u.service for u in self.units.values()]
        self.docker_host = leftovers.engine_of(services)
        self.supabase_stop = leftovers.supabase_stop_of(services)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.unclean = False  # a second signal killed everything at once
        self._loop_thread = 0
        self.runtime_context = Context(
            config,
            marker,
            self._on_loop(self.event),
            self._on_loop(self.redact.add),
            creating=lambda begun: self.watchdog.tell(CREATING if begun else CREATED),
            build=build,
            running=frozenset(self.graph),
            stack=self,
        )

    # --- the run ----------------------------------------------------------------------------

    def _on_loop(self, fn: Any) -> Any:
        """``fn`` callable from worker threads: run on the loop (owner of logs and redactor), in order."""

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
        self.config_digest = config_digest(self.config.root)
        self.open_logs()
        self.watchdog.start(
            self.marker,
            max((u.service.stop_grace for u in self.units.values()), default=10.0),
            self.paths.state,
            self.docker_host,
            self.supabase_stop,
        )
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            self._server = await asyncio.start_unix_server(
                ControlServer(self).serve, sock=control.bind(self.paths.socket)
            )
            self.write_state()
            self.event(None, f"starting {len(self.units)} services: {', '.join(self.units)}")
            for unit in self.units.values():
                unit.task = self.spawn_task(self._lifecycle(unit), f"lifecycle-{unit.name}")
            self._watcher = watch_for_restarts(self)
            if self.tunnel_request is not None:
                from airadev.supervisor.tunnel import open_when_ready

                self.spawn_task(open_when_ready(self, self.tunnel_request), "tunnel-on-start")
            await self._shutdown.wait()
        finally:
            await self._stop_everything()
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        return self.exit_reason

    def spawn_task(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """A task whose unexpected exception stops the stack (a bug must not leave services unwatched)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        return task

    def log_trace(self, what: str, exc: BaseException) -> None:
        import traceback

        trace = "".join(traceback.format_exception(exc)).rstrip()
        self.event(None, f"{what}: {exc!r}\n{trace}", "error")

    def internal_fix(self) -> str:
        """The fix of an error that is a bug of airadev's."""
        return f"the traceback is in {self.paths.log('airadev')}; please report it"

    def hide(self, text: str) -> str:
        """``text`` with every secret of the stack redacted."""
        return self.redact.text(text)

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
        self.unclean = True  # what was cut short (a `supabase stop`, say) is the watchdog's to finish
        leftovers.kill_now(
            self.marker, [getattr(u.instance, "pgid", None) for u in self.units.values()], self.docker_host
        )

    # --- lifecycle of one service -------------------------------------------------------------

    async def _lifecycle(self, unit: Unit) -> None:
        """The one task starting a service's instances in turn until it is stopped or settles."""
        while not unit.stop_requested:
            # Every start, restarts too, waits for what the service depends on.
            if not await self.dependencies.wait_for(unit) or unit.stop_requested:
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
                self.event(
                    unit.name,
                    f"it left {left} processes running after it exited; they were stopped "
                    "(a service must stay in the foreground: turn off its daemon mode)",
                    "warning",
                )
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
        self.output.flush_partial(unit, force=True)
        unit.exit_code = code
        unit.instance = None
        unit.pid = None
        unit.pgid_start = None
        if unit.fatal:
            self._set_state(unit, State.FAILED, unit.fatal)
            return False
        if unit.stop_requested or unit.restart_requested:
            return False
        self.event(unit.name, exit_message(unit, code), "warning" if code else "info")
        restart = restarts_after(unit.service.restart.policy, code)
        if restart:
            self._set_state(unit, State.RESTARTING, describe_exit(code))
        elif code == 0:
            self._set_state(unit, State.COMPLETED, describe_exit(code))
            unit.ready_at = unit.ready_at or time.monotonic()
            self._check_all_ready()
        else:
            self._set_state(unit, State.FAILED, describe_exit(code))
        return restart

    async def _backoff(self, unit: Unit, code: int) -> bool:
        """Wait out the backoff before a restart; False when left stopped (crash-loop, a stop)."""
        policy = unit.service.restart
        ran = time.monotonic() - (unit.started_at or time.monotonic())
        if ran >= policy.reset_after:
            unit.streak = 0
        if unit.streak >= policy.max_restarts:
            message = f"crash-loop: exited {unit.streak + 1} times in a row (last: {describe_exit(code)})"
            self._set_state(unit, State.CRASH_LOOP, message)
            lines = self.output.last_lines(unit, 10)
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

    async def _start_instance(self, unit: Unit) -> Instance:
        service = unit.service
        unit.fatal = unit.fix = ""
        # Env files may have changed since the last start (a watch restart, say): their new
        # secret values are hidden from now on, and the old ones still.
        self.redact.add(stack_secrets(self.config))
        unit.starts += 1
        stack = stack_env(self.config, service)
        if unit.starts == 1 and "DATABASE_URL" in stack:  # said once: it decides where the data goes
            self.event(service.name, f"DATABASE_URL is the stack's database: {stack['DATABASE_URL']}", "info")
        env = service_env(service, self.marker, colour=self.colour, instance=unit.starts, stack=stack)
        if service.name == self._tunnel_ui:
            # Next.js prefers the process environment to .env.local: the variables the tunnel and
            # the Stripe listener rewrite in the file must not be there (even when exported).
            stripe = [self.config.stripe.variable] if self.config.stripe.enabled else []
            for variable in (self.config.tunnel.variable, *stripe):
                env.pop(variable, None)
        if service.health is not None and service.health.kind is ProbeKind.LOG:
            # Armed before the start: a container's first lines may arrive while it is created.
            unit.log_regex = re.compile(str(service.health.target).encode())
            unit.awaiting_log_match, unit.matched_early = True, False
        runtime = unit.handover or runtime_for(service.runtime, self.runtime_context)
        try:
            # The lambda is an OnOutput: mypy cannot infer the type of a lambda with default arguments.
            started = runtime.start(service, env, lambda data, u=unit, feed=self.output.feed: feed(u, data))  # type: ignore[misc]
            instance = await started if inspect.isawaitable(started) else started
        except AiradevError:
            raise
        except Exception as exc:  # noqa: BLE001  (nothing was started: this service fails, not the stack)
            self.log_trace(f"{service.name}: its {service.runtime} runtime failed to start it", exc)
            raise AiradevError(
                f"its {service.runtime} runtime failed: {type(exc).__name__}: {exc}", self.internal_fix()
            ) from None
        if unit.stop_requested:  # asked to stop while a container was being created
            self.spawn_task(instance.stop(service.stop_signal, service.stop_grace), f"stop-{unit.name}")
        unit.started(instance)
        probe = probes.retarget(service.health, getattr(instance, "probe_host", None)) if service.health else None
        what = f"pid {instance.pid}" if instance.pid else instance.describe()  # type: ignore[attr-defined]
        own_check = getattr(instance, "check", None)
        if probe is None and own_check is not None:
            self._set_state(unit, State.STARTING, f"waiting for {instance.readiness}")  # type: ignore[attr-defined]
            self.event(unit.name, f"started ({what}), waiting for {instance.readiness}")  # type: ignore[attr-defined]
            unit.probe_task = self.spawn_task(health.own_check_loop(unit, instance, self), f"check-{unit.name}")
        elif probe is None:
            self._set_state(unit, State.RUNNING, "")
            self.event(unit.name, f"started ({what})")
            self._became_ready(unit)
        else:
            self._set_state(unit, State.STARTING, f"waiting for {probe.describe()}")
            self.event(unit.name, f"started ({what}), waiting for {probe.describe()}")
            if probe.kind is ProbeKind.LOG and unit.matched_early:
                self._log_matched(unit)
            elif probe.kind is not ProbeKind.LOG:
                probe_env = (
                    service_env(service, self.marker, colour=False, instance=unit.starts)
                    if probe.kind is ProbeKind.EXEC
                    else None
                )
                unit.probe_task = self.spawn_task(
                    health.probe_loop(unit, instance, probe, probe_env, self), f"probe-{unit.name}"
                )
        return instance

    # --- health -----------------------------------------------------------------------------

    async def fatal(self, unit: Unit, instance: Instance, exc: Fatal) -> None:
        """A readiness check found the service can never become ready as it is: stop it, leave it failed."""
        unit.fatal, unit.fix = exc.message, exc.fix
        self.event(unit.name, f"{exc.message} ({exc.fix})", "error")
        self._set_state(unit, State.STOPPING, exc.message)
        await instance.stop(unit.service.stop_signal, unit.service.stop_grace)

    def passed(self, unit: Unit, message: str, first: bool) -> None:
        if unit.state is State.HEALTHY:
            return
        if unit.state is State.UNHEALTHY:
            self.event(unit.name, f"healthy again ({message})")
        self._set_state(unit, State.HEALTHY, message)
        if first:
            self._became_ready(unit)

    def failing(self, unit: Unit, why: str) -> None:
        if unit.state is not State.UNHEALTHY:
            self._set_state(unit, State.UNHEALTHY, why)
            self.event(unit.name, f"unhealthy: {why}", "warning")

    def _became_ready(self, unit: Unit) -> None:
        if unit.starts > 1:
            self.dependencies.restart_after(unit)
        now = time.monotonic()
        own = now - (unit.started_at or now)
        if unit.ready_at is None and not unit.one_shot:  # a task: once it has completed
            unit.ready_at = now
        if unit.state is not State.RUNNING:
            self.event(unit.name, f"ready in {own:.2f}s")
        self._check_all_ready()

    def _check_all_ready(self) -> None:
        if self.summary is not None or not all(u.ready for u in self.units.values()):
            return
        self.summary = summarize(self.units, self.graph, self.t0)
        self.phase = "ready"
        self.write_state()
        self.observer.ready(self.summary)

    def _log_matched(self, unit: Unit) -> None:
        """Its log probe's line came (once its runtime has started it)."""
        unit.health = "log line matched"
        self._set_state(unit, State.HEALTHY, "log line matched")
        self._became_ready(unit)

    def _cancel_probe(self, unit: Unit) -> None:
        if unit.probe_task and not unit.probe_task.done():
            unit.probe_task.cancel()
        unit.probe_task = None
        unit.awaiting_log_match = False

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next change of any service's state (a new event each time)."""
        return self._changed

    @property
    def stopping(self) -> bool:
        return self._shutdown.is_set()

    async def wait_or_stop(self, future: asyncio.Future[Any], timeout: float) -> bool:
        """Wait for ``future`` at most ``timeout`` seconds, or until the stack stops; True if done."""
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

    def open_logs(self) -> None:
        """Every service's log file, and the supervisor's own."""
        self._own_log = self.output.open_logs(self.units.values(), self.paths, self.config.logs)

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
            self.dependencies.resume_blocked(unit)
        elif was_ready and not state.ready:
            self.dependencies.tell(unit)
        if state.failed and self.summary is None and self.failure is None:
            self.failure = Failure(unit.name, str(state), unit.message, unit.fix)
            self.phase = "failed"
        self._changed.set()
        self._changed = asyncio.Event()
        self.write_state()

    def write_state(self) -> None:
        """Rewrite the state file now: it changes only with a service's state, and whoever
        reads it next (a detached `up` waiting, a test, `down` after a crash) needs it current."""
        write_json_atomic(self.paths.state, self.snapshot().to_json())

    def snapshot(self) -> StackStatus:
        return snapshot.of(self)

    # --- control ----------------------------------------------------------------------------

    def tunnel_controller(self) -> TunnelController:
        if self.tunnel is None:
            from airadev.supervisor.tunnel import TunnelController  # only a stack that tunnels pays for it

            self.tunnel = TunnelController(self)
        return self.tunnel

    def status(self) -> StackStatus:
        """The snapshot with each service's CPU and memory (snapshot.with_usage)."""
        return snapshot.with_usage(self)

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

    async def _stop_everything(self) -> None:
        self.phase = "stopping"
        if self._watcher is not None:
            self._watcher.stop()
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
        options = self.runtime_context.stop_options
        self.watchdog.stop(clean=not (self.unclean or options.get("supabase_left") or options.get("containers_left")))
