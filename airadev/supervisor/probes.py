"""Health probes: one check of a service, returning ``(ok, message)``; never raising.

HTTP and TCP probes speak the protocol directly over asyncio streams: a probe runs every few
seconds for every service, and a full HTTP client would cost the idle supervisor more CPU and
memory than the whole of the rest of it. An HTTP probe passes on any status below 400.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import SplitResult, urlsplit

from airadev.model import Probe, ProbeKind


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def retarget(probe: Probe, host: str | None) -> Probe:
    """The probe aimed at ``host`` instead of loopback: a container on a remote engine publishes
    its port there (DOCKER_HOST), not on this machine."""
    from dataclasses import replace

    if not host:
        return probe
    if probe.kind is ProbeKind.TCP and probe.target[0] in LOOPBACK:
        # A TCP probe's target is (host, port).
        return replace(probe, target=(host, cast("tuple[str, int]", probe.target)[1]))
    if probe.kind is ProbeKind.HTTP:
        parts = urlsplit(str(probe.target))
        if parts.hostname in LOOPBACK:
            netloc = host + (f":{parts.port}" if parts.port else "")
            return replace(probe, target=parts._replace(netloc=netloc).geturl())
    return probe


# A container's published port is held by the engine's port proxy (docker-proxy), which accepts
# a connection before anything in the container listens, then closes it as soon as its own
# connection inside is refused (0.3 ms here). A TCP probe of such a port passes only when the
# connection is still open this long after it was accepted (or the service already spoke).
PROXY_SETTLE = 0.25


async def check(
    probe: Probe, *, env: Mapping[str, str] | None = None, cwd: str | None = None, proxied: bool = False
) -> tuple[bool, str]:
    """One check. ``proxied``: the TCP port is a container's published port (PROXY_SETTLE)."""
    try:
        if probe.kind is ProbeKind.EXEC:
            return await asyncio.to_thread(_exec, probe.target, probe.timeout, env, cwd)  # type: ignore[arg-type]
        async with asyncio.timeout(probe.timeout):
            if probe.kind is ProbeKind.HTTP:
                return await _http(str(probe.target))
            if probe.kind is ProbeKind.TCP:
                host, port = cast("tuple[str, int]", probe.target)  # a TCP probe's target is (host, port)
                sock = await _connect(host, port)
                try:
                    if proxied and not await _stays_open(sock):
                        return False, "the engine's port proxy answers, but nothing listens in the container yet"
                finally:
                    sock.close()
                return True, "port open"
    except TimeoutError:
        return False, f"no answer within {probe.timeout:g}s"
    except OSError as exc:
        return False, _os_error(exc)
    except (ValueError, UnicodeError) as exc:  # an address the resolver or URL parser refuses
        return False, f"bad address: {exc}"
    raise ValueError(f"{probe.kind} probes are checked on the output, not polled")


async def _connect(host: str, port: int) -> socket.socket:
    """A connected non-blocking socket. Plain sockets on the loop: streams and transports
    cost several times more CPU per probe, and probes run all day."""
    loop = asyncio.get_running_loop()
    infos = _literal(host, port) or await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"cannot resolve {host}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
    raise error


async def _stays_open(sock: socket.socket) -> bool:
    """Whether a just-accepted connection is neither closed nor reset within PROXY_SETTLE
    (data from the service counts as open)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(PROXY_SETTLE):
            return bool(await loop.sock_recv(sock, 1))
    except TimeoutError:
        return True
    except ConnectionError:
        return False


def _literal(host: str, port: int) -> list[tuple[Any, ...]]:
    """An IP address needs no resolver (asyncio's runs in a thread, which costs more than the
    probe itself)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, socket.SOCK_STREAM, 0, "", (host, port))]
    return []


async def _http(url: str) -> tuple[bool, str]:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return await _https(url)
    loop = asyncio.get_running_loop()
    sock = await _connect(parts.hostname or "127.0.0.1", parts.port or 80)
    try:
        await loop.sock_sendall(sock, _request(parts))
        head = b""
        while b"\r\n" not in head and len(head) < 4096:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                break
            head += chunk
    finally:
        sock.close()
    return _verdict(head.split(b"\r\n", 1)[0])


async def _https(url: str) -> tuple[bool, str]:
    import ssl

    parts = urlsplit(url)
    # A local dev server's certificate is usually self-signed; health is all we ask.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 443, ssl=context)
    try:
        writer.write(_request(parts))
        status_line = await reader.readline()
    finally:
        writer.close()
    return _verdict(status_line)


def _request(parts: SplitResult) -> bytes:
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: airadev-probe\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode()


def _verdict(status_line: bytes) -> tuple[bool, str]:
    fields = status_line.split(None, 2)
    if len(fields) < 2 or not fields[1].isdigit():
        return False, "not an HTTP answer" if status_line else "connection closed without an answer"
    code = int(fields[1])
    return code < 400, f"HTTP {code}"


def _exec(argv: tuple[str, ...], timeout: float, env: Mapping[str, str] | None, cwd: str | None) -> tuple[bool, str]:
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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
