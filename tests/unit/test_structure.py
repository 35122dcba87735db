"""The shape of airadev/ that a newcomer relies on: no import loops (imports made only for type
annotations aside), no module too long to read in one go. The layers themselves are
import-linter's contract (pyproject.toml, `make lint`)."""

from __future__ import annotations

from pathlib import Path

import grimp

import airadev

PACKAGE = Path(__file__).resolve().parents[2] / "airadev"
LONGEST = 600


def loops(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each an import loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in imports[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(imports):
        if module not in index:
            visit(module)
    return found


def test_loops_finds_a_loop_and_only_loops() -> None:
    assert loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert loops({"a": {"b"}, "b": set()}) == []


def test_airadev_has_no_import_loops() -> None:
    assert Path(airadev.__file__).parent == PACKAGE  # the graph is of this checkout's code
    graph = grimp.build_graph("airadev", exclude_type_checking_imports=True)
    imports = {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    assert len(imports) > 50 and loops(imports) == []


def test_no_module_is_longer_than_a_newcomer_reads_at_once() -> None:
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > LONGEST} == {}


def test_only_the_dashboard_imports_textual() -> None:
    """`airadev dash` alone pays for textual: no other command imports it (nor the modules they use)."""
    graph = grimp.build_graph("airadev", include_external_packages=True)
    assert graph.find_modules_that_directly_import("textual") == {"airadev.dash.app"}
    importers = graph.find_downstream_modules("airadev.dash.app")
    assert importers <= {"airadev.dash", "airadev.cli", "airadev.__main__"}, importers
