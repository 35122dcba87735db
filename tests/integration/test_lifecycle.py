"""The supervisor with real processes: order, health, restarts, crash-loop, control, logs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from airadev import reaper
from tests.harness import Follow, Stack, fake, free_port, port_free, toml_list, wait_for


def test_dependency_order_health_status_logs_and_down(stack: Stack) -> None:
    db_port, web_port = free_port(), free_port()
    stack.write(f"""
[services.db]
command = {toml_list(fake("slow_starter.py", db_port, 0.8))}
port = {db_port}
health = {{ tcp = true }}

[services.web]
aliases = ["w"]
command = {toml_list(fake("slow_starter.py", web_port, 0.2))}
port = {web_port}
health = {{ tcp = true }}
depends_on = {{ db = "healthy" }}

[services.side]
command = {toml_list(fake("printer.py", "--lines", "3", "--tag", "side"))}
""")
    result = stack.up()
    assert result.returncode == 0, result.stderr
    assert "all 3 services ready" in result.stdout
    # The critical path is db then web, each taking at least its fake's start delay.
    path = re.search(r"critical path: db (\d+\.\d+)s → web (\d+\.\d+)s", result.stdout)
    assert path, result.stdout
    assert float(path[1]) >= 0.8 and float(path[2]) >= 0.2, result.stdout

    own = stack.log("airadev")
    assert own.index("db: ready") < own.index("web: started"), "web starts only once db is healthy"
    assert own.index("side: started") < own.index("db: ready"), "independent services start in parallel"

    status = stack.cli("status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["schema"] == 1 and data["phase"] == "ready"
    assert {n: s["state"] for n, s in data["services"].items()} == {
        "db": "healthy",
        "web": "healthy",
        "side": "running",
    }
    web = data["services"]["web"]
    assert web["port"] == web_port and web["restarts"] == 0 and web["processes"] == 1
    assert reaper.alive(web["pid"])
    assert data["summary"]["critical_path"] == ["db", "web"]

    plain = stack.cli("status")
    assert plain.returncode == 0 and "healthy" in plain.stdout and str(web_port) in plain.stdout

    logs = stack.cli("logs", "w", "-n", "1")
    assert logs.returncode == 0
    assert logs.stdout.strip() == f"web | slow starter: listening on {web_port}"
    merged = stack.cli("logs", "side", "web", "--no-prefix", "-n", "2").stdout.splitlines()
    assert "side 00000002 " + "x" * 60 in merged and f"slow starter: listening on {web_port}" in merged
    stamped = stack.cli("logs", "side", "-n", "1", "--timestamps").stdout
    assert stamped.startswith("side | 20") and stamped.rstrip().endswith("x" * 60)

    down = stack.cli("down")
    assert down.returncode == 0, down.stderr
    assert "stopped 3 services" in down.stdout
    stack.wait_nothing_left()
    assert port_free(db_port) and port_free(web_port)
    assert stack.cli("status").returncode == 3
    again = stack.cli("down")  # idempotent, as compose's down is
    assert again.returncode == 0 and "nothing is running: nothing to stop" in again.stdout
    # Logs are still there after the stack stopped.
    assert f"listening on {web_port}" in stack.cli("logs", "web").stdout


def test_crash_loop_shows_the_last_lines_and_blocks_dependents(stack: Stack) -> None:
    stack.write(f"""
[services.crasher]
command = {toml_list(fake("crasher.py"))}
restart = {{ policy = "on-failure", max_restarts = 2, backoff = "50ms" }}
health = {{ log = "never printed" }}

[services.after]
command = {toml_list(fake("printer.py"))}
depends_on = {{ crasher = "healthy" }}
""")
    result = stack.up()
    assert result.returncode == 1
    assert "crasher is crash-loop: crash-loop: exited 3 times in a row (last: exit code 3)" in result.stderr
    assert "crasher: fatal: cannot connect to the database" in result.stderr, "the last lines are shown"
    stack.wait_state("after", "blocked")
    assert stack.service("crasher")["restarts"] == 2
    assert "not started: crasher is crash-loop" in stack.service("after")["message"]
    assert "last lines:" in stack.log("airadev")


def test_sigterm_ignorer_gets_sigkill_after_the_grace_period(stack: Stack) -> None:
    stack.write(f"""
