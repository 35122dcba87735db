"""What a running stack says about itself: the typed form of ``.airadev/state.json`` and of the
answers to `status` and `tunnel --status`.

The supervisor makes these; `status`, `tunnel` and `up -d` read them back (``from_json``) and
hand them to render. ``to_json`` is the wire and file form, ``"schema": 1``: its keys, their
order and their values are a contract (`status --json`, `tunnel --status --json`, tests and
scripts read them), so a field is added at the end, never renamed.

They are NamedTuples, frozen like the model's dataclasses but made at import in a tenth of the
time: every `airadev status` imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from airadev.state import SCHEMA


class ReadySummary(NamedTuple):
    """Once every service is ready: (name, seconds from the start of `up` to ready, seconds from
    its own start to ready), the dependency chain that took longest, and the total."""

    services: tuple[tuple[str, float, float], ...]
    critical_path: tuple[str, ...]
    total: float

    def to_json(self) -> dict[str, Any]:
        return {
            "services": [{"name": n, "ready_after": round(t, 3), "own_time": round(o, 3)} for n, t, o in self.services],
            "critical_path": list(self.critical_path),
            "total": round(self.total, 3),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReadySummary:
        return cls(
            services=tuple((s["name"], s["ready_after"], s["own_time"]) for s in data.get("services", ())),
            critical_path=tuple(data.get("critical_path", ())),
            total=data.get("total", 0.0),
        )


class Failure(NamedTuple):
    """The first service that failed before the stack was ready: why, and how to fix it."""

    service: str
    state: str
    message: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "state": self.state, "message": self.message, "fix": self.fix}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Failure:
        return cls(
            str(data.get("service", "")),
            str(data.get("state", "")),
            str(data.get("message", "")),
            str(data.get("fix", "")),
        )


class Usage(NamedTuple):
    """CPU (percent of one core since the previous look) and memory of a service's processes."""

    cpu_percent: float | None
    rss_bytes: int | None
    processes: int


class ServiceStatus(NamedTuple):
    state: str
    message: str = ""
    pid: int | None = None
    pgid: int | None = None
    pgid_start: int | None = None  # the group leader's start time (clock ticks), to recognise it
    port: int | None = None
    health: str = ""
    started_at: float | None = None  # wall clock
    uptime: float | None = None
    restarts: int = 0
    exit_code: int | None = None
    runtime: str = "process"
    container: str | None = None
    image: str | None = None
    usage: Usage | None = None  # only in `status` answers, not in the state file
    database_url: str | None = None  # a database's: the DATABASE_URL services get (password hidden)
    attached: str | None = None  # the terminal `airadev attach` took it over into

    def to_json(self) -> dict[str, Any]:
        out = {
            "state": self.state,
            "message": self.message,
            "pid": self.pid,
            "pgid": self.pgid,
            "pgid_start": self.pgid_start,
            "port": self.port,
            "health": self.health,
            "started_at": self.started_at,
            "uptime": self.uptime,
            "restarts": self.restarts,
            "exit_code": self.exit_code,
            "runtime": self.runtime,
            "container": self.container,
            "image": self.image,
        }
        if self.database_url:
            out["database_url"] = self.database_url
        if self.attached:
            out["attached"] = self.attached
        if self.usage is not None:
            out.update(
                cpu_percent=self.usage.cpu_percent, rss_bytes=self.usage.rss_bytes, processes=self.usage.processes
            )
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceStatus:
        usage = (
            Usage(data.get("cpu_percent"), data.get("rss_bytes"), int(data.get("processes") or 0))
            if any(key in data for key in ("cpu_percent", "rss_bytes", "processes"))
            else None
        )
        return cls(
            state=str(data.get("state", "")),
            message=str(data.get("message") or ""),
            pid=data.get("pid"),
            pgid=data.get("pgid"),
            pgid_start=data.get("pgid_start"),
            port=data.get("port"),
            health=str(data.get("health") or ""),
            started_at=data.get("started_at"),
            uptime=data.get("uptime"),
            restarts=int(data.get("restarts") or 0),
            exit_code=data.get("exit_code"),
            runtime=str(data.get("runtime") or "process"),
            container=data.get("container"),
            image=data.get("image"),
            usage=usage,
            database_url=data.get("database_url"),
            attached=data.get("attached"),
        )


