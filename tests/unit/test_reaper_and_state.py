"""The watchdog and the run's state, in-process, over a few `sleep` processes.

The watchdog normally runs as `python -S watchdog.py`, which coverage's subprocess hook cannot
reach (-S skips .pth files); here its main() runs in the test process, on a pipe the test closes
as a dying supervisor's would be closed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airadev.state import AlreadyRunning, Lock, Paths, new_marker, read_state, supervisor_alive, workspace_id
from airadev.state import write_json_atomic
from airadev import reaper
from airadev.supervisor import watchdog as watchdog_script


@pytest.fixture
def marker() -> str:
    return f"{uuid.uuid4().hex[:10]}.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def spawn(
    procs: list[subprocess.Popen[bytes]], argv: list[str], env: dict[str, str] | None = None, **kwargs: object
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    procs.append(proc)
    return proc


def marks(marker: str, service: str = "svc", instance: int = 1) -> dict[str, str]:
    return {reaper.MARKER_VAR: marker, reaper.SERVICE_VAR: service, reaper.INSTANCE_VAR: f"{service}.{instance}"}


def watchdog(args: list[str], said: bytes = b"") -> None:
    """The watchdog's main() on a pipe whose writer (the supervisor) said ``said`` and went."""
    rfd, wfd = os.pipe()
    os.write(wfd, said)
    os.close(wfd)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)}
    try:
        assert watchdog_script.main(["--fd", str(rfd), *args]) == 0
    finally:
        for sig, handler in saved.items():  # it ignores terminal signals: not in pytest's process
            signal.signal(sig, handler)
        os.close(rfd)


def wait_listed(marker: str, count: int) -> list[int]:
    """The processes carrying ``marker`` once all ``count`` have exec'd (their environment is
    readable from their start; this waits only for the fork to finish)."""
    deadline = time.monotonic() + 5
    while len(found := reaper.marked(marker)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


# --- the watchdog --------------------------------------------------------------------------------


def test_a_dead_supervisor_s_processes_are_ended_and_its_finally_run(tmp_path: Path, marker: str, procs) -> None:  # type: ignore[no-untyped-def]
    ours = spawn(procs, ["sleep", "60"], marks(marker), start_new_session=True)
    other_run = spawn(procs, ["sleep", "60"], marks(marker[:11] + "ffffffffffff"))
    assert wait_listed(marker, 1) == [ours.pid]
    done = tmp_path / "supabase-stopped"
    watchdog(
        [
            "--marker",
            marker,
            "--grace",
            "5",
            "--state",
            str(tmp_path / "no-state.json"),
            "--docker",
            "unix:///nonexistent/docker.sock",  # an engine gone too: the processes still go
            "--finally",
            json.dumps(["touch", str(done)]),
        ]
    )
    assert ours.wait(timeout=5) == -signal.SIGTERM
    assert other_run.poll() is None, "another run's processes are not this watchdog's"
    assert done.exists(), "what stops Supabase runs after a death"


def test_after_a_clean_stop_only_stragglers_go_and_nothing_else_runs(tmp_path: Path, marker: str, procs) -> None:  # type: ignore[no-untyped-def]
    straggler = spawn(procs, ["sleep", "60"], marks(marker))
    wait_listed(marker, 1)
    done = tmp_path / "finally"
    watchdog(
        [
            "--marker",
            marker,
            "--grace",
            "5",
            "--state",
            str(tmp_path / "none.json"),
            "--finally",
            json.dumps(["touch", str(done)]),
        ],
        said=b"noise" + watchdog_script.CLEAN,
    )
    assert straggler.wait(timeout=5) == -signal.SIGTERM
    assert not done.exists(), "a supervisor that stopped cleanly left no Supabase to stop"


def test_a_group_recorded_in_the_state_is_ended_without_the_marker(tmp_path: Path, marker: str, procs) -> None:  # type: ignore[no-untyped-def]
    # Like Redis or PostgreSQL, which overwrite their environment: only the group finds it.
    leader = spawn(procs, ["sleep", "60"], start_new_session=True)
    recycled = spawn(procs, ["sleep", "60"], start_new_session=True)
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps(
            {
                "marker": marker,
                "services": {
                    "redis": {"pgid": leader.pid, "pgid_start": reaper.start_time(leader.pid)},
                    # The same pgid number reused by an unrelated process: its start time differs.
                    "old": {"pgid": recycled.pid, "pgid_start": (reaper.start_time(recycled.pid) or 0) - 1},
                    "none": {"pgid": None},
                    "init": {"pgid": 1},
                },
            }
        )
    )
    assert reaper.recorded_groups(str(state)) == [leader.pid]
    watchdog(["--marker", marker, "--grace", "5", "--state", str(state)])
    assert leader.wait(timeout=5) == -signal.SIGTERM
    assert recycled.poll() is None
    for broken in ("", "{}", '{"marker": "m", "services": []}', "[1]"):
        state.write_text(broken)
        assert reaper.recorded_groups(str(state)) == []


def test_what_ignores_sigterm_is_killed_after_the_grace(marker: str, procs) -> None:  # type: ignore[no-untyped-def]
    stubborn = spawn(procs, ["sh", "-c", "trap '' TERM; sleep 60 & wait"], marks(marker), start_new_session=True)
    wait_listed(marker, 2)  # sh and its sleep, both ignoring SIGTERM
    started = time.monotonic()
    found = reaper.terminate(marker, grace=0.3)
    assert found == 2
    assert time.monotonic() - started >= 0.3
    assert stubborn.wait(timeout=5) == -signal.SIGKILL
    assert reaper.marked(marker) == []
    assert reaper.terminate(marker, grace=0.3) == 0, "nothing left: returns at once"


