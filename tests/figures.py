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


# Figures that are a count of failures next to what was looked at: "0 survivors in 120 checks".
MEASURED = (
    ("kills", "kills mid-operation", "{n} kills ({of} mid-operation)"),
    ("survivors", "survivor checks", "{n} survivors in {of} checks"),
    ("lost lines", "lines compared", "{n} lost lines of {of} compared"),
    ("half-written files", "files checked", "{n} half-written files of {of} checked"),
)


def summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES and not PEAKS:
        return
    parts, shown = [], set()
    for name, of, words in MEASURED:
        if name in FIGURES or of in FIGURES:
            parts.append(words.format(n=FIGURES[name], of=FIGURES[of]))
            shown.update((name, of))
    parts += [f"{value} {name}" for name, value in sorted(FIGURES.items()) if name not in shown]
    parts += [f"{name} {value:.1f} MB" for name, value in sorted(PEAKS.items())]
    terminalreporter.write_line("faults: " + "; ".join(parts))
