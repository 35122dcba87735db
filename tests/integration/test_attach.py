"""`airadev attach SERVICE` (issue 15): a running service taken over into a terminal, pdb and
all, its dependents left running; given back to the supervisor when it ends, when the terminal
goes away, and ended by `stop` and `down`. Driven through a real pseudo-terminal under a shell,
as a person would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import termios
from collections.abc import Iterator
from typing import Any

import pytest

from airadev import control, reaper
from airadev.state import Paths
from tests.harness import PY, Stack, Terminal, fake, free_port, toml_list, wait_for


@pytest.fixture
def attachable(stack: Stack) -> Iterator[Stack]:
    port = free_port()
    (stack.root / "api").mkdir()
    stack.write(f"""
[services.api]
cwd = "api"
watch = ["."]
command = {toml_list(fake("debuggee.py"))}
port = {port}
env = {{ PORT = "{port}", IGNORE_HUP = "1", IGNORE_TERM_ATTACHED = "1" }}
health = {{ http = "http://127.0.0.1:{port}/" }}
stop_grace = "3s"

[services.web]
command = {toml_list(fake("printer.py"))}
depends_on = {{ api = {{ condition = "healthy", restart = true }} }}

[services.migrate]
command = {toml_list(fake("printer.py", "--exit", 0))}

[services.broken]
command = {toml_list(fake("printer.py", "--exit", 3))}
restart = "no"

[services.after-broken]
command = {toml_list(fake("printer.py"))}
depends_on = {{ broken = "completed" }}

