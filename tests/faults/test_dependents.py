"""Dependents: when a dependency restarts or becomes unhealthy, the services that need it
healthy are told; a restart of theirs is held until it is healthy again; those configured with
`restart = true` are restarted once it is back; and `logs -f` follows a service across all of
its restarts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.figures import count
from tests.harness import PY, Follow, Stack, fake, free_port, toml_list, wait_for


def pid_of(stack: Stack, name: str) -> int:
    return int(stack.service(name)["pid"])


def test_dependents_are_told_held_and_restarted_as_configured(stack: Stack, tmp_path: Path) -> None:
    port, flag = free_port(), tmp_path / "unhealthy"
    stack.write(f"""
[services.dep]
command = {toml_list(fake("switchable.py", port, flag))}
port = {port}
health = {{ http = "/health", interval = "200ms", retries = 1 }}

[services.held]
command = {toml_list(fake("printer.py", "--lines", 1, "--tag", "held"))}
depends_on = {{ dep = "healthy" }}

[services.follower]
command = {toml_list(fake("printer.py", "--lines", 1, "--tag", "follower"))}
depends_on = {{ dep = {{ condition = "healthy", restart = true }} }}
""")
    assert stack.up().returncode == 0
    held, follower = pid_of(stack, "held"), pid_of(stack, "follower")
    follow = Follow(stack, "follower")

    # Unhealthy without a restart: both are told, neither is restarted.
    flag.touch()
    stack.wait_state("dep", "unhealthy", timeout=60)
    log = wait_for(
        lambda: (t := stack.log("airadev")).count("dep is unhealthy now") >= 2 and t,
        timeout=60,
        what="both dependents to be told",
    )
    assert re.search(r"held: dep is unhealthy now \(.*\); a restart of it waits for dep", log), log
    assert re.search(r"follower: dep is unhealthy now \(.*\); it is restarted after dep restarts", log), log
    # A restart of `held` meanwhile is held back until dep is healthy again.
    restart = subprocess.Popen(
        [PY, "-m", "airadev", "--workspace", str(stack.root), "restart", "held"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=stack.environment(),
    )
    stack.wait_state("held", "waiting", timeout=60)
    assert stack.service("held")["message"] == "waiting for dep (healthy)"
    wait_for(lambda: "held: held: waiting for dep (healthy), now unhealthy" in stack.log("airadev"), timeout=60)
    flag.unlink()
    stack.wait_state("dep", "healthy", timeout=60)
    assert restart.wait(30) == 0, restart.stdout.read() if restart.stdout else ""
    assert pid_of(stack, "held") != held and pid_of(stack, "follower") == follower, "follower: dep did not restart"

    # A restart of dep: `follower` (restart = true) is restarted once dep is ready; `held` is not.
    held = pid_of(stack, "held")
    assert stack.cli("restart", "dep").returncode == 0
    wait_for(
        lambda: (
            stack.service("follower").get("pid") not in (None, follower)
            and stack.service("follower")["state"] == "running"
        ),
        timeout=60,
        what="follower to be restarted",
    )
    assert pid_of(stack, "held") == held
    assert "follower: restarting: dep was restarted" in stack.log("airadev")

    # A dependency stopped by the user blocks a restart of its dependents until it is started.
    # (`follower`, restart = true, is restarted once dep is back: a stop and a start is a restart.)
    follower = pid_of(stack, "follower")
    assert stack.cli("stop", "dep").returncode == 0
    blocked = stack.cli("restart", "held")
    assert blocked.returncode == 1 and "not started: dep is stopped" in blocked.stderr, blocked.stderr
    assert stack.service("held")["state"] == "blocked"
    assert stack.cli("start", "dep").returncode == 0
    stack.wait_state("held", "running", timeout=60)
    wait_for(
        lambda: (
            stack.service("follower").get("pid") not in (None, follower)
            and stack.service("follower")["state"] == "running"
        ),
        timeout=60,
        what="follower restarted again",
    )

    # `logs -f` saw the follower's lines of all three of its starts.
    wait_for(lambda: follow.text().count("follower 00000000") >= 3, timeout=60, what="logs -f to show every start")
    seen = follow.stop().count("follower 00000000")
    count("lines compared", 3)
    count("lost lines", max(0, 3 - seen))
    assert seen == 3
    assert stack.cli("down").returncode == 0
    stack.wait_nothing_left()


def test_a_restart_storm_of_a_dependency_leaves_logs_f_whole(stack: Stack) -> None:
    """`logs -f` of a service restarted 100 times misses no line and repeats none."""
    stack.write(f"""
[services.talker]
command = {toml_list(fake("printer.py", "--lines", 3, "--tag", "talker"))}
health = {{ log = "talker 00000002" }}
""")
    assert stack.up().returncode == 0
    follow = Follow(stack, "talker")
    restarts = 100
    for _ in range(restarts):
        assert stack.cli("restart", "talker").returncode == 0
    wait_for(
        lambda: follow.text().count("talker 00000002") >= restarts + 1, timeout=30, what="logs -f to show every start"
    )
    out = follow.stop()
    seen = re.findall(r"talker (\d{8}) x", out)
    expected = ["00000000", "00000001", "00000002"] * (restarts + 1)
    count("lines compared", len(expected))
    count("lost lines", sum(1 for a, b in zip(expected, seen) if a != b) + max(0, len(expected) - len(seen)))
    assert seen == expected, f"{len(seen)} lines of {len(expected)}"
    assert stack.cli("down").returncode == 0
