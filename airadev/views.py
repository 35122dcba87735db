"""What a command did, shown: `up -d`, `up` on a running stack, `init`, `config`. (render.py holds the
shared pieces: tables, the log console, reports.)"""

from __future__ import annotations

import sys
from typing import Any

from airadev import render


def ready_summary(summary: dict[str, Any] | None) -> None:
    """`up -d`'s summary: each service's time to ready, and the critical path."""
    if not summary:
        return
    render.info(f"all {len(summary['services'])} services ready in {summary['total']:.2f}s")
    for item in summary["services"]:
        render.info(
            f"  {item['name']:<14} ready after {item['ready_after']:6.2f}s  (own start {item['own_time']:.2f}s)"
        )
    if summary.get("critical_path"):
        own = {item["name"]: item["own_time"] for item in summary["services"]}
        render.info("  critical path: " + " → ".join(f"{n} {own[n]:.2f}s" for n in summary["critical_path"]))


def stopped(result: Any) -> None:
    """What `down` did (operations.manage.Down)."""
    if not (result.stopped or result.leftovers or result.dead_run or result.restored or result.dropped):
        render.info("nothing is running: nothing to stop")
    if result.stopped:
        render.info(f"stopped {len(result.stopped)} services: {', '.join(result.stopped)}")
    if result.dead_run:
        render.info("the last run's supervisor had died without stopping the stack")
    for line in result.restored:
        render.info(f"put back what the tunnel left: {line}")
    for line in result.dropped:
        render.info(line)
    if result.leftovers:
        render.info(f"ended {result.leftovers} leftover processes")
    elif result.dead_run:
        render.info("none of its processes were left")


def applied(result: Any) -> None:
    """What `up` on a running stack did (operations.up.Applied)."""
    for what, names in (("started", result.started), ("restarted", result.restarted), ("stopped", result.stopped)):
        if names:
            render.info(f"{what}: {', '.join(names)}")
    if not (result.started or result.restarted or result.stopped):
        render.info(
            "airadev.toml applied: no service needed a restart (its other settings, [tunnel] and [twilio], are in effect)"
            if result.file_changed
            else "the stack is running and airadev.toml has not changed: nothing to do"
        )
    elif result.started or result.restarted:
        render.info(f"ready: {', '.join(result.started + result.restarted)}")


def initialised(result: Any, dry_run: bool) -> None:
    """What `airadev init` did (operations.init.Initialised); with --dry-run, the config on
    stdout and what was found on stderr."""
    planned = result.plan
    if dry_run and planned is not None:
        sys.stdout.write(planned.text)
        sys.stdout.flush()
    if planned is not None and not planned.aira:
        for found in planned.found:
            render.info(f"found {found.name}: {found.why[0]}", stderr=dry_run)
        for note in planned.notes:
            render.warn(f"note: {note}")
    if dry_run:
        return
    render.info(f"wrote {result.config}")
    if result.gitignore_updated:
        render.info(f"added .airadev/ to {result.gitignore}")
    for path in result.env_files:
        render.info(f"created {path} from its template (mode 0600): fill in the values, then `airadev doctor`")
    if result.dockerfile:
        render.info(f"wrote {result.dockerfile}: the image of the Python services that have no Dockerfile of their own")
    for folder in result.missing:
        render.warn(f"note: {folder}/ is not there yet; clone it or edit airadev.toml")


def resolved_config(data: dict[str, Any], as_json: bool) -> None:
    """`airadev config`: the resolved configuration, as JSON or one block a service."""
    if as_json:
        render.json_out(data)
        return
    render.info(f"# {data['file']}: valid")
    from airadev.detect.found import toml_value

    for name, svc in data["services"].items():
        render.info(f"\n[services.{name}]")
        for key, value in svc.items():
            if value not in (None, [], {}, ""):
                shown = {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value
                render.info(f"{key} = {toml_value(shown)}")
    for section in ("tunnel", "twilio", "logs", "stripe"):
        if section not in data:
            continue
        render.info(f"\n[{section}]")
        for key, value in data[section].items():
            render.info(f"{key} = {toml_value(value) if value is not None else 'none'}")


def forget_tunnel(paths: Any, yes: bool) -> None:
    """`airadev tunnel --forget`: show what an earlier tunnel left rewired, ask, drop the record."""
    from airadev.errors import EXIT_FAILED, UsageError
    from airadev.operations import tunnel as op

    lines = op.still_rewired(paths)
    if not lines:
        render.info("no tunnel left anything rewired: nothing to forget")
        return
    render.info("still rewired, and not put back (these stay as they are when forgotten):")
    for line in lines:
        render.info(f"  {line}")
    if not yes:
        import typer

        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise UsageError("--forget drops the record of what stays rewired", "add --yes to confirm")
        if not typer.confirm("Forget it (put those back by hand, e.g. in the Twilio console)?", default=False):
            raise typer.Exit(EXIT_FAILED)
    op.forget(paths)
    render.info("forgotten: a new tunnel can open; the lines above are as they were left")
