"""`airadev attach SERVICE`: the CLI's side (the supervisor's, and the conversation between
them: supervisor/attach.py).

The supervisor hands over the service's start; this starts it as a shell starts a job: in a
process group of its own, made the terminal's foreground group (so Ctrl-C and reads of the tty
are the service's, and pdb works), with this terminal's stdin, stdout and stderr. When it ends,
the terminal (its foreground and its modes: pdb leaves raw mode behind) is given back to this
process, the supervisor is told, and it starts the service again as its own. Ctrl-Z does not
suspend it (the supervisor still probes it; a shell would not know the job): it is continued,
and said. Should this process be ended while the service runs, or its terminal close, the
supervisor ends the service and takes it back (it sees the connection close)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import Any

from airadev import control
from airadev.errors import AiradevError, UsageError
from airadev.model import Config
from airadev.state import Paths


class _Hangup(Exception):
    """This terminal closed: the service is left to the supervisor to end and take back."""


def attach(config: Config, name: str, say: Any) -> int:
    """Take ``name`` over into this terminal until it ends; 0 once the supervisor has it back."""
    terminal = _own_terminal()
    tty = os.ttyname(terminal) if terminal is not None else "a terminal-less session"
    modes = _modes(terminal)
    session = control.Session(Paths(config.root).socket, control.Op.ATTACH, service=name, tty=tty)
    ignored = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # writes and tcsetpgrp from the background
    try:
        spec = session.answer(None)  # once its dependencies allow its start; what it waits for first
        while "waiting" in spec:
            say(f"{name}: {spec['waiting']}")
            spec = session.answer(None)
        try:
            child = subprocess.Popen(
                spec["command"],
                cwd=spec["cwd"],
                env=spec["env"],
                preexec_fn=lambda: _foreground(terminal),  # (no threads here: preexec_fn is safe)
            )
        except (OSError, subprocess.SubprocessError) as exc:
            session.send(pid=None)  # the supervisor starts it as its own again
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise AiradevError(f"{name}: cannot start {spec['command'][0]}: {why}", "see `airadev status`") from None
        session.send(pid=child.pid)
        say(
            f"{name} is attached here (pid {child.pid}): its output is here, not in `airadev logs`; "
            "when it ends (Ctrl-C), the supervisor takes it back"
        )
        try:
            code = _wait(child, terminal, name, say)
        except _Hangup:
            return 128 + signal.SIGHUP
        finally:
            _take_terminal(terminal, modes)
        try:
            session.send(exited=code)
            after = session.answer(60)
        except (AiradevError, OSError):  # the supervisor has stopped (`down` ended it)
            after = {"stopped": True}
    finally:
        session.close()
        signal.signal(signal.SIGTTOU, ignored)
    how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
    if after.get("stopped"):
        say(f"{name} ended here ({how}): it was stopped (`airadev stop` or `down`)")
    else:
        say(f"{name} ended here ({how}): the supervisor has it again (`airadev status`)")
    return 0


def _own_terminal() -> int | None:
    """This terminal (stdin), if it is one; refused unless this process is in its foreground
    (`airadev attach web &` would take the terminal from the shell)."""
    if not sys.stdin.isatty():
        return None
    fd = sys.stdin.fileno()
    try:
        foreground = os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # not this session's terminal (setsid)
        foreground = False
    if not foreground:
        raise UsageError(
            "attach needs the foreground of the terminal it runs in",
            "run it in a terminal, in the foreground (not with & or under setsid)",
        )
    return fd


def _modes(terminal: int | None) -> list[Any] | None:
    if terminal is None:
        return None
    import termios

    return termios.tcgetattr(terminal)


def _foreground(terminal: int | None) -> None:
    """In the child, before its program: a process group of its own, the terminal's foreground."""
    os.setpgid(0, 0)
    if terminal is not None:
        os.tcsetpgrp(terminal, os.getpgrp())  # SIGTTOU is ignored here (inherited) ...
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)  # ... and must not be in the service


def _wait(child: subprocess.Popen[bytes], terminal: int | None, name: str, say: Any) -> int:
    """Wait for it to end; its exit code. Signals sent to this process go to its group; a
    hangup (this terminal closed) ends the wait (_Hangup)."""

    def forward(signum: int, frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signum)
        if signum == signal.SIGHUP:
            raise _Hangup

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        _, status = os.waitpid(child.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode
        # Ctrl-Z: not suspended (the supervisor probes it, and no shell knows it as a job).
        _take_terminal(terminal, None)
        say(f"{name} cannot be suspended while attached: continued (Ctrl-C ends it)")
        if terminal is not None:
            os.tcsetpgrp(terminal, child.pid)
        os.killpg(child.pid, signal.SIGCONT)


def _take_terminal(terminal: int | None, modes: list[Any] | None) -> None:
    """The terminal's foreground back to this process (SIGTTOU is ignored), and its modes as
    they were before the service ran."""
    if terminal is None:
        return
    import termios

    with contextlib.suppress(OSError, termios.error):  # the terminal may be gone
        os.tcsetpgrp(terminal, os.getpgrp())
        if modes is not None:
            termios.tcsetattr(terminal, termios.TCSADRAIN, modes)
