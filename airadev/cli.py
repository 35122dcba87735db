"""The command line: parse arguments, call one operation, hand its result to render, exit.

Imports are lazy: `airadev status` must not pay for asyncio, psutil or rich it does not use.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from airadev import __version__, render, views
from airadev.errors import EXIT_FAILED, AiradevError, NotRunning, UsageError
from airadev.workspace import complete_services as _names
from airadev.workspace import duration_option as _duration

EXIT_CODES = """Exit codes: 0 success; 1 the operation failed; 2 bad usage or bad config;
3 nothing is running (status, logs -f, and what needs a running stack)."""

app = typer.Typer(
    name="airadev",
    help="Run the AiRa stack locally: one command up, one readable log stream, nothing left behind.",
    epilog=EXIT_CODES,
    add_completion=True,
    rich_markup_mode=None,  # click's help: brackets shown as written, rich not imported (bench/cli.py)
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


class Options:
    workspace: Optional[str] = None
    debug: bool = False


def _version(value: bool) -> None:
    if value:
        render.info(f"airadev {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    workspace: Optional[str] = typer.Option(
        None,
        "--workspace",
        "-w",
        metavar="DIR",
        help="Workspace folder holding airadev.toml (default: $AIRADEV_WORKSPACE, else found from here upwards).",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of unexpected errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    Options.workspace = workspace
    Options.debug = debug


def handled(fn: F) -> F:
    """Turn AiradevError into its two lines and exit code; anything else is a bug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AiradevError as exc:
            render.error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit, BrokenPipeError):  # (a closed pipe: click exits quietly)
            raise
        except Exception as exc:
            if Options.debug:
                raise
            render.error(
                AiradevError(
                    f"airadev failed unexpectedly: {type(exc).__name__}: {exc}",
                    "run again with --debug for the traceback, and report it",
                )
            )
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]


def _root() -> Path:
    from airadev.workspace import find_root

    return find_root(explicit=Options.workspace)


def _config():
    from airadev.config import load

    return load(_root())


def _paths():
    from airadev.state import Paths

    return Paths(_root())


# --- up / down ---------------------------------------------------------------------------------


@app.command()
@handled
def up(
    services: list[str] = typer.Argument(
        None, help="Services to start (aliases work); with what they depend on. Default: all.", autocompletion=_names
    ),
    detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background; return once all are ready."),
    timeout: str = typer.Option(
        "300s", "--timeout", help="With --detach (or on a running stack): how long to wait, e.g. 90s, 5m."
    ),
    tunnel: bool = typer.Option(False, "--tunnel", help="Also open the ngrok tunnel once the voice agent is ready."),
    domain: Optional[str] = typer.Option(None, "--domain", help="With --tunnel: a reserved ngrok domain."),
    region: Optional[str] = typer.Option(None, "--region", help="With --tunnel: the ngrok region."),
    keep: bool = typer.Option(False, "--keep", help="With --tunnel: leave the rewiring in place when it closes."),
    runtime: Optional[str] = typer.Option(
        None, "--runtime", help="docker: run every service that has a [services.X.docker] image as a container."
    ),
    build: bool = typer.Option(False, "--build", help="Build the containers' images (docker.build) before starting."),
    no_deps: bool = typer.Option(False, "--no-deps", help="Start only the services named, not what they depend on."),
    dash: bool = typer.Option(False, "--dash", help="A dashboard, not the log stream; quitting it stops the stack."),
) -> None:
    """Start the stack in dependency order, health-checked, with one log stream; Ctrl-C stops it all.
    On a running stack: apply a changed airadev.toml (restart what changed, start what is new,
    stop what was removed) and wait until it is ready."""
    from airadev.model import Runtime
    from airadev.operations import up as op
    from airadev.operations.logs import running

    if dash:
        from airadev import dash as ui

        ui.refuse(detach)
    config = _config()
    wait = _duration("--timeout", timeout)
    if running(_paths()):
        if runtime is not None or build or tunnel:
            raise UsageError(
                "the stack is running: --runtime, --build and --tunnel apply to a new run",
                "run `airadev down` first, or `airadev tunnel` for a tunnel",
            )
        views.applied(op.apply_running(config, op.select(config, services or [], no_deps), wait, no_deps))
        if dash:
            ui.show(_paths(), _config)
        return
    if runtime is not None:
        if runtime not in ("docker", "process"):
            raise UsageError(f"--runtime {runtime}: unknown", "use --runtime docker (or leave it out)")
        config = config.with_runtime(Runtime(runtime))
    names = op.select(config, services or [], no_deps)
    if (domain or region or keep) and not tunnel:
        raise UsageError("--domain, --region and --keep go with --tunnel", "add --tunnel, or leave them out")
    tunnel_options = {"domain": domain or "", "region": region or "", "keep": keep} if tunnel else None
    if dash:
        return ui.up(config, names, _config, tunnel=tunnel_options, runtime=runtime or "", build=build)
    if detach:
        started = op.start_detached(
            config, names, timeout=wait, tunnel=tunnel_options, runtime=runtime or "", build=build
        )
        for note in started.notes:
            render.warn(note)
        views.ready_summary(started.summary)
        if started.tunnel:
            render.tunnel_status(started.tunnel)
        render.info(
            f"running in the background (supervisor pid {started.supervisor_pid}); "
            "`airadev logs -f` to follow, `airadev down` to stop"
        )
        return
    colour = render.use_colour()
    console = render.LogConsole(names, colour=colour)

    def announce(notes: list[str]) -> None:
        for note in notes:
            console.event(None, note, "warning")

    try:
        op.run_foreground(
            config,
            names,
            observer=console,
            colour=colour,
            tunnel=tunnel_options,
            on_ready_to_start=announce,
            build=build,
            runtime=runtime or "",
        )
    finally:
        console.close()


