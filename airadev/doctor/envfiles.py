"""Env files: present, complete, well-formed, consistent with each other and with the stack.

Messages name variables, never values: a doctor report must be safe to paste into an issue.
"""

from __future__ import annotations

from pathlib import Path

from airadev.doctor.base import Action, Context, EnvFile, Result, check, error, ok, skipped, warning
from airadev.doctor.templates import FORMATS, is_placeholder, jwt_payload, looks_aira, service_role_problem
from airadev.integrations import envfile


def _files(ctx: Context, rid: str) -> list[Result] | None:
    if ctx.config is None:
        return [skipped(rid, "no valid airadev.toml")]
    if not ctx.env_files:
        return [skipped(rid, "no service lists env files")]
    return None


@check("env.present", "each service's env files exist", requires=("workspace.config",))
def present(ctx: Context) -> list[Result]:
    results = _files(ctx, "env.present")
    if results is not None:
        return results
    results = []
    for f in ctx.env_files:
        rid = f"env.present:{ctx.relative(f.path)}"
        if f.path.is_file() and f.problem:
            results.append(error(rid, f.problem.message.replace(str(f.path), ctx.relative(f.path)), f.problem.fix))
        elif f.path.is_file():
            results.append(ok(rid, f"{ctx.relative(f.path)} ({len(f.values)} variables)"))
        elif f.template is not None:
            results.append(
                error(
                    rid,
                    f"{ctx.relative(f.path)} is missing",
                    f"airadev doctor --fix creates it from {ctx.relative(f.template.path)}; then fill it in",
                    Action("create-env", ctx.relative(f.path), ctx.relative(f.template.path)),
                )
            )
        else:
            results.append(
                error(
                    rid,
                    f"{ctx.relative(f.path)} is missing",
                    f"create it, or remove it from services.{f.service}.env_files",
                )
            )
    return results


def _with_template(ctx: Context) -> list:
    return [f for f in ctx.env_files if f.path.is_file() and f.template is not None]


@check("env.required", "required variables are set, not placeholders", requires=("workspace.config",))
def required(ctx: Context) -> list[Result]:
    results = _files(ctx, "env.required") or []
    for f in ctx.env_files:
        if f.path.is_file() and f.template is None:
            service = ctx.config.get(f.service)
            aira = looks_aira(service)
            hint = f'; if it is AiRa\'s {aira}, add template = "{aira}" to [services.{service.name}]' if aira else ""
            results.append(
                skipped(
                    f"env.required:{ctx.relative(f.path)}",
                    f"nothing to check {ctx.relative(f.path)} against: no .env.example beside it{hint}",
                )
            )
    examples_seen: set[tuple[str, Path]] = set()
    for f in _with_template(ctx):
        if not f.template.own:
            results.append(_aira_template(ctx, f))
        elif (f.service, f.template.path) not in examples_seen:  # one example, one verdict a service
            examples_seen.add((f.service, f.template.path))
            results.append(_own_example(ctx, f))
    return results


def _aira_template(ctx: Context, f: EnvFile) -> Result:
    rid = f"env.required:{ctx.relative(f.path)}"
    missing = [v.name for v in f.template.vars if v.required and v.name not in f.values]
    empty = [v.name for v in f.template.vars if v.required and v.name in f.values and not f.values[v.name].strip()]
    placeholder = [
        v.name
        for v in f.template.vars
        if v.required and f.values.get(v.name, "").strip() and is_placeholder(f.values[v.name])
    ]
    problems = (
        ([f"missing: {', '.join(missing)}"] if missing else [])
        + ([f"empty: {', '.join(empty)}"] if empty else [])
        + ([f"placeholders: {', '.join(placeholder)}"] if placeholder else [])
    )
    if problems:
        return error(
            rid,
            f"{ctx.relative(f.path)}: " + "; ".join(problems),
            f"fill them in (what each is for: {ctx.relative(f.template.path)})",
        )
    return ok(rid, f"{ctx.relative(f.path)}: all {sum(v.required for v in f.template.vars)} required variables set")


def _own_example(ctx: Context, f: EnvFile) -> Result:
    """The app's own .env.example: a variable it lists that the env file lacks is an error (and
    an empty secret: the app gets no key); a value still the example's placeholder (or the
    example's own value of a secret, such as `changethis`) is a warning."""
    rid = f"env.required:{ctx.relative(f.path)}"
    example = ctx.relative(f.template.path)
    # What the service gets from anywhere: all its env files (Next.js reads .env.local and
    # .env), its env table, and what the stack gives it (the database's DATABASE_URL).
    from airadev.runtimes.environment import stack_env

    service = ctx.config.get(f.service)
    given = {name for other in ctx.env_files if other.service == f.service for name in other.values}
    given |= {name for name, _ in service.env} | set(stack_env(ctx.config, service))
    missing = [v.name for v in f.template.vars if v.name not in f.values and v.name not in given]
    empty = [
        v.name
        for v in f.template.vars
        if v.visibility == "secret" and v.name in f.values and not f.values[v.name].strip()
    ]
    unchanged = [
        v.name
        for v in f.template.vars
        if (value := f.values.get(v.name, "").strip())
        and (is_placeholder(value) or (v.visibility == "secret" and value == v.default.strip()))
    ]
    problems = ([f"missing: {', '.join(missing)}"] if missing else []) + (
        [f"empty: {', '.join(empty)}"] if empty else []
    )
    if problems:
        return error(rid, f"{ctx.relative(f.path)}: " + "; ".join(problems), f"set them (they are listed in {example})")
    if unchanged:
        return warning(
            rid,
            f"{ctx.relative(f.path)}: still the example's value: {', '.join(unchanged)}",
            f"put in real values ({example} has only examples)",
        )
    return ok(rid, f"{ctx.relative(f.path)}: every variable of {example} is set")


