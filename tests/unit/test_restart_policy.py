"""The restart policy, without a process: the n-th restart in a row waits
min(backoff_max, backoff × 2^(n-1)) shortened by up to jitter; after max_restarts restarts in a
row the service is crash-loop; a run that lasted reset_after starts the count again.

The supervisor's lifecycle loop runs for real on an event loop, over a stand-in runtime whose
instances exit at once with scripted exit codes. The backoff's wait is the one thing replaced:
each wait records how long it would have lasted and ends at once (as if that time had passed).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airadev.model import Config, Restart, RestartPolicy, Service, State
from airadev.supervisor import runner
from airadev.supervisor.runner import Supervisor
from airadev.supervisor.unit import Unit, backoff_delay


class FixedRandom(random.Random):
    """``random()`` always returns ``value``: the jitter's factor is known."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


class ExitingInstance:
    """An instance that has already exited with ``code``."""

    pid = None

    def __init__(self, code: int) -> None:
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._exited.set_result(code)
        self.stops = 0

    @property
    def exited(self) -> asyncio.Future[int]:
        return self._exited

    async def stop(self, sig: int, grace: float) -> int:
        self.stops += 1
        return 0

    def info(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return "stand-in"


class ScriptedRuntime:
    """Each start is an instance exiting with the next code of ``codes``."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.starts = 0

    def start(self, service: Service, env: Any, on_output: Any) -> ExitingInstance:
        self.starts += 1
        assert self.codes, "started more often than the test expected"
        return ExitingInstance(self.codes.pop(0))


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str, str]] = []

    def output(self, service: str, lines: bytes) -> None:
        pass

    def event(self, service: str | None, message: str, level: str = "info") -> None:
        self.seen.append((service, message, level))

    def ready(self, summary: Any) -> None:
        pass

    def messages(self) -> list[str]:
        return [message for _, message, _ in self.seen]


Hook = Callable[[int], Awaitable[None]]


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[float], dict[int, Hook]]]:
    """Every backoff wait's length, in order; ``hooks[i]`` runs during the i-th wait (from 0)."""
    seen: list[float] = []
    hooks: dict[int, Hook] = {}

    async def no_wait(awaitable: Any, timeout: float) -> Any:
        index = len(seen)
        seen.append(timeout)
        if index in hooks:
            await hooks[index](index)
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise asyncio.TimeoutError  # the whole delay went by

    monkeypatch.setattr(runner.asyncio, "wait_for", no_wait)
    yield seen, hooks


def make_supervisor(tmp_path: Path, restart: Restart, rng: random.Random | None = None) -> tuple[Supervisor, Events]:
    service = Service(name="svc", command=("stand-in",), cwd=tmp_path, restart=restart)
    config = Config(root=tmp_path, file=tmp_path / "airadev.toml", services=(service,))
    events = Events()
    sup = Supervisor(config, ["svc"], observer=events, marker="test.0", rng=rng or FixedRandom(0.0))
    sup.paths.ensure()  # the state file is rewritten on every change of state
    return sup, events


def run_lifecycle(sup: Supervisor, monkeypatch: pytest.MonkeyPatch, codes: list[int]) -> ScriptedRuntime:
    scripted = ScriptedRuntime(codes)
    monkeypatch.setattr(runner, "runtime_for", lambda kind, ctx: scripted)

    async def main() -> None:
        async with asyncio.timeout(10):  # (wait_for is the stand-in here)
            await sup._lifecycle(sup.units["svc"])

    asyncio.run(main())
    return scripted


# --- the delay itself -----------------------------------------------------------------------------


def test_first_restart_waits_the_base_backoff_then_doubles_up_to_the_cap() -> None:
    no_jitter = FixedRandom(0.0)
    assert [backoff_delay(n, 0.25, 3.0, 0.2, no_jitter) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_only_ever_shortens_the_wait_by_at_most_its_share() -> None:
    # random() lies in [0, 1): the factor in (1 - jitter, 1].
    assert backoff_delay(3, 0.5, 30.0, 0.2, FixedRandom(0.0)) == 2.0
    assert backoff_delay(3, 0.5, 30.0, 0.2, FixedRandom(0.5)) == pytest.approx(1.8)
    almost_one = FixedRandom(1.0 - 2**-53)
    assert backoff_delay(3, 0.5, 30.0, 0.2, almost_one) == pytest.approx(1.6)  # never below 2.0 × 0.8
    assert backoff_delay(3, 0.5, 30.0, 0.0, almost_one) == 2.0
    # A capped delay is shortened from the cap.
    assert backoff_delay(20, 0.5, 30.0, 0.5, FixedRandom(0.5)) == pytest.approx(22.5)


# --- the lifecycle: restarts, crash-loop, policies -------------------------------------------------


def test_crash_loop_after_max_restarts_in_a_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waits: tuple[list[float], dict[int, Hook]]
) -> None:
    sup, events = make_supervisor(tmp_path, Restart(max_restarts=3, backoff=0.5, backoff_max=30.0, jitter=0.2))
    scripted = run_lifecycle(sup, monkeypatch, [1, 1, 1, 1])
    unit = sup.units["svc"]
    assert scripted.starts == 4, "the first start and max_restarts restarts"
    assert waits[0] == [0.5, 1.0, 2.0]
    assert unit.state is State.CRASH_LOOP
    assert unit.message == "crash-loop: exited 4 times in a row (last: exit code 1)"
    assert unit.restarts == 3
    assert [m for m in events.messages() if m.startswith("restarting")] == [
        "restarting in 0.5s (1/3)",
        "restarting in 1.0s (2/3)",
        "restarting in 2.0s (3/3)",
    ]


def test_the_wait_is_capped_and_jittered_in_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waits: tuple[list[float], dict[int, Hook]]
) -> None:
    restart = Restart(max_restarts=5, backoff=1.0, backoff_max=3.0, jitter=0.5)
    sup, _ = make_supervisor(tmp_path, restart, rng=FixedRandom(0.5))
    run_lifecycle(sup, monkeypatch, [1, 1, 1, 1, 1, 1])
    assert waits[0] == pytest.approx([0.75, 1.5, 2.25, 2.25, 2.25])  # min(3, 1, 2, 4, 8, 16) × 0.75
    assert sup.units["svc"].state is State.CRASH_LOOP


