"""Tools: the programs the stack needs, and each service's installed dependencies."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from airadev.doctor.deps import lock_root
from airadev.doctor.base import Context, Result, check, error, ok, skipped, warning


def _version(argv: list[str], ctx: Context, timeout: float = 2.5) -> tuple[str | None, str]:
    """(first version-looking token of the output, the output); None when it did not run."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=dict(ctx.env)
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    out = (done.stdout + done.stderr).strip()
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return (match.group(0) if match and done.returncode == 0 else None), out


def _major(version: str) -> int:
    return int(version.split(".")[0])


@check("tools.python", "Python 3.11 or newer runs airadev")
def python(ctx: Context) -> Result:
    version = ".".join(map(str, ctx.python_version))
    if tuple(ctx.python_version) < (3, 11):
        return error(
            "tools.python",
            f"Python {version} runs airadev; it needs 3.11 or newer",
            "install Python 3.11+ and reinstall airadev with it",
        )
    return ok("tools.python", f"Python {version}")


@check("tools.node", "Node.js 18 or newer (20 recommended)")
def node(ctx: Context) -> Result:
    exe = shutil.which("node", path=ctx.env.get("PATH"))
    if exe is None:
        return error(
            "tools.node",
            "node is not installed (the UI needs it)",
            "install Node.js 20 (https://nodejs.org, or your package manager)",
        )
    version, out = _version([exe, "--version"], ctx)
    if version is None:
        return error("tools.node", f"`node --version` failed: {out[:100]}", "reinstall Node.js 20")
    if _major(version) < 18:
        return error("tools.node", f"Node.js {version}: Next.js needs 18 or newer", "install Node.js 20")
    if _major(version) < 20:
        return warning("tools.node", f"Node.js {version} works; 20 is recommended", "install Node.js 20")
    return ok("tools.node", f"Node.js {version}")


@check("tools.npm", "npm", requires=("tools.node",), timeout=8)
def npm(ctx: Context) -> Result:
    exe = shutil.which("npm", path=ctx.env.get("PATH"))
    if exe is None:
        return error("tools.npm", "npm is not installed", "install it with Node.js (https://nodejs.org)")
    version, out = _version([exe, "--version"], ctx, timeout=7)
    if version is None:
        return error("tools.npm", f"`npm --version` failed: {out[:100]}", "reinstall Node.js and npm")
    return ok("tools.npm", f"npm {version}")


@check("tools.docker-client", "the docker CLI")
def docker_client(ctx: Context) -> Result:
    exe = shutil.which("docker", path=ctx.env.get("PATH"))
    if exe is None:
        return warning(
            "tools.docker-client",
            "docker is not installed (needed for container services and Supabase)",
            "install Docker (Debian: apt-get install docker.io)",
        )
    version, out = _version([exe, "--version"], ctx)
    return (
        ok("tools.docker-client", f"docker {version}")
        if version
        else warning("tools.docker-client", f"`docker --version` failed: {out[:100]}", "reinstall Docker")
    )


@check("tools.docker-engine", "a Docker engine answers", requires=("tools.docker-client",), timeout=4)
def docker_engine(ctx: Context) -> Result:
    host = docker_host(ctx)
    try:
        version = docker_api(host, "/version", timeout=2.5).get("Version", "?")
    except OSError as exc:
        return warning(
            "tools.docker-engine",
            f"no Docker engine answers at {host} ({exc.strerror or exc})",
            "start it (sudo systemctl start docker, or dockerd), or set DOCKER_HOST",
        )
    return ok("tools.docker-engine", f"Docker engine {version} at {host}")


def docker_host(ctx: Context) -> str:
    from airadev.integrations.engine import engine_host

    return engine_host(ctx.env)


def docker_api(host: str, path: str, timeout: float) -> Any:
    """GET ``path`` of the Docker engine's API (unix:// or plain tcp://); OSError unless it
    answers 200 with JSON."""
    from airadev.integrations.engine import engine_request

    status, body = engine_request(host, "GET", path, timeout=timeout)
    if status != 200:
        raise OSError(f"the engine answered {status}")
    try:
        return json.loads(body)
    except ValueError:
        raise OSError("the engine did not answer JSON") from None


