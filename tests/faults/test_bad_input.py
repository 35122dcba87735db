"""The bad-input catalogue: each case is one mistake a developer makes. Each must give one clear
error line (what is wrong, then how to fix it: no traceback), the right exit code (2 for a
config or usage error, 1 for ground that is not ready, 3 for nothing running), and leave
everything as it was: no file of the workspace written, no process started.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.figures import count
from tests.harness import Stack, fake, free_port, toml_list


@dataclass
class Case:
    id: str
    says: str  # a piece of the error line
    code: int = 2
    toml: str = ""  # the services, in place of the good one
    args: tuple[str, ...] = ("up", "--detach")
    files: dict[str, bytes] = field(default_factory=dict)  # relative path → content
    setup: Callable[[Stack], object] | None = None
    env: dict[str, str] = field(default_factory=dict)


PRINTER = toml_list(fake("printer.py", "--lines", 1, "--tag", "ready"))


def good(port: int = 0) -> str:
    return f"[services.a]\ncommand = {PRINTER}\n" + (f"port = {port}\n" if port else "")


def two(extra_a: str = "", extra_b: str = "") -> str:
    return f"[services.a]\ncommand = {PRINTER}\n{extra_a}\n[services.b]\ncommand = {PRINTER}\n{extra_b}\n"


def link_outside(stack: Stack) -> None:
    outside = stack.root.parent / "elsewhere.env"
    outside.write_text("SECRET=from-outside\n")
    (stack.root / ".env").symlink_to(outside)


HELD: list[socket.socket] = []


def hold_port(stack: Stack) -> int:
    """Hold a port picked now (one picked at collection could be anyone's by the time the case
    runs) and make it service a's; the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    HELD.append(sock)
    port = sock.getsockname()[1]
    config = stack.root / "airadev.toml"
    config.write_text(config.read_text().replace(f"port = {PORT}\n", f"port = {port}\n"))
    return port


PORT = free_port()
CASES = [
    # --- airadev.toml: exit 2 -------------------------------------------------------------------
    Case("toml-syntax", "airadev.toml", toml="[services.a\ncommand = 'x'\n"),
    Case("toml-duplicate-key", "airadev.toml", toml=f"[services.a]\ncommand = {PRINTER}\ncommand = {PRINTER}\n"),
    Case("toml-binary", "airadev.toml", toml='[services.a]\ncommand = "\x00\xff"\n'),
    Case("unknown-section", "servics", toml=f"[servics.a]\ncommand = {PRINTER}\n"),
    Case(
        "unknown-key", "services.a.helth: unknown key; did you mean 'health'?", toml=good() + "helth = { tcp = true }\n"
    ),
    Case("port-not-a-number", "services.a.port", toml=good() + 'port = "eighty"\n'),
    Case("port-out-of-range", "services.a.port: 70000 is not a port number", toml=good(70000)),
    Case("port-zero", "services.a.port: 0 is not a port number", toml=good() + "port = 0\n"),
    Case("port-duplicated", "port", toml=two(f"port = {PORT}", f"port = {PORT}")),
    Case("command-wrong-type", "services.a.command", toml="[services.a]\ncommand = 5\n"),
    Case("command-empty", "services.a.command", toml='[services.a]\ncommand = ""\n'),
    Case("command-unbalanced-quote", "services.a.command", toml='[services.a]\ncommand = "python \'x"\n'),
    Case("command-missing", "services.a", toml="[services.a]\nport = 8000\n"),
    Case("dependency-cycle", "dependency cycle: a → b → a", toml=two('depends_on = ["b"]', 'depends_on = ["a"]')),
    Case("dependency-unknown", "services.a.depends_on", toml=good() + 'depends_on = ["nobody"]\n'),
    Case("dependency-condition", "services.a.depends_on", toml=two('depends_on = { b = "healty" }')),
    Case("dependency-self", "services.a.depends_on", toml=good() + 'depends_on = ["a"]\n'),
    Case("health-unknown-probe", "services.a.health", toml=good(PORT) + "health = { ping = true }\n"),
    Case("health-tcp-without-port", "services.a.health", toml=good() + "health = { tcp = true }\n"),
    Case("duration-malformed", "services.a.stop_grace", toml=good() + 'stop_grace = "10 parsecs"\n'),
    Case("duration-negative", "services.a.stop_grace", toml=good() + 'stop_grace = "-5s"\n'),
    Case("restart-policy", "services.a.restart", toml=good() + 'restart = { policy = "sometimes" }\n'),
    Case("runtime-unknown", "services.a.runtime", toml=good() + 'runtime = "podman"\n'),
    Case("docker-without-image", "services.a", toml=good() + 'runtime = "docker"\n'),
    Case("service-name", "services.a b", toml=f'[services."a b"]\ncommand = {PRINTER}\n'),
    Case("alias-clash", 'the name "b" is already used by services.a', toml=two('aliases = ["b"]')),
    Case("no-services", "no services are defined", toml="# nothing yet\n"),
    Case("env-table-type", "services.a.env.A", toml=good() + "env = { A = [1, 2] }\n"),
    Case("logs-size", "logs.max_size", toml='[logs]\nmax_size = "20 XB"\n' + good()),
    Case(
        "two-databases",
        "database",
        toml='[services.db1]\nruntime = "postgres"\nport = 54001\n[services.db2]\nruntime = "postgres"\nport = 54002\n',
    ),
    Case(
        "database-with-health",
        "services.db",
        toml='[services.db]\nruntime = "postgres"\nport = 54003\nhealth = { tcp = true }\n',
    ),
    # --- the command line: exit 2 ---------------------------------------------------------------
    Case("logs-unknown-service", "no service named 'zzz'", toml=good(), args=("logs", "zzz")),
    Case("up-unknown-service", "no service named 'zzz'", toml=good(), args=("up", "zzz")),
    Case("restart-unknown-service", "no service named 'zzz'", toml=good(), args=("restart", "zzz")),
    Case("logs-since", "--since", toml=good(), args=("logs", "a", "--since", "yesterday-ish")),
    Case("logs-lines-negative", "-n", toml=good(), args=("logs", "a", "-n", "-5")),
    Case("runtime-option", "--runtime", toml=good(), args=("up", "--runtime", "podman")),
    Case("down-volumes-unconfirmed", "--volumes deletes", toml=good(), args=("down", "--volumes")),
    # --- nothing running: exit 3 ----------------------------------------------------------------
    Case("restart-nothing-running", "nothing is running", code=3, toml=good(), args=("restart", "a")),
    Case("status-nothing-running", "nothing is running", code=3, toml=good(), args=("status",)),
    Case("tunnel-status-nothing-running", "nothing is running", code=3, toml=good(), args=("tunnel", "--status")),
    Case(
        "tunnel-status-json-nothing-running",
        "nothing is running",
        code=3,
        toml=good(),
        args=("tunnel", "--status", "--json"),
    ),
    Case("tunnel-stop-nothing-running", "nothing is running", code=3, toml=good(), args=("tunnel", "--stop")),
    Case("logs-follow-nothing-running", "nothing is running", code=3, toml=good(), args=("logs", "-f")),
    Case("stop-nothing-running", "nothing is running", code=3, toml=good(), args=("stop", "a")),
    # --- the ground: exit 1 ---------------------------------------------------------------------
    Case("cwd-missing", "services.a.cwd: folder", code=1, toml=good() + 'cwd = "missing"\n'),
    Case(
        "program-missing",
        "services.a.command: no-such-program-xyz not found on PATH",
        code=1,
        toml='[services.a]\ncommand = "no-such-program-xyz"\n',
    ),
    Case("env-file-missing", "services.a.env_files", code=1, toml=good() + 'env_files = [".env"]\n'),
    Case(
        "env-file-syntax",
        ".env line 2",
        code=1,
        toml=good() + 'env_files = [".env"]\n',
        files={".env": b"GOOD=1\nthis is not an assignment\n"},
    ),
    Case(
        "env-file-binary",
        ".env",
        code=1,
        toml=good() + 'env_files = [".env"]\n',
        files={".env": b"GOOD=1\nJUNK=\x00\xff\xfe\x00\n"},
    ),
    Case(
        "env-file-unterminated-quote",
        ".env line 1",
        code=1,
        toml=good() + 'env_files = [".env"]\n',
        files={".env": b"A='never closed\n"},
    ),
    Case(
        "env-file-outside", "outside the workspace", code=1, toml=good() + 'env_files = [".env"]\n', setup=link_outside
    ),
    Case("port-held", "port {held} (services.a) is held by pid", code=1, toml=good(PORT), setup=hold_port),
    Case(
        "docker-engine-missing",
        "does not answer",
        code=1,
        toml=good() + 'runtime = "docker"\ndocker = { image = "airadev-local/redis:7" }\n',
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    ),
]


