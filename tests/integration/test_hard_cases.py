"""Awkward moments: a terminal that hangs up, a console nobody reads, requests that arrive
while a service is between two instances, a dependency that gets fixed, secrets that change."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys

from airadev import reaper
from tests.harness import PY, Stack, cli_env, fake, pids_in_log, toml_list, wait_for


def test_closing_the_terminal_stops_everything(stack: Stack) -> None:
    """`airadev up` in a real terminal; the terminal goes away (SIGHUP, then EIO on write)."""
    stack.write(f"""
[services.spawner]
command = {toml_list(fake("spawner.py"))}
health = {{ log = "grandchild pid" }}
[services.chatty]
command = {toml_list(fake("flood.py", 50, "--stay"))}
""")
    pid, master = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        os.environ.update(cli_env())
        os.execv(PY, [PY, "-m", "airadev", "--workspace", str(stack.root), "up"])
    try:
        stack.wait_phase("ready")
        grandchild = pids_in_log(stack.log("spawner"), "grandchild pid")
        tree = stack.stack_processes() + grandchild
        os.close(master)  # the terminal closes: the kernel hangs up its session
        stack.wait_nothing_left(tree, timeout=60)
        assert "SIGHUP: stopping" in stack.log("airadev")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def test_a_console_nobody_reads_never_stalls_the_supervisor(stack: Stack) -> None:
    stack.write(f"""
[services.flood]
command = {toml_list(fake("flood.py", 200000, "--stay"))}
""")
    proc = subprocess.Popen(
        [PY, "-m", "airadev", "--workspace", str(stack.root), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=cli_env(),
    )
    stack.foregrounds.append(proc)
    try:
        # 25 MB: more than a log file holds before it rotates, far more than the console buffer.
        wait_for(lambda: "flood 0000199999 " in stack.log("flood"), timeout=30, what="the flood to be logged")
        # The supervisor answers although nobody reads its console (a stalled one would not).
        status = stack.cli("status", "--json", timeout=60)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["services"]["flood"]["state"] == "running"
        assert stack.cli("down").returncode == 0
        console, _ = proc.communicate(timeout=20)  # the reader comes back
        assert proc.returncode == 0
        assert b"bytes of output were left off the console" in console
        assert b"airadev | all stopped" in console
    finally:
        if proc.stdout:
            proc.stdout.close()


def test_a_dead_service_is_not_shown_healthy_and_a_restart_then_is_kept(stack: Stack) -> None:
    stack.write(f"""
[services.leaver]
command = {toml_list(fake("exit_leaving_child.py", 0.5))}
restart = "no"
stop_grace = "2s"
health = {{ log = "ready" }}
""")
    assert stack.up().returncode == 0
    # It exits; cleaning up its SIGTERM-ignoring child takes the 2 s grace period.
    wait_for(lambda: stack.service("leaver").get("state") != "healthy", timeout=60, what="the exit to show")
    assert stack.service("leaver")["state"] == "failed", "a dead service is never shown healthy"
    restart = stack.cli("restart", "leaver", "--wait", "20")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "leaver: healthy" in restart.stdout


def test_start_during_a_stop_is_kept(stack: Stack) -> None:
    stack.write(f"""
[services.stubborn]
command = {toml_list(fake("term_ignorer.py"))}
stop_grace = "1.5s"
health = {{ log = "ready" }}
""")
    assert stack.up().returncode == 0
    first = stack.service("stubborn")["pid"]
    stopping = subprocess.Popen(
        [PY, "-m", "airadev", "--workspace", str(stack.root), "stop", "stubborn"],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack.wait_state("stubborn", "stopping")
    start = stack.cli("start", "stubborn")
    stopping.wait(20)
    assert start.returncode == 0, start.stdout + start.stderr
    assert "stubborn: healthy" in start.stdout
    assert stack.service("stubborn")["pid"] not in (None, first)


def test_dependents_blocked_by_a_broken_dependency_start_once_it_is_fixed(stack: Stack) -> None:
    flag = stack.root / "fixed"
    stack.write(f"""
[services.db]
command = {toml_list(fake("gated.py", flag))}
restart = {{ max_restarts = 1, backoff = "50ms" }}
health = {{ log = "ready" }}
[services.app]
command = {toml_list(fake("printer.py"))}
depends_on = {{ db = "healthy" }}
""")
    assert stack.up().returncode == 1
    stack.wait_state("app", "blocked")
    flag.touch()
    restart = stack.cli("restart", "db")
    assert restart.returncode == 0, restart.stderr
    stack.wait_state("app", "running")
    assert stack.state()["phase"] == "ready"
    assert "app: db is healthy now: starting" in stack.log("airadev")


def test_restart_fails_when_the_service_is_not_ready_in_time(stack: Stack) -> None:
    stack.write(f"""
[services.slow]
command = {toml_list(fake("printer.py"))}
health = {{ log = "never said" }}
""")
    proc = stack.foreground()
    stack.wait_state("slow", "starting")
    result = stack.cli("restart", "slow", "--wait", "1")
    assert result.returncode == 1
    assert "slow is not ready after 1s (still starting)" in result.stderr
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


def test_up_detached_that_runs_out_of_time_names_what_holds_the_stack_and_its_last_lines(stack: Stack) -> None:
    stack.write(f"""
