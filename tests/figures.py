"""The fault suite's figures: its scenarios (and the error catalogues elsewhere) add to them,
and the run ends by printing them (`faults: 60 kills, 0 survivors, ...`; tests/conftest.py),
in CI as anywhere."""

from __future__ import annotations

from collections import Counter

import pytest

FIGURES: Counter[str] = Counter()
PEAKS: dict[str, float] = {}


def count(name: str, n: int = 1) -> None:
    FIGURES[name] += n


def peak(name: str, value: float) -> None:
    PEAKS[name] = max(PEAKS.get(name, 0.0), value)


def summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES and not PEAKS:
        return
    parts = []
    shown = ("kills", "survivors", "lost lines", "half-written files")
    if "kills" in FIGURES:
        parts.append(", ".join(f"{FIGURES[name]} {name}" for name in shown))
    parts += [f"{value} {name}" for name, value in sorted(FIGURES.items())
              if name not in shown or "kills" not in FIGURES and name != "kills"]
    parts += [f"{name} {value:.1f} MB" for name, value in sorted(PEAKS.items())]
    terminalreporter.write_line("faults: " + "; ".join(parts))