@check("tools.supabase-cli", "the Supabase CLI (the UI's devDependency, or on PATH)", timeout=8)
def supabase_cli(ctx: Context) -> Result:

    config = ctx.config
    ui = config.ui_service() if config else None
    local = lock_root(ui.cwd) / "node_modules" / ".bin" / "supabase" if ui else None
    if ui is None or not (ui.cwd / "supabase" / "config.toml").is_file():
        return skipped("tools.supabase-cli", "the UI has no supabase/config.toml: Supabase is not part of this stack")
    exe = str(local) if local and local.exists() else shutil.which("supabase", path=ctx.env.get("PATH"))
    if exe is None:
        return error(
            "tools.supabase-cli",
            "the Supabase CLI is not installed",
            f"cd {ctx.relative(ui.cwd)} && npm i -D -E supabase@2.117.0",
        )
    package = Path(exe).resolve().parent.parent / "package.json"
    if local and exe == str(local) and package.is_file():
        # The UI's devDependency: its package says the version, and npm's wrapper starts the
        # binary of a platform package (@supabase/cli-linux-x64, ...), which must be there.
        # Running the CLI costs about a second.
        try:
            version = json.loads(package.read_text()).get("version")
        except (OSError, ValueError):
            version = None
        binaries = list(package.parent.parent.glob("@supabase/cli-*/bin/supabase"))
        if version and any(os.access(b, os.X_OK) for b in binaries):
            return ok("tools.supabase-cli", f"Supabase CLI {version} ({ctx.relative(Path(exe))})")
    version, out = _version([exe, "--version"], ctx, timeout=7)
    if version is None:
        return error("tools.supabase-cli", f"`supabase --version` failed: {out[:100]}", "reinstall the Supabase CLI")
    return ok("tools.supabase-cli", f"Supabase CLI {version} ({ctx.relative(Path(exe))})")


@check("tools.ngrok-agent", "a real ngrok agent (for `airadev tunnel`)")
def ngrok_agent(ctx: Context) -> Result:
    from airadev.integrations import ngrok

    config = ctx.config
    try:
        binary = ngrok.find_binary(config.tunnel.ngrok_path if config else None, ctx.env)
    except ngrok.NgrokError as exc:
        return warning("tools.ngrok-agent", exc.message, exc.fix)
    version, out = _version([str(binary), "--version"], ctx)
    if version is None or not out.startswith("ngrok version 3"):
        return warning("tools.ngrok-agent", f"{binary} is not an ngrok v3 agent ({out[:60]!r})", ngrok.INSTALL_HINT)
    return ok("tools.ngrok-agent", f"ngrok {version} ({binary})")


@check("tools.ngrok-token", "an ngrok auth token", requires=("tools.ngrok-agent",))
def ngrok_token(ctx: Context) -> Result:
    from airadev.integrations import ngrok

    if ngrok.auth_token(ctx.env) is None:
        return warning(
            "tools.ngrok-token",
            "no ngrok auth token (NGROK_AUTHTOKEN, or the ngrok config)",
            "run `ngrok config add-authtoken TOKEN` (dashboard.ngrok.com), or set NGROK_AUTHTOKEN",
        )
    source = "NGROK_AUTHTOKEN" if ctx.env.get("NGROK_AUTHTOKEN") else str(ngrok.default_config_path(ctx.env))
    return ok("tools.ngrok-token", f"an auth token is set ({source})")


@check("tools.redis", "redis-server, or a Redis image")
def redis(ctx: Context) -> Result:
    exe = shutil.which("redis-server", path=ctx.env.get("PATH"))
    if exe:
        version, _ = _version([exe, "--version"], ctx)
        return ok("tools.redis", f"redis-server {version or '?'}")
    try:
        filters = '{"reference":["redis","redis:*","*/redis:*"]}'
        from urllib.parse import quote

        images = docker_api(docker_host(ctx), f"/images/json?filters={quote(filters)}", timeout=2)
    except OSError:
        images = []
    if images:
        return ok("tools.redis", f"a Redis image: {images[0].get('RepoTags', ['?'])[0]}")
    return error(
        "tools.redis",
        "neither redis-server nor a Redis image is here (the voice agent needs Redis)",
        "apt-get install redis-server (or run Redis in a container)",
    )


@check("tools.stripe", "the Stripe CLI and a test-mode key, for Stripe's events ([stripe])")
def stripe(ctx: Context) -> Result:
    from airadev.errors import AiradevError
    from airadev.runtimes.stripe import find_cli, test_key

    config = ctx.config
    settings = config.stripe if config else None
    if config is None or settings is None or not settings.enabled:
        ui = config.ui_service() if config else None
        keys = [f.values.get("STRIPE_SECRET_KEY", "") for f in ctx.env_files if ui and f.service == ui.name]
        if any(k.startswith(("sk_test_", "rk_test_")) for k in keys):
            return skipped(
                "tools.stripe",
                "the UI has a test-mode STRIPE_SECRET_KEY, but no [stripe] in airadev.toml: "
                "add [stripe] to have `airadev up` forward Stripe's test events to it",
            )
        return skipped("tools.stripe", "no [stripe] in airadev.toml")
    from airadev.integrations import envfile

    path = config.get("stripe").env_files[0]
    values = envfile.read(path, strict=False) if path.is_file() else {}
    try:
        test_key(settings, values, ctx.relative(path))
    except AiradevError as exc:
        return error("tools.stripe", exc.message, exc.fix)
    try:
        cli = find_cli(settings, ctx.env.get("PATH"))
    except AiradevError as exc:
        return error("tools.stripe", exc.message, exc.fix)
    return ok("tools.stripe", f"{cli}; {ctx.relative(path)} has a test-mode {settings.key_variable}")
