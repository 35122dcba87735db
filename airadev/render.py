"""Everything airadev shows its user. The only module that writes to the console.

On a terminal it uses colour (and rich for tables); piped or redirected, it writes plain text
and does not import rich at all, which keeps `airadev status | ...` fast. The log stream of
`airadev up` is written as bytes: a rich call per line would cap it at a few thousand lines a
second.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from airadev.errors import AiradevError

if TYPE_CHECKING:
    from airadev.status import ServiceStatus, StackStatus, TunnelStatus

RESET = "\x1b[0m"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
RED = "\x1b[31m"
YELLOW = "\x1b[33m"
GREEN = "\x1b[32m"
# Service prefixes cycle through these; red and yellow stay for errors and warnings.
PALETTE = ("\x1b[36m", "\x1b[35m", "\x1b[34m", "\x1b[32m", "\x1b[96m", "\x1b[95m", "\x1b[94m", "\x1b[92m")
LEVEL_COLOUR = {"info": "", "warning": YELLOW, "error": RED}


def use_colour(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _write(fd: int, data: bytes | memoryview) -> bool:
    """Write all of ``data``; False when the reader has gone (a closed pipe, a terminal that
    hung up: EPIPE, EIO)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        return False
    return True


def _writev(fd: int, parts: tuple[bytes, memoryview]) -> bool:
    """``_write`` of pieces (what ``logstore.prefixed`` makes) with one system call, without
    joining them."""
    size = len(parts[0]) + len(parts[1])
    try:
        written = os.writev(fd, parts)
    except OSError:
        return False
    return written == size or _write(fd, memoryview(b"".join(parts))[written:])


class ConsoleOutput:
    """Where the console's bytes go, without ever stalling the supervisor.

    A regular file is written directly: it does not stall, and nothing may be lost there.
    A terminal or a pipe gets a writer thread with a bounded buffer: a paused terminal
    (Ctrl-S, `| less` not scrolling) would otherwise block the supervisor's loop and with it
    probes, restarts and `airadev down`. Past the buffer, output is left off the console
    (never off the log files) and a line says how much.
    """

    LIMIT = 4 << 20

    def __init__(self, fd: int = 1) -> None:
        import stat
        import threading

        self.fd = fd
        self.alive = True
        try:
            direct = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            direct = True
        self._queue: list[bytes | memoryview] | None = None if direct else []
        self._size = 0
        self._dropped = 0
        self._closing = False
        if self._queue is not None:
            self._cond = threading.Condition()
            self._thread = threading.Thread(target=self._run, name="airadev-console", daemon=True)
            self._thread.start()

    def write(self, data: bytes) -> None:
        if not self.alive:
            return
        if self._queue is None:
            self.alive = _write(self.fd, data)
            return
        self._enqueue((data,), len(data))

    def writev(self, parts: tuple[bytes, memoryview]) -> None:
        """``write`` of the pieces ``logstore.prefixed`` makes: one system call to a file; the
        writer thread joins them with whatever else is queued."""
        if not self.alive:
            return
        if self._queue is None:
            self.alive = _writev(self.fd, parts)
            return
        self._enqueue(parts, len(parts[0]) + len(parts[1]))

    def _enqueue(self, parts: tuple[bytes | memoryview, ...], size: int) -> None:
        assert self._queue is not None
        with self._cond:
            if self._size + size > self.LIMIT:
                self._dropped += size
                return
            self._queue.extend(parts)
            self._size += size
            self._cond.notify()

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue and self._closing:
                    return
                chunk = b"".join(self._queue)
                self._queue.clear()
                self._size = 0
                dropped, self._dropped = self._dropped, 0
            if dropped:
                chunk += (
                    f"[airadev: {dropped} bytes of output were left off the console while it was not "
                    "reading; `airadev logs` has them]\n"
                ).encode()
            if not _write(self.fd, chunk):
                self.alive = False
                return

    def close(self, timeout: float = 2.0) -> None:
        if self._queue is not None:
            with self._cond:
                self._closing = True
                self._cond.notify()
            self._thread.join(timeout)


# --- the log stream of `up` -----------------------------------------------------------------


