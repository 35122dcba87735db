"""Secrets: live keys in a local file, secrets that would ship to the browser, env files git
could publish or other users could read, and shell variables that silently win."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from airadev.doctor.base import Action, Context, Result, check, error, ok, skipped, warning
from airadev.doctor.envfiles import known_secret_values
from airadev.doctor.templates import jwt_payload
from airadev.integrations import envfile

LIVE_PREFIXES = ("sk_live_", "rk_live_")
SECRET_SHAPES = ("sk_test_", "sk_live_", "rk_", "whsec_", "sk-", "pcsk_", "sk_car_", "sb_secret_")


def _existing(ctx: Context) -> list:
    return [f for f in ctx.env_files if f.path.is_file()]


@check(
    "secrets.live", "no live Stripe key and no production environment in a local file", requires=("workspace.config",)
)
def live(ctx: Context) -> list[Result]:
    results = []
    for f in _existing(ctx):
        rid = f"secrets.live:{ctx.relative(f.path)}"
        live_keys = sorted(name for name, value in f.values.items() if value.strip().startswith(LIVE_PREFIXES))
        production = f.values.get("ENVIRONMENT", "").strip() == "production"
        if live_keys or production:
            what = ([f"a live Stripe key in {', '.join(live_keys)}"] if live_keys else []) + (
                ["ENVIRONMENT=production"] if production else []
            )
            results.append(
                error(
                    rid,
                    f"{ctx.relative(f.path)}: {' and '.join(what)}",
                    "use test keys (sk_test_...) and ENVIRONMENT=development locally",
                )
            )
        else:
            results.append(ok(rid, f"{ctx.relative(f.path)}: test keys, not production"))
    return results or [skipped("secrets.live", "no env files")]


@check("secrets.public", "no secret in a NEXT_PUBLIC_ variable", requires=("workspace.config",))
def public(ctx: Context) -> list[Result]:
    secrets = known_secret_values(ctx)
    results = []
    for f in _existing(ctx):
        rid = f"secrets.public:{ctx.relative(f.path)}"
        exposed = []
        for name, value in f.values.items():
            if not name.startswith(envfile.PUBLIC_PREFIX) or not value.strip():
                continue
            payload = jwt_payload(value.strip())
            if payload is not None and payload.get("role") not in (None, "anon"):
                exposed.append(f"{name} (a JWT with role {payload.get('role')})")
            elif value in secrets:
                exposed.append(f"{name} (the value of {secrets[value]})")
            elif value.strip().startswith(SECRET_SHAPES):
                exposed.append(f"{name} (shaped like a secret key)")
        if exposed:
            results.append(
                error(
                    rid,
                    f"{ctx.relative(f.path)}: {', '.join(exposed)} would be sent to every browser",
                    "put the anon (publishable) key there; keep the service-role key in "
                    "SUPABASE_SERVICE_ROLE_KEY (server-only), and rotate the exposed one",
                )
            )
        else:
            results.append(ok(rid, f"{ctx.relative(f.path)}: NEXT_PUBLIC_ variables hold no secret"))
    return results or [skipped("secrets.public", "no env files")]


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


@check("secrets.git", "env files are neither tracked nor unignored by git", requires=("workspace.config",), timeout=6)
def git(ctx: Context) -> list[Result]:
    results = []
    for f in _existing(ctx):
        rid = f"secrets.git:{ctx.relative(f.path)}"
        where = ctx.relative(f.path)
        real = f.path.resolve()
        top = _git(["rev-parse", "--show-toplevel"], real.parent)
        if top is None:
            results.append(skipped(rid, "git is not installed"))
            continue
        if top.returncode != 0:
            if "not a git repository" in top.stderr:
                results.append(ok(rid, f"{where}: not in a git repository"))
            else:  # e.g. "dubious ownership": git refuses, so nothing is known
                first = (top.stderr.strip().splitlines() or ["git failed"])[0]
                results.append(
                    warning(
                        rid,
                        f"{where}: git refuses to look ({first[:120]})",
                        f"git config --global --add safe.directory {real.parent}",
                    )
                )
            continue
        repo = Path(top.stdout.strip())
        tracked = _git(["ls-files", "--error-unmatch", real.name], real.parent)
        if tracked is not None and tracked.returncode == 0:
            results.append(
                error(
                    rid,
                    f"{where} is tracked by git: its secrets are in the history",
                    f"git rm --cached {real.name} (in {repo}), ignore it, and rotate every secret in it",
                )
            )
            continue
        ignored = _git(["check-ignore", "-q", real.name], real.parent)
        if ignored is not None and ignored.returncode != 0:
            gitignore = repo / ".gitignore"
            entry = "/" + str(real.relative_to(repo))
            results.append(
                error(
                    rid,
                    f"{where} is not ignored by git: one `git add .` publishes it",
                    f"add {entry} to {gitignore} (airadev doctor --fix does)",
                    Action("gitignore", str(gitignore), entry),
                )
            )
            continue
        results.append(ok(rid, f"{where}: ignored by git"))
    return results or [skipped("secrets.git", "no env files")]


@check("secrets.modes", "env files are not readable by other users", requires=("workspace.config",))
def modes(ctx: Context) -> list[Result]:
    results = []
    for f in _existing(ctx):
        rid = f"secrets.modes:{ctx.relative(f.path)}"
        mode = stat.S_IMODE(os.stat(f.path).st_mode)
        if mode & 0o077:
            results.append(
                warning(
                    rid,
                    f"{ctx.relative(f.path)} is mode {mode:04o}: other users can read it",
                    f"chmod 600 {ctx.relative(f.path)} (airadev doctor --fix does)",
                    Action("chmod", ctx.relative(f.path)),
                )
            )
        else:
            results.append(ok(rid, f"{ctx.relative(f.path)} is mode {mode:04o}"))
    return results or [skipped("secrets.modes", "no env files")]


@check("secrets.weak", "secrets long and random enough to be hidden in logs", requires=("workspace.config",))
def weak(ctx: Context) -> list[Result]:
    from airadev.logstore import too_weak_to_hide

    results = []
    for f in _existing(ctx):
        rid = f"secrets.weak:{ctx.relative(f.path)}"
        values = {name: value for name, value in f.values.items() if value.strip()}
        found = {**envfile.secrets_of(values), **envfile.secrets_in_values(values)}
        # DATABASE_URL.password2 (the URL's decoded form) is DATABASE_URL.password to the user
        weak = sorted(
            {
                name.rstrip("0123456789") if "." in name else name
                for name, value in found.items()
                if too_weak_to_hide(value)
            }
        )
        if weak:
            results.append(
                warning(
                    rid,
                    f"{ctx.relative(f.path)}: {', '.join(weak)} too short or too common to hide in logs "
                    "(hiding such a value everywhere would rewrite ordinary text), so output shows it as it is",
                    "use long random values, even locally (python3 -c 'import secrets; print(secrets.token_urlsafe(24))')",
                )
            )
        else:
            results.append(ok(rid, f"{ctx.relative(f.path)}: every secret is hidden in logs"))
    return results or [skipped("secrets.weak", "no env files")]


@check("secrets.shell", "no shell variable silently overrides the UI's env file", requires=("workspace.config",))
def shell(ctx: Context) -> Result:
    config = ctx.config
    overridden = []
    for f in _existing(ctx):
        service = config.get(f.service)
        if service.load_env_files:
            continue  # airadev puts these files over the shell's values
        for name, value in f.values.items():
            if name in ctx.env and ctx.env[name] != value:
                overridden.append(f"{name} ({ctx.relative(f.path)})")
    if overridden:
        return warning(
            "secrets.shell",
            f"exported in your shell, winning over the file for Next.js: {', '.join(overridden)}",
            "unset them (and remove the export from your shell profile)",
        )
    return ok("secrets.shell", "no exported variable overrides an env file Next.js reads")
