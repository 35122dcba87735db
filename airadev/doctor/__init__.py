"""`airadev doctor`: checks as pure functions, run in parallel with time limits.

A check is a function ``(Context) -> Result | list[Result]`` registered with ``@check``. It never
raises for an expected failure and never prints; it may ask for a fix (``Result.action``), which
only `doctor --fix` carries out. A check whose prerequisite did not pass is ``skipped`` with the
reason, so one missing tool does not pile up ten more errors. The exit code is derived from the
results (DESIGN.md, habit 7).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

from airadev.doctor.base import (
    FIX_TEXT,
    GROUPS,
    REGISTRY,
    Action,
    Check,
    Context,
    EnvFile,
    Result,
    Status,
    check,
    error,
    ok,
    skipped,
    warning,
)

__all__ = [
    "FIX_TEXT",
    "GROUPS",
    "REGISTRY",
    "Action",
    "Check",
    "Context",
    "EnvFile",
    "Result",
    "Status",
    "check",
    "error",
    "exit_code",
    "ok",
    "run",
    "select",
    "skipped",
    "summary",
    "warning",
]

# --- running ----------------------------------------------------------------------------------------


def select(names: Iterable[str], offline: bool) -> list[Check]:
    """The checks to run: all (without live ones when offline), or those named (an id or a
    prefix such as `env` or `tools.node`)."""
    _load_all()
    names = list(names)
    if not names:
        return [c for c in REGISTRY.values() if not (offline and c.live)]
    chosen: list[Check] = []
    for name in names:
        matches = [c for c in REGISTRY.values() if c.id == name or c.id.startswith(name + ".")]
        if not matches:
            from airadev.errors import UsageError, did_you_mean

            raise UsageError(
                f"no check named '{name}'{did_you_mean(name, REGISTRY)}", "`airadev doctor --list-checks` lists them"
            )
        chosen.extend(m for m in matches if m not in chosen)
    # What the named checks need runs too: a check is only meaningful after its prerequisites.
    todo = list(chosen)
    while todo:
        for req in todo.pop().requires:
            if REGISTRY[req] not in chosen:
                chosen.append(REGISTRY[req])
                todo.append(REGISTRY[req])
    return chosen


def _load_all() -> None:
    # In the order of GROUPS: registration order is the order within a group.
    from airadev.doctor import tools, deps, workspace, commands, envfiles, secrets, runtime, live  # noqa: F401


def run(checks: Sequence[Check], ctx: Context) -> list[Result]:
    """Run ``checks`` in parallel, each within its time limit; dependents of a check that did
    not pass are skipped. Returns the results in registry order."""
    results: dict[str, list[Result]] = {}
    pending = {c.id: c for c in checks}
    wanted = set(pending)
    running: dict[str, float] = {}
    done: queue.Queue[tuple[str, list[Result]]] = queue.Queue()

    def launch(chk: Check) -> None:
        def work() -> None:
            started = time.perf_counter()
            try:
                outcome = chk.run(ctx)
                listed = outcome if isinstance(outcome, list) else [outcome]
            except Exception as exc:  # noqa: BLE001  (a check's bug is a result, not a crash)
                message = f"the check itself failed: {type(exc).__name__}: {exc}"
                if ctx.debug:
                    import traceback

                    message += "\n" + "".join(traceback.format_exception(exc)).rstrip()
                listed = [error(chk.id, message, "report this (--debug shows the traceback)")]
            took = time.perf_counter() - started
            done.put((chk.id, [replace(r, duration=took) for r in listed]))

        running[chk.id] = time.monotonic() + chk.timeout
        threading.Thread(target=work, name=f"doctor-{chk.id}", daemon=True).start()

    def blocked(chk: Check) -> str | None:
        if chk.live and ctx.offline:
            return "--offline"
        for req in chk.requires:
            if req not in wanted:
                continue  # not asked for: not a prerequisite of this run
            if req not in results:
                return "wait"
            if all(r.status is Status.SKIPPED for r in results[req]):
                return f"{req} was skipped: {results[req][0].message}"
            if any(r.status is Status.ERROR for r in results[req]):  # a warning does not block
                return f"needs {req}, which failed"
        return None

    while pending or running:
        for chk in list(pending.values()):
            reason = blocked(chk)
            if reason is None:
                del pending[chk.id]
                launch(chk)
            elif reason != "wait":
                del pending[chk.id]
                results[chk.id] = [skipped(chk.id, reason)]
        if not running:
            continue
        timeout = max(0.0, min(running.values()) - time.monotonic())
        try:
            cid, listed = done.get(timeout=timeout)
            if cid in running:
                del running[cid]
                results[cid] = listed
        except queue.Empty:
            now = time.monotonic()
            for cid, deadline in list(running.items()):
                if now >= deadline:
                    del running[cid]
                    limit = REGISTRY[cid].timeout
                    results[cid] = [
                        replace(
                            error(
                                cid,
                                f"did not finish within its time limit ({limit:g}s)",
                                "run it alone (`airadev doctor " + cid + " -v`) to see what hangs",
                            ),
                            duration=limit,
                        )
                    ]
    order = {c.id: (GROUPS.index(c.group), i) for i, c in enumerate(REGISTRY.values())}
    return [r for cid in sorted(results, key=lambda c: order.get(c, (0, 0))) for r in results[cid]]


def exit_code(results: Sequence[Result], strict: bool = False) -> int:
    statuses = {r.status for r in results}
    if Status.ERROR in statuses or (strict and Status.WARNING in statuses):
        return 1
    return 0


def summary(results: Sequence[Result]) -> dict[str, int]:
    counts = {str(s): 0 for s in Status}
    for r in results:
        counts[str(r.status)] += 1
    return counts
