"""`airadev dash` against a real stack (a detached supervisor and its processes).

textual's pilot drives the app in this process for what is checked cell by cell; tmux drives the
command as a person does (`send-keys` to act, `capture-pane` to read) for what the terminal shows
and for how it ends. Every wait is for something shown or a state, with a deadline as a net.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airadev import config as config_module
from airadev import render
from airadev.dash.app import ALL
from airadev.state import Paths
from tests.fakes.twilio_api import FakeTwilio
from tests.harness import PY, Stack, Tmux, fake, free_port, toml_list, wait_for
from tests.integration.test_tunnel import ORIGINAL, tunnel_stack, twilio  # noqa: F401  (a fixture)

SIZE = (80, 24)


def web(port: int) -> str:
    """A service ready once it listens on ``port``, probed over TCP."""
    return f"""
[services.web]
command = {toml_list(fake("slow_starter.py", port, 0))}
port = {port}
health = {{ tcp = true }}
"""


def plain_stack(stack: Stack) -> int:
    port = free_port()
    stack.write(f"""{web(port)}
[services.worker]
command = ["/bin/sh", "-c", "echo \\"worker $$ says hello\\"; exec sleep 100000"]
depends_on = ["web"]

[services.chatty]
command = {toml_list(fake("printer.py", "--lines", 300, "--tag", "chatty"))}
""")
    result = stack.up()
    assert result.returncode == 0, result.stderr
    return port


def status(stack: Stack) -> dict[str, Any]:
    result = stack.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def pilot(stack: Stack, test: Callable[[Any, Any], Any]) -> None:
    """Run ``test(app, pilot)`` with the dashboard at 80×24, in this process."""
    from airadev.dash.app import Dash

    app = Dash(Paths(stack.root), lambda: config_module.load(stack.root))

    async def run() -> None:
        async with app.run_test(size=SIZE) as driver:
            await test(app, driver)

    asyncio.run(run())


def _content() -> Any:
    from textual.content import Content

    return Content


async def until(driver: Any, predicate: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Let the app run until ``predicate()`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await driver.pause(0.05)
    return value


def cells(app: Any, name: str) -> list[str]:
    from textual.widgets import DataTable

    return [str(c) for c in app.query_one(DataTable).get_row(name)]


def pane(app: Any) -> str:
    from textual.widgets import Log

    return "\n".join(app.query_one("#logs", Log).lines)


# --- textual's pilot ---------------------------------------------------------------------------


def test_the_table_is_what_status_json_says_and_r_restarts_the_selected_service(stack: Stack) -> None:
    port = plain_stack(stack)
    before = status(stack)["services"]

    async def test(app: Any, driver: Any) -> None:
        for name, svc in before.items():
            row = cells(app, name)
            assert row[0] == name
            assert row[1] == svc["state"]
            assert row[3] == str(svc["pid"])
            assert row[4] == (str(svc["port"]) if svc["port"] else "-")
            assert row[6] == str(svc["restarts"])
            assert row[9] == svc["runtime"]
        assert cells(app, "web")[4] == str(port)
        assert cells(app, "web")[2] == "port open"  # the last probe's result
        # CPU and memory of the process tree, as `status` measures them
        await until(driver, lambda: cells(app, "web")[7].endswith("%"), "web's CPU")
        assert cells(app, "web")[8].endswith("MB")
        # The line the worker printed before the dashboard opened is in the pane (scroll-back).
        assert f"worker {before['worker']['pid']} says hello" in pane(app)

        await driver.press("down")  # the worker
        assert app.selected() == "worker"
        await driver.press("r")
        after = wait_for(
            lambda: (s := status(stack)["services"]["worker"])["restarts"] == 1 and s["state"] == "running" and s,
            what="the worker restarted",
        )
        assert after["pid"] != before["worker"]["pid"]
        await until(driver, lambda: cells(app, "worker")[6] == "1", "the restart count in the table")
        await until(driver, lambda: cells(app, "worker")[3] == str(after["pid"]), "the new pid in the table")
        # ... and the line the new worker printed reaches the pane as it is written.
        await until(driver, lambda: f"worker {after['pid']} says hello" in pane(app), "the new worker's line")
        assert status(stack)["services"]["web"]["restarts"] == 0  # only the selected service

    pilot(stack, test)
    assert status(stack)["phase"] == "ready"  # quitting the dashboard leaves the stack running


def test_the_health_cell_is_the_last_probes_result_before_the_state_changes(stack: Stack) -> None:
    port = free_port()
    flag = stack.root / "sick"
    stack.write(f"""
