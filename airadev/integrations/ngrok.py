"""The ngrok agent, driven through pyngrok: finding it, never downloading it, starting it with a
guard, one tunnel to a local port.

pyngrok downloads ngrok whenever its path does not exist, and its start-up wait is only checked
between log lines (an agent that goes silent blocks it until the agent exits): airadev checks
the binary itself and bounds the start with its own timer (FACTS.md). The auth token is never
put on the agent's command line (where `ps` shows it): the agent reads NGROK_AUTHTOKEN or its
config file itself.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from airadev.errors import AiradevError
from typing import Any

INSTALL_HINT = ("install the ngrok agent (https://ngrok.com/download, or `snap install ngrok`), "
                "or set tunnel.ngrok_path in airadev.toml or PYNGROK_NGROK_PATH")


class NgrokError(AiradevError):
    """A failure of this adapter: one line and a fix, like every AiradevError."""


@dataclass(frozen=True)
class Tunnel:
    public_url: str
    name: str
    upstream: str
    agent_pid: int | None
    api_url: str


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the agent looks for its config without --config (on Linux, as pyngrok and ngrok
    both compute it)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "ngrok" / "ngrok.yml"


def _is_pyngrok_script(path: Path) -> bool:
    """pyngrok installs a Python console script named `ngrok` (which would download the real
    agent when run): it is not the agent."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    import re

    return head.startswith(b"#!") and re.search(rb"^\s*(from|import) pyngrok\b", head, re.MULTILINE) is not None


def find_binary(configured: Path | None, env: Mapping[str, str] | None = None) -> Path:
    """The ngrok agent: tunnel.ngrok_path, else PYNGROK_NGROK_PATH, else a real `ngrok` on PATH,
    else pyngrok's default location. Raises NgrokError when there is none (never downloads)."""
    env = os.environ if env is None else env
    if configured is not None:
        candidates = [("tunnel.ngrok_path", configured)]
    elif env.get("PYNGROK_NGROK_PATH"):
        candidates = [("PYNGROK_NGROK_PATH", Path(env["PYNGROK_NGROK_PATH"]))]
    else:
        candidates = []
        for folder in env.get("PATH", "").split(os.pathsep):
            found = shutil.which("ngrok", path=folder) if folder else None
            if found and not _is_pyngrok_script(Path(found)):
                candidates.append(("PATH", Path(found)))
                break
        candidates.append(("pyngrok's default location", default_config_path(env).parent / "ngrok"))
    for source, path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    source, path = candidates[-1]
    raise NgrokError(f"the ngrok agent is not installed ({source}: {path} not found)", INSTALL_HINT)


def auth_token(env: Mapping[str, str] | None = None, config: Path | None = None) -> str | None:
    """The auth token the agent will use: NGROK_AUTHTOKEN, else the one in its config file.
    (airadev only reads it to know there is one, and to redact it from the agent's log.)"""
    env = os.environ if env is None else env
    if env.get("NGROK_AUTHTOKEN"):
        return env["NGROK_AUTHTOKEN"]
    path = config or default_config_path(env)
    try:
        import yaml

        data = yaml.safe_load(path.read_text()) or {}
    except Exception:  # noqa: BLE001  (unreadable or broken: it holds no token we can use)
        return None
    if not isinstance(data, dict):
        return None
    agent = data.get("agent")
    token = agent.get("authtoken") if isinstance(agent, dict) else None
    token = token or data.get("authtoken")
    return str(token) if token else None


def explain(error: str) -> tuple[str, str]:
    """One line and a fix for an error the agent logged."""
    if "ERR_NGROK_4018" in error or "ERR_NGROK_105" in error or "authentication failed" in error and "limited" not in error:
        return ("ngrok refused the auth token (authentication failed)",
                "set NGROK_AUTHTOKEN, or run `ngrok config add-authtoken TOKEN` (dashboard.ngrok.com)")
    if "ERR_NGROK_108" in error or "simultaneous ngrok agent sessions" in error:
        return ("ngrok allows this account one agent session at a time, and another one is running",
                "stop the other ngrok agent (pkill ngrok; or close its terminal), then try again")
    first = error.strip().splitlines()[0] if error.strip() else "no reason given"
    return f"ngrok failed to start: {first}", "see `airadev logs ngrok`"


def _stderr_wrapper(binary: Path, folder: Path) -> Path:
    """A launcher that runs the agent with stderr joined to stdout. pyngrok reads only stdout;
    the agent's stderr would otherwise go, unredacted, wherever the supervisor's goes."""
    import shlex

    folder.mkdir(mode=0o700, exist_ok=True)
    wrapper = folder / "ngrok"
    wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(str(binary))} \"$@\" 2>&1\n")
    wrapper.chmod(0o700)
    return wrapper