[services.db]
runtime = "postgres"
port = {free_port()}
""")
    stack.up()  # broken fails, and after-broken is blocked: on purpose
    stack.wait_state("after-broken", "blocked")
    stack.wait_state("api", "healthy")
    yield stack


def attach(stack: Stack, name: str, before: Any = None) -> Terminal:
    return Terminal([PY, "-m", "airadev", "--workspace", str(stack.root), "attach", name], stack.environment(), before)


def status(stack: Stack) -> dict:
    return json.loads(stack.cli("status", "--json").stdout)["services"]


def taken_back(stack: Stack, name: str, what: str) -> dict:
    return wait_for(lambda: (s := status(stack)[name])["state"] == "healthy" and not s.get("attached") and s, what=what)


def test_attach_takes_a_service_into_the_terminal_with_pdb_and_gives_it_back(attachable: Stack) -> None:
    stack = attachable
    before, web = stack.service("api")["pid"], stack.service("web")["pid"]

    def tostop(fd: int) -> None:  # `stty tostop`: a background write stops the writer
        modes = termios.tcgetattr(fd)
        modes[3] |= termios.TOSTOP
        termios.tcsetattr(fd, termios.TCSANOW, modes)

    term = attach(stack, "api", tostop)
    try:
        # Its breakpoint stops it in pdb here: stdin and the tty are this terminal's.
        term.expect("(Pdb) ")
        attached = status(stack)["api"]
        assert attached.get("attached", "").startswith("/dev/pts/") and attached["pid"] != before
        term.type("p answer\n")
        term.expect("42")
        # Ctrl-Z does not suspend it: the supervisor probes it, no shell knows it as a job.
        term.type("\x1a")
        term.expect("cannot be suspended while attached: continued")
        term.type("c\n")
        term.expect("stdin a tty")
        wait_for(lambda: status(stack)["api"]["state"] == "healthy", what="api healthy while attached")
        shown = stack.cli("status").stdout
        assert "healthy (attached)" in shown and f"api: attached to {attached['attached']}" in shown
        # Its dependent kept running, though it asked to be restarted after api restarts.
        assert stack.service("web")["pid"] == web
        # A change of its code does not restart it under the debugger: the terminal decides.
        (stack.root / "api" / "edited.py").write_text("x = 1\n")
        wait_for(lambda: "not restarted while attached" in stack.log("airadev"), what="the watch's word")
        assert status(stack)["api"]["pid"] == attached["pid"]
        # Ctrl-C is the service's (the terminal's foreground group): pdb takes it; quit.
        term.type("\x03")
        term.expect("(Pdb) ")
        term.type("q\n")
        term.expect("the supervisor has it again")
        assert term.exit_code() == 0
        back = taken_back(stack, "api", "api healthy again, the supervisor's")
        assert back["pid"] not in (before, attached["pid"]) and not reaper.alive(attached["pid"])
        wait_for(lambda: f"pid {back['pid']}, stdin not a tty" in stack.log("api"), what="its output in the log again")
        assert stack.service("web")["pid"] == web
        # pdb's raw mode is not left behind: the terminal echoes and reads lines again.
        modes = termios.tcgetattr(term.master)
        assert modes[3] & termios.ECHO and modes[3] & termios.ICANON
    finally:
        term.close()


def test_a_terminal_that_goes_away_gives_the_service_back(attachable: Stack) -> None:
    stack = attachable
    for end in (signal.SIGKILL, signal.SIGHUP):  # the CLI killed; its terminal closed (a hangup)
        term = attach(stack, "api")
        try:
            term.expect("(Pdb) ")
            taken = status(stack)["api"]["pid"]
            os.kill(term.program(), end)  # what it started runs on (it ignores SIGHUP)
            assert term.exit_code() == 128 + end
            back = taken_back(stack, "api", f"api taken back after its terminal went away ({end.name})")
            assert back["pid"] != taken and not reaper.alive(taken)
        finally:
            term.close()


def test_stop_and_down_end_an_attached_service_whatever_its_terminal_does(attachable: Stack) -> None:
    stack = attachable
    term = attach(stack, "api")
    try:
        term.expect("(Pdb) ")
        taken = status(stack)["api"]["pid"]
        # `stop` while the attaching CLI dies: stopped it stays (not taken back and restarted).
        stop = subprocess.Popen(
            [PY, "-m", "airadev", "--workspace", str(stack.root), "stop", "api"], env=stack.environment()
        )
        stack.wait_state("api", "stopping")
        os.kill(term.program(), signal.SIGKILL)
        assert stop.wait(60) == 0
        assert stack.service("api")["state"] == "stopped" and not reaper.alive(taken)
    finally:
        term.close()
    assert stack.cli("start", "api").returncode == 0
    term = attach(stack, "api")
    try:
        term.expect("(Pdb) ")
        taken = status(stack)["api"]["pid"]
        down = stack.cli("down")
        assert down.returncode == 0, down.stderr
        term.expect("it was stopped")
        assert term.exit_code() == 0
        assert not reaper.alive(taken) and stack.left_by_stop(stack.stack_processes()) == []
        modes = termios.tcgetattr(term.master)  # pdb's modes put back here too
        assert modes[3] & termios.ECHO and modes[3] & termios.ICANON
    finally:
        term.close()


def test_attach_refuses_what_it_cannot_take_over(attachable: Stack) -> None:
    stack = attachable
    assert stack.cli("stop", "web").returncode == 0
    for name, words in (
        ("db", "runs as the database: `airadev attach` takes over a process service"),
        ("migrate", "migrate is a one-shot task (completed): nothing runs to take over"),
        ("after-broken", "after-broken is blocked (not started: broken is failed): nothing runs to take over"),
        ("web", "web is stopped: nothing runs to take over"),
        ("nope", "no service 'nope' in this run"),
    ):
        refused = stack.cli("attach", name)
        assert refused.returncode == 1 and words in refused.stderr, refused.stderr
    # Not in the foreground of its terminal (`airadev attach api &`, setsid): refused, not started.
    master, slave = os.openpty()
    try:
        background = subprocess.run(
            [PY, "-m", "airadev", "--workspace", str(stack.root), "attach", "api"],
            stdin=slave,
            capture_output=True,
            text=True,
            env=stack.environment(),
            start_new_session=True,
            timeout=60,
        )
    finally:
        os.close(master)
        os.close(slave)
    assert background.returncode == 2 and "attach needs the foreground of the terminal" in background.stderr
    term = attach(stack, "api")
    try:
        term.expect("(Pdb) ")
        twice = stack.cli("attach", "api")
        assert twice.returncode == 1 and "api is already attached to /dev/pts/" in twice.stderr
    finally:
        term.close()
    assert stack.cli("down").returncode == 0
    assert stack.cli("attach", "api").returncode == 3


def test_a_cli_that_never_says_what_it_started_does_not_hold_up_stop(attachable: Stack) -> None:
    """The attach conversation left hanging after the start was handed over (the CLI Ctrl-Z'd
    or stuck): `stop` still stops the service, at once, and nothing is started behind it."""
    stack = attachable
    session = control.Session(Paths(stack.root).socket, control.Op.ATTACH, service="api", tty="a frozen terminal")
    try:
        spec = session.answer(60)
        assert spec["command"] and spec["env"][reaper.INSTANCE_VAR].startswith("api.")
        stopped = stack.cli("stop", "api", timeout=20)  # not the 30 s the CLI would have had
        assert stopped.returncode == 0 and stopped.stdout.strip() == "api: stopped", stopped.stdout + stopped.stderr
        assert stack.service("api")["state"] == "stopped"
        assert reaper.marked(stack.state()["marker"], instance=spec["env"][reaper.INSTANCE_VAR]) == []
    finally:
        session.close()
    assert stack.cli("start", "api").returncode == 0
    stack.wait_state("api", "healthy")
