"""What the tunnel rewires to its address, and the journal that makes it undoable: used by the
supervisor (which opens and closes the tunnel), by the database's runtime (putting back a dead
run's rows) and by `down`, `up` and `doctor`.

Every change is written to the journal (``.airadev/tunnel.json``) before it is made, and marked
once it is made and read back. Undoing walks the journal backwards; after a crash or a SIGKILL
the next `airadev tunnel`, `up` or `down` finds the journal and puts everything back. A value
that someone else changed since is left alone (and said so), never overwritten.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airadev.errors import AiradevError
from airadev.integrations import envfile
from airadev.model import Config, TwilioSettings
from airadev.state import Paths, write_json_atomic


# What of the environment the tunnel reads. The `tunnel` command sends its own values of these
# to the supervisor, so that `NGROK_AUTHTOKEN=... airadev tunnel` works on a stack started
# without them.
ENV_KEYS = (
    "NGROK_AUTHTOKEN",
    "PYNGROK_NGROK_PATH",
    "PATH",
    "XDG_CONFIG_HOME",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_TEST_NUMBER",
    "AIRADEV_TWILIO_API_BASE",
)


def tunnel_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(overrides or {})}


def twilio_credentials(config: Config, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: from the env files of the service the tunnel
    exposes (or the one named in twilio.credentials_from), else from the environment."""
    env = os.environ if env is None else env
    name = config.twilio.credentials_from
    service = config.get(name) if name else config.find(config.tunnel.service, ("voice", "voice-agent"))
    values: dict[str, str] = {}
    for path in service.env_files if service else ():
        if path.is_file():
            values.update(envfile.read(path))
    sid = values.get("TWILIO_ACCOUNT_SID") or env.get("TWILIO_ACCOUNT_SID", "")
    token = values.get("TWILIO_AUTH_TOKEN") or env.get("TWILIO_AUTH_TOKEN", "")
    return (sid, token) if sid and token else None


def test_number(config: Config, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return config.twilio.test_number or env.get("TWILIO_TEST_NUMBER", "")


def webhook_urls(address: str, settings: TwilioSettings) -> dict[str, str]:
    """The number's URLs the tunnel sets (with their methods): those whose path is not false."""
    base = address.rstrip("/")
    wanted = {}
    for url, method, path in (
        ("voice_url", "voice_method", settings.voice_path),
        ("sms_url", "sms_method", settings.sms_path),
        ("status_callback", "status_callback_method", settings.status_path),
    ):
        if path:
            wanted[url], wanted[method] = base + path, "POST"
    return wanted


def rewired_names(wanted: Mapping[str, str]) -> str:
    """ "voice, sms and status" of the URLs in ``wanted``."""
    names = [
        n for n, key in (("voice", "voice_url"), ("sms", "sms_url"), ("status", "status_callback")) if key in wanted
    ]
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1] if names else "no"


# --- the journal -------------------------------------------------------------------------------

# Within one supervisor, the tunnel and the database's runtime (putting back a dead run's rows)
# may both reach for the journal from worker threads: one at a time.
JOURNAL_LOCK = threading.RLock()


FORGET_FIX = (
    "run `airadev tunnel --stop` (or `airadev down`) once Twilio answers again; if it never will, "
    "`airadev tunnel --forget` shows what stays rewired and drops the record"
)


def still_rewired(journal: Journal) -> list[str]:
    """What a journal's pending steps left rewired, one line each: where, and to what."""
    lines = []
    for step in journal.pending():
        if step["kind"] == "envfile":
            edit = step["edit"]
            lines.append(f"{edit['path']}: {edit['name']} = {edit.get('value') or journal.data.get('public_url', '')}")
        elif step["kind"] == "db":
            urls = ", ".join(f"{k} → {v}" for k, v in step["after"].items() if v != step["before"].get(k))
            lines.append(f"business_numbers {step['phone_number']} (local database): {urls}")
        else:
            urls = ", ".join(
                f"{k} → {v}"
                for k, v in step["after"].items()
                if not k.endswith("method") and v != step["before"].get(k)
            )
            lines.append(
                f"Twilio {step['phone_number']} (account {step['account_sid']}, at {step.get('api_base') or 'api.twilio.com'}): {urls}"
            )
    return lines


def forget(paths: Paths) -> list[str]:
    """Drop the journal (what it says stays as it is); what it held, as ``still_rewired``."""
    with JOURNAL_LOCK:
        journal = Journal.load(paths)
        if journal is None:
            return []
        lines = still_rewired(journal)
        journal.remove()
        return lines