# What a tunnel's status may say beyond its state, in the order it learns them while opening.
_TUNNEL_DETAILS = ("opened_at", "agent_start_seconds", "env_file", "ui_reload", "twilio", "database", "verified")


class TunnelStatus(NamedTuple):
    """The tunnel of a running stack. ``brief``: only its state is known (``requested`` by
    `up --tunnel` before the controller exists, ``closed`` when none was ever opened)."""

    state: str
    message: str = ""
    address: str = ""
    keep: bool = False
    agent_pid: int | None = None
    details: tuple[tuple[str, Any], ...] = ()  # (key, value) of _TUNNEL_DETAILS, in that order
    rewired: tuple[Mapping[str, Any], ...] = ()  # what is rewired now: env file, Twilio, database row
    brief: bool = False

    def detail(self, key: str) -> Any:
        return dict(self.details).get(key)

    def to_json(self) -> dict[str, Any]:
        if self.brief:
            return {"state": self.state}
        return {
            "state": self.state,
            "message": self.message,
            "address": self.address,
            "keep": self.keep,
            "agent_pid": self.agent_pid,
            **dict(self.details),
            "rewired": [dict(r) for r in self.rewired],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TunnelStatus:
        if set(data) <= {"state"}:
            return cls(state=str(data.get("state", "closed")), brief=True)
        return cls(
            state=str(data.get("state", "closed")),
            message=str(data.get("message") or ""),
            address=str(data.get("address") or ""),
            keep=bool(data.get("keep")),
            agent_pid=data.get("agent_pid"),
            details=tuple((key, data[key]) for key in _TUNNEL_DETAILS if key in data),
            rewired=tuple(data.get("rewired") or ()),
        )


class StackStatus(NamedTuple):
    workspace: str
    marker: str
    supervisor_pid: int
    supervisor_start: int | None
    reaper_pid: int | None
    started_at: float
    phase: str  # starting, ready, failed, stopping, stopped
    failure: Failure | None = None
    summary: ReadySummary | None = None
    config_digest: str = ""  # airadev.toml as the run applied it (supervisor.reload.digest)
    docker_host: str = ""
    containers_left: bool = False  # a container could not be removed: the next `up`/`down` does it
    supabase_left: bool = False  # `supabase stop` did not run or failed: the next `up`/`down` runs it
    supabase_stop: tuple[str, ...] = ()
    tunnel: TunnelStatus | None = None
    services: Mapping[str, ServiceStatus] = MappingProxyType({})

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "workspace": self.workspace,
            "marker": self.marker,
            "supervisor_pid": self.supervisor_pid,
            "supervisor_start": self.supervisor_start,
            "reaper_pid": self.reaper_pid,
            "started_at": self.started_at,
            "phase": self.phase,
            "failure": self.failure.to_json() if self.failure else None,
            "summary": self.summary.to_json() if self.summary else None,
            "config_digest": self.config_digest,
            "docker_host": self.docker_host,
            "containers_left": self.containers_left,
            "supabase_left": self.supabase_left,
            "supabase_stop": list(self.supabase_stop),
            "tunnel": self.tunnel.to_json() if self.tunnel else None,
            "services": {name: service.to_json() for name, service in self.services.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StackStatus:
        failure, summary, tunnel = data.get("failure"), data.get("summary"), data.get("tunnel")
        return cls(
            workspace=str(data.get("workspace", "")),
            marker=str(data.get("marker", "")),
            supervisor_pid=int(data.get("supervisor_pid") or 0),
            supervisor_start=data.get("supervisor_start"),
            reaper_pid=data.get("reaper_pid"),
            started_at=float(data.get("started_at") or 0.0),
            phase=str(data.get("phase", "")),
            failure=Failure.from_json(failure) if failure else None,
            summary=ReadySummary.from_json(summary) if summary else None,
            config_digest=str(data.get("config_digest") or ""),
            docker_host=str(data.get("docker_host") or ""),
            containers_left=bool(data.get("containers_left")),
            supabase_left=bool(data.get("supabase_left")),
            supabase_stop=tuple(data.get("supabase_stop") or ()),
            tunnel=TunnelStatus.from_json(tunnel) if tunnel else None,
            services={name: ServiceStatus.from_json(svc) for name, svc in (data.get("services") or {}).items()},
        )
