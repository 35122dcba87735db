"""Finding and ending the processes of a run.

Every process airadev starts carries ``AIRADEV_RUN=<workspace id>.<run id>`` and
``AIRADEV_SERVICE=<name>`` in its environment. Children inherit both, and so do grandchildren
and daemons that called setsid, so ``/proc/*/environ`` finds them all however they detached
from the process group. Zombies are not processes to worry about (they hold no port and no
CPU) and are skipped: on machines whose PID 1 does not reap orphans they never go away.

Standard library only: the watchdog (supervisor/watchdog.py) imports it without site-packages.
This is the one module that knows Linux's /proc layout.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable

MARKER_VAR = "AIRADEV_RUN"
SERVICE_VAR = "AIRADEV_SERVICE"
INSTANCE_VAR = "AIRADEV_INSTANCE"  # <service>.<start number>: one start of a service
MARKER_VARS = (MARKER_VAR, SERVICE_VAR, INSTANCE_VAR)


def pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def stat(pid: int) -> tuple[str, int, int, int] | None:
    """``(state, ppid, pgid, start time in clock ticks)`` of a process, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def usage(
    marker: str, groups: dict[int, str], foreign: dict[int, int] | None = None
) -> dict[str, tuple[int, float, int]]:
    """Per service: (processes, CPU seconds, RSS bytes) of every live process carrying the
    run's marker, or in one of ``groups`` (pgid → service). One pass over /proc.

    ``foreign`` (pid → start time), kept by a caller that asks often (`airadev dash`), remembers
    the processes found without the marker: an environment does not gain it later, so theirs
    is not read again. (Not one younger than 2 s: between fork and exec, a service's child still
    has its parent's environment.)"""
    needle = f"\0{MARKER_VAR}={marker}\0".encode()
    prefix = f"\0{SERVICE_VAR}=".encode()
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    totals: dict[str, list[float]] = {}
    settled = 0
    if foreign is not None:
        with open("/proc/uptime", "rb") as f:
            settled = int((float(f.read().split()[0]) - 2) * tick)
    for pid in pids():
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            continue
        service = groups.get(int(fields[2]))
        if service is None:
            started = int(fields[19])
            if foreign is not None and foreign.get(pid) == started:
                continue
            env = environ(pid)
            if needle not in env:
                if foreign is not None and started < settled:
                    foreign[pid] = started
                continue
            start = env.find(prefix)
            if start < 0:
                continue
            start += len(prefix)
            service = env[start : env.index(b"\0", start)].decode(errors="replace")
        entry = totals.setdefault(service, [0, 0.0, 0])
        entry[0] += 1
        entry[1] += (int(fields[11]) + int(fields[12])) / tick
        entry[2] += int(fields[21]) * page
    return {name: (int(n), cpu, int(rss)) for name, (n, cpu, rss) in totals.items()}


def alive(pid: int) -> bool:
    info = stat(pid)
    return info is not None and info[0] not in ("Z", "X")


def start_time(pid: int) -> int | None:
    info = stat(pid)
    return info[3] if info else None


def environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return b"\0" + f.read()
    except OSError:
        return b""


def marked(marker: str, service: str | None = None, *, instance: str | None = None, exact: bool = True) -> list[int]:
    """Live processes carrying the run marker (and the service name or instance, if given).

    With ``exact=False``, ``marker`` is a prefix: ``"<workspace id>."`` finds every run of a
    workspace.
    """
    needle = f"\0{MARKER_VAR}={marker}{chr(0) if exact else ''}".encode()
    if instance:
        service_needle: bytes | None = f"\0{INSTANCE_VAR}={instance}\0".encode()
    else:
        service_needle = f"\0{SERVICE_VAR}={service}\0".encode() if service else None
    me = os.getpid()
    found = []
    for pid in pids():
        if pid == me:
            continue
        env = environ(pid)
        if needle in env and (service_needle is None or service_needle in env) and alive(pid):
            found.append(pid)
    return found


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    return [pid for pid in pids() if (info := stat(pid)) and info[2] == pgid and info[0] not in ("Z", "X")]


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in the process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # kill(0) also succeeds for zombies: look closer.
    return bool(group_members(pgid))


def recorded_groups(state_file: str) -> list[int]:
    """The process groups a state file records that are still the ones it recorded: the leader
    has the recorded start time, or a member carries the run's marker. Some programs (Redis,
    PostgreSQL) overwrite their environment with their process title, so the marker alone
    does not find them; their group does."""
    import json

    try:
        with open(state_file, "rb") as f:
            state = json.load(f)
        services = state["services"].values()
        marker = state["marker"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    needle = f"\0{MARKER_VAR}={marker}\0".encode()
    groups = []
    for svc in services:
        pgid = svc.get("pgid") if isinstance(svc, dict) else None
        if not isinstance(pgid, int) or pgid <= 1:
            continue
        members = group_members(pgid)
        if not members:
            continue
        if start_time(pgid) == svc.get("pgid_start") or any(needle in environ(pid) for pid in members):
            groups.append(pgid)
    return groups


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def signal_pids(targets: list[int], sig: int) -> None:
    for pid in targets:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def terminate(
    marker: str | None,
    *,
    pgids: Iterable[int] = (),
    service: str | None = None,
    instance: str | None = None,
    exact: bool = True,
    sig: int = signal.SIGTERM,
    grace: float = 10.0,
    poll: float = 0.02,
) -> int:
    """End process groups and every process carrying the run marker (of one service or one
    instance, if given): send ``sig``, wait until all are gone, SIGKILL what is left after ``grace`` seconds.
    Blocking; returns how many processes were found."""
    groups = [g for g in pgids if g and g > 1]

    def scan() -> list[int]:
        found = set(marked(marker, service, instance=instance, exact=exact)) if marker else set()
        for group in groups:
            found.update(group_members(group))
        return sorted(found)

    def send(signum: int, targets: list[int]) -> None:
        for group in groups:
            signal_group(group, signum)
        signal_pids(targets, signum)

    targets = scan()
    seen = set(targets)
    if not targets:
        return 0
    send(sig, targets)
    if sig != signal.SIGKILL:  # a stopped process (Ctrl-Z, kill -STOP) acts on it once continued
        send(signal.SIGCONT, targets)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        time.sleep(poll)
        if any(alive(pid) for pid in targets):
            continue
        # Gone; but one of them may have forked just before it died.
        targets = scan()
        if not targets:
            return len(seen)
        seen.update(targets)
        send(sig, targets)
    # Forks can race a scan: repeat until a scan finds nothing.
    for _ in range(50):
        targets = scan()
        if not targets:
            break
        seen.update(targets)
        send(signal.SIGKILL, targets)
        time.sleep(poll)
    return len(seen)