class LogConsole:
    """The foreground ``up`` view: every service's lines behind an aligned ``name |`` prefix,
    supervisor events behind ``airadev |``, then the ready summary. Implements the
    supervisor's Observer protocol; called on the supervisor's loop thread only."""

    def __init__(
        self, names: Sequence[str], *, colour: bool, fd: int = 1, own: bool = True, buffered: bool = True
    ) -> None:
        from airadev.logstore import prefix_lines, prefixed

        self.prefix_lines = prefix_lines
        self.prefixed = prefixed
        self.colour = colour
        self.out = ConsoleOutput(fd) if buffered else None
        self.fd = fd
        self._alive = True
        width = max(len(n) for n in [*names, *(["airadev"] if own else [])])
        self.prefixes: dict[str, bytes] = {}
        for index, name in enumerate(names):
            label = f"{name.ljust(width)} |"
            if colour:
                label = f"{PALETTE[index % len(PALETTE)]}{label}{RESET}"
            self.prefixes[name] = (label + " ").encode()
        own_label = f"{'airadev'.ljust(width)} |"
        self.own_prefix = ((f"{BOLD}{own_label}{RESET}" if colour else own_label) + " ").encode()

    @property
    def alive(self) -> bool:
        return self.out.alive if self.out else self._alive

    def _emit(self, data: bytes) -> None:
        if self.out is not None:
            self.out.write(data)
        elif self._alive:
            self._alive = _write(self.fd, data)

    def close(self) -> None:
        if self.out is not None:
            self.out.close()

    def output(self, service: str, lines: bytes) -> None:
        """The hot path: every chunk of service output, prefixed in one pass (DESIGN.md, habit 8)."""
        parts = self.prefixed(lines, self.prefixes[service])
        if self.out is not None:
            self.out.writev(parts)
        elif self._alive:
            self._alive = _writev(self.fd, parts)

    def event(self, service: str | None, message: str, level: str = "info") -> None:
        text = f"{service}: {message}" if service else message
        if self.colour and LEVEL_COLOUR.get(level):
            text = "\n".join(f"{LEVEL_COLOUR[level]}{line}{RESET}" for line in text.split("\n"))
        self._emit(self.prefix_lines(text.encode() + b"\n", self.own_prefix))

    def ready(self, summary: Any) -> None:
        lines = [f"all {len(summary.services)} services ready in {summary.total:.2f}s"]
        width = max(len(name) for name, _, _ in summary.services)
        for name, after, own in summary.services:
            lines.append(f"  {name.ljust(width)}  ready after {after:6.2f}s  (own start {own:.2f}s)")
        if summary.critical_path:
            own_times = {name: own for name, _, own in summary.services}
            lines.append("  critical path: " + " → ".join(f"{n} {own_times[n]:.2f}s" for n in summary.critical_path))
        text = "\n".join(lines)
        if self.colour:
            text = f"{GREEN}{text}{RESET}"
        self._emit(self.prefix_lines(text.encode() + b"\n", self.own_prefix))


# --- messages and errors --------------------------------------------------------------------


def error(exc: AiradevError) -> None:
    colour = use_colour(sys.stderr)
    head = f"{RED}error:{RESET} " if colour else "error: "
    out = [head + exc.message]
    if exc.details:
        out.append(exc.details)
    if exc.fix:
        out.append(("  fix: " if not colour else f"  {BOLD}fix:{RESET} ") + exc.fix)
    sys.stderr.write("\n".join(out) + "\n")
    sys.stderr.flush()


def info(message: str, *, stderr: bool = False) -> None:
    stream = sys.stderr if stderr else sys.stdout
    stream.write(message + "\n")
    stream.flush()


def warn(message: str) -> None:
    colour = use_colour(sys.stderr)
    sys.stderr.write((f"{YELLOW}{message}{RESET}" if colour else message) + "\n")


def json_out(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2) + "\n")


