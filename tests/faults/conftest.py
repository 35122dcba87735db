"""The fault suite's figures: each scenario adds to them, and the run ends by printing them
(`faults: 60 kills, 0 survivors, ...`), in CI as anywhere."""

from __future__ import annotations

from collections import Counter

import pytest

FIGURES: Counter[str] = Counter()
PEAKS: dict[str, float] = {}


def count(name: str, n: int = 1) -> None:
    FIGURES[name] += n


def peak(name: str, value: float) -> None:
    PEAKS[name] = max(PEAKS.get(name, 0.0), value)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES and not PEAKS:
        return
    parts = []
    if "kills" in FIGURES:
        parts.append(f"{FIGURES['kills']} kills, {FIGURES['survivors']} survivors, {FIGURES['lost lines']} lost lines, "
                     f"{FIGURES['half-written files']} half-written files")
    for name, value in sorted(FIGURES.items()):
        if name not in ("kills", "survivors", "lost lines", "half-written files"):
            parts.append(f"{value} {name}")
    parts += [f"{name} {value:.1f} MB" for name, value in sorted(PEAKS.items())]
    terminalreporter.write_line("faults: " + "; ".join(parts))
