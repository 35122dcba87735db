"""Health probes against loopback servers the test runs: what passes, what fails, and the one
line that says why."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from airadev.model import Probe, ProbeKind
from airadev.supervisor import probes


def check(probe: Probe) -> tuple[bool, str]:
    return asyncio.run(probes.check(probe))


@pytest.fixture
def answering() -> Iterator[tuple[int, list[bytes]]]:
    """A server on loopback answering each connection with the next canned bytes."""
    answers: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    requests: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                requests.append(conn.recv(4096))
                if answers:
                    conn.sendall(answers.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], answers
    server.close()
    assert all(r.startswith(b"GET /") and b"\r\nConnection: close\r\n\r\n" in r for r in requests if r)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp(answering: tuple[int, list[bytes]]) -> None:
    port, _ = answering
    assert check(Probe(ProbeKind.TCP, ("127.0.0.1", port))) == (True, "port open")
    assert check(Probe(ProbeKind.TCP, ("localhost", port))) == (True, "port open")
    assert check(Probe(ProbeKind.TCP, ("127.0.0.1", closed_port()))) == (False, "connection refused")


def test_a_container_s_published_port_passes_only_once_the_service_behind_it_listens() -> None:
    """The engine's port proxy accepts, then closes at once while nothing listens inside; a
    service that listens keeps the connection open (or speaks first)."""

    def serving(behaviour: str) -> int:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()

        def serve() -> None:
            conn, _ = server.accept()
            try:
                if behaviour == "greets":
                    conn.sendall(b"220 ready\r\n")
                if behaviour == "resets":  # SO_LINGER 0: a reset, not a close
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                if behaviour not in ("closes", "resets"):
                    conn.recv(1)  # until the probe goes
            except OSError:
                pass
            finally:
                conn.close()
                server.close()

        threading.Thread(target=serve, daemon=True).start()
        return server.getsockname()[1]

    def proxied(port: int) -> tuple[bool, str]:
        return asyncio.run(probes.check(Probe(ProbeKind.TCP, ("127.0.0.1", port)), proxied=True))

    waiting = (False, "the engine's port proxy answers, but nothing listens in the container yet")
    assert proxied(serving("closes")) == waiting
    assert not proxied(serving("resets"))[0]  # reset while connecting, or just after
    assert proxied(serving("listens")) == (True, "port open")
    assert proxied(serving("greets")) == (True, "port open")
    assert check(Probe(ProbeKind.TCP, ("127.0.0.1", serving("closes")))) == (True, "port open")  # a process's port


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", (True, "HTTP 200")),
        (b"HTTP/1.0 302 Found\r\n\r\n", (True, "HTTP 302")),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", (False, "HTTP 404")),
        (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", (False, "HTTP 503")),
        (b"SSH-2.0-OpenSSH_9.2\r\n", (False, "not an HTTP answer")),
        (b"", (False, "connection closed without an answer")),
    ],
)
def test_http_passes_below_400(answering: tuple[int, list[bytes]], answer: bytes, verdict: tuple[bool, str]) -> None:
    port, answers = answering
    answers.append(answer)
    assert check(Probe(ProbeKind.HTTP, f"http://127.0.0.1:{port}/health?deep=1")) == verdict


def test_http_failures_are_one_line() -> None:
    assert check(Probe(ProbeKind.HTTP, f"http://127.0.0.1:{closed_port()}/")) == (False, "connection refused")
    ok, why = check(Probe(ProbeKind.HTTP, "http://127.0.0.1:99999/"))
    assert not ok and why.startswith("bad address")


def test_a_silent_server_times_out() -> None:
    with socket.socket() as silent:  # accepts (the kernel's backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        assert check(Probe(ProbeKind.HTTP, f"http://127.0.0.1:{port}/", timeout=0.2)) == (
            False,
            "no answer within 0.2s",
        )


def test_exec(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert check(Probe(ProbeKind.EXEC, ("sh", "-c", "echo starting; echo PONG"))) == (True, "PONG")
    assert check(Probe(ProbeKind.EXEC, ("true",))) == (True, "exit 0")
    assert check(Probe(ProbeKind.EXEC, ("sh", "-c", "echo 'not ready' >&2; exit 3"))) == (False, "exit 3: not ready")
    assert check(Probe(ProbeKind.EXEC, ("false",))) == (False, "exit 1")
    assert check(Probe(ProbeKind.EXEC, (str(tmp_path / "missing"),))) == (
        False,
        f"cannot run {tmp_path / 'missing'}: No such file or directory",
    )
    assert check(Probe(ProbeKind.EXEC, ("sleep", "5"), timeout=0.2)) == (False, "no answer within 0.2s")


def test_a_log_probe_is_not_polled() -> None:
    with pytest.raises(ValueError, match="checked on the output"):
        check(Probe(ProbeKind.LOG, "ready"))


def test_retarget_aims_loopback_probes_at_a_remote_engine() -> None:
    tcp = Probe(ProbeKind.TCP, ("127.0.0.1", 6379))
    assert probes.retarget(tcp, "10.0.0.5").target == ("10.0.0.5", 6379)
    assert probes.retarget(tcp, None) is tcp
    assert probes.retarget(Probe(ProbeKind.TCP, ("db.internal", 5432)), "10.0.0.5").target == ("db.internal", 5432)
    http = Probe(ProbeKind.HTTP, "http://localhost:8000/health?x=1")
    assert probes.retarget(http, "10.0.0.5").target == "http://10.0.0.5:8000/health?x=1"
    assert probes.retarget(Probe(ProbeKind.HTTP, "http://localhost/"), "h").target == "http://h/"
    assert probes.retarget(Probe(ProbeKind.HTTP, "http://example.com/"), "h").target == "http://example.com/"
    exec_probe = Probe(ProbeKind.EXEC, ("redis-cli", "ping"))
    assert probes.retarget(exec_probe, "h") is exec_probe


def test_describe() -> None:
    assert Probe(ProbeKind.TCP, ("127.0.0.1", 1)).describe() == "tcp 127.0.0.1:1"
    assert Probe(ProbeKind.EXEC, ("redis-cli", "ping")).describe() == "exec redis-cli ping"
    assert Probe(ProbeKind.LOG, "ready").describe() == "log /ready/"
    assert Probe(ProbeKind.HTTP, "http://x/h").describe() == "http http://x/h"
