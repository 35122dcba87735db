"""Runs airadev for real in a throwaway workspace, and checks what it leaves behind."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airadev.state import workspace_id
from airadev import reaper
from airadev.integrations import engine

FAKES = Path(__file__).parent / "fakes"
PY = sys.executable


def fake(name: str, *args: object) -> list[str]:
    """A command line running one of tests/fakes."""
    return [PY, str(FAKES / name), *map(str, args)]


def toml_list(items: list[str]) -> str:
    return json.dumps(items)


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port nobody listens on, below the kernel's ephemeral range: a port the kernel hands out
    (bind to 0) may be given again to any outgoing connection before the test's service binds
    it, and under load that happened. Never the same port twice in a run: two random picks
    for one workspace once drew the same port, and its config was refused (CI failure)."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    while True:
        port = random.randrange(max(1024, low - 12000), low)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(PY).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("AIRADEV_WORKSPACE", None)
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    return env


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class Stack:
    """A workspace under tmp_path and the airadev CLI pointed at it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.foregrounds: list[subprocess.Popen[bytes]] = []
        self.seen_pids: set[int] = set()
        self.env: dict[str, str] = {}  # added to the environment of every airadev this stack runs

    def environment(self) -> dict[str, str]:
        return {**cli_env(), **self.env}

    def write(self, text: str) -> None:
        (self.root / "airadev.toml").write_text(text)

    def cli(self, *args: str, timeout: float = 90, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PY, "-m", "airadev", "--workspace", str(self.root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environment(),
            input=input,
        )

    def up(self, *services: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        result = self.cli("up", "--detach", *services, timeout=timeout)
        self._remember()
        return result

    def foreground(self, *args: str, out: Path | None = None) -> subprocess.Popen[bytes]:
        """`airadev up` in the foreground, its console going to a file (or a pipe)."""
        stdout = open(out, "wb") if out else subprocess.DEVNULL
        proc = subprocess.Popen(
            [PY, "-m", "airadev", "--workspace", str(self.root), "up", *args],
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            start_new_session=True,
        )
        self.foregrounds.append(proc)
        return proc

    @property
    def state_dir(self) -> Path:
        return self.root / ".airadev"

    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def service(self, name: str) -> dict[str, Any]:
        return self.state().get("services", {}).get(name, {})

    def wait_state(self, name: str, *states: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.service(name)).get("state") in states and s,
            timeout,
            what=f"{name} to be {'/'.join(states)} (now {self.service(name).get('state')})",
        )

    def wait_phase(self, phase: str, timeout: float = 30) -> dict[str, Any]:
        result = wait_for(lambda: (s := self.state()).get("phase") == phase and s, timeout, what=f"phase {phase}")
        self._remember()
        return result

    def log(self, name: str) -> str:
        path = self.state_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _remember(self) -> None:
        state = self.state()
        for key in ("supervisor_pid", "reaper_pid"):
            if isinstance(state.get(key), int):
                self.seen_pids.add(state[key])
        for svc in state.get("services", {}).values():
            if svc.get("pid"):
                self.seen_pids.add(svc["pid"])

    def stack_processes(self) -> list[int]:
        """Live processes of any run of this workspace: marked ones, recorded groups, and every
        pid seen during the test (supervisor and watchdog included)."""
        found = set(reaper.marked(workspace_id(self.root) + ".", exact=False))
        state = self.state()
        for svc in state.get("services", {}).values():
            if svc.get("pgid"):
                found.update(reaper.group_members(svc["pgid"]))
        found.update(pid for pid in self.seen_pids if reaper.alive(pid))
        found.discard(os.getpid())
        return sorted(found)

    def left_by_stop(self, pids: list[int]) -> list[int]:
        """Of ``pids``, the live ones other than the supervisor and its watchdog, which may still be
        on their way out. Once `down` (or a foreground `up`) has returned, this must be empty at
        once: they return only when every service's processes are gone."""
        state = self.state()
        own = {state.get("supervisor_pid"), state.get("reaper_pid")}
        return [pid for pid in pids if pid not in own and reaper.alive(pid)]

    def wait_nothing_left(self, extra: list[int] = (), timeout: float = 15) -> None:  # type: ignore[assignment]
        def clean() -> bool:
            return not self.stack_processes() and not any(reaper.alive(p) for p in extra)

        try:
            wait_for(clean, timeout, what="every process of the stack to be gone")
        except AssertionError:
            left = self.stack_processes() + [p for p in extra if reaper.alive(p)]
            raise AssertionError(f"processes left: {describe(left)}") from None

    def cleanup(self) -> None:
        """End the test's stack the way a user would (`airadev down`), then check it is gone.

        A foreground `up` that ignores SIGTERM, a `down` that hangs, or a process or container
        of the workspace still there after `down` fails the test that left it (an error at
        teardown); whatever was left is ended all the same, so the next test starts clean."""
        problems = []
        for proc in self.foregrounds:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    problems.append(f"a foreground `airadev up` (pid {proc.pid}) did not end within 60 s of SIGTERM")
        try:
            self.cli("down", timeout=120)
        except subprocess.TimeoutExpired:
            problems.append("`airadev down` hung (no answer within 120 s)")
        try:
            self.wait_nothing_left(timeout=30)
        except AssertionError as exc:
            problems.append(f"after `airadev down`: {exc}")
        containers = self.containers()
        if containers:
            problems.append(f"after `airadev down`: containers left: {', '.join(containers)}")
        reaper.terminate(workspace_id(self.root) + ".", exact=False, grace=2)
        reaper.signal_pids([p for p in self.seen_pids if reaper.alive(p)], signal.SIGKILL)
        if containers:
            engine.remove_containers(
                engine.engine_host(), f"{engine.WORKSPACE_LABEL}={workspace_id(self.root)}", grace=1
            )
        if problems:
            raise AssertionError("the test left its stack behind: " + "; ".join(problems))

    def containers(self) -> list[str]:
        """Names of the engine's containers labelled with this workspace (none without an engine)."""
        host = engine.engine_host()
        found = engine.labelled(host, "containers", f"{engine.WORKSPACE_LABEL}={workspace_id(self.root)}")
        return sorted(name.lstrip("/") for c in found for name in (c.get("Names") or [c["Id"][:12]])[:1])


class Follow:
    """`airadev logs -f NAME`, its output collected as it comes."""

    def __init__(self, stack: Stack, name: str, *options: str) -> None:
        self.proc = subprocess.Popen(
            [PY, "-m", "airadev", "--workspace", str(stack.root), "logs", "-f", name, *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=stack.environment(),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace"))

    def text(self) -> str:
        return "".join(self.lines)

    def stop(self) -> str:
        """Ctrl-C it (unless it ended by itself); all it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
        self._reader.join(30)
        return self.text()

    def ended(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for it to end by itself (the stack stopped); its exit code and output."""
        self.proc.wait(timeout)
        self._reader.join(30)
        return self.proc.returncode, self.text()


def describe(pids: list[int]) -> str:
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmd = "?"
        out.append(f"{pid} ({cmd.strip()})")
    return ", ".join(out) or "none"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def pids_in_log(text: str, marker: str) -> list[int]:
    """Pids printed by the fakes, e.g. 'grandchild pid 123'."""
    import re

    return [int(m) for m in re.findall(re.escape(marker) + r" (\d+)", text)]


class Terminal:
    """A program run from a shell in a terminal of its own (a pty, the shell its session leader,
    as in a terminal window): for what needs a person at a terminal (`airadev attach`, pdb).
    The shell stays once the program has ended (``exit_code`` reads what it said of it): a
    terminal whose shell has gone hangs up what still runs in it."""

    def __init__(self, argv: list[str], env: dict[str, str], setup: Callable[[int], None] | None = None) -> None:
        import fcntl
        import termios

        self.master, slave = os.openpty()
        if setup is not None:  # the terminal's modes, say (on the master: the pair shares them)
            setup(self.master)
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", '"$@"; echo "[exit $?]"; exec sleep 3600', "sh", *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.screen = b""

    def expect(self, text: str, timeout: float = 30) -> str:
        """Read what it shows until ``text`` appears (the event; ``timeout`` is only a safety net)."""
        import select

        wanted = text.encode()
        deadline = time.monotonic() + timeout
        while wanted not in self.screen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {text!r} on the terminal; it shows:\n{self.text}")
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: every holder of the terminal is gone
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the terminal closed before {text!r}; it shows:\n{self.text}")
                self.screen += chunk
        return self.text

    def exit_code(self) -> int:
        """The program's exit code, once it has ended (as its shell tells it)."""
        import re

        self.expect("[exit ")
        self.expect("]", timeout=5)
        return int(re.findall(r"\[exit (\d+)\]", self.text)[-1])

    def program(self) -> int:
        """The pid of the program the shell runs."""
        import psutil

        return int(wait_for(lambda: psutil.Process(self.proc.pid).children(), what="the program").pop().pid)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    @property
    def text(self) -> str:
        return self.screen.decode(errors="replace").replace("\r\n", "\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


class Tmux:
    """A program in a tmux window of its own (a private server; ``size`` columns × rows), run from
    a shell as a person runs it, and driven so: ``keys`` types, ``screen`` reads what the window
    shows. The shell stays once the program has ended and says its exit code (``exit_code``)."""

    def __init__(self, argv: list[str], env: dict[str, str], size: tuple[int, int] = (80, 24)) -> None:
        import shlex
        import tempfile

        self.socket = Path(tempfile.mkdtemp(prefix="airadev-tmux-")) / "s"
        command = " ".join(shlex.quote(a) for a in argv)
        shell = f'{command}; echo "[exit $?]"; exec sleep 3600'
        self._tmux("new-session", "-d", "-x", str(size[0]), "-y", str(size[1]), shell, env=env)

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, env=env, timeout=30
        )
        assert result.returncode == 0, f"tmux {' '.join(args)}: {result.stderr}"
        return result.stdout

    def keys(self, *keys: str) -> None:
        """tmux key names (``Down``, ``C-c``) or literal text."""
        self._tmux("send-keys", *keys)

    def screen(self, escapes: bool = False) -> str:
        return self._tmux("capture-pane", "-p", *(["-e"] if escapes else []))

    def expect(self, predicate: Callable[[str], Any] | str, timeout: float = 60) -> str:
        """What the window shows once it holds ``predicate`` (a text, or a test of the screen)."""
        test = (lambda s: predicate in s) if isinstance(predicate, str) else predicate
        screen = ""

        def shows() -> bool:
            nonlocal screen
            screen = self.screen()
            return bool(test(screen))

        try:
            wait_for(shows, timeout=timeout, interval=0.1)
        except AssertionError:
            raise AssertionError(f"timed out waiting for {predicate!r}; the window shows:\n{screen}") from None
        return screen

    def program(self) -> int:
        """The pid of the program the window's shell runs."""
        import psutil

        shell = int(self._tmux("display-message", "-p", "#{pane_pid}").strip())
        return int(wait_for(lambda: psutil.Process(shell).children(), what="the program").pop().pid)

    def exit_code(self, timeout: float = 120) -> int:
        import re

        screen = self.expect(re.compile(r"\[exit \d+\]").search, timeout=timeout)
        return int(re.findall(r"\[exit (\d+)\]", screen)[-1])

    def close(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, timeout=30)
        import shutil

        shutil.rmtree(self.socket.parent, ignore_errors=True)
