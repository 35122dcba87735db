"""The supervisor's control server: one request per connection on ``.airadev/control.sock``
(airadev/control.py), answered from the supervisor's loop.

Only the user who started the stack may ask (SO_PEERCRED). A request the supervisor cannot
carry out is an ``{"ok": false, "error", "fix"}`` answer; a bug in handling one is reported as
such, and the stack keeps running.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import TYPE_CHECKING, Any, cast

from airadev import control
from airadev.control import Op, TunnelAction
from airadev.errors import AiradevError
from airadev.model import State
from airadev.state import DOWN_REASON
from airadev.status import TunnelStatus
from airadev.supervisor.unit import Unit

if TYPE_CHECKING:
    from airadev.supervisor.runner import Supervisor


class ControlServer:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            if control.peer_uid(sock) != os.getuid():
                answer: dict[str, Any] = {
                    "ok": False,
                    "error": "refused: not the user who started the stack",
                    "fix": "run airadev as the same user",
                }
            else:
                line = await reader.readline()
                try:
                    request = json.loads(line)
                    op = str(request.get("op", ""))
                except (ValueError, AttributeError):
                    request, op = None, ""
                if request is not None and op == Op.ATTACH:  # a conversation: it answers itself
                    from airadev.supervisor import attach

                    await attach.session(self, request, reader, writer)
                    return
                if request is None:
                    answer = {
                        "ok": False,
                        "error": "malformed request",
                        "fix": "update airadev: the CLI and supervisor differ",
                    }
                else:
                    try:
                        answer = {"ok": True, "result": await self.handle(op, request)}
                    except AiradevError as exc:
                        answer = {"ok": False, "error": exc.message, "fix": exc.fix}
                    except Exception as exc:  # noqa: BLE001  (a bug: say so, keep the stack running)
                        import traceback

                        trace = "".join(traceback.format_exception(exc)).rstrip()
                        self.sup.event(None, f"internal error in '{op}': {exc!r}\n{trace}", "error")
                        answer = {
                            "ok": False,
                            "error": f"internal error in '{op}': {type(exc).__name__}: {exc}",
                            "fix": self.sup.internal_fix(),
                        }
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(self, name: str, request: dict[str, Any]) -> Any:
        try:
            op = Op(name)
        except ValueError:
            raise AiradevError(f"unknown request '{name}'", "update airadev: the CLI and supervisor differ") from None
        if op is Op.STATUS:
            return self.sup.status().to_json()
        if op is Op.DOWN:
            self.sup.runtime_context.stop_options["volumes"] = bool(request.get("volumes"))
            self.sup.request_shutdown(DOWN_REASON)
            return {"stopping": list(self.sup.units)}
        if op is Op.TUNNEL:
            return await self._tunnel(request)
        if self.sup.stopping:
            raise AiradevError("the stack is stopping", "start it again with `airadev up`")
        if op is Op.APPLY:
            from airadev.supervisor import reload

            requested = [str(n) for n in request.get("services") or []]
            no_deps = bool(request.get("no_deps"))
            return await reload.apply(self.sup, reload.load(self.sup), requested, no_deps)
        unit = self._unit(str(request.get("service", "")))
        if op is Op.STOP:
            await self.sup.stop_unit(unit)
            return {"service": unit.name, "state": str(unit.state)}
        if op is Op.START:
            await self.sup.start_unit(unit)
        else:
            await self.sup.restart_unit(unit, "requested")
        return await self._wait_settled(unit, float(request.get("wait", 60)))

    async def _tunnel(self, request: dict[str, Any]) -> Any:
        name = request.get("action", "status")
        try:
            action = TunnelAction(name)
        except ValueError:
            raise AiradevError(
                f"unknown tunnel action '{name}'", "update airadev: the CLI and supervisor differ"
            ) from None
        if action is TunnelAction.STATUS:
            return (self.sup.tunnel.status() if self.sup.tunnel else TunnelStatus("closed", brief=True)).to_json()
        if action is TunnelAction.VERIFIED:
            result = request.get("result")
            address = str(request.get("address") or "")
            return bool(self.sup.tunnel and isinstance(result, dict) and self.sup.tunnel.verified(address, result))
        if self.sup.stopping:
            raise AiradevError("the stack is stopping", "start it again with `airadev up`")
        if action is TunnelAction.OPEN:
            env = cast("dict[Any, Any]", request.get("env")) if isinstance(request.get("env"), dict) else {}
            return await self.sup.tunnel_controller().open(
                str(request.get("domain") or ""),
                str(request.get("region") or ""),
                bool(request.get("keep")),
                {str(k): str(v) for k, v in env.items()},
            )
        keep = request.get("keep")
        why = str(request.get("why") or "airadev tunnel --stop")  # Ctrl-C of the session, a failed --verify
        given = request.get("env")  # where Twilio is now (AIRADEV_TWILIO_API_BASE), for this close only
        env = {str(k): str(v) for k, v in given.items()} if isinstance(given, dict) else {}
        return await self.sup.tunnel_controller().close(None if keep is None else bool(keep), why, env)

    def _unit(self, name: str) -> Unit:
        for unit in self.sup.units.values():
            if name in unit.service.names:
                return unit
        from airadev.errors import did_you_mean

        raise AiradevError(
            f"no service '{name}' in this run{did_you_mean(name, self.sup.units)}",
            f"services running: {', '.join(self.sup.units)}",
        )

    async def _wait_settled(self, unit: Unit, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            changed = self.sup.changed
            if unit.ready or unit.state.failed or unit.state is State.STOPPED:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return {
            "service": unit.name,
            "state": str(unit.state),
            "message": unit.message,
            "last_lines": self.sup.output.last_lines(unit, 10) if unit.state.failed else [],
        }