def test_a_success_ends_the_streak_of_an_on_failure_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waits: tuple[list[float], dict[int, Hook]]
) -> None:
    sup, events = make_supervisor(tmp_path, Restart(max_restarts=2))
    scripted = run_lifecycle(sup, monkeypatch, [1, 1, 0])
    unit = sup.units["svc"]
    assert scripted.starts == 3
    assert unit.state is State.COMPLETED and unit.exit_code == 0
    assert unit.restarts == 2
    assert "exited: exit code 0" in events.messages()


@pytest.mark.parametrize(
    ("policy", "code", "state"),
    [
        (RestartPolicy.NO, 1, State.FAILED),
        (RestartPolicy.NO, 0, State.COMPLETED),
        (RestartPolicy.ON_FAILURE, 0, State.COMPLETED),
        (RestartPolicy.NO, -9, State.FAILED),
    ],
)
def test_what_is_not_restarted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    waits: tuple[list[float], dict[int, Hook]],
    policy: RestartPolicy,
    code: int,
    state: State,
) -> None:
    sup, _ = make_supervisor(tmp_path, Restart(policy=policy))
    scripted = run_lifecycle(sup, monkeypatch, [code])
    assert scripted.starts == 1
    assert waits[0] == []
    assert sup.units["svc"].state is state
    assert sup.units["svc"].restarts == 0


def test_a_signal_death_is_named_and_restarted_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waits: tuple[list[float], dict[int, Hook]]
) -> None:
    sup, events = make_supervisor(tmp_path, Restart(max_restarts=1))
    run_lifecycle(sup, monkeypatch, [-9, -15])
    assert "exited: killed by SIGKILL" in events.messages()
    assert sup.units["svc"].message == "crash-loop: exited 2 times in a row (last: killed by SIGTERM)"


def test_always_restarts_a_clean_exit_too_and_still_crash_loops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waits: tuple[list[float], dict[int, Hook]]
) -> None:
    sup, _ = make_supervisor(tmp_path, Restart(policy=RestartPolicy.ALWAYS, max_restarts=2, backoff=0.1))
    scripted = run_lifecycle(sup, monkeypatch, [0, 0, 0])
    assert scripted.starts == 3
    assert waits[0] == [0.1, 0.2]
    assert sup.units["svc"].state is State.CRASH_LOOP


def test_max_restarts_zero_never_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waits: tuple[list[float], dict[int, Hook]]
) -> None:
    sup, _ = make_supervisor(tmp_path, Restart(max_restarts=0))
    scripted = run_lifecycle(sup, monkeypatch, [1])
    assert scripted.starts == 1 and waits[0] == []
    assert sup.units["svc"].message == "crash-loop: exited 1 times in a row (last: exit code 1)"


