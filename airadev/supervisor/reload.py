"""`airadev up` on a running stack: airadev.toml read again and applied as Compose applies a
changed file. A service whose settings changed is restarted with them, a new one (or one named
on the command line) is started with what it depends on, one no longer in the file is stopped;
the rest keep running untouched."""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from typing import TYPE_CHECKING, Any

from airadev import graph
from airadev.workspace import config_digest as digest
from airadev.model import Config, Runtime
from airadev.runtimes.environment import stack_env, stack_secrets
from airadev.supervisor import leftovers
from airadev.supervisor.unit import Unit, is_one_shot

if TYPE_CHECKING:
    from airadev.supervisor.runner import Supervisor


def load(sup: Supervisor) -> Config:
    from airadev import config as config_module

    config = config_module.load(sup.config.root)
    return config.with_runtime(Runtime(sup.runtime_override)) if sup.runtime_override else config


_LOCKS: weakref.WeakKeyDictionary[Supervisor, asyncio.Lock] = weakref.WeakKeyDictionary()


async def apply(sup: Supervisor, config: Config, requested: list[str], no_deps: bool = False) -> dict[str, Any]:
    """One apply at a time: two `up`s at once would both stop what they both see removed."""
    lock = _LOCKS.setdefault(sup, asyncio.Lock())
    async with lock:
        return await _apply(sup, config, requested, no_deps)


async def _apply(sup: Supervisor, config: Config, requested: list[str], no_deps: bool) -> dict[str, Any]:
    deps = {s.name: [d.name for d in s.depends_on] for s in config.services}
    running = [n for n in sup.units if n in deps]
    named = [n for n in requested if n in deps]
    # What runs after: what runs, and what was named with what it depends on (`--no-deps`: not).
    # A running service's dependencies come only when the file gives it a new one: one left out
    # by an earlier `up --no-deps` stays out.
    grown = [n for n in running if set(deps[n]) - {d.name for d in sup.units[n].service.depends_on}]
    wanted = graph.subgraph(deps, running + (named if no_deps else graph.closure(deps, named + grown)))
    removed = [n for n in sup.units if n not in wanted]
    added = [n for n in wanted if n not in sup.units]
    # Changed: its own settings, or what the stack gives it (the database's DATABASE_URL, when
    # the database's port, user, password or name changed).
    changed = [
        n
        for n in wanted
        if n in sup.units
        and (
            sup.units[n].service != config.get(n)
            or stack_env(sup.config, sup.units[n].service) != stack_env(config, config.get(n))
        )
    ]
    unchanged = [n for n in wanted if n in sup.units and n not in changed]
    before, sup.config_digest = sup.config_digest, digest(config.root)
    tasks = [n for n in added + changed if is_one_shot(config.get(n), config)]
    answer = {
        "started": added,
        "restarted": changed,
        "stopped": removed,
        "unchanged": unchanged,
        "tasks": tasks,
        "file_changed": before != sup.config_digest,
    }
    if not (removed or added or changed):
        # No service to restart; what else changed ([tunnel], [twilio], [logs]) is in effect now.
        sup.config = config
        sup.runtime_context = dataclasses.replace(sup.runtime_context, config=config)
        sup.write_state()
        return answer
    if sup._watcher is not None:  # no watch restart of a service while the run changes shape
        sup._watcher.stop()
        sup._watcher = None
    sup.redact.add(stack_secrets(config))  # before any output of the new settings
    sup.event(
        None,
        "airadev.toml changed: "
        + "; ".join(
            f"{what} {', '.join(names)}"
            for what, names in (("starting", added), ("restarting", changed), ("stopping", removed))
            if names
        ),
    )
    for name in removed:
        await sup.stop_unit(sup.units[name])
    sup.config = config
    sup.graph = wanted
    sup.runtime_context = dataclasses.replace(sup.runtime_context, config=config, running=frozenset(wanted))
    new_units = {name: Unit(config.get(name), one_shot=is_one_shot(config.get(name), config)) for name in added}
    sup.output.open_logs(new_units.values(), sup.paths, config.logs)
    units = {name: new_units.get(name) or sup.units[name] for name in wanted}
    for name in changed:
        units[name].service = config.get(name)
        units[name].one_shot = is_one_shot(units[name].service, config)
    sup.units = units
    # Where the containers and Supabase of the run are, for `down` and the next `up` to clean up
    # after a crash (the state file has them). The watchdog started with the run keeps what it
    # was told then.
    services = [u.service for u in units.values()]
    sup.docker_host = sup.docker_host or leftovers.engine_of(services)
    sup.supabase_stop = sup.supabase_stop or leftovers.supabase_stop_of(services)
    for name in added:
        await sup.start_unit(units[name])
    for name in changed:
        await sup.restart_unit(units[name], "its settings in airadev.toml changed")
    from airadev.supervisor.watch import watch_for_restarts

    sup._watcher = watch_for_restarts(sup)
    sup.write_state()
    return answer
