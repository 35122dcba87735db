"""The ``stripe`` runtime: the service [stripe] adds, Stripe's test events forwarded to the UI.

It runs the Stripe CLI's ``stripe listen --forward-to <ui>/api/payment/webhook --events ...``
as a process group of the stack, with the UI's test-mode key (``STRIPE_SECRET_KEY`` of its
env file, given as ``STRIPE_API_KEY``: never on a command line). A live key is refused. The
listener prints its signing secret (``Your webhook signing secret is whsec_...``): it is hidden
from all output before that line is shown, then written into the UI's env file as
``STRIPE_WEBHOOK_SECRET``, journaled (``.airadev/stripe.json``) and byte-preserving as the
tunnel's address is, and the UI's reload of the file checked (Next.js says ``Reload env``;
else the UI is restarted). The service is ready then. Stopping the listener puts the file
back; after a crash, the next `up` or `down` does (rewiring.recover)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
from collections.abc import Mapping
from typing import Any

from airadev.errors import AiradevError
from airadev.model import Service
from airadev.runtimes.base import Context, OnOutput
from airadev.runtimes.envreload import relative as _relative
from airadev.runtimes.process import ProcessInstance, ProcessRuntime

SECRET = re.compile(rb"whsec_[A-Za-z0-9]{16,}")
LIVE = ("sk_live_", "rk_live_")


def test_key(settings: Any, env: Mapping[str, str], where: str) -> str:
    """The test-mode key from the UI's env file; a missing or live one refused in one line."""
    key = env.get(settings.key_variable, "")
    if not key:
        raise AiradevError(
            f"{where}: {settings.key_variable} is not set: the Stripe CLI needs a test-mode key",
            f"set {settings.key_variable}=sk_test_... (the Stripe dashboard, Developers → API keys, test mode)",
        )
    if key.startswith(LIVE):
        raise AiradevError(
            f"{where}: {settings.key_variable} is a live key: airadev forwards test events only",
            f"use a test-mode key (sk_test_...) in {where} for local development",
        )
    return key


def find_cli(settings: Any, path: str | None) -> str:
    """The Stripe CLI's path ([stripe] cli, looked up on ``path``), or the error that says how to get it."""
    cli = shutil.which(settings.cli, path=path)
    if cli is None:
        raise AiradevError(
            f"[stripe]: the Stripe CLI ({settings.cli}) is not found",
            "install it (https://docs.stripe.com/stripe-cli), or set [stripe] cli to its path",
        )
    return cli


class StripeRuntime:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def start(self, service: Service, env: Mapping[str, str], on_output: OnOutput) -> StripeInstance:
        settings = self.ctx.config.stripe
        where = _relative(service.env_files[0], self.ctx.config.root)
        key = test_key(settings, env, where)
        cli = find_cli(settings, env.get("PATH"))
        # What an earlier listener of a run that died left in the env file goes back first.
        from airadev import rewiring
        from airadev.state import Paths

        await asyncio.to_thread(rewiring.recover_stripe, Paths(self.ctx.config.root), self.ctx.config)
        instance = StripeInstance(self.ctx, service, on_output)
        command = (cli, *service.command[1:])  # config built it whole (`stripe listen ...`)
        process = ProcessRuntime(self.ctx.marker).start(
            dataclasses.replace(service, command=command), {**env, "STRIPE_API_KEY": key}, instance.output
        )
        instance.attach(process)
        return instance


class StripeInstance:
    readiness = "the listener's signing secret, wired into the UI's env file"

    def __init__(self, ctx: Context, service: Service, on_output: OnOutput) -> None:
        self.ctx = ctx
        self.service = service
        self._on_output = on_output
        self.process: ProcessInstance | None = None
        self.pid: int | None = None
        self.pgid: int | None = None
        self.secret = ""  # the listener's, once it has said it
        self.wired = ""  # the secret now in the env file
        self.journal: Any = None
        self._held = b""  # the start of a line not yet whole

    def attach(self, process: ProcessInstance) -> None:
        self.process, self.pid, self.pgid = process, process.pid, process.pgid

    def output(self, data: bytes) -> None:
        """Its output, on the loop, passed on a whole line at a time (the CLI writes whole
        lines): a signing secret is learnt from a whole line, so never in part, and hidden
        before that line is shown, however the reads cut it."""
        data = self._held + data
        end = data.rfind(b"\n") + 1
        data, self._held = data[:end], data[end:]
        if b"whsec_" in data:
            for found in SECRET.finditer(data):
                if found.group().decode() != self.secret:
                    self.secret = found.group().decode()
                    self.ctx.hide({self.ctx.config.stripe.variable: self.secret})
        if data:
            self._on_output(data)

    @property
    def exited(self) -> asyncio.Future[int]:
        assert self.process is not None
        return self.process.exited

    def info(self) -> dict[str, Any]:
        assert self.process is not None
        return self.process.info()

    async def check(self) -> tuple[bool, str]:
        if not self.secret:
            return False, "waiting for the listener's signing secret"
        if self.secret != self.wired:
            await self._wire(self.secret)
        return (
            True,
            f"{self.ctx.config.stripe.variable} is in {_relative(self.service.env_files[0], self.ctx.config.root)}",
        )

    async def _wire(self, secret: str) -> None:
        from airadev import rewiring
        from airadev.runtimes.envreload import rewire
        from airadev.state import Paths

        settings, path = self.ctx.config.stripe, self.service.env_files[0]
        if self.journal is None:
            self.journal = rewiring.StripeJournal.new(Paths(self.ctx.config.root), "", None, False, self.ctx.marker)
        where = _relative(path, self.ctx.config.root)

        def written() -> None:
            self.ctx.event(self.service.name, f"{where}: {settings.variable} is the listener's signing secret", "info")

        ui = self.service.depends_on[0].name
        await rewire(self.ctx.stack, self.journal, ui, path, settings.variable, secret, written=written)
        self.wired = secret

    async def stop(self, sig: int, grace: float) -> int:
        """Put the env file back, then end the listener."""
        if self.journal is not None:
            from airadev import rewiring

            undone = await asyncio.to_thread(rewiring.undo, self.journal, self.ctx.config)
            for line in undone.restored + undone.left + undone.failed:
                self.ctx.event(self.service.name, line, "info")
            self.journal, self.wired = None, ""
        assert self.process is not None
        return await self.process.stop(sig, grace)
