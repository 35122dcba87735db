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
    args = parser.parse_args()
    config = config_module.load(Path(args.workspace))
    if args.runtime:
        config = config.with_runtime(Runtime(args.runtime))
    tunnel = json.loads(args.tunnel) if args.tunnel else None
    supervisor = Supervisor(config, args.services.split(","), marker=args.marker, tunnel=tunnel, build=args.build)
    supervisor.runtime_override = args.runtime
    try:
        asyncio.run(supervisor.run())
    finally:
        os.close(args.lock_fd)
    if supervisor.internal_error:
        sys.exit(f"airadev stopped the stack after an internal error: {supervisor.internal_error}")


if __name__ == "__main__":
    main()