@check("env.format", "values have the expected format", requires=("workspace.config",))
def formats(ctx: Context) -> list[Result]:
    results = _files(ctx, "env.format") or []
    for f in _with_template(ctx):
        rid = f"env.format:{ctx.relative(f.path)}"
        wrong = []
        for var in f.template.vars:
            value = f.values.get(var.name, "").strip()
            test = FORMATS.get(var.format)
            if not value or is_placeholder(value):
                continue
            if test and not test[0](value):
                wrong.append(f"{var.name} (expected {test[1]})")
            elif var.name in ("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_KEY") and service_role_problem(value):
                wrong.append(f"{var.name} (it is {service_role_problem(value)}; the service-role key belongs here)")
        if wrong:
            results.append(
                error(
                    rid,
                    f"{ctx.relative(f.path)}: malformed {'; '.join(wrong)}",
                    "copy the values again from their consoles (Twilio, Stripe, OpenAI, ...)",
                )
            )
        else:
            results.append(ok(rid, f"{ctx.relative(f.path)}: every value has its format"))
    return results


# The same value must be in both places: (what, [(variable, ...)] in any env file).
SAME = (
    ("the Twilio account", ("TWILIO_ACCOUNT_SID",)),
    ("the Twilio auth token", ("TWILIO_AUTH_TOKEN",)),
    ("the Supabase URL", ("NEXT_PUBLIC_SUPABASE_URL", "SUPABASE_URL")),
    ("the Supabase service-role key", ("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_KEY")),
    ("the Pinecone index", ("PINECONE_INDEX_NAME",)),
)


@check("env.consistent", "the same setting agrees across services", requires=("workspace.config",))
def consistent(ctx: Context) -> Result:
    skip = _files(ctx, "env.consistent")
    if skip is not None:
        return skip[0]
    disagree = []
    for what, names in SAME:
        seen = {
            (ctx.relative(f.path), name): f.values[name].strip()
            for f in ctx.env_files
            for name in names
            if f.values.get(name, "").strip() and not is_placeholder(f.values[name])
        }
        if len({_comparable(v) for v in seen.values()}) > 1 and len({_kind(v) for v in seen.values()}) == 1:
            disagree.append(f"{what} ({', '.join(f'{p} {n}' for p, n in seen)})")
    if disagree:
        return error(
            "env.consistent", "different values for " + "; ".join(disagree), "make them the same in every env file"
        )
    return ok("env.consistent", "shared settings agree across services")


def _kind(value: str) -> str:
    """Values of different kinds (a legacy JWT and an sb_secret_ key) cannot be compared."""
    if jwt_payload(value) is not None:
        return "jwt"
    return "sb" if value.startswith("sb_") else "text"


def _comparable(value: str) -> str:
    return value.rstrip("/").replace("://localhost", "://127.0.0.1")


@check("env.stack-agrees", "REDIS_HOST/REDIS_PORT and PORT agree with airadev.toml", requires=("workspace.config",))
def stack_agrees(ctx: Context) -> Result:
    skip = _files(ctx, "env.stack-agrees")
    if skip is not None:
        return skip[0]
    config = ctx.config
    problems = []
    redis = next((s for s in config.services if s.name == "redis" or "redis" in s.aliases), None)
    for f in ctx.env_files:
        service = config.get(f.service)
        where = ctx.relative(f.path)
        port = f.values.get("PORT", "").strip()
        if service.load_env_files and port and service.port and port != str(service.port):
            problems.append(f"{where} PORT={port} but services.{service.name}.port is {service.port}")
        redis_port = f.values.get("REDIS_PORT", "").strip()
        if redis and redis.port and redis_port and redis_port != str(redis.port):
            problems.append(f"{where} REDIS_PORT={redis_port} but services.{redis.name}.port is {redis.port}")
        host = f.values.get("REDIS_HOST", "").strip()
        if redis and host and host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
            problems.append(f"{where} REDIS_HOST is not this machine, but the stack's Redis runs here")
    if problems:
        return error("env.stack-agrees", "; ".join(problems), "make the env files and airadev.toml agree")
    return ok("env.stack-agrees", "ports and Redis address agree with airadev.toml")


def known_secret_values(ctx: Context) -> dict[str, str]:
    """Every secret value in the workspace's env files (for the secrets checks' comparisons)."""
    found: dict[str, str] = {}
    for f in ctx.env_files:
        marked = {v.name for v in f.template.vars if v.visibility == "secret"} if f.template else set()
        for name, value in f.values.items():
            if value and envfile.is_secret(name, marked | envfile.marked_secret()):
                found[value] = name
    return found
