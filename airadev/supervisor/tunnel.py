"""The tunnel as part of a running stack: the supervisor owns the ngrok agent (so it is reaped
like every other child) and the rewiring (so `down`, Ctrl-C and a dead agent all undo it).

Opening: the voice agent must be ready; ngrok starts and opens one tunnel to its port; the UI's
env file gets the address (and Next.js must say `Reload env: .env.local`, or the UI is
restarted); the Twilio test number gets the webhooks. Between steps the open gives up if the
stack is stopping or the agent died. Any failure puts back what was done and stops the agent:
nothing is left half-rewired, or, if something cannot be put back now, the error says so and
the journal keeps it for the next try.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airadev.errors import AiradevError
from airadev.status import TunnelStatus
from airadev.integrations import envfile
from airadev import rewiring as ops
from airadev import logstore, reaper
from airadev.runtimes.envreload import relative as _relative

if TYPE_CHECKING:
    from airadev.supervisor.runner import Supervisor


class TunnelController:
    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self.state = "closed"
        self.message = ""
        self.keep = False
        self.domain = ""
        self.agent: Any = None
        self.journal: ops.Journal | None = None
        self.address = ""
        self.env: dict[str, str] = dict(os.environ)
        self.details: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._log: logstore.LogFile | None = None
        self._pidfd = -1
        self._agent_died = False

    @property
    def config(self) -> Any:
        """The running stack's (after `up` applied a changed airadev.toml, that one)."""
        return self.sup.config

    # --- status ----------------------------------------------------------------------------

    def status(self) -> TunnelStatus:
        steps = self.journal.steps if self.journal else []
        return TunnelStatus(
            self.state,
            self.message,
            self.address,
            self.keep,
            self.agent.tunnel.agent_pid if self.agent and self.agent.tunnel else None,
            tuple(self.details.items()),
            tuple(_shown(s) for s in steps if s["status"] == "applied"),
        )

    def verified(self, address: str, result: dict[str, Any]) -> bool:
        """A test call's outcome (`tunnel --verify`, the dashboard's `v`), kept while this tunnel is open."""
        if self.state != "open" or address != self.address:
            return False
        kept = {key: result.get(key) for key in ("status", "ms", "twiml", "wrong")}
        self.details["verified"] = {**kept, "at": round(time.time(), 3)}
        self.sup.write_state()
        return True

    def mark(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self.sup.write_state()

    # --- opening -----------------------------------------------------------------------------

    async def open(
        self, domain: str = "", region: str = "", keep: bool = False, env: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        domain = domain or self.config.tunnel.domain
        async with self._lock:
            if self.state == "open":
                if domain and domain.split("://")[-1] not in self.address:
                    raise AiradevError(
                        f"a tunnel is already open at {self.address}",
                        "close it first (`airadev tunnel --stop`) to open one on another domain",
                    )
                return self.status().to_json()
            self.mark("opening")
            try:
                await self._open(domain, region or self.config.tunnel.region, keep, env or {})
            except BaseException as exc:
                undone = await self._rollback()
                message = exc.message if isinstance(exc, AiradevError) else f"internal error: {exc!r}"
                if undone is not None and undone.failed:
                    message += "; and could not put back: " + "; ".join(undone.failed)
                    fix = "run `airadev tunnel --stop` (or `airadev down`) again once that is fixed"
                    self.mark("failed", message)
                    self.sup.event(None, f"tunnel: {message}", "error")
                    raise AiradevError(message, fix) from None
                self.mark("failed", message)
                if isinstance(exc, AiradevError):
                    self.sup.event(None, f"tunnel: {exc.message} ({exc.fix}); nothing is left rewired", "error")
                raise
            self.mark("open")
            return self.status().to_json()

    def _check(self) -> None:
        """Give up the open if the stack is stopping or the agent has died meanwhile."""
        if self.sup.stopping:
            raise AiradevError("the stack is stopping", "start it again with `airadev up`")
        if self._agent_died:
            raise AiradevError("the ngrok agent exited while the tunnel was opening", "see `airadev logs ngrok`")

    async def _open(self, domain: str, region: str, keep: bool, overrides: Mapping[str, str]) -> None:
        from airadev.integrations import ngrok

        config, sup = self.config, self.sup
        self.keep, self.domain = keep, domain
        self.details = {}
        self._agent_died = False
        self.env = ops.tunnel_env(overrides)
        sup.redact.add(envfile.secrets_of(self.env))
        stale = await asyncio.to_thread(ops.recover, sup.paths, config, self.env)
        if stale and stale.failed:
            raise AiradevError(
                "could not put back what an earlier tunnel left: " + "; ".join(stale.failed),
                "fix that, then open the tunnel again",
            )
        if stale and (stale.restored or stale.left):
            sup.event(None, "tunnel: put back what an earlier tunnel left: " + "; ".join(stale.restored + stale.left))
        voice = config.voice_service()
        unit = sup.units.get(voice.name)
        if unit is None or not unit.state.ready:
            state = unit.state if unit else "not part of this stack"
            raise AiradevError(
                f"the voice agent ({voice.name}) is not running ({state})",
                f"start it first: `airadev start {voice.name}` (or `airadev up`)",
            )
        binary = ngrok.find_binary(config.tunnel.ngrok_path, self.env)
        config_path = self._agent_config()
        token = ngrok.auth_token(self.env, config_path)
        if token is None:
            raise ngrok.NgrokError(
                "no ngrok auth token", "set NGROK_AUTHTOKEN, or run `ngrok config add-authtoken TOKEN`"
            )
        # Everything else that can fail is known before the agent starts: nothing is started,
        # rewritten or restarted for a tunnel that cannot be wired.
        await self._preflight()
        sup.redact.add({"NGROK_AUTHTOKEN": token})  # ngrok's auth errors quote the token
        loop = asyncio.get_running_loop()
        self._log = logstore.LogFile(sup.paths.log("ngrok"), config.logs.max_size, config.logs.keep)
        agent_env = {reaper.MARKER_VAR: sup.marker, reaper.SERVICE_VAR: "ngrok", reaper.INSTANCE_VAR: "ngrok.0"}
        if self.env.get("NGROK_AUTHTOKEN"):
            agent_env["NGROK_AUTHTOKEN"] = self.env["NGROK_AUTHTOKEN"]
        self.agent = ngrok.Agent(
            binary,
            config_path=config_path,
            region=region,
            timeout=config.tunnel.start_timeout,
            on_log=lambda line: loop.call_soon_threadsafe(self._ngrok_line, line),
            marker_env=agent_env,
            wrapper_dir=sup.paths.dir / "bin",
        )
        upstream = f"http://127.0.0.1:{voice.port}"
        started = time.monotonic()
        tunnel = await asyncio.to_thread(self.agent.start, upstream, f"airadev-{voice.name}", domain)
        self.details["agent_start_seconds"] = round(time.monotonic() - started, 3)
        self.details["opened_at"] = round(time.time(), 3)
        self.address = tunnel.public_url
        self._watch_agent(tunnel.agent_pid)
        self._check()
        sup.event(None, f"tunnel: {tunnel.public_url} → {upstream} ({voice.name})")
        self.journal = ops.Journal.new(sup.paths, tunnel.public_url, tunnel.agent_pid, keep, sup.marker)
        await self._rewire_env_file()
        self._check()
        await self._rewire_twilio()
        self._check()
        await self._rewire_database()
        self._check()

    async def _preflight(self) -> None:
        """The env file is there (or there is none to rewire, said once); the Twilio credentials
        work and the test number is theirs (one read of the number, no write)."""
        path = self.config.ui_env_file()
        if path is None:
            why = "env_file = false" if self.config.tunnel.no_env_file else "the stack has no UI service"
            self.details["env_file"] = f"none ({why})"
            self.sup.event(None, f"tunnel: no env file gets the address ({why}): Twilio and the database only")
        else:
            envfile.writable(path)  # there, and this user may rewrite it
        twilio = self._twilio()
        if twilio is not None:
            number, numbers = twilio
            await asyncio.to_thread(numbers.lookup, number)

    def _agent_config(self) -> Any:
        """The agent's config file, always explicit (so pyngrok never writes its own default):
        the user's, which holds their token, when there is one; else a minimal one here."""
        from airadev.integrations import ngrok

        user = ngrok.default_config_path(self.env)
        if user.is_file():
            return user
        path = self.sup.paths.dir / "ngrok.yml"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, b'version: "3"\n')
            os.close(fd)
        return path

    async def _rewire_env_file(self) -> None:
        from airadev.runtimes.envreload import rewire

        path = self.config.ui_env_file()
        if path is None:  # (said by the preflight)
            return
        variable = self.config.tunnel.variable
        ui = self.config.ui_service()
        assert self.journal is not None

        def written() -> None:
            self.sup.event(None, f"tunnel: {_relative(path, self.config.root)}: {variable}={self.address}")
            self.details["env_file"] = {"path": str(path), "variable": variable}

        ui_name = ui.name if ui else None
        self.details["ui_reload"] = await rewire(
            self.sup, self.journal, ui_name, path, variable, self.address, self._check, written
        )

    def _twilio(self) -> tuple[str, Any] | None:
        """(the test number, a client of the Twilio API with the voice agent's credentials), or
        None when the tunnel leaves Twilio alone (no test number, or every webhook path false)."""
        from airadev.integrations.twilio import API_BASE_ENV, TwilioNumbers

        number = ops.test_number(self.config, self.env)
        if not number or not ops.webhook_urls("https://x", self.config.twilio):
            return None
        credentials = ops.twilio_credentials(self.config, self.env)
        if credentials is None:
            raise AiradevError(
                "no Twilio credentials for the test number",
                "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the voice agent's .env",
            )
        base = self.env.get(API_BASE_ENV)
        return number, TwilioNumbers(*credentials, timeout=self.config.twilio.timeout, base_url=base)

    async def _rewire_twilio(self) -> None:
        sup = self.sup
        twilio = self._twilio()
        if twilio is None:
            self.details["twilio"] = (
                "every webhook path is false: not touched"
                if ops.test_number(self.config, self.env)
                else "no test number (twilio.test_number or TWILIO_TEST_NUMBER): not touched"
            )
            return
        number, numbers = twilio
        wanted = ops.webhook_urls(self.address, self.config.twilio)

        def work() -> str:
            found = numbers.lookup(number)
            if found.routed_elsewhere:
                return f"{number}: {found.routed_elsewhere}, so Twilio ignores its webhook URLs: not touched"
            assert self.journal is not None
            ops.rewire_twilio(self.journal, numbers, found, wanted)
            return ""

        skipped = await asyncio.to_thread(work)
        if skipped:
            self.details["twilio"] = skipped
            sup.event(None, f"tunnel: Twilio {skipped}", "warning")
            return
        self.details["twilio"] = f"{number} → {wanted.get('voice_url') or next(iter(wanted.values()))}"
        left = "" if len(wanted) == 6 else " (the others left as they are)"
        sup.event(None, f"tunnel: Twilio {number}: {ops.rewired_names(wanted)} webhooks → {self.address}{left}")

    async def _rewire_database(self) -> None:
        from airadev.integrations import database

        db = self.config.database()
        number = ops.test_number(self.config, self.env)
        unit = self.sup.units.get(db.name) if db else None
        if db is None or not number:
            return
        if unit is None or not unit.state.ready:
            self.details["database"] = f"{db.name} is not running: business_numbers not touched"
            self.sup.event(None, f"tunnel: {self.details['database']}", "warning")
            return
        wanted = ops.webhook_urls(self.address, self.config.twilio)
        assert self.journal is not None
        skipped = await asyncio.to_thread(ops.rewire_database, self.journal, database.url(db), number, wanted)
        shown = wanted.get("voice_url") or next(iter(wanted.values()), "")
        self.details["database"] = skipped or f"business_numbers {number} → {shown}"
        self.sup.event(None, f"tunnel: {self.details['database']}", "warning" if skipped else "info")

    # --- closing -----------------------------------------------------------------------------

    async def close(
        self, keep: bool | None = None, why: str = "", env: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        async with self._lock:
            if self.state not in ("open", "failed") and self.agent is None and self.journal is None:
                # No tunnel of this run; but an earlier one's rewiring may wait in the journal
                # for what was down when it was last tried (the local database, Twilio).
                stale = ops.Journal.load(self.sup.paths)
                if stale is None or not stale.pending():
                    return self.status().to_json()
                self.journal = stale
            keep = self.keep if keep is None else keep
            self.mark("closing", why)
            undone = await self._undo(keep, env or {})
            await self._stop_agent()
            failed = undone.failed if undone else []
            self.mark("failed" if failed else "closed", ("could not put back: " + "; ".join(failed)) if failed else why)
            result = self.status().to_json()
            result.update(
                {
                    "restored": undone.restored if undone else [],
                    "left": undone.left if undone else [],
                    "waiting": undone.waiting if undone else [],
                    "failed": failed,
                    "kept": keep,
                }
            )
            self.address = ""
            return result

    async def _undo(self, keep: bool, env: Mapping[str, str] | None = None) -> ops.Undone | None:
        if self.journal is None:
            return None
        if keep:
            self.journal.remove()
            self.sup.event(None, "tunnel: closed; the rewiring is kept (--keep)")
            self.journal = None
            return None
        undone = await asyncio.to_thread(ops.undo, self.journal, self.config, {**self.env, **(env or {})})
        for line in undone.restored + undone.left + undone.waiting:
            self.sup.event(None, f"tunnel: {line}")
        for line in undone.failed:
            self.sup.event(None, f"tunnel: could not put back {line}; `airadev down` tries again", "error")
        if undone.waiting:
            # No longer this run's live tunnel: the database puts the rows back when it runs again.
            await asyncio.to_thread(self.journal.detach)
        if not undone.failed:
            self.journal = None
        return undone

    async def _rollback(self) -> ops.Undone | None:
        undone = await self._undo(keep=False)
        await self._stop_agent()
        return undone

    async def _stop_agent(self) -> None:
        self._unwatch_agent()
        if self.agent is not None:
            agent, self.agent = self.agent, None
            await asyncio.to_thread(agent.stop)
            # pyngrok stops the agent; anything it may have left is the run's to end.
            await asyncio.to_thread(reaper.terminate, self.sup.marker, service="ngrok", grace=2.0)
        if self._log is not None:
            self._log.close()
            self._log = None

    # --- the agent's life --------------------------------------------------------------------

    def _ngrok_line(self, line: str) -> None:
        if self._log is not None:
            data = self.sup.redact(line.encode(errors="replace") + b"\n")
            self._log.write(logstore.prefix_lines(data, self.sup.clock.stamp()))

    def _watch_agent(self, pid: int | None) -> None:
        try:
            self._pidfd = os.pidfd_open(pid) if pid else -1
        except OSError:
            self._pidfd = -1
        if self._pidfd < 0 or not reaper.alive(pid or 0):
            self._agent_died = True  # gone before we could watch it
            return
        asyncio.get_running_loop().add_reader(self._pidfd, self._agent_exited)

    def _unwatch_agent(self) -> None:
        if self._pidfd >= 0:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def _agent_exited(self) -> None:
        self._unwatch_agent()
        self._agent_died = True
        if self.state == "open":
            self.sup.event(None, "tunnel: the ngrok agent exited; the tunnel is gone, putting everything back", "error")
            self.sup.spawn_task(self._close_quietly("the ngrok agent exited"), "tunnel-agent-exited")

    async def _close_quietly(self, why: str) -> None:
        try:
            await self.close(keep=False, why=why)
        except Exception as exc:  # noqa: BLE001  (a failed undo is reported; it must not stop the stack)
            self.sup.event(None, f"tunnel: closing after the agent exited failed: {exc!r}", "error")


def _shown(step: dict[str, Any]) -> dict[str, Any]:
    if step["kind"] == "envfile":
        return {
            "kind": "envfile",
            "path": step["edit"]["path"],
            "variable": step["edit"]["name"],
            "value": step["edit"]["value"],
        }
    if step["kind"] == "db":
        return {"kind": "db", "phone_number": step["phone_number"], "webhooks": step["after"]}
    return {
        "kind": "twilio",
        "phone_number": step["phone_number"],
        "number_sid": step["number_sid"],
        "webhooks": step["after"],
    }


async def open_when_ready(sup: Supervisor, options: dict[str, Any]) -> None:
    """`up --tunnel`: open the tunnel once the voice agent is ready (never, if it fails)."""
    try:
        name = sup.config.voice_service().name
    except AiradevError as exc:
        sup.tunnel_controller().mark("failed", exc.message)
        sup.event(None, f"tunnel: {exc.message} ({exc.fix})", "error")
        return
    unit = sup.units.get(name)
    if unit is not None:
        await sup.wait_until(lambda: unit.state.ready or unit.state.failed)
    if sup.stopping:
        return
    try:
        await sup.tunnel_controller().open(
            options.get("domain", ""), options.get("region", ""), bool(options.get("keep"))
        )
    except AiradevError:
        pass  # reported by the controller; the stack keeps running
