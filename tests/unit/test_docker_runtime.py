"""The docker runtime's decisions that need no engine: which services of the run are containers,
when they get a network of their own, and which service of this machine they cannot reach."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airadev import config
from airadev.runtimes.base import Context
from airadev.runtimes.reach import container_env, container_services, loopback_only, needs_network, peers_of


def stack(tmp_path: Path, port: int, db: bool = False) -> config.Config:
    text = f"""
[services.cache]
command = "redis-server"
port = {port}
[services.web]
runtime = "docker"
command = "x"
env = {{ CACHE_URL = "redis://127.0.0.1:{port}/0" }}
docker = {{ image = "web:dev" }}
[services.worker]
runtime = "docker"
command = "x"
docker = {{ image = "worker:dev" }}
"""
    if db:
        text += '[services.db]\nruntime = "postgres"\nport = 54399\n'
    (tmp_path / "airadev.toml").write_text(text)
    return config.load(tmp_path)


def context(cfg: config.Config, *running: str) -> Context:
    return Context(cfg, "run", lambda *args: None, running=frozenset(running))


def test_only_the_run_s_containers_count(tmp_path: Path) -> None:
    cfg = stack(tmp_path, 6390, db=True)
    assert [s.name for s in container_services(context(cfg))] == ["web", "worker"]
    assert [s.name for s in container_services(context(cfg, "web", "cache"))] == ["web"]
    assert container_services(context(cfg, "db")) == []  # `up db`: no container, no network
    assert not needs_network(context(cfg, "db"))
    assert needs_network(context(cfg, "web", "worker"))  # to find each other by name
    # A lone container gets one too when airadev's PostgreSQL is in the run: it trusts that
    # network alone, never the default bridge that every container of this machine is on.
    assert needs_network(context(cfg, "web", "db"))
    assert not needs_network(context(stack(tmp_path, 6390), "web", "cache"))


@contextmanager
def listening(address: str) -> Iterator[int]:
    with socket.socket() as server:
        server.bind((address, 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_service_of_this_machine_on_loopback_only_is_found_out_of_a_container_s_reach(tmp_path: Path) -> None:
    # 127.0.0.2 plays the address containers reach this machine at: a listener on 127.0.0.1
    # alone does not answer there, one on every address does.
    with listening("127.0.0.1") as port:
        cfg = stack(tmp_path, port)
        web = cfg.get("web")
        inside = container_env(web, {}, peers_of(container_services(context(cfg)), web))
        assert inside["CACHE_URL"] == f"redis://host.docker.internal:{port}/0"
        assert loopback_only(context(cfg), inside, "127.0.0.2") == [(cfg.get("cache"), port)]
        assert loopback_only(context(cfg), inside, None) == []  # where containers reach us is unknown
    with listening("0.0.0.0") as port:
        cfg = stack(tmp_path, port)
        inside = {"CACHE_HOST": "host.docker.internal", "CACHE_PORT": str(port)}
        assert loopback_only(context(cfg), inside, "127.0.0.2") == []
    # Not listening at all (not started yet): not judged.
    assert loopback_only(context(cfg), inside, "127.0.0.2") == []


def test_where_containers_cannot_reach_this_machine_the_database_stays_on_loopback_and_says_so(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Rootless Docker, Docker Desktop: the bridge's gateway is the engine's, not an address of
    this machine (host_gateway finds it among psutil's addresses: here, as there, it is not)."""
    from airadev.runtimes import reach as runtime

    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock")
    monkeypatch.setattr(runtime, "host_gateway", lambda host: None)
    said: list[tuple[str | None, str, str]] = []
    cfg = stack(tmp_path, 6390, db=True)
    ctx = Context(cfg, "run", lambda *event: said.append(event), running=frozenset({"web", "db"}))
    assert runtime.reach_from_containers(ctx) is None
    assert said == [(None, said[0][1], "warning")] and "cannot reach the database" in said[0][1]
    said.clear()
    alone = Context(cfg, "run", lambda *event: said.append(event), running=frozenset({"db"}))
    assert runtime.reach_from_containers(alone) is None and said == []  # no container: nothing to say
