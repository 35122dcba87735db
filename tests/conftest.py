from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import figures
from tests.harness import Stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    s = Stack(workspace)
    try:
        yield s
    finally:
        s.cleanup()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    figures.summary(terminalreporter)
