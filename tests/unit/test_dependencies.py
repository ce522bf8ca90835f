"""lab declares exactly what it imports, and the code that runs on a node imports only the standard library."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text())
# Declared without an import statement of ours, each for a reason that a test of its own covers.
IMPORTED_INDIRECTLY = {
    "ansible-lint": "run as a program by tests/unit/test_ansible_content.py",
    "import-linter": "run as a program (lint-imports) by tests/unit/test_import_structure.py",
}
# Node side: the agent (with the contract it shares with the controller, carried in its zipapp) and the
# emulated device run on a bare Debian/Raspberry Pi OS Python (3.9 grammar: tests/unit/test_parsers.py).
AGENT_SIDE = [PROJECT / "lab" / "agent", PROJECT / "lab" / "contract.py"]
NODE_SIDE = AGENT_SIDE + [PROJECT / "lab" / "virtual" / "emulator" / "hailo_emu"]


def _py_files(where: Path) -> list[Path]:
    """A module file itself, or every module under a folder."""
    return [where] if where.is_file() else sorted(where.rglob("*.py"))


def _top_level_imports(folder: Path) -> dict[str, str]:
    """Top-level module name -> first file:line that imports it (absolute imports only)."""
    found: dict[str, str] = {}
    for path in _py_files(folder):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], f"{path.relative_to(PROJECT)}:{node.lineno}")
    return found


def _third_party(imports: dict[str, str], own: set[str]) -> dict[str, str]:
    return {m: where for m, where in imports.items() if m not in sys.stdlib_module_names and m not in own}


def _norm(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist(requirement: str) -> str:
    return _norm(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])


def _distributions(modules: dict[str, str]) -> dict[str, str]:
    """Distribution (lower case) -> where one of its modules is imported."""
    by_module = importlib.metadata.packages_distributions()
    out: dict[str, str] = {}
    for module, where in modules.items():
        dists = by_module.get(module)
        assert dists, f"{where}: imports {module!r}, which no installed distribution provides"
        out.setdefault(_norm(dists[0]), where)
    return out


def test_runtime_dependencies_are_exactly_what_lab_imports():
    found = _top_level_imports(PROJECT / "lab")
    # the agent's numpy is the node's (python3-hailort depends on it), imported lazily there only
    if found.get("numpy", "").startswith("lab/agent/"):
        del found["numpy"]
    imported = _distributions(_third_party(found, {"lab", "hailo_emu", "hailo_platform"}))
    declared = {_dist(r) for r in PYPROJECT["project"]["dependencies"]}
    assert sorted(set(imported) - declared) == [], f"imported but not declared: {imported}"
    assert sorted(declared - set(imported) - set(IMPORTED_INDIRECTLY)) == []


def test_test_extras_are_exactly_what_the_tests_import():
    runtime = {_dist(r) for r in PYPROJECT["project"]["dependencies"]}
    modules = {**_top_level_imports(PROJECT / "tests"), **_top_level_imports(PROJECT / "bench")}
    imported = _distributions(_third_party(modules, {"lab", "tests", "benchlib", "hailo_emu", "hailo_platform"}))
    extras = {_dist(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]}
    assert sorted(set(imported) - runtime - extras) == [], f"imported by tests but not declared: {imported}"
    assert sorted(extras - set(imported) - set(IMPORTED_INDIRECTLY)) == []


def test_node_side_code_imports_only_the_standard_library():
    for folder in NODE_SIDE:
        imports = _top_level_imports(folder)
        # the agent drives HailoRT's Python binding, which Hailo's packages (or the emulator) put on the node
        # (and numpy, which python3-hailort depends on: pyhailort's buffers are numpy arrays)
        own = {"lab", "hailo_platform", "numpy"} if folder in AGENT_SIDE else {"hailo_emu", "hailo_platform"}
        assert _third_party(imports, own) == {}, folder
        if folder in AGENT_SIDE:  # lab.bundle ships lab/agent/ and lab/contract.py, nothing else of lab
            lab_imports = {m for m in _lab_modules(folder)}
            assert all(m.startswith("lab.agent") or m == "lab.contract" for m in lab_imports), lab_imports


def _lab_modules(folder: Path) -> set[str]:
    mods: set[str] = set()
    for path in _py_files(folder):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("lab"):
                mods.add(node.module)
            elif isinstance(node, ast.Import):
                mods.update(a.name for a in node.names if a.name.startswith("lab"))
    return mods
