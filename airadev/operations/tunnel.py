"""`airadev tunnel`: the signed test call through the tunnel (``verify``), and the foreground
session that holds a tunnel open until Ctrl-C or `airadev down` (``hold``). What is rewired,
and the journal that undoes it, are in airadev/rewiring.py.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from airadev.control import Op, TunnelAction
from airadev.errors import AiradevError, NotRunning, UsageError
from airadev.model import Config
from airadev.rewiring import ENV_KEYS, Journal, recover, test_number, twilio_credentials
from airadev.state import Paths
from airadev.status import TunnelStatus


class View(Protocol):
    """How the session shows what happens (the CLI's renderer)."""

    def status(self, status: TunnelStatus) -> None: ...
    def closed(self, result: dict[str, Any]) -> None: ...
    def verified(self, result: dict[str, Any]) -> None: ...
    def json(self, obj: dict[str, Any]) -> None: ...
    def info(self, line: str) -> None: ...
    def warn(self, line: str) -> None: ...


@dataclass(frozen=True)
class Options:
    domain: str = ""
    region: str = ""
    keep: bool = False
    verify: bool = False
    stop: bool = False
    show: bool = False
    as_json: bool = False
    detach: bool = False


def session(paths: Paths, config: Callable[[], Config], options: Options, view: View) -> None:
    """`airadev tunnel` with its options: show, close, or open (then verify, then hold it open in
    the foreground unless detached). What this command opened, it closes on a failure or Ctrl-C
    (KeyboardInterrupt is raised again once it is closed)."""
    from airadev.operations import manage

    try:
        status = TunnelStatus.from_json(manage.request(paths, Op.TUNNEL, action=TunnelAction.STATUS))
    except NotRunning:
        _leftovers(paths, config, view)
        raise
    if options.show:
        if options.as_json:
            view.json({"schema": 1, **status.to_json()})
        else:
            view.status(status)
        return
    if options.stop:
        # Where this terminal says Twilio is now (a Twilio-compatible server that moved); not its
        # credentials: the journal's steps are the voice agent's account.
        env = {key: os.environ[key] for key in ("AIRADEV_TWILIO_API_BASE",) if key in os.environ}
        result = manage.request(
            paths,
            Op.TUNNEL,
            action=TunnelAction.CLOSE,
            keep=options.keep if options.keep else None,
            env=env,
            timeout=120,
        )
        view.closed(result)
        if result.get("failed"):
            raise AiradevError(
                "the tunnel is closed, but not everything could be put back",
                "fix what is said above, then run `airadev tunnel --stop` (or `airadev down`) again",
            )
        return
    opened_here = status.state != "open"
    if opened_here:
        env = {key: os.environ[key] for key in ENV_KEYS if key in os.environ}
        try:
            status = TunnelStatus.from_json(
                manage.request(
                    paths,
                    Op.TUNNEL,
                    action=TunnelAction.OPEN,
                    domain=options.domain,
                    region=options.region,
                    keep=options.keep,
                    env=env,
                    timeout=180,
                )
            )
        except KeyboardInterrupt:
            # The supervisor opens it anyway: close it again, so that Ctrl-C leaves nothing rewired.
            view.closed(_close(paths, "Ctrl-C"))
            raise
    elif options.domain and options.domain.split("://")[-1] not in status.address:
        raise UsageError(
            f"a tunnel is already open at {status.address}",
            "close it first (`airadev tunnel --stop`) to open one on another domain",
        )
    closes = opened_here and not options.detach  # what this command opened, it closes on Ctrl-C
    try:
        if not options.as_json or not options.verify:
            view.status(status)
        if options.verify:
            # A failed test call: what this command opened is closed and put back, detached or
            # not (the README's promise: exit 1, nothing left rewired), unless --keep.
            _verify(paths, status, config, options, view, opened_here and not options.keep)
        if options.detach or not opened_here:
            return
        hold(paths, view)
    except KeyboardInterrupt:
        # Ctrl-C before the hold took over: what this command opened, it still closes.
        if closes:
            view.closed(_close(paths, "Ctrl-C"))
            return
        raise


def _close(paths: Paths, why: str) -> dict[str, Any]:
    from airadev.operations import manage

    result: dict[str, Any] = manage.request(paths, Op.TUNNEL, action=TunnelAction.CLOSE, why=why, timeout=120)
    return result


def _verify(
    paths: Paths, status: TunnelStatus, config: Callable[[], Config], options: Options, view: View, closes: bool
) -> None:

    try:
        result = verify(status.address, config())
    except AiradevError as exc:
        record(paths, status.address, {}, (exc.message, exc.fix))
        if closes:
            _close(paths, "the test call failed")
        raise
    wrong = verdict(result)
    record(paths, status.address, result, wrong)
    if options.as_json:
        view.json({"schema": 1, **result})
    else:
        view.verified(result)
    if wrong:
        if closes:
            view.closed(_close(paths, "the test call failed"))
        raise AiradevError(*wrong)


def record(paths: Paths, address: str, result: Mapping[str, Any], wrong: tuple[str, str] | None) -> None:
    """Tell the running stack a test call's outcome: `tunnel --status` and the dashboard show the
    last one. Best effort: the call's own outcome is what the caller says."""
    from airadev.operations import manage

    summary = {key: result.get(key) for key in ("status", "ms", "twiml")} | {"wrong": wrong[0] if wrong else ""}
    try:
        manage.request(paths, Op.TUNNEL, action=TunnelAction.VERIFIED, address=address, result=summary)
    except AiradevError:
        pass


def still_rewired(paths: Paths) -> list[str]:
    """What the journal says stays rewired; refused while a tunnel is open (it is no leftover:
    `--stop` puts it back)."""
    from airadev import rewiring
    from airadev.state import read_state, supervisor_alive

    journal = rewiring.Journal.load(paths)
    if journal is None or not journal.pending():
        return []
    state = read_state(paths)
    if supervisor_alive(state):  # its tunnel holds the journal: an open one, or one that failed to close
        tunnel = ((state or {}).get("tunnel") or {}).get("state")
        if tunnel in ("open", "opening", "closing"):
            raise UsageError("a tunnel is open", "`airadev tunnel --stop` closes it and puts everything back")
        raise UsageError(
            "the stack is running, and its supervisor holds the record",
            "run `airadev down` (it tries once more to put it back), then `airadev tunnel --forget`",
        )
    return rewiring.still_rewired(journal)


def forget(paths: Paths) -> list[str]:
    from airadev import rewiring

    return rewiring.forget(paths)


def _leftovers(paths: Paths, config: Callable[[], Config], view: View) -> None:
    """With nothing running, `airadev tunnel` still puts back what a crashed run's tunnel left."""
    from airadev.state import AlreadyRunning, Lock

    if not Journal.path_of(paths).exists():
        return
    lock = Lock(paths)
    try:
        lock.acquire()
    except AlreadyRunning:
        return
    try:
        undone = recover(paths, config())
    finally:
        lock.release()
    for line in (undone.restored + undone.left) if undone else []:
        view.info(f"put back what the last tunnel left: {line}")
    for line in undone.failed if undone else []:
        view.warn(f"could not put back what the last tunnel left: {line}")


def hold(paths: Paths, view: View) -> None:
    """Keep the tunnel open until Ctrl-C (or SIGTERM, or the terminal closing), then close it."""
    import signal

    from airadev.state import read_state, supervisor_alive

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    view.info("the tunnel is open; Ctrl-C closes it and puts everything back")
    try:
        while True:
            state = read_state(paths)
            # The tunnel's own state first: a `down` from another terminal closes the tunnel,
            # puts everything back and ends the supervisor, all within one poll. Only a
            # supervisor gone while its tunnel still reads open died under it.
            tunnel_state = (state or {}).get("tunnel") or {}
            if tunnel_state.get("state") not in ("open", "closing"):
                _ended(tunnel_state, view)
                return
            if not supervisor_alive(state):
                raise AiradevError(
                    "the stack stopped under the tunnel", "`airadev down` puts back whatever the tunnel left rewired"
                )
            time.sleep(0.2)
    except KeyboardInterrupt:
        result = _close(paths, "Ctrl-C")
        view.closed(result)
        if result.get("failed"):
            raise AiradevError(
                "the tunnel is closed, but not everything could be put back",
                "fix what is said above, then run `airadev down`",
            ) from None


def _ended(tunnel_state: dict[str, Any], view: View) -> None:
    """Say how a held tunnel ended that this command did not close itself."""
    from airadev.state import DOWN_REASON

    how, why = tunnel_state.get("state", "closed"), tunnel_state.get("message", "")
    if how == "failed":
        raise AiradevError(
            f"the tunnel failed: {why}" if why else "the tunnel failed",
            "see `airadev logs airadev`; `airadev down` puts back whatever is left rewired",
        )
    if why == DOWN_REASON:
        view.info("tunnel: closed by `airadev down`; everything is put back")
    else:
        view.info(f"tunnel: {how}" + (f" ({why})" if why else ""))


def verify(address: str, config: Config, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """POST to the voice webhook through the tunnel, signed like Twilio signs (X-Twilio-Signature
    over the public URL); report the status, the time and whether the answer is TwiML.

    The public address is https, and its certificate is checked as Twilio checks it, against
    the trusted CAs: the system's, or those of SSL_CERT_FILE / SSL_CERT_DIR (httpx's trust_env),
    which is how a machine behind a TLS-inspecting proxy, or a test run, trusts its own CA."""
    import httpx

    from airadev.integrations.twilio import signature

    credentials = twilio_credentials(config, env)
    if credentials is None:
        raise AiradevError(
            "no Twilio credentials to sign the test call with",
            "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in the voice agent's .env",
        )
    sid, token = credentials
    if not config.twilio.voice_path:
        raise AiradevError(
            "--verify calls the voice webhook, and twilio.voice_path is false here",
            "leave out --verify, or set twilio.voice_path in airadev.toml",
        )
    url = address.rstrip("/") + config.twilio.voice_path
    number = test_number(config, env) or "+15005550006"
    params = {
        "AccountSid": sid,
        "ApiVersion": "2010-04-01",
        "CallSid": "CA" + uuid.uuid4().hex,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": "+15005550006",
        "To": number,
        "Caller": "+15005550006",
        "Called": number,
    }
    headers = {"X-Twilio-Signature": signature(token, url, params), "User-Agent": "TwilioProxy/1.1 (airadev verify)"}
    started = time.perf_counter()
    try:
        answer = httpx.post(url, data=params, headers=headers, timeout=15, trust_env=True)
    except httpx.HTTPError as exc:
        untrusted = certificate_problem(exc)
        if untrusted:
            raise AiradevError(
                f"the test call to {url} failed: its TLS certificate is not trusted here ({untrusted})",
                "if a proxy or a CA of your own signs it, point SSL_CERT_FILE at that CA's "
                "certificate (PEM), then try again",
            ) from None
        raise AiradevError(
            f"the test call to {url} failed: {type(exc).__name__}",
            "see `airadev tunnel --status` and `airadev logs ngrok`",
        ) from None
    took = time.perf_counter() - started
    result: dict[str, Any] = {
        "url": url,
        "status": answer.status_code,
        "ms": round(took * 1000, 1),
        "twiml": is_twiml(answer.headers.get("content-type", ""), answer.content),
    }
    if answer.status_code == 502 and b"ERR_NGROK_8012" in answer.content:
        result["problem"] = "ngrok could not reach the voice agent (ERR_NGROK_8012)"
    stream = media_stream(answer.content) if result["twiml"] else ""
    if stream:
        # What Twilio does next: it opens the media stream the TwiML names, through the tunnel.
        result["stream"] = check_stream(stream, address)
    return result


def verdict(result: Mapping[str, Any]) -> tuple[str, str] | None:
    """What is wrong with a test call's outcome, and its fix; None when Twilio would be served."""
    if result.get("problem"):
        return result["problem"], "is the voice agent listening? `airadev status`, `airadev logs voice`"
    if not (200 <= result["status"] < 300 and result["twiml"]):
        return (
            f"the test call got {result['status']}" + ("" if result["twiml"] else ", and no TwiML"),
            "see `airadev logs voice` and `airadev logs ngrok`",
        )
    stream = result.get("stream")
    if stream and stream["answer"].startswith("not a URL"):
        return (
            f"the TwiML's media stream URL {stream['url']!r} is {stream['answer']}",
            "fix the Stream url in the app's TwiML",
        )
    if stream and stream["same_host"] and not stream["wss"]:
        return (
            f"the TwiML's media stream {stream['url']} is not wss://: Twilio opens media streams over wss only",
            "make the Stream url wss://",
        )
    if stream and not stream["same_host"]:
        return (
            f"the TwiML's media stream goes to {stream['host']}, not to the tunnel ({stream['tunnel_host']})",
            "build the Stream URL from the request's Host header (ngrok passes the public host on), "
            "or from the public address",
        )
    if stream and not stream["upgraded"]:
        return (
            f"the media stream's WebSocket upgrade through the tunnel failed ({stream['answer']})",
            "see `airadev logs voice`: the app must accept a WebSocket at " + stream["path"],
        )
    return None


def media_stream(body: bytes) -> str:
    """The URL of `<Connect><Stream url=...>` (or `<Start><Stream>`) in TwiML, or ""."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return ""
    for stream in root.iter("Stream"):
        if stream.get("url"):
            return str(stream.get("url"))
    return ""


def check_stream(url: str, address: str, timeout: float = 15.0) -> dict[str, Any]:
    """Whether the stream is wss on the tunnel's host (names compared as Twilio would: case and a
    default port aside), and whether a WebSocket upgrade to it succeeds (101 with the right
    Sec-WebSocket-Accept) within ``timeout`` in all; the CAs trusted as for the test call."""
    import base64
    import hashlib
    import socket
    import ssl
    from urllib.parse import urlsplit

    found: dict[str, Any] = {"url": url, "host": url, "tunnel_host": "", "same_host": False, "wss": False}
    found.update(path="/", upgraded=False, answer="")
    try:
        parts, tunnel = urlsplit(url), urlsplit(address)
        host, port = (parts.hostname or "").lower(), parts.port or 443
        tunnel_host, tunnel_port = (tunnel.hostname or "").lower(), tunnel.port or 443
    except ValueError as exc:  # a malformed URL in the app's TwiML
        found["answer"] = f"not a URL ({exc})"
        return found
    found.update(
        host=parts.netloc,
        tunnel_host=tunnel.netloc,
        same_host=(host, port) == (tunnel_host, tunnel_port),
        wss=parts.scheme == "wss",
        path=parts.path or "/",
    )
    if not (found["same_host"] and found["wss"]):
        return found
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {found['path']}{'?' + parts.query if parts.query else ''} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\nUser-Agent: TwilioProxy/1.1 (airadev verify)\r\n\r\n"
    )
    deadline = time.monotonic() + timeout
    head = b""
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout) as raw:
            with _trusted_context().wrap_socket(raw, server_hostname=parts.hostname) as sock:
                sock.sendall(request.encode())
                while b"\r\n\r\n" not in head and len(head) < 16384:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"no answer within {timeout:g}s")
                    sock.settimeout(left)
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    head += chunk
    except (OSError, ssl.SSLError) as exc:
        found["answer"] = f"{type(exc).__name__}: {exc}"
        return found
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)[1] if len(lines[0].split(" ")) > 1 else "?"
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    expected = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC11B41").encode()).digest())
    found["answer"] = f"HTTP {status}"
    found["upgraded"] = status == "101" and headers.get("sec-websocket-accept", "") == expected.decode()
    return found


def _trusted_context() -> Any:
    """The CAs the test call trusts (httpx with trust_env): SSL_CERT_FILE / SSL_CERT_DIR when
    set, else certifi's bundle."""
    import ssl

    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def certificate_problem(exc: BaseException) -> str:
    """OpenSSL's reason, when ``exc`` comes from a certificate that failed verification."""
    import ssl

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or "certificate verify failed")
        seen = seen.__cause__ or seen.__context__
    return ""


def is_twiml(content_type: str, body: bytes) -> bool:
    if "xml" not in content_type:
        return False
    from xml.etree import ElementTree

    try:
        return ElementTree.fromstring(body).tag == "Response"
    except ElementTree.ParseError:
        return False
