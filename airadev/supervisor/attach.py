"""`airadev attach SERVICE`: a running process service taken over into the user's terminal.

The supervisor ends the service's instance and hands its next start to the attaching CLI: the
command, folder and environment (with the run's marker) it would have used. The CLI starts it
in the foreground of its terminal (a process group of its own; stdin and the tty are there, so
pdb works) and says its pid. To the supervisor that is an instance like any other: probed,
shown by `status` (as attached), its dependents kept running, ended by `stop`, `restart` and
`down` through its group and marker. Only its output goes to that terminal, not to the log.

When it exits (Ctrl-C in that terminal, or it ends), or the CLI goes away while it runs (the
terminal closed, kill -9: it is ended then), the supervisor takes the service back and starts
it as its own again. The conversation, one JSON line each (control.Session):

    CLI -> {"op": "attach", "service": NAME, "tty": TTY}
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
from airadev.model import Runtime, Service, State
from airadev.runtimes import runtime_for
from airadev.runtimes.base import Instance, OnOutput
from airadev.runtimes.process import end_group

if TYPE_CHECKING:
    from airadev.supervisor.control_server import ControlServer
    from airadev.supervisor.runner import Supervisor
    from airadev.supervisor.unit import Unit


class Handover:
    """The runtime of ``unit``'s next start: the attaching terminal. Set as ``unit.handover``."""

    def __init__(self, sup: Supervisor, unit: Unit, tty: str) -> None:
        self.sup, self.unit, self.tty = sup, unit, tty
        loop = asyncio.get_running_loop()
        self.spec: asyncio.Future[dict[str, Any]] = loop.create_future()  # what the CLI starts
        self.pid: asyncio.Future[int | None] = loop.create_future()  # what it started
        self.started: asyncio.Future[None] = loop.create_future()  # that start is the supervisor's now
        self.instance: AttachedInstance | None = None

    async def start(self, service: Service, env: Mapping[str, str], on_output: OnOutput) -> Instance:
        if not self.spec.done():
            self.spec.set_result({"command": list(service.command), "cwd": str(service.cwd), "env": dict(env)})
        pid = await self.pid
        try:
            if pid is None or self.unit.handover is not self:
                raise ProcessLookupError
            self.instance = AttachedInstance(pid, self, env[reaper.INSTANCE_VAR])
        except (ProcessLookupError, OSError):  # it never started, or is gone already
            self.release()
            return runtime_for(service.runtime, self.sup.runtime_context).start(service, env, on_output)  # type: ignore[return-value]
        finally:
            if not self.started.done():
                self.started.set_result(None)
        self.sup.event(
            self.unit.name,
            f"attached to {self.tty} (pid {pid}): its output goes to that terminal, not here, until it is given back",
        )
        return self.instance

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

    def __init__(self, pid: int, handover: Handover, instance: str) -> None:
        self.pid: int | None = pid
        self.pgid = pid  # the CLI made it the leader of a group of its own
        self.handover = handover
        self.marker = handover.sup.marker
        self.instance = instance
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
                # Given back: the lifecycle starts it again at once, as its own (no backoff).
                unit.restart_requested = True
                sup.event(unit.name, f"given back by {handover.tty}: the supervisor starts it again")
        if not self._exited.done():
            self._exited.set_result(0)

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
    client = asyncio.ensure_future(reader.readline())
    try:
        await sup.restart_unit(unit, f"attaching it to {handover.tty}")
        # The start comes once its dependencies allow it, or never (stopped, the stack stopping,
        # the CLI gone).
        while not handover.spec.done():
            if unit.stop_requested or sup.stopping or client.done() or unit.handover is not handover:
                handover.release()
                await say(error=AiradevError(f"{unit.name} was stopped before it was attached", "`airadev start` it"))
                return
            changed = asyncio.ensure_future(sup.changed.wait())
            waiting: set[asyncio.Future[Any]] = {handover.spec, client, changed}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
        await say(handover.spec.result())
        pid = _field(await client, "pid")
        handover.pid.set_result(pid if isinstance(pid, int) and pid > 1 else None)
        await handover.started
        code = _field(await reader.readline(), "exited")  # its end (b"": the CLI went away)
        instance = handover.instance
        if instance is not None and not instance.exited.done() and reaper.alive(instance.pgid):
            # The CLI is gone and what it started still runs: ended, then the service is the
            # supervisor's again.
            handover.release()
            await sup.restart_unit(unit, f"taken back: {handover.tty} went away")
        elif instance is not None:
            await asyncio.shield(instance.exited)
        if code is not None:
            await say({"state": str(unit.state), "stopped": unit.stop_requested or sup.stopping})
    finally:
        handover.release()
        client.cancel()


def _attachable(server: ControlServer, name: str) -> Unit:
    unit = server._unit(name)
    if unit.service.runtime is not Runtime.PROCESS:
        raise AiradevError(
            f"{unit.name} runs as {'a container' if unit.service.runtime is Runtime.DOCKER else 'the database'}: "
            "`airadev attach` takes over a process service",
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
    return unit


def _field(line: bytes, key: str) -> Any:
    try:
        message = json.loads(line) if line else {}
    except ValueError:
        return None
    return message.get(key) if isinstance(message, dict) else None
