"""Live checks (skipped with --offline): what only the network can tell."""

from __future__ import annotations

import subprocess

from airadev.doctor.base import Context, Result, check, error, ok, skipped, warning


@check(
    "live.twilio",
    "the Twilio credentials work and the test number takes webhooks",
    live=True,
    timeout=8,
    requires=("env.present",),
)
def twilio(ctx: Context) -> Result:
    from airadev.integrations.twilio import API_BASE_ENV, TwilioError, TwilioNumbers
    from airadev.rewiring import test_number, twilio_credentials

    credentials = twilio_credentials(ctx.config, ctx.env)
    if credentials is None:
        return skipped("live.twilio", "no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN to try")
    number = test_number(ctx.config, ctx.env)
    try:
        numbers = TwilioNumbers(*credentials, timeout=5, base_url=ctx.env.get(API_BASE_ENV))
        if not number:
            numbers.client.api.v2010.accounts(credentials[0]).fetch()
            return ok("live.twilio", f"Twilio accepts the credentials of {credentials[0]} (no test number set)")
        found = numbers.lookup(number)
    except TwilioError as exc:
        return error("live.twilio", exc.message, exc.fix)
    except Exception as exc:  # noqa: BLE001  (twilio-python's account fetch raises its own)
        import requests  # twilio-python's HTTP client

        if isinstance(exc, requests.RequestException):  # never answered: nothing is known of the credentials
            return warning(
                "live.twilio",
                f"Twilio cannot be reached ({type(exc).__name__}), so the credentials are not checked",
                "check the network (or HTTPS_PROXY); `airadev doctor --offline` leaves the live checks out",
            )
        status = getattr(exc, "status", None)
        return error(
            "live.twilio",
            f"Twilio refused the credentials of {credentials[0]}"
            + (f" ({status})" if status else f": {type(exc).__name__}"),
            "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (the Twilio console, Account info)",
        )
    if found.routed_elsewhere:
        return warning(
            "live.twilio",
            f"{number}: {found.routed_elsewhere}, so Twilio ignores its webhook URLs",
            "in the Twilio console, set the number's calls to a webhook instead",
        )
    return ok("live.twilio", f"{number} is on the account and takes webhooks")