# --- tables ---------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, title: str = "") -> None:
    rows = [list(map(str, row)) for row in rows]
    if use_colour():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title or None, title_justify="left", box=None, header_style="bold")
        for header in headers:
            t.add_column(header)
        for row in rows:
            t.add_row(*[_state_markup(cell) for cell in row])
        Console().print(t)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out = [title] if title else []
    out.append("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in rows:
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    sys.stdout.write("\n".join(out) + "\n")


_STATE_STYLE = {
    "healthy": "green",
    "running": "green",
    "completed": "green",
    "starting": "yellow",
    "waiting": "yellow",
    "restarting": "yellow",
    "stopping": "yellow",
    "unhealthy": "red",
    "crash-loop": "red",
    "failed": "red",
    "blocked": "red",
    "stopped": "dim",
}


def _state_markup(cell: str) -> str:
    from rich.markup import escape

    style = _STATE_STYLE.get(cell.removesuffix(" (attached)"))
    return f"[{style}]{escape(cell)}[/{style}]" if style else escape(cell)


def status(data: StackStatus) -> None:
    services = data.services
    containers = any(svc.container for svc in services.values())
    rows = []
    for name, svc in services.items():
        usage = svc.usage
        rows.append(
            [
                name,
                svc.runtime,
                f"{svc.state} (attached)" if svc.attached else svc.state,
                str(svc.pid or "-"),
                str(svc.port or "-"),
                _health(svc),
                duration(svc.uptime),
                str(svc.restarts),
                _cpu(usage.cpu_percent if usage else None),
                size(usage.rss_bytes if usage else None),
                *([svc.container or "-", svc.image or "-"] if containers else []),
            ]
        )
    started = time.strftime("%H:%M:%S", time.localtime(data.started_at))
    title = f"airadev: {data.workspace} (supervisor pid {data.supervisor_pid}, up since {started})"
    table(
        [
            "service",
            "runtime",
            "state",
            "pid",
            "port",
            "health",
            "uptime",
            "restarts",
            "cpu",
            "mem",
            *(["container", "image"] if containers else []),
        ],
        rows,
        title=title,
    )
    tunnel = data.tunnel
    if tunnel is not None and tunnel.state in ("open", "failed") and not tunnel.brief:
        info(tunnel_line(tunnel))
    for name, svc in services.items():
        if svc.runtime == "postgres":
            info(f"{name}: plain PostgreSQL (runtime postgres), not Supabase: no REST API, no auth; SQL only")
        if svc.database_url:
            info(f"{name}: services get DATABASE_URL={svc.database_url}")
        if svc.attached:
            info(f"{name}: attached to {svc.attached} (`airadev attach`): its output goes there, not to the log")
    failure = data.failure
    if failure and data.phase == "failed":
        warn(f"{failure.service}: {failure.message}")


def tunnel_line(tunnel: TunnelStatus) -> str:
    """`status`'s tunnel line: the public address, since when, and what is rewired to it."""
    if tunnel.state == "failed":
        return f"tunnel: failed ({tunnel.message})"
    since = tunnel.detail("opened_at")
    when = f", open since {time.strftime('%H:%M:%S', time.localtime(since))}" if since else ""
    parts = []
    for item in tunnel.rewired:
        if item.get("kind") == "envfile":
            parts.append(f"{os.path.basename(str(item.get('path')))} {item.get('variable')}")
        elif item.get("kind") == "twilio":
            parts.append(f"Twilio {item.get('phone_number')}")
        else:
            parts.append(f"business_numbers {item.get('phone_number')}")
    return f"tunnel: {tunnel.address}{when}; rewired: {', '.join(parts) or 'nothing'}"


def _health(svc: ServiceStatus) -> str:
    text = svc.health or (svc.message if svc.state != "healthy" else "") or "-"
    return text if len(text) <= 40 else text[:37] + "..."


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024  # type: ignore[assignment]
    return str(value)


# --- log lines for `airadev logs` --------------------------------------------------------------


class LogPrinter:
    """Writes stored log lines (timestamp field included) with optional prefix and timestamp."""

    def __init__(self, names: Sequence[str], *, prefix: bool, timestamps: bool, colour: bool) -> None:
        # `airadev logs` may block on its reader: that stalls nobody.
        self.console = LogConsole(names, colour=colour, own=False, buffered=False) if prefix else None
        self.timestamps = timestamps

    def write(self, service: str, raw_lines: list[bytes]) -> bool:
        from airadev.logstore import TS_FIELD, has_stamp

        if not raw_lines:
            return True
        if self.timestamps:
            data = b"".join(raw_lines)
        else:
            data = b"".join(line[TS_FIELD:] if has_stamp(line) else line for line in raw_lines)
        if self.console is None:
            return _write(1, data)
        self.console.output(service, data)
        return self.console.alive


# --- the tunnel --------------------------------------------------------------------------------


def tunnel_status(status: TunnelStatus) -> None:
    if status.state != "open":
        info(f"tunnel: {status.state}" + (f" ({status.message})" if status.message else ""))
        return
    info(f"tunnel: {status.address}")
    for item in status.rewired:
        if item["kind"] == "envfile":
            info(f"  {item['path']}: {item['variable']}={item['value']}")
        elif item["kind"] == "db":
            info(f"  database business_numbers {item['phone_number']}: the same URLs")
        else:
            hooks = item["webhooks"]  # those the tunnel set (a path set to false is left out)
            names = (("voice", "voice_url"), ("sms", "sms_url"), ("status", "status_callback"))
            shown = ", ".join(f"{name} {hooks[key]}" for name, key in names if key in hooks)
            info(f"  Twilio {item['phone_number']}: {shown}")
    reload_note = status.detail("ui_reload")
    if reload_note:
        info(f"  UI: {reload_note}")
    twilio = status.detail("twilio")
    if twilio and not any(i["kind"] == "twilio" for i in status.rewired):
        info(f"  Twilio: {twilio}")
    database = status.detail("database")
    if database and not any(i["kind"] == "db" for i in status.rewired):
        info(f"  database: {database}")
    if status.detail("verified"):
        info(f"  last verify: {verify_line(status.detail('verified'))}")
    if status.keep:
        info("  (--keep: the rewiring stays when the tunnel closes)")


def verify_line(verified: dict[str, Any]) -> str:
    """The last test call through the tunnel, as the supervisor keeps it (TunnelAction.VERIFIED)."""
    when = time.strftime("%H:%M:%S", time.localtime(verified.get("at") or 0))
    kind = "TwiML" if verified.get("twiml") else "not TwiML"
    wrong = f"  ✗ {verified['wrong']}" if verified.get("wrong") else ""
    if verified.get("status") is None:  # no answer at all
        return f"{when}: failed{wrong}"
    return f"{when}: {verified.get('status')} in {verified.get('ms') or 0:.0f} ms, {kind}{wrong}"


def tunnel_closed(result: dict[str, Any]) -> None:
    info("tunnel: closed")
    for line in result.get("restored", []) + result.get("left", []) + result.get("waiting", []):
        info(f"  {line}")
    if result.get("kept"):
        info("  the rewiring was kept (--keep)")
    for line in result.get("failed", []):
        warn(f"  could not put back {line}; `airadev down` tries again")


def verified(result: dict[str, Any]) -> None:
    ok = 200 <= result["status"] < 300 and result["twiml"]
    verdict = "TwiML" if result["twiml"] else "not TwiML"
    info(
        f"verify: POST {result['url']} → {result['status']} in {result['ms']:.0f} ms, {verdict}" + ("" if ok else "  ✗")
    )
    stream = result.get("stream")
    if stream:
        good = stream["same_host"] and stream["upgraded"]
        info(f"verify: media stream {stream['url']} → {stream['answer'] or 'not tried'}" + ("" if good else "  ✗"))


# --- doctor --------------------------------------------------------------------------------------

MARKS = {"ok": ("✓", GREEN), "warning": ("!", YELLOW), "error": ("✗", RED), "skipped": ("-", DIM)}


class TunnelView:
    """What `airadev tunnel` shows (operations/tunnel.View), on the console."""

    status = staticmethod(tunnel_status)
    closed = staticmethod(tunnel_closed)
    verified = staticmethod(verified)
    json = staticmethod(json_out)
    info = staticmethod(info)
    warn = staticmethod(warn)


def doctor_report(results: Sequence[Any], ctx: Any, *, verbose: bool, redact: Any) -> None:
    colour = use_colour()
    out = [f"airadev doctor: {ctx.root or ctx.start}" + (" (offline)" if ctx.offline else "")]
    group = None
    for r in results:
        if r.group != group:
            group = r.group
            out.append(f"{BOLD}{group}{RESET}" if colour else group)
        mark, tint = MARKS[str(r.status)]
        label = f"{tint}{mark}{RESET}" if colour else mark
        text = redact.text(r.message)
        if str(r.status) == "skipped":
            text = f"{r.id}: skipped ({text})"
        timing = f"  ({r.duration * 1000:.0f} ms)" if verbose else ""
        if str(r.status) == "skipped" and not verbose:
            continue
        out.append(f"  {label} {text}{timing}")
        if r.fix and str(r.status) in ("warning", "error"):
            out.append(f"      fix: {redact.text(r.fix)}")
    counts = {str(k): 0 for k in MARKS}
    for r in results:
        counts[str(r.status)] += 1
    parts = [f"{counts['ok']} passed"]
    if counts["warning"]:
        parts.append(f"{counts['warning']} warning" + ("s" if counts["warning"] > 1 else ""))
    if counts["error"]:
        parts.append(f"{counts['error']} error" + ("s" if counts["error"] > 1 else ""))
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped")
    line = ", ".join(parts)
    if colour:
        line = f"{RED if counts['error'] else YELLOW if counts['warning'] else GREEN}{line}{RESET}"
    out.append(line)
    sys.stdout.write("\n".join(out) + "\n")


def doctor_checks(checks: Sequence[Any]) -> None:
    table(
        ["check", "group", "what it checks"], [[c.id, c.group + (" (live)" if c.live else ""), c.title] for c in checks]
    )


def doctor_fixes(done: Sequence[tuple[str, str]], dry_run: bool) -> None:
    if not done:
        info("nothing to fix automatically")
        return
    for what, outcome in done:
        info(f"{'would ' if dry_run else ''}fix: {what}" + ("" if dry_run else f": {outcome}"))


def confirm(question: str) -> bool:
    sys.stdout.write(f"{question} [y/N] ")
    sys.stdout.flush()
    try:
        return sys.stdin.readline().strip().lower() in ("y", "yes")
    except (OSError, KeyboardInterrupt):
        return False
