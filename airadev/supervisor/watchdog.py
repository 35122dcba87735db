"""The watchdog: a small process that outlives the supervisor and ends what it leaves.

It blocks reading a pipe whose only writer is the supervisor, and when the pipe closes,
whatever way the supervisor ended (SIGKILL included), it removes the run's containers, ends
every process that still carries the run's marker or is in a recorded group, and runs what
stops Supabase. Run as ``python -S watchdog.py --fd N --marker M --grace S ...``: the
standard library and two stdlib-only modules of airadev (reaper, integrations/engine), so that
it starts in a few milliseconds and a few megabytes. ``Watchdog`` is the supervisor's end.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import TYPE_CHECKING

if __name__ == "__main__":  # run as a script without site-packages: find the package by path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from airadev import reaper
from airadev.integrations.engine import RUN_LABEL, WORKSPACE_LABEL, remove_containers, remove_networks

CLEAN = b"stopped cleanly\n"  # the supervisor's last words to its watchdog
# Said before and after each request that makes something on the engine (a container, a
# network). The engine carries out a request whose sender died before the answer (seen every
# time here: a create cut short shows up after a sweep made at once), so a create still pending
# when the pipe closes is looked for again (late_sweep).
CREATING, CREATED = b"+", b"-"
LATE_LIMIT = 15.0  # how long a pending create is looked for (one that never left is never seen)


if TYPE_CHECKING:
    import subprocess
    from pathlib import Path


class Watchdog:
    """The supervisor's end of the watchdog: starts it, tells it things, says goodbye.
    ``tell`` may be called from any thread. (subprocess, json and threading are imported here,
    not at the top: the watchdog process itself does without them.)"""

    def __init__(self) -> None:
        import threading

        self.process: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, marker: str, grace: float, state_file: Path, docker_host: str, finally_run: list[str]) -> None:
        import json
        import subprocess

        rfd, wfd = os.pipe()
        env = {k: v for k, v in os.environ.items() if k not in reaper.MARKER_VARS}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-S",
                __file__,
                "--fd",
                str(rfd),
                "--marker",
                marker,
                "--grace",
                str(grace),
                "--state",
                str(state_file),
                *(["--docker", docker_host] if docker_host else []),
                *(["--finally", json.dumps(finally_run)] if finally_run else []),
            ],
            pass_fds=(rfd,),
            start_new_session=True,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(rfd)
        self._fd = wfd

    def tell(self, said: bytes) -> None:
        with self._lock:
            if self._fd >= 0:
                try:
                    os.write(self._fd, said)
                except OSError:
                    pass

    def stop(self, clean: bool) -> None:
        """Close the pipe; ``clean``: nothing of the run is left, so nothing is for it to do."""
        if clean:
            self.tell(CLEAN)
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        if self.process is not None:
            import subprocess

            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def late_sweep(host: str, marker: str, pending: int, grace: float, limit: float = LATE_LIMIT) -> int:
    """Look again, every 0.1 s for at most ``limit`` seconds, for the ``pending`` containers and
    networks whose creation the supervisor had asked for when it died, and remove them as they
    appear; how many were found. Networks by this run's label only: an older network of the
    workspace may already be the next run's."""
    found = 0
    deadline = time.monotonic() + limit
    while found < pending and time.monotonic() < deadline:
        time.sleep(0.1)
        found += remove_containers(host, f"{RUN_LABEL}={marker}", grace)
        found += remove_networks(host, f"{RUN_LABEL}={marker}")
    return found


def _watch(fd: int, marker: str, grace: float, state_file: str, docker_host: str = "", finally_run: str = "") -> None:
    # Only the supervisor's end of the pipe keeps us waiting; terminal signals must not.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    said = b""
    pending = 0  # creates asked of the engine and not yet answered
    while True:
        try:
            data = os.read(fd, 4096)
        except InterruptedError:
            continue
        except OSError:
            break
        if not data:
            break
        said = (said + data)[-16:]
        pending += data.count(CREATING) - data.count(CREATED)
    # A supervisor that stopped everything itself says so last; one that died did not.
    clean = said.endswith(CLEAN)
    if docker_host and not clean:  # containers first: their stop is not bounded by our grace
        try:
            remove_containers(docker_host, f"{RUN_LABEL}={marker}", grace)
            # Then the workspace's network (its id is the marker's first part).
            remove_networks(docker_host, f"{WORKSPACE_LABEL}={marker.split('.')[0]}")
        except Exception:  # noqa: BLE001  (whatever the engine said, the processes must still go)
            pass
    reaper.terminate(marker, pgids=reaper.recorded_groups(state_file), grace=grace)
    if docker_host and not clean and pending > 0:
        try:
            late_sweep(docker_host, marker, pending, grace)
        except Exception:  # noqa: BLE001  (as above)
            pass
    if finally_run and not clean:  # what stops containers airadev did not make (`supabase stop`)
        import json
        import subprocess

        try:
            subprocess.run(
                json.loads(finally_run),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=120,
            )
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass


def main(argv: list[str]) -> int:
    args = dict(zip(argv[0::2], argv[1::2]))
    _watch(
        int(args["--fd"]),
        args["--marker"],
        float(args.get("--grace", "10")),
        args["--state"],
        args.get("--docker", ""),
        args.get("--finally", ""),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