@check(
    "live.supabase",
    "Supabase runs and the env files hold its keys",
    live=True,
    timeout=10,
    requires=("tools.supabase-cli",),
)
def supabase(ctx: Context) -> Result:
    import shutil

    from airadev.model import Runtime

    db = ctx.config.database()
    if db is None or db.runtime is not Runtime.SUPABASE:
        what = f"the plain PostgreSQL of services.{db.name}" if db else "none"
        return skipped("live.supabase", f"the stack's database is not Supabase ({what})")
    ui = ctx.config.ui_service()
    local = ui.cwd / "node_modules" / ".bin" / "supabase"
    exe = str(local) if local.exists() else shutil.which("supabase", path=ctx.env.get("PATH")) or "supabase"
    try:
        done = subprocess.run(
            [exe, "status", "-o", "json"],
            cwd=ui.cwd,
            capture_output=True,
            text=True,
            timeout=8,
            stdin=subprocess.DEVNULL,
            env=dict(ctx.env),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return error("live.supabase", f"`supabase status` did not run: {exc}", "see `airadev doctor tools`")
    if done.returncode != 0:
        return warning("live.supabase", "local Supabase is not running", "start the stack (`airadev up`)")
    from airadev.integrations.supabase import parse_status

    status = parse_status(done.stdout)
    if not status:
        return error("live.supabase", "`supabase status -o json` printed no JSON", "update the Supabase CLI")
    expected = {
        "NEXT_PUBLIC_SUPABASE_URL": status.get("API_URL"),
        "SUPABASE_URL": status.get("API_URL"),
        "NEXT_PUBLIC_SUPABASE_ANON_KEY": {status.get("ANON_KEY"), status.get("PUBLISHABLE_KEY")},
        "SUPABASE_SERVICE_ROLE_KEY": {status.get("SERVICE_ROLE_KEY"), status.get("SECRET_KEY")},
        "SUPABASE_KEY": {status.get("SERVICE_ROLE_KEY"), status.get("SECRET_KEY")},
    }
    stale = []
    for f in ctx.env_files:
        for name, want in expected.items():
            have = f.values.get(name)
            wanted = want if isinstance(want, set) else {want}
            if have is not None and have not in wanted:
                stale.append(f"{ctx.relative(f.path)} {name}")
    if stale:
        return error(
            "live.supabase",
            f"not what the running Supabase reports: {', '.join(stale)}",
            "copy them from `supabase status -o env` (airadev wires them in when it starts Supabase)",
        )
    return ok("live.supabase", f"Supabase runs at {status.get('API_URL')}; the env files hold its keys")


@check("live.voice-url", "VOICE_AGENT_SERVICE_URL answers", live=True, timeout=6, requires=("env.present",))
def voice_url(ctx: Context) -> Result:
    import httpx

    path = ctx.config.ui_env_file()
    if path is None:
        return skipped("live.voice-url", "no env file gets the tunnel's address (no UI, or env_file = false)")
    from airadev.integrations.envfile import read_value

    url = read_value(path, ctx.config.tunnel.variable)
    if not url:
        return skipped("live.voice-url", f"{ctx.config.tunnel.variable} is not set")
    try:
        answer = httpx.get(url.rstrip("/") + "/health", timeout=4)
    except httpx.HTTPError as exc:
        return warning(
            "live.voice-url",
            f"{url} does not answer ({type(exc).__name__})",
            "start the voice agent (`airadev up`), or open the tunnel (`airadev tunnel`)",
        )
    if answer.status_code >= 400:  # an ngrok endpoint that is gone answers 404 (ERR_NGROK_3200)
        return warning(
            "live.voice-url",
            f"{url}/health answers {answer.status_code}",
            "open the tunnel again (`airadev tunnel`), or see `airadev logs voice`",
        )
    return ok("live.voice-url", f"{url} answers ({answer.status_code})")


@check(
    "live.kb-deliveries",
    "the database's webhook requests (pg_net) are delivered",
    live=True,
    timeout=6,
    requires=("workspace.config",),
)
def kb_deliveries(ctx: Context) -> Result:
    """Reads what pg_net (Supabase's, or airadev's on the postgres runtime) recorded in the last
    hour, and what waits: inserts nothing, changes nothing."""
    from airadev.integrations import database
    from airadev.state import Paths, read_state, supervisor_alive

    rid = "live.kb-deliveries"
    db = ctx.config.database()
    state = read_state(Paths(ctx.root)) if ctx.root else None
    if db is None or not supervisor_alive(state):
        return skipped(rid, "no local database is running")
    if ((state or {}).get("services", {}).get(db.name) or {}).get("state") != "healthy":
        return skipped(rid, f"{db.name} is not healthy")
    from urllib.parse import urlsplit

    from airadev.model import Runtime

    try:
        with database.connect(database.url(db), timeout=3) as conn:
            target = database.trigger_url(conn) or ""
            if db.runtime is Runtime.SUPABASE and urlsplit(target).hostname in ("127.0.0.1", "localhost", "::1"):
                # Supabase's pg_net runs in its database's container: loopback there is the container.
                return error(
                    rid,
                    f"{database.TRIGGER_FUNCTION}() posts to {target}: from Supabase's database container "
                    "that is the container itself, never the KB updater",
                    f"use host.docker.internal (airadev sets it at `up`: `airadev restart {db.name}`), "
                    "and have the KB updater listen on 0.0.0.0",
                )
            if conn.execute("SELECT to_regclass('net._http_response')").fetchone()[0] is None:
                return skipped(rid, f"{db.name} has no pg_net (net._http_response)")
            failed, last = conn.execute(
                "SELECT count(*), (array_agg(coalesce(status_code::text, error_msg) ORDER BY created DESC))[1]"
                " FROM net._http_response WHERE created > now() - interval '1 hour'"
                " AND (status_code IS NULL OR status_code >= 400)"
            ).fetchone()
            delivered = conn.execute(
                "SELECT count(*) FROM net._http_response WHERE created > now() - interval '1 hour'"
            ).fetchone()[0]
            waiting, first = conn.execute(
                "SELECT count(*), (array_agg(url ORDER BY id))[1] FROM net.http_request_queue"
            ).fetchone()
    except database.DatabaseError as exc:
        return warning(rid, exc.message, exc.fix)
    from airadev.logstore import Redactor
    from airadev.runtimes.environment import stack_secrets

    hide = Redactor(stack_secrets(ctx.config)).text  # a token in a URL, an error quoting one
    if failed:
        shown = hide(str(last))[:120]
        return warning(
            rid,
            f"{failed} of {delivered} webhook requests of the last hour failed (the last: {shown})",
            f"see `airadev logs {db.name}` (one line per delivery) and the target's log; "
            "SELECT * FROM net._http_response ORDER BY created DESC",
        )
    if waiting:
        return warning(
            rid,
            f"{waiting} webhook requests wait to be sent (the first to {hide(str(first))})",
            f"is its target running? `airadev status`; `airadev logs {db.name}` says why they wait",
        )
    return ok(rid, f"{delivered} webhook requests in the last hour, none failed, none waiting")


@check("live.stripe", "the UI's STRIPE_WEBHOOK_SECRET is the running listener's", live=True, timeout=4)
def stripe_secret(ctx: Context) -> Result:
    """Compares the env file with what airadev wrote there for the running listener (its journal),
    never showing either."""
    from airadev.integrations.envfile import read_value
    from airadev.rewiring import StripeJournal
    from airadev.state import Paths, read_state, supervisor_alive

    rid = "live.stripe"
    config = ctx.config
    if config is None or not config.stripe.enabled:
        return skipped(rid, "no [stripe] in airadev.toml")
    state = read_state(Paths(ctx.root)) if ctx.root else None
    if not supervisor_alive(state) or ((state or {}).get("services", {}).get("stripe") or {}).get("state") != "healthy":
        return skipped(rid, "the Stripe listener is not running")
    path, variable = config.get("stripe").env_files[0], config.stripe.variable
    journal = StripeJournal.load(Paths(ctx.root))  # type: ignore[arg-type]
    wired = [s["edit"]["value"] for s in journal.steps if s["status"] == "applied"] if journal else []
    if not wired:
        return warning(rid, "the listener runs, but its secret is not in the env file", "`airadev restart stripe`")
    if read_value(path, variable) != wired[-1]:
        return error(
            rid,
            f"{ctx.relative(path)}: {variable} is not the running listener's signing secret (changed since "
            "airadev wrote it): the UI rejects every event it forwards",
            "`airadev restart stripe` writes it again",
        )
    return ok(rid, f"{ctx.relative(path)}: {variable} is the running listener's signing secret")
