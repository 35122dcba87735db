from __future__ import annotations

import random

import pytest

from airadev import graph
from airadev.supervisor.unit import backoff_delay

STACK = {"redis": [], "voice": ["redis"], "kb": [], "ui": ["voice", "kb"]}


def test_closure_keeps_config_order_and_pulls_dependencies() -> None:
    assert graph.closure(STACK, ["ui"]) == ["redis", "voice", "kb", "ui"]
    assert graph.closure(STACK, ["voice"]) == ["redis", "voice"]
    assert graph.closure(STACK, ["kb"]) == ["kb"]


def test_start_order_waves() -> None:
    assert graph.start_order(STACK) == [["redis", "kb"], ["voice"], ["ui"]]


def test_dependents() -> None:
    assert graph.dependents(STACK, "redis") == ["voice"]
    assert sorted(graph.dependents(STACK, "kb")) == ["ui"]


def test_find_cycle() -> None:
    assert graph.find_cycle(STACK) is None
    assert graph.find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert graph.find_cycle({"x": [], "a": ["b"], "b": ["a"]}) == ["a", "b", "a"]
    with pytest.raises(ValueError):
        graph.start_order({"a": ["b"], "b": ["a"]})


def test_critical_path_follows_the_dependency_that_held_each_back() -> None:
    ready = {"redis": 0.3, "kb": 1.0, "voice": 1.5, "ui": 4.0}
    started = {"redis": 0.0, "kb": 0.0, "voice": 0.3, "ui": 1.5}
    assert graph.critical_path(STACK, ready, started) == ["redis", "voice", "ui"]
    # kb became ready last before ui started: it is what held ui back.
    ready2 = {"redis": 0.1, "kb": 2.0, "voice": 0.5, "ui": 3.0}
    started2 = {"redis": 0.0, "kb": 0.0, "voice": 0.1, "ui": 2.0}
    assert graph.critical_path(STACK, ready2, started2) == ["kb", "ui"]


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(7)
    for n in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (n - 1))
        for _ in range(50):
            delay = backoff_delay(n, 0.5, 30.0, 0.2, rng)
            assert ceiling * 0.8 <= delay <= ceiling
    no_jitter = [backoff_delay(n, 0.5, 30.0, 0.0, rng) for n in range(1, 9)]
    assert no_jitter == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    # Jitter spreads services that fail together.
    spread = {round(backoff_delay(3, 0.5, 30.0, 0.2, rng), 6) for _ in range(20)}
    assert len(spread) > 10