[services.api]
command = {toml_list(fake("switchable.py", port, flag))}
port = {port}
health = {{ http = "/health", interval = "0.2s", retries = 1000 }}
""")
    assert stack.up().returncode == 0

    async def test(app: Any, driver: Any) -> None:
        assert cells(app, "api")[1:3] == ["healthy", "HTTP 200"]
        flag.touch()
        await until(driver, lambda: cells(app, "api")[2] == "HTTP 503", "the failed probe in the table")
        assert cells(app, "api")[1] == "healthy"  # a thousand retries before it is unhealthy
        assert status(stack)["services"]["api"]["health"] == "HTTP 503"
        flag.unlink()
        await until(driver, lambda: cells(app, "api")[2] == "HTTP 200", "the probe passing again")

    pilot(stack, test)


def test_the_dashboard_writes_nothing_and_follows_the_stack_down_and_up_again(stack: Stack) -> None:
    plain_stack(stack)
    supervisor = stack.state()["supervisor_pid"]

    def files() -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in stack.state_dir.rglob("*") if p.is_file()}

    async def test(app: Any, driver: Any) -> None:
        # With the supervisor frozen, nothing but the dashboard could write: nothing is written.
        os.kill(supervisor, signal.SIGSTOP)
        try:
            before = files()
            looked = app.sampler.samples
            await driver.press("a", "a", "slash", *"hello", "enter", "slash", "escape")
            await until(driver, lambda: app.sampler.samples > looked, "its next look at CPU and memory")
            assert files() == before
        finally:
            os.kill(supervisor, signal.SIGCONT)
        title = app.query_one("#title")
        assert stack.cli("down").returncode == 0
        await until(driver, lambda: "stopped" in str(title.render()), "the title saying the stack stopped")
        assert stack.up().returncode == 0  # a new run: the dashboard follows it
        await until(driver, lambda: "ready" in str(title.render()), "the new run ready")
        now = status(stack)["services"]["worker"]["pid"]
        await until(driver, lambda: cells(app, "worker")[3] == str(now), "the new run's pids")
        await until(driver, lambda: f"worker {now} says hello" in pane(app), "the new run's lines")

    pilot(stack, test)


def test_no_line_twice_none_lost_markup_shown_as_written_and_pgup_scrolls_back(stack: Stack) -> None:
    plain_stack(stack)
    text = (stack.root / "airadev.toml").read_text()
    counter = 'i=0; while :; do i=$((i+1)); echo "n $i"; sleep 0.01; done'
    stack.write(text + f"\n[services.counter]\ncommand = {toml_list(['/bin/sh', '-c', counter])}\n")
    assert stack.cli("up").returncode == 0

    def numbers(app: Any) -> list[int]:
        return [int(m) for m in re.findall(r"^counter +\| n (\d+)$", pane(app), re.M)]

    async def test(app: Any, driver: Any) -> None:
        log = app.query_one("#logs")
        for _ in range(3):  # each switch loads the stored lines again, and the tails go on from there
            await until(driver, lambda: len(numbers(app)) > 50, "the counter's lines")
            first = len(numbers(app))
            await until(driver, lambda: len(numbers(app)) > first + 10, "lines read as they come, too")
            seen = numbers(app)
            assert seen == list(range(seen[0], seen[0] + len(seen))), "a line twice or lost"
            await driver.press("a")
            await until(driver, lambda: app.following != ALL, "one service")
            await driver.press("a")
            await until(driver, lambda: app.following == ALL, "all services")
        # A service added while the dashboard runs: its log is new, its first line is shown.
        stack.write(
            (stack.root / "airadev.toml").read_text()
            + '\n[services.late]\ncommand = ["/bin/sh", "-c", "echo FIRST-[b]LINE; exec sleep 100000"]\n'
        )
        assert stack.cli("up").returncode == 0
        await until(driver, lambda: "FIRST-[b]LINE" in pane(app), "the new service's first line, as written")
        # Markup in what is shown is text: a search for it neither crashes nor vanishes.
        await driver.press("slash", *"[/]x[b]", "enter")
        Content = _content()
        shown = lambda: Content.from_markup(str(log.border_title)).plain  # noqa: E731
        await until(driver, lambda: "only '[/]x[b]'" in shown(), "the search shown as typed")
        await driver.press("slash", "escape")
        # PgUp scrolls back and stays there while lines come; PgDn to the end follows again.
        await until(driver, lambda: log.max_scroll_y > 20 and log.is_vertical_scroll_end, "a full pane")
        await driver.press("pageup")
        await until(driver, lambda: not log.following, "scrolled back")
        back = log.scroll_y
        count = len(log.lines)
        await until(driver, lambda: len(log.lines) > count, "more lines")
        assert log.scroll_y == back
        await driver.press("pagedown")
        await until(driver, lambda: log.scroll_y > back, "scrolled on")
        await driver.press("end")
        await until(driver, lambda: log.following and log.is_vertical_scroll_end, "following again")
        # A taller panel above takes lines from the pane: it goes on following.
        panel = app.query_one("#tunnel")
        panel.update("one\ntwo\nthree\nfour")
        await until(driver, lambda: panel.size.height == 4, "the taller panel laid out")
        count = len(log.lines)
        await until(driver, lambda: len(log.lines) > count, "more lines")
        await until(driver, lambda: log.is_vertical_scroll_end, "the pane at its end, following")

    pilot(stack, test)


def test_a_supervisor_killed_outright_is_seen_gone(stack: Stack) -> None:
    plain_stack(stack)

    async def test(app: Any, driver: Any) -> None:
        os.kill(stack.state()["supervisor_pid"], signal.SIGKILL)
        title = app.query_one("#title")
        await until(driver, lambda: "the supervisor is gone" in str(title.render()), "the title saying so")
        assert all(cells(app, name)[7] == "-" for name in ("web", "worker"))  # no figures of the dead

    pilot(stack, test)


def test_an_exec_probe_whose_words_change_each_time_does_not_rewrite_the_state_file(stack: Stack) -> None:
    probes = stack.root / "probes"
    check = f"date +%s%N >> {probes}; tail -n 1 {probes}"
    stack.write(f"""
