"""`airadev dash`: the running stack on one screen, and keys that act on it (textual).

What it shows comes from airadev/dash/feed.py (the state file, /proc, the log files, woken by
inotify); what the keys do goes to the supervisor over the control socket, as the CLI's
commands do (restart, stop, start, the tunnel), or runs here (`tunnel --verify`'s test call,
doctor). It writes nothing of the stack's: quitting leaves the stack as it was, unless `up
--dash` started it (then the caller stops it, as Ctrl-C stops `up`).

Only this module imports textual (and only `airadev dash` and `up --dash` import this module).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Log, Static

from airadev import control, logstore, render
from airadev.dash import feed
from airadev.errors import AiradevError
from airadev.model import Config
from airadev.state import Paths
from airadev.status import ServiceStatus, Usage

ALL = ""  # the log pane follows every service, merged
HISTORY = 1000  # stored lines loaded when the pane changes (its scroll-back)
KEEP = 5000  # lines the pane holds
PER_READ = 400  # at most this many new lines a service shows per read: the rest is counted
SETTLE = 0.1  # seconds between a change and reading it: a flood is read ten times a second
USAGE_EVERY = 2.0
COLUMNS = (  # (label, key, width): 80 columns hold them all, a space between each two
    ("service", "name", 12),
    ("state", "state", 11),
    ("health", "health", 10),
    ("pid", "pid", 8),
    ("port", "port", 6),
    ("up", "uptime", 6),
    ("rst", "restarts", 4),
    ("cpu", "cpu", 6),
    ("mem", "mem", 8),
    ("runtime", "runtime", 9),
)


def row(svc: ServiceStatus, usage: Usage | None, now: float) -> tuple[str, ...]:
    """A service's cells, as `status` words them."""
    running = svc.pid is not None or svc.container is not None
    uptime = now - svc.started_at if running and svc.started_at else None
    if running:
        health = svc.health or (svc.message if svc.state != "healthy" else "") or "-"
    else:  # a stopped service's last probe and figures say nothing now; why it stopped may
        health, usage = svc.message or "-", None
    cpu = None if usage is None or not usage.processes else usage.cpu_percent
    cells = (
        svc.state,
        health,
        str(svc.pid or "-"),
        str(svc.port or "-"),
        _uptime(uptime),
        str(svc.restarts) if svc.restarts < 1000 else "1k+",
        "-" if cpu is None else f"{cpu:.1f}%" if cpu < 100 else f"{cpu:.0f}%",
        memory(usage.rss_bytes if usage and usage.processes else None),
        "attached" if svc.attached else svc.runtime,
    )
    return tuple(clip(text, width) for text, (_, _, width) in zip(cells, COLUMNS[1:]))


def memory(value: int | None) -> str:
    if value is None:
        return "-"
    if value < 1 << 20:
        return f"{value / 1024:.0f}KB"
    return f"{value / (1 << 20):.1f}MB" if value < 1000 << 20 else f"{value / (1 << 30):.1f}GB"


def clip(text: str, width: int) -> str:
    """What fits a column and leaves the space before the next one."""
    return text if len(text) < width else text[: width - 2] + "…"