def test_runs_that_last_reset_after_never_crash_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waits: tuple[list[float], dict[int, Hook]]
) -> None:
    # reset_after = 0: every run counts as long enough, so each restart is the first in a row.
    sup, _ = make_supervisor(tmp_path, Restart(max_restarts=1, backoff=0.5, reset_after=0.0))
    scripted = run_lifecycle(sup, monkeypatch, [1, 1, 1, 1, 1, 0])
    assert scripted.starts == 6
    assert waits[0] == [0.5] * 5
    assert sup.units["svc"].state is State.COMPLETED


def test_a_stop_during_the_backoff_ends_the_lifecycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waits: tuple[list[float], dict[int, Hook]]
) -> None:
    sup, _ = make_supervisor(tmp_path, Restart(max_restarts=5))
    unit = sup.units["svc"]

    async def stop(_: int) -> None:
        unit.stop_requested = True  # what stop_unit sets (then it wakes the wait)
        unit.wake.set()

    waits[1][1] = stop
    scripted = run_lifecycle(sup, monkeypatch, [1, 1, 1])
    assert scripted.starts == 2, "no start after the stop"
    assert unit.restarts == 1


def test_a_restart_asked_for_during_the_backoff_starts_a_new_streak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waits: tuple[list[float], dict[int, Hook]]
) -> None:
    sup, _ = make_supervisor(tmp_path, Restart(max_restarts=3, backoff=0.5))
    unit = sup.units["svc"]

    async def restart(_: int) -> None:
        unit.task = asyncio.current_task()  # the lifecycle task, as when the supervisor runs it
        await sup.restart_unit(unit, "asked for")

    waits[1][2] = restart  # during the third wait (2.0 s)
    scripted = run_lifecycle(sup, monkeypatch, [1, 1, 1, 1, 1, 1, 1])
    # 0.5, 1.0, 2.0 (the restart comes), then a new streak: 0.5, 1.0, 2.0 and crash-loop.
    assert waits[0] == [0.5, 1.0, 2.0, 0.5, 1.0, 2.0]
    assert scripted.starts == 7
    assert unit.state is State.CRASH_LOOP


def test_a_restart_during_the_backoff_counts_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waits: tuple[list[float], dict[int, Hook]]
) -> None:
    sup, _ = make_supervisor(tmp_path, Restart(max_restarts=3, backoff=0.5))
    unit = sup.units["svc"]

    async def restart(_: int) -> None:
        unit.task = asyncio.current_task()
        await sup.restart_unit(unit, "asked for")

    waits[1][0] = restart
    scripted = run_lifecycle(sup, monkeypatch, [1, 0])
    assert scripted.starts == 2
    assert unit.restarts == scripted.starts - 1, "restarts shown by `status` = starts after the first"


# --- _backoff's count at the reset_after boundary -------------------------------------------------


@pytest.mark.parametrize(
    ("ran", "streak_after", "delay"),
    [
        (29.5, 4, 4.0),  # shorter than reset_after: the 4th restart in a row
        (30.5, 1, 0.5),  # at least reset_after: the count starts again
    ],
)
def test_reset_after_boundary(
    tmp_path: Path, waits: tuple[list[float], dict[int, Hook]], ran: float, streak_after: int, delay: float
) -> None:
    sup, _ = make_supervisor(tmp_path, Restart(max_restarts=4, backoff=0.5, reset_after=30.0))
    unit: Unit = sup.units["svc"]
    unit.streak = 3

    async def main() -> bool:
        unit.started_at = time.monotonic() - ran
        return await sup._backoff(unit, 1)

    assert asyncio.run(main()) is True
    assert unit.streak == streak_after
    assert waits[0] == [delay]
    assert unit.state is State.RESTARTING
    assert unit.message == f"restart {streak_after}/4 in {delay:.1f}s"


def test_the_streak_at_max_restarts_is_crash_loop_unless_the_run_was_long(
    tmp_path: Path, waits: tuple[list[float], dict[int, Hook]]
) -> None:
    sup, events = make_supervisor(tmp_path, Restart(max_restarts=2, reset_after=10.0))
    unit = sup.units["svc"]
    unit.tail = b"first\nsecond\nlast words\n"

    async def backoff_after(ran: float) -> bool:
        unit.started_at = time.monotonic() - ran
        return await sup._backoff(unit, 2)

    unit.streak = 2
    assert asyncio.run(backoff_after(1.0)) is False
    assert unit.state is State.CRASH_LOOP
    crash = [m for _, m, level in events.seen if level == "error"]
    assert crash == ["crash-loop: exited 3 times in a row (last: exit code 2); last lines:\nfirst\nsecond\nlast words"]
    unit.streak = 2
    assert asyncio.run(backoff_after(11.0)) is True
    assert unit.streak == 1
