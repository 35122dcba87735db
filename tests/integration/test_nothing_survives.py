"""Nothing started for the stack survives, whatever way `up` ends: grandchildren, setsid
daemons, a SIGTERM-ignorer and a process that overwrites its environment (redis-server)
included."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal

import pytest

from airadev import config as config_module
from airadev.state import new_marker
from airadev import reaper
from tests.harness import Stack, fake, free_port, pids_in_log, port_free, toml_list, wait_for

REDIS = shutil.which("redis-server")


def misbehaving_stack(stack: Stack) -> int:
    redis_port = free_port()
    stack.write(f"""
[services.redis]
command = "{REDIS} --port {redis_port} --save '' --appendonly no"
port = {redis_port}
health = {{ tcp = true }}

[services.spawner]
command = {toml_list(fake("spawner.py"))}
health = {{ log = "grandchild pid" }}
depends_on = {{ redis = "healthy" }}

[services.daemonizer]
command = {toml_list(fake("daemonizer.py"))}
health = {{ log = "daemon pid" }}

[services.stubborn]
command = {toml_list(fake("term_ignorer.py"))}
stop_grace = "1s"
health = {{ log = "ready" }}
""")
    return redis_port


def everything_started(stack: Stack) -> list[int]:
    """Every pid of the running stack, found independently of airadev's own bookkeeping."""
    # The last ones printed: the logs keep earlier runs' lines too.
    grandchild = pids_in_log(stack.log("spawner"), "grandchild pid")[-1:]
    daemon = pids_in_log(stack.log("daemonizer"), "daemon pid")[-1:]
    assert grandchild and daemon
    pids = set(grandchild + daemon + stack.stack_processes())
    assert all(reaper.alive(p) for p in grandchild + daemon)
    assert reaper.stat(daemon[0])[2] != reaper.stat(stack.service("daemonizer")["pid"])[2], "the daemon left the group"
    return sorted(pids)


def test_down_leaves_nothing(stack: Stack) -> None:
    port = misbehaving_stack(stack)
    assert stack.up().returncode == 0
    pids = everything_started(stack)
    assert len(pids) >= 8
    result = stack.cli("down")
    assert result.returncode == 0, result.stderr
    assert stack.left_by_stop(pids) == [], "down returned before everything was gone"
    stack.wait_nothing_left(pids, timeout=60)
    assert port_free(port)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_foreground_signals_stop_everything_in_reverse_order(stack: Stack, sig: int) -> None:
    misbehaving_stack(stack)
    out = stack.root / "console.txt"
    proc = stack.foreground(out=out)
    stack.wait_phase("ready")
    pids = everything_started(stack)
    proc.send_signal(sig)
    assert proc.wait(60) == 0
    assert stack.left_by_stop(pids) == [], "up ended before everything was gone"
    stack.wait_nothing_left(pids, timeout=60)
    console = out.read_text()
    assert f"{signal.Signals(sig).name}: stopping" in console
    assert console.index("spawner: stopped") < console.index("redis: stopped"), "dependents stop first"
    assert "all stopped" in console


@pytest.mark.parametrize("mode", ["detached", "foreground"])
def test_sigkill_of_the_supervisor_leaves_nothing(stack: Stack, mode: str) -> None:
    port = misbehaving_stack(stack)
    if mode == "detached":
        assert stack.up().returncode == 0
    else:
        stack.foreground()
        stack.wait_phase("ready")
    pids = everything_started(stack)
    supervisor = stack.state()["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)
    # The watchdog gives the SIGTERM-ignorer its grace period, then kills it.
    stack.wait_nothing_left(pids, timeout=60)
    assert port_free(port)
    status = stack.cli("status")
    assert status.returncode == 3 and "died without stopping the stack" in status.stderr
    down = stack.cli("down")
    assert down.returncode == 0 and "none of its processes were left" in down.stdout


def test_a_dead_run_is_reaped_by_the_next_up_and_by_down(stack: Stack) -> None:
    misbehaving_stack(stack)
    assert stack.up().returncode == 0
    pids = everything_started(stack)
    state = stack.state()
    # Kill the supervisor and its watchdog together: the services survive...
    os.kill(state["reaper_pid"], signal.SIGKILL)
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not reaper.alive(state["supervisor_pid"]), what="the supervisor to die")
    survivors = [p for p in pids if reaper.alive(p)]
    assert len(survivors) >= 6
    # ...until the next `up`, which ends them before starting anything.
    again = stack.up()
    assert again.returncode == 0, again.stderr
    assert f"ended {len(survivors)} processes left by an earlier run" in again.stderr
    assert not any(reaper.alive(p) for p in survivors)
    # And `down` does the same for a dead run.
    pids = everything_started(stack)
    state = stack.state()
    os.kill(state["reaper_pid"], signal.SIGKILL)
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not reaper.alive(state["supervisor_pid"]), what="the supervisor to die")
    down = stack.cli("down")
    assert down.returncode == 0
    assert "ended" in down.stdout and "leftover processes" in down.stdout
    assert [p for p in pids if reaper.alive(p)] == [], "down returned before the leftovers were gone"


def test_an_internal_error_stops_everything(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside airadev (here: a probe that raises) stops the stack instead of leaving it
    running unwatched."""
    from airadev.supervisor import probes
    from airadev.supervisor.runner import Supervisor

    port = free_port()
    stack.write(f"""
[services.spawner]
command = {toml_list(fake("spawner.py"))}
[services.web]
command = {toml_list(fake("slow_starter.py", port, 0.3))}
port = {port}
health = {{ tcp = true }}
""")

    async def broken_check(*args: object, **kwargs: object) -> tuple[bool, str]:
        await asyncio.sleep(0.5)
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(probes, "check", broken_check)
    cfg = config_module.load(stack.root)
    supervisor = Supervisor(cfg, cfg.names(), marker=new_marker(stack.root))
    reason = asyncio.run(supervisor.run())
    assert reason == "internal error: RuntimeError('probe exploded')"
    assert supervisor.internal_error == "RuntimeError: probe exploded"
    assert "internal error in probe-web" in stack.log("airadev")
    grandchild = pids_in_log(stack.log("spawner"), "grandchild pid")
    assert grandchild and not any(reaper.alive(p) for p in grandchild), "run() returned before the grandchild was gone"
    assert port_free(port)
