"""Finding and ending the processes of a run; also the watchdog that outlives the supervisor.

Every process airadev starts carries ``AIRADEV_RUN=<workspace id>.<run id>`` and
``AIRADEV_SERVICE=<name>`` in its environment. Children inherit both, and so do grandchildren
and daemons that called setsid, so ``/proc/*/environ`` finds them all however they detached
from the process group. Zombies are not processes to worry about (they hold no port and no
CPU) and are skipped: on machines whose PID 1 does not reap orphans they never go away.

Run as a script (``python -S reaper.py --fd N --marker M --grace S``) this module is the
watchdog: it blocks reading a pipe whose only writer is the supervisor, and when the pipe
closes, whatever way the supervisor ended (SIGKILL included), it ends every process that still
carries the run's marker. It uses the standard library only, and nothing else of airadev,
so that it starts in a few milliseconds and a few megabytes.

This is the one module that knows Linux's /proc layout.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Iterable, Mapping

MARKER_VAR = "AIRADEV_RUN"
SERVICE_VAR = "AIRADEV_SERVICE"
INSTANCE_VAR = "AIRADEV_INSTANCE"  # <service>.<start number>: one start of a service
MARKER_VARS = (MARKER_VAR, SERVICE_VAR, INSTANCE_VAR)
# The same marks on containers, as labels.
RUN_LABEL = "dev.airadev.run"
WORKSPACE_LABEL = "dev.airadev.workspace"  # the workspace id (state.workspace_id)
SERVICE_LABEL = "dev.airadev.service"
CLEAN = b"stopped cleanly\n"  # the supervisor's last words to its watchdog
# Said before and after each request that makes something on the engine (a container, a
# network). The engine carries out a request whose sender died before the answer (seen every
# time here: a create cut short shows up after a sweep made at once), so a create still pending
# when the pipe closes is looked for again (late_sweep).
CREATING, CREATED = b"+", b"-"
LATE_LIMIT = 15.0  # how long a pending create is looked for (one that never left is never seen)


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
    fields = data[data.rfind(b")") + 2:].split()
    try:
        return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def usage(marker: str, groups: dict[int, str]) -> dict[str, tuple[int, float, int]]:
    """Per service: (processes, CPU seconds, RSS bytes) of every live process carrying the
    run's marker, or in one of ``groups`` (pgid → service). One pass over /proc."""
    needle = f"\0{MARKER_VAR}={marker}\0".encode()
    prefix = f"\0{SERVICE_VAR}=".encode()
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    totals: dict[str, list[float]] = {}
    for pid in pids():
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()
        if fields[0] in (b"Z", b"X"):
            continue
        service = groups.get(int(fields[2]))
        if service is None:
            env = environ(pid)
            if needle not in env:
                continue
            start = env.find(prefix)
            if start < 0:
                continue
            start += len(prefix)
            service = env[start:env.index(b"\0", start)].decode(errors="replace")
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


def marked(marker: str, service: str | None = None, *, instance: str | None = None,
           exact: bool = True) -> list[int]:
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


def terminate(marker: str | None, *, pgids: Iterable[int] = (), service: str | None = None,
              instance: str | None = None, exact: bool = True, sig: int = signal.SIGTERM, grace: float = 10.0, poll: float = 0.02) -> int:
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


# --- the Docker engine, with the standard library (the watchdog, a container's start, doctor) --

DEFAULT_ENGINE = "unix:///var/run/docker.sock"


def engine_host(env: Mapping[str, str] | None = None) -> str:
    """The engine the docker CLI would use: DOCKER_HOST, else the current `docker context`'s
    (rootless Docker, Docker Desktop), else the default socket."""
    own = env is None
    env = os.environ if env is None else env
    if env.get("DOCKER_HOST"):
        return env["DOCKER_HOST"]
    folder = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    if not own:
        return _context_host(folder)
    if folder not in _context_hosts:  # read once: a `docker context use` mid-run must not move a run
        _context_hosts[folder] = _context_host(folder)
    return _context_hosts[folder]


_context_hosts: dict[str, str] = {}


def _context_host(folder: str) -> str:
    """The current docker context's engine (its TLS material, if any, is not used: a TLS engine
    is named with DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, as the SDK reads them)."""
    import hashlib
    import json

    try:
        with open(os.path.join(folder, "config.json")) as file:
            current = json.load(file).get("currentContext", "")
        if current and current != "default":
            meta = os.path.join(folder, "contexts", "meta", hashlib.sha256(current.encode()).hexdigest(), "meta.json")
            with open(meta) as file:
                return str(json.load(file)["Endpoints"]["docker"]["Host"]) or DEFAULT_ENGINE
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return DEFAULT_ENGINE