[services.stubborn]
command = {toml_list(fake("term_ignorer.py"))}
stop_grace = "1s"
health = {{ log = "ready" }}
""")
    assert stack.up().returncode == 0
    pid = stack.service("stubborn")["pid"]
    started = time.monotonic()
    result = stack.cli("stop", "stubborn")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "stubborn: stopped" in result.stdout
    assert took >= 1.0, "it was given its grace period"
    assert not reaper.alive(pid)
    assert "got SIGTERM, ignoring it" in stack.log("stubborn")
    assert stack.service("stubborn")["state"] == "stopped"
    start = stack.cli("start", "stubborn")
    assert start.returncode == 0 and "stubborn: healthy" in start.stdout


def test_status_shows_the_cpu_and_memory_the_kernel_counts(stack: Stack) -> None:
    """`status`'s CPU share and memory agree with what psutil reads for the same process."""
    import psutil

    stack.write(f"""
[services.burner]
command = {toml_list(fake("burner.py", 0.6, 64))}
health = {{ log = "burnt" }}
""")
    assert stack.up().returncode == 0
    data = json.loads(stack.cli("status", "--json").stdout)["services"]["burner"]
    process = psutil.Process(data["pid"])
    cpu_seconds = sum(process.cpu_times()[:2])  # idle since "burnt": it no longer moves
    assert cpu_seconds >= 0.5
    # The first status counts from the start: the CPU seconds over the uptime, as a share of a core.
    expected = cpu_seconds / data["uptime"] * 100
    assert abs(data["cpu_percent"] - expected) <= max(2.0, 0.1 * expected), (data, cpu_seconds)
    rss = process.memory_info().rss
    assert rss >= 64 * 1024 * 1024 and abs(data["rss_bytes"] - rss) <= 0.05 * rss, (data["rss_bytes"], rss)
    # Since the previous status it burnt nothing more.
    again = json.loads(stack.cli("status", "--json").stdout)["services"]["burner"]
    assert sum(process.cpu_times()[:2]) == cpu_seconds and again["cpu_percent"] == 0.0, again


def test_restart_from_another_process_and_logs_follow_across_it(stack: Stack) -> None:
    port = free_port()
    stack.write(f"""
[services.web]
command = {toml_list(fake("slow_starter.py", port, 0.1))}
port = {port}
health = {{ tcp = true }}
""")
    assert stack.up().returncode == 0
    old = stack.service("web")["pid"]
    # The old instance's last line comes first: from then on the follower is following.
    follower = Follow(stack, "web", "-n", "1", "--no-prefix")
    wait_for(lambda: f"listening on {port}" in follower.text(), what="logs -f to show the last line")
    result = stack.cli("restart", "web")
    assert result.returncode == 0, result.stderr
    assert "web: healthy" in result.stdout
    new = stack.service("web")
    assert new["pid"] != old and not reaper.alive(old)
    assert new["restarts"] == 1 and new["state"] == "healthy"
    assert stack.cli("down").returncode == 0
    code, out = follower.ended()
    assert code == 0, "logs -f ends when the stack stops"
    assert out.count("starting, ready in") == 1 and out.count(f"listening on {port}") == 2, (
        f"the follower saw the old instance's last line, then the restarted instance, once:\n{out}"
    )


def stack_cli(stack: Stack) -> list[str]:
    import sys

    return [sys.executable, "-m", "airadev", "--workspace", str(stack.root)]


def test_up_on_a_running_stack_applies_a_changed_config_as_compose_does(stack: Stack) -> None:
    """Compose's behaviour: `up` on a running stack restarts what changed, starts what is new,
    stops what was removed, and leaves the rest running (same pid); `status` says when the file
    changed since; a file that does not load changes nothing."""
    head = f"[services.a]\ncommand = {toml_list(fake('printer.py', '--env', 'COLOUR'))}\nenv = {{ COLOUR = 'red' }}\n"
    keep = f"[services.keep]\ncommand = {toml_list(fake('printer.py'))}\n"
    gone = f"[services.gone]\ncommand = {toml_list(fake('printer.py'))}\n"
    stack.write(head + keep + gone)
    assert stack.up().returncode == 0
    supervisor, kept = stack.state()["supervisor_pid"], stack.service("keep")["pid"]
    again = stack.cli("up", "--detach")
    assert again.returncode == 0 and "airadev.toml has not changed: nothing to do" in again.stdout
    assert json.loads(stack.cli("status", "--json").stdout)["config_changed"] is False
    new = f"[services.new]\ncommand = {toml_list(fake('printer.py'))}\ndepends_on = {{ a = 'started' }}\n"
    stack.write(head.replace("'red'", "'blue'") + keep + new)
    assert json.loads(stack.cli("status", "--json").stdout)["config_changed"] is True
    assert "airadev.toml changed since up: `airadev up` applies it" in stack.cli("status").stderr
    (stack.root / "airadev.toml").write_text("[services.a\n")  # a broken file: nothing happens
    broken = stack.cli("up", "--detach")
    assert broken.returncode == 2 and set(stack.state()["services"]) == {"a", "keep", "gone"}
    stack.write(head.replace("'red'", "'blue'") + keep + new)
    applied = stack.cli("up", "--detach")
    assert applied.returncode == 0, applied.stderr
    assert "started: new" in applied.stdout and "restarted: a" in applied.stdout and "stopped: gone" in applied.stdout
    state = stack.state()
    assert state["supervisor_pid"] == supervisor and set(state["services"]) == {"a", "keep", "new"}
    assert state["services"]["keep"]["pid"] == kept, "an unchanged service keeps running"
    wait_for(lambda: "COLOUR is blue" in stack.log("a"), what="a restarted with its new env")
    assert json.loads(stack.cli("status", "--json").stdout)["config_changed"] is False
    # --runtime, --build, --tunnel belong to a new run.
    refused = stack.cli("up", "--detach", "--build")
    assert refused.returncode != 0 and "apply to a new run" in refused.stderr


