"""The wheel is complete: installed alone in a fresh venv, `lab` starts and finds everything it ships."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT

SERIES = "run,fps,temp\n" + "".join(f"{i},{125.0 if i < 13 else 125.0 - 3.5 * (i - 12):.2f},{60 + min(i, 14):.1f}\n"
                                    for i in range(1, 26))


def _run(argv: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with only the wheel and its declared dependencies (no test extras); its bin/ folder."""
    base = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(PROJECT)], base)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((base / "dist").glob("lab-*.whl"))
    made = _run(["/usr/bin/python3", "-m", "venv", str(base / "venv")], base)
    assert made.returncode == 0, made.stderr
    pip = _run([str(base / "venv" / "bin" / "pip"), "install", "-q", str(wheel)], base)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return base / "venv" / "bin"


def test_installed_lab_starts_from_another_directory(installed, tmp_path):
    result = _run([str(installed / "lab"), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage: lab" in result.stdout and "run" in result.stdout
    listed = _run([str(installed / "pip"), "list", "--format=freeze"], tmp_path).stdout.lower()
    assert "pytest" not in listed and "hypothesis" not in listed  # no test extras in this venv


def test_installed_lab_checks_a_shipped_scenario_by_name_and_by_path(installed, tmp_path):
    by_name = _run([str(installed / "lab"), "check", "cma_soak", "h10-5.3.0", "mixed"], tmp_path)
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout.splitlines() == ["OK cma_soak (scenario: cma_soak)", "OK h10-5.3.0 (stack: h10-5.3.0)",
                                           "OK mixed (profile: mixed)"]
    where = _run([str(installed / "python"), "-c", "from lab import resources; print(resources.data_dir())"], tmp_path)
    data = Path(where.stdout.strip())
    assert str(data).startswith(str(installed.parent)), data  # the installed copy, not the checkout
    by_path = _run([str(installed / "lab"), "check", str(data / "scenarios" / "recovery_matrix.yaml")], tmp_path)
    assert by_path.returncode == 0, by_path.stderr


def test_installed_lab_ships_playbooks_ansible_can_load(installed, tmp_path):
    where = _run([str(installed / "python"), "-c",
                  "from lab import resources as r; print(r.ansible_cfg()); print(r.roles_dir()); print(r.playbooks_dir())"],
                 tmp_path)
    cfg, roles, playbooks = where.stdout.split()
    env = {"ANSIBLE_CONFIG": cfg, "ANSIBLE_ROLES_PATH": roles, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
           "HOME": str(tmp_path), "PATH": f"{installed}:/usr/bin:/bin"}
    for book in sorted(Path(playbooks).glob("*.yml")):
        check = subprocess.run([str(installed / "ansible-playbook"), "--syntax-check", "-i", "localhost,", str(book)],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, f"{book.name}: {check.stderr[-1500:]}"


def test_installed_lab_analyzes_a_csv(installed, tmp_path):
    (tmp_path / "series.csv").write_text(SERIES)
    result = _run([str(installed / "lab"), "analyze", "series.csv"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "series.csv: degraded (25 runs)"
    assert "  onset: run 13" in lines and "  slope: -3.50 fps/run over runs 13-25" in lines