def engine_hostname(host: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(host if "://" in host else "tcp://" + host).hostname or ""


def is_local(host: str) -> bool:
    return host.startswith("unix://") or engine_hostname(host) in ("127.0.0.1", "localhost", "::1")


def plain_engine(host: str) -> bool:
    """Whether the engine at ``host`` can be asked with the standard library alone: a Unix
    socket or plain TCP (not TLS, which the docker SDK sets up from DOCKER_CERT_PATH, nor ssh)."""
    return (host.startswith(("unix://", "tcp://"))
            and not os.environ.get("DOCKER_TLS_VERIFY") and not os.environ.get("DOCKER_CERT_PATH"))


def engine_request(host: str, method: str, path: str, body: object = None,
                   timeout: float = 10.0) -> tuple[int, bytes]:
    """One request to a plain engine (see ``plain_engine``), stdlib only; its status and body,
    or OSError whatever went wrong on the way.
    The watchdog must not import the docker SDK (it is small, and it must start fast), and a
    container's start must not wait for that import either (integrations/docker.py)."""
    import http.client
    import json
    import socket as socketlib
    from urllib.parse import urlsplit

    try:
        if host.startswith("unix://"):
            class UnixConnection(http.client.HTTPConnection):
                def connect(self) -> None:
                    self.sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
                    self.sock.settimeout(timeout)
                    self.sock.connect(host[len("unix://"):])

            conn: http.client.HTTPConnection = UnixConnection("localhost", timeout=timeout)
        else:
            conn = http.client.HTTPConnection(engine_hostname(host), urlsplit(host).port or 2375, timeout=timeout)
    except ValueError as exc:  # a port that is not a number
        raise OSError(f"bad DOCKER_HOST {host}: {exc}") from None
    try:
        if body is None:
            conn.request(method, path)
        else:
            conn.request(method, path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    except http.client.HTTPException as exc:  # whatever answered is not an engine speaking HTTP
        raise OSError(f"not an answer from a Docker engine: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


def _labelled(host: str, kind: str, label: str) -> list[dict]:
    """The engine's ``kind`` (containers, networks) carrying ``label``; none when it cannot be
    asked this way (ssh:// or TLS: the next `up` or `down` does it, through the docker SDK)."""
    import json
    import urllib.parse

    if not plain_engine(host):
        return []
    filters = urllib.parse.quote(json.dumps({"label": [label]}))
    path = f"/containers/json?all=1&filters={filters}" if kind == "containers" else f"/networks?filters={filters}"
    try:
        found = json.loads(engine_request(host, "GET", path)[1])
    except (OSError, ValueError):
        return []
    # An error answer is an object ({"message": ...}), not a list.
    return [item for item in found if isinstance(item, dict) and "Id" in item] if isinstance(found, list) else []


def remove_containers(host: str, label: str, grace: float = 10.0) -> int:
    """Stop (its stop signal, then SIGKILL after ``grace``) and remove every container carrying
    ``label`` (``key=value``); how many."""
    found = _labelled(host, "containers", label)
    for container in found:
        for method, path, limit in (("POST", f"/containers/{container['Id']}/stop?t={math.ceil(grace)}", grace + 10),
                                    ("DELETE", f"/containers/{container['Id']}?force=1&v=0", 10.0)):
            try:
                engine_request(host, method, path, timeout=limit)
            except OSError:
                pass
    return len(found)


def remove_networks(host: str, label: str) -> int:
    """Remove the networks carrying ``label``, by id (one still in use stays); how many found."""
    found = _labelled(host, "networks", label)
    for network in found:
        try:
            engine_request(host, "DELETE", f"/networks/{network['Id']}")
        except OSError:
            pass
    return len(found)


def late_sweep(host: str, marker: str, pending: int, grace: float, limit: float = LATE_LIMIT) -> int:
    """Look again, every 0.1 s for at most ``limit`` seconds, for the ``pending`` containers and
    networks whose creation the supervisor had asked for when it died, and remove them as they
    appear; how many were found. Networks by this run's label only: an older network of the
    workspace may already be the next run's."""
    found = 0
    deadline = time.monotonic() + limit
    while found < pending and time.monotonic() < deadline:
        time.sleep(0.1)
        found += remove_containers(host, f"{RUN_LABEL}={marker}", grace)
        found += remove_networks(host, f"{RUN_LABEL}={marker}")
    return found


def _watch(fd: int, marker: str, grace: float, state_file: str, docker_host: str = "",
           finally_run: str = "") -> None:
    # Only the supervisor's end of the pipe keeps us waiting; terminal signals must not.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    said = b""
    pending = 0  # creates asked of the engine and not yet answered
    while True:
        try:
            data = os.read(fd, 4096)
        except InterruptedError:
            continue
        except OSError:
            break
        if not data:
            break
        said = (said + data)[-16:]
        pending += data.count(CREATING) - data.count(CREATED)
    # A supervisor that stopped everything itself says so last; one that died did not.
    clean = said.endswith(CLEAN)
    if docker_host and not clean:  # containers first: their stop is not bounded by our grace
        try:
            remove_containers(docker_host, f"{RUN_LABEL}={marker}", grace)
            # Then the workspace's network (its id is the marker's first part).
            remove_networks(docker_host, f"{WORKSPACE_LABEL}={marker.split('.')[0]}")
        except Exception:  # noqa: BLE001  (whatever the engine said, the processes must still go)
            pass
    terminate(marker, pgids=recorded_groups(state_file), grace=grace)
    if docker_host and not clean and pending > 0:
        try:
            late_sweep(docker_host, marker, pending, grace)
        except Exception:  # noqa: BLE001  (as above)
            pass
    if finally_run and not clean:  # what stops containers airadev did not make (`supabase stop`)
        import json
        import subprocess

        try:
            subprocess.run(json.loads(finally_run), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass


def main(argv: list[str]) -> int:
    args = dict(zip(argv[0::2], argv[1::2]))
    _watch(int(args["--fd"]), args["--marker"], float(args.get("--grace", "10")), args["--state"],
           args.get("--docker", ""), args.get("--finally", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
