"""The daily workflow that users of compose, honcho and overmind expect (issue 15, first part):
`run` for one-off commands in a service's environment, several services (or --all) to stop,
start and restart at once, and `ps`."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.harness import Stack, fake, free_port, toml_list


def test_run_gives_a_one_off_command_the_service_s_environment_and_this_terminal(stack: Stack) -> None:
    root = stack.root
    (root / "api").mkdir()
    (root / "api" / ".env").write_text("API_SECRET=from-the-env-file\n")
    venv = root / "api" / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)  # a virtualenv of its own: first on PATH
    port = free_port()
    stack.write(f"""
[services.db]
runtime = "postgres"
port = {port}
database = "app"

[services.api]
aliases = ["a"]
cwd = "api"
command = "python -m http.server"
env_files = [".env"]
env = {{ MODE = "dev" }}
""")
    script = (
        "import os, sys; print(os.getcwd()); print(os.environ['API_SECRET'], os.environ['MODE']); "
        "print(os.environ['DATABASE_URL']); print(os.environ['PATH'].split(':')[0]); "
        "print('marker' if any(k.startswith('AIRADEV_') for k in os.environ) else 'no marker'); "
        "print(sys.stdin.read().strip()); sys.exit(7)"
    )
    # Whether or not the stack runs (it does not here); stdin and the exit code are the command's.
    done = subprocess.run(
        [sys.executable, "-m", "airadev", "--workspace", str(root), "run", "a", "--", "python", "-c", script],
        input="typed in this terminal",
        capture_output=True,
        text=True,
        env=stack.environment(),
        timeout=60,
    )
    assert done.returncode == 7, done.stderr
    assert done.stdout.splitlines() == [
        str(root / "api"),
        "from-the-env-file dev",
        f"postgresql://postgres:postgres@127.0.0.1:{port}/app",
        str(venv),
        "no marker",  # the user's command, not the stack's: `down` leaves it alone
        "typed in this terminal",
    ]
    missing = stack.cli("run", "api", "--", "no-such-program-xyz")
    assert missing.returncode == 1 and "no-such-program-xyz is not found in api's environment" in missing.stderr
    database = stack.cli("run", "db", "--", "true")
    assert (
        database.returncode == 1 and "`airadev run` runs commands in a process service's environment" in database.stderr
    )


def test_several_services_or_all_stop_start_and_restart_and_ps_is_status(stack: Stack) -> None:
    stack.write("".join(f"[services.{n}]\ncommand = {toml_list(fake('printer.py'))}\n" for n in ("a", "b", "c")))
    assert stack.up().returncode == 0
    stopped = stack.cli("stop", "a", "b")
    assert stopped.returncode == 0 and stopped.stdout.splitlines() == ["a: stopped", "b: stopped"]
    assert [stack.service(n)["state"] for n in ("a", "b", "c")] == ["stopped", "stopped", "running"]
    started = stack.cli("start", "--all")
    assert started.returncode == 0, started.stderr
    assert [stack.service(n)["state"] for n in ("a", "b", "c")] == ["running"] * 3
    pids = {n: stack.service(n)["pid"] for n in ("a", "b", "c")}
    assert stack.cli("restart", "--all").returncode == 0
    assert all(stack.service(n)["pid"] != pids[n] for n in pids)
    both = stack.cli("stop", "a", "--all")
    assert both.returncode == 2 and "name services, or --all, not both" in both.stderr
    neither = stack.cli("restart")
    assert neither.returncode == 2 and "restart needs services, or --all" in neither.stderr
    ps = stack.cli("ps", "--json")
    assert ps.returncode == 0
    assert {n: svc["state"] for n, svc in json.loads(ps.stdout)["services"].items()} == dict.fromkeys("abc", "running")


def test_a_dumb_or_ascii_terminal_gets_plain_text_never_a_crash(stack: Stack) -> None:
    import os
    import pty

    stack.write(f"[services.a]\ncommand = {toml_list(fake('printer.py'))}\n")
    base = {k: v for k, v in stack.environment().items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    ascii_only = subprocess.run(
        [sys.executable, "-m", "airadev", "--workspace", str(stack.root), "doctor", "tools.python"],
        capture_output=True,
        env={**base, "PYTHONIOENCODING": "ascii"},
        timeout=60,
    )
    assert ascii_only.returncode == 0, ascii_only.stderr
    assert b"  ok Python " in ascii_only.stdout and max(ascii_only.stdout + ascii_only.stderr) < 128
    # On a terminal (a pty) that says TERM=dumb: no colour codes.
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "airadev", "--workspace", str(stack.root), "doctor", "tools.python"],
        stdout=secondary,
        stderr=secondary,
        env={**base, "TERM": "dumb"},
    )
    os.close(secondary)
    out = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(60) == 0
    os.close(main)
    assert b"Python" in out and b"\x1b[" not in out


def test_typer_s_usage_errors_are_airadev_s_two_lines(stack: Stack) -> None:
    stack.write(f"[services.a]\ncommand = {toml_list(fake('printer.py'))}\n")
    for args, what in (
        (["stop", "--bogus"], "error: No such option: --bogus"),
        (["logs", "-n", "many"], "error: Invalid value for '-n' / '--lines': 'many' is not a valid int."),
    ):
        result = stack.cli(*args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [what, f"  fix: see `airadev {args[0]} --help`"], result.stderr
    plain = subprocess.run([sys.executable, "-m", "airadev", "up", "--help"], capture_output=True, text=True)
    assert "[services.X.docker]" in plain.stdout and "\x1b[" not in plain.stdout  # no markup eaten


def test_config_prints_the_resolved_configuration_without_secret_values(stack: Stack) -> None:
    (stack.root / "api").mkdir()
    (stack.root / "api" / ".env").write_text("API_TOKEN=tok_live_9f8e7d6c5b4a39281716\n")
    stack.write(f"""
