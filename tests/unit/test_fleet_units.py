"""Unit tests of the virtual fleet's pure parts and its input errors (no node is booted here)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from lab.cli import main
from lab.errors import LabError
from lab.virtual import image, inventory_file
from lab.virtual.fleet import Fleet
from lab.virtual.node import NodeDir, prepare
from lab.virtual.profile import load_profile


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cache_key_covers_inputs():
    base = image.cache_key()
    assert image.cache_key(packages=image.PACKAGES + ("curl",)) != base
    assert image.cache_key(mirror="http://127.0.0.1/debian") != base
    assert image.cache_key() == base


def test_inventory_render_has_connection_and_lab_vars(tmp_path):
    meta = {"time_scale": 0.02, "repo": "/var/cache/lab/apt/repo"}
    data = inventory_file.render(tmp_path, tmp_path / "ssh/id_ed25519", tmp_path / "ssh/known_hosts", meta,
                                 {"node1": "127.77.0.1", "node2": "127.77.0.2"})
    group = data["virtual"]
    assert group["hosts"]["node1"]["ansible_host"] == "127.77.0.1" and group["hosts"]["node2"]["lab_chip"] == "hailo10h"
    assert group["vars"]["ansible_ssh_common_args"] == (
        f"-o UserKnownHostsFile={tmp_path}/ssh/known_hosts -o StrictHostKeyChecking=yes")
    assert group["vars"]["lab_time_scale"] == 0.02
    assert group["vars"]["lab_hailo_sources"] == [{"files": "../hailo-files"}, "archive"]
    assert "lab_apt_repository" not in group["vars"]  # the node lists the emulated archive itself


def _pi_vars(host: str) -> dict:
    """A host's variables in inventory/pis.example.yml, merged as Ansible does (all < pis < group < host)."""
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "inventory/pis.example.yml").read_text())
    pis = doc["all"]["children"]["pis"]
    for group in pis["children"].values():
        if host in group["hosts"]:
            return {**pis.get("vars", {}), **group.get("vars", {}), **group["hosts"][host]}
    raise KeyError(host)


def test_virtual_and_real_inventories_differ_only_where_documented(tmp_path):
    from lab.virtual.emulator.nodevars import KERNEL_INTERFACE_VARS

    meta = {"time_scale": 0.02, "repo": "/var/cache/lab/apt/repo"}
    data = inventory_file.render(tmp_path, tmp_path / "key", tmp_path / "known_hosts", meta,
                                 {"node1": "127.77.0.1", "node2": "127.77.0.2"}, {"node2": {"chip": "hailo8"}})
    allowed = {"ansible_host", "ansible_ssh_private_key_file", "ansible_ssh_common_args", "lab_time_scale",
               *KERNEL_INTERFACE_VARS}
    for node, pi in (("node1", "pi-01"), ("node2", "pi-03")):
        virtual = {**data["virtual"]["vars"], **data["virtual"]["hosts"][node]}
        real = _pi_vars(pi)
        same = {k: v for k, v in virtual.items() if k not in allowed}
        assert same == {k: v for k, v in real.items() if k not in allowed}, node
    assert data["virtual"]["vars"]["ansible_user"] == "pi" and data["virtual"]["vars"]["ansible_become"] is True


def test_node_prepare_gives_identity(tmp_path):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    nd = NodeDir(tmp_path / "node7", "node7")
    prepare(nd, "127.77.0.7", "ssh-ed25519 AAAA lab", {"chip": "hailo8"}, {"time_scale": 1.0}, {"name": "node7"})
    etc = nd.upper / "etc"
    assert (etc / "hostname").read_text() == "node7\n"
    assert len((etc / "machine-id").read_text().strip()) == 32
    assert "ListenAddress 127.77.0.7\n" in (etc / "ssh/sshd_config.d/lab.conf").read_text()
    assert (etc / "ssh/ssh_host_ed25519_key.pub").read_text().startswith("ssh-ed25519 ")
    assert (nd.upper / "root/.ssh/authorized_keys").stat().st_mode & 0o777 == 0o600
    assert json.loads((nd.hw / "unit.json").read_text()) == {"node": "node7", "chip": "hailo8"}
    machine_id = (etc / "machine-id").read_text()
    prepare(nd, "127.77.0.7", "ssh-ed25519 AAAA lab", {}, {"time_scale": 1.0}, {"name": "node7"})
    assert (etc / "machine-id").read_text() == machine_id  # identity is kept across `fleet up`
    assert not (etc / "apt/sources.list.d/raspi.list").exists()  # no repository, no source


def test_node_has_a_pi_login_user_with_sudo(tmp_path):
    if shutil.which("ssh-keygen") is None or os.geteuid() != 0:
        pytest.skip("needs ssh-keygen and root (files owned by the login user)")
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (rootfs / "etc/group").write_text("root:x:0:\nsudo:x:27:\n")
    (rootfs / "etc/shadow").write_text("root:*:20000:0:99999:7:::\n")
    nd = NodeDir(tmp_path / "node1", "node1")
    prepare(nd, "127.77.0.1", "ssh-ed25519 AAAA lab", {}, {"time_scale": 1.0}, {"name": "node1", "rootfs": str(rootfs)})
    etc = nd.upper / "etc"
    assert (etc / "passwd").read_text().splitlines()[-1] == "pi:x:1000:1000:,,,:/home/pi:/bin/bash"
    assert (etc / "group").read_text() == "root:x:0:\nsudo:x:27:pi\npi:x:1000:\n"
    assert (etc / "shadow").read_text().splitlines()[-1].startswith("pi:*:")  # key login only
    assert (etc / "sudoers.d/010_pi-nopasswd").read_text() == "pi ALL=(ALL) NOPASSWD: ALL\n"
    keys = nd.upper / "home/pi/.ssh/authorized_keys"
    assert keys.read_text() == "ssh-ed25519 AAAA lab\n" and keys.stat().st_uid == 1000
    assert (nd.upper / "root/.ssh/authorized_keys").exists()  # the fleet's own tooling still logs in as root
    prepare(nd, "127.77.0.1", "ssh-ed25519 AAAA lab", {}, {"time_scale": 1.0}, {"name": "node1", "rootfs": str(rootfs)})
    assert (etc / "passwd").read_text().count("pi:x:1000") == 1


