"""`airadev doctor`: run the checks, carry out the fixes asked for, shape the JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from airadev.doctor import Check, Context, Result, Status, exit_code, fixes, run, summary
from airadev.logstore import Redactor


def fix(
    results: Sequence[Result], ctx: Context, *, dry_run: bool, install: bool, ask: Callable[[str], bool] | None
) -> list[tuple[str, str]]:
    """``(what, outcome)`` for each fix the problems asked for; installs only with ``install``
    or a yes from ``ask`` (which is None when nobody can be asked: no prompt, no install)."""
    actions = fixes.plan([r.action for r in results if r.action and r.status in (Status.ERROR, Status.WARNING)])
    done = []
    for action in actions:
        what = action.describe()
        if dry_run:
            done.append((what, "would do" + ("" if not action.install or install else " (with --install)")))
            continue
        if action.install and not install and not (ask and ask(f"{what}?")):
            done.append((what, "not done: installs only with --install"))
            continue
        done.append((what, fixes.apply(action, ctx)))
    return done


def fix_rounds(
    selected: Sequence[Check],
    results: Sequence[Result],
    ctx: Context,
    fresh: Callable[[], Context],
    *,
    dry_run: bool,
    install: bool,
    ask: Callable[[str], bool] | None,
) -> tuple[list[Result], list[tuple[str, str]], Context]:
    """Fix, check again (with a fresh look at the workspace), and fix what that uncovers (a
    created env file lets its checks run): at most three rounds. Returns the final results,
    every fix with its outcome, and the context of the final results."""
    done: list[tuple[str, str]] = []
    attempted: set[str] = set()
    current = list(results)
    for _ in range(3):
        new = [d for d in fix(current, ctx, dry_run=dry_run, install=install, ask=ask) if d[0] not in attempted]
        attempted.update(what for what, _ in new)
        done.extend(new)
        if dry_run or not new:
            break
        ctx = fresh()
        current = run(selected, ctx)
    return current, done, ctx


def redactor(ctx: Context) -> Redactor:
    """Secret values of the workspace: a last guard on everything doctor prints."""
    from airadev.runtimes.environment import stack_secrets

    config = ctx.config
    return Redactor(stack_secrets(config)) if config is not None else Redactor({})


def as_json(
    results: Sequence[Result],
    ctx: Context,
    strict: bool,
    redact: Redactor,
    fixes_done: Sequence[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    checks = []
    for r in results:
        item = r.as_dict()
        item["message"], item["fix"] = redact.text(item["message"]), redact.text(item["fix"])
        checks.append(item)
    data = {
        "schema": 1,
        "workspace": str(ctx.root) if ctx.root else None,
        "offline": ctx.offline,
        "checks": checks,
        "summary": summary(results),
        "exit_code": exit_code(results, strict),
    }
    if fixes_done is not None:
        data["fixes"] = [{"fix": redact.text(what), "outcome": redact.text(outcome)} for what, outcome in fixes_done]
    return data
