"""The package's shape, read from its source (every import statement, also those inside
functions): the product never imports the local stack that stands in for managed services, and no
two modules import each other, however indirectly."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from shopstream.config import REPO_ROOT

PACKAGE = REPO_ROOT / "shopstream"
DEVSTACK = "shopstream.devstack"


def module_name(file: Path) -> str:
    parts = file.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(file: Path, known: set[str]) -> set[str]:
    """The shopstream modules `file` imports anywhere in it (`from shopstream import x` names the
    module shopstream.x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def import_graph(files: list[Path]) -> dict[str, set[str]]:
    known = {module_name(f) for f in PACKAGE.rglob("*.py")}
    return {module_name(f): imported_modules(f, known) - {module_name(f)} for f in files}


def product_files() -> list[Path]:
    """The product: the package outside the local stack, and the DAG files."""
    package = [f for f in PACKAGE.rglob("*.py") if not module_name(f).startswith(DEVSTACK)]
    return package + sorted((REPO_ROOT / "dags").glob("*.py"))


def test_the_product_never_imports_the_local_stack():
    offenders = {
        module: sorted(m for m in imports if m.startswith(DEVSTACK))
        for module, imports in import_graph(product_files()).items()
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_no_import_cycles():
    graph = import_graph(sorted(PACKAGE.rglob("*.py")))
    # Packages' __init__ modules import nothing; a module's edge to its package is not a cycle.
    graph = {m: {d for d in deps if not m.startswith(f"{d}.")} for m, deps in graph.items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_the_walk_sees_imports_inside_functions(tmp_path):
    # The checks above would be blind without this: a lazy import is still a dependency.
    file = tmp_path / "m.py"
    file.write_text("def f():\n    from shopstream import report\n    import shopstream.summary\n")
    assert imported_modules(file, {"shopstream.report", "shopstream.summary"}) == {
        "shopstream.report",
        "shopstream.summary",
    }
