"""`airadev up`: choose the services, check the ground, run the supervisor here or detached."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airadev.errors import AiradevError, UsageError, did_you_mean
from airadev.model import Config, Runtime
from airadev.state import AlreadyRunning, Lock, Paths, new_marker, read_state, supervisor_alive
from airadev import control, graph, logstore
from airadev.ports import port_holder, port_in_use
from airadev.supervisor.leftovers import reap_leftovers

if TYPE_CHECKING:
    from airadev.status import TunnelStatus


def select(config: Config, names: Sequence[str], no_deps: bool = False) -> list[str]:
    """Canonical names of the requested services and everything they depend on (with
    ``no_deps``, only them, in the config's order)."""
    chosen = [resolve(config, name) for name in names] if names else config.names()
    deps = {s.name: [d.name for d in s.depends_on] for s in config.services}
    return [n for n in deps if n in chosen] if no_deps else graph.closure(deps, chosen)


def resolve(config: Config, name: str) -> str:
    try:
        return config.get(name).name
    except KeyError:
        every = [n for s in config.services for n in s.names]
        raise UsageError(
            f"no service named '{name}'{did_you_mean(name, every)}", f"services: {', '.join(_with_aliases(config))}"
        ) from None


def _with_aliases(config: Config) -> list[str]:
    return [f"{s.name} ({', '.join(s.aliases)})" if s.aliases else s.name for s in config.services]


# --- preflight ------------------------------------------------------------------------------


def preflight(config: Config, names: Sequence[str]) -> None:
    """Refuse to start when something would fail at once: a missing folder, env file or program,
    or a port that another process holds. Nothing has been started when this raises."""
    from airadev.runtimes.environment import env_file_values, find_venv

    for name in names:
        service = config.get(name)
        if not service.cwd.is_dir():
            raise AiradevError(
                f"services.{name}.cwd: folder {service.cwd} does not exist",
                "create it (clone the repo there), or fix cwd in airadev.toml",
            )
        for path in service.env_files:
            real = path.resolve()
            if path.is_file() and not any(real.is_relative_to(p.resolve()) for p in (config.root, service.cwd)):
                # airadev rewrites env files (tunnel, Supabase keys): never a file elsewhere. (A
                # repo folder linked into the workspace is fine: its files are in its cwd.)
                raise AiradevError(
                    f"services.{name}.env_files: {path} leads outside the workspace, to {real}",
                    "copy that file into the workspace in place of the link",
                )
        if service.load_env_files:
            env_file_values(service)
        else:
            for path in service.env_files:
                if not path.is_file():
                    raise AiradevError(
                        f"services.{name}.env_files: {path} not found", f"create {path}, or remove it from env_files"
                    )
        if service.runtime is Runtime.STRIPE:  # a live key is refused before anything starts
            from airadev.runtimes.stripe import test_key

            test_key(config.stripe, env_file_values(service), str(service.env_files[0]))
        if service.runtime is not Runtime.PROCESS:
            continue  # its runtime checks what it needs when it starts it
        venv = find_venv(service)
        program = service.command[0]
        if "/" not in program:
            search = os.pathsep.join(filter(None, [str(venv / "bin") if venv else "", os.environ.get("PATH", "")]))
            if shutil.which(program, path=search) is None:
                raise AiradevError(
                    f"services.{name}.command: {program} not found on PATH",
                    f"install {program}, or fix command in airadev.toml",
                )
    if any(config.get(name).runtime is Runtime.DOCKER for name in names):
        _engine_answers()
    for name in names:
        service = config.get(name)
        port = service.port
        if service.runtime is Runtime.SUPABASE:
            continue  # its CLI's containers; `supabase start` finds its own stack already running
        if service.runtime is Runtime.DOCKER and not _local_engine():
            continue  # published on another machine
        if port is not None and port_in_use(port):
            raise port_taken(name, port, config)


def _engine_answers() -> None:
    from airadev.integrations.engine import engine_host, engine_request, plain_engine

    host = engine_host()
    if not plain_engine(host):  # TLS and ssh engines: the runtime finds out, through the SDK
        return
    try:
        status, _ = engine_request(host, "GET", "/_ping", timeout=5)
        why = None if status == 200 else OSError(f"it answers HTTP {status} to /_ping: not a Docker engine")
    except OSError as exc:
        why = exc
    if why is not None:  # only now the runtime's module (it imports asyncio: not for every up)
        from airadev.integrations.docker import engine_unreachable

        raise engine_unreachable(host, why)


def _local_engine() -> bool:
    from airadev.integrations.engine import engine_host, is_local

    return is_local(engine_host())


def port_taken(name: str, port: int, config: Config) -> AiradevError:
    from airadev.runtimes.environment import stack_secrets
    from airadev.logstore import Redactor

    holder = port_holder(port)
    if holder and holder[1].startswith("docker-proxy"):
        from airadev.integrations import docker

        container = docker.port_holder(port)
        if container:
            return AiradevError(
                f"port {port} (services.{name}) is published by the container {container}",
                f"stop it (docker stop {container}), or give services.{name} another port in airadev.toml",
            )
    if holder:
        pid, cmdline = holder
        cmdline = Redactor(stack_secrets(config)).text(cmdline)  # before cutting: a cut secret would not match
        shown = cmdline if len(cmdline) <= 100 else cmdline[:97] + "..."
        return AiradevError(
            f"port {port} (services.{name}) is held by pid {pid}: {shown}",
            f"stop it (kill {pid}), or give services.{name} another port in airadev.toml",
        )
    return AiradevError(
        f"port {port} (services.{name}) is held by another process (of another user?)",
        f"find it with `ss -ltnp 'sport = :{port}'` and stop it, or change services.{name}.port",
    )


# --- running ----------------------------------------------------------------------------------


@dataclass
class Ground:
    """What `up` found and cleared before starting anything."""

    paths: Paths
    lock: Lock
    reaped: int  # processes a dead run left, ended
    restored: list[str]  # rewiring a dead run's tunnel left, put back
    not_restored: list[str]  # ... that could not be put back now (it stays in the journal)

    def notes(self) -> list[str]:
        out = [f"ended {self.reaped} processes left by an earlier run that did not stop"] if self.reaped else []
        out += [f"put back what an earlier tunnel left: {line}" for line in self.restored]
        return out + [
            f"could not put back what an earlier tunnel left: {line}; it stays in the journal: "
            "`airadev tunnel --stop` or `airadev down` tries again"
            for line in self.not_restored
        ]


def _run_lock(paths: Paths, wait: float = 10.0) -> Lock:
    """The run lock. Held by a live supervisor, the stack runs: refused at once. Held without
    one, someone is at it for a moment (a `down` cleaning up, another `up` whose supervisor
    is coming, and which then wins): waited for, up to ``wait`` seconds."""
    lock = Lock(paths)
    deadline = time.monotonic() + wait
    while True:
        try:
            lock.acquire()
            return lock
        except AlreadyRunning:
            if supervisor_alive(read_state(paths)) or time.monotonic() > deadline:
                raise AlreadyRunning(read_state(paths)) from None
            time.sleep(0.05)


@contextlib.contextmanager
def _claim(config: Config, names: Sequence[str]) -> Iterator[Ground]:
    """Take the workspace's run lock, end what a dead run left (processes, and a tunnel's
    rewiring), and check the ground. The lock is released on exit."""
    from airadev import rewiring as tunnel

    paths = Paths(config.root)
    lock = _run_lock(paths)
    try:
        reaped = reap_leftovers(paths)
        # Offline after a crash, Twilio may not answer: that must not keep the stack from starting.
        undone = tunnel.recover(paths, config, stripe=True)
        preflight(config, names)
        yield Ground(
            paths, lock, reaped, (undone.restored + undone.left) if undone else [], undone.failed if undone else []
        )
    finally:
        lock.release()


@dataclass(frozen=True)
class Started:
    names: list[str]
    notes: list[str]
    summary: dict[str, Any] | None = None
    supervisor_pid: int | None = None
    tunnel: TunnelStatus | None = None


def run_foreground(
    config: Config,
    names: Sequence[str],
    *,
    observer: Any,
    colour: bool,
    tunnel: dict[str, Any] | None = None,
    on_ready_to_start: Callable[[list[str]], None] | None = None,
    build: bool = False,
    runtime: str = "",
) -> str:
    """Run the supervisor in this process until it is stopped; returns why it stopped."""
    import asyncio

    from airadev.supervisor.runner import Supervisor

    with _claim(config, names) as ground:
        paths = ground.paths
        if on_ready_to_start:
            on_ready_to_start(ground.notes())
        supervisor = Supervisor(
            config, names, observer=observer, marker=new_marker(config.root), colour=colour, tunnel=tunnel, build=build
        )
        supervisor.runtime_override = runtime
        reason = asyncio.run(supervisor.run())
        if supervisor.internal_error:
            raise AiradevError(
                f"airadev stopped the stack after an internal error: {supervisor.internal_error}",
                f"the traceback is in {paths.log('airadev')}; please report it",
            )
        return reason


def start_detached(
    config: Config,
    names: Sequence[str],
    *,
    timeout: float,
    tunnel: dict[str, Any] | None = None,
    runtime: str = "",
    build: bool = False,
) -> Started:
    """Start a background supervisor and return once every service is ready (and the tunnel
    open, if asked for); raise with the reason and the failing service's last lines if one
    fails first."""
    paths, daemon, marker, notes = _spawn(config, names, tunnel, runtime, build)
    return _wait_ready(paths, daemon, marker, names, notes, timeout)


@dataclass(frozen=True)
class Held:
    paths: Paths
    notes: list[str]
    marker: str  # its run: quitting stops this one, not another started since


def start_held(
    config: Config, names: Sequence[str], *, tunnel: dict[str, Any] | None, runtime: str = "", build: bool = False
) -> Held:
    """`up --dash`: a background supervisor that stops the stack when this process ends, however
    it ends (it holds a pidfd of it); returns once it runs, before its services are ready."""
    paths, daemon, marker, notes = _spawn(config, names, tunnel, runtime, build, held_by=os.getpid())
    while (read_state(paths) or {}).get("marker") != marker:
        if daemon.poll() is not None:
            _wait_ready(paths, daemon, marker, names, notes, 0)  # says why, as `up -d` does
        time.sleep(0.02)
    return Held(paths, notes, marker)


def _spawn(
    config: Config,
    names: Sequence[str],
    tunnel: dict[str, Any] | None,
    runtime: str,
    build: bool,
    held_by: int | None = None,
) -> tuple[Paths, subprocess.Popen[bytes], str, list[str]]:
    import json

    with _claim(config, names) as ground:
        paths, lock = ground.paths, ground.lock
        marker = new_marker(config.root)
        with open(paths.supervisor_out, "ab") as out:
            os.chmod(paths.supervisor_out, 0o600)
            daemon = subprocess.Popen(
                # -P: the workspace (its cwd) must not be on the supervisor's module path.
                [
                    sys.executable,
                    "-P",
                    "-m",
                    "airadev.supervisor.daemon",
                    "--workspace",
                    str(config.root),
                    "--lock-fd",
                    str(lock.fd),
                    "--marker",
                    marker,
                    "--services",
                    ",".join(names),
                    "--tunnel",
                    json.dumps(tunnel) if tunnel is not None else "",
                    "--runtime",
                    runtime,
                    *(["--build"] if build else []),
                    *(["--held-by", str(held_by)] if held_by else []),
                ],
                pass_fds=(lock.fd,),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=config.root,
            )
    # Our copy of the lock is released on leaving the block; the daemon holds its own.
    return paths, daemon, marker, ground.notes()


@dataclass(frozen=True)
class Applied:
    started: list[str]
    restarted: list[str]
    stopped: list[str]
    file_changed: bool = False


READY = ("healthy", "running", "completed")
FAILED = ("failed", "crash-loop", "blocked", "unhealthy")


def apply_running(config: Config, requested: Sequence[str], timeout: float, no_deps: bool = False) -> Applied:
    """`up` on a running stack: the supervisor reads airadev.toml again and applies it (changed
    services restarted, new ones started, removed ones stopped); this waits until each service
    started or restarted is ready (a task: has completed), or says which failed. ``config`` was
    loaded here first: a file that does not load changes nothing."""
    paths = Paths(config.root)
    answer = control.request(paths.socket, control.Op.APPLY, services=list(requested), no_deps=no_deps, timeout=60)
    applied = Applied(answer["started"], answer["restarted"], answer["stopped"], bool(answer.get("file_changed")))
    tasks = set(answer.get("tasks") or ())
    waiting = set(applied.started) | set(applied.restarted)
    deadline = time.monotonic() + timeout
    while waiting:
        state = read_state(paths) or {}
        if not supervisor_alive(state):
            raise AiradevError("the stack stopped while the change was applied", "`airadev up` starts it again")
        services = state.get("services") or {}
        for name in sorted(waiting):
            now = (services.get(name) or {}).get("state", "")
            if now in FAILED:
                lines = logstore.tail(paths.log(name), 15)
                raise AiradevError(
                    f"{name} is {now}: {(services.get(name) or {}).get('message', '')}",
                    f"see `airadev logs {name}`; the rest of the stack is still running",
                    details=_show_lines(name, lines),
                )
            if now == "completed" or (now in READY and name not in tasks):
                waiting.discard(name)
        if waiting and time.monotonic() > deadline:
            raise _timed_out(paths, state, timeout)
        if waiting:
            time.sleep(0.02)
    return applied


def _wait_ready(
    paths: Paths, daemon: subprocess.Popen[bytes], marker: str, names: Sequence[str], notes: list[str], timeout: float
) -> Started:
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(paths)
        if state and state.get("marker") == marker:
            tunnel = state.get("tunnel")
            tunnel_settled = tunnel is None or tunnel.get("state") in ("open", "failed", "closed")
            if state.get("phase") == "ready" and tunnel_settled:
                if tunnel and tunnel.get("state") == "failed":
                    raise AiradevError(
                        f"the stack is ready, but the tunnel failed: {tunnel.get('message')}",
                        "see `airadev logs airadev`; the stack is still running: "
                        "`airadev tunnel` tries again, `airadev down` stops it",
                    )
                return Started(
                    list(names),
                    notes,
                    state.get("summary"),
                    daemon.pid,
                    _tunnel_status(tunnel),
                )
            if state.get("phase") in ("stopping", "stopped") and _ended_cleanly(daemon):
                raise AiradevError(
                    "the stack was stopped before it was ready (by `airadev down`, or a signal)",
                    "`airadev up` starts it again",
                )
            if state.get("phase") == "failed":
                failure = state["failure"]
                lines = logstore.tail(paths.log(failure["service"]), 15)
                raise AiradevError(
                    f"{failure['service']} is {failure['state']}: {failure['message']}",
                    (f"{failure['fix']}; " if failure.get("fix") else "")
                    + f"see `airadev logs {failure['service']}`; the stack is still running: "
                    "`airadev status`, `airadev down`",
                    details=_show_lines(failure["service"], lines),
                )
        if daemon.poll() is not None:
            lines = logstore.tail(paths.supervisor_out, 15) if paths.supervisor_out.exists() else []
            raise AiradevError(
                f"the supervisor exited during start-up (exit code {daemon.returncode})",
                f"see {paths.supervisor_out} and `airadev logs airadev`",
                details=_show_lines("supervisor", lines, stamped=False),
            )
        if time.monotonic() > deadline:
            raise _timed_out(paths, state, timeout)
        time.sleep(0.02)  # a small file read: polling it this often costs nothing


def _timed_out(paths: Paths, state: dict | None, timeout: float) -> AiradevError:
    """What `up -d --timeout` says when time runs out: the service that holds the others (started
    but not ready), what it waits for, what waits for it, and its last lines."""
    services = (state or {}).get("services", {})
    waiting = {n: s for n, s in services.items() if s.get("state") not in ("healthy", "running", "completed")}
    holders = [n for n, s in waiting.items() if s.get("state") not in ("waiting", "blocked")]
    if not holders:
        return AiradevError(
            f"not ready after {timeout:.0f}s: {', '.join(waiting) or 'the supervisor'}",
            "see `airadev status` and `airadev logs`; the stack keeps running",
        )
    name, holder = holders[0], waiting[holders[0]]
    why = holder.get("message") or "no answer yet"
    probe = f"; last probe: {holder['health']}" if holder.get("health") else ""
    held = [n for n in waiting if n not in holders]
    also = holders[1:]
    return AiradevError(
        f"not ready after {timeout:.0f}s: {name} is {holder.get('state')} ({why}{probe})"
        + (f", and {', '.join(held)} {'waits' if len(held) == 1 else 'wait'} for it" if held else "")
        + (f"; not ready either: {', '.join(also)}" if also else ""),
        f"see `airadev logs {name}` (give it longer with --timeout); the stack keeps running: "
        "`airadev status`, `airadev down`",
        details=_show_lines(name, logstore.tail(paths.log(name), 15)),
    )


def _ended_cleanly(daemon: subprocess.Popen[bytes]) -> bool:
    """The supervisor, stopping, ends with 0 (asked to stop) or not (an internal error: the
    caller then shows its last words)."""
    try:
        return daemon.wait(30) == 0
    except subprocess.TimeoutExpired:
        return True  # still stopping its services: it was asked to


def _show_lines(name: str, lines: list[bytes], stamped: bool = True) -> str:
    if not lines:
        return ""
    body = [line[logstore.TS_FIELD :] if stamped and logstore.has_stamp(line) else line for line in lines]
    text = b"".join(body).decode("utf-8", "replace").rstrip("\n")
    return f"last lines of {name}:\n" + "\n".join("  " + line for line in text.split("\n"))


def _tunnel_status(tunnel: dict[str, Any] | None) -> TunnelStatus | None:
    from airadev.status import TunnelStatus

    return TunnelStatus.from_json(tunnel) if tunnel else None
