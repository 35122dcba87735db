"""`airadev attach SERVICE`: a running process service taken over into the user's terminal.

The supervisor ends the service's instance and hands its next start to the attaching CLI: the
command, folder and environment (with the run's marker) it would have used. The CLI starts it
in the foreground of its terminal (a process group of its own; stdin and the tty are there, so
pdb works) and says its pid. To the supervisor that is an instance like any other: probed,
shown by `status` (as attached), its dependents kept running, ended by `stop`, `restart` and
`down` through its group and marker. Only its output goes to that terminal, not to the log.

When it exits (Ctrl-C in that terminal, or it ends), or the CLI goes away while it runs (the
terminal closed, kill -9: it is ended then), the supervisor takes the service back and starts
it as its own again; a `stop` or `down` meanwhile wins. Its dependents are not restarted for
either start. A CLI that never says what it started (Ctrl-Z'd) is given PID_WAIT seconds; what
it starts after that is ended. The conversation, one JSON line each (control.Session):

    CLI -> {"op": "attach", "service": NAME, "tty": TTY}
    <- {"ok": true, "result": {"waiting": WHY}}   (none or more: what its start waits for)
    <- {"ok": true, "result": {"command", "cwd", "env"}}   (once its dependencies allow a start)
    CLI -> {"pid": PID}   (or {"pid": null}: it could not start it; the supervisor does)
    CLI -> {"exited": CODE}   (then)
    <- {"ok": true, "result": {"state", "stopped"}}   (given back, or stopped by `stop`/`down`)

Loop-only."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airadev import reaper
from airadev.errors import AiradevError
from airadev.model import ProbeKind, Runtime, Service, State
from airadev.runtimes import runtime_for
from airadev.runtimes.base import Instance, OnOutput
from airadev.runtimes.process import end_group

if TYPE_CHECKING:
    from airadev.supervisor.control_server import ControlServer
    from airadev.supervisor.runner import Supervisor
    from airadev.supervisor.unit import Unit


PID_WAIT = 30.0  # seconds the CLI has to say what it started (Ctrl-Z'd, it never may)


class Handover:
    """The runtime of ``unit``'s next start: the attaching terminal. Set as ``unit.handover``."""

    def __init__(self, sup: Supervisor, unit: Unit, tty: str) -> None:
        self.sup, self.unit, self.tty = sup, unit, tty
        loop = asyncio.get_running_loop()
        self.spec: asyncio.Future[dict[str, Any]] = loop.create_future()  # what the CLI starts
        self.pid: asyncio.Future[int | None] = loop.create_future()  # what it started
        self.started: asyncio.Future[None] = loop.create_future()  # that start is the supervisor's now
        self.instance: AttachedInstance | None = None
        self.env_instance = ""  # the AIRADEV_INSTANCE of the start handed over

    async def start(self, service: Service, env: Mapping[str, str], on_output: OnOutput) -> Instance:
        self.env_instance = env[reaper.INSTANCE_VAR]
        if not self.spec.done():
            self.spec.set_result({"command": list(service.command), "cwd": str(service.cwd), "env": dict(env)})
        try:
            pid = await self._pid()
            if pid is None or self.unit.handover is not self or not self._ours(pid):
                raise ProcessLookupError
            self.instance = AttachedInstance(pid, self)
        except (ProcessLookupError, OSError):  # it never started, is gone already, or is not ours
            self.release()
            # Whatever the CLI may still have started of it goes first: it could hold the port.
            await asyncio.to_thread(reaper.terminate, self.sup.marker, instance=self.env_instance, grace=5.0)
            if self.unit.stop_requested or self.sup.stopping:
                raise AiradevError("not attached: it was stopped meanwhile", "`airadev start` it") from None
            return runtime_for(service.runtime, self.sup.runtime_context).start(service, env, on_output)  # type: ignore[return-value]
        finally:
            if not self.started.done():
                self.started.set_result(None)
        self.sup.event(
            self.unit.name,
            f"attached to {self.tty} (pid {pid}): its output goes to that terminal, not here, until it is given back",
        )
        if service.health is not None and service.health.kind is ProbeKind.LOG:
            # Its output goes to the terminal: the probe could never see its line.
            self.unit.matched_early = True
            self.sup.event(self.unit.name, "its log probe cannot see the terminal's output: counted as passed")
        return self.instance

    async def _pid(self) -> int | None:
        """The CLI's answer; None when it does not come in time, or the service is stopped meanwhile."""
        deadline = asyncio.get_running_loop().time() + PID_WAIT
        while not self.pid.done():
            if self.unit.stop_requested or self.sup.stopping:
                return None
            changed = asyncio.ensure_future(self.sup.changed.wait())
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                changed.cancel()
                self.sup.event(self.unit.name, f"{self.tty} did not say what it started: the supervisor starts it")
                return None
            waiting: set[asyncio.Future[Any]] = {self.pid, changed}
            await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
        return self.pid.result()

    def _ours(self, pid: int) -> bool:
        """It carries this start's marks (the CLI started it with the environment handed over)."""
        env = reaper.environ(pid)
        return f"\0{reaper.INSTANCE_VAR}={self.env_instance}\0".encode() in env and self.sup.marker.encode() in env

    def release(self) -> None:
        """The service's next start is the supervisor's own again."""
        if self.unit.handover is self:
            self.unit.handover = None
        if not self.pid.done():
            self.pid.set_result(None)
        if not self.spec.done():
            self.spec.cancel()

    @property
    def attached(self) -> bool:
        return self.unit.handover is self and self.instance is not None and not self.instance.exited.done()


