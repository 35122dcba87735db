"""The detached supervisor: ``python -m airadev.supervisor.daemon``, started by `up --detach`.

It inherits the run lock from the `up` that started it (an flock held through the inherited
file descriptor), so there is no moment when the workspace is unlocked. It imports neither
typer nor rich: it runs for hours, and its memory is what an idle stack costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from airadev import config as config_module
from airadev.model import Runtime
from airadev.supervisor.runner import Supervisor


def main() -> None:
    parser = argparse.ArgumentParser(prog="airadev-supervisor")
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--lock-fd", type=int, required=True)
    parser.add_argument("--marker", required=True)
    parser.add_argument("--services", required=True)
    parser.add_argument("--tunnel", default="")
    parser.add_argument("--runtime", default="")
    parser.add_argument("--build", action="store_true")
    parser.add_argument("--held-by", type=int, default=0)  # `up --dash`: stop when that process ends
    args = parser.parse_args()
    config = config_module.load(Path(args.workspace))
    if args.runtime:
        config = config.with_runtime(Runtime(args.runtime))
    tunnel = json.loads(args.tunnel) if args.tunnel else None
    supervisor = Supervisor(config, args.services.split(","), marker=args.marker, tunnel=tunnel, build=args.build)
    supervisor.runtime_override = args.runtime
    try:
        asyncio.run(_run(supervisor, args.held_by))
    finally:
        os.close(args.lock_fd)
    if supervisor.internal_error:
        sys.exit(f"airadev stopped the stack after an internal error: {supervisor.internal_error}")


async def _run(supervisor: Supervisor, held_by: int) -> str:
    if held_by:
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(held_by)
        except ProcessLookupError:  # it is gone already
            supervisor.request_shutdown("the dashboard that started it has ended")
        else:

            def ended() -> None:
                loop.remove_reader(fd)
                os.close(fd)
                supervisor.request_shutdown("the dashboard that started it has ended")

            loop.add_reader(fd, ended)
    return await supervisor.run()


if __name__ == "__main__":
    main()
