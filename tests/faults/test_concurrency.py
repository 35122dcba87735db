"""Concurrency: several terminals at once. Two `up` together: exactly one wins and the other
names it. `down` while `up` is starting: everything stops, nothing is left. Restart storms
from several terminals: no deadlock, every restart answered, the state consistent after."""

from __future__ import annotations

import subprocess
import threading
import time

from tests.figures import count
from tests.harness import PY, Stack, fake, free_port, toml_list, wait_for


def stack_of(stack: Stack, services: int = 3, delay: float = 0.5) -> None:
    body = ""
    for i in range(services):
        port = free_port()
        body += (
            f"[services.s{i}]\ncommand = {toml_list(fake('slow_starter.py', port, delay))}\nport = {port}\n"
            "health = { tcp = true }\n" + (f'depends_on = {{ s{i - 1} = "healthy" }}\n' if i else "")
        )
    stack.write(body)


def launch(stack: Stack, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "airadev", "--workspace", str(stack.root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=stack.environment(),
    )


def test_two_ups_at_once_exactly_one_wins(stack: Stack) -> None:
    stack_of(stack)
    for _ in range(5):
        first, second = launch(stack, "up", "--detach"), launch(stack, "up", "--detach")
        results = [(p.wait(60), *p.communicate()) for p in (first, second)]
        count("concurrent ups")
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 1], results
        loser = next(err for code, _, err in results if code == 1)
        assert "another `airadev up` is starting in this workspace" in loser or "already running" in loser, loser
        assert "Traceback" not in loser
        assert stack.state()["phase"] == "ready"
        assert stack.cli("down").returncode == 0
        stack.wait_nothing_left()


def test_down_during_up_stops_everything(stack: Stack) -> None:
    stack_of(stack, services=4, delay=0.4)
    stopped_early = 0
    for attempt in range(6):
        up = launch(stack, "up", "--detach")
        time.sleep(0.15 * attempt)  # from before the supervisor exists to the middle of the chain
        down = stack.cli("down")
        code = up.wait(60)
        stack._remember()
        err = up.communicate()[1]
        assert down.returncode == 0, down.stderr
        if "nothing to stop" in down.stdout:  # the down came before the up had even begun
            assert code == 0, err
            assert stack.cli("down").returncode == 0
        else:  # it waited for the up's supervisor and stopped it
            assert code == 0 or "the stack was stopped before it was ready" in err, err  # 0: ready first
            stopped_early += code != 0
        count("downs during up")
        stack.wait_nothing_left()
        assert stack.cli("status").returncode == 3
    assert stopped_early, "no down came while an up was starting: the test did not test"


def test_restart_storms_from_several_terminals(stack: Stack) -> None:
    stack_of(stack, services=3, delay=0.05)
    assert stack.up().returncode == 0
    terminals, each = 4, 8
    failures: list[str] = []

    def storm(n: int) -> None:
        for i in range(each):
            result = stack.cli("restart", f"s{(n + i) % 3}", timeout=120)
            if result.returncode != 0:
                failures.append(result.stderr)

    threads = [threading.Thread(target=storm, args=(n,)) for n in range(terminals)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(t.is_alive() for t in threads), "a restart never returned (deadlock?)"
    count("restarts from several terminals at once", terminals * each)
    assert failures == [], failures
    # Consistent afterwards: all healthy, one live process each, status answers.
    for i in range(3):
        stack.wait_state(f"s{i}", "healthy")
    status = stack.cli("status", "--json")
    assert status.returncode == 0
    pids = [stack.service(f"s{i}")["pid"] for i in range(3)]
    assert len(set(pids)) == 3 and all(pids)
    wait_for(
        lambda: len(stack.stack_processes()) == 3 + 2,
        timeout=60,
        what="three services, the supervisor and its watchdog, nothing else",
    )
    assert stack.cli("down").returncode == 0
    stack.wait_nothing_left()
