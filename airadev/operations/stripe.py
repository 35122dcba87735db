"""`airadev stripe trigger EVENT`: a test event sent through Stripe with the UI's test key (the
Stripe CLI's own `stripe trigger`, in this terminal); the stack's listener (the service
[stripe] adds) forwards it to the UI."""

from __future__ import annotations

import os

from airadev.errors import AiradevError
from airadev.model import Config


def trigger(config: Config, event: str) -> None:
    from airadev.runtimes.environment import env_file_values
    from airadev.runtimes.stripe import find_cli, test_key

    settings = config.stripe
    if not settings.enabled:
        raise AiradevError("no [stripe] table in airadev.toml", "add [stripe] (see the README), then `airadev up`")
    service = config.get("stripe")
    key = test_key(settings, env_file_values(service), str(service.env_files[0]))
    cli = find_cli(settings, os.environ.get("PATH"))
    os.execve(cli, [cli, "trigger", event, "--skip-update"], {**os.environ, "STRIPE_API_KEY": key})
