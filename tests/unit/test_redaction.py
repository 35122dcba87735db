"""Redaction on the supervisor's own output path, without a process.

Chunks go through ``Output.feed`` exactly as a pipe's reads do (framing, redaction,
the log file, the console observer); a pause is the partial-line timer firing
(``Output.flush_partial`` once the output has been quiet long enough); an exit is the final flush.
What must hold: no secret value reaches the console or the log file however the output is cut,
paused or broken, and nothing but secret values is changed.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from airadev.model import Config, Service
from airadev import logstore
from airadev.logstore import MIN_SECRET_LEN, LineFramer, Redactor, too_weak_to_hide
from airadev.supervisor.runner import Supervisor
from airadev.supervisor.unit import PARTIAL_LINE_PAUSE

SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
PASSWORD = "hunter2-very-long-password"
MARKER = re.compile(rb"\[redacted:([A-Za-z0-9_.]+)\]")


class Console:
    def __init__(self) -> None:
        self.out = b""
        self.events: list[str] = []

    def output(self, service: str, lines: bytes) -> None:
        assert lines.endswith(b"\n"), "only whole lines reach the console"
        self.out += lines

    def event(self, service: str | None, message: str, level: str = "info") -> None:
        self.events.append(message)

    def ready(self, summary: object) -> None:
        pass


def supervisor(tmp_path: Path, secrets: dict[str, str]) -> tuple[Supervisor, Console]:
    """A supervisor of one service whose env file holds ``secrets``; its logs open."""
    env = tmp_path / ".env"
    env.write_text("".join(f'{name}="{value}"\n' for name, value in secrets.items()))
    service = Service(name="svc", command=("x",), cwd=tmp_path, env_files=(env,))
    config = Config(root=tmp_path, file=tmp_path / "airadev.toml", services=(service,))
    console = Console()
    sup = Supervisor(config, ["svc"], observer=console, marker="test.0")
    sup.paths.ensure()
    sup.open_logs()
    return sup, console


def run(sup: Supervisor, steps: list[bytes | None], exit: bool = True) -> None:
    """Feed ``steps`` (a chunk, or None for a pause long enough to show a partial line), then
    (``exit``) the final flush of a process that ended, on a loop as the supervisor does."""
    unit = sup.units["svc"]

    async def main() -> None:
        for step in steps:
            if step is None:
                unit.last_output = time.monotonic() - PARTIAL_LINE_PAUSE  # quiet that long
                sup.output.flush_partial(unit)
            else:
                sup.output.feed(unit, step)
        if exit:
            sup.output.flush_partial(unit, force=True)
        if unit.flush_handle is not None:
            unit.flush_handle.cancel()

    asyncio.run(main())


def logged(sup: Supervisor) -> bytes:
    """The service's log file without its timestamps."""
    raw = sup.paths.log("svc").read_bytes()
    return b"".join(line[logstore.TS_FIELD :] + b"\n" for line in raw.split(b"\n")[:-1])  # (not splitlines: \r)


def unredact(data: bytes, secrets: dict[str, str]) -> bytes:
    return MARKER.sub(lambda m: secrets[m.group(1).decode()].encode(), data)


# --- a secret cut by chunks, pauses and long lines ---------------------------------------------------


@pytest.mark.parametrize("cut", range(1, len(SECRET) + 1))
def test_a_secret_split_across_two_chunks_is_redacted(tmp_path: Path, cut: int) -> None:
    sup, console = supervisor(tmp_path, {"STRIPE_SECRET_KEY": SECRET})
    line = f"using key {SECRET} for payments\n".encode()
    at = len(b"using key ") + cut - 1  # from just before the secret to its last byte
    run(sup, [line[:at], line[at:]])
    expected = b"using key [redacted:STRIPE_SECRET_KEY] for payments\n"
    assert console.out == expected
    assert logged(sup) == expected


