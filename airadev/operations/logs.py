"""`airadev logs`: read the stored logs back, from any terminal, running or not."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator, Mapping, Sequence

from airadev.errors import UsageError, did_you_mean
from airadev.state import Paths, read_state, supervisor_alive
from airadev import logstore

OWN_LOG = "airadev"  # the supervisor's own events
AGENT_LOG = "ngrok"  # the tunnel's ngrok agent


def choose(services: Mapping[str, Sequence[str]], names: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """Canonical names for ``names`` (aliases accepted; ``services`` maps each name to its
    aliases; ``extra`` are other logs there are, such as ngrok's); all services, airadev's own
    log and the extra ones when none are given."""
    if not names:
        return [*services, OWN_LOG, *extra]
    canonical = {alias: name for name, aliases in services.items() for alias in (name, *aliases)}
    canonical[OWN_LOG] = OWN_LOG
    canonical[AGENT_LOG] = AGENT_LOG
    chosen = []
    for name in names:
        if name not in canonical:
            listing = ", ".join(f"{n} ({', '.join(a)})" if a else n for n, a in services.items())
            raise UsageError(
                f"no service named '{name}'{did_you_mean(name, canonical)}",
                f"services: {listing}; or {OWN_LOG} (the supervisor), {AGENT_LOG} (the tunnel)",
            )
        chosen.append(canonical[name])
    return list(dict.fromkeys(chosen))


def recent(
    paths: Paths, names: Sequence[str], count: int, since: float | None = None, ends: Mapping[str, int] | None = None
) -> list[logstore.Line]:
    """The last ``count`` lines of each service (only those newer than ``since`` seconds ago,
    if given), merged in time order; ``ends`` bounds each current log file (where following
    will start)."""
    streams = {}
    for name in names:
        path = paths.log(name)
        end = (ends or {}).get(name)
        if since is None:
            streams[name] = logstore.tail(path, count, end)
        else:
            lines = logstore.read_since(path, logstore.since_stamp(since), end)
            streams[name] = list(collections.deque(lines, maxlen=count))
    return list(logstore.merge(streams))


def followers(paths: Paths, names: Sequence[str]) -> dict[str, logstore.Follower]:
    """Followers positioned at the current ends of the logs; make them before printing the
    recent lines (up to their positions) so that no line falls between the two."""
    return {name: logstore.Follower(paths.log(name)) for name in names}


def follow(
    paths: Paths, followers: Mapping[str, logstore.Follower], poll: float = 0.1
) -> Iterator[list[logstore.Line]]:
    """Batches of new lines, in time order, until the supervisor stops (then what it wrote last
    is read and the iteration ends). Follows each log across restarts and rotation."""
    state = read_state(paths)
    checked = time.monotonic()
    try:
        while True:
            batch = [logstore.Line(name, raw) for name, f in followers.items() for raw in f.read()]
            if batch:
                batch.sort(key=lambda line: line.stamp)
                yield batch
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                if not supervisor_alive(state):
                    fresh = read_state(paths)
                    if fresh and fresh.get("marker") != (state or {}).get("marker") and supervisor_alive(fresh):
                        state = fresh  # a new run took over: keep following it
                        continue
                    last = [logstore.Line(name, raw) for name, f in followers.items() for raw in f.read()]
                    if last:
                        last.sort(key=lambda line: line.stamp)
                        yield last
                    return
            time.sleep(poll)
    finally:
        for f in followers.values():
            f.close()


def running(paths: Paths) -> bool:
    return supervisor_alive(read_state(paths))
