"""Health probes: one check of a service, returning ``(ok, message)``; never raising.

HTTP and TCP probes speak the protocol directly over asyncio streams: a probe runs every few
seconds for every service, and a full HTTP client would cost the idle supervisor more CPU and
memory than the whole of the rest of it. An HTTP probe passes on any status below 400.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Mapping
from urllib.parse import urlsplit

from airadev.model import Probe, ProbeKind


async def check(probe: Probe, *, env: Mapping[str, str] | None = None, cwd: str | None = None) -> tuple[bool, str]:
    try:
        if probe.kind is ProbeKind.HTTP:
            return await asyncio.wait_for(_http(str(probe.target)), probe.timeout)
        if probe.kind is ProbeKind.TCP:
            host, port = probe.target  # type: ignore[misc]
            return await asyncio.wait_for(_tcp(host, port), probe.timeout)
        if probe.kind is ProbeKind.EXEC:
            return await asyncio.to_thread(_exec, probe.target, probe.timeout, env, cwd)  # type: ignore[arg-type]
    except (TimeoutError, asyncio.TimeoutError):
        return False, f"no answer within {probe.timeout:g}s"
    except OSError as exc:
        return False, _os_error(exc)
    raise ValueError(f"{probe.kind} probes are checked on the output, not polled")


async def _tcp(host: str, port: int) -> tuple[bool, str]:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    return True, "port open"


async def _http(url: str) -> tuple[bool, str]:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    ssl_context = None
    if secure:
        import ssl

        # A local dev server's certificate is usually self-signed; health is all we ask.
        ssl_context = ssl.create_default_context()
        ssl_context.check_hostname = False
        ssl_context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: airadev-probe\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n".encode()
        )
        status_line = await reader.readline()
    finally:
        writer.close()
    fields = status_line.split(None, 2)
    if len(fields) < 2 or not fields[1].isdigit():
        return False, "not an HTTP answer" if status_line else "connection closed without an answer"
    code = int(fields[1])
    return code < 400, f"HTTP {code}"


def _exec(argv: tuple[str, ...], timeout: float, env: Mapping[str, str] | None, cwd: str | None) -> tuple[bool, str]:
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=dict(env) if env is not None else None,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    except OSError as exc:
        return False, f"cannot run {argv[0]}: {exc.strerror}"
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        return False, f"no answer within {timeout:g}s"
    last = out.decode(errors="replace").strip().splitlines()[-1:] or [""]
    if proc.returncode == 0:
        return True, last[0][:200] or "exit 0"
    return False, f"exit {proc.returncode}" + (f": {last[0][:200]}" if last[0] else "")


def _os_error(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror or type(exc).__name__