@pytest.fixture(autouse=True)
def _release() -> Iterator[None]:
    yield
    while HELD:
        HELD.pop().close()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the workspace but airadev's own state folder (of which only the lock and
    an empty logs folder may appear: see the test)."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if key == ".airadev" or key.startswith(".airadev/"):
            continue
        if path.is_symlink():
            found[key] = b"-> " + os.fsencode(os.readlink(path))
        elif path.is_file():
            found[key] = path.read_bytes()
        elif path.is_dir():
            found[key] = b"<dir>"
    return found


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_and_nothing_written(stack: Stack, case: Case) -> None:
    (stack.root / "airadev.toml").write_bytes(case.toml.encode(errors="surrogateescape"))
    for relative, content in case.files.items():
        (stack.root / relative).write_bytes(content)
    held = case.setup(stack) if case.setup else None
    says = case.says.format(held=held) if held is not None else case.says
    stack.env.update(case.env)
    before = snapshot(stack.root)
    result = stack.cli(*case.args)
    count("bad inputs tried")
    said = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == case.code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert said and said[0].startswith("error: ") and says in said[0], said
    assert len(said) == 2 and said[1].startswith("  fix: "), f"one line what, one line how to fix: {said}"
    assert snapshot(stack.root) == before, "nothing is written"
    state = stack.root / ".airadev"
    assert not state.exists() or {p.name for p in state.rglob("*") if p.is_file()} <= {"lock"}, (
        "nothing is recorded of a run that did not start"
    )
    assert stack.stack_processes() == [], "nothing is started"


def test_a_workspace_path_with_spaces_and_non_ascii_works(tmp_path: Path) -> None:
    root = tmp_path / "my wörk späce — ñ"
    root.mkdir()
    stack = Stack(root)
    try:
        port = free_port()
        stack.write(
            f"[services.a]\ncommand = {toml_list(fake('printer.py', '--lines', 1, '--tag', 'ready'))}\n"
            f"[services.b]\ncommand = {toml_list(fake('slow_starter.py', port, 0))}\nport = {port}\n"
            'health = { tcp = true }\ndepends_on = ["a"]\n'
        )
        started = stack.up()
        assert started.returncode == 0, started.stderr
        assert "ready" in stack.cli("logs", "a").stdout
        assert stack.cli("status").returncode == 0
        assert stack.cli("down").returncode == 0
        stack.wait_nothing_left()
    finally:
        stack.cleanup()
