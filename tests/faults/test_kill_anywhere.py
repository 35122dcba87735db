"""Kill anywhere: SIGKILL of the supervisor at random moments of `up`, `restart`, the tunnel's
rewiring and `down`, over the demo stack plus misbehaving processes of tests/fakes (tests/faults/demo.py).

After each kill, before airadev runs again: no process or container of the stack survives (the watchdog's
work), every port is free, .env.local is the original or the fully rewritten file, and the
Twilio stand-in holds the old or the new webhooks, never a mix. After the next `airadev up` or
`down` (whichever the next kill needs): the journal has put everything back (env file, Twilio,
the database's business_numbers row) and, after `down`, nothing runs.

AIRADEV_FAULT_KILLS (default 60) and AIRADEV_FAULT_SEED (default: random, printed) repeat a run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.figures import count
from tests.faults.demo import BEFORE, Demo, containers, demo_stack, own_processes, supervisors
from tests.harness import PY, Stack, port_free, wait_for

KILLS = int(os.environ.get("AIRADEV_FAULT_KILLS", "60"))
SEED = int(os.environ.get("AIRADEV_FAULT_SEED") or random.randrange(1 << 30))
PHASES = ("up", "restart", "tunnel", "down")
NEEDS_UP = {"up": False, "restart": True, "tunnel": True, "down": True}
COMMANDS = {
    "up": ["up", "--detach"],
    "restart": ["restart", "voice-agent"],
    "tunnel": ["tunnel", "--detach"],
    "down": ["down"],
}

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with demo_stack(tmp_path_factory.mktemp("kill") / "ws") as made:
        yield made


def rewritten(original: bytes, now: bytes) -> bool:
    """``now`` is ``original`` with only VOICE_AGENT_SERVICE_URL set to a tunnel address (the
    stand-in agent's public addresses are served on loopback ports: http://127.0.0.1:PORT)."""
    old, new = original.splitlines(keepends=True), now.splitlines(keepends=True)
    if len(old) != len(new):
        return False
    changed = [(a, b) for a, b in zip(old, new) if a != b]
    return (
        len(changed) == 1
        and changed[0][0].startswith(b"VOICE_AGENT_SERVICE_URL=")
        and re.fullmatch(rb"VOICE_AGENT_SERVICE_URL=https?://[\w.:-]+\n", changed[0][1]) is not None
    )


def kill_during(demo: Demo, phase: str, rng: random.Random, window: float) -> tuple[float, bool]:
    """Run the phase's command and SIGKILL the supervisor at a random moment of it; when, and
    whether the command was still waiting for its operation (mid-operation) rather than done
    (a kill of an idle supervisor)."""
    stack = demo.stack
    proc = subprocess.Popen(
        [PY, "-m", "airadev", "--workspace", str(stack.root), *COMMANDS[phase]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=stack.environment(),
    )
    delay = rng.uniform(0, window)
    time.sleep(delay)
    targets = wait_for(
        lambda: supervisors(stack) or proc.poll() is not None and phase != "up",
        timeout=30,
        interval=0.005,
        what="a supervisor to kill",
    )
    stack._remember()
    in_flight = proc.poll() is None
    for pid in targets if isinstance(targets, list) else supervisors(stack):
        os.kill(pid, signal.SIGKILL)
    proc.wait(120)
    return delay, in_flight


def check_after_kill(demo: Demo) -> None:
    stack = demo.stack
    survivors = nothing_survives(stack, "the watchdog to end the stack")
    if survivors:
        raise AssertionError(f"survivors: {survivors}")
    busy = [name for name, port in demo.ports.items() if not wait_for(lambda p=port: port_free(p), timeout=60)]
    assert not busy, f"ports still taken: {busy}"
    now = demo.env_local.read_bytes()
    whole = [now == demo.original or rewritten(demo.original, now)]
    whole += [path.read_bytes() == before for path, before in demo.env_files.items()]
    count("files checked", len(whole))
    count("half-written files", whole.count(False))
    assert whole[0], f".env.local is neither the original nor the rewritten file:\n{now!r}"
    assert all(whole), "a service's env file changed"
    wiring = demo.wiring()
    if wiring != BEFORE:
        address = wiring["voice_url"].removesuffix("/webhooks/twilio/call")
        assert (
            re.fullmatch(r"https?://[\w.:-]+", address)
            and wiring["sms_url"] == f"{address}/webhooks/twilio/sms"
            and wiring["status_callback"] == f"{address}/webhooks/twilio/status"
        ), f"Twilio holds a mix: {wiring}"


def check_after_next(demo: Demo, next_command: str) -> None:
    stack = demo.stack
    assert demo.env_local.read_bytes() == demo.original, "the journal did not put .env.local back"
    assert demo.wiring() == BEFORE, "the journal did not put Twilio back"
    if next_command == "up":
        assert stack.state().get("phase") == "ready"
        wait_for(lambda: demo.db_row() == demo.db_before, timeout=60, what="business_numbers to be put back")
    else:
        survivors = nothing_survives(stack, "nothing to run after down")
        assert not survivors, f"survivors of down: {survivors}"


def nothing_survives(stack: Stack, what: str) -> list[object]:
    """Wait (with a generous ceiling) until no process or container of the stack is left; what
    is left then. Counted on every look, whatever it finds."""
    try:
        wait_for(lambda: not own_processes(stack) and not containers(stack), timeout=30, what=what)
    except AssertionError:
        pass
    left: list[object] = [*own_processes(stack), *containers(stack)]
    count("survivor checks")
    count("survivors", len(left))
    return left


def test_sigkill_of_the_supervisor_anywhere_leaves_nothing_and_the_journal_restores(demo: Demo) -> None:
    rng = random.Random(SEED)
    print(f"kill anywhere: {KILLS} kills, AIRADEV_FAULT_SEED={SEED}")
    # How long each phase takes, so kills land inside it.
    windows = {}
    for phase in ("up", "restart", "tunnel", "down"):
        began = time.monotonic()
        result = demo.run(*COMMANDS[phase])
        assert result.returncode == 0, (phase, result.stderr)
        windows[phase] = time.monotonic() - began
    running = False
    phase = rng.choice(PHASES)
    for n in range(KILLS):
        if running != NEEDS_UP[phase]:
            prepared = demo.run(*(["up", "--detach"] if NEEDS_UP[phase] else ["down"]))
            assert prepared.returncode == 0, prepared.stderr
        if phase == "down" and rng.random() < 0.5:
            assert demo.run("tunnel", "--detach").returncode == 0  # down then has rewiring to put back
        delay, in_flight = kill_during(demo, phase, rng, windows[phase] * 1.1)
        count("kills")
        count("kills mid-operation", in_flight)
        killed, phase = phase, rng.choice(PHASES)
        next_command = ["up", "--detach"] if NEEDS_UP[phase] else ["down"]
        try:
            check_after_kill(demo)
            result = demo.run(*next_command)
            # `down` is 3 when the killed command had stopped everything already.
            assert result.returncode in ((0, 3) if next_command == ["down"] else (0,)), result.stderr
            check_after_next(demo, next_command[0])
        except AssertionError as exc:
            raise AssertionError(
                f"kill {n + 1} (AIRADEV_FAULT_SEED={SEED}), {delay:.3f}s into "
                f"`airadev {' '.join(COMMANDS[killed])}`, then `airadev {next_command[0]}`: {exc}"
            ) from None
        running = NEEDS_UP[phase]
    last = demo.run("down")  # idempotent: 0 whether or not anything was running
    assert last.returncode == 0, last.stderr
    assert running or "nothing is running: nothing to stop" in last.stdout or "ended" in last.stdout
    survivors = nothing_survives(demo.stack, "nothing to run after the last down")
    assert not survivors, f"survivors of the last down: {survivors}"
