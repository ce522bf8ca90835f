"""lab's imports: no cycle, no silent import fallback, and the layers that pyproject's import-linter contracts name."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

PROJECT = Path(__file__).resolve().parents[2]
LAB = PROJECT / "lab"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# The only handlers of a failed import allowed in lab, as "file::function": count. None falls back quietly:
IMPORT_ERROR_ALLOWED = {
    # the agent's check for HailoRT's Python binding and numpy on the node: an infra_error that names the missing one
    "lab/agent/steps.py::Agent._platform": 2,
    # a database URL whose driver SQLAlchemy cannot import (mysql://...): a ConfigError naming the URL
    "lab/db/session.py::make_engine": 1,
    "lab/db/readonly.py::readonly_engine": 1,
}
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}

# Node-side packages (copied onto a node, stdlib only): what they may import from the rest of lab, directly
# or through what they import. lab.contract is the phase spec and record format the controller shares.
SELF_CONTAINED = {
    "lab.agent": {"lab.contract"},
    "lab.virtual.emulator.hailo_emu": set(),
}

@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """lab's import graph, function-level and TYPE_CHECKING imports included."""
    return grimp.build_graph("lab", cache_dir=None)


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def import_cycles(graph: grimp.ImportGraph, package: str) -> list[tuple[str, ...]]:
    """Each import cycle among `package`'s modules once, as the modules around it (A, B, ..., A)."""
    cycles: dict[frozenset[str], tuple[str, ...]] = {}
    for module in sorted(graph.find_descendants(package) | {package}):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported == module or not _inside(imported, package):
                continue
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.setdefault(frozenset(back), (module, *back))
    return list(cycles.values())


def test_cycles_are_found_and_named():
    g = grimp.ImportGraph()
    g.add_module("p")
    g.add_import(importer="p.a", imported="p.b")
    g.add_import(importer="p.b", imported="p.c")
    g.add_import(importer="p.c", imported="p.a")
    g.add_import(importer="p.c", imported="p.d")
    g.add_import(importer="p.a", imported="q.x")
    g.add_import(importer="q.x", imported="p.a")  # through another package: not p's own cycle
    assert import_cycles(g, "p") == [("p.a", "p.b", "p.c", "p.a")]


def test_lab_has_no_import_cycle(graph):
    cycles = import_cycles(graph, "lab")
    assert not cycles, "import cycles in lab:\n" + "\n".join(" -> ".join(c) for c in cycles)


def import_error_handlers(source: str, filename: str) -> list[tuple[str, int]]:
    """(enclosing function's qualified name, line) of each `except` that catches ImportError/ModuleNotFoundError."""
    found: list[tuple[str, int]] = []

    def caught(node: ast.expr | None) -> set[str]:
        if node is None:
            return set()
        names = node.elts if isinstance(node, ast.Tuple) else [node]
        return {n.id if isinstance(n, ast.Name) else n.attr for n in names if isinstance(n, (ast.Name, ast.Attribute))}

    def walk(node: ast.AST, scope: tuple[str, ...]) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = (*scope, child.name)
            if isinstance(child, ast.ExceptHandler) and caught(child.type) & IMPORT_ERRORS:
                found.append((".".join(scope) or "<module>", child.lineno))
            walk(child, inner)

    walk(ast.parse(source, filename), ())
    return found


def test_import_error_handlers_are_found():
    source = (
        "try:\n    import a\nexcept ImportError:\n    a = None\n"
        "class C:\n    def f(self):\n        try:\n            import b\n"
        "        except (OSError, builtins.ModuleNotFoundError):\n            pass\n"
        "        except ValueError:\n            pass\n"
    )
    assert import_error_handlers(source, "x.py") == [("<module>", 3), ("C.f", 9)]


def test_no_silent_import_fallbacks():
    handlers: dict[str, int] = {}
    where: list[str] = []
    optional: list[str] = []
    for path in sorted(LAB.rglob("*.py")):
        rel = path.relative_to(PROJECT).as_posix()
        source = path.read_text()
        for scope, line in import_error_handlers(source, rel):
            key = f"{rel}::{scope}"
            handlers[key] = handlers.get(key, 0) + 1
            where.append(f"{rel}:{line} ({scope})")
        # importlib.util.find_spec to import a module only if it is there is the same fallback in other words
        optional += [f"{rel}:{n.lineno}" for n in ast.walk(ast.parse(source, rel))
                     if isinstance(n, ast.Attribute) and n.attr == "find_spec"]
    assert handlers == IMPORT_ERROR_ALLOWED, "except ImportError/ModuleNotFoundError in lab:\n" + "\n".join(where)
    assert optional == [], f"optional imports (find_spec) in lab: {optional}"


@pytest.mark.parametrize("package", sorted(SELF_CONTAINED))
def test_node_side_package_imports_nothing_else_of_lab(graph, package):
    allowed = SELF_CONTAINED[package]
    upstream = graph.find_upstream_modules(package, as_package=True)
    outside = sorted(m for m in upstream
                     if _inside(m, "lab") and not _inside(m, package) and not any(_inside(m, a) for a in allowed))
    chains = [" -> ".join(graph.find_shortest_chain(importer=package, imported=m, as_packages=True) or (m,))
              for m in outside]
    assert outside == [], f"{package} imports the rest of lab: {chains}"


def _lint_imports(*args: str) -> subprocess.CompletedProcess:
    """`lint-imports ARGS` (no cache file left behind), its report in one wide column."""
    env = {**os.environ, "COLUMNS": "300"}
    return subprocess.run([str(LINT_IMPORTS), *args, "--no-cache", "--no-logo"], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_layer_contracts_are_kept():
    contracts = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    proc = _lint_imports("pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for contract in contracts:
        assert f"{contract['name']} KEPT" in proc.stdout
    assert f"Contracts: {len(contracts)} kept, 0 broken." in proc.stdout


def test_a_broken_contract_fails_lint_imports(tmp_path):
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["lab"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "errors only for the CLI"\ntype = "protected"\n'
        'protected_modules = ["lab.errors"]\nallowed_importers = ["lab.cli"]\n'
    )
    proc = _lint_imports(str(config))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "errors only for the CLI BROKEN" in proc.stdout
