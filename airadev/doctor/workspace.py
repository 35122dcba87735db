"""Workspace: airadev.toml, the service folders, Supabase's config and migrations."""

from __future__ import annotations

import re
import tomllib

import subprocess

from airadev.doctor.base import Action, Context, Result, check, error, ok, skipped, warning
from airadev.errors import AiradevError

MIGRATION = re.compile(r"^\d+_[A-Za-z0-9_.-]+\.sql$")


@check("workspace.config", "airadev.toml is found and valid")
def config(ctx: Context) -> Result:
    loaded = ctx.config_or_error
    if isinstance(loaded, AiradevError):
        return error("workspace.config", loaded.message, loaded.fix)
    return ok(
        "workspace.config",
        f"{ctx.relative(loaded.file)}: {len(loaded.services)} services ({', '.join(loaded.names())})",
    )


@check("workspace.state-ignored", "git ignores .airadev/ (logs and state)", requires=("workspace.config",))
def state_ignored(ctx: Context) -> Result:
    try:
        done = subprocess.run(
            ["git", "check-ignore", "-q", ".airadev/"],
            cwd=ctx.root,
            capture_output=True,
            timeout=5,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return skipped("workspace.state-ignored", "git is not installed")
    if done.returncode == 128:
        err = done.stderr.decode(errors="replace")
        if "not a git repository" in err:
            return ok("workspace.state-ignored", "the workspace is not a git repository")
        return warning(
            "workspace.state-ignored",
            f"git refuses to look ({err.strip().splitlines()[0][:120]})",
            f"git config --global --add safe.directory {ctx.root}",
        )
    if done.returncode != 0:
        return warning(
            "workspace.state-ignored",
            ".airadev/ (logs, state, backups of env files) is not git-ignored",
            "add .airadev/ to .gitignore (airadev doctor --fix does)",
            Action("gitignore", ".gitignore", ".airadev/"),
        )
    return ok("workspace.state-ignored", ".airadev/ is git-ignored")


@check("workspace.folders", "each service's folder is there", requires=("workspace.config",))
def folders(ctx: Context) -> list[Result]:
    results = []
    for service in ctx.config.services:
        rid = f"workspace.folders:{service.name}"
        where = ctx.relative(service.cwd)
        if service.cwd.is_dir():
            results.append(ok(rid, f"{service.name}: {where}/"))
        else:
            results.append(
                error(
                    rid,
                    f"{service.name}: folder {where}/ is missing",
                    f"clone the {service.name} repo into {where}/, or fix its cwd in airadev.toml",
                )
            )
    return results


def _supabase_dir(ctx: Context):

    ui = ctx.config.ui_service() if ctx.config else None
    folder = ui.cwd / "supabase" if ui else None
    return folder if folder is not None and (folder / "config.toml").is_file() else None


@check("workspace.supabase-config", "supabase/config.toml parses", requires=("workspace.config",))
def supabase_config(ctx: Context) -> Result:
    folder = _supabase_dir(ctx)
    if folder is None:
        return skipped("workspace.supabase-config", "no supabase/config.toml in the UI repo")
    path = folder / "config.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return error(
            "workspace.supabase-config",
            f"{ctx.relative(path)} is not valid TOML: {exc}",
            "fix that line (or run `supabase init` again)",
        )
    if not data.get("project_id"):
        return error(
            "workspace.supabase-config", f"{ctx.relative(path)} has no project_id", 'add project_id = "aira" at the top'
        )
    return ok("workspace.supabase-config", f"{ctx.relative(path)}: project {data['project_id']}")


@check("workspace.migrations", "migration files are named <digits>_name.sql", requires=("workspace.config",))
def migrations(ctx: Context) -> Result:
    folder = _supabase_dir(ctx)
    if folder is None or not (folder / "migrations").is_dir():
        return skipped("workspace.migrations", "no supabase/migrations folder")
    bad = sorted(
        p.name for p in (folder / "migrations").iterdir() if p.suffix == ".sql" and not MIGRATION.match(p.name)
    )
    count = len(list((folder / "migrations").glob("*.sql")))
    if bad:
        return error(
            "workspace.migrations",
            f"migrations the Supabase CLI skips: {', '.join(bad[:3])}",
            "rename them <timestamp>_name.sql, e.g. 20261126120000_business_numbers.sql",
        )
    return ok("workspace.migrations", f"{count} migrations, all named <digits>_name.sql")