def test_node_lists_the_emulated_archive_as_a_pi_lists_its_own(tmp_path):
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    nd = NodeDir(tmp_path / "node1", "node1")
    prepare(nd, "127.77.0.1", "ssh-ed25519 AAAA lab", {}, {"time_scale": 1.0}, {"name": "node1", "repo": "/r"})
    assert (nd.upper / "etc/apt/sources.list.d/raspi.list").read_text() == "deb [trusted=yes] file:/srv/lab-apt ./\n"


def test_profile_defaults_merge(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"chip": "hailo10h"}, "nodes": {"node1": {}, "node2": {"chip": "hailo8"}}}))
    units = load_profile(path)
    assert units["node1"]["chip"] == "hailo10h" and units["node2"]["chip"] == "hailo8"


@pytest.mark.parametrize(
    "text, message",
    [
        ("nodes: [node1]\n", "a fleet profile needs a `nodes:` mapping of node name -> unit, {p}:1, see profiles/mixed.yaml for an example"),
        ("nodes:\n  node1: {}\ncolour: red\n", "unknown key 'colour', {p}:3, use defaults, nodes, description"),
        ("nodes:\n  node1: {chip: [\n", "invalid YAML (expected the node content, but found '<stream end>'), {p}:3, fix the syntax"),
        ("nodes:\n  node1: {}\n  node 2: {}\n", "invalid node name 'node 2', {p}:3, use letters, digits, - and _"),
    ],
)
def test_profile_errors_name_file_and_line(tmp_path, capsys, monkeypatch, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    monkeypatch.setattr(Fleet, "check_host", lambda self: None)
    code, out, err = run(capsys, "fleet", "up", "--profile", str(path))
    assert (code, out) == (2, "")
    assert err == "lab: error: " + message.format(p=path) + "\n"


def test_profile_naming_missing_node(tmp_path, capsys, monkeypatch):
    path = tmp_path / "p.yaml"
    path.write_text("nodes:\n  node1: {}\n  node9: {chip: hailo8}\n")
    monkeypatch.setattr(Fleet, "check_host", lambda self: None)
    code, out, err = run(capsys, "fleet", "up", "--nodes", "2", "--profile", str(path))
    assert code == 2
    assert err == (f"lab: error: profile names node 'node9', which the fleet does not have (nodes: node1..node2), "
                   f"{path}, raise --nodes to at least 2 or rename the node\n")


def test_not_root(capsys, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, _, err = run(capsys, "fleet", "up")
    assert code == 2
    assert err == "lab: error: the virtual fleet needs root (mounts, systemd-nspawn), run as root, e.g. sudo lab fleet up\n"


def test_no_systemd_nspawn(capsys, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    real_which = shutil.which
    monkeypatch.setattr("lab.virtual.fleet.shutil.which", lambda t: None if t == "systemd-nspawn" else real_which(t))
    code, _, err = run(capsys, "fleet", "up")
    assert code == 2
    assert err == "lab: error: systemd-nspawn is not installed, apt-get install systemd-container\n"


def test_no_debootstrap_when_image_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(Fleet, "check_host", lambda self: None)
    monkeypatch.setattr("lab.virtual.image.shutil.which", lambda t: None)
    code, _, err = run(capsys, "fleet", "up", "--nodes", "1")
    assert code == 2
    assert err == ("lab: error: debootstrap is not installed (needed once, to build the base image), "
                   "apt-get install debootstrap\n")


def test_fleet_net_outside_range(capsys, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setenv("LAB_FLEET_NET", "10.0.0")
    code, _, err = run(capsys, "fleet", "up")
    assert code == 2
    assert err == "lab: error: fleet network 10.0.0.0/24 is outside 127.77.0.0/16, LAB_FLEET_NET, use 127.77.X\n"


def test_fault_without_fleet(capsys):
    code, _, err = run(capsys, "fleet", "fault", "node1", "freeze")
    assert code == 2
    assert err.startswith("lab: error: no virtual fleet is up, ") and err.endswith(", run `lab fleet up` first\n")


def test_status_and_down_without_fleet(capsys):
    assert run(capsys, "fleet", "status") == (0, "no virtual fleet is up\n", "")
    assert run(capsys, "fleet", "status", "--json") == (0, '{\n  "nodes": []\n}\n', "")
    assert run(capsys, "fleet", "down") == (0, "no virtual fleet was up\n", "")


def test_too_few_inotify_instances_for_the_fleet(tmp_path):
    """Nodes past the host's inotify limit would never boot: refused up front with the sysctl to run."""
    from lab.virtual.fleet import check_inotify

    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    check_inotify(24, limit)  # 4 per node and a margin for other fleets fit in 128
    with pytest.raises(LabError) as exc:
        check_inotify(64, limit)
    assert str(exc.value) == (f"fs.inotify.max_user_instances is 128, too few for 64 nodes, {limit}, "
                              "sysctl -w fs.inotify.max_user_instances=1024")
    assert exc.value.exit_code == 2