@pytest.mark.parametrize("held", range(1, len(PASSWORD)))
def test_a_pause_never_shows_the_start_of_a_secret(tmp_path: Path, held: int) -> None:
    sup, console = supervisor(tmp_path, {"DB_PASSWORD": PASSWORD})
    run(sup, [b"connecting with " + PASSWORD[:held].encode(), None], exit=False)
    assert console.out == b"connecting with \n", "what came before is shown; the secret's start is held"
    (tmp_path / "again").mkdir()
    sup2, console2 = supervisor(tmp_path / "again", {"DB_PASSWORD": PASSWORD})
    run(sup2, [b"connecting with " + PASSWORD[:held].encode(), None, PASSWORD[held:].encode() + b" ok\n"])
    assert console2.out == b"connecting with \n[redacted:DB_PASSWORD] ok\n"
    assert logged(sup2) == console2.out


@pytest.mark.parametrize(
    ("tail", "shown"),
    [
        (PASSWORD[:7], b"last words hunter2\n"),  # shorter than MIN_SECRET_LEN: too common to hide
        (PASSWORD[:8], b"last words [redacted:DB_PASSWORD]\n"),
        (PASSWORD[:-1], b"last words [redacted:DB_PASSWORD]\n"),
    ],
)
def test_the_start_of_a_secret_left_at_exit_is_redacted(tmp_path: Path, tail: str, shown: bytes) -> None:
    sup, console = supervisor(tmp_path, {"DB_PASSWORD": PASSWORD})
    run(sup, [b"last words " + tail.encode()])  # the process ends with no newline
    assert console.out == shown
    assert logged(sup) == shown


@given(st.integers(0, 120), st.lists(st.integers(1, 50), min_size=1, max_size=6), st.integers(0, 5))
@settings(max_examples=200, deadline=None)
def test_a_long_line_is_never_broken_inside_a_secret(prefix: int, sizes: list[int], pause_every: int) -> None:
    secrets = {"API_KEY": SECRET, "DB_PASSWORD": PASSWORD}
    redact = Redactor(secrets)
    framer = LineFramer(max_line=40, redactor=redact)
    stream = b"x" * prefix + SECRET.encode() + b"-" + PASSWORD.encode() + b"y" * 30 + b"\n"
    out, pos, i = b"", 0, 0
    while pos < len(stream):
        size = sizes[i % len(sizes)]
        out += redact(framer.feed(stream[pos : pos + size]))
        if pause_every and i % pause_every == 0:
            out += redact(framer.flush())
        pos, i = pos + size, i + 1
    out += redact(framer.flush(final=True))
    joined = out.replace(b"\n", b"")
    assert SECRET.encode() not in joined and PASSWORD.encode() not in joined
    assert unredact(joined, secrets) == stream.replace(b"\n", b""), "nothing else is lost or changed"


# Secrets and text over alphabets that cannot form a marker's letters ("[redacted:NAME]").
SECRET_CHARS = "0123456789-+/=xyzQWZ"
TEXT = st.binary(max_size=12).map(lambda b: b.replace(b"[", b"(").replace(b"]", b")"))