def test_port_held_by_a_stranger_stops_up_before_anything_starts(stack: Stack) -> None:
    port = free_port()
    stranger = subprocess.Popen(fake("slow_starter.py", port, 0))
    try:
        wait_for(lambda: not port_free(port), what="the stranger to listen")
        stack.write(f"""
[services.first]
command = {toml_list(fake("printer.py", "--tag", "first", "--lines", "1"))}
[services.web]
command = {toml_list(fake("slow_starter.py", port, 0))}
port = {port}
""")
        result = stack.up()
        assert result.returncode == 1
        assert f"port {port} (services.web) is held by pid {stranger.pid}: " in result.stderr
        assert "slow_starter.py" in result.stderr and f"kill {stranger.pid}" in result.stderr
        assert not stack.log("first"), "nothing was started"
        assert stranger.poll() is None, "the stranger is not touched"
    finally:
        stranger.kill()
        stranger.wait()


def test_partial_line_is_shown_after_a_pause(stack: Stack) -> None:
    stack.write(f"[services.prompt]\ncommand = {toml_list(fake('printer.py', '--partial', 'password> '))}\n")
    assert stack.up().returncode == 0
    wait_for(lambda: "password> \n" in stack.log("prompt"), timeout=60, what="the partial line")


def test_secrets_never_reach_console_or_files(stack: Stack) -> None:
    secret = "sk_test_51Hzq8ZsecretvalueXYZ"
    (stack.root / ".env").write_text(f"STRIPE_SECRET_KEY={secret}\nPUBLIC_NAME=visible-value\n")
    stack.write(f"""
[services.leaky]
command = {toml_list(fake("printer.py", "--env", "STRIPE_SECRET_KEY", "--env", "PUBLIC_NAME"))}
env_files = [".env"]
""")
    out = stack.root / "console.txt"
    proc = stack.foreground(out=out)
    wait_for(lambda: "visible-value" in stack.log("leaky"), what="the leaky line")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0
    console = out.read_text()
    assert "STRIPE_SECRET_KEY is [redacted:STRIPE_SECRET_KEY]" in console
    assert "PUBLIC_NAME is visible-value" in console
    for path in [out, *stack.state_dir.rglob("*")]:
        if path.is_file() and not path.is_socket():
            assert secret.encode() not in path.read_bytes(), path


