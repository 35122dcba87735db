"""What a run may leave behind, and ending it: what the watchdog is told to clean up should the
supervisor die (its engine, its `supabase stop`), everything killed at once (a second Ctrl-C),
and what an earlier run left when its supervisor and watchdog died (`up`, `down` and
`doctor --fix` end it, under the run lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterable

from airadev import reaper
from airadev.integrations import engine
from airadev.model import Runtime, Service
from airadev.state import Paths, read_state, workspace_id


def engine_of(services: Iterable[Service]) -> str:
    """The engine of the run's containers, if it has any."""
    return engine.engine_host() if any(s.runtime is Runtime.DOCKER for s in services) else ""


def supabase_stop_of(services: Iterable[Service]) -> list[str]:
    """`supabase stop` for the run's Supabase stack, if it has one and the CLI is there."""
    for service in services:
        if service.runtime is Runtime.SUPABASE and service.database and service.database.project:
            from airadev.integrations.supabase import find_cli

            cli = find_cli(service.database.project, os.environ)
            if cli:
                return [cli, "stop", "--workdir", str(service.database.project)]
    return []


def kill_now(marker: str, pgids: Iterable[int | None], docker_host: str) -> None:
    """SIGKILL to every process of the run at once; its containers removed in the background."""
    for pgid in pgids:
        if pgid:
            reaper.signal_group(pgid, signal.SIGKILL)
    reaper.signal_pids(reaper.marked(marker), signal.SIGKILL)
    if docker_host:
        threading.Thread(
            target=engine.remove_containers, args=(docker_host, f"{engine.RUN_LABEL}={marker}", 0), daemon=True
        ).start()


def reap_leftovers(paths: Paths, grace: float = 5.0) -> int:
    """End processes left by earlier runs of this workspace whose supervisor died: the process
    groups the last state file records, and whatever carries this workspace's marker. Call only
    while holding the run lock: then no live run of this workspace exists."""
    groups = reaper.recorded_groups(str(paths.state)) if paths.state.exists() else []
    last = read_state(paths) or {}
    containers = 0
    # Only after a run that had containers and did not stop cleanly is the docker SDK imported
    # and the engine asked (a clean stop removed them; this keeps `up` fast).
    if last.get("docker_host") and (last.get("phase") != "stopped" or last.get("containers_left")):
        from airadev.integrations import docker

        containers = len(docker.remove_leftovers(paths.root, grace, host=last["docker_host"]))
    ended = containers + reaper.terminate(workspace_id(paths.root) + ".", pgids=groups, exact=False, grace=grace)
    if last.get("supabase_stop") and (last.get("phase") != "stopped" or last.get("supabase_left")):
        # A dead run's Supabase containers are the CLI's: it stops them (data kept). A CLI that
        # is gone or hangs must not keep every later up and down from working.
        try:
            subprocess.run(
                last["supabase_stop"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )
            ended += 1
        except (OSError, subprocess.TimeoutExpired):
            pass
    return ended
