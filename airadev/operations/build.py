"""`airadev build [SERVICE...]`: build the images of the services that have a ``docker.build``,
as `up` does when an image is missing or `up --build` is given, with the build's output shown
as it comes (each service's lines behind its name, secrets redacted)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from airadev.errors import AiradevError, UsageError
from airadev.model import Config, Service


@dataclass(frozen=True)
class Built:
    service: str
    image: str
    seconds: float


def buildable(config: Config, names: Sequence[str]) -> list[Service]:
    """The services to build: those named (aliases work), or every one with a docker.build."""
    from airadev.operations.up import resolve

    if not names:
        found = [s for s in config.services if s.docker and s.docker.build]
        if not found:
            raise UsageError(
                "no service of airadev.toml has an image to build",
                'give one a build: [services.NAME.docker] build = "."',
            )
        return found
    chosen = [config.get(resolve(config, name)) for name in names]
    for service in chosen:
        if not (service.docker and service.docker.build):
            raise UsageError(
                f"services.{service.name} has no image to build",
                f'add build = "." to [services.{service.name}.docker] (its folder holds the Dockerfile)',
            )
    return chosen


def build(
    config: Config,
    services: Sequence[Service],
    output: Callable[[str, bytes], None],
    event: Callable[[str, str], None],
    *,
    no_cache: bool = False,
) -> list[Built]:
    """Build each service's image in turn; ``output(service, lines)`` gets whole lines,
    redacted. Every one is tried; a failed one raises once the others are done."""
    from airadev.integrations.docker import BAKED, DockerError, baked_env_files, build_image, image_of
    from airadev.logstore import LineFramer, Redactor
    from airadev.runtimes.environment import stack_secrets

    redact = Redactor(stack_secrets(config))
    done: list[Built] = []
    failed: list[DockerError] = []
    for service in services:
        image = image_of(service)
        framer = LineFramer(redactor=redact)

        def lines(data: bytes, name: str = service.name, framer: LineFramer = framer) -> None:
            whole = framer.feed(data)
            if whole:
                output(name, redact(whole))

        event(service.name, f"building its image {image}")
        for name in baked_env_files(service):
            event(service.name, BAKED.format(name=name))
        try:
            seconds = build_image(service, image, lines, no_cache=no_cache)
        except DockerError as exc:
            failed.append(exc)
            continue
        finally:
            rest = framer.flush(final=True)
            if rest:
                output(service.name, redact(rest))
        event(service.name, f"built its image {image} in {seconds:.1f}s")
        done.append(Built(service.name, image, seconds))
    if len(failed) == 1:
        raise failed[0]
    if failed:
        raise AiradevError(
            f"{len(failed)} images do not build: " + "; ".join(exc.message for exc in failed),
            "fix those steps (their output is above), then `airadev build` again",
        )
    return done