@given(
    st.lists(
        st.text(SECRET_CHARS, min_size=MIN_SECRET_LEN, max_size=20).filter(lambda v: not too_weak_to_hide(v)),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    st.lists(st.one_of(TEXT, st.integers(0, 2), st.just(b"\n")), max_size=12),
    st.lists(st.tuples(st.integers(1, 30), st.booleans()), min_size=1, max_size=8),
)
@settings(max_examples=150, deadline=None)
def test_any_cut_and_any_pause_hides_every_secret_and_changes_nothing_else(
    tmp_path_factory: pytest.TempPathFactory, values: list[str], parts: list[bytes | int], cuts: list[tuple[int, bool]]
) -> None:
    # Secrets may contain one another (the longest wins) and may be each other's starts.
    secrets = {f"S{i}_KEY": value for i, value in enumerate(values)}
    stream = b"".join(values[p % len(values)].encode() if isinstance(p, int) else p for p in parts)
    steps: list[bytes | None] = []
    pos, i = 0, 0
    while pos < len(stream):
        cut, pause = cuts[i % len(cuts)]  # a read of ``cut`` bytes, then maybe a pause
        i += 1
        steps += [stream[pos : pos + cut], None] if pause else [stream[pos : pos + cut]]
        pos += cut
    sup, console = supervisor(tmp_path_factory.mktemp("ws"), secrets)
    run(sup, steps)
    for out in (console.out, logged(sup)):
        joined = out.replace(b"\n", b"")
        for value in values:
            assert value.encode() not in joined
        assert unredact(joined, secrets) == stream.replace(b"\n", b"")


# --- ordinary text -----------------------------------------------------------------------------------


@given(st.binary(max_size=300), st.lists(st.integers(1, 64), min_size=1, max_size=5))
@settings(max_examples=200, deadline=None)
def test_output_without_secrets_passes_byte_for_byte(data: bytes, sizes: list[int]) -> None:
    secrets = {"API_KEY": SECRET, "DB_PASSWORD": PASSWORD, "PIN_TOKEN": "4242"}
    assume(all(v.encode() not in data for v in secrets.values()))
    redact = Redactor(secrets)
    framer = LineFramer(redactor=redact)
    out, pos, i = b"", 0, 0
    while pos < len(data):
        out += redact(framer.feed(data[pos : pos + sizes[i % len(sizes)]]))
        pos, i = pos + sizes[i % len(sizes)], i + 1
    out += redact(framer.flush(final=True))
    assert out == (data if data.endswith(b"\n") or not data else data + b"\n")


def test_words_and_placeholders_are_never_redacted_so_ordinary_text_stays_as_it_was() -> None:
    """A local env file's FIRST_SUPERUSER_PASSWORD=changethis, a short NGROK_AUTHTOKEN: replacing
    them everywhere rewrote "/password-recovery/" and a folder's name (doctor warns instead)."""
    weak = {
        "FIRST_SUPERUSER_PASSWORD": "password",
        "SECRET_KEY": "changethis",
        "NGROK_AUTHTOKEN": "ab12cd3",  # 7 characters
        "POSTGRES_PASSWORD": "postgres",
        "APP_SECRET": "supersecret",  # a word
    }
    assert all(too_weak_to_hide(value) for value in weak.values())
    redact = Redactor(weak)
    assert not redact
    line = b"GET /password-recovery/ 200; postgres ready; changethis in ~/ab12cd3-projects; supersecret\n"
    assert redact(line) == line
    # Real-looking values still are, whatever their letters.
    strong = {"A_TOKEN": "Zx81-kq0", "B_KEY": "supersecretvalue", "C_PASSWORD": "correct-horse-battery"}
    assert not any(too_weak_to_hide(value) for value in strong.values())
    assert Redactor(strong)(b"Zx81-kq0 supersecretvalue correct-horse-battery\n") == (
        b"[redacted:A_TOKEN] [redacted:B_KEY] [redacted:C_PASSWORD]\n"
    )


def test_secrets_inside_values_are_hidden_and_the_rest_of_the_line_kept() -> None:
    """A service printed its DATABASE_URL, REDIS_URL, SENTRY_DSN and a service account's JSON:
    their credentials are hidden wherever they appear, the rest stays readable."""
    from airadev.integrations.envfile import secrets_in_values

    pem = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\nq83JdS0vYx==\\n-----END PRIVATE KEY-----"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLW5vdC1yZWFs"
    values = {
        "DATABASE_URL": "postgresql://app:Xk9%40pw-2024@db:5432/app",
        "REDIS_URL": "redis://:r3dis-Pa55w0rd@cache:6379/0",
        "SENTRY_DSN": "https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/42",
        "GOOGLE_JSON": '{"type": "service_account", "private_key": "' + pem + '"}',
        "SERVICE_ROLE": jwt,
        "NEXT_PUBLIC_SUPABASE_ANON_KEY": jwt[:-4] + "anon",  # public by definition
        "LOCAL_DB": "postgresql://postgres:postgres@127.0.0.1:54322/postgres",  # a placeholder password
        "PLAIN_URL": "https://example.com/path",
    }
    found = secrets_in_values(values)
    assert found == {
        "DATABASE_URL.password": "Xk9%40pw-2024",
        "DATABASE_URL.password2": "Xk9@pw-2024",  # as the URL means it
        "REDIS_URL.password": "r3dis-Pa55w0rd",
        "SENTRY_DSN.key": "0123456789abcdef0123456789abcdef",
        "GOOGLE_JSON.private_key": pem,
        "GOOGLE_JSON.private_key2": pem.replace("\\n", "\n"),  # the key as a program reads it
        "SERVICE_ROLE.jwt": jwt,
        "LOCAL_DB.password": "postgres",
    }
    redact = Redactor(found)
    printed = "\n".join(f"{name}={value}" for name, value in values.items()) + "\n" + pem.replace("\\n", "\n")
    out = redact(printed.encode()).decode()
    assert "DATABASE_URL=postgresql://app:[redacted:DATABASE_URL.password]@db:5432/app" in out
    assert "REDIS_URL=redis://:[redacted:REDIS_URL.password]@cache:6379/0" in out
    assert "SENTRY_DSN=https://[redacted:SENTRY_DSN.key]@o1.ingest.sentry.io/42" in out
    assert '"private_key": "[redacted:GOOGLE_JSON.private_key]"}' in out
    assert out.endswith("[redacted:GOOGLE_JSON.private_key2]")
    assert "SERVICE_ROLE=[redacted:SERVICE_ROLE.jwt]" in out
    assert "LOCAL_DB=postgresql://postgres:postgres@127.0.0.1:54322/postgres" in out  # too weak to hide
    assert "PLAIN_URL=https://example.com/path" in out and jwt[:-4] + "anon" in out


def test_short_and_empty_values_are_never_redacted() -> None:
    redact = Redactor({"PIN_KEY": "123", "EMPTY_SECRET": "", "OTHER_TOKEN": "abc"})
    assert not redact
    line = b"listening on 127.0.0.1:8123, abc 123\n"
    assert redact(line) == line
    assert LineFramer(redactor=redact).flush(final=True) == b""


def test_events_and_state_messages_are_redacted_too(tmp_path: Path) -> None:
    sup, console = supervisor(tmp_path, {"TWILIO_AUTH_TOKEN": SECRET})
    unit = sup.units["svc"]

    async def main() -> None:
        sup.event("svc", f"probe said: bad token {SECRET}")
        sup._set_state(unit, unit.state, f"exec probe printed {SECRET}")

    asyncio.run(main())
    assert console.events == ["probe said: bad token [redacted:TWILIO_AUTH_TOKEN]"]
    assert unit.message == "exec probe printed [redacted:TWILIO_AUTH_TOKEN]"
    own_log = sup.paths.log("airadev").read_bytes()
    assert SECRET.encode() not in own_log and b"[redacted:TWILIO_AUTH_TOKEN]" in own_log
    assert SECRET.encode() not in sup.paths.state.read_bytes()


# --- found by these tests, and fixed ---------------------------------------------------------------


def test_a_multi_line_secret_split_across_chunks_is_redacted(tmp_path: Path) -> None:
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nYWJjZGVmZ2hpamtsbW5vcA==\n-----END PRIVATE KEY-----"
    sup, console = supervisor(tmp_path, {"GOOGLE_PRIVATE_KEY": key})
    line = f"loaded {key}\n".encode()
    cut = line.index(b"MIIE") + 10
    run(sup, [line[:cut], line[cut:]])
    assert b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in console.out
    assert console.out == b"loaded [redacted:GOOGLE_PRIVATE_KEY]\n"


def test_a_marker_is_never_rewritten_by_another_secret() -> None:
    redact = Redactor({"A_TOKEN": "abcdefgh1234", "B_KEY": "redacted"})
    assert redact(b"x abcdefgh1234 y\n") == b"x [redacted:A_TOKEN] y\n"


def test_one_name_with_a_value_in_each_service_hides_both(tmp_path: Path) -> None:
    """Two services, each with its own POSTGRES_PASSWORD (a project's API and its worker): a
    mapping by name kept only the last one, and the first service printed its own in clear."""
    from airadev.runtimes.environment import stack_secrets

    services = []
    for name, password in (("api", "Api-Db-Pass-456!"), ("worker", "Worker-Db-Pass-789!")):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".env").write_text(f"POSTGRES_PASSWORD={password}\n")
        services.append(Service(name=name, command=("x",), cwd=tmp_path / name, env_files=(tmp_path / name / ".env",)))
    config = Config(root=tmp_path, file=tmp_path / "airadev.toml", services=tuple(services))
    redact = Redactor(stack_secrets(config))
    assert redact(b"api Api-Db-Pass-456! worker Worker-Db-Pass-789!\n") == (
        b"api [redacted:POSTGRES_PASSWORD] worker [redacted:POSTGRES_PASSWORD]\n"
    )
