"""The command line in-process, for what needs no running stack: exit codes, the two-line
errors, reading stored logs, init, export, doctor's listing and JSON. (What needs a stack runs
through real processes in tests/integration.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airadev import __version__, cli
from airadev import logstore

STAMP = 1_700_000_000.0  # 2023-11-14T22:13:20Z: in the past


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("AIRADEV_WORKSPACE", raising=False)

    def airadev(*args: str) -> tuple[int, str, str]:
        capfd.readouterr()
        try:
            cli.app(list(args), prog_name="airadev")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capfd.readouterr()
        return code, out, err

    return airadev


def two_lines(err: str) -> tuple[str, str]:
    """An error is one line saying what happened and one saying how to fix it."""
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 2, err
    assert lines[0].startswith("error: ") and lines[1].startswith("  fix: "), err
    return lines[0].removeprefix("error: "), lines[1].removeprefix("  fix: ")


def workspace(root: Path) -> None:
    (root / "voice").mkdir()
    (root / "airadev.toml").write_text("""
[services.redis]
command = "redis-server"
port = 6379

[services.voice-agent]
aliases = ["voice"]
cwd = "voice"
command = "python server.py"
port = 8000
depends_on = ["redis"]
docker = { image = "aira/voice-agent:dev", port = 8000 }
""")


def stored(root: Path, service: str, lines: list[tuple[float, str]]) -> None:
    logs = root / ".airadev" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    clock = logstore.Clock()
    with open(logs / f"{service}.log", "ab") as f:
        for when, text in lines:
            f.write(clock.stamp(when) + text.encode() + b"\n")


def test_version_and_help(run) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run("--version")
    assert (code, out) == (0, f"airadev {__version__}\n")
    code, out, _ = run("--help")
    assert code == 0 and "Exit codes: 0 success" in out


def test_no_workspace_is_a_clear_error(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run("status")
    assert code == 2 and out == ""
    what, fix = two_lines(err)
    assert "airadev.toml" in what and "airadev init" in fix


def test_nothing_running_is_exit_3(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace(tmp_path)
    for args in (["status"], ["restart", "voice"], ["stop", "redis"]):
        code, out, err = run(*args)
        assert code == 3, (args, err)
        assert two_lines(err) == ("nothing is running in this workspace", "start the stack with `airadev up`")
    # `status --json` always answers in JSON (still exit 3); `down` is idempotent (exit 0).
    code, out, err = run("status", "--json")
    assert code == 3 and json.loads(out) == {"schema": 1, "running": False} and err == ""
    code, out, _ = run("down")
    assert (code, out) == (0, "nothing is running: nothing to stop\n")


def test_a_dead_run_is_named_when_nothing_runs(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace(tmp_path)
    (tmp_path / ".airadev").mkdir()
    (tmp_path / ".airadev" / "state.json").write_text(
        json.dumps({"schema": 1, "phase": "ready", "supervisor_pid": 2**22 + 1, "supervisor_start": 1, "services": {}})
    )
    code, _, err = run("status")
    what, fix = two_lines(err)
    assert code == 3
    assert what == f"nothing is running: the last run's supervisor (pid {2**22 + 1}) died without stopping the stack"
    assert "airadev down" in fix


def test_stored_logs_are_read_back_merged_in_time_order(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace(tmp_path)
    stored(tmp_path, "redis", [(STAMP, "redis one"), (STAMP + 2, "redis two")])
    stored(tmp_path, "voice-agent", [(STAMP + 1, "voice one"), (STAMP + 3, "voice two"), (STAMP + 4, "voice three")])
    stored(tmp_path, "airadev", [(STAMP + 0.5, "voice-agent: started (pid 42)")])

    code, out, _ = run("logs")
    assert code == 0
    assert out.splitlines() == [
        "redis       | redis one",
        "airadev     | voice-agent: started (pid 42)",
        "voice-agent | voice one",
        "redis       | redis two",
        "voice-agent | voice two",
        "voice-agent | voice three",
    ]
    code, out, _ = run("logs", "voice", "-n", "2", "--no-prefix")
    assert out == "voice two\nvoice three\n"
    code, out, _ = run("logs", "redis", "-n", "1", "--timestamps", "--no-prefix")
    assert out == "2023-11-14T22:13:22.000Z redis two\n"
    code, out, _ = run("logs", "redis", "--since", "1m")
    assert (code, out) == (0, ""), "those lines are years old"


@pytest.mark.parametrize(
    ("args", "what", "fix"),
    [
        (
            ["logs", "nosuch"],
            "no service named 'nosuch'",
            "services: redis, voice-agent (voice); or airadev (the supervisor), ngrok (the tunnel)",
        ),
        (["logs", "voise"], "no service named 'voise'; did you mean 'voice'?", None),
        (["logs", "--since", "soon"], "--since soon: not a duration", "write it like 10m, 90s or 2h"),
        (["logs", "-n", "-1"], "-n -1: must be 0 or more", "write -n 100"),
        (
            ["logs", "-f"],
            "nothing is running, so there is nothing to follow (the lines above are stored ones)",
            "start the stack with `airadev up`",
        ),
        (["export", "yaml"], "cannot export 'yaml'", "use `airadev export compose`"),
        (["doctor", "--dry-run"], "--dry-run and --install go with --fix", "add --fix"),
        (["up", "--runtime", "vm"], None, None),
    ],
)
def test_bad_usage_is_one_clear_line(
    run,
    tmp_path: Path,
    args: list[str],
    what: str | None,  # type: ignore[no-untyped-def]
    fix: str | None,
) -> None:
    workspace(tmp_path)
    code, out, err = run(*args)
    said, how = two_lines(err)
    assert code == (3 if args == ["logs", "-f"] else 2), err
    assert out == ""
    if what is not None:
        assert said == what
    if fix is not None:
        assert how == fix


def test_a_bad_config_is_exit_2_naming_file_service_and_key(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "airadev.toml").write_text('[services.web]\ncommand = "x"\nprot = 3000\n')
    code, _, err = run("up")
    what, fix = two_lines(err)
    assert code == 2
    assert "airadev.toml" in what and "services.web" in what and "prot" in what
    assert "port" in fix


def test_export_compose_to_stdout_and_to_a_file(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace(tmp_path)
    code, out, _ = run("export", "compose")
    assert code == 0 and "voice-agent:" in out and "aira/voice-agent:dev" in out
    code, out, _ = run("export", "compose", "-o", "compose.yml")
    assert (code, out) == (0, "wrote compose.yml\n")
    assert "voice-agent:" in (tmp_path / "compose.yml").read_text()


def test_init_writes_a_valid_config_once(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "voice-agent").mkdir()
    code, out, err = run("init")
    assert code == 0
    assert f"wrote {tmp_path / 'airadev.toml'}" in out
    assert "added .airadev/ to" in out
    assert "created" in out and (tmp_path / "voice-agent" / ".env").stat().st_mode & 0o777 == 0o600
    assert "note: aira-ui/ is not there yet" in err
    code, _, err = run("init")
    assert code == 1 and two_lines(err)[1] == "edit it, or pass --force to overwrite it"
    code, out, _ = run("export", "compose")
    assert code == 0, "the written config loads"


def test_doctor_lists_its_checks_and_answers_in_json(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace(tmp_path)
    code, out, _ = run("doctor", "--list-checks")
    assert code == 0
    for check_id in ("tools.python", "workspace.config", "env.present", "secrets.modes", "live.twilio"):
        assert check_id in out
    code, out, _ = run("doctor", "--offline", "--json", "workspace.config", "workspace.folders")
    data = json.loads(out)
    assert code == 0
    assert data["schema"] == 1 and data["offline"] is True and data["exit_code"] == 0
    assert {c["id"]: c["status"] for c in data["checks"]} == {
        "workspace.config": "ok",
        "workspace.folders:redis": "ok",
        "workspace.folders:voice-agent": "ok",
    }
    assert data["summary"] == {"ok": 3, "warning": 0, "error": 0, "skipped": 0}
    code, out, _ = run("doctor", "--offline", "nosuch")
    assert code == 2


def test_doctor_report_lines_and_fix(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace(tmp_path)
    (tmp_path / "voice").rmdir()
    code, out, _ = run("doctor", "--offline", "workspace.folders")
    assert code == 1
    assert "  ✗ voice-agent: folder voice/ is missing\n" in out
    assert "      fix: clone the voice-agent repo into voice/, or fix its cwd in airadev.toml\n" in out
