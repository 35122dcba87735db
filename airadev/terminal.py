"""The terminal airadev runs in: typer's own usage errors in airadev's two lines, and output
that a terminal which cannot show the marks (PYTHONIOENCODING=ascii, a C locale) gets as ASCII."""

from __future__ import annotations

import sys
from typing import Any

from airadev import render
from airadev.errors import AiradevError

# What the output's own marks become on a terminal that cannot show them (PYTHONIOENCODING=ascii,
# a C locale): ASCII, never a UnicodeEncodeError.
ASCII = {"✓": "ok", "✗": "x", "→": "->", "←": "<-", "…": "...", "·": "-", "—": "-", "–": "-", "×": "x", "│": "|"}


def run(app: Any) -> None:
    """The CLI, with typer's own usage errors (an unknown option, a missing argument) in
    airadev's two lines, and its exit code."""
    import typer
    from typer._click.exceptions import NoArgsIsHelpError
    from typer._click.exceptions import UsageError as ClickUsageError

    plain_text_where_needed()
    if not sys.platform.startswith("linux"):
        render.error(
            AiradevError(
                f"airadev runs on Linux only (it finds processes through /proc); this is {sys.platform}",
                "run it on a Linux machine, a Linux VM or WSL 2",
            )
        )
        sys.exit(1)
    try:
        code = app(prog_name="airadev", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        sys.stdout.write(exc.format_message() + "\n")
        code = 2
    except ClickUsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "airadev"
        render.error(AiradevError(exc.format_message(), f"see `{where} --help`"))
        code = 2
    except typer.Abort:
        sys.stderr.write("aborted\n")
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


def plain_text_where_needed() -> None:
    """stdout and stderr that cannot encode the marks write them as ASCII (anything else
    unencodable as "?")."""
    import codecs

    def ascii_marks(error: UnicodeError) -> tuple[str, int]:
        assert isinstance(error, UnicodeEncodeError)
        text = error.object[error.start : error.end]
        return "".join(ASCII.get(ch, "?") for ch in text), error.end

    codecs.register_error("airadev-ascii", ascii_marks)
    for stream in (sys.stdout, sys.stderr):
        try:
            "✓→".encode(stream.encoding or "ascii")
        except (UnicodeEncodeError, LookupError):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="airadev-ascii")
