"""Disk full while the tunnel writes the UI's env file, or airadev its journal (a small tmpfs
mounted where that file lives, then filled): the original file stays whole, Twilio keeps its
old webhooks, the error says what happened in one line, and once there is room again the
same command works."""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.figures import count
from tests.fakes.twilio_api import FakeTwilio
from tests.harness import Stack
from tests.integration.test_tunnel import BEFORE, ORIGINAL, tunnel_stack, twilio, wiring  # noqa: F401  (fixture)


@contextlib.contextmanager
def small_disk(where: Path, size: str = "256k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``where`` (which keeps its content: copied in)."""
    saved = {p.name: p.read_bytes() for p in where.iterdir() if p.is_file()} if where.exists() else {}
    where.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], check=True)
    try:
        for name, data in saved.items():
            (where / name).write_bytes(data)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> Path:
    """Fill the disk of ``folder`` to the last byte."""
    import os

    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    said = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and said[0].startswith("error: ") and said[1].startswith("  fix: "), said
    return said[0]


def tunnel_on_a_full_disk(stack: Stack, disk: Path) -> Path:
    """Start the stack, fill ``disk``, and see `tunnel` fail with one clear line; the filler."""
    assert stack.up().returncode == 0
    filler = fill(disk)
    result = stack.cli("tunnel", "--detach")
    count("disk-full writes tried")
    line = one_clear_line(result)
    assert "No space left on device" in line or "disk is full" in line, line
    return filler


def test_a_full_disk_under_the_env_file_leaves_it_whole(stack: Stack, twilio: FakeTwilio) -> None:  # noqa: F811
    env_local = tunnel_stack(stack, twilio)
    with small_disk(env_local.parent) as disk:
        assert env_local.read_bytes() == ORIGINAL
        filler = tunnel_on_a_full_disk(stack, disk)
        count("files checked")
        count("half-written files", env_local.read_bytes() != ORIGINAL)
        assert env_local.read_bytes() == ORIGINAL, "the env file is untouched"
        assert wiring(twilio) == BEFORE, "Twilio keeps its old webhooks"
        assert not list(disk.glob(".env.local.*")), "no temporary file is left"
        filler.unlink()
        assert stack.cli("tunnel", "--detach").returncode == 0, "with room again it works"
        assert env_local.read_bytes() != ORIGINAL
        assert stack.cli("down").returncode == 0
        assert env_local.read_bytes() == ORIGINAL
    stack.wait_nothing_left()


def test_a_full_disk_under_the_journal_changes_nothing(stack: Stack, twilio: FakeTwilio) -> None:  # noqa: F811
    env_local = tunnel_stack(stack, twilio)
    state = stack.root / ".airadev"
    with small_disk(state, "2m") as disk:
        filler = tunnel_on_a_full_disk(stack, disk)
        count("files checked")
        count("half-written files", env_local.read_bytes() != ORIGINAL)
        assert env_local.read_bytes() == ORIGINAL and wiring(twilio) == BEFORE
        assert stack.cli("status").returncode == 0, "the supervisor lives on"
        filler.unlink()
        assert stack.cli("tunnel", "--detach").returncode == 0
        assert stack.cli("down").returncode == 0
        assert env_local.read_bytes() == ORIGINAL and wiring(twilio) == BEFORE
        stack.wait_nothing_left()


@pytest.fixture(autouse=True)
def _no_mount_left(stack: Stack) -> Iterator[None]:
    yield
    for path in (stack.root / "ui", stack.root / ".airadev"):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