[services.clock]
command = ["/bin/sh", "-c", "exec sleep 100000"]
health = {{ exec = {toml_list(["/bin/sh", "-c", check])}, interval = "0.1s" }}
""")
    assert stack.up().returncode == 0
    state = stack.state_dir / "state.json"
    before = state.stat().st_mtime_ns
    done = len(probes.read_text().splitlines())
    wait_for(lambda: len(probes.read_text().splitlines()) >= done + 5, what="five more probes")
    assert state.stat().st_mtime_ns == before


def test_x_stops_and_s_starts_the_selected_service_and_search_keeps_matching_lines(stack: Stack) -> None:
    plain_stack(stack)

    async def test(app: Any, driver: Any) -> None:
        await driver.press("down", "x")
        await until(driver, lambda: cells(app, "worker")[1] == "stopped", "the worker stopped")
        assert status(stack)["services"]["worker"]["state"] == "stopped"
        assert cells(app, "worker")[2:4] == ["-", "-"] and cells(app, "worker")[7:9] == ["-", "-"]
        await driver.press("s")
        await until(driver, lambda: cells(app, "worker")[1] == "running", "the worker running")
        log = app.query_one("#logs")
        await until(driver, lambda: log.max_scroll_y > 0 and log.is_vertical_scroll_end, "a full pane at its end")
        await driver.press("slash")  # the search box takes lines from the pane: it stays at its end
        await until(driver, lambda: app.query_one("#search").has_class("open"), "the search box")
        await driver.pause()
        assert log.is_vertical_scroll_end
        await driver.press(*"says hello", "enter")
        await until(driver, lambda: "only 'says hello'" in str(app.query_one("#logs").border_title), "the filter")
        shown = pane(app).splitlines()
        assert len(shown) == 2 and all("says hello" in line for line in shown), shown
        await driver.press("slash", "escape")
        await until(driver, lambda: "slow starter" in pane(app), "every line again")
        # A pane filled again follows its newest line (it scrolls to the end), as it did before.
        await until(driver, lambda: log.max_scroll_y > 0 and log.is_vertical_scroll_end, "the pane at its end")

    pilot(stack, test)


def test_the_tunnel_panel_shows_the_stand_ins_address_and_t_v_t_open_verify_and_close(
    stack: Stack,
    twilio: FakeTwilio,  # noqa: F811  (the fixture)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env_local = tunnel_stack(stack, twilio)
    assert stack.up().returncode == 0
    for key, value in stack.env.items():  # what `airadev tunnel` would run with
        monkeypatch.setenv(key, value)

    async def test(app: Any, driver: Any) -> None:
        panel = app.query_one("#tunnel")
        assert "tunnel: closed" in str(panel.render())
        await driver.press("t")
        await until(driver, lambda: "https://" in str(panel.render()), "the tunnel's address", 120)
        address = json.loads(stack.cli("tunnel", "--status", "--json").stdout)["address"]
        assert address.startswith("https://") and address in str(panel.render())
        assert "VOICE_AGENT_SERVICE_URL" in str(panel.render()) and "Twilio" in str(panel.render())
        await driver.press("v")
        await until(driver, lambda: re.search(r"last verify \S+: 200 in \d+ ms, TwiML", str(panel.render())), "v", 60)
        kept = json.loads(stack.cli("tunnel", "--status", "--json").stdout)["verified"]
        assert (kept["status"], kept["twiml"], kept["wrong"]) == (200, True, "")  # kept by the stack
        # A test call from another terminal is the panel's last one too.
        assert stack.cli("tunnel", "--verify").returncode == 0
        again = json.loads(stack.cli("tunnel", "--status", "--json").stdout)["verified"]
        assert again["at"] > kept["at"]
        line = render.verify_line(again)
        await until(driver, lambda: line in str(panel.render()), "the CLI's verify on the panel", 60)
        await driver.press("t")
        await until(driver, lambda: "tunnel: closed" in str(panel.render()), "the tunnel closed", 120)

    pilot(stack, test)
    assert env_local.read_bytes() == ORIGINAL


def test_d_shows_doctors_findings_about_the_selected_service_first(stack: Stack) -> None:
    plain_stack(stack)
    (stack.root / "worker").mkdir()
    env = stack.root / "worker" / ".env"
    env.write_text("API_KEY=sk_test_abcdefghijklmnopqrstuvwx\n")
    env.chmod(0o644)  # readable by everyone: doctor's secrets.modes says so
    text = (stack.root / "airadev.toml").read_text()
    stack.write(text.replace('depends_on = ["web"]', 'depends_on = ["web"]\ncwd = "worker"\nenv_files = [".env"]'))
    assert stack.cli("up").returncode == 0

    async def test(app: Any, driver: Any) -> None:
        from airadev.dash.app import Findings

        await driver.press("down", "d")
        screen = await until(driver, lambda: isinstance(app.screen, Findings) and app.screen, "the findings", 120)
        shown = screen.text
        assert "about worker:" in shown
        about = shown.split("about worker:")[1].split("the rest of the workspace:")[0]
        assert "secrets.modes" in about and "worker/.env" in about
        assert "sk_test_abcdefghijklmnopqrstuvwx" not in shown  # redacted as doctor prints
        await driver.press("escape")
        await until(driver, lambda: not isinstance(app.screen, Findings), "the findings closed")

    pilot(stack, test)


# --- tmux: the command as a person runs it -------------------------------------------------------


@pytest.fixture
def windows() -> Iterator[list[Tmux]]:
    made: list[Tmux] = []
    yield made
    for window in made:
        window.close()


def tmux(stack: Stack, windows: list[Tmux], *args: str, env: dict[str, str] | None = None) -> Tmux:
    window = Tmux([PY, "-m", "airadev", "--workspace", str(stack.root), *args], {**stack.environment(), **(env or {})})
    windows.append(window)
    return window


def test_dash_in_80x24_with_no_color_shows_every_column_acts_and_quits_leaving_the_stack(
    stack: Stack, windows: list[Tmux]
) -> None:
    plain_stack(stack)
    window = tmux(stack, windows, "dash", env={"NO_COLOR": "1"})
    screen = window.expect(re.compile(r"worker\s+running").search)
    header = next(line for line in screen.splitlines() if line.startswith("service"))
    assert header.split() == ["service", "state", "health", "pid", "port", "up", "rst", "cpu", "mem", "runtime"]
    assert all(len(line) <= SIZE[0] for line in screen.splitlines())
    window.expect("q quit")  # the keys, at the foot
    colours = re.findall(r"\x1b\[[0-9;]*m", window.screen(escapes=True))
    assert not [c for c in colours if re.search(r"(^|;)(3[0-7]|38|4[0-7]|48|9[0-7]|10[0-7])(;|m)", c[2:])], colours
    window.keys("Down", "x")
    window.expect(re.compile(r"worker\s+stopped").search)
    assert status(stack)["services"]["worker"]["state"] == "stopped"
    window.keys("q")
    assert window.exit_code() == 0
    assert status(stack)["phase"] == "ready"  # the stack keeps running


def up_dash(stack: Stack, windows: list[Tmux]) -> tuple[Tmux, int]:
    """`airadev up --dash` of one service, in a window, once the service is healthy."""
    port = free_port()
    stack.write(web(port))
    window = tmux(stack, windows, "up", "--dash")
    window.expect(re.compile(r"web\s+healthy").search)
    return window, port


def test_up_dash_shows_the_start_and_q_stops_the_stack_leaving_nothing(stack: Stack, windows: list[Tmux]) -> None:
    window, port = up_dash(stack, windows)
    assert "q stops the stack" in window.screen()
    stack._remember()
    pids = stack.stack_processes()
    window.keys("q")
    assert window.exit_code() == 0
    assert "stopped 1 services: web" in window.screen()
    assert stack.cli("status").returncode == 3
    stack.wait_nothing_left(pids)


def test_q_does_not_wait_for_a_restart_and_up_dash_leaves_a_stack_it_did_not_start(
    stack: Stack, windows: list[Tmux]
) -> None:
    window, port = up_dash(stack, windows)
    assert stack.cli("down").returncode == 0  # from another terminal; then another `up`
    stack.write((stack.root / "airadev.toml").read_text().replace(f'"{port}", "0"', f'"{port}", "120"'))
    assert stack.cli("up", "-d", "--timeout", "1s").returncode == 1  # running, not ready for two minutes
    window.expect(re.compile(r"web\s+starting").search)
    window.keys("r")  # a restart that takes two minutes ...
    window.expect("web: restarting")
    window.keys("q")  # ... does not hold the quit
    assert window.exit_code() == 0
    assert "left running" in window.screen()
    assert status(stack)["services"]["web"]["state"] == "starting"  # the other `up`'s stack runs on


def test_up_dash_killed_stops_the_stack_by_itself(stack: Stack, windows: list[Tmux]) -> None:
    window, port = up_dash(stack, windows)
    stack._remember()
    pids = stack.stack_processes()
    os.kill(window.program(), signal.SIGKILL)
    wait_for(lambda: stack.state().get("phase") == "stopped", timeout=60, what="the stack stopped")
    stack.wait_nothing_left(pids)


def test_dash_refuses_without_a_stack_or_without_a_terminal(stack: Stack) -> None:
    stack.write(f"[services.web]\ncommand = {toml_list(fake('slow_starter.py', free_port(), 0))}\n")
    nothing = stack.cli("dash")
    assert nothing.returncode == 3 and "nothing is running" in nothing.stderr
    assert stack.up().returncode == 0
    piped = stack.cli("dash")
    assert piped.returncode == 2 and "the dashboard needs a terminal" in piped.stderr
    refused = stack.cli("up", "--dash", "--detach")
    assert refused.returncode == 2 and "--dash" in refused.stderr
