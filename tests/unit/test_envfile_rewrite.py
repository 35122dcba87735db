"""Rewriting VOICE_AGENT_SERVICE_URL: every other byte stays, and undo restores the file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import given, settings
from hypothesis import strategies as st

from airadev.integrations import envfile
from airadev.integrations.envfile import EnvEdit, EnvFileError, plan_set, plan_undo

VAR = "VOICE_AGENT_SERVICE_URL"
URL = "https://ab12-203-0-113-7.ngrok-free.app"

names = st.sampled_from(["NEXT_PUBLIC_APP_URL", "TWILIO_ACCOUNT_SID", "STRIPE_SECRET_KEY", "A_B", VAR])
plain = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:/._-", min_size=0, max_size=20)
spaced = st.text(alphabet="abcxyz019:/._- #", min_size=0, max_size=20)  # needs quotes


@st.composite
def assignment(draw: st.DrawFn) -> str:
    name = draw(names)
    value = draw(plain)
    quoted = draw(spaced)
    style = draw(st.sampled_from(["plain", "double", "single", "comment", "spaced", "escaped", "quoted-comment"]))
    export = draw(st.sampled_from(["", "export "]))
    indent = draw(st.sampled_from(["", "  "]))
    rendered = {
        "plain": f"{name}={value}",
        "double": f'{name}="{quoted}"',
        "single": f"{name}='{quoted}'",
        "comment": f"{name}={value or 'x'} # the old tunnel",
        "spaced": f"{name} = {value}",
        "escaped": f'{name}="a \\"quoted\\" {value}"',
        "quoted-comment": f'{name}="{quoted}"  # note',
    }[style]
    return indent + export + rendered


line = st.one_of(
    assignment(),
    st.just(""),
    st.just("# a comment"),
    st.just("   "),
    st.text(alphabet="# abcxyz=", max_size=15).map(lambda t: "#" + t),
)


@st.composite
def env_file(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(line, max_size=12))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    final = draw(st.booleans())
    text = eol.join(lines) + (eol if final and lines else "")
    return text.encode()


@given(env_file())
@settings(max_examples=500, deadline=None)
def test_only_the_variable_changes_and_undo_restores_every_byte(data: bytes) -> None:
    new, before, after = plan_set(data, VAR, URL)
    edit = EnvEdit("x", VAR, before, after, URL)
    assert _values(new)[VAR] == URL
    old_values, new_values = _values(data), _values(new)
    assert {k: v for k, v in old_values.items() if k != VAR} == {k: v for k, v in new_values.items() if k != VAR}
    old_lines, new_lines = data.splitlines(keepends=True), new.splitlines(keepends=True)
    if before is not None:
        assert len(old_lines) == len(new_lines)
        changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
        assert len(changed) <= 1, "one line changes, every other is byte-identical"
    else:
        assert new.startswith(data), "an absent variable is appended; nothing before it moves"
        assert new.endswith((b"\n", b"\r")) == (data.endswith((b"\n", b"\r")) or not data), (
            "final newline kept as it was"
        )
    assert plan_undo(new, edit) == data


def _values(data: bytes) -> dict[str, str | None]:
    import io

    return dict(dotenv_values(stream=io.StringIO(data.decode()), interpolate=False))


def test_set_value_is_atomic_keeps_mode_and_backs_up(tmp_path: Path) -> None:
    path = tmp_path / ".env.local"
    original = b"# UI\r\nexport VOICE_AGENT_SERVICE_URL='http://localhost:8000'\r\nB=2"
    path.write_bytes(original)
    os.chmod(path, 0o640)
    inode = path.stat().st_ino
    edit = envfile.set_value(path, VAR, URL, backup_dir=tmp_path / "backups")
    assert path.read_bytes() == b"# UI\r\nexport VOICE_AGENT_SERVICE_URL='" + URL.encode() + b"'\r\nB=2"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode, "replaced by a rename, not rewritten in place"
    backups = list((tmp_path / "backups").iterdir())
    assert [b.read_bytes() for b in backups] == [original]
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert envfile.undo(EnvEdit.from_json(edit.as_json())) is True
    assert path.read_bytes() == original


def test_undo_leaves_a_file_changed_since_alone(tmp_path: Path) -> None:
    path = tmp_path / ".env.local"
    path.write_bytes(b"VOICE_AGENT_SERVICE_URL=http://localhost:8000\n")
    edit = envfile.set_value(path, VAR, URL)
    path.write_bytes(b"VOICE_AGENT_SERVICE_URL=https://someone-elses.example\n")
    assert envfile.undo(edit) is False
    assert path.read_bytes() == b"VOICE_AGENT_SERVICE_URL=https://someone-elses.example\n"


def test_a_symlinked_env_file_keeps_its_link(tmp_path: Path) -> None:
    real = tmp_path / "shared.env"
    real.write_bytes(b"A=1\n")
    link = tmp_path / ".env.local"
    link.symlink_to(real)
    envfile.set_value(link, VAR, URL)
    assert link.is_symlink() and real.read_bytes() == b"A=1\n" + f"{VAR}={URL}\n".encode()


def test_errors_are_clear_and_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EnvFileError, match="not found"):
        envfile.set_value(tmp_path / "missing.env", VAR, URL)
    multiline = tmp_path / "multi.env"
    multiline.write_bytes(b'VOICE_AGENT_SERVICE_URL="http://a\nb"\n')
    with pytest.raises(EnvFileError, match="spans several lines"):
        envfile.set_value(multiline, VAR, URL)
    assert multiline.read_bytes() == b'VOICE_AGENT_SERVICE_URL="http://a\nb"\n'
    locked = tmp_path / "locked.env"
    locked.write_bytes(b"A=1\n")
    os.chmod(locked, 0o400)
    if os.getuid() == 0:
        # Root may write anything: show it the file as its owner would see it.
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode: False if Path(p) == locked and mode & os.W_OK else real_access(p, mode)
        )
    with pytest.raises(EnvFileError, match="not writable"):
        envfile.set_value(locked, VAR, URL)
    assert locked.read_bytes() == b"A=1\n"


def test_a_missing_env_file_s_fix_names_only_an_example_that_is_there(tmp_path: Path) -> None:
    from airadev.integrations.envfile import EnvFileError, writable

    target = tmp_path / "tunnel.env"
    with pytest.raises(EnvFileError) as info:
        writable(target)
    assert info.value.fix == "create it, or point the config at the right file"  # not `cp tunnel.env.example`
    (tmp_path / "tunnel.env.example").write_text("A=1\n")
    with pytest.raises(EnvFileError) as info:
        writable(target)
    assert info.value.fix == f"cp tunnel.env.example {target}, or point the config at the right file"