class AttachedInstance:
    """The service's process as the attaching CLI started it: not the supervisor's child, so
    its end is seen through a pidfd (its exit code is the CLI's to tell)."""

    def __init__(self, pid: int, handover: Handover) -> None:
        self.pid: int | None = pid
        self.pgid = pid  # the CLI made it the leader of a group of its own
        self.handover = handover
        self.marker = handover.sup.marker
        self.instance = handover.env_instance
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._ended)

    @property
    def exited(self) -> asyncio.Future[int]:
        return self._exited

    def info(self) -> dict[str, Any]:
        return {"pid": self.pid, "pgid": self.pgid, "attached": self.handover.tty}

    def _ended(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        handover, unit, sup = self.handover, self.handover.unit, self.handover.sup
        if unit.handover is handover:
            handover.release()
            if not (unit.stop_requested or sup.stopping):
                # Given back: the lifecycle starts it again at once, as its own (no backoff), and
                # its dependents are not restarted for it.
                unit.restart_requested = unit.quiet_start = True
                sup.event(unit.name, f"given back by {handover.tty}: the supervisor starts it again")
        if not self._exited.done():
            self._exited.set_result(0)

    def running(self) -> bool:
        return not self._exited.done() and bool(reaper.group_members(self.pgid))

    async def stop(self, sig: int, grace: float) -> int:
        return await end_group(self.marker, self.pgid, self.instance, self._exited, sig, grace)


async def session(
    server: ControlServer, request: Mapping[str, Any], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The supervisor's side of one `airadev attach` (see the module's docstring)."""
    sup = server.sup

    async def say(result: Any = None, error: AiradevError | None = None) -> None:
        answer = {"ok": False, "error": error.message, "fix": error.fix} if error else {"ok": True, "result": result}
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()

    try:
        unit = _attachable(server, str(request.get("service", "")))
    except AiradevError as exc:
        await say(error=exc)
        return
    handover = Handover(sup, unit, str(request.get("tty") or "a terminal"))
    unit.handover = handover
    unit.quiet_start = True  # its dependents keep running: not restarted for this start
    client = asyncio.ensure_future(reader.readline())
    try:
        await sup.restart_unit(unit, f"attaching it to {handover.tty}")
        if not await _handed_over(sup, unit, handover, client, say):
            return
        await say(handover.spec.result())
        pid = _field(await client, "pid")
        if handover.pid.done():  # too late: released meanwhile (stopped, or the answer took too long)
            if isinstance(pid, int) and pid > 1 and handover._ours(pid):
                await asyncio.to_thread(reaper.terminate, sup.marker, pgids=[pid], instance=handover.env_instance)
        else:
            handover.pid.set_result(pid if isinstance(pid, int) and pid > 1 else None)
        await handover.started
        code = _field(await reader.readline(), "exited")  # its end (b"": the CLI went away)
        instance = handover.instance
        if instance is not None and instance.running():
            # The CLI is gone and what it started still runs: ended; the service is the
            # supervisor's again, unless it is being stopped anyway.
            handover.release()
            if unit.stop_requested or sup.stopping:
                await instance.stop(unit.service.stop_signal, unit.service.stop_grace)
            else:
                unit.quiet_start = True
                await sup.restart_unit(unit, f"taken back: {handover.tty} went away")
        elif instance is not None:
            await asyncio.shield(instance.exited)
        if code is not None:
            await say({"state": str(unit.state), "stopped": unit.stop_requested or sup.stopping})
    finally:
        handover.release()
        client.cancel()


async def _handed_over(sup: Supervisor, unit: Unit, handover: Handover, client: Any, say: Any) -> bool:
    """Wait until the lifecycle hands the start over (once its dependencies allow it), telling the
    CLI what it waits for; False (and the CLI told why) when that will not happen."""
    told = ""
    while not handover.spec.done():
        lifecycle_over = unit.task is None or unit.task.done()
        why = ""
        if unit.stop_requested or sup.stopping or unit.handover is not handover:
            why = f"{unit.name} was stopped before it was attached"
        elif unit.state.failed or lifecycle_over or client.done():
            why = f"{unit.name} is {unit.state}" + (f": {unit.message}" if unit.message else "")
        if why:
            handover.release()
            if not client.done():
                await say(error=AiradevError(why, f"see `airadev status` and `airadev logs {unit.name}`"))
            return False
        if unit.state is State.WAITING and unit.message and unit.message != told:
            told = unit.message
            await say({"waiting": unit.message})
        changed = asyncio.ensure_future(sup.changed.wait())
        waiting: set[asyncio.Future[Any]] = {handover.spec, client, changed}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        changed.cancel()
    return True


def _attachable(server: ControlServer, name: str) -> Unit:
    unit = server._unit(name)
    if unit.service.runtime is not Runtime.PROCESS:
        raise AiradevError(
            f"{unit.name} runs as {unit.service.runtime.what}: `airadev attach` takes over a process service",
            f"attach to a container with `docker attach` (or `docker exec -it`); see `airadev logs {unit.name}`",
        )
    if unit.handover is not None:
        raise AiradevError(
            f"{unit.name} is already attached to {unit.handover.tty}", "end it there (Ctrl-C), then attach here"
        )
    if unit.one_shot or unit.state is State.COMPLETED:
        raise AiradevError(
            f"{unit.name} is a one-shot task ({unit.state}): nothing runs to take over",
            f"run it in this terminal with `airadev run {unit.name} -- COMMAND`",
        )
    if unit.stop_requested or unit.state in (State.STOPPED, State.STOPPING, State.BLOCKED):
        raise AiradevError(
            f"{unit.name} is {unit.state}"
            + (f" ({unit.message})" if unit.message else "")
            + ": nothing runs to take over",
            f"`airadev start {unit.name}` first"
            + (", once what it depends on is ready" if unit.state is State.BLOCKED else ""),
        )
    return unit


def _field(line: bytes, key: str) -> Any:
    try:
        message = json.loads(line) if line else {}
    except ValueError:
        return None
    return message.get(key) if isinstance(message, dict) else None
