"""The tunnel's rewiring journal and its undo, on real files, without a tunnel.

Each change is journaled before it is made and marked once it is made; undo walks the journal
backwards; what cannot be put back stays in the journal; after a crash, `recover` (the next
`tunnel`, `up` or `down`) replays it from the file. Twilio is tests/fakes/twilio_api.py, an
in-process HTTP server that twilio-python talks to unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from airadev.errors import AiradevError
from airadev.integrations import envfile
from airadev.integrations.twilio import TwilioNumbers
from airadev.model import Config, DatabaseSpec, Runtime, Service, TunnelSettings, TwilioSettings
from airadev import rewiring as tunnel
from airadev.operations.tunnel import is_twiml
from airadev.rewiring import Journal, recover, recover_database_rows, rewire_env_file, rewire_twilio, undo
from airadev.state import Paths
from tests.fakes.twilio_api import FakeTwilio

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "fedcba9876543210fedcba9876543210"
NUMBER = "+15551230000"
ADDRESS = "https://abc123.ngrok.app"
VARIABLE = "VOICE_AGENT_SERVICE_URL"
# CRLF, `export`, quotes and a comment on the line, a line after it, no final newline.
ORIGINAL = (
    b"# AiRa UI\r\nexport VOICE_AGENT_SERVICE_URL='http://localhost:8000'  # local agent\r\n"
    b"NEXT_PUBLIC_APP_URL=http://localhost:3000"
)
BEFORE = {
    "voice_url": "https://old.example/voice",
    "voice_method": "POST",
    "sms_url": "https://old.example/sms",
    "sms_method": "GET",
    "status_callback": "",
    "status_callback_method": "POST",
}
ENV = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN}  # the `tunnel` command's environment
NO_ENV: dict[str, str] = {}


@pytest.fixture(scope="module")
def twilio_server() -> Iterator[FakeTwilio]:
    server = FakeTwilio(SID, TOKEN).start()  # one per file: its shutdown takes half a second
    yield server
    server.stop()


@pytest.fixture
def twilio(twilio_server: FakeTwilio) -> FakeTwilio:
    twilio_server.numbers.clear()
    twilio_server.requests.clear()
    twilio_server.fail_with = None
    twilio_server.add_number(NUMBER, **BEFORE)
    return twilio_server


def workspace(root: Path, *, credentials: bool = False, database: bool = False) -> tuple[Config, Paths, Path]:
    (root / "ui").mkdir()
    (root / "voice").mkdir()
    env_local = root / "ui" / ".env.local"
    env_local.write_bytes(ORIGINAL)
    voice_env = root / "voice" / ".env"
    voice_env.write_text(
        f"TWILIO_ACCOUNT_SID={SID}\nTWILIO_AUTH_TOKEN={TOKEN}\n" if credentials else "LOG_LEVEL=debug\n"
    )
    services = [
        Service(
            name="voice-agent",
            aliases=("voice",),
            command=("x",),
            cwd=root / "voice",
            env_files=(voice_env,),
            port=8000,
        ),
        Service(
            name="aira-ui",
            aliases=("ui",),
            command=("x",),
            cwd=root / "ui",
            env_files=(env_local,),
            load_env_files=False,
        ),
    ]
    if database:
        services.append(
            Service(name="db", command=(), cwd=root, runtime=Runtime.POSTGRES, port=54322, database=DatabaseSpec())
        )
    config = Config(
        root=root, file=root / "airadev.toml", services=tuple(services), twilio=TwilioSettings(test_number=NUMBER)
    )
    return config, Paths(root), env_local


def on_disk(paths: Paths) -> dict:  # type: ignore[type-arg]
    return json.loads(Journal.path_of(paths).read_text())


# --- the env file ---------------------------------------------------------------------------------


def test_undo_puts_the_env_file_back_byte_for_byte(tmp_path: Path) -> None:
    config, paths, env_local = workspace(tmp_path)
    journal = Journal.new(paths, ADDRESS, agent_pid=None, keep=False)
    assert rewire_env_file(journal, env_local, VARIABLE, ADDRESS) is True
    rewired = env_local.read_bytes()
    assert envfile.read_value(env_local, VARIABLE) == ADDRESS
    assert rewired.startswith(
        b"# AiRa UI\r\nexport VOICE_AGENT_SERVICE_URL='https://abc123.ngrok.app'  # local agent\r\n"
    )
    assert [s["status"] for s in on_disk(paths)["steps"]] == ["applied"]
    assert list((paths.dir / "backups").iterdir()), "a backup of the original is kept"

    result = undo(journal, config, NO_ENV)
    assert env_local.read_bytes() == ORIGINAL
    assert result.restored == [f"{env_local}: {VARIABLE} put back"]
    assert result.left == result.failed == result.waiting == []
    assert not Journal.path_of(paths).exists(), "the journal goes once nothing is pending"


def test_a_tunnel_s_recovery_leaves_a_running_stripe_listener_s_secret_and_up_s_puts_it_back(tmp_path: Path) -> None:
    """The tunnel recovers what an earlier tunnel left while the stack runs: the Stripe
    listener's secret in the same file is the live run's, not a leftover. `up` and `down`
    (stripe=True) run with no supervisor: then it is one, and goes back."""
    config, paths, env_local = workspace(tmp_path)
    journal = tunnel.StripeJournal.new(paths, "", None, False)
    rewire_env_file(journal, env_local, "STRIPE_WEBHOOK_SECRET", "whsec_" + "5" * 40)
    wired = env_local.read_bytes()
    recover(paths, config, NO_ENV)
    assert env_local.read_bytes() == wired and tunnel.StripeJournal.path_of(paths).exists()
    recover(paths, config, NO_ENV, stripe=True)
    assert env_local.read_bytes() == ORIGINAL and not tunnel.StripeJournal.path_of(paths).exists()


def test_an_appended_variable_is_taken_out_again(tmp_path: Path) -> None:
    config, paths, env_local = workspace(tmp_path)
    original = b"NEXT_PUBLIC_APP_URL=http://localhost:3000\n"
    env_local.write_bytes(original)
    journal = Journal.new(paths, ADDRESS, None, False)
    rewire_env_file(journal, env_local, VARIABLE, ADDRESS)
    assert env_local.read_bytes() == original + f"{VARIABLE}={ADDRESS}\n".encode()
    # Someone adds a line after ours meanwhile: it stays, ours goes.
    env_local.write_bytes(env_local.read_bytes() + b"STRIPE_PUBLIC=pk_1\n")
    undo(journal, config, NO_ENV)
    assert env_local.read_bytes() == original + b"STRIPE_PUBLIC=pk_1\n"


def test_a_value_changed_since_is_left_alone_and_said(tmp_path: Path) -> None:
    config, paths, env_local = workspace(tmp_path)
    journal = Journal.new(paths, ADDRESS, None, False)
    rewire_env_file(journal, env_local, VARIABLE, ADDRESS)
    mine = env_local.read_bytes().replace(ADDRESS.encode(), b"http://192.168.1.5:8000")
    env_local.write_bytes(mine)

    result = undo(journal, config, NO_ENV)
    assert env_local.read_bytes() == mine, "someone's own value is never overwritten"
    assert result.left == [f"{env_local}: {VARIABLE} was changed since; left as it is"]
    assert result.restored == []
    assert not Journal.path_of(paths).exists(), "left alone is settled: nothing pending"


def test_other_lines_edited_since_survive_the_undo(tmp_path: Path) -> None:
    config, paths, env_local = workspace(tmp_path)
    journal = Journal.new(paths, ADDRESS, None, False)
    rewire_env_file(journal, env_local, VARIABLE, ADDRESS)
    edited = env_local.read_bytes().replace(b"localhost:3000", b"localhost:3001")
    env_local.write_bytes(edited)
    undo(journal, config, NO_ENV)
    assert env_local.read_bytes() == ORIGINAL.replace(b"localhost:3000", b"localhost:3001")


def test_the_address_already_there_changes_nothing(tmp_path: Path) -> None:
    config, paths, env_local = workspace(tmp_path)
    env_local.write_bytes(f"{VARIABLE}={ADDRESS}\n".encode())  # a reserved domain, wired before
    journal = Journal.new(paths, ADDRESS, None, False)
    assert rewire_env_file(journal, env_local, VARIABLE, ADDRESS) is False
    assert not (paths.dir / "backups").exists()
    assert undo(journal, config, NO_ENV).left == []
    assert env_local.read_bytes() == f"{VARIABLE}={ADDRESS}\n".encode()


def test_a_missing_env_file_fails_before_anything_is_journaled(tmp_path: Path) -> None:
    config, paths, env_local = workspace(tmp_path)
    env_local.unlink()
    journal = Journal.new(paths, ADDRESS, None, False)
    with pytest.raises(AiradevError, match="not found"):
        rewire_env_file(journal, env_local, VARIABLE, ADDRESS)
    assert on_disk(paths)["steps"] == []


# --- a step that cannot be put back ---------------------------------------------------------------


def test_a_failed_step_stays_in_the_journal_and_a_later_undo_finishes(tmp_path: Path, twilio: FakeTwilio) -> None:
    config, paths, env_local = workspace(tmp_path)
    journal = Journal.new(paths, ADDRESS, None, False)
    rewire_env_file(journal, env_local, VARIABLE, ADDRESS)
    numbers = TwilioNumbers(SID, TOKEN, base_url=twilio.base_url, timeout=5)
    wanted = tunnel.webhook_urls(ADDRESS, config.twilio)
    rewire_twilio(journal, numbers, numbers.lookup(NUMBER), wanted)
    assert twilio.number(NUMBER)["voice_url"] == ADDRESS + "/webhooks/twilio/call"

    twilio.fail_with = 503  # Twilio is down when the tunnel closes
    result = undo(journal, config, ENV)
    assert env_local.read_bytes() == ORIGINAL, "what can be put back is"
    assert len(result.failed) == 1 and result.failed[0].startswith(f"Twilio {NUMBER}: ")
    pending = Journal.load(paths)
    assert pending is not None
    assert [(s["kind"], s["status"]) for s in pending.steps] == [("envfile", "restored"), ("twilio", "applied")]
    with pytest.raises(AiradevError, match="still in the journal"):
        Journal.new(paths, "https://other.ngrok.app", None, False)  # never opened over it

    twilio.fail_with = None
    again = recover(paths, config, ENV)  # `tunnel --stop` or `down`, another process
    assert again is not None and again.restored == [f"Twilio {NUMBER}: webhooks put back"]
    assert {k: twilio.number(NUMBER)[k] for k in BEFORE} == BEFORE
    assert not Journal.path_of(paths).exists()


def test_without_credentials_twilio_is_not_touched_and_the_step_kept(tmp_path: Path, twilio: FakeTwilio) -> None:
    config, paths, _ = workspace(tmp_path)
    journal = Journal.new(paths, ADDRESS, None, False)
    numbers = TwilioNumbers(SID, TOKEN, base_url=twilio.base_url, timeout=5)
    rewire_twilio(journal, numbers, numbers.lookup(NUMBER), tunnel.webhook_urls(ADDRESS, config.twilio))
    posts = sum(1 for r in twilio.requests if r[0] == "POST")
    result = undo(journal, config, NO_ENV)
    assert result.failed == [
        f"Twilio {NUMBER}: no credentials for the Twilio account {SID} "
        "(put TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN back in the voice agent's .env)"
    ]
    assert sum(1 for r in twilio.requests if r[0] == "POST") == posts
    assert Journal.load(paths) is not None


def test_twilio_changed_since_is_left_alone(tmp_path: Path, twilio: FakeTwilio) -> None:
    config, paths, _ = workspace(tmp_path, credentials=True)  # credentials from the voice agent's .env
    journal = Journal.new(paths, ADDRESS, None, False)
    numbers = TwilioNumbers(SID, TOKEN, base_url=twilio.base_url, timeout=5)
    rewire_twilio(journal, numbers, numbers.lookup(NUMBER), tunnel.webhook_urls(ADDRESS, config.twilio))
    twilio.number(NUMBER)["voice_url"] = "https://someone-else.example/voice"
    result = undo(journal, config, NO_ENV)
    assert result.left == [f"Twilio {NUMBER}: changed since; left as it is"]
    assert twilio.number(NUMBER)["voice_url"] == "https://someone-else.example/voice"
    assert not Journal.path_of(paths).exists()


# --- replay after a crash ------------------------------------------------------------------------


def test_replay_after_a_crash_between_the_write_and_its_mark(tmp_path: Path) -> None:
    config, paths, env_local = workspace(tmp_path)
    journal = Journal.new(paths, ADDRESS, None, False, marker="dead.run")
    # What rewire_env_file does, cut short by a SIGKILL before the step is marked applied.
    planned = envfile.plan_file(env_local, VARIABLE, ADDRESS)
    journal.add({"kind": "envfile", "edit": planned.edit.as_json()})
    envfile.apply(planned, paths.dir / "backups")
    del journal
    assert [s["status"] for s in on_disk(paths)["steps"]] == ["planned"]

    result = recover(paths, config, NO_ENV)
    assert result is not None and result.restored == [f"{env_local}: {VARIABLE} put back"]
    assert env_local.read_bytes() == ORIGINAL
    assert not Journal.path_of(paths).exists()
    assert recover(paths, config, NO_ENV) is None, "nothing left to replay"


def test_replay_of_a_step_journaled_but_never_written(tmp_path: Path) -> None:
    config, paths, env_local = workspace(tmp_path)
    journal = Journal.new(paths, ADDRESS, None, False)
    planned = envfile.plan_file(env_local, VARIABLE, ADDRESS)
    journal.add({"kind": "envfile", "edit": planned.edit.as_json()})  # killed before the write
    result = recover(paths, config, NO_ENV)
    assert result is not None and result.restored == [f"{env_local}: {VARIABLE} was never changed"]
    assert env_local.read_bytes() == ORIGINAL


def test_replay_of_twilio_after_a_crash(tmp_path: Path, twilio: FakeTwilio) -> None:
    config, paths, env_local = workspace(tmp_path, credentials=True)
    journal = Journal.new(paths, ADDRESS, None, False)
    rewire_env_file(journal, env_local, VARIABLE, ADDRESS)
    numbers = TwilioNumbers(SID, TOKEN, base_url=twilio.base_url, timeout=5)
    rewire_twilio(journal, numbers, numbers.lookup(NUMBER), tunnel.webhook_urls(ADDRESS, config.twilio))
    del journal  # the supervisor is killed with the tunnel open

    result = recover(paths, config, NO_ENV)
    assert result is not None
    # Newest first: Twilio, then the env file.
    assert result.restored == [f"Twilio {NUMBER}: webhooks put back", f"{env_local}: {VARIABLE} put back"]
    assert {k: twilio.number(NUMBER)[k] for k in BEFORE} == BEFORE
    assert env_local.read_bytes() == ORIGINAL


def test_a_kept_tunnel_is_not_undone_after_a_crash(tmp_path: Path) -> None:
    config, paths, env_local = workspace(tmp_path)
    journal = Journal.new(paths, ADDRESS, None, keep=True)  # `tunnel --keep`
    rewire_env_file(journal, env_local, VARIABLE, ADDRESS)
    assert recover(paths, config, NO_ENV) is None
    assert envfile.read_value(env_local, VARIABLE) == ADDRESS
    assert not Journal.path_of(paths).exists()


@pytest.mark.parametrize("content", ["", "{not json", json.dumps({"schema": 2, "steps": []}), "[1, 2]"])
def test_an_unreadable_journal_is_no_journal(tmp_path: Path, content: str) -> None:
    config, paths, _ = workspace(tmp_path)
    paths.ensure()
    Journal.path_of(paths).write_text(content)
    assert Journal.load(paths) is None
    assert recover(paths, config, NO_ENV) is None


# --- the local database's row ----------------------------------------------------------------------


def db_journal(paths: Paths, marker: str = "dead.run", keep: bool = False) -> Journal:
    journal = Journal.new(paths, ADDRESS, None, keep, marker=marker)
    step = journal.add(
        {
            "kind": "db",
            "dsn": "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=1",
            "phone_number": NUMBER,
            "before": {"voice_url": "a"},
            "after": {"voice_url": "b"},
        }
    )
    journal.mark(step, "applied")
    return journal


def test_a_row_of_a_database_that_is_down_waits_in_the_journal(tmp_path: Path) -> None:
    config, paths, _ = workspace(tmp_path, database=True)
    journal = db_journal(paths)
    result = undo(journal, config, NO_ENV)
    assert result.waiting == [
        f"business_numbers {NUMBER}: put back once the database runs again (the next `airadev up` does it)"
    ]
    assert result.failed == []
    assert Journal.load(paths) is not None
    with pytest.raises(AiradevError, match="business_numbers row waits for the local database"):
        Journal.new(paths, ADDRESS, None, False)
    assert recover_database_rows(paths, "dead.run") == [], "its own run's journal is the live tunnel's"
    assert recover_database_rows(paths, "next.run") == [], "the database does not answer: still waiting"
    assert Journal.load(paths) is not None


def test_a_row_of_a_database_no_longer_in_the_stack_is_left(tmp_path: Path) -> None:
    config, paths, _ = workspace(tmp_path, database=False)
    result = undo(db_journal(paths), config, NO_ENV)
    assert result.left == [
        f"business_numbers {NUMBER}: the local database is no longer part of the stack; its row is left as it is"
    ]
    assert not Journal.path_of(paths).exists()


def test_detach_hands_the_journal_to_the_next_run(tmp_path: Path) -> None:
    _, paths, _ = workspace(tmp_path, database=True)
    journal = db_journal(paths, marker="this.run")
    journal.detach()
    assert on_disk(paths)["marker"] == ""
    journal.remove()
    journal.detach()  # gone: nothing is written back
    assert not Journal.path_of(paths).exists()


# --- what is rewired where -------------------------------------------------------------------------


def test_services_and_files_are_found_by_name_or_alias(tmp_path: Path) -> None:
    config, _, env_local = workspace(tmp_path)
    assert config.voice_service().name == "voice-agent"
    ui = config.ui_service()
    assert ui is not None and ui.name == "aira-ui"
    assert config.ui_env_file() == env_local
    assert tunnel.twilio_credentials(config, ENV) == (SID, TOKEN)
    assert tunnel.twilio_credentials(config, NO_ENV) is None
    assert tunnel.test_number(config, NO_ENV) == NUMBER
    assert tunnel.webhook_urls(ADDRESS + "/", config.twilio) == {
        "voice_url": ADDRESS + "/webhooks/twilio/call",
        "voice_method": "POST",
        "sms_url": ADDRESS + "/webhooks/twilio/sms",
        "sms_method": "POST",
        "status_callback": ADDRESS + "/webhooks/twilio/status",
        "status_callback_method": "POST",
    }


def test_what_is_missing_is_said_with_its_fix(tmp_path: Path) -> None:
    config, _, _ = workspace(tmp_path)
    portless = Config(root=tmp_path, file=config.file, services=(Service(name="voice", command=("x",), cwd=tmp_path),))
    with pytest.raises(AiradevError, match="services.voice has no port") as caught:
        portless.voice_service()
    assert caught.value.fix == "set services.voice.port"
    with pytest.raises(AiradevError, match="no voice agent service"):
        Config(root=tmp_path, file=config.file, services=()).voice_service()
    assert portless.ui_env_file() is None  # no UI: no file gets the address (Twilio and the database do)
    none = Config(
        root=tmp_path,
        file=config.file,
        services=(),
        tunnel=TunnelSettings(env_file=tmp_path / "x.env", no_env_file=True),
    )
    assert none.ui_env_file() is None
    explicit = Config(root=tmp_path, file=config.file, services=(), tunnel=TunnelSettings(env_file=tmp_path / "x.env"))
    assert explicit.ui_env_file() == tmp_path / "x.env"
    no_local = Config(
        root=tmp_path, file=config.file, services=(Service(name="ui", command=("x",), cwd=tmp_path / "web"),)
    )
    assert no_local.ui_env_file() == tmp_path / "web" / ".env.local"


@pytest.mark.parametrize(
    ("content_type", "body", "twiml"),
    [
        ("text/xml", b"<?xml version='1.0'?><Response><Say>hi</Say></Response>", True),
        ("application/xml; charset=utf-8", b"<Response/>", True),
        ("text/xml", b"<Error/>", False),
        ("text/xml", b"<Response", False),
        ("application/json", b"<Response/>", False),
    ],
)
def test_a_twiml_answer_is_recognised(content_type: str, body: bytes, twiml: bool) -> None:
    assert is_twiml(content_type, body) is twiml
