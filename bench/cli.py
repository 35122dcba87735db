"""CLI latency: median wall time of `airadev status` and `airadev logs voice -n 100` (against a
running stack whose voice agent has a 100,000-line log), `logs -n 100` of a 1 GB log (read from
the end, it costs the same), `airadev --help`, every subcommand's `--help` (the slowest is
shown), and a shell completion of a service name (`airadev logs v<TAB>`, as bash asks it); next
to `python -c "import typer"`, measured in the same interleaved rounds.

Target: each at most 1.3 times the `import typer` baseline (the cost of any typer CLI).

usage: python bench/cli.py [--runs 41]
"""

from __future__ import annotations

import argparse
import compileall
import statistics

from common import BIN, FAKES, PY, ROOT, median_wall, report, run_airadev, workspace


def _write_gigabyte(path) -> None:  # type: ignore[no-untyped-def]
    """A 1 GB log in airadev's format (the supervisor appends to it; that is fine)."""
    block = b"".join(b"2026-11-26T00:00:00.000Z big line %08d %s\n" % (i, b"." * 60) for i in range(10_000))
    with open(path, "ab") as f:
        while f.tell() < 1 << 30:
            f.write(block)


def airadev(root, *args: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The installed console script, as a user runs it (not `python -m`, which adds runpy)."""
    return [str(BIN / "airadev"), "--workspace", str(root), *args]


def _subcommands() -> list[str]:
    import typer

    from airadev.cli import app

    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=41)
    args = parser.parse_args()
    # An installed package has its bytecode compiled; an editable checkout under
    # PYTHONDONTWRITEBYTECODE=1 would otherwise recompile airadev on every run.
    compileall.compile_dir(str(ROOT / "airadev"), quiet=1)
    root = workspace(f"""
[services.voice-agent]
aliases = ["voice"]
command = ["{PY}", "{FAKES / "printer.py"}", "--lines", "100000", "--tag", "voice"]
[services.kb]
command = ["{PY}", "{FAKES / "printer.py"}"]
[services.redis]
command = ["{PY}", "{FAKES / "printer.py"}"]
[services.big]
command = ["{PY}", "{FAKES / "printer.py"}"]
""")
    result = run_airadev(root, "up", "--detach")
    assert result.returncode == 0, result.stderr
    log = root / ".airadev" / "logs" / "voice-agent.log"
    import time

    deadline = time.monotonic() + 60
    while log.stat().st_size < 100_000 * 80 and time.monotonic() < deadline:
        time.sleep(0.1)
    big = root / ".airadev" / "logs" / "big.log"
    _write_gigabyte(big)
    try:
        commands = {
            "base": [PY, "-c", "import typer"],
            "help": [str(BIN / "airadev"), "--help"],
            "up_help": [str(BIN / "airadev"), "up", "--help"],
            "status": airadev(root, "status"),
            "logs": airadev(root, "logs", "voice", "-n", "100"),
            "python": [PY, "-c", "pass"],
            "big": airadev(root, "logs", "big", "-n", "100"),
            "complete": [
                "env",
                "_AIRADEV_COMPLETE=complete_bash",
                "COMP_WORDS=airadev logs v",
                "COMP_CWORD=2",
                f"AIRADEV_WORKSPACE={root}",
                str(BIN / "airadev"),
            ],
            **{f"help {name}": [str(BIN / "airadev"), name, "--help"] for name in _subcommands()},
        }
        for argv in commands.values():  # warm the file cache
            median_wall(argv, 2)
        # Interleaved rounds, so that drift in the machine's load hits every command alike.
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].append(median_wall(argv, 1))
        base, status, logs, python, big_logs, help_, up_help, complete = (
            statistics.median(samples[n])
            for n in ("base", "status", "logs", "python", "big", "help", "up_help", "complete")
        )
        slowest = max((n for n in samples if n.startswith("help ")), key=lambda n: statistics.median(samples[n]))
        sub_help = statistics.median(samples[slowest])
    finally:
        run_airadev(root, "down")
    rows = [
        ("python -c pass", f"{python * 1000:.0f} ms", ""),
        ('python -c "import typer"', "", f"{base * 1000:.0f} ms"),
        ("airadev status", f"{status * 1000:.0f} ms", f"{status / base:.2f}x"),
        ("airadev logs voice -n 100", f"{logs * 1000:.0f} ms", f"{logs / base:.2f}x"),
        ("... on a 1 GB log file", f"{big_logs * 1000:.0f} ms", f"{big_logs / base:.2f}x"),
        ("airadev --help", f"{help_ * 1000:.0f} ms", f"{help_ / base:.2f}x"),
        ("airadev up --help", f"{up_help * 1000:.0f} ms", f"{up_help / base:.2f}x"),
        (f"slowest subcommand --help ({slowest[5:]})", f"{sub_help * 1000:.0f} ms", f"{sub_help / base:.2f}x"),
        ("completion: airadev logs v<TAB>", f"{complete * 1000:.0f} ms", f"{complete / base:.2f}x"),
    ]
    return (
        0
        if report(
            f"CLI latency, median of {args.runs} runs (peer column: import typer, ratio)",
            rows,
            [
                ("status at most 1.3x import typer", status <= 1.3 * base),
                ("logs -n 100 at most 1.3x import typer", logs <= 1.3 * base),
                ("--help at most 1.3x import typer", help_ <= 1.3 * base),
                ("up --help at most 1.3x import typer", up_help <= 1.3 * base),
                ("every subcommand's --help at most 1.3x import typer", sub_help <= 1.3 * base),
                ("completion at most 1.3x import typer", complete <= 1.3 * base),
            ],
        )
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
