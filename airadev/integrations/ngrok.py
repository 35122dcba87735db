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
from typing import Any, cast

from airadev.errors import AiradevError

INSTALL_HINT = (
    "install the ngrok agent (https://ngrok.com/download, or `snap install ngrok`), "
    "or set tunnel.ngrok_path in airadev.toml or PYNGROK_NGROK_PATH"
)


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


TOKEN_FIX = (
    "set NGROK_AUTHTOKEN to the token at https://dashboard.ngrok.com/get-started/your-authtoken, "
    "or run `ngrok config add-authtoken TOKEN`"
)
DOMAIN_FIX = "reserve it at https://dashboard.ngrok.com/domains with this token's account, or open the tunnel without --domain (tunnel.domain)"
# What the agent's error codes mean, by the code (https://ngrok.com/docs/errors/): many texts begin
# with "authentication failed:" whatever the cause (ERR_NGROK_108 does), so the text is not read.
CODES: dict[int, tuple[str, str]] = {
    4018: ("ngrok refused to start without the auth token of a verified account", TOKEN_FIX),
    105: ("ngrok refused the auth token: it is not an ngrok authtoken", TOKEN_FIX),
    106: ("ngrok refused the auth token: it is an ngrok v1 authtoken", TOKEN_FIX),
    107: ("ngrok refused the auth token: it is invalid (reset, revoked, or of a team you left)", TOKEN_FIX),
    300: ("ngrok refused the auth token: it has been revoked", TOKEN_FIX),
    108: (
        "ngrok allows this account {sessions} at a time, and another one is running",
        "stop the other ngrok agent (https://dashboard.ngrok.com/agents lists them), then try again",
    ),
    120: (
        "this ngrok agent is too old for the ngrok service",
        "update it: `ngrok update` (or https://ngrok.com/download)",
    ),
    121: (
        "this ngrok agent is too old for the ngrok service",
        "update it: `ngrok update` (or https://ngrok.com/download)",
    ),
    123: (
        "the ngrok account's email address is not verified yet",
        "verify it at https://dashboard.ngrok.com/user/settings, then try again",
    ),
    102: ("the ngrok account is suspended (its last payment failed)", "see https://dashboard.ngrok.com/billing"),
    103: ("the ngrok account is suspended", "see https://dashboard.ngrok.com, or write to support@ngrok.com"),
    247: ("the ngrok account is suspended for non-payment", "see https://dashboard.ngrok.com/billing"),
    319: ("ngrok refused the domain {domain}: it is not reserved on this ngrok account", DOMAIN_FIX),
    320: ("ngrok refused the domain {domain}: it is reserved for another ngrok account", DOMAIN_FIX),
    305: ("ngrok refused the domain {domain}: custom domains need a paid ngrok plan", DOMAIN_FIX),
    306: ("ngrok refused the domain {domain}: custom domains need a paid ngrok plan", DOMAIN_FIX),
    313: ("ngrok refused the domain {domain}: custom domains need a paid ngrok plan", DOMAIN_FIX),
    314: ("ngrok refused the domain {domain}: custom domains need a paid ngrok plan", DOMAIN_FIX),
    317: (
        "ngrok refused the domain {domain}: it is reserved in another region",
        "open the tunnel with the domain's region (--region, tunnel.region)",
    ),
    322: (
        "ngrok refused the domain {domain}: it is reserved in another region",
        "open the tunnel with the domain's region (--region, tunnel.region)",
    ),
}


def error_lines(error: str) -> list[str]:
    """The lines of an error the agent logged. pyngrok hands ``err=`` over as logfmt quoted it:
    the line breaks are still the two characters backslash-n (and backslash-r)."""
    text = error.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\\r", "\n").replace("\r", "\n")
    return [line.strip() for line in text.split("\n") if line.strip()]