class Journal:
    """The write-ahead record of a tunnel's rewiring. One owner at a time (the supervisor, or
    a CLI holding the run lock when no supervisor runs)."""

    FILE = "tunnel.json"

    def __init__(self, paths: Paths, data: dict[str, Any]) -> None:
        self.paths = paths
        self.data = data

    @classmethod
    def path_of(cls, paths: Paths) -> Path:
        return paths.dir / cls.FILE

    @classmethod
    def new(cls, paths: Paths, public_url: str, agent_pid: int | None, keep: bool, marker: str = "") -> Journal:
        with JOURNAL_LOCK:
            return cls._new(paths, public_url, agent_pid, keep, marker)

    @classmethod
    def _new(cls, paths: Paths, public_url: str, agent_pid: int | None, keep: bool, marker: str) -> Journal:
        old = cls.load(paths)
        if old is not None and old.pending() and all(step["kind"] == "db" for step in old.pending()):
            raise AiradevError(
                "an earlier tunnel's business_numbers row waits for the local database to be put back",
                "start the database (`airadev up`); it puts the row back by itself",
            )
        if old is not None and old.pending():
            # Never drop what an earlier tunnel could not put back: it is the only record.
            raise AiradevError(
                "an earlier tunnel's rewiring is still in the journal, not put back",
                FORGET_FIX,
            )
        journal = cls(
            paths,
            {
                "schema": 1,
                "public_url": public_url,
                "agent_pid": agent_pid,
                "marker": marker,
                "opened_at": time.time(),
                "keep": keep,
                "steps": [],
            },
        )
        journal.save()
        return journal

    @classmethod
    def load(cls, paths: Paths) -> Journal | None:
        try:
            data = json.loads(cls.path_of(paths).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return cls(paths, data) if isinstance(data, dict) and data.get("schema") == 1 else None

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.data["steps"]

    def save(self) -> None:
        self.paths.ensure()
        write_json_atomic(self.path_of(self.paths), self.data, durable=True)

    def add(self, step: dict[str, Any]) -> dict[str, Any]:
        step["status"] = "planned"
        self.steps.append(step)
        self.save()
        return step

    def mark(self, step: dict[str, Any], status: str, **extra: Any) -> None:
        step["status"] = status
        step.update(extra)
        self.save()

    def pending(self) -> list[dict[str, Any]]:
        """Steps that may have changed something and are not undone yet."""
        return [s for s in self.steps if s["status"] in ("planned", "applied")]

    def remove(self) -> None:
        self.path_of(self.paths).unlink(missing_ok=True)

    def detach(self) -> None:
        """Mark it as no live tunnel's: what is left in it, the database's runtime puts back."""
        with JOURNAL_LOCK:
            if self.path_of(self.paths).exists():
                self.data["marker"] = ""
                self.save()


class StripeJournal(Journal):
    """The record of the Stripe listener's signing secret written into the UI's env file
    (runtimes/stripe.py): put back when the listener stops, or by the next `up`/`down` after a
    crash, as a tunnel's."""

    FILE = "stripe.json"


# --- applying and undoing --------------------------------------------------------------------------


def rewire_env_file(journal: Journal, path: Path, variable: str, address: str) -> bool:
    """Set ``variable`` to ``address`` in ``path``, journaled first, read back after. Returns
    whether the file changed (it may already hold the address: a reserved domain)."""
    with envfile.WRITE_LOCK:  # no other rewrite of the file between the plan and the write
        planned = envfile.plan_file(path, variable, address)
        step = journal.add({"kind": "envfile", "edit": planned.edit.as_json()})
        envfile.apply(planned, journal.paths.dir / "backups")
        if envfile.read_value(path, variable) != address:
            raise AiradevError(
                f"{path}: {variable} does not read back as the tunnel address",
                "look at the file; it is put back as it was",
            )
    journal.mark(step, "applied")
    return planned.changes


def rewire_twilio(journal: Journal, numbers: Any, number: Any, wanted: dict[str, str]) -> dict[str, Any]:
    from airadev.integrations.twilio import Wiring

    step = journal.add(
        {
            "kind": "twilio",
            "account_sid": numbers.account_sid,
            "number_sid": number.sid,
            "phone_number": number.phone_number,
            "api_base": numbers.base,
            # Only the fields the tunnel sets: undo compares and restores those, never one it
            # promised to leave alone (sms_path = false) that its owner changed meanwhile.
            "before": {key: number.wiring.as_dict()[key] for key in wanted},
            "after": dict(wanted),
        }
    )
    numbers.update(number.sid, Wiring(**{**number.wiring.as_dict(), **wanted}))  # reads back, raises if it differs
    journal.mark(step, "applied")
    return step


def rewire_database(journal: Journal, dsn: str, number: str, wanted: dict[str, str]) -> str:
    """The test number's row in the local database's ``business_numbers`` gets the same three
    URLs as Twilio. Returns why it was not touched, or "" when it was."""
    from airadev.integrations import database

    columns = {"voice_url": "voice_url", "sms_url": "sms_url", "status_callback": "status_callback_url"}
    after: dict[str, str | None] = {column: wanted[key] for key, column in columns.items() if key in wanted}
    if not after:
        return "every webhook path is false: not touched"
    with database.connect(dsn) as conn:
        current = database.number_urls(conn, number)
        if current is None:
            return f"no business_numbers row for {number}: not touched"
        before = {column: current[column] for column in after}  # only the columns it sets
        step = journal.add({"kind": "db", "dsn": dsn, "phone_number": number, "before": before, "after": after})
        with conn.transaction():
            # reads back, raises (and rolls back) if it differs
            database.set_number_urls(conn, number, {**current, **after})
        journal.mark(step, "applied")
    return ""


@dataclass
class Undone:
    restored: list[str]
    left: list[str]  # changed by someone else since: left alone
    failed: list[str]  # could not be put back now (Twilio unreachable, ...): still in the journal
    # The local database is not running (it went down with a dead run): its row is put back when
    # it runs again (its runtime does that once it is ready). Still in the journal.
    waiting: list[str] = field(default_factory=list)


def undo(journal: Journal, config: Config, env: Mapping[str, str] | None = None) -> Undone:
    """Put back every pending step, newest first. Steps that cannot be put back now stay in the
    journal for the next try; the journal goes once nothing is pending."""
    with JOURNAL_LOCK:
        return _undo(journal, config, env)


def _undo(journal: Journal, config: Config, env: Mapping[str, str] | None) -> Undone:
    result = Undone([], [], [])
    for step in reversed(journal.pending()):
        try:
            outcome, what = _undo_step(step, config, env)
        except AiradevError as exc:
            if step["kind"] == "db" and exc.message.startswith("cannot connect"):
                result.waiting.append(
                    f"{_describe(step)}: put back once the database runs again (the next `airadev up` does it)"
                )
                continue
            result.failed.append(f"{_describe(step)}: {exc.message} ({exc.fix})")
            continue
        journal.mark(step, outcome)
        (result.restored if outcome == "restored" else result.left).append(what)
    if not journal.pending():
        journal.remove()
    return result


def _describe(step: dict[str, Any]) -> str:
    if step["kind"] == "envfile":
        return f"{step['edit']['path']} ({step['edit']['name']})"
    if step["kind"] == "db":
        return f"business_numbers {step['phone_number']}"
    return f"Twilio {step['phone_number']}"


def _undo_step(step: dict[str, Any], config: Config, env: Mapping[str, str] | None) -> tuple[str, str]:
    if step["kind"] == "envfile":
        edit = envfile.EnvEdit.from_json(step["edit"])
        if envfile.undo(edit):
            return "restored", f"{edit.path}: {edit.name} put back"
        if step["status"] == "planned":  # journaled, but the write never happened
            return "restored", f"{edit.path}: {edit.name} was never changed"
        return "left", f"{edit.path}: {edit.name} was changed since; left as it is"
    if step["kind"] == "db":
        if config.database() is None:  # it can never run again here: nothing to put back into
            return (
                "left",
                f"business_numbers {step['phone_number']}: the local database is no longer "
                "part of the stack; its row is left as it is",
            )
        return _undo_database(step)
    from airadev.integrations.twilio import API_BASE_ENV, TwilioNumbers

    credentials = twilio_credentials(config, env)
    if credentials is None or credentials[0] != step["account_sid"]:
        raise AiradevError(
            f"no credentials for the Twilio account {step['account_sid']}",
            "put TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN back in the voice agent's .env",
        )
    # Where the step was applied first; if that does not answer and AIRADEV_TWILIO_API_BASE names
    # another server (a Twilio-compatible one that moved), there, trusted only if the number is
    # as the tunnel left it (a server that never had the change must not clear the record).
    override = (os.environ if env is None else env).get(API_BASE_ENV) or ""
    tried = []
    for base, strict in ((step.get("api_base"), False), (override, True)):
        if strict and (not override or override == step.get("api_base")):
            break
        numbers = TwilioNumbers(*credentials, timeout=config.twilio.timeout, base_url=base)
        try:
            return _undo_twilio(step, numbers, strict)
        except AiradevError as failed:
            tried.append((numbers.base, failed))
    base, last = tried[-1]
    raise AiradevError(
        f"{last.message} (Twilio at {base})",
        f"{last.fix}; if that server moved, set {API_BASE_ENV} to where it is now; if it is gone for good, "
        "`airadev tunnel --forget` drops the record",
    )


def _undo_twilio(step: dict[str, Any], numbers: Any, strict: bool) -> tuple[str, str]:
    """Compare and put back only the fields the step set (older journals: all six)."""
    from airadev.integrations.twilio import Wiring

    wiring = numbers.fetch(step["number_sid"]).wiring.as_dict()
    current = {key: wiring[key] for key in step["after"]}
    what = f"Twilio {step['phone_number']}"
    if strict and current != step["after"]:
        raise AiradevError(
            f"{what} is not as the tunnel left it at {numbers.base}: not put back there",
            "point AIRADEV_TWILIO_API_BASE at the server the tunnel rewired",
        )
    if current == step["before"]:
        return "restored", f"{what}: already as it was"
    if current != step["after"]:
        return "left", f"{what}: changed since; left as it is"
    numbers.update(step["number_sid"], Wiring(**{**wiring, **step["before"]}))
    return "restored", f"{what}: webhooks put back"


def _undo_database(step: dict[str, Any]) -> tuple[str, str]:
    from airadev.integrations import database

    what = f"business_numbers {step['phone_number']}"
    with database.connect(step["dsn"]) as conn:
        row = database.number_urls(conn, step["phone_number"])
        current = {column: row[column] for column in step["after"]} if row is not None else None
        if current == step["before"]:
            return "restored", f"{what}: already as it was"
        if row is None or current != step["after"]:
            return "left", f"{what}: changed since; left as it is"
        with conn.transaction():
            database.set_number_urls(conn, step["phone_number"], {**row, **step["before"]})
    return "restored", f"{what}: webhook URLs put back"


def recover_database_rows(paths: Paths, marker: str) -> list[str]:
    """Put back the business_numbers rows a dead run's tunnel left rewired: called by the
    database's runtime once it is ready again. A journal of this run (``marker``) is its live
    tunnel's, and left alone."""
    with JOURNAL_LOCK:
        journal = Journal.load(paths)
        if journal is None or journal.data.get("marker") == marker or journal.data.get("keep"):
            return []
        return _recover_rows(journal)


def _recover_rows(journal: Journal) -> list[str]:
    done = []
    for step in reversed(journal.pending()):
        if step["kind"] != "db":
            continue
        try:
            outcome, what = _undo_database(step)
        except AiradevError:
            continue
        journal.mark(step, outcome)
        done.append(what)
    if not journal.pending():
        journal.remove()
    return done


def recover(
    paths: Paths, config: Config, env: Mapping[str, str] | None = None, *, stripe: bool = False
) -> Undone | None:
    """After a crash: put back what a dead run's tunnel left rewired (``stripe``: and its Stripe
    listener's secret; never from a live supervisor, whose listener may be running). Call only
    under the run lock, or from the supervisor that owns the journal."""
    with JOURNAL_LOCK:
        return _recover(paths, config, env, stripe)


def recover_stripe(paths: Paths, config: Config) -> Undone | None:
    """Put back what a Stripe listener of a dead run left in the UI's env file (not a tunnel's:
    the running stack may have one)."""
    with JOURNAL_LOCK:
        journal = StripeJournal.load(paths)
        return _undo(journal, config, None) if journal is not None else None


def _recover(paths: Paths, config: Config, env: Mapping[str, str] | None, stripe: bool) -> Undone | None:
    found = recover_stripe(paths, config) if stripe else None  # the listener's secret in the UI's env file
    journal = Journal.load(paths)
    if journal is None:
        return found
    if journal.data.get("keep"):
        journal.remove()
        return found
    undone = _undo(journal, config, env)
    if found is not None:
        undone = Undone(found.restored + undone.restored, found.left + undone.left, found.failed + undone.failed)
    return undone


# --- the signed test call ------------------------------------------------------------------------
