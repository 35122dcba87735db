"""What an earlier run left when its supervisor (and its watchdog) died: its processes, its
containers, its Supabase stack. `up`, `down` and `doctor --fix` end them, under the run lock."""

from __future__ import annotations

import subprocess

from airadev import reaper
from airadev.state import Paths, read_state, workspace_id


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
            subprocess.run(last["supabase_stop"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120, check=False)
            ended += 1
        except (OSError, subprocess.TimeoutExpired):
            pass
    return ended
