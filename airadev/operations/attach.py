"""`airadev attach SERVICE`: the CLI's side (the supervisor's, and the conversation between
them: supervisor/attach.py).

The supervisor hands over the service's start; this starts it as a shell starts a job: in a
process group of its own, made the terminal's foreground group (so Ctrl-C, Ctrl-Z and reads
of the tty are the service's, and pdb works), with this terminal's stdin, stdout and stderr.
When it ends, the terminal is given back to this process, the supervisor is told, and it
starts the service again as its own. Should this process be ended while the service runs, the
supervisor ends the service and takes it back (it sees the connection close)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from airadev import control
from airadev.errors import AiradevError
from airadev.model import Config
from airadev.state import Paths


def attach(config: Config, name: str, say: Any) -> int:
    """Take ``name`` over into this terminal until it ends; 0 once the supervisor has it back."""
    terminal = sys.stdin.fileno() if sys.stdin.isatty() else None
    tty = os.ttyname(terminal) if terminal is not None else "a terminal-less session"
    session = control.Session(Paths(config.root).socket, control.Op.ATTACH, service=name, tty=tty)
    try:
        spec = session.answer(None)  # once its dependencies allow its start
        try:
            child = subprocess.Popen(
                spec["command"],
                cwd=spec["cwd"],
                env=spec["env"],
                preexec_fn=lambda: _foreground(terminal),  # (no threads here: preexec_fn is safe)
            )
        except OSError as exc:
            session.send(pid=None)  # the supervisor starts it as its own again
            raise AiradevError(f"{name}: cannot start {spec['command'][0]}: {exc.strerror}", "see `airadev status`")
        session.send(pid=child.pid)
        say(
            f"{name} is attached here (pid {child.pid}): its output is here, not in `airadev logs`; "
            "when it ends (Ctrl-C), the supervisor takes it back"
        )
        code = _wait(child)
        _take_terminal(terminal)
        try:
            session.send(exited=code)
            after = session.answer(60)
        except (AiradevError, OSError):  # the supervisor has stopped (`down` ended it)
            after = {"stopped": True}
    finally:
        session.close()
    how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
    if after.get("stopped"):
        say(f"{name} ended here ({how}): it was stopped (`airadev stop` or `down`)")
    else:
        say(f"{name} ended here ({how}): the supervisor has it again (`airadev status {name}`)")
    return 0


def _foreground(terminal: int | None) -> None:
    """In the child, before its program: a process group of its own, the terminal's foreground."""
    os.setpgid(0, 0)
    if terminal is not None:
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background group may not, else
        os.tcsetpgrp(terminal, os.getpgrp())
        signal.signal(signal.SIGTTOU, old)


def _wait(child: subprocess.Popen[bytes]) -> int:
    """Wait for it; a signal sent to this process (a closed terminal, `kill`) goes to its group."""

    def forward(signum: int, frame: Any) -> None:
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    return child.wait()


def _take_terminal(terminal: int | None) -> None:
    if terminal is None:
        return
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(terminal, os.getpgrp())
    except OSError:
        pass  # the terminal is gone
    finally:
        signal.signal(signal.SIGTTOU, old)
