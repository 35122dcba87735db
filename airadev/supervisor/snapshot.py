"""The supervisor's state as others see it: the state file's content (``of``) and the answer to
`status` (``with_usage``: the same, with each service's CPU and memory). Loop-only."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from airadev import reaper
from airadev.status import ServiceStatus, StackStatus, TunnelStatus, Usage

if TYPE_CHECKING:
    from airadev.supervisor.runner import Supervisor
    from airadev.supervisor.unit import Unit


def of(sup: Supervisor, usage: dict[str, Usage] | None = None) -> StackStatus:
    stop_options = sup.runtime_context.stop_options
    now = time.monotonic()
    if sup.tunnel is not None:
        tunnel: TunnelStatus | None = sup.tunnel.status()
    else:
        tunnel = TunnelStatus("requested", brief=True) if sup.tunnel_request is not None else None
    return StackStatus(
        workspace=str(sup.config.root),
        marker=sup.marker,
        supervisor_pid=os.getpid(),
        supervisor_start=reaper.start_time(os.getpid()),
        reaper_pid=sup.watchdog.pid,
        started_at=sup.started_wall,
        phase=sup.phase,
        failure=sup.failure,
        summary=sup.summary,
        config_digest=sup.config_digest,
        docker_host=sup.docker_host,
        containers_left=bool(stop_options.get("containers_left")),
        supabase_left=bool(stop_options.get("supabase_left") or (sup.unclean and sup.supabase_stop)),
        supabase_stop=tuple(sup.supabase_stop),
        tunnel=tunnel,
        services={name: _service(unit, now, (usage or {}).get(name)) for name, unit in sup.units.items()},
    )


def _service(u: Unit, now: float, usage: Usage | None) -> ServiceStatus:
    return ServiceStatus(
        state=str(u.state),
        message=u.message,
        pid=u.pid,
        pgid=getattr(u.instance, "pgid", None),
        pgid_start=u.pgid_start,
        port=u.service.port,
        health=u.health,
        started_at=u.started_wall,
        uptime=round(now - u.started_at, 3) if u.started_at and u.instance else None,
        restarts=u.restarts,
        exit_code=u.exit_code,
        runtime=str(u.service.runtime),
        container=u.runtime_info.get("container"),
        image=u.runtime_info.get("image"),
        usage=usage,
        database_url=u.runtime_info.get("database_url"),
        attached=u.handover.tty if u.handover is not None and u.handover.attached else None,
    )


def with_usage(sup: Supervisor) -> StackStatus:
    """``of`` plus CPU and memory of each service's whole process tree: every process carrying its
    marker or in its process group. CPU is the percent of one core since the previous call (or
    since the service started)."""
    now = time.monotonic()
    groups = {pgid: u.name for u in sup.units.values() if (pgid := getattr(u.instance, "pgid", None))}
    found = reaper.usage(sup.marker, groups)
    usage = {}
    for name, unit in sup.units.items():
        count, cpu_seconds, rss = found.get(name, (0, 0.0, 0))
        cpu: float | None = None
        if unit.instance is not None:
            since, before = unit.cpu_sample or (unit.started_at or now, 0.0)
            cpu = round(max(0.0, (cpu_seconds - before) / (now - since) * 100), 1) if now > since else 0.0
            unit.cpu_sample = (now, cpu_seconds)
        usage[name] = Usage(cpu, rss if count else None, count)
    return of(sup, usage)
