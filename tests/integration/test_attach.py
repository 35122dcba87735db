"""`airadev attach SERVICE` (issue 15): a running service taken over into a terminal, pdb and
all, its dependents left running; given back to the supervisor when it ends, when the terminal
goes away, and ended by `down`. Driven through a real pseudo-terminal, as a person would."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest

from airadev import reaper
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
env = {{ PORT = "{port}" }}
health = {{ http = "http://127.0.0.1:{port}/" }}

[services.web]
command = {toml_list(fake("printer.py"))}
depends_on = {{ api = "healthy" }}

[services.migrate]
command = {toml_list(fake("printer.py", "--exit", 0))}

[services.db]
runtime = "postgres"
port = {free_port()}
""")
    assert stack.up().returncode == 0
    yield stack


def attach(stack: Stack, name: str) -> Terminal:
    return Terminal([PY, "-m", "airadev", "--workspace", str(stack.root), "attach", name], stack.environment())


def status(stack: Stack) -> dict:
    return json.loads(stack.cli("status", "--json").stdout)["services"]


def test_attach_takes_a_service_into_the_terminal_with_pdb_and_gives_it_back(attachable: Stack) -> None:
    stack = attachable
    before, web = stack.service("api")["pid"], stack.service("web")["pid"]
    term = attach(stack, "api")
    try:
        # Its breakpoint stops it in pdb here: stdin and the tty are this terminal's.
        term.expect("(Pdb) ")
        attached = status(stack)["api"]
        assert attached.get("attached", "").startswith("/dev/pts/") and attached["pid"] != before
        term.type("p answer\n")
        term.expect("42")
        term.type("c\n")
        term.expect("stdin a tty")
        wait_for(lambda: status(stack)["api"]["state"] == "healthy", what="api healthy while attached")
        shown = stack.cli("status").stdout
        assert "healthy (attached)" in shown and f"api: attached to {attached['attached']}" in shown
        assert stack.service("web")["pid"] == web  # its dependent kept running
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
        back = wait_for(
            lambda: (s := status(stack)["api"])["state"] == "healthy" and not s.get("attached") and s,
            what="api healthy again, the supervisor's",
        )
        assert back["pid"] not in (before, attached["pid"]) and not reaper.alive(attached["pid"])
        wait_for(lambda: f"pid {back['pid']}, stdin not a tty" in stack.log("api"), what="its output in the log again")
        assert stack.service("web")["pid"] == web
    finally:
        term.close()


def test_a_terminal_that_goes_away_gives_the_service_back_and_down_ends_an_attached_one(attachable: Stack) -> None:
    stack = attachable
    term = attach(stack, "api")
    try:
        term.expect("(Pdb) ")
        taken = status(stack)["api"]["pid"]
        os.kill(term.program(), signal.SIGKILL)  # the CLI dies; what it started runs on in the terminal
        assert term.exit_code() == 128 + signal.SIGKILL
        back = wait_for(
            lambda: (s := status(stack)["api"])["state"] == "healthy" and not s.get("attached") and s,
            what="api taken back after its terminal went away",
        )
        assert back["pid"] != taken and not reaper.alive(taken)
    finally:
        term.close()
    term = attach(stack, "api")
    try:
        term.expect("(Pdb) ")
        taken = status(stack)["api"]["pid"]
        down = stack.cli("down")
        assert down.returncode == 0, down.stderr
        term.expect("it was stopped")
        assert term.exit_code() == 0
        assert not reaper.alive(taken) and stack.left_by_stop(stack.stack_processes()) == []
    finally:
        term.close()


def test_attach_refuses_what_it_cannot_take_over(attachable: Stack) -> None:
    stack = attachable
    for name, words in (
        ("db", "runs as the database: `airadev attach` takes over a process service"),
        ("migrate", "migrate is a one-shot task (completed): nothing runs to take over"),
        ("nope", "no service 'nope' in this run"),
    ):
        refused = stack.cli("attach", name)
        assert refused.returncode == 1 and words in refused.stderr, refused.stderr
    term = attach(stack, "api")
    try:
        term.expect("(Pdb) ")
        twice = stack.cli("attach", "api")
        assert twice.returncode == 1 and "api is already attached to /dev/pts/" in twice.stderr
    finally:
        term.close()
    assert stack.cli("down").returncode == 0
    assert stack.cli("attach", "api").returncode == 3
