from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import figures
from tests.harness import Stack


def pytest_configure(config: pytest.Config) -> None:
    # Run as a background job of a non-interactive shell (a script's `make test &`), pytest and
    # everything it starts inherit SIGINT ignored (POSIX), and Ctrl-C as the tests send it
    # (SIGINT to `up`, `logs -f`, `tunnel`) would be lost. Give the children a terminal's
    # default: a handled signal is reset to the default at exec, an ignored one is not.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
