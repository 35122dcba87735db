"""The errors airadev reports to its user.

Every expected failure is an :class:`AiradevError` carrying one line saying what happened and
one line saying how to fix it; the CLI prints both and exits with ``exit_code``. Anything else
is a bug and gets a traceback only with ``--debug``.
"""

from __future__ import annotations

from collections.abc import Iterable

# Exit codes (documented in `airadev --help` and the README).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3


class AiradevError(Exception):
    """An expected failure: ``message`` says what happened, ``fix`` how to fix it."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, fix: str = "", *, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        # Extra lines shown after the message (for example a service's last log lines).
        self.details = details


class ConfigError(AiradevError):
    """airadev.toml (or the command line) is wrong."""

    exit_code = EXIT_USAGE


class UsageError(AiradevError):
    exit_code = EXIT_USAGE


class NotRunning(AiradevError):
    """Nothing is running where something was expected (status, logs -f, down)."""

    exit_code = EXIT_NOT_RUNNING


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word``, if any is close enough to be a likely typo."""
    import difflib

    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` did you mean 'x'?`` or an empty string."""
    match = closest(word, candidates)
    return f"; did you mean '{match}'?" if match else ""
