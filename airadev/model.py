"""The configuration model: frozen values that cross module boundaries.

`config.load` builds these from airadev.toml; nothing else constructs them from user input.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast


class Runtime(enum.StrEnum):
    """How a service is run; each plugs in behind `airadev.runtimes.Runtime`."""

    PROCESS = "process"  # a child process group
    DOCKER = "docker"  # a container, through the docker SDK
    POSTGRES = "postgres"  # a local PostgreSQL cluster in .airadev/, from the server binaries
    SUPABASE = "supabase"  # the Supabase CLI's containers (`supabase start`)
    STRIPE = "stripe"  # `stripe listen`, the service that [stripe] adds (runtimes/stripe.py)

    @property
    def what(self) -> str:
        """What a service of this runtime is, in a sentence."""
        return {"docker": "a container", "stripe": "the Stripe listener"}.get(self.value, "the database")


class Condition(enum.StrEnum):
    """When a dependency counts as satisfied (the names Compose uses, without the prefix)."""

    STARTED = "started"
    HEALTHY = "healthy"
    COMPLETED = "completed"


class RestartPolicy(enum.StrEnum):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


class State(enum.StrEnum):
    """Where a service is in its life. ``ready`` states satisfy dependents and ``up``."""

    WAITING = "waiting"  # for its dependencies
    STARTING = "starting"  # process started, health probe not passed yet
    HEALTHY = "healthy"  # health probe passed
    RUNNING = "running"  # no health probe: running is all we know
    UNHEALTHY = "unhealthy"  # probe failed `retries` times in a row after start_period
    RESTARTING = "restarting"  # exited; waiting out the backoff before starting again
    CRASH_LOOP = "crash-loop"  # exited max_restarts times in a row; left stopped
    COMPLETED = "completed"  # exited 0 and not restarted (a one-shot task)
    FAILED = "failed"  # exited non-zero and not restarted
    BLOCKED = "blocked"  # a dependency failed, so it was never started
    STOPPING = "stopping"
    STOPPED = "stopped"

    @property
    def ready(self) -> bool:
        return self in (State.HEALTHY, State.RUNNING, State.COMPLETED)

    @property
    def failed(self) -> bool:
        return self in (State.CRASH_LOOP, State.FAILED, State.BLOCKED, State.UNHEALTHY)


class ProbeKind(enum.StrEnum):
    HTTP = "http"
    TCP = "tcp"
    EXEC = "exec"
    LOG = "log"


@dataclass(frozen=True)
class Probe:
    """A health probe.

    ``target`` depends on ``kind``: an URL (http), a (host, port) pair (tcp), an argv (exec),
    a regular expression (log). A log probe is satisfied once per start, by the first output
    line that matches; the others run every ``start_interval`` until the first success, then
    every ``interval``, and ``retries`` failures in a row after ``start_period`` make the
    service unhealthy.
    """

    kind: ProbeKind
    target: str | tuple[str, int] | tuple[str, ...]
    interval: float = 10.0
    start_interval: float = 0.02
    timeout: float = 2.0
    start_period: float = 60.0
    retries: int = 3

    def describe(self) -> str:
        if self.kind is ProbeKind.TCP:
            host, port = cast("tuple[str, int]", self.target)  # a TCP probe's target is (host, port)
            return f"tcp {host}:{port}"
        if self.kind is ProbeKind.EXEC:
            return "exec " + " ".join(self.target)  # type: ignore[arg-type]
        if self.kind is ProbeKind.LOG:
            return f"log /{self.target}/"
        return f"http {self.target}"


@dataclass(frozen=True)
class Restart:
    """Restart policy with capped exponential backoff and jitter.

    The n-th restart in a row (n from 1) waits ``min(backoff_max, backoff * 2**(n-1))``
    scaled by a random factor in ``[1 - jitter, 1]``. A run that lasted ``reset_after``
    seconds resets the count. After ``max_restarts`` restarts in a row the service is
    ``crash-loop`` and is left stopped.
    """

    policy: RestartPolicy = RestartPolicy.ON_FAILURE
    max_restarts: int = 5
    backoff: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.2
    reset_after: float = 30.0


@dataclass(frozen=True)
class Dependency:
    """``condition`` holds every start of the dependent until the dependency meets it;
    ``restart`` restarts the dependent whenever the dependency was restarted and is ready again
    (Compose's ``depends_on.restart``)."""

    name: str
    condition: Condition = Condition.STARTED
    restart: bool = False


@dataclass(frozen=True)
class BuildSpec:
    """How a service's image is built (``[services.NAME.docker] build``), as in Compose:
    ``context`` (absolute; written relative to the service's folder), ``dockerfile`` (absolute;
    written relative to the context, may lie outside it), a ``target`` stage, build ``args``
    (a value of None: the variable's value in airadev's environment, if it has one), the
    ``network`` its RUN steps use (the engine's default, "host", "none")."""

    context: Path
    dockerfile: Path | None = None
    target: str = ""
    args: tuple[tuple[str, str | None], ...] = ()
    network: str = ""


@dataclass(frozen=True)
class DockerSpec:
    """How a service runs as a container (``[services.NAME.docker]``).

    ``image`` may be overridden at run time by ``AIRADEV_<NAME>_IMAGE`` (the variable the
    Compose files use too). ``port`` is the container's port, published on the service's
    port on the engine's loopback. ``command`` empty: the image's own CMD."""

    image: str
    command: tuple[str, ...] = ()
    port: int | None = None
    volumes: tuple[str, ...] = ()  # "SOURCE:TARGET[:ro]"; SOURCE a named volume or an absolute path
    env: tuple[tuple[str, str], ...] = ()
    healthcheck: str = ""  # a shell command run inside the container (else the image's HEALTHCHECK)
    build: BuildSpec | None = None  # built when the image is missing, on `up --build` and `airadev build`

    def image_variable(self, service: str) -> str:
        return "AIRADEV_" + service.upper().replace("-", "_") + "_IMAGE"


@dataclass(frozen=True)
class DatabaseSpec:
    """A ``postgres`` or ``supabase`` service: where its migrations are and what it serves.

    ``project`` is the folder holding ``supabase/config.toml`` (the UI repo)."""

    project: Path | None = None
    migrations: Path | None = None
    database: str = "postgres"
    user: str = "postgres"
    password: str = "postgres"  # the user's; loopback is trusted, so it is what apps send, not checked
    exclude: tuple[str, ...] = ()  # `supabase start -x`: containers not started
    trigger_service: str = ""  # whose URL the KB trigger function gets ("" = derive: kb)
    db_port: int = 54322  # PostgreSQL's port (postgres: the service's port)
    project_id: str = ""  # supabase/config.toml's project_id (its containers' suffix)


@dataclass(frozen=True)
class Service:
    name: str
    command: tuple[str, ...]
    cwd: Path
    runtime: Runtime = Runtime.PROCESS
    aliases: tuple[str, ...] = ()
    env_files: tuple[Path, ...] = ()
    # Whether the env files' variables are put into the process environment. The UI's
    # .env.local is read by Next.js itself, and a variable in the process environment would
    # override the file (FACTS.md), so its service sets this to false.
    load_env_files: bool = True
    env: tuple[tuple[str, str], ...] = ()
    # Which of AiRa's env templates (env-templates/) its env file is checked against: "aira-ui",
    # "voice-agent", "kb-updater"; "" = the app's own .env.example, if it has one.
    template: str = ""
    port: int | None = None
    health: Probe | None = None
    depends_on: tuple[Dependency, ...] = ()
    restart: Restart = field(default_factory=Restart)
    restart_given: bool = True  # airadev.toml says how it restarts (a task's default differs)
    stop_signal: int = 15
    stop_grace: float = 10.0
    watch: tuple[Path, ...] = ()
    watch_ignore: tuple[str, ...] = ()
    watch_debounce: float = 0.3
    # Virtualenv candidates: the first that exists has its bin/ put first on PATH. Unless
    # configured (venv_explicit), these are .venv/ and venv/ in the service's folder.
    venv: tuple[Path, ...] = ()
    venv_explicit: bool = False
    docker: DockerSpec | None = None  # set: the service can run as a container
    database: DatabaseSpec | None = None  # set for the postgres and supabase runtimes

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class LogSettings:
    max_size: int = 20 * 1024 * 1024
    keep: int = 3


@dataclass(frozen=True)
class TunnelSettings:
    """`airadev tunnel`: which service is exposed, and which env variable gets its address.

    Empty strings mean "derive it": the service named or aliased ``voice``/``voice-agent``,
    the UI service named or aliased ``ui``, and that UI's ``.env.local``."""

    service: str = ""
    ui_service: str = ""
    env_file: Path | None = None
    no_env_file: bool = False  # `env_file = false`: no file gets the address (Twilio and the database only)
    variable: str = "VOICE_AGENT_SERVICE_URL"
    ngrok_path: Path | None = None
    domain: str = ""
    region: str = ""
    start_timeout: float = 20.0


@dataclass(frozen=True)
class TwilioSettings:
    test_number: str = ""
    credentials_from: str = ""  # the service whose env files hold TWILIO_ACCOUNT_SID / _AUTH_TOKEN
    # "" (`sms_path = false` in airadev.toml): that URL of the number is left as it is.
    voice_path: str = "/webhooks/twilio/call"
    sms_path: str = "/webhooks/twilio/sms"
    status_path: str = "/webhooks/twilio/status"
    timeout: float = 10.0


@dataclass(frozen=True)
class StripeSettings:
    """[stripe]: Stripe's test events forwarded to the UI by the Stripe CLI (`stripe listen`, run
    as the service "stripe"), and the signing secret it prints wired into the UI's env file."""

    enabled: bool = False
    ui_service: str = ""  # where the events go (default: the UI)
    path: str = "/api/payment/webhook"  # the AiRa guide's
    events: tuple[str, ...] = (
        "checkout.session.completed",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
    )
    env_file: Path | None = None  # default: the UI's .env.local
    variable: str = "STRIPE_WEBHOOK_SECRET"
    key_variable: str = "STRIPE_SECRET_KEY"  # in that env file: the test-mode key the CLI uses
    cli: str = "stripe"


@dataclass(frozen=True)
class Config:
    root: Path
    file: Path
    services: tuple[Service, ...]
    logs: LogSettings = field(default_factory=LogSettings)
    tunnel: TunnelSettings = field(default_factory=TunnelSettings)
    twilio: TwilioSettings = field(default_factory=TwilioSettings)
    stripe: StripeSettings = field(default_factory=StripeSettings)

    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def with_runtime(self, runtime: Runtime) -> Config:
        """`up --runtime docker`: every service that can run that way does."""
        if runtime is not Runtime.DOCKER:
            return self
        services = tuple(replace(s, runtime=Runtime.DOCKER) if s.docker is not None else s for s in self.services)
        return replace(self, services=services)

    def database(self) -> Service | None:
        """The stack's database service (postgres or supabase runtime), if it has one."""
        return next((s for s in self.services if s.database is not None), None)

    def get(self, name: str) -> Service:
        for service in self.services:
            if name in service.names:
                return service
        raise KeyError(name)

    def find(self, wanted: str, guesses: tuple[str, ...]) -> Service | None:
        """The service named ``wanted`` (a name or an alias), or, when none is named, the first
        of ``guesses`` the stack has."""
        for name in [wanted] if wanted else list(guesses):
            try:
                return self.get(name)
            except KeyError:
                continue
        return None

    def voice_service(self) -> Service:
        """The service the tunnel exposes: [tunnel] service, else the one called voice(-agent)."""
        from airadev.errors import AiradevError

        service = self.find(self.tunnel.service, ("voice", "voice-agent"))
        if service is None:
            raise AiradevError(
                "no voice agent service to tunnel to in airadev.toml",
                'set [tunnel] service = "NAME", or give the voice agent the alias "voice"',
            )
        if service.port is None:
            raise AiradevError(f"services.{service.name} has no port to tunnel to", f"set services.{service.name}.port")
        return service

    def ui_service(self) -> Service | None:
        """The UI whose env file the tunnel rewrites: [tunnel] ui_service, else ui / aira-ui."""
        return self.find(self.tunnel.ui_service, ("ui", "aira-ui"))

    def ui_env_file(self) -> Path | None:
        """The env file that gets the tunnel's address: [tunnel] env_file, else the UI's
        .env.local; None with `env_file = false`, or when the stack has no UI (a voice app of its
        own: Twilio and the database get the address, no file)."""
        if self.tunnel.no_env_file:
            return None
        if self.tunnel.env_file is not None:
            return self.tunnel.env_file
        ui = self.ui_service()
        if ui is None:
            return None
        for path in ui.env_files:
            if path.name == ".env.local":
                return path
        return ui.cwd / ".env.local"

    @property
    def state_dir(self) -> Path:
        return self.root / ".airadev"