class Agent:
    """One ngrok agent with one tunnel. ``start`` and ``stop`` block: call them from a thread.

    ``marker_env`` is put into the agent's environment (pyngrok starts it with this process's
    own), so that airadev's reaper finds it like any other child, even after a SIGKILL.
    """

    _env_lock = threading.Lock()

    def __init__(self, binary: Path, *, config_path: Path | None, region: str, timeout: float,
                 on_log: Callable[[str], None], marker_env: Mapping[str, str], wrapper_dir: Path) -> None:
        import logging

        from pyngrok import conf

        # pyngrok logs every agent line through `logging`; unconfigured, errors would go to
        # stderr unredacted (ngrok's auth errors quote the token). Lines reach airadev through
        # the callback instead, and are redacted there.
        pyngrok_logger = logging.getLogger("pyngrok")
        pyngrok_logger.propagate = False
        if not pyngrok_logger.handlers:
            pyngrok_logger.addHandler(logging.NullHandler())
        self.binary = binary
        self.timeout = timeout
        self.marker_env = dict(marker_env)
        self.on_log = on_log
        self.config = conf.PyngrokConfig(
            ngrok_path=str(_stderr_wrapper(binary, wrapper_dir)), config_path=str(config_path) if config_path else None,
            region=region or None, monitor_thread=True, log_event_callback=self._log,
            startup_timeout=max(1, int(timeout)), start_new_session=True,
        )
        self.config.auth_token = None  # never on the command line: the agent reads the env or its config
        self.tunnel: Tunnel | None = None
        self._pid: int | None = None

    def _log(self, log: Any) -> None:
        self.on_log(log.line)

    def start(self, upstream: str, name: str, domain: str = "") -> Tunnel:
        from pyngrok import ngrok
        from pyngrok.exception import PyngrokError, PyngrokNgrokError

        failure: list[BaseException] = []
        result: list[Any] = []

        def connect() -> None:
            try:
                options: dict[str, Any] = {"name": name}
                if domain:
                    options["url"] = domain if "://" in domain else f"https://{domain}"
                result.append(ngrok.connect(upstream, pyngrok_config=self.config, **options))
            except BaseException as exc:  # noqa: BLE001  (re-raised below, on the caller's thread)
                failure.append(exc)

        with self._env_lock:
            saved = {k: os.environ.get(k) for k in self.marker_env}
            os.environ.update(self.marker_env)
            try:
                worker = threading.Thread(target=connect, name="airadev-ngrok-start", daemon=True)
                worker.start()
                worker.join(self.timeout)
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        if worker.is_alive():
            self.kill()  # unblocks pyngrok's read of the agent's output
            worker.join(5)
            raise NgrokError(f"the ngrok agent did not become ready within {self.timeout:g}s",
                             "see `airadev logs ngrok`; check the network, or raise tunnel.start_timeout")
        if failure:
            exc = failure[0]
            self.kill()
            if isinstance(exc, PyngrokNgrokError):
                message, fix = explain(exc.ngrok_error or str(exc))
                raise NgrokError(message, fix) from None
            if isinstance(exc, PyngrokError):
                raise NgrokError(f"ngrok failed: {exc}", "see `airadev logs ngrok`") from None
            raise exc
        tunnel = result[0]
        process = ngrok.get_ngrok_process(self.config)
        self._pid = process.proc.pid
        self.tunnel = Tunnel(public_url=tunnel.public_url, name=tunnel.name or name, upstream=upstream,
                             agent_pid=self._pid, api_url=tunnel.api_url or "")
        return self.tunnel

    def alive(self) -> bool:
        from pyngrok import process

        proc = process._current_processes.get(self.config.ngrok_path)  # noqa: SLF001
        return proc is not None and proc.proc.poll() is None

    def kill(self) -> None:
        """Kill the agent. pyngrok holds its process lock for the whole of a start, so a start
        that hangs is ended by killing the agent's process group directly (which ends the
        start: it reads EOF), and only then is pyngrok's own bookkeeping cleared."""
        import signal

        from pyngrok import ngrok, process

        current = process._current_processes.get(self.config.ngrok_path)  # noqa: SLF001
        if current is not None:
            try:
                os.killpg(current.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        lock = process._current_processes_lock  # noqa: SLF001
        if lock.acquire(timeout=5):
            try:
                ngrok.kill(self.config)
            except Exception:  # noqa: BLE001  (already gone)
                pass
            finally:
                lock.release()

    def stop(self) -> None:
        """Close the tunnel and stop the agent."""
        from pyngrok import ngrok

        if self.tunnel is not None:
            try:
                ngrok.disconnect(self.tunnel.public_url, pyngrok_config=self.config)
            except Exception:  # noqa: BLE001  (the agent may be gone already)
                pass
        self.kill()
        self.tunnel = None
