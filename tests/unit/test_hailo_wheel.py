"""The node-side wheel installer of the hailo_stack role: Hailo's binding installed and removed as pip would."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from lab.virtual.emulator import packages, packaging

SCRIPT = Path(__file__).resolve().parents[2] / "lab/data/roles/hailo_stack/files/hailo_wheel.py"


@pytest.fixture
def wheel_mod(tmp_path, monkeypatch):
    """The script as a module, installing into a private site directory."""
    spec = importlib.util.spec_from_file_location("hailo_wheel", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(module, "site_dir", lambda: str(site))
    monkeypatch.setattr(sys, "path", [str(site)])
    return module


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    for rel in packages.hailo_file_releases():
        packaging.build_wheel(rel, out)
    return out


@pytest.mark.parametrize(("name", "python", "machine", "ok"), [
    ("hailort-5.3.0-cp313-cp313-linux_aarch64.whl", (3, 13), "aarch64", True),
    ("hailort-5.3.0-cp311-cp311-linux_aarch64.whl", (3, 13), "aarch64", False),
    ("hailort-5.3.0-cp313-cp313-linux_aarch64.whl", (3, 13), "x86_64", False),
    ("hailort-5.3.0-cp313-cp313-manylinux_2_34_aarch64.whl", (3, 13), "aarch64", True),
    ("hailort-5.3.0-py3-none-any.whl", (3, 9), "x86_64", True),
    ("hailort_5.3.0_arm64.deb", (3, 13), "aarch64", False),
])
def test_a_wheel_fits_by_its_tags(wheel_mod, name, python, machine, ok):
    assert wheel_mod.compatible(name, python, machine) is ok


def test_install_is_idempotent_and_replaces_another_version(wheel_mod, wheels, tmp_path):
    site = tmp_path / "site"
    assert wheel_mod.install("5.3.0", [str(wheels / "hailort-5.3.0-py3-none-any.whl")]) is True
    assert (site / "hailo_platform/__init__.py").is_file()
    assert (site / "hailort-5.3.0.dist-info/INSTALLER").read_text() == "lab\n"
    assert [v for _, v in wheel_mod.installed()] == ["5.3.0"]
    assert wheel_mod.install("5.3.0", [str(wheels / "hailort-5.3.0-py3-none-any.whl")]) is False
    assert wheel_mod.install("5.2.0", [str(wheels / "hailort-5.2.0-py3-none-any.whl")]) is True
    assert [v for _, v in wheel_mod.installed()] == ["5.2.0"]
    assert "5.2.0" in (site / "hailo_platform/__init__.py").read_text()


def test_remove_leaves_nothing(wheel_mod, wheels, tmp_path):
    site = tmp_path / "site"
    wheel_mod.install("5.3.0", [str(wheels / "hailort-5.3.0-py3-none-any.whl")])
    (site / "hailo_platform/__pycache__").mkdir()
    (site / "hailo_platform/__pycache__/x.pyc").write_bytes(b"")
    assert wheel_mod.remove() is True
    assert list(site.iterdir()) == []
    assert wheel_mod.remove() is False


def test_no_fitting_wheel_names_the_files(wheel_mod, tmp_path):
    other = tmp_path / "hailort-5.3.0-cp27-cp27-linux_s390x.whl"
    other.write_bytes(b"")
    with pytest.raises(SystemExit) as info:
        wheel_mod.install("5.3.0", [str(other)])
    assert "no hailort 5.3.0 wheel fits" in str(info.value) and other.name in str(info.value)


def test_the_installed_binding_imports(wheels, tmp_path):
    site = tmp_path / "site"
    env_code = ("import sys, runpy; sys.argv=['x','install','5.3.0',%r];"
                "import sysconfig; sysconfig.get_paths=lambda *a, **k: {'purelib': %r};"
                "runpy.run_path(%r, run_name='__main__')" % (str(wheels / "hailort-5.3.0-py3-none-any.whl"),
                                                            str(site), str(SCRIPT)))
    out = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True)
    assert out.stdout == "changed\n", out.stderr
    check = subprocess.run([sys.executable, "-c", "import hailo_platform; print(hailo_platform.__version__)"],
                           capture_output=True, text=True, env={"PYTHONPATH": str(site)})
    assert check.stdout == "5.3.0\n", check.stderr