@app.command()
@handled
def build(
    services: list[str] = typer.Argument(
        None, help="Services to build (aliases work). Default: all.", autocompletion=_names
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Build every step again, ignoring the engine's cache."),
) -> None:
    """Build the images of the services that have a [services.NAME.docker] build, as `up` does
    when one is missing (or with `up --build`). Exit 1 if one does not build."""
    from airadev.operations import build as op

    config = _config()
    chosen = op.buildable(config, services or [])
    console = render.LogConsole([s.name for s in chosen], colour=render.use_colour())
    try:
        op.build(
            config, chosen, console.output, lambda service, message: console.event(service, message), no_cache=no_cache
        )
    finally:
        console.close()


@app.command()
@handled
def export(
    what: str = typer.Argument(..., help="What to export: compose."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", help="Write to this file (atomically) instead of standard output."
    ),
) -> None:
    """Export the stack's containers as a Compose file, generated from airadev.toml."""
    from airadev.operations import export as op

    if what != "compose":
        raise UsageError(f"cannot export {what!r}", "use `airadev export compose`")
    config = _config()
    target = Path(output).resolve() if output else None
    text = op.compose(config, target.parent if target else Path.cwd())
    if target is None:
        sys.stdout.write(text)
        return
    op.write(target, text)
    render.info(f"wrote {output}")


@app.command()
@handled
def down(
    timeout: str = typer.Option("120s", "--timeout", help="How long to wait for everything to stop, e.g. 60s, 2m."),
    volumes: bool = typer.Option(False, "--volumes", help="Also delete the local database's data (asks first)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="With --volumes: do not ask."),
) -> None:
    """Stop the running stack (from any terminal), or end what a crashed run left behind."""
    from airadev.operations import manage

    if volumes and not yes:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise UsageError("--volumes deletes the local database's data", "add --yes to confirm")
        if not typer.confirm("Delete the local database's data (tables, rows, storage)?", default=False):
            raise typer.Exit(EXIT_FAILED)
    views.stopped(manage.down(_paths(), timeout=_duration("--timeout", timeout), volumes=volumes))


# --- status / logs -----------------------------------------------------------------------------


@app.command()
@handled
def status(as_json: bool = typer.Option(False, "--json", help="One JSON object (schema 1).")) -> None:
    """Each service's state, pid, port, health, uptime, restarts, CPU and memory. Exit 3 if nothing runs."""
    from airadev.operations import manage
    from airadev.workspace import config_digest as digest

    paths = _paths()
    try:
        status = manage.status(paths)
    except NotRunning:
        if as_json:  # always JSON, for scripts; the exit code still says it
            render.json_out({"schema": 1, "running": False})
            raise typer.Exit(3) from None
        raise
    changed = bool(status.config_digest) and status.config_digest != digest(paths.root)
    if as_json:
        render.json_out({**status.to_json(), "running": True, "config_changed": changed})
        return
    render.status(status)
    if changed:
        render.warn("airadev.toml changed since up: `airadev up` applies it (restarting what changed)")


app.command("ps", help="The same as `airadev status` (compose's and overmind's name).")(status)


@app.command()
@handled
def logs(
    services: list[str] = typer.Argument(
        None, help="Services (aliases work; 'airadev' is the supervisor). Default: all.", autocompletion=_names
    ),
    lines: int = typer.Option(100, "-n", "--lines", help="How many of the last lines of each service."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines, across restarts."),
    since: Optional[str] = typer.Option(None, "--since", help="Only lines newer than this, e.g. 10m, 90s, 2h."),
    timestamps: bool = typer.Option(False, "--timestamps", "-t", help="Show each line's UTC timestamp."),
    no_prefix: bool = typer.Option(False, "--no-prefix", help="Leave out the 'service |' prefix."),
) -> None:
    """Show stored logs, running or not: the last lines, or follow them (-f)."""
    from airadev.operations import logs as op
    from airadev.state import Paths
    from airadev.workspace import parse_duration, service_names

    root = _root()
    paths = Paths(root)
    extra = [op.AGENT_LOG] if paths.log(op.AGENT_LOG).exists() else []
    names = op.choose(service_names(root), services or [], extra)
    seconds = None
    if since is not None:
        seconds = parse_duration(since)
        if seconds is None:
            raise UsageError(f"--since {since}: not a duration", "write it like 10m, 90s or 2h")
    if lines < 0:
        raise UsageError(f"-n {lines}: must be 0 or more", "write -n 100")
    printer = render.LogPrinter(names, prefix=not no_prefix, timestamps=timestamps, colour=render.use_colour())
    followers = op.followers(paths, names) if follow else {}
    ends = {name: f.position for name, f in followers.items()}
    for line in op.recent(paths, names, lines, seconds, ends):
        if not printer.write(line.service, [line.raw]):
            return
    if not follow:
        return
    if not op.running(paths):
        raise NotRunning(
            "nothing is running, so there is nothing to follow (the lines above are stored ones)",
            "start the stack with `airadev up`",
        )
    for batch in op.follow(paths, followers):
        for line in batch:
            if not printer.write(line.service, [line.raw]):
                return


@app.command()
@handled
def dash() -> None:
    """A live dashboard of the running stack, from any terminal: services, tunnel, logs; keys
    restart, stop or start a service, open the tunnel, verify it, show doctor's findings, and
    quit (the stack keeps running). Exit 3 if nothing runs."""
    from airadev import dash as ui
    from airadev.operations.logs import running

    if not running(_paths()):
        raise NotRunning("nothing is running: the dashboard shows a running stack", "start it with `airadev up --dash`")
    ui.show(_paths(), _config)


# --- services of the running stack -------------------------------------------------------------

SERVICES_HELP = "Services (aliases work)."
ALL_HELP = "Every service of the run."


def _service_command(op: str, names: list[str], every: bool, wait: float) -> None:
    from airadev.operations import manage

    def said(result: dict[str, object]) -> None:
        render.info(
            f"{result['service']}: {result['state']}" + (f" ({result['message']})" if result.get("message") else "")
        )

    manage.services_op(_config(), op, names, every, wait, said)


@app.command()
@handled
def restart(
    services: list[str] = typer.Argument(None, help=SERVICES_HELP, autocompletion=_names),
    every: bool = typer.Option(False, "--all", help=ALL_HELP),
    wait: str = typer.Option(
        "120s", "--wait", help="How long to wait for each to be ready again (a task: to complete)."
    ),
) -> None:
    """Restart services of the running stack, one after another, each waited for until ready
    again (a one-shot task: until it has completed; exit 1 with its last lines if one fails)."""
    _service_command("restart", services or [], every, _duration("--wait", wait))


@app.command()
@handled
def stop(
    services: list[str] = typer.Argument(None, help=SERVICES_HELP, autocompletion=_names),
    every: bool = typer.Option(False, "--all", help=ALL_HELP + " The stack keeps running: `airadev down` ends it."),
) -> None:
    """Stop services of the running stack (each one's process group and anything it spawned)."""
    _service_command("stop", services or [], every, 60)


@app.command()
@handled
def start(
    services: list[str] = typer.Argument(None, help=SERVICES_HELP, autocompletion=_names),
    every: bool = typer.Option(False, "--all", help=ALL_HELP),
    wait: str = typer.Option("120s", "--wait", help="How long to wait for each to be ready, e.g. 90s, 2m."),
) -> None:
    """Start stopped services of the running stack again."""
    _service_command("start", services or [], every, _duration("--wait", wait))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@handled
def run(
    service: str = typer.Argument(..., help="The service whose environment the command gets.", autocompletion=_names),
    command: list[str] = typer.Argument(None, help="The command and its arguments (after --); default: a shell."),
) -> None:
    """Run a one-off command (a migration, pytest, a shell) in a service's folder and environment
    (virtualenv, env files, env table, DATABASE_URL), in this terminal; exit with its code."""
    from airadev.operations import run as op
    from airadev.operations.up import resolve

    config = _config()
    op.exec_in(config, resolve(config, service), command or [])


@app.command()
@handled
def attach(service: str = typer.Argument(..., help="The process service to take over.", autocompletion=_names)) -> None:
    """Take a running service over into this terminal (stdin and tty here: pdb works) while its
    dependents keep running; when it ends (Ctrl-C), the supervisor takes it back."""
    from airadev.operations import attach as op

    raise typer.Exit(op.attach(_config(), service, render.info))


stripe_app = typer.Typer(help="Stripe's test events, forwarded to the UI ([stripe] in airadev.toml).")
app.add_typer(stripe_app, name="stripe")


@stripe_app.command("trigger")
@handled
def stripe_trigger(event: str = typer.Argument(..., help="An event, e.g. checkout.session.completed.")) -> None:
    """Send a test event through Stripe (`stripe trigger` with the UI's test key); the listener forwards it."""
    from airadev.operations import stripe as op

    op.trigger(_config(), event)


# --- tunnel ------------------------------------------------------------------------------------


@app.command()
@handled
def tunnel(
    domain: Optional[str] = typer.Option(None, "--domain", help="A reserved ngrok domain: the address stays the same."),
    region: Optional[str] = typer.Option(None, "--region", help="The ngrok region (us, eu, ap, au, sa, jp, in)."),
    keep: bool = typer.Option(False, "--keep", help="Leave the rewiring in place when the tunnel closes."),
    verify: bool = typer.Option(False, "--verify", help="Send a test call signed like Twilio's through the tunnel."),
    stop: bool = typer.Option(False, "--stop", help="Close the tunnel and put everything back (unless --keep)."),
    show: bool = typer.Option(False, "--status", help="Show the address and what is rewired where."),
    as_json: bool = typer.Option(False, "--json", help="With --status or --verify: one JSON object (schema 1)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Return once open; the tunnel stays with the stack."),
    forget: bool = typer.Option(
        False, "--forget", help="Show what an earlier tunnel left rewired and could not put back; drop that record."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="With --forget: do not ask."),
) -> None:
    """A public ngrok address for the voice agent, wired into the UI's env file and the Twilio test
    number, and put back when it closes (Ctrl-C, `tunnel --stop`, `down`). Needs a running stack."""
    from airadev.operations import tunnel as op

    if forget:
        views.forget_tunnel(_paths(), yes)
        return
    if yes:
        raise UsageError("--yes goes with --forget", "add --forget, or leave --yes out")
    from airadev.workspace import config_digest as digest
    from airadev.state import read_state

    paths = _paths()
    applied = (read_state(paths) or {}).get("config_digest")
    if applied and applied != digest(paths.root) and not (show or stop):
        render.warn(
            "airadev.toml changed since up: the tunnel uses the running stack's settings; `airadev up` applies the file"
        )
    options = op.Options(
        domain=domain or "",
        region=region or "",
        keep=keep,
        verify=verify,
        stop=stop,
        show=show,
        as_json=as_json,
        detach=detach,
    )
    op.session(_paths(), _config, options, render.TunnelView())


# --- doctor ------------------------------------------------------------------------------------


@app.command()
@handled
def doctor(
    checks: list[str] = typer.Argument(None, help="Only these checks (ids or prefixes, e.g. env, tools.node)."),
    offline: bool = typer.Option(False, "--offline", help="Skip the live checks (Twilio, Supabase, the voice URL)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every check's details and timing."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object (schema 1)."),
    strict: bool = typer.Option(False, "--strict", help="Warnings fail too (exit 1)."),
    fix: bool = typer.Option(False, "--fix", help="Carry out the safe fixes, then check again."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --fix: only say what would be done."),
    install: bool = typer.Option(False, "--install", help="With --fix: also install missing dependencies."),
    list_checks: bool = typer.Option(False, "--list-checks", help="List the checks and exit."),
) -> None:
    """Check that everything the stack needs is there and right, and say how to fix what is not.
    Exit 0 with no errors, 1 with errors (or warnings, with --strict)."""
    from airadev import doctor as dr
    from airadev.operations import doctor as op

    if list_checks:
        render.doctor_checks(dr.select([], offline=False))
        return
    if (dry_run or install) and not fix:
        raise UsageError("--dry-run and --install go with --fix", "add --fix")

    def context() -> dr.Context:
        return dr.Context(Path.cwd(), Options.workspace, offline=offline, debug=Options.debug)

    ctx = context()
    selected = dr.select(checks or [], offline)
    results = dr.run(selected, ctx)
    fixes: list[tuple[str, str]] = []
    if fix:
        # Ask only a person at a terminal, and never into JSON.
        interactive = sys.stdin.isatty() and sys.stdout.isatty() and not as_json and not install
        results, fixes, ctx = op.fix_rounds(
            selected,
            results,
            ctx,
            context,
            dry_run=dry_run,
            install=install,
            ask=render.confirm if interactive else None,
        )
        if not as_json:
            render.doctor_fixes(fixes, dry_run)
    redact = op.redactor(ctx)
    if as_json:
        render.json_out(op.as_json(results, ctx, strict, redact, fixes if fix else None))
    else:
        render.doctor_report(results, ctx, verbose=verbose, redact=redact)
    code = dr.exit_code(results, strict)
    if code:
        raise typer.Exit(code)


# --- init --------------------------------------------------------------------------------------


@app.command()
@handled
def init(
    directory: Path = typer.Argument(Path("."), help="The project or workspace folder."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing airadev.toml."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the config and what was found; write nothing."),
    aira: bool = typer.Option(
        False, "--aira", help="Write the AiRa layout's config (aira-ui/, voice-agent/, kb-updater/)."
    ),
) -> None:
    """Write a commented airadev.toml for what is on disk (the AiRa layout, or the apps, Compose
    file, Procfile and Supabase project found) and git-ignore .airadev/."""
    from airadev.operations import init as op

    views.initialised(op.init(directory, force=force, dry_run=dry_run, aira=aira), dry_run)


@app.command("config")
@handled
def show_config(as_json: bool = typer.Option(False, "--json", help="One JSON object (schema 1).")) -> None:
    """Validate airadev.toml and print it resolved: defaults filled in, aliases, runtimes, ports,
    dependencies, env files by name, env variables by name (never their values)."""
    from airadev.operations.export import resolved

    views.resolved_config(resolved(_config()), as_json)


def main() -> None:
    from airadev import terminal

    terminal.run(app)


if __name__ == "__main__":
    main()