def explain(error: str, domain: str = "") -> tuple[str, str]:
    """One line and a fix for an error the agent reported (its whole multi-line text), read by
    its ERR_NGROK_<n> code."""
    import re

    lines = error_lines(error)
    found = re.search(r"ERR_NGROK_(\d+)", error)  # no \b before it: "\\r\\nERR_..." (escaped) is "nERR_..."
    code = int(found.group(1)) if found else None
    if code in CODES:
        message, fix = CODES[code]
        limit = re.search(r"limited to (\d+) simultaneous", error)
        count = int(limit.group(1)) if limit else 1
        sessions = "one agent session" if count == 1 else f"{count} agent sessions"
        bound = re.search(r"domain '([^']+)'", error)
        name = domain.split("://")[-1] if domain else (bound.group(1) if bound else "asked for")
        return f"{message.format(sessions=sessions, domain=name)} (ERR_NGROK_{code})", fix
    first = next((line for line in lines if not line.startswith("ERR_NGROK_")), "no reason given")
    if code is not None:
        return (
            f"ngrok failed to start: {first} (ERR_NGROK_{code})",
            f"see https://ngrok.com/docs/errors/err_ngrok_{code}/ and `airadev logs ngrok`",
        )
    return f"ngrok failed to start: {first}", "see `airadev logs ngrok`"


def error_text(exc: BaseException) -> str:
    """The agent's own text of a pyngrok error: ``ngrok_error`` (the ``err=`` of the line that
    ended the start), or, for a refused API request (PyngrokNgrokHTTPError, such as a start of
    an endpoint on a domain that is not the account's), the ``details.err`` of the answer."""
    import json

    body = getattr(exc, "body", None)
    if body:
        try:
            answer = json.loads(body)
        except ValueError:
            return str(body)
        if isinstance(answer, dict):
            details = cast("dict[Any, Any]", answer.get("details")) if isinstance(answer.get("details"), dict) else {}
            return str(details.get("err") or answer.get("msg") or body)
    return getattr(exc, "ngrok_error", None) or str(exc)


def _stderr_wrapper(binary: Path, folder: Path) -> Path:
    """A launcher that runs the agent with stderr joined to stdout. pyngrok reads only stdout;
    the agent's stderr would otherwise go, unredacted, wherever the supervisor's goes."""
    import shlex

    folder.mkdir(mode=0o700, exist_ok=True)
    wrapper = folder / "ngrok"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(str(binary))} "$@" 2>&1\n')
    wrapper.chmod(0o700)
    return wrapper


class Agent:
    """One ngrok agent with one tunnel. ``start`` and ``stop`` block: call them from a thread.

    ``marker_env`` is put into the agent's environment (pyngrok starts it with this process's
    own), so that airadev's reaper finds it like any other child, even after a SIGKILL.
    """

    _env_lock = threading.Lock()

    def __init__(
        self,
        binary: Path,
        *,
        config_path: Path | None,
        region: str,
        timeout: float,
        on_log: Callable[[str], object],
        marker_env: Mapping[str, str],
        wrapper_dir: Path,
    ) -> None:
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
            ngrok_path=str(_stderr_wrapper(binary, wrapper_dir)),
            config_path=str(config_path) if config_path else None,
            region=region or None,
            monitor_thread=True,
            log_event_callback=self._log,
            startup_timeout=max(1, int(timeout)),
            start_new_session=True,
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
            raise NgrokError(
                f"the ngrok agent did not become ready within {self.timeout:g}s",
                "see `airadev logs ngrok`; check the network, or raise tunnel.start_timeout",
            )
        if failure:
            exc = failure[0]
            self.kill()
            if isinstance(exc, PyngrokNgrokError):  # the agent's own error, or its API's refusal
                message, fix = explain(error_text(exc), domain)
                raise NgrokError(message, fix) from None
            if isinstance(exc, PyngrokError):
                raise NgrokError(f"ngrok failed: {exc}", "see `airadev logs ngrok`") from None
            raise exc
        tunnel = result[0]
        process = ngrok.get_ngrok_process(self.config)
        self._pid = process.proc.pid
        self.tunnel = Tunnel(
            public_url=tunnel.public_url,
            name=tunnel.name or name,
            upstream=upstream,
            agent_pid=self._pid,
            api_url=tunnel.api_url or "",
        )
        return self.tunnel

    def alive(self) -> bool:
        from pyngrok import process

        proc = process._current_processes.get(self.config.ngrok_path)
        return proc is not None and proc.proc.poll() is None

    def kill(self) -> None:
        """Kill the agent. pyngrok holds its process lock for the whole of a start, so a start
        that hangs is ended by killing the agent's process group directly (which ends the
        start: it reads EOF), and only then is pyngrok's own bookkeeping cleared."""
        import signal

        from pyngrok import ngrok, process

        current = process._current_processes.get(self.config.ngrok_path)
        if current is not None:
            try:
                os.killpg(current.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        lock = process._current_processes_lock
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
