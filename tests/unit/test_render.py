"""What the user sees: tables, durations and sizes, the log console and its back-pressure, the
tunnel's and doctor's reports. Plain text (piped) unless a test asks for colour."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from airadev import render
from airadev.doctor import Result, Status
from airadev.logstore import Redactor
from airadev.status import ReadySummary, StackStatus, TunnelStatus


@pytest.fixture(autouse=True)
def plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def snapshot(**extra: object) -> dict:  # type: ignore[type-arg]
    return {
        "workspace": "/home/dev/aira",
        "supervisor_pid": 4242,
        "started_at": 0,
        "phase": "ready",
        "failure": None,
        "services": {
            "redis": {
                "runtime": "process",
                "state": "healthy",
                "pid": 101,
                "port": 6379,
                "health": "port open",
                "uptime": 3725.0,
                "restarts": 0,
                "cpu_percent": 0.25,
                "rss_bytes": 8 * 1024 * 1024,
            },
            "voice-agent": {
                "runtime": "process",
                "state": "crash-loop",
                "pid": None,
                "port": 8000,
                "health": "",
                "message": "crash-loop: exited 6 times in a row (last: exit code 1) and a long tail",
                "uptime": None,
                "restarts": 5,
                "cpu_percent": None,
                "rss_bytes": None,
            },
            "db": {
                "runtime": "postgres",
                "state": "starting",
                "pid": 7,
                "port": 54322,
                "health": "",
                "message": "",
                "uptime": 59.9,
                "restarts": 0,
                "cpu_percent": 12.0,
                "rss_bytes": 900,
            },
        },
        **extra,
    }


def test_status_is_a_plain_aligned_table_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    render.status(
        StackStatus.from_json(snapshot(phase="failed", failure={"service": "voice-agent", "message": "it crash-loops"}))
    )
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("airadev: /home/dev/aira (supervisor pid 4242, up since ")
    assert lines[1].split() == [
        "SERVICE",
        "RUNTIME",
        "STATE",
        "PID",
        "PORT",
        "HEALTH",
        "UPTIME",
        "RESTARTS",
        "CPU",
        "MEM",
    ]
    assert lines[2].split() == [
        "redis",
        "process",
        "healthy",
        "101",
        "6379",
        "port",
        "open",
        "1h02m",
        "0",
        "0.2%",
        "8.0MB",
    ]
    message = snapshot()["services"]["voice-agent"]["message"]
    assert lines[3].split()[:5] == ["voice-agent", "process", "crash-loop", "-", "8000"]
    assert f" {message[:37]}... " in lines[3], "a long health text is cut to 40 characters"
    assert lines[4].split()[:3] == ["db", "postgres", "starting"] and "59s" in lines[4] and "900B" in lines[4]
    assert lines[5] == "db: plain PostgreSQL (runtime postgres), not Supabase: no REST API, no auth; SQL only"
    assert err == "voice-agent: it crash-loops\n"
    header = lines[1]
    assert all(line.index(line.split()[2]) == header.index("STATE") for line in lines[2:5]), "columns aligned"


def test_containers_add_their_columns(capsys: pytest.CaptureFixture[str]) -> None:
    data = snapshot()
    data["services"]["redis"].update(runtime="docker", container="airadev-abc-redis", image="redis:7-alpine")
    render.status(StackStatus.from_json(data))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-2:] == ["CONTAINER", "IMAGE"]
    assert lines[2].split()[-2:] == ["airadev-abc-redis", "redis:7-alpine"]
    assert lines[3].split()[-2:] == ["-", "-"]


def test_a_terminal_gets_a_rich_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert render.use_colour()
    render.table(["service", "state"], [["web", "healthy"], ["db", "[x]"]], title="t")
    out = capsys.readouterr().out
    assert "web" in out and "healthy" in out and "[x]" in out, "cells are escaped, not read as markup"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (0, "0s"), (59.9, "59s"), (60, "1m00s"), (3599, "59m59s"), (3600, "1h00m"), (90061, "25h01m")],
)
def test_durations(seconds: float | None, shown: str) -> None:
    assert render.duration(seconds) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        (0, "0B"),
        (1023, "1023B"),
        (1024, "1.0KB"),
        (5 * 1024**2 + 1, "5.0MB"),
        (3 * 1024**3, "3.0GB"),
        (5000 * 1024**3, "5000.0GB"),
    ],
)
def test_sizes(value: int | None, shown: str) -> None:
    assert render.size(value) == shown


def test_an_error_is_what_then_fix(capsys: pytest.CaptureFixture[str]) -> None:
    from airadev.errors import AiradevError

    render.error(AiradevError("web is crash-loop", "see `airadev logs web`", details="  last line"))
    assert capsys.readouterr().err == "error: web is crash-loop\n  last line\n  fix: see `airadev logs web`\n"


# --- the log console --------------------------------------------------------------------------------


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_the_console_prefixes_aligned_names_events_and_the_summary() -> None:
    rfd, wfd = os.pipe()
    console = render.LogConsole(["web", "voice-agent"], colour=False, fd=wfd)
    console.output("web", b"GET /\nGET /health\n")
    console.event("voice-agent", "exited: exit code 1", "warning")
    console.event(None, "line one\nline two")
    console.ready(
        ReadySummary(
            services=(("web", 1.5, 0.5), ("voice-agent", 2.25, 2.0)), critical_path=("voice-agent",), total=2.25
        )
    )
    console.close()
    os.close(wfd)
    assert read_all(rfd).decode().splitlines() == [
        "web         | GET /",
        "web         | GET /health",
        "airadev     | voice-agent: exited: exit code 1",
        "airadev     | line one",
        "airadev     | line two",
        "airadev     | all 2 services ready in 2.25s",
        "airadev     |   web          ready after   1.50s  (own start 0.50s)",
        "airadev     |   voice-agent  ready after   2.25s  (own start 2.00s)",
        "airadev     |   critical path: voice-agent 2.00s",
    ]
    os.close(rfd)


def test_a_console_nobody_reads_drops_output_and_says_how_much() -> None:
    rfd, wfd = os.pipe()
    out = render.ConsoleOutput(wfd)  # a pipe: a writer thread and a bounded buffer
    out.LIMIT = 10  # type: ignore[misc]
    with out._cond:  # the writer thread is held back while the buffer fills, as by a paused terminal
        for _ in range(4):
            out.write(b"12345")
    out.close()
    os.close(wfd)
    data = read_all(rfd)
    os.close(rfd)
    assert data.startswith(b"1234512345")
    assert data.endswith(
        b"[airadev: 10 bytes of output were left off the console while it was not reading; `airadev logs` has them]\n"
    )


def test_a_console_whose_reader_went_stops_writing(tmp_path: Path) -> None:
    rfd, wfd = os.pipe()
    os.close(rfd)
    console = render.LogConsole(["web"], colour=False, fd=wfd, own=False, buffered=False)
    assert console.alive
    console.output("web", b"into the void\n")  # EPIPE: no exception, just no more writing
    assert not console.alive
    os.close(wfd)
    # A regular file is written directly, never dropped.
    path = tmp_path / "out.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    direct = render.ConsoleOutput(fd)
    direct.writev((b"a | ", memoryview(b"one\na | two\n")))
    direct.write(b"three\n")
    direct.close()
    os.close(fd)
    assert path.read_bytes() == b"a | one\na | two\nthree\n"


def test_stored_lines_lose_their_stamp_unless_asked(capfd: pytest.CaptureFixture[str]) -> None:
    stamped = [b"2026-11-25T23:17:45.123Z ready\n", b"unstamped\n"]
    assert render.LogPrinter(["web"], prefix=False, timestamps=False, colour=False).write("web", stamped)
    assert render.LogPrinter(["web"], prefix=False, timestamps=True, colour=False).write("web", stamped[:1])
    assert render.LogPrinter(["web"], prefix=True, timestamps=False, colour=False).write("web", [])
    assert capfd.readouterr().out == "ready\nunstamped\n2026-11-25T23:17:45.123Z ready\n"


# --- the tunnel -------------------------------------------------------------------------------------


def test_tunnel_status_lists_what_is_rewired(capsys: pytest.CaptureFixture[str]) -> None:
    render.tunnel_status(
        TunnelStatus.from_json(
            {
                "state": "open",
                "address": "https://a.ngrok.app",
                "keep": True,
                "ui_reload": "reloaded",
                "rewired": [
                    {"kind": "envfile", "path": "aira-ui/.env.local", "variable": "V", "value": "https://a.ngrok.app"},
                    {
                        "kind": "twilio",
                        "phone_number": "+1555",
                        "webhooks": {"voice_url": "v", "sms_url": "s", "status_callback": "c"},
                    },
                    {"kind": "db", "phone_number": "+1555"},
                ],
            }
        )
    )
    assert capsys.readouterr().out.splitlines() == [
        "tunnel: https://a.ngrok.app",
        "  aira-ui/.env.local: V=https://a.ngrok.app",
        "  Twilio +1555: voice v, sms s, status c",
        "  database business_numbers +1555: the same URLs",
        "  UI: reloaded",
        "  (--keep: the rewiring stays when the tunnel closes)",
    ]
    render.tunnel_status(
        TunnelStatus.from_json(
            {"state": "open", "address": "https://b", "rewired": [], "twilio": "no test number", "database": "no row"}
        )
    )
    assert capsys.readouterr().out.splitlines() == [
        "tunnel: https://b",
        "  Twilio: no test number",
        "  database: no row",
    ]
    render.tunnel_status(TunnelStatus.from_json({"state": "failed", "message": "no token"}))
    render.tunnel_status(TunnelStatus.from_json({}))
    assert capsys.readouterr().out == "tunnel: failed (no token)\ntunnel: closed\n"


def test_tunnel_closed_and_verified(capsys: pytest.CaptureFixture[str]) -> None:
    render.tunnel_closed(
        {"restored": ["a put back"], "left": ["b left"], "waiting": [], "failed": ["Twilio x"], "kept": True}
    )
    out, err = capsys.readouterr()
    assert out == "tunnel: closed\n  a put back\n  b left\n  the rewiring was kept (--keep)\n"
    assert err == "  could not put back Twilio x; `airadev down` tries again\n"
    render.verified({"url": "https://a/x", "status": 200, "ms": 12.4, "twiml": True})
    render.verified({"url": "https://a/x", "status": 502, "ms": 3, "twiml": False})
    assert capsys.readouterr().out == (
        "verify: POST https://a/x → 200 in 12 ms, TwiML\nverify: POST https://a/x → 502 in 3 ms, not TwiML  ✗\n"
    )


# --- doctor -----------------------------------------------------------------------------------------


def test_the_doctor_report_groups_marks_redacts_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    results = [
        Result("tools.python", "tools", Status.OK, "Python 3.11.7", duration=0.0012),
        Result("tools.ngrok-agent", "tools", Status.SKIPPED, "not asked for"),
        Result(
            "env.format:x",
            "env",
            Status.ERROR,
            "token sk_test_SECRETVALUE is malformed",
            "copy sk_test_SECRETVALUE again",
        ),
        Result("secrets.modes:x", "secrets", Status.WARNING, "x is mode 0644", "chmod 600 x"),
        Result("secrets.git:x", "secrets", Status.WARNING, "y", "z"),
    ]
    ctx = SimpleNamespace(root=Path("/w"), start=Path("/w"), offline=True)
    redact = Redactor({"STRIPE_SECRET_KEY": "sk_test_SECRETVALUE"})
    render.doctor_report(results, ctx, verbose=False, redact=redact)
    out = capsys.readouterr().out
    assert out.splitlines()[:8] == [
        "airadev doctor: /w (offline)",
        "tools",
        "  ✓ Python 3.11.7",
        "env",
        "  ✗ token [redacted:STRIPE_SECRET_KEY] is malformed",
        "      fix: copy [redacted:STRIPE_SECRET_KEY] again",
        "secrets",
        "  ! x is mode 0644",
    ]
    assert "1 passed, 2 warnings, 1 error, 1 skipped" in out
    assert "SECRETVALUE" not in out
    render.doctor_report(results[:2], ctx, verbose=True, redact=redact)
    verbose = capsys.readouterr().out
    assert "  ✓ Python 3.11.7  (1 ms)" in verbose
    assert "  - tools.ngrok-agent: skipped (not asked for)  (0 ms)" in verbose
