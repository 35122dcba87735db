"""`status`, `restart`, `stop`, `start`, `down`: requests to the running supervisor."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from airadev.errors import AiradevError, NotRunning
from airadev.state import AlreadyRunning, Lock, Paths, read_state, supervisor_alive, write_json_atomic
from airadev import control
from airadev.status import StackStatus

if TYPE_CHECKING:
    from airadev.model import Config


def _not_running(paths: Paths) -> NotRunning:
    state = read_state(paths)
    if state and state.get("phase") != "stopped" and not supervisor_alive(state):
        return NotRunning(
            "nothing is running: the last run's supervisor "
            f"(pid {state.get('supervisor_pid')}) died without stopping the stack",
            "`airadev down` ends whatever it left; `airadev up` does too before it starts",
        )
    return NotRunning("nothing is running in this workspace", "start the stack with `airadev up`")


def request(paths: Paths, op: control.Op, **args: Any) -> Any:
    try:
        return control.request(paths.socket, op, **args)
    except NotRunning:
        raise _not_running(paths) from None


def status(paths: Paths) -> StackStatus:
    return StackStatus.from_json(request(paths, control.Op.STATUS))


def services_op(
    config: Config, op: str, names: Sequence[str], every: bool, wait: float, said: Callable[[dict[str, Any]], None]
) -> None:
    """`stop`, `start`, `restart` of several services (or ``every`` one of the run), one after
    another; each result ``said``; the first that does not end as asked raises, with its lines."""
    from airadev.errors import UsageError

    if every == bool(names):
        raise UsageError(
            f"{op} needs services, or --all" if not every else f"{op}: name services, or --all, not both",
            f"write e.g. airadev {op} voice kb, or airadev {op} --all",
        )
    if every:
        names = list(status(Paths(config.root)).services)
    wanted = ("stopped",) if op == "stop" else ("healthy", "running", "completed")
    for name in names:
        result = service_op(config, control.Op(op), name, wait)
        said(result)
        state = result["state"]
        if state in wanted:
            continue
        if state == "blocked":  # by a dependency: its own last lines are beside the point
            raise AiradevError(
                f"{result['service']} is blocked: {result.get('message')}",
                "start what it depends on (`airadev start NAME`); it starts by itself then",
            )
        problem = (
            f"is {state}"
            if state in ("crash-loop", "failed", "unhealthy")
            else f"is not ready after {wait:g}s (still {state})"
        )
        raise AiradevError(
            f"{result['service']} {problem}",
            f"see `airadev logs {result['service']}` and `airadev status`",
            details="\n".join("  " + line for line in result.get("last_lines", [])),
        )


def service_op(config: Config, op: control.Op, name: str, wait: float) -> dict[str, Any]:
    from airadev.operations.up import resolve

    return request(Paths(config.root), op, service=resolve(config, name), wait=wait, timeout=wait + 15)


class Down(NamedTuple):
    stopped: list[str]
    leftovers: int
    dead_run: bool = False  # the last run's supervisor had died without stopping
    restored: list[str] = []  # rewiring a dead run's tunnel left, put back
    dropped: list[str] = []  # `--volumes`: the database data deleted


def down(paths: Paths, timeout: float = 120.0, volumes: bool = False) -> Down:
    """Stop the running stack, or end what a dead run left; with nothing to do, an empty Down
    (`down` is idempotent, as compose's is). ``volumes``: the local database's data goes too (Supabase's volumes, or
    airadev's PostgreSQL cluster)."""
    state = read_state(paths)
    lock = Lock(paths)
    if not supervisor_alive(state):
        state = _starting_supervisor(paths, lock, timeout) or state  # or it holds the lock now
    stopped: list[str] = []
    if supervisor_alive(state):
        try:
            stopped = control.request(paths.socket, control.Op.DOWN, volumes=volumes)["stopping"]
        except NotRunning:
            pass
        pid = state["supervisor_pid"]  # type: ignore[index]
        deadline = time.monotonic() + timeout

        def stopping() -> bool:
            fresh = read_state(paths) or {}
            return supervisor_alive(state) and not (
                fresh.get("marker") == state.get("marker")  # type: ignore[union-attr]
                and fresh.get("phase") == "stopped"
            )

        while stopping() and time.monotonic() < deadline:
            time.sleep(0.05)
        if stopping():
            raise AiradevError(
                f"the supervisor (pid {pid}) did not stop within {timeout:.0f}s",
                f"kill it (kill -9 {pid}); its watchdog then ends the services",
            )
    # Whatever is left (a dead run, or strays of this one): end it, under the lock.
    from airadev.supervisor.leftovers import reap_leftovers

    try:
        if lock.fd < 0:
            lock.acquire(wait=10 if stopped else 0)
    except AlreadyRunning:
        raise AiradevError(
            "an `airadev up` is starting in this workspace", "wait for it, then run `airadev down` again"
        ) from None
    try:
        leftovers = reap_leftovers(paths)
        restored = _recover_tunnel(paths)
        dropped = _drop_database(paths) if volumes else []
        dead_run = bool(not stopped and state and state.get("phase") != "stopped")
        if dead_run:
            write_json_atomic(paths.state, {**state, "phase": "stopped"})  # type: ignore[dict-item]
    finally:
        lock.release()
    return Down(stopped, leftovers, dead_run, restored, dropped)


def _starting_supervisor(paths: Paths, lock: Lock, timeout: float) -> dict[str, Any] | None:
    """Someone holds the lock, but no supervisor runs: an `up` starting (or another `down`
    cleaning up). Wait for that up's supervisor, so that this `down` stops what it is starting;
    None when the lock came free instead (then ``lock`` is held, for the caller's cleanup)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(paths)
        if supervisor_alive(state):
            return state
        try:
            lock.acquire()
            return None
        except AlreadyRunning:
            time.sleep(0.05)
    raise AiradevError(
        f"the workspace has been busy for {timeout:.0f}s (an `airadev up` starting, or another "
        "`airadev down`) and no supervisor came",
        "see `airadev logs airadev`; then run `airadev down` again",
    )


def _drop_database(paths: Paths) -> list[str]:
    """`down --volumes`: delete the local database's data, now that nothing runs. (A running
    Supabase was stopped with --no-backup by its runtime already.)"""
    import shutil

    from airadev.config import load
    from airadev.model import Runtime

    db = load(paths.root).database()
    if db is None or db.database is None:
        return []
    if db.runtime is Runtime.POSTGRES:
        from airadev.runtimes.postgres import cluster_dir

        folder = cluster_dir(paths.root, db)
        if folder.exists():
            shutil.rmtree(folder)
            return [f"deleted {db.name}'s PostgreSQL cluster ({folder.relative_to(paths.root)})"]
        return []
    if db.runtime is Runtime.SUPABASE and db.database.project is not None:
        # Also when the supervisor's own stop just ran it: idempotent, and then certainly done
        # (its Supabase may have been stopped earlier, without --no-backup).
        from airadev.integrations.supabase import find_cli

        cli = find_cli(db.database.project)
        if cli is None:
            raise AiradevError(
                "the Supabase CLI is not installed: its data cannot be deleted",
                "install it (npm i -D -E supabase@2.117.0 in the UI repo) and run `airadev down --volumes` again",
            )
        try:
            done = subprocess.run(
                [cli, "stop", "--no-backup", "--workdir", str(db.database.project)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AiradevError(f"`supabase stop --no-backup` failed: {exc}", "run it by hand in the UI repo") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise AiradevError(f"`supabase stop --no-backup` failed: {last[:200]}", "run it by hand in the UI repo")
        return [f"deleted {db.name}'s Supabase data (supabase stop --no-backup)"]
    return []


def _recover_tunnel(paths: Paths) -> list[str]:
    """Put back what a dead run's tunnel left rewired (the journal says what)."""
    from airadev import rewiring as tunnel

    if not (tunnel.Journal.path_of(paths).exists() or tunnel.StripeJournal.path_of(paths).exists()):
        return []
    from airadev.config import load

    undone = tunnel.recover(paths, load(paths.root), stripe=True)
    if undone and undone.failed:
        raise AiradevError(
            "could not put back what the tunnel left: " + "; ".join(undone.failed),
            "fix that and run `airadev down` again",
        )
    return (undone.restored + undone.left + undone.waiting) if undone else []
