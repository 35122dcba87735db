"""The dashboard's `d` key: doctor's findings, those about the selected service first.

doctor's checks are of the workspace, not of a service; a finding is the service's when it
names it (its name, an alias, or its folder), as ``services.voice.port`` or ``voice-agent/.env``
do. Everything shown passes through doctor's own redactor, as `airadev doctor` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typing import TYPE_CHECKING

from airadev.model import Config

if TYPE_CHECKING:
    from airadev.doctor import Result
    from airadev.logstore import Redactor


def report(root: Path, config: Callable[[], Config], service: str | None) -> str:
    from airadev import doctor as dr
    from airadev.operations.doctor import redactor

    ctx = dr.Context(root, str(root), offline=False)
    results = dr.run(dr.select([], offline=False), ctx)
    redact = redactor(ctx)
    problems = [r for r in results if r.status in (dr.Status.ERROR, dr.Status.WARNING)]
    words = _words(config(), service) if service else []
    about = [r for r in problems if any(w in f"{r.id} {r.message} {r.fix}" for w in words)]
    others = [r for r in problems if r not in about]
    counts = dr.summary(results)
    lines = [f"doctor: {counts.get('error', 0)} errors, {counts.get('warning', 0)} warnings (Esc closes)"]
    if service:
        lines.append("")
        lines.append(f"about {service}:" if about else f"nothing about {service}")
    for result in about:
        lines += _shown(result, redact)
    if others:
        lines += ["", "the rest of the workspace:" if service else "findings:"]
        for result in others:
            lines += _shown(result, redact)
    if not problems:
        lines.append("every check passed")
    return "\n".join(lines)


def _words(config: Config, name: str) -> list[str]:
    try:
        service = config.get(name)
    except KeyError:  # the supervisor's own log, or a service removed from the file
        return [name]
    words = [
        f"{before}{n}{after}" for n in service.names for before, after in (("services.", ""), ("", ":"), (" ", " "))
    ]
    try:
        folder = service.cwd.relative_to(config.root)
    except ValueError:
        folder = None
    if folder is not None and str(folder) != ".":
        words.append(f"{folder}/")
    return words


def _shown(result: Result, redact: Redactor) -> list[str]:
    mark = "✗" if result.status == "error" else "!"
    fix = redact.text(result.fix)
    return [f" {mark} {result.id}: {redact.text(result.message)}"] + ([f"     fix: {fix}"] if fix else [])