def _uptime(seconds: float | None) -> str:
    """Coarser than `status`'s: a cell that changes every second would repaint the table as often."""
    if seconds is None:
        return "-"
    seconds = int(max(0.0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Findings(ModalScreen[None]):
    """doctor's findings, those about the selected service first."""

    BINDINGS = [Binding("escape,q,d", "dismiss", "Close")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="findings"):
            yield Static(self.text, markup=False)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class Dash(App[None]):
    CSS = """
    #title { height: 1; background: $panel; }
    #services { height: auto; max-height: 12; overflow-x: hidden; scrollbar-size-vertical: 1; }
    #tunnel { height: auto; max-height: 5; color: $text-muted; }
    #said { height: 1; }
    #logs { height: 1fr; border: round $panel; }
    #search { dock: bottom; display: none; }
    #search.open { display: block; }
    App:nocolor DataTable > .datatable--cursor { text-style: reverse; }
    App:nocolor Footer .footer-key--key { text-style: bold; }
    Findings { align: center middle; }
    #findings { width: 90%; height: auto; max-height: 90%; border: round $warning; background: $surface; padding: 0 1; }
    #findings Static { height: auto; }
    """
    BINDINGS = [
        Binding("r", "restart", "restart"),
        Binding("x", "stop", "stop"),
        Binding("s", "start", "start"),
        Binding("t", "tunnel", "tunnel"),
        Binding("v", "verify", "verify"),
        Binding("d", "doctor", "doctor"),
        Binding("a", "all_logs", "all"),
        Binding("slash", "search", "find"),
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("pageup", "page(-1)", "scroll back", show=False, priority=True),  # the pane's, not the table's
        Binding("pagedown", "page(1)", "scroll on", show=False, priority=True),
        Binding("end", "page(0)", "newest", show=False, priority=True),
    ]
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, paths: Paths, config: Callable[[], Config], *, owner: bool = False) -> None:
        # NO_COLOR: textual's own answer is greys (still colour codes); with the terminal's
        # colours it strips them all, and the cursor is shown reversed (CSS, App:nocolor).
        super().__init__(ansi_color=True if "NO_COLOR" in os.environ else None)
        self.paths = paths
        self.load_config = config
        self.owner = owner  # `up --dash`: quitting stops the stack (said in the title)
        self.stack = feed.Stack(paths)
        self.sampler = feed.UsageSampler()
        self.usage: dict[str, Usage] = {}
        self.rate = feed.Rate()
        self.tails: dict[str, feed.LogTail] = {}
        self.following = ALL
        self.needle = ""
        self.deliveries = ""
        self._rows: dict[str, tuple[str, ...]] = {}
        self._title = ""
        self._watcher: feed.Watcher | None = None
        self._dirty: set[str] = set()
        self._state_dirty = False
        self._pending: asyncio.TimerHandle | None = None

    # --- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        table: DataTable[str] = DataTable(id="services", cursor_type="row", cell_padding=0)
        for label, key, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        yield Static(id="tunnel", markup=False)
        yield Static(id="said", markup=False)
        yield Pane(id="logs", max_lines=KEEP)
        yield Input(id="search", placeholder="show only lines with… (Enter; Esc clears)")
        yield Footer()

    def on_mount(self) -> None:
        self.stack.read()
        self._watcher = feed.Watcher(self.paths)
        asyncio.get_running_loop().add_reader(self._watcher.fd, self._woken)
        if self.stack.status is not None and self.stack.alive:
            self.usage = self.sampler.sample(self.stack.status)  # from here on, CPU is since the last look
        for name in self._databases():  # the last delivery before the dashboard opened
            self._delivery([logstore.Line(name, raw) for raw in logstore.tail(self.paths.log(name), 200)])
        self._show_stack()
        self._load_history()
        self.set_interval(USAGE_EVERY, self._sample)
        self.query_one(DataTable).focus()

    def on_unmount(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        if self._watcher is not None:
            asyncio.get_running_loop().remove_reader(self._watcher.fd)
            self._watcher.close()
        for tail in self.tails.values():
            tail.close()

    # --- what changed ---------------------------------------------------------------------------

    def _woken(self) -> None:
        assert self._watcher is not None
        state, logs = self._watcher.changes()
        self._state_dirty |= state
        self._dirty |= logs
        if self._pending is None and (self._state_dirty or self._dirty):
            self._pending = asyncio.get_running_loop().call_later(SETTLE, self._catch_up)

    def _catch_up(self) -> None:
        self._pending = None
        if self._state_dirty:
            self._state_dirty = False
            if self.stack.read():
                self._show_stack()
        dirty, self._dirty = self._dirty, set()
        self._read_logs(dirty)

    def _sample(self) -> None:
        if self.stack.read():  # a supervisor killed outright writes no last word: its death is read here
            self._show_stack()
        status = self.stack.status
        self.usage = self.sampler.sample(status) if status is not None and self.stack.alive else {}
        self._show_services()
        self._show_title()

    # --- the services and the tunnel --------------------------------------------------------------

    def _show_stack(self) -> None:
        self._show_title()
        self._show_services()
        self._show_tunnel()

    def _show_title(self) -> None:
        status = self.stack.status
        phase = status.phase if status and self.stack.alive else "stopped"
        if status and not self.stack.alive and status.phase not in ("stopped",):
            phase = "the supervisor is gone"
        rate = self.rate.per_second()
        shown = "all services" if self.following == ALL else self.following
        filtered = f" · only '{escape(self.needle)}'" if self.needle else ""
        flow = f" · {rate:,.0f} lines/s" if rate >= 10 else ""  # a flood's, not a heartbeat's
        quitting = " · q stops the stack" if self.owner else ""
        title = f" airadev · {self.paths.root.name} · {phase}{quitting}"
        if title != self._title:  # an update repaints, changed or not
            self._title = title
            self.query_one("#title", Static).update(title)
        log = self.query_one("#logs", Log)
        pane = f"logs: {escape(shown)}{filtered}{flow}"
        if log.border_title != pane:
            log.border_title = pane

    def _show_services(self) -> None:
        table = self.query_one(DataTable)
        status = self.stack.status
        services = dict(status.services) if status else {}
        now = time.time()
        rows = {name: row(svc, self.usage.get(name), now) for name, svc in services.items()}
        if list(rows) != list(self._rows):
            selected = self.selected()
            table.clear()
            for name, cells in rows.items():
                table.add_row(*(Text(cell) for cell in (clip(name, COLUMNS[0][2]), *cells)), key=name)
            if selected in rows:
                table.move_cursor(row=list(rows).index(selected))
        else:
            keys = [key for _, key, _ in COLUMNS[1:]]
            for name, cells in rows.items():
                for key, old, new in zip(keys, self._rows[name], cells):
                    if old != new:
                        table.update_cell(name, key, Text(new))
        self._rows = rows

    def _show_tunnel(self) -> None:
        status = self.stack.status
        lines = []
        tunnel = status.tunnel if status else None
        if tunnel is None or tunnel.state == "closed":
            lines.append("tunnel: closed (t opens it)")
        elif tunnel.brief or tunnel.state not in ("open", "failed"):
            lines.append(f"tunnel: {tunnel.state}")
        else:
            lines.append(render.tunnel_line(tunnel))
        if tunnel is not None and tunnel.detail("verified") and tunnel.state == "open":
            lines.append(f"  last verify {render.verify_line(tunnel.detail('verified'))}")
        stripe = status.services.get("stripe") if status else None
        if stripe is not None and stripe.runtime == "stripe":
            lines.append(f"stripe: {stripe.state}" + (f" ({stripe.message})" if stripe.message else ""))
        if self.deliveries:
            lines.append(f"kb deliveries: {self.deliveries}")
        self.query_one("#tunnel", Static).update("\n".join(lines))

    def say(self, text: str) -> None:
        self.query_one("#said", Static).update(text)

    # --- logs -----------------------------------------------------------------------------------

    def _names(self) -> list[str]:
        status = self.stack.status
        names = list(status.services) if status else []
        extra = [n for n in ("airadev", "ngrok") if self.paths.log(n).exists()]
        return names + extra

    def _load_history(self) -> None:
        """The pane's scroll-back: the last stored lines of what it follows (filtered)."""
        log = self.query_one("#logs", Pane)
        names = self._names() if self.following == ALL else [self.following]
        self._read_logs(set(self.tails))  # what the tails have not read yet is history now ...
        ends = {name: self._tail(name).position for name in self._names()}  # ... up to here
        lines = feed.history(self.paths, names, HISTORY, self.needle, ends)
        width = max((len(n) for n in names), default=0)
        log.clear()
        log.write_lines([feed.shown(line, self.following == ALL, width) for line in lines])
        log.follow()
        self._show_title()

    def _tail(self, name: str, from_end: bool = True) -> feed.LogTail:
        if name not in self.tails:
            self.tails[name] = feed.LogTail(self.paths.log(name), from_end=from_end)
        return self.tails[name]

    def _read_logs(self, dirty: set[str]) -> None:
        names = self._names()
        width = max((len(n) for n in names), default=0)
        batch: list[logstore.Line] = []
        passed = 0
        for name in dirty:
            if name not in self.tails and name not in names:
                continue
            chunk = self._tail(name, from_end=False).read(PER_READ)  # a log first seen now: all of it
            lines = [logstore.Line(name, raw) for raw in chunk.lines]
            if name in self._databases():
                self._delivery(lines)
            if self.following not in (ALL, name):
                continue
            self.rate.add(chunk.arrived)
            passed += chunk.arrived - len(chunk.lines)
            batch.extend(line for line in lines if feed.matches(line, self.needle))
        batch.sort(key=lambda line: line.stamp)
        log = self.query_one("#logs", Pane)
        if passed:
            log.write_line(f"… {passed:,} lines not shown here (a flood: `airadev logs` has them all)")
        if batch:
            log.write_lines([feed.shown(line, self.following == ALL, width) for line in batch])
        self._show_title()

    def _databases(self) -> list[str]:
        """The postgres runtime's services: their logs have the KB trigger's deliveries."""
        status = self.stack.status
        return [n for n, svc in status.services.items() if svc.runtime == "postgres"] if status else []

    def _delivery(self, lines: list[logstore.Line]) -> None:
        """The database's webhook deliveries (pg_net: `POST url → 200 in 12 ms`), the last one."""
        for line in reversed(lines):
            text = line.text.decode("utf-8", "replace").strip()
            if " → " in text and text.split(" ", 1)[0] in ("POST", "GET"):
                self.deliveries = text
                self._show_tunnel()
                return

    # --- keys -----------------------------------------------------------------------------------

    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        name = str(event.row_key.value)
        if self.following != ALL and name != self.following:
            self.following = name
            self._load_history()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        name = str(event.row_key.value)
        if name != self.following:
            self.following = name
            self._load_history()

    def action_all_logs(self) -> None:
        self.following = ALL if self.following != ALL else (self.selected() or ALL)
        self._load_history()

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.add_class("open")
        box.value = self.needle
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.needle = event.value.strip()
        self._close_search()
        self._load_history()

    def on_key(self, event: Any) -> None:
        box = self.query_one("#search", Input)
        if event.key == "escape" and box.has_class("open"):
            self.needle = ""
            self._close_search()
            self._load_history()
            event.stop()

    def _close_search(self) -> None:
        box = self.query_one("#search", Input)
        box.remove_class("open")
        self.query_one(DataTable).focus()

    def action_page(self, direction: int) -> None:
        log = self.query_one("#logs", Pane)
        if direction < 0:
            log.scroll_page_up(animate=False)
        elif direction > 0:
            log.scroll_page_down(animate=False)
        else:  # End: the newest line, followed from here on
            log.follow()

    def action_restart(self) -> None:
        self._service_op(control.Op.RESTART, "restarting")

    def action_stop(self) -> None:
        self._service_op(control.Op.STOP, "stopping")

    def action_start(self) -> None:
        self._service_op(control.Op.START, "starting")

    def _service_op(self, op: control.Op, doing: str) -> None:
        name = self.selected()
        if name is None:
            return
        self.say(f"{name}: {doing}…")

        def work() -> str:
            result = control.request(self.paths.socket, op, service=name, wait=120, timeout=135)
            message = f" ({result['message']})" if result.get("message") else ""
            return f"{name}: {result['state']}{message}"

        self._in_background(work)

    def action_tunnel(self) -> None:
        status = self.stack.status
        tunnel = status.tunnel if status else None
        is_open = tunnel is not None and tunnel.state == "open"
        self.say("tunnel: closing…" if is_open else "tunnel: opening…")

        def work() -> str:
            if is_open:
                env = {key: os.environ[key] for key in ("AIRADEV_TWILIO_API_BASE",) if key in os.environ}
                result = control.request(
                    self.paths.socket, control.Op.TUNNEL, action=control.TunnelAction.CLOSE, why="airadev dash",
                    env=env, timeout=120,
                )  # fmt: skip
                return closed(result)
            from airadev.rewiring import ENV_KEYS

            env = {key: os.environ[key] for key in ENV_KEYS if key in os.environ}
            opened = control.request(
                self.paths.socket, control.Op.TUNNEL, action=control.TunnelAction.OPEN, domain="", region="",
                keep=False, env=env, timeout=180,
            )  # fmt: skip
            return f"tunnel: open at {opened.get('address')}"

        self._in_background(work)

    def action_verify(self) -> None:
        status = self.stack.status
        tunnel = status.tunnel if status else None
        if tunnel is None or tunnel.state != "open":
            self.say("verify: no tunnel is open (t opens one)")
            return
        address = tunnel.address
        self.say(f"verify: calling {address}…")

        def work() -> str:
            from airadev.operations.tunnel import record, verdict, verify

            try:
                result = verify(address, self.load_config())
            except AiradevError as exc:  # no answer at all: the last verify is this failure
                record(self.paths, address, {}, (exc.message, exc.fix))
                raise
            wrong = verdict(result)
            record(self.paths, address, result, wrong)  # the panel shows it from the state file
            kind = "TwiML" if result["twiml"] else "not TwiML"
            return f"verify: {result['status']} in {result['ms']:.0f} ms, {kind}" + (f" ✗ {wrong[0]}" if wrong else "")

        self._in_background(work)

    def action_doctor(self) -> None:
        name = self.selected()
        self.say("doctor: checking…")

        def work() -> str:
            from airadev.dash.findings import report

            text = report(self.paths.root, self.load_config, name)
            self.call_from_thread(self.push_screen, Findings(text))
            return "doctor: done (Esc closes)"

        self._in_background(work)

    def _in_background(self, work: Callable[[], str]) -> None:
        """``work`` on a thread of its own, its outcome said when it ends. A daemon thread: quitting
        does not wait for a restart that takes a minute (the supervisor carries it out anyway)."""

        def run() -> None:
            try:
                said = work()
            except AiradevError as exc:
                said = f"{exc.message}" + (f" ({exc.fix})" if exc.fix else "")
            with contextlib.suppress(RuntimeError):  # the app has ended meanwhile
                self.call_from_thread(self.say, said)

        threading.Thread(target=run, daemon=True).start()


def closed(result: dict[str, Any]) -> str:
    """What closing the tunnel did, in one line (render.tunnel_closed's words)."""
    if result.get("failed"):
        return f"tunnel: closed; could not put back {'; '.join(result['failed'])}: `airadev down` tries again"
    if result.get("kept"):
        return "tunnel: closed; the rewiring was kept (--keep)"
    rest = list(result.get("left") or []) + list(result.get("waiting") or [])
    return "tunnel: closed; " + ("; ".join(rest) if rest else "everything is put back")


class Pane(Log):
    """The log pane: it follows the newest line until scrolled back, and goes on following when the
    space around it changes (textual's Log follows only while it is at its end, which a pane made
    shorter by the search box or a taller panel above it is not)."""

    following = True

    def follow(self) -> None:
        self.following = True
        self.scroll_end(animate=False)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.following = new >= self.max_scroll_y

    def on_resize(self) -> None:
        if self.following:
            self.scroll_end(animate=False)

    def write_lines(self, lines: Any, scroll_end: bool | None = None) -> Any:
        return super().write_lines(lines, scroll_end=self.following if scroll_end is None else scroll_end)