[services.slow]
command = {toml_list(fake("printer.py", "--lines", "2", "--tag", "warming"))}
health = {{ log = "never said" }}
[services.app]
command = {toml_list(fake("printer.py"))}
depends_on = {{ slow = "healthy" }}
[services.worker]
command = {toml_list(fake("printer.py"))}
depends_on = {{ slow = "healthy" }}
""")
    result = stack.cli("up", "--detach", "--timeout", "2")
    assert result.returncode == 1
    first, *rest = result.stderr.splitlines()
    assert first == (
        "error: not ready after 2s: slow is starting (waiting for log /never said/), and app, worker wait for it"
    ), result.stderr
    assert "last lines of slow:" in rest[0] and "warming 00000001" in result.stderr
    assert "fix: see `airadev logs slow` (give it longer with --timeout)" in result.stderr
    assert stack.state()["services"]["app"]["state"] == "waiting", "the stack keeps running"


def test_secrets_from_a_changed_env_file_and_from_probe_output_stay_hidden(stack: Stack) -> None:
    src = stack.root / "svc"
    src.mkdir()
    (src / ".env").write_text("API_TOKEN=first-secret-value-1\n")
    probe = f"{PY} -c \"import os; print('probing with', os.environ['API_TOKEN'])\""
    stack.write(f"""
[services.app]
cwd = "svc"
command = {toml_list(fake("printer.py", "--env", "API_TOKEN"))}
env_files = [".env"]
watch = ["."]
health = {{ exec = {json.dumps(probe)}, interval = "200ms" }}
""")
    assert stack.up().returncode == 0
    (src / ".env").write_text("API_TOKEN=second-secret-value-2\n")
    wait_for(lambda: stack.log("app").count("API_TOKEN is") >= 2, timeout=60, what="the restart after the change")
    stack.wait_state("app", "healthy")
    status = stack.cli("status", "--json").stdout
    assert "probing with [redacted:API_TOKEN]" in status
    everything = status + stack.cli("status").stdout
    for path in stack.state_dir.rglob("*"):
        if path.is_file() and not path.is_socket():
            everything += path.read_text(errors="replace")
    assert "first-secret-value-1" not in everything and "second-secret-value-2" not in everything
    assert stack.log("app").count("API_TOKEN is [redacted:API_TOKEN]") == 2


def test_the_workspace_cannot_shadow_the_supervisors_modules(stack: Stack) -> None:
    (stack.root / "random.py").write_text("raise SystemExit('the workspace was imported')\n")
    (stack.root / "json.py").write_text("raise SystemExit('the workspace was imported')\n")
    stack.write(f"[services.a]\ncommand = {toml_list(fake('printer.py'))}\n")
    result = stack.up()
    assert result.returncode == 0, result.stderr


def test_a_daemonising_command_is_reported(stack: Stack) -> None:
    stack.write(f"""
[services.forks]
command = "sh -c '{sys.executable} -c \\"import time; time.sleep(60)\\" & exit 0'"
restart = "no"
""")
    assert stack.up().returncode == 0
    wait_for(lambda: "left 1 processes running after it exited" in stack.log("airadev"), timeout=60, what="the warning")
    assert stack.service("forks")["state"] == "completed"
    assert not [
        p
        for p in stack.stack_processes()
        if reaper.alive(p) and p != stack.state()["supervisor_pid"] and p != stack.state()["reaper_pid"]
    ]


def test_a_one_shot_task_is_ready_once_it_completes_and_restart_waits_for_it(stack: Stack) -> None:
    """A prestart task (migrations, then the first data): what depends on it starts once it has
    completed, the ready summary counts its real run time (not its first 0.4 s), and
    `airadev restart TASK` answers when it has completed (0) or failed (1, its last lines)."""
    flag = stack.root / "broken"
    task = f"sleep 1.5; if [ -e {flag} ]; then echo 'migration 7 failed: relation exists'; exit 3; fi; echo migrated"
    stack.write(f"""
[services.prestart]
command = {toml_list(["sh", "-c", task])}
[services.api]
command = {toml_list(fake("printer.py", "--tag", "api-up", "--lines", "1"))}
health = {{ log = "api-up" }}
depends_on = {{ prestart = "completed" }}
""")
    assert stack.up().returncode == 0
    status = json.loads(stack.cli("status", "--json").stdout)
    assert status["services"]["prestart"]["state"] == "completed"
    ready = {s["name"]: s for s in status["summary"]["services"]}
    assert ready["prestart"]["own_time"] >= 1.5 and ready["api"]["ready_after"] >= ready["prestart"]["ready_after"]
    assert status["summary"]["critical_path"] == ["prestart", "api"]
    assert "prestart: completed in" in stack.log("airadev")
    again = stack.cli("restart", "prestart")
    assert again.returncode == 0 and again.stdout.startswith("prestart: completed"), again.stdout + again.stderr
    flag.touch()
    failed = stack.cli("restart", "prestart")
    assert failed.returncode == 1 and "prestart is failed" in failed.stderr
    assert "migration 7 failed: relation exists" in failed.stderr
