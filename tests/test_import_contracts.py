"""The import contracts: layers, who may import whom, and no import cycle at all.

import-linter checks the contracts of pyproject.toml ([tool.importlinter]); its contracts
do not refuse every cycle, so a second test finds any cycle among the modules of tasks,
api_shim and ecs in grimp's graph (the one import-linter builds: imports inside functions
count), with the `importlib.import_module("literal")` calls added, as an app loads modules
by name. Both read the code's text: nothing is imported, and together they take about a
second.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tasks", "api_shim", "ecs", "console")


def lint_imports() -> str:
    script = Path(sys.executable).with_name("lint-imports")
    found = str(script) if script.exists() else shutil.which("lint-imports")
    assert found, "lint-imports is not installed (import-linter, in the test extra)"
    return found


def test_the_import_contracts_are_kept():
    """Every contract of pyproject.toml's [tool.importlinter], in one run of lint-imports."""
    out = subprocess.run(
        [lint_imports(), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    broken = out.stdout[out.stdout.find("Broken contracts") :]
    assert out.returncode == 0, (
        "an import contract (pyproject.toml, [tool.importlinter]) is broken:\n"
        f"{broken if 'Broken contracts' in out.stdout else out.stdout}{out.stderr}"
    )
    assert "BROKEN" not in out.stdout and " KEPT" in out.stdout, out.stdout


def import_graph(packages: Iterable[str]) -> grimp.ImportGraph:
    """grimp's graph of `packages`, plus each `importlib.import_module("name")` of a literal
    name inside them (grimp sees import statements only)."""
    graph = grimp.build_graph(*packages, cache_dir=None)
    for module in sorted(graph.modules):
        spec_file = module_file(module)
        if spec_file is None:
            continue
        tree = ast.parse(spec_file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and node.args
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value in graph.modules
            ):
                graph.add_import(
                    importer=module,
                    imported=node.args[0].value,
                    line_number=node.lineno,
                    line_contents="import_module",
                )
    return graph


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of two or more modules (Tarjan's, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    """A component and one cycle through it, with the line of each import."""
    first, members = component[0], set(component)
    lines = []
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            details = graph.get_import_details(importer=importer, imported=imported)
            where = ", ".join(f"line {d['line_number']}" for d in details) or "?"
            lines.append(f"    {importer} -> {imported} ({where})")
    back = [m for m in component if first in graph.find_modules_directly_imported_by(m)]
    path = graph.find_shortest_chain(importer=first, imported=back[0]) if back else None
    loop = " -> ".join([*(path or [first]), first])
    return f"  {len(component)} modules, e.g. {loop}:\n" + "\n".join(lines)


def test_no_module_imports_itself_back():
    graph = import_graph(PACKAGES)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    found = cycles(edges)
    assert not found, (
        "import cycles (imports inside functions count; move the shared part "
        "to a module both can import):\n" + "\n".join(describe(graph, c) for c in found)
    )


def test_the_cycle_check_sees_imports_inside_functions_and_by_name(tmp_path, monkeypatch):
    """The check itself: a cycle closed by an import inside a function, and one closed by
    importlib.import_module, are both found; a one-way import is not a cycle."""
    package = tmp_path / "cyclepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import cyclepkg.b\n")
    (package / "b.py").write_text("def later():\n    from cyclepkg import a\n")
    (package / "c.py").write_text("import cyclepkg.d\n")
    (package / "d.py").write_text("import importlib\nimportlib.import_module('cyclepkg.c')\n")
    (package / "e.py").write_text("import cyclepkg.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    graph = import_graph(["cyclepkg"])
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    assert sorted(cycles(edges)) == [["cyclepkg.a", "cyclepkg.b"], ["cyclepkg.c", "cyclepkg.d"]]
