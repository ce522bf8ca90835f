"""The emulated Hailo apt repository: package names, versions, relations, file lists, caching, apt and kmod."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.virtual.emulator import packages, packaging

# The emulated Raspberry Pi archive: one HailoRT line per chip, with Debian revisions on some packages.
EXPECTED = {
    ("h10-hailort", "5.1.1"),
    ("h10-hailort-pcie-driver", "5.1.1"),
    ("python3-h10-hailort", "5.1.1-1"),
    ("hailo-h10-all", "5.1.1-1"),
    ("hailort", "4.23.0"),
    ("hailort-pcie-driver", "4.23.0"),
    ("python3-hailort", "4.23.0-1"),
    ("hailo-all", "4.23.0-1"),
    ("hailo-models", "1.0.0-2"),
    ("dkms", "3.2.0-1"),  # Debian's on a real Pi; here with the archive, since nodes reach nothing else
}
# Every other version only as Hailo ships it: two .deb files and a wheel.
HAILO_FILES = {
    name
    for v in ("5.2.0", "5.3.0", "5.3.1", "4.20.0")
    for name in (f"hailort_{v}_all.deb", f"hailort-pcie-driver_{v}_all.deb", f"hailort-{v}-py3-none-any.whl")
}


def node_env(tmp_path: Path, root: Path) -> dict:
    """Environment that points an extracted package tree at tmp directories, at time scale 0."""
    (tmp_path / "hw").mkdir(exist_ok=True)
    (tmp_path / "hw" / "fleet.json").write_text('{"time_scale": 0}')
    return {
        **os.environ,
        "HAILO_EMU_HW_DIR": str(tmp_path / "hw"),
        "HAILO_EMU_STATE_DIR": str(tmp_path / "run"),
        "HAILO_EMU_FIRMWARE_DIR": str(root / "lib/firmware"),
        "HAILO_EMU_DEV_DIR": str(tmp_path / "dev"),
        "HAILO_EMU_JOURNAL_SOCKET": "",
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The repository, built once for this module."""
    return packaging.build_repository(tmp_path_factory.mktemp("apt"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The Hailo-style files folder, built once for this module."""
    folder = tmp_path_factory.mktemp("hailo-files")
    packaging.build_hailo_files(folder)
    return folder


def fields(deb: Path) -> dict:
    """The control fields of a .deb."""
    out = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True).stdout
    result, key = {}, None
    for line in out.splitlines():
        if line.startswith(" ") and key:
            result[key] += "\n" + line
        else:
            key, _, value = line.partition(": ")
            result[key] = value
    return result


def contents(deb: Path) -> dict:
    """Path -> (owner, mode) of every entry of a .deb."""
    out = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in out.splitlines():
        parts = line.split()
        entries[parts[5]] = (parts[1], parts[0])
    return entries


def test_names_and_versions(repo):
    stanzas = (repo / "Packages").read_text().strip().split("\n\n")
    got = {(s.split("\n")[0].split(": ")[1], s.split("\n")[1].split(": ")[1]) for s in stanzas}
    assert got == EXPECTED
    assert {p.name for p in repo.glob("*.deb")} == {f"{n}_{v}_all.deb" for n, v in EXPECTED}


def test_hailo_files_are_what_a_person_downloads(files):
    assert {p.name for p in files.iterdir()} == HAILO_FILES
    assert fields(files / "hailort_5.3.0_all.deb")["Version"] == "5.3.0"
    stamp = (files / "hailort-5.3.0-py3-none-any.whl").stat().st_mtime_ns
    packaging.build_hailo_files(files)  # the same content again: files left alone
    assert (files / "hailort-5.3.0-py3-none-any.whl").stat().st_mtime_ns == stamp
    assert not [p for p in files.iterdir() if p.name.startswith(".")]


def test_the_wheel_carries_hailo_platform(files):
    import zipfile

    with zipfile.ZipFile(files / "hailort-5.3.0-py3-none-any.whl") as whl:
        names = set(whl.namelist())
        assert {"hailo_platform/__init__.py", "hailort-5.3.0.dist-info/METADATA", "hailort-5.3.0.dist-info/RECORD",
                "hailort-5.3.0.dist-info/WHEEL", "hailo_platform/_emu/platform_api.py"} <= names
        assert "__version__ = '5.3.0'" in whl.read("hailo_platform/__init__.py").decode()


def test_relations(repo, files):
    h10 = fields(repo / "h10-hailort_5.1.1_all.deb")
    assert (h10["Conflicts"], h10["Replaces"]) == ("hailort", "hailort")
    assert fields(files / "hailort-pcie-driver_5.3.0_all.deb")["Conflicts"] == "h10-hailort-pcie-driver"
    assert fields(repo / "python3-hailort_4.23.0-1_all.deb")["Depends"] == "python3 (>= 3.9), python3-numpy, hailort (= 4.23.0)"
    meta = fields(repo / "hailo-h10-all_5.1.1-1_all.deb")
    assert meta["Depends"] == (
        "h10-hailort (= 5.1.1), h10-hailort-pcie-driver (= 5.1.1), " "python3-h10-hailort (= 5.1.1-1), hailo-models"
    )
    assert meta["Conflicts"] == "hailo-all"
    assert fields(repo / "hailort-pcie-driver_4.23.0_all.deb")["Depends"] == "python3 (>= 3.9), kmod, dkms"
    assert fields(files / "hailort-pcie-driver_5.3.0_all.deb")["Depends"] == "python3 (>= 3.9), kmod, dkms"
    assert "not Hailo software" in h10["Description"]


def test_driver_file_list(repo, files):
    hailo_files = files
    files = contents(hailo_files / "hailort-pcie-driver_5.3.0_all.deb")
    for path in (
        "./lib/firmware/hailo/hailo10h/scu_fw.bin",
        "./lib/firmware/hailo/hailo10h/u-boot-6.dtb.signed",
        "./usr/lib/modprobe.d/hailo1x_pci-emulator.conf",
        "./etc/modprobe.d/hailo1x_pci.conf",
        "./usr/sbin/hailo-emu-pcie",
        "./usr/sbin/hailo-emu-modinfo",
        "./usr/lib/hailort-pcie-driver/emulator/hailo-emu-driver",
        "./usr/lib/systemd/system/hailo-emu-coldplug.service",
        "./usr/src/hailo1x_pci-5.3.0/dkms.conf",
    ):
        assert path in files, path
    assert all(owner == "root/root" for owner, _ in files.values())
    assert files["./usr/sbin/hailo-emu-pcie"][1] == "-rwxr-xr-x"
    assert "./lib/firmware/hailo/hailo8_fw.bin" in contents(repo / "hailort-pcie-driver_4.23.0_all.deb")
    info = subprocess.run(
        ["dpkg-deb", "--info", str(hailo_files / "hailort-pcie-driver_5.3.0_all.deb")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "conffiles" in info and "prerm" in info


def test_runtime_python_and_models_file_lists(repo, files):
    assert "./usr/bin/hailortcli" in contents(files / "hailort_5.3.0_all.deb")
    assert "./usr/lib/python3/dist-packages/hailo_platform/__init__.py" in contents(
        repo / "python3-h10-hailort_5.1.1-1_all.deb"
    )
    models = contents(repo / "hailo-models_1.0.0-2_all.deb")
    assert {"./usr/share/hailo-models/yolov8s_h8.hef", "./usr/share/hailo-models/resnet_v1_50_h10.hef"} <= set(models)
    assert "./usr/share/hailo-models/yolo26s_hailo10h.hef" not in models  # the field report's model is in no package


def test_index_hashes_match(repo):
    import hashlib

    release = (repo / "Release").read_text()
    for name in ("Packages", "Packages.gz"):
        data = (repo / name).read_bytes()
        assert f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}" in release
    deb = repo / "hailort_4.23.0_all.deb"
    assert f"SHA256: {hashlib.sha256(deb.read_bytes()).hexdigest()}" in (repo / "Packages").read_text()


def test_cached_and_rebuilt_only_when_sources_change(tmp_path, monkeypatch):
    first = packaging.build_repository(tmp_path)
    stamp = (first / "Release").stat().st_mtime_ns
    assert packaging.build_repository(tmp_path) == first
    assert (first / "Release").stat().st_mtime_ns == stamp
    copy = tmp_path / "src" / "hailo_emu"
    shutil.copytree(packages.EMU_SOURCE, copy)
    (copy / "tables.py").write_text((copy / "tables.py").read_text() + "\n# changed\n")
    monkeypatch.setattr(packages, "EMU_SOURCE", copy)
    second = packaging.build_repository(tmp_path)
    assert second != first and (second / "Release").is_file() and first.exists()
    assert not list(tmp_path.glob(".build-*"))


def test_installed_tools_run_from_the_package_tree(files, tmp_path):
    root = tmp_path / "root"
    for name in ("hailort_5.3.0_all.deb", "hailort-pcie-driver_5.3.0_all.deb"):
        subprocess.run(["dpkg-deb", "-x", str(files / name), str(root)], check=True)
    env = node_env(tmp_path, root)
    run = lambda *cmd: subprocess.run(
        [str(root / cmd[0]), *cmd[1:]], env=env, capture_output=True, text=True
    )  # noqa: E731
    assert run("usr/bin/hailortcli", "--version").stdout == "HailoRT-CLI version 5.3.0\n"
    assert run("usr/bin/hailortcli", "scan").returncode == 64
    assert run("usr/lib/hailort-pcie-driver/emulator/hailo-emu-driver", "load").returncode == 0
    assert run("usr/bin/hailortcli", "scan").stdout == "Hailo Devices:\n[-] Device: 0001:01:00.0\n"
    assert run("usr/sbin/hailo-emu-modinfo", "-F", "version", "hailo1x_pci").stdout == "5.3.0\n"
    assert run("usr/sbin/hailo-emu-pcie", "remove").returncode == 0
    assert not (tmp_path / "dev" / "hailo0").exists()
    assert not list(root.rglob("__pycache__"))  # a purge must leave nothing behind


@pytest.mark.skipif(shutil.which("modprobe") is None, reason="kmod is not installed on this host")
def test_kmod_runs_the_install_directive_without_a_kernel_module(files, tmp_path):
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(files / "hailort-pcie-driver_5.3.0_all.deb"), str(root)], check=True)
    conf = (root / "usr/lib/modprobe.d/hailo1x_pci-emulator.conf").read_text()
    confdir = tmp_path / "modprobe.d"
    confdir.mkdir()
    (confdir / "hailo.conf").write_text(
        conf.replace("/usr/lib/hailort-pcie-driver", str(root / "usr/lib/hailort-pcie-driver"))
    )
    env = node_env(tmp_path, root)
    # -S names a kernel with no /lib/modules tree: nothing of the host's kernel is looked at or loaded
    modprobe = ["modprobe", "-C", str(confdir), "-S", "0.0.0-lab-emulator"]
    assert subprocess.run([*modprobe, "hailo1x_pci"], env=env).returncode == 0
    assert (tmp_path / "dev" / "hailo0").exists()
    assert subprocess.run([*modprobe, "-r", "hailo1x_pci"], env=env).returncode == 0
    assert not (tmp_path / "dev" / "hailo0").exists()


APT_CONF = """Dir::State "{d}"; Dir::State::lists "{d}/lists"; Dir::State::status "{d}/status";
Dir::Cache "{d}/cache"; Dir::Etc "{d}/etc"; Dir::Etc::sourcelist "{d}/etc/sources.list";
Dir::Etc::sourceparts "{d}/etc/sources.list.d"; Dir::Etc::preferencesparts "{d}/etc/preferences.d";
Dir::Etc::parts "{d}/etc/apt.conf.d"; Dir::Log "{d}/log"; Debug::NoLocking "true"; APT::Sandbox::User "root";
"""
STATUS = """Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: misc\nInstalled-Size: 1
Maintainer: x\nArchitecture: all\nVersion: {version}\nDescription: stand-in\n"""


@pytest.fixture
def apt(repo, tmp_path):
    """apt-get in a private directory tree (simulation only): never the host's apt state."""
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not installed")
    d = tmp_path / "apt"
    for sub in (
        "lists/partial",
        "cache/archives/partial",
        "etc/sources.list.d",
        "etc/preferences.d",
        "etc/apt.conf.d",
        "log",
    ):
        (d / sub).mkdir(parents=True)
    (d / "etc/sources.list").write_text(packaging.REPO_LINE.replace("/srv/lab-apt", str(repo)) + "\n")
    (d / "status").write_text(
        # what the node's base image has (lab/virtual/image.py PACKAGES): python3-numpy for python3-hailort
        "\n".join(STATUS.format(name=n, version=v)
                  for n, v in (("python3", "3.13.5-1"), ("kmod", "34.2-2"), ("python3-numpy", "1:2.2.4+ds-1")))
    )
    (d / "apt.conf").write_text(APT_CONF.format(d=d))
    env = {**os.environ, "APT_CONFIG": str(d / "apt.conf")}
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
    return lambda *args: subprocess.run(["apt-get", "-s", *args], env=env, capture_output=True, text=True)


def test_apt_resolves_pinned_stacks_and_refuses_mixing_families(apt):
    r = apt("install", "hailo-h10-all=5.1.1-1")
    assert r.returncode == 0 and "Inst h10-hailort-pcie-driver (5.1.1" in r.stdout
    r = apt("install", "hailo-all=4.23.0-1", "hailort=4.23.0", "hailort-pcie-driver=4.23.0", "python3-hailort=4.23.0-1")
    assert r.returncode == 0 and "Inst hailort (4.23.0" in r.stdout
    assert apt("install", "h10-hailort=5.1.1", "hailort=4.23.0").returncode != 0


def test_the_archive_has_one_line_per_chip_and_a_bare_pin_fails_on_revisions(apt):
    # What the old role did: `apt-get install python3-h10-hailort=5.1.1`, an exact version the archive lacks.
    assert apt("install", "python3-h10-hailort=5.1.1").returncode != 0
    assert apt("install", "hailort=5.3.0").returncode != 0  # 5.3.0 comes only as Hailo's files


def test_the_driver_registers_with_dkms_and_leaves_nothing_when_removed(files, tmp_path):
    """postinst adds and installs the module with DKMS; prerm removes every DKMS trace of it."""
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(files / "hailort-pcie-driver_5.3.0_all.deb"), str(root)], check=True)
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(files / "hailort-pcie-driver_5.3.0_all.deb"), str(control)], check=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "dkms").write_text("#!/bin/sh\nexec %s %s \"$@\"\n" % (sys.executable, packages.EMU_SOURCE / "dkms.py"))
    (bindir / "dkms").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "DKMS_EMU_ROOT": str(root),
           "DKMS_EMU_KERNEL": "6.12.47+rpt-rpi-2712"}
    subprocess.run(["sh", str(control / "postinst"), "configure"], env=env, check=True, capture_output=True)
    status = subprocess.run(["dkms", "status"], env=env, capture_output=True, text=True).stdout
    assert status == f"hailo1x_pci/5.3.0, 6.12.47+rpt-rpi-2712, {os.uname().machine}: installed\n"
    assert (root / "lib/modules/6.12.47+rpt-rpi-2712/updates/dkms/hailo1x_pci.ko").is_file()
    subprocess.run(["sh", str(control / "prerm"), "remove"], env=env, check=True, capture_output=True)
    assert subprocess.run(["dkms", "status"], env=env, capture_output=True, text=True).stdout == "\n"
    assert not (root / "var/lib/dkms").exists() or not list((root / "var/lib/dkms").iterdir())
    assert not (root / "lib/modules/6.12.47+rpt-rpi-2712/updates/dkms/hailo1x_pci.ko").exists()


def test_hailos_files_install_beside_the_archive_and_take_dkms_from_it(apt, files):
    """What the hailo_stack role does with Hailo's files: apt resolves the driver's dkms from the archive."""
    r = apt("install", str(files / "hailort_5.3.0_all.deb"), str(files / "hailort-pcie-driver_5.3.0_all.deb"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Inst dkms (3.2.0-1" in r.stdout and "Inst hailort-pcie-driver (5.3.0" in r.stdout
