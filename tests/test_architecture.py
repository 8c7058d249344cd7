"""The package's shape: no import cycle between modules, and the reporting stage without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fetalbench"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path, modules: set[str]) -> set[str]:
    """The fetalbench modules ``path`` imports at module level (``if TYPE_CHECKING:`` included;
    imports inside functions, which run only when called, are not)."""
    found: set[str] = set()
    statements = list(ast.parse(path.read_text()).body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If | ast.Try):
            statements += node.body + node.orelse + getattr(node, "finalbody", [])
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: module_level_imports(path, set(paths)) - {name} for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (one per back edge)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append([*stack[stack.index(target):], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_module_imports_itself_through_others() -> None:
    graph = import_graph()
    # a package's __init__ importing its own submodules is how a package is made, not a cycle
    for name in graph:
        graph[name] = {target for target in graph[name] if not name.startswith(f"{target}.")}
    assert cycles(graph) == []


def test_the_reporting_stage_and_record_checks_import_without_torch() -> None:
    modules = ["fetalbench.report.leaderboard", "fetalbench.report.record_table",
               "fetalbench.report.statistics", "fetalbench.report.figures",
               "fetalbench.runs.validation", "fetalbench.runs.records", "fetalbench.methods"]
    probe = (f"import sys; import {', '.join(modules)}; "
             "print([m for m in ('torch', 'pytorch_lightning', 'lightly') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == "[]"