[services.db]
runtime = "postgres"
database = "app"
password = "pw-Secret-42-xyz"

[services.api]
aliases = ["a"]
cwd = "api"
command = {toml_list(fake("printer.py", "--tag", "tok_live_9f8e7d6c5b4a39281716"))}
env_files = [".env"]
env = {{ MODE = "dev", SIGNING_SECRET = "sig-Secret-77-abc" }}
port = 8123
depends_on = ["db"]
""")
    result = stack.cli("config", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    api = data["services"]["api"]
    assert (api["aliases"], api["runtime"], api["cwd"], api["port"]) == (["a"], "process", "api", 8123)
    assert api["depends_on"] == {"db": "started"} and api["env_files"] == ["api/.env"]
    assert api["env"] == ["MODE", "SIGNING_SECRET"] and api["restart"] == "on-failure"
    assert data["services"]["db"]["database"] == {
        "database": "app",
        "user": "postgres",
        "migrations": "supabase/migrations",
    }
    text = stack.cli("config").stdout
    assert text.startswith(f"# {stack.root / 'airadev.toml'}: valid") and '[services.api]\naliases = ["a"]' in text
    for secret in ("tok_live_9f8e7d6c5b4a39281716", "pw-Secret-42-xyz", "sig-Secret-77-abc"):
        assert secret not in result.stdout + text, secret
    (stack.root / "airadev.toml").write_text("[services.api\n")
    broken = stack.cli("config")
    assert broken.returncode == 2 and broken.stderr.startswith("error: ")


def test_shell_completion_offers_commands_and_the_workspace_s_services(stack: Stack) -> None:
    stack.write(f'[services.voice-agent]\naliases = ["voice"]\ncommand = {toml_list(fake("printer.py"))}\n')

    def complete(words: str) -> list[str]:
        env = {**stack.environment(), "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        env["_AIRADEV_COMPLETE"] = "complete_bash"
        done = subprocess.run(
            [sys.executable, "-m", "airadev"], capture_output=True, text=True, env=env, cwd=stack.root, timeout=30
        )
        assert done.returncode == 0 and done.stderr == "", done.stderr
        return done.stdout.split()

    assert complete("airadev lo") == ["logs"]
    assert complete("airadev logs vo") == ["voice", "voice-agent"]
    assert complete("airadev restart v") == ["voice", "voice-agent"]
    (stack.root / "airadev.toml").write_text("[services.a\n")  # a broken file: no names, no error
    assert complete("airadev logs v") == []
    help_text = stack.cli("--help").stdout
    assert "--install-completion" in help_text and "--show-completion" in help_text


def test_another_os_gets_one_clear_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.platform = 'darwin'; from airadev.cli import main; main()", "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
    )
    assert done.returncode == 1 and done.stderr.splitlines() == [
        "error: airadev runs on Linux only (it finds processes through /proc); this is darwin",
        "  fix: run it on a Linux machine, a Linux VM or WSL 2",
    ]


def test_up_no_deps_starts_only_the_services_named(stack: Stack) -> None:
    printer = toml_list(fake("printer.py"))
    stack.write(f"""
[services.db]
command = {printer}

[services.api]
command = {printer}
depends_on = {{ db = "started" }}

[services.worker]
command = {printer}
depends_on = {{ api = "started" }}

[services.other]
command = {printer}
""")
    # A fresh run: only api, which does not wait for a db that is not in the run.
    assert stack.up("api", "--no-deps").returncode == 0
    assert sorted(stack.state()["services"]) == ["api"]
    assert stack.service("api")["state"] == "running"
    # On the running stack: worker joins alone; api's db still does not come.
    joined = stack.cli("up", "worker", "--no-deps")
    assert joined.returncode == 0, joined.stderr
    assert sorted(stack.state()["services"]) == ["api", "worker"]
    assert stack.service("worker")["state"] == "running"
    # Another service named later does not bring the db left out before.
    assert stack.cli("up", "other").returncode == 0
    assert sorted(stack.state()["services"]) == ["api", "other", "worker"]
    # Without --no-deps, what the named service depends on comes too.
    assert stack.cli("up", "api").returncode == 0
    assert sorted(stack.state()["services"]) == ["api", "db", "other", "worker"]
