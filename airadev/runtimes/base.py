"""The seam between the supervisor and the things that run a service: the protocol.

A runtime starts one instance of a service and hands back an :class:`Instance`; the supervisor
neither knows nor cares whether that is a process group (`process`), a container (`docker`),
a local PostgreSQL cluster (`postgres`) or the Supabase CLI's containers (`supabase`).

``start`` may be a coroutine (a container is created over HTTP); an instance may bring its own
readiness check (``check``), used when the service configures no health probe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from airadev.errors import AiradevError
from airadev.model import Config, Service

if TYPE_CHECKING:  # the CLI imports this package (environment.py): asyncio would cost it 25 ms
    import asyncio

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
    def start(self, service: Service, env: Mapping[str, str], on_output: OnOutput) -> Instance | Awaitable[Instance]:
        """Start the service; raise AiradevError when it cannot be started at all."""


class Fatal(AiradevError):
    """Raised by an instance's ``check`` when the service can never become ready as it is
    (a broken migration): it is stopped and left failed, not restarted."""


@dataclass(frozen=True)
class Context:
    """What runtimes get from the supervisor: the stack, the run's marker, a way to tell the
    user something (``event(service, message, level)``) and to hide a secret in all output."""

    config: Config
    marker: str
    event: Callable[[str | None, str, str], None]
    hide: Callable[[Mapping[str, str]], None] = lambda secrets: None  # new secret values, never shown
    # Set by `down`: {"volumes": True} deletes the database's data with its containers.
    stop_options: dict[str, Any] = field(default_factory=dict)
    # Called with True before and False after each request that makes something on the Docker
    # engine (the watchdog looks again for what a request cut short still makes); any thread.
    creating: Callable[[bool], None] = lambda begun: None
    # `up --build`: images with a docker.build are built before their first start of the run
    # (else only when missing); ``built`` names the services built in this run. Any thread.
    build: bool = False
    built: set[str] = field(default_factory=set)
    rebuild: set[str] = field(default_factory=set)  # built again at their next start (a watch saw their deps change)
    # The services of this run (`up db` runs db alone, whatever else the config has); empty: all.
    running: frozenset[str] = frozenset()
    # The supervisor (loop-only), for a runtime that works with another service: the Stripe
    # listener waits for the UI to reload its env file, as the tunnel does.
    stack: Any = None