def test_lines_of_two_services_never_share_a_line(stack: Stack) -> None:
    stack.write(f"""
[services.aa]
command = {toml_list(fake("flood.py", 20000, "--stay"))}
[services.bb]
command = {toml_list(fake("printer.py", "--lines", "20000", "--tag", "bb"))}
""")
    out = stack.root / "console.txt"
    proc = stack.foreground(out=out)
    wait_for(
        lambda: stack.log("aa").count("\n") >= 20000 and stack.log("bb").count("\n") >= 20000,
        what="both floods to be logged",
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    aa = [line for line in out.read_text().splitlines() if line.startswith("aa ")]
    bb = [line for line in out.read_text().splitlines() if line.startswith("bb ")]
    assert aa == ["aa      | flood %010d %s" % (i, "." * 82) for i in range(20000)]
    assert bb == ["bb      | bb %08d %s" % (i, "x" * 60) for i in range(20000)]


@pytest.mark.parametrize("backend", ["inotify", "watchfiles"])
def test_watch_restarts_a_service_when_its_code_changes(
    stack: Stack, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRADEV_WATCH", backend)
    src = stack.root / "svc"
    src.mkdir()
    (src / "app.py").write_text("import time\nprint('version 1', flush=True)\ntime.sleep(3600)\n")
    (src / "__pycache__").mkdir()
    stack.write(f"""
[services.app]
cwd = "svc"
command = {toml_list([fake("printer.py")[0], "app.py"])}
watch = ["."]
health = {{ log = "version" }}
""")
    assert stack.up().returncode == 0
    assert f"watching app for changes ({backend})" in stack.log("airadev")
    first = stack.service("app")["pid"]
    # Ignored files first, then the code: the watcher sees them in that order, so one restart
    # naming app.py alone shows the others were passed over (no waiting for nothing to happen).
    (src / "__pycache__" / "junk.pyc").write_bytes(b"x")
    (src / "notes.log").write_text("x")
    put(stack, src / "app.py", "import time\nprint('version 2', flush=True)\ntime.sleep(3600)\n")
    wait_for(lambda: "version 2" in stack.log("app"), timeout=30, what="the restart")
    stack.wait_state("app", "healthy")
    second = stack.service("app")["pid"]
    assert second != first and not reaper.alive(first)
    assert restarts(stack) == ["app.py changed"], "only app.py restarts it"
    assert stack.service("app")["restarts"] == 1
    # A folder that appears after start is watched too (made aside, then moved in: one event).
    (stack.root / "pkg").mkdir()
    (stack.root / "pkg" / "mod.py").write_text("x = 1\n")
    os.replace(stack.root / "pkg", src / "pkg")
    wait_for(lambda: len(restarts(stack)) == 2, timeout=30, what="the second restart")
    assert restarts(stack)[1].startswith("pkg"), restarts(stack)
    stack.wait_state("app", "healthy")
    put(stack, src / "pkg" / "mod.py", "x = 2\n")
    wait_for(lambda: len(restarts(stack)) == 3, timeout=30, what="a restart for a file in the new folder")
    assert restarts(stack)[2] == "pkg/mod.py changed", restarts(stack)


def put(stack: Stack, path: Path, text: str) -> None:
    """Replace a file at once, as editors save (written aside, then renamed over it): one change."""
    aside = stack.root / f".{path.name}.new"
    aside.write_text(text)
    os.replace(aside, path)


def restarts(stack: Stack) -> list[str]:
    """Why the watcher restarted `app`, in order."""
    return re.findall(r"app: restarting: (.*)", stack.log("airadev"))


def test_unknown_service_names(stack: Stack) -> None:
    stack.write(f'[services.voice-agent]\naliases=["voice"]\ncommand = {toml_list(fake("printer.py"))}\n')
    logs = stack.cli("logs", "voce")
    assert logs.returncode == 2
    assert "no service named 'voce'; did you mean 'voice'?" in logs.stderr
    assert "voice-agent (voice); or airadev (the supervisor), ngrok (the tunnel)" in logs.stderr
    up = stack.cli("up", "vioce-agent")
    assert up.returncode == 2 and "did you mean 'voice-agent'?" in up.stderr
    assert stack.cli("status").returncode == 3
    assert stack.cli("restart", "voice").returncode == 3


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('cwd = "missing"\ncommand = "python x.py"', "services.a.cwd: folder"),
        ('command = "no-such-program-xyz"', "services.a.command: no-such-program-xyz not found on PATH"),
        ('command = "true"\nenv_files = [".env"]', "services.a.env_files:"),
    ],
)
def test_bad_ground_fails_before_anything_starts(stack: Stack, body: str, expected: str) -> None:
    stack.write(f"[services.a]\n{body}\n")
    result = stack.up()
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2, "one line what, one line how to fix"


def test_bad_config_is_exit_2_with_one_clear_line(stack: Stack) -> None:
    stack.write('[services.a]\ncommand = "true"\nhelth = { tcp = 1 }\n')
    for args in (["up"], ["restart", "a"]):
        result = stack.cli(*args)
        assert result.returncode == 2, args
        assert "services.a.helth: unknown key; did you mean 'health'?" in result.stderr
        assert "Traceback" not in result.stderr
    # Stored logs stay readable while the config is broken: only the names are needed.
    assert stack.cli("logs", "a").returncode == 0
    stack.write('[services.a\ncommand = "true"\n')
    broken = stack.cli("logs")
    assert broken.returncode == 2 and "cannot read the service names" in broken.stderr


def test_init_writes_a_config_and_ignores_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "voice-agent").mkdir()
    (tmp_path / ".gitignore").write_text("node_modules")

    def run(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [__import__("sys").executable, "-m", "airadev", *a], capture_output=True, text=True, cwd=tmp_path
        )

    result = run("init")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".gitignore").read_text() == "node_modules\n.airadev/\n"
    created = tmp_path / "voice-agent" / ".env"
    assert f"created {created} from its template" in result.stdout
    assert "TWILIO_AUTH_TOKEN=" in created.read_text() and oct(created.stat().st_mode & 0o777) == "0o600"
    assert "aira-ui/ is not there yet" in result.stderr
    assert run("init").returncode == 1
    assert run("init", "--force").returncode == 0
    assert (tmp_path / ".gitignore").read_text() == "node_modules\n.airadev/\n"
    status = run("status")
    assert status.returncode == 3, "the written config loads"
