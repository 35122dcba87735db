"""The control channel's client: a supervisor that does not take a request (its backlog full,
its loop stuck) makes the request fail within its timeout, never hang."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from airadev import control
from airadev.errors import AiradevError, NotRunning


def test_a_request_to_a_supervisor_that_never_accepts_fails_within_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(0)  # never accepted: the first connections fill the backlog, the rest wait in connect
    outcomes: list[BaseException | None] = []

    def ask() -> None:
        try:
            control.request(path, control.Op.STATUS, timeout=0.5)
            outcomes.append(None)
        except BaseException as exc:  # noqa: BLE001  (what it raised is the point)
            outcomes.append(exc)

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(t.is_alive() for t in threads), "a request hangs"
        assert len(outcomes) == 4 and all(isinstance(e, AiradevError) for e in outcomes), outcomes
        assert all("did not" in str(getattr(e, "message", e)) for e in outcomes)
    finally:
        server.close()


def test_nothing_listening_is_not_running(tmp_path: Path) -> None:
    with pytest.raises(NotRunning):
        control.request(tmp_path / "control.sock", control.Op.STATUS, timeout=1)
