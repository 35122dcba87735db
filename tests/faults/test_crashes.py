"""Crashes: beside a steady service run one that crash-loops, one that exits 0 at once, one
that hangs on start, one that closes its stdout but keeps running, one that floods 200 MB of
output without a newline, and one that ignores SIGTERM. The steady one stays up and readable,
each of the others gets the right state and message, and the supervisor's memory stays bounded
(its peak RSS, from the kernel's VmHWM, is a figure of the suite; at most 80 MB)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.figures import peak
from tests.harness import PY, Stack, fake, free_port, toml_list, wait_for

FLOOD_MB = 200


def vm_hwm(pid: int) -> float:
    """Peak resident memory of ``pid`` in MB (the kernel keeps it: no sampling misses a peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_misbehaving_services_leave_the_rest_up_readable_and_memory_bounded(stack: Stack, tmp_path: Path) -> None:
    steady_port, hang_port = free_port(), free_port()
    done = tmp_path / "flood-done"
    stack.write(f"""
[services.steady]
command = {toml_list(fake("slow_starter.py", steady_port, 0))}
port = {steady_port}
health = {{ tcp = true }}

[services.crasher]
command = {toml_list(fake("crasher.py"))}
restart = {{ max_restarts = 2, backoff = "50ms" }}

[services.oneshot]
command = {toml_list([PY, "-c", "print('oneshot: done')"])}

[services.hangs]
command = {toml_list(fake("slow_starter.py", hang_port, 3600))}
port = {hang_port}
health = {{ tcp = true, start_period = "1s", interval = "200ms", retries = 2 }}

[services.closer]
command = {toml_list(fake("closer.py"))}

[services.flood]
command = {toml_list(fake("flood_raw.py", FLOOD_MB, done))}

[services.ignorer]
command = {toml_list(fake("term_ignorer.py"))}
stop_grace = "1s"
""")
    console = tmp_path / "console.txt"
    proc = stack.foreground(out=console)
    stack.wait_state("crasher", "crash-loop", timeout=60)
    stack.wait_state("oneshot", "completed")
    stack.wait_state("hangs", "unhealthy", timeout=30)
    wait_for(done.exists, timeout=120, what="the flood to be written")
    for name in ("steady", "closer", "flood", "ignorer"):
        stack.wait_state(name, "healthy", "running")

    # States and messages are right.
    services = json.loads(stack.cli("status", "--json").stdout)["services"]
    assert services["crasher"]["message"] == "crash-loop: exited 3 times in a row (last: exit code 3)"
    assert "fatal: cannot connect to the database" in stack.log("airadev"), "its last lines are shown"
    assert f"tcp 127.0.0.1:{hang_port}" in json.dumps(services["hangs"]), services["hangs"]
    assert services["closer"]["state"] == "running" and services["closer"]["pid"]
    # The rest stays readable: status, logs of each, while the flood's log holds all its bytes.
    assert stack.cli("status").returncode == 0
    assert "closer: closing stdout" in stack.cli("logs", "closer").stdout
    assert "oneshot: done" in stack.cli("logs", "oneshot").stdout
    # (The flood could finish only because the supervisor read all of it: a pipe holds 64 KB.)
    tail = stack.cli("logs", "flood", "-n", "3")
    assert tail.returncode == 0 and "0123456789abcdef" in tail.stdout
    supervisor = stack.state()["supervisor_pid"]
    hwm = vm_hwm(supervisor)  # the watchdog is a process of its own, of about 7 MB
    peak("supervisor peak RSS under a 200 MB flood without newlines", hwm)
    assert hwm <= 80, f"the supervisor's peak RSS is {hwm:.1f} MB"

    # Ctrl-C: the SIGTERM ignorer is killed after its grace, and nothing is left.
    proc.send_signal(2)
    assert proc.wait(120) == 0
    assert "term ignorer: got SIGTERM, ignoring it" in stack.log("ignorer")
    stack.wait_nothing_left()
