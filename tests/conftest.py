from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