def test_a_stopped_process_is_continued_to_act_on_sigterm(marker: str, procs) -> None:  # type: ignore[no-untyped-def]
    """A service suspended (Ctrl-Z in `airadev attach`, kill -STOP) is ended by its stop signal,
    not only by SIGKILL once the grace is over."""
    import sys

    suspended = spawn(
        procs, [sys.executable, "-c", "import time; time.sleep(60)"], marks(marker), start_new_session=True
    )
    wait_listed(marker, 1)
    os.kill(suspended.pid, signal.SIGSTOP)
    assert reaper.terminate(marker, pgids=[suspended.pid], grace=30) == 1
    assert suspended.wait(timeout=5) == -signal.SIGTERM


# --- finding a run's processes ---------------------------------------------------------------------


def test_processes_are_found_by_run_service_and_instance(marker: str, procs) -> None:  # type: ignore[no-untyped-def]
    web1 = spawn(procs, ["sleep", "60"], marks(marker, "web", 1))
    web2 = spawn(procs, ["sleep", "60"], marks(marker, "web", 2))
    db = spawn(procs, ["sleep", "60"], marks(marker, "db", 1), start_new_session=True)
    wait_listed(marker, 3)
    assert sorted(reaper.marked(marker)) == sorted([web1.pid, web2.pid, db.pid])
    assert sorted(reaper.marked(marker, "web")) == sorted([web1.pid, web2.pid])
    assert reaper.marked(marker, instance="web.2") == [web2.pid]
    assert sorted(reaper.marked(marker.split(".")[0] + ".", exact=False)) == sorted([web1.pid, web2.pid, db.pid])
    assert reaper.marked(marker[:-1]) == [], "a marker is matched whole"

    use = reaper.usage(marker, {})
    assert {name: n for name, (n, _, _) in use.items()} == {"web": 2, "db": 1}
    assert all(rss > 0 and cpu >= 0 for _, cpu, rss in use.values())
    assert reaper.usage("nobody.here", {db.pid: "database"}) == {"database": (1, use["db"][1], use["db"][2])}

    assert reaper.group_alive(db.pid) and reaper.group_members(db.pid) == [db.pid]
    assert reaper.terminate(None, pgids=[db.pid], grace=5) == 1
    db.wait(timeout=5)
    assert not reaper.group_alive(db.pid)


def test_a_zombie_is_not_alive(procs) -> None:  # type: ignore[no-untyped-def]
    quick = spawn(procs, ["true"])
    deadline = time.monotonic() + 5
    while (info := reaper.stat(quick.pid)) is not None and info[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)  # it exits at once; unreaped, it stays a zombie
    assert reaper.stat(quick.pid) is not None and not reaper.alive(quick.pid)
    quick.wait()
    assert reaper.stat(quick.pid) is None and reaper.start_time(quick.pid) is None
    assert reaper.environ(quick.pid) == b""


def test_own_process_stat_reads_past_a_command_name_with_spaces_and_parens(tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    odd = tmp_path / "my (odd) sleep"
    odd.symlink_to("/bin/sleep")
    proc = spawn(procs, [str(odd), "60"])
    info = reaper.stat(proc.pid)
    assert info is not None and info[0] in ("R", "S") and info[1] == os.getpid()
    assert reaper.start_time(proc.pid) == info[3] > 0


# --- the state file and the run lock ---------------------------------------------------------------


def test_state_is_read_only_when_whole_and_of_this_schema(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    paths.ensure()
    assert oct(paths.dir.stat().st_mode & 0o777) == "0o700"
    assert read_state(paths) is None
    for text in ("", "{", "[]", json.dumps({"schema": 2})):
        paths.state.write_text(text)
        assert read_state(paths) is None
    write_json_atomic(paths.state, {"schema": 1, "phase": "ready"}, durable=True)
    assert read_state(paths) == {"schema": 1, "phase": "ready"}
    assert oct(paths.state.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in paths.dir.iterdir() if p.name.endswith(".tmp")] == []


def test_a_supervisor_is_alive_only_as_the_same_process(procs) -> None:  # type: ignore[no-untyped-def]
    me = os.getpid()
    state = {"phase": "ready", "supervisor_pid": me, "supervisor_start": reaper.start_time(me)}
    assert supervisor_alive(state)
    assert not supervisor_alive({**state, "phase": "stopped"})
    assert not supervisor_alive({**state, "supervisor_start": state["supervisor_start"] - 1}), "a recycled pid"
    assert not supervisor_alive({**state, "supervisor_pid": "1"})
    assert not supervisor_alive(None)


def test_the_lock_is_held_once_and_names_the_holder(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    first = Lock(paths)
    first.acquire()
    with pytest.raises(AlreadyRunning) as starting:
        Lock(paths).acquire()
    assert starting.value.message == "another `airadev up` is starting in this workspace"
    me = os.getpid()
    write_json_atomic(
        paths.state, {"schema": 1, "phase": "ready", "supervisor_pid": me, "supervisor_start": reaper.start_time(me)}
    )
    with pytest.raises(AlreadyRunning) as running:
        Lock(paths).acquire(wait=0.1)
    assert running.value.message == f"airadev is already running this workspace (supervisor pid {me})"
    first.release()
    first.release()  # twice is harmless
    second = Lock(paths)
    second.acquire()
    second.release()


def test_markers_start_with_the_workspace_id(tmp_path: Path) -> None:
    wid = workspace_id(tmp_path)
    assert len(wid) == 10 and wid == workspace_id(tmp_path) != workspace_id(tmp_path / "other")
    first, second = new_marker(tmp_path), new_marker(tmp_path)
    assert first.startswith(wid + ".") and second.startswith(wid + ".") and first != second
