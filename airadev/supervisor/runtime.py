"""The seam between the supervisor and the things that run a service.

A runtime starts one instance of a service and hands back an :class:`Instance`; the supervisor
neither knows nor cares whether that is a process group, a container or a database cluster.
Only ``process`` exists so far (`airadev.supervisor.process`); a ``docker`` runtime implements
the same two protocols.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from airadev.model import Runtime as RuntimeKind
from airadev.model import Service

OnOutput = Callable[[bytes], None]


class Instance(Protocol):
    """One running instance of a service. Owned by the supervisor's loop: not thread-safe."""

    pid: int | None

    @property
    def exited(self) -> asyncio.Future[int]:
        """Resolves to the exit code (negative: killed by that signal) once the instance ends,
        after its remaining output has been delivered."""

    async def stop(self, sig: int, grace: float) -> int:
        """Send ``sig`` to everything of this instance, wait until it is all gone, and kill what
        is left after ``grace`` seconds. Returns, once nothing of it runs any more, how many
        processes it found."""

    def info(self) -> dict[str, Any]:
        """What `airadev status` shows of it (pid, process group, ...)."""


class Runtime(Protocol):
    def start(self, service: Service, env: Mapping[str, str], on_output: OnOutput) -> Instance:
        """Start the service; raise AiradevError when it cannot be started at all."""


def runtime_for(kind: RuntimeKind, marker: str) -> Runtime:
    if kind is RuntimeKind.PROCESS:
        from airadev.supervisor.process import ProcessRuntime

        return ProcessRuntime(marker)
    # Config validation admits only the runtimes above; reaching this is a bug in airadev.
    from airadev.errors import AiradevError

    raise AiradevError(f"airadev has no '{kind}' runtime", "report this: the config validation let it through")
