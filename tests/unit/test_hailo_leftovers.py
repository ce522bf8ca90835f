"""The hailo_purge role's leftover finder: DKMS trees, stray modules and pip-installed bindings are found
and removed (the old purge left them), and nothing else is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.virtual.emulator import packages, packaging

SCRIPT = Path(__file__).resolve().parents[2] / "lab/data/roles/hailo_purge/files/hailo_leftovers.py"


@pytest.fixture
def node(tmp_path):
    """A node's tree after a Hailo install that left things behind."""
    root = tmp_path / "root"
    site = root / "usr/local/lib/python3.13/dist-packages"
    for d in ("var/lib/dkms/hailo1x_pci/5.3.0/6.12.47+rpt-rpi-2712/aarch64/module", "usr/src/hailo1x_pci-5.3.0",
              "lib/modules/6.12.47+rpt-rpi-2712/updates/dkms", "lib/modules/6.12.47+rpt-rpi-2712/kernel/drivers/misc",
              "lib/firmware/hailo/hailo10h", "var/lib/dkms/other/1.0", "lib/modules/6.12.47+rpt-rpi-2712/kernel/net"):
        (root / d).mkdir(parents=True)
    (root / "usr/src/hailo1x_pci-5.3.0/dkms.conf").write_text("PACKAGE_NAME=hailo1x_pci\n")
    (root / "lib/modules/6.12.47+rpt-rpi-2712/updates/dkms/hailo1x_pci.ko").write_text("ko")
    (root / "lib/modules/6.12.47+rpt-rpi-2712/kernel/drivers/misc/hailo_pci.ko.xz").write_text("ko")
    (root / "lib/modules/6.12.47+rpt-rpi-2712/kernel/net/other.ko").write_text("ko")
    (root / "lib/firmware/hailo/hailo10h/scu_fw.bin").write_text("fw")
    site.mkdir(parents=True)
    rel = next(r for r in packages.hailo_file_releases() if r.version == "5.3.0")
    wheel = packaging.build_wheel(rel, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site)}
    install = ("import runpy, sys, sysconfig; sysconfig.get_paths = lambda *a, **k: {'purelib': %r}; "
               "sys.argv = ['x', 'install', '5.3.0', %r]; runpy.run_path(%r, run_name='__main__')"
               % (str(site), str(wheel), str(SCRIPT.parents[2] / "hailo_stack/files/hailo_wheel.py")))
    subprocess.run([sys.executable, "-c", install], env=env, check=True, capture_output=True)
    return root, site


def leftovers(root: Path, site: Path, *args: str) -> dict:
    env = {**os.environ, "HAILO_CLEAN_ROOT": str(root), "HAILO_CLEAN_SITE": str(site)}
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_finds_dkms_trees_stray_modules_and_wheels(node):
    root, site = node
    left = [p.replace(str(root), "") for p in leftovers(root, site, "list")["left"]]
    assert left == [
        "/lib/firmware/hailo",
        "/lib/modules/6.12.47+rpt-rpi-2712/kernel/drivers/misc/hailo_pci.ko.xz",
        "/lib/modules/6.12.47+rpt-rpi-2712/updates/dkms/hailo1x_pci.ko",
        "/usr/local/lib/python3.13/dist-packages/hailo_platform",
        "/usr/local/lib/python3.13/dist-packages/hailort-5.3.0.dist-info",
        "/usr/src/hailo1x_pci-5.3.0",
        "/var/lib/dkms/hailo1x_pci",
    ]


def test_remove_leaves_no_leftover_and_nothing_else_touched(node):
    root, site = node
    out = leftovers(root, site, "remove")
    assert out["left"] == [] and len(out["removed"]) == 7
    assert not list(site.iterdir())  # the wheel's every file
    assert (root / "lib/modules/6.12.47+rpt-rpi-2712/kernel/net/other.ko").exists()
    assert (root / "var/lib/dkms/other/1.0").is_dir()
    check = subprocess.run([sys.executable, "-c", "import hailo_platform"], capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(site)})
    assert check.returncode != 0
    assert leftovers(root, site, "remove") == {"removed": [], "left": []}
