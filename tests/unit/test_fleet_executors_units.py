"""Unit tests of the virtual fleet's execution nodes: inventory contract, spread, runner tree, upper layer (no boot)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from lab.cli import main
from lab.virtual import inventory_file, runner
from lab.virtual.fleet import Fleet
from lab.virtual.node import EXECUTOR_KNOWN_HOSTS, EXECUTOR_NODE_KEY, NodeDir, prepare_executor
from lab.virtual.supervisor import nspawn_command

NET = "127.77.9"
META = {"time_scale": 0.02, "repo": "/var/cache/lab/apt/repo"}


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _addresses(count: int) -> dict[str, str]:
    return {f"node{i}": f"{NET}.{i}" for i in range(1, count + 1)}


def _render(tmp_path: Path, nodes: int, executors: int) -> dict:
    execs = {f"exec{j}": f"{NET}.{200 + j}" for j in range(1, executors + 1)}
    power = {name: {"driver": "pdudaemon", "port": i} for i, name in enumerate(_addresses(nodes), start=1)}
    return inventory_file.render(tmp_path, tmp_path / "ssh/id_ed25519", tmp_path / "ssh/known_hosts", META,
                                 _addresses(nodes), None, power, execs or None)


def _ansible_view(tmp_path: Path, data: dict) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """Every host's merged variables and every group's hosts, as Ansible itself reads the written file."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    path = tmp_path / "inventory" / "virtual.yml"
    inventory_file.write(path, data)
    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(path)])
    variables = VariableManager(loader=loader, inventory=manager)
    hosts = {h.name: variables.get_vars(host=h) for h in manager.get_hosts()}
    groups = {name: sorted(h.name for h in g.get_hosts()) for name, g in manager.groups.items()}
    return hosts, groups


def test_spread_is_round_robin_over_the_executors():
    nodes = [f"node{i}" for i in range(1, 6)]
    assert inventory_file.spread(nodes, ["exec1", "exec2"]) == {"exec1": ["node1", "node3", "node5"],
                                                                "exec2": ["node2", "node4"]}
    assert inventory_file.spread(nodes[:1], ["exec1", "exec2", "exec3"]) == {"exec1": ["node1"], "exec2": [],
                                                                             "exec3": []}
    assert [inventory_file.rack_of(i, 4) for i in range(1, 10)] == [1, 2, 3, 4, 1, 2, 3, 4, 1]


def test_without_executors_the_inventory_is_as_before(tmp_path):
    data = _render(tmp_path, 3, 0)
    assert list(data) == ["virtual"] and set(data["virtual"]) == {"hosts", "vars"}
    assert data["virtual"]["vars"]["ansible_ssh_private_key_file"] == str(tmp_path / "ssh/id_ed25519")
    assert "lab_executor" not in json.dumps(data)


def test_executors_inventory_follows_the_contract(tmp_path):
    """Executors as the controller reaches them; nodes in racks, their variables as seen from their executor."""
    hosts, groups = _ansible_view(tmp_path, _render(tmp_path, 4, 2))
    assert groups["lab_executors"] == ["exec1", "exec2"]
    assert groups["virtual"] == ["node1", "node2", "node3", "node4"]  # executors are never nodes under test
    assert (groups["rack1"], groups["rack2"]) == (["node1", "node3"], ["node2", "node4"])
    controller_args = f"-o UserKnownHostsFile={tmp_path}/ssh/known_hosts -o StrictHostKeyChecking=yes"
    for j in (1, 2):
        ex = hosts[f"exec{j}"]
        assert ex["ansible_host"] == f"{NET}.{200 + j}" and ex["ansible_user"] == "root"
        assert ex["ansible_ssh_private_key_file"] == str(tmp_path / "ssh/id_ed25519")
        assert ex["ansible_ssh_common_args"] == controller_args
        assert ex["lab_runner"] == "ansible-runner"
        assert "lab_executor" not in ex and "lab_power" not in ex and "lab_chip" not in ex
    executor_args = f"-o UserKnownHostsFile={EXECUTOR_KNOWN_HOSTS} -o StrictHostKeyChecking=yes"
    for i in (1, 2, 3, 4):
        node = hosts[f"node{i}"]
        assert node["lab_executor"] == ("exec1" if i % 2 else "exec2")
        assert node["ansible_host"] == f"{NET}.{i}" and node["ansible_user"] == "pi" and node["ansible_become"]
        assert node["ansible_ssh_private_key_file"] == EXECUTOR_NODE_KEY == "/root/.ssh/lab_nodes"
        assert node["ansible_ssh_common_args"] == executor_args
        assert node["lab_power"]["port"] == i and node["lab_time_scale"] == 0.02
    assert "StrictHostKeyChecking=no" not in (tmp_path / "inventory" / "virtual.yml").read_text()


def test_executors_inventory_keeps_every_node_variable(tmp_path):
    """Only the connection variables differ from the inventory without executors (and lab_executor is added)."""
    plain, _ = _ansible_view(tmp_path, _render(tmp_path, 3, 0))
    spread, _ = _ansible_view(tmp_path, _render(tmp_path, 3, 3))
    moved = {"ansible_ssh_private_key_file", "ansible_ssh_common_args"}
    for node in ("node1", "node2", "node3"):
        keep = {k: v for k, v in plain[node].items() if k not in moved and not k.startswith("group_names")
                and k not in ("groups", "inventory_file", "inventory_dir")}
        got = {k: v for k, v in spread[node].items() if k in keep}
        assert got == keep, node
    assert {spread[n]["lab_executor"] for n in ("node1", "node2", "node3")} == {"exec1", "exec2", "exec3"}


def _fake_site(site: Path) -> None:
    for dist, version, text in (
        ("ansible_runner", "2.4.3", "[console_scripts]\nansible-runner = ansible_runner.__main__:main\n"),
        ("ansible_core", "2.19.14", "[console_scripts]\nansible = ansible.cli.adhoc:main\n"
                                    "ansible-playbook = ansible.cli.playbook:main\n\n[other]\nx = y:z\n"),
        ("pexpect", "4.9.0", "[console_scripts]\nnot-ours = pexpect:main\n"),
    ):
        info = site / f"{dist}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "entry_points.txt").write_text(text)


def test_runner_files_put_the_cached_tree_on_the_system_python(tmp_path):
    _fake_site(tmp_path / "site")
    assert runner.console_scripts(tmp_path / "site") == {
        "ansible-runner": "ansible_runner.__main__:main", "ansible": "ansible.cli.adhoc:main",
        "ansible-playbook": "ansible.cli.playbook:main"}
    files = runner.files(tmp_path / "site", "3.13")
    assert files["usr/local/lib/python3.13/dist-packages/lab-runner.pth"] == "/opt/lab-runner\n"
    script = files["usr/local/bin/ansible-runner"]
    assert script.startswith("#!/usr/bin/python3\n") and "from ansible_runner.__main__ import main\n" in script
    assert "sys.exit(main())" in script
    assert "usr/local/bin/not-ours" not in files
    compile(script, "ansible-runner", "exec")


def test_runner_pip_command_pins_the_controllers_versions(tmp_path):
    versions = runner.controller_versions()
    assert set(versions) == {"ansible-runner", "ansible-core"}
    cmd = runner.pip_command(tmp_path / "site", "3.13", versions, (2, 41), "x86_64", pip="/venv/bin/python")
    assert cmd[:5] == ["/venv/bin/python", "-m", "pip", "install", "--quiet"]
    assert f"ansible-runner=={versions['ansible-runner']}" in cmd and f"ansible-core=={versions['ansible-core']}" in cmd
    assert "--only-binary=:all:" in cmd and cmd[cmd.index("--python-version") + 1] == "3.13"
    assert cmd[cmd.index("--target") + 1] == str(tmp_path / "site")
    assert "manylinux_2_41_x86_64" in cmd and "manylinux_2_17_x86_64" in cmd and "manylinux_2_42_x86_64" not in cmd
    key = runner.cache_key("3.13", versions, (2, 41), "x86_64")
    assert runner.cache_key("3.12", versions, (2, 41), "x86_64") != key
    assert runner.cache_key("3.13", {**versions, "ansible-runner": "2.5.0"}, (2, 41), "x86_64") != key
    assert runner.cache_key("3.13", versions, (2, 41), "aarch64") != key


def test_runner_reads_the_images_python_and_glibc(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr/bin").mkdir(parents=True)
    (rootfs / "usr/bin/python3").symlink_to("python3.13")
    (rootfs / "var/lib/dpkg").mkdir(parents=True)
    (rootfs / "var/lib/dpkg/status").write_text(
        "Package: libc-bin\nVersion: 9.9-1\n\nPackage: libc6\nStatus: install ok installed\nVersion: 2.41-12+deb13u5\n")
    assert runner.image_python(rootfs) == "3.13"
    assert runner.image_glibc(rootfs) == (2, 41)
    (rootfs / "usr/bin/python3").unlink()
    (rootfs / "usr/bin/python3").write_text("")
    with pytest.raises(Exception, match="cannot tell the base image's Python"):
        runner.image_python(rootfs)


def test_executor_upper_layer(tmp_path):
    """Root's key is the controller's; the nodes' key and host keys are there; ansible-runner is on PATH; no device."""
    key = tmp_path / "ssh/executors_ed25519"
    key.parent.mkdir()
    key.write_text("PRIVATE\n")
    key.with_suffix(".pub").write_text("ssh-ed25519 AAAA lab-executors\n")
    _fake_site(tmp_path / "site")
    nd = NodeDir(tmp_path / "executors/exec1", "exec1")
    config = {"name": "exec1", "machine": "lab-x-exec1", "hw": False, "repo": None,
              "bind_ro": [[str(tmp_path / "site"), runner.MOUNT]]}
    prepare_executor(nd, f"{NET}.201", "ssh-ed25519 CCCC controller\n", key, f"{NET}.1 ssh-ed25519 NODE1\n",
                     runner.files(tmp_path / "site", "3.13"), config)
    up = nd.upper
    assert (up / "root/.ssh/authorized_keys").read_text() == "ssh-ed25519 CCCC controller\n"
    assert (up / "root/.ssh/lab_nodes").read_text() == "PRIVATE\n"
    assert stat.S_IMODE((up / "root/.ssh/lab_nodes").stat().st_mode) == 0o600
    assert (up / "root/.ssh/lab_known_hosts").read_text() == f"{NET}.1 ssh-ed25519 NODE1\n"
    assert os.access(up / "usr/local/bin/ansible-runner", os.X_OK)
    assert (up / "usr/local/lib/python3.13/dist-packages/lab-runner.pth").read_text() == "/opt/lab-runner\n"
    assert f"ListenAddress {NET}.201" in (up / "etc/ssh/sshd_config.d/lab.conf").read_text()
    assert (up / "etc/hostname").read_text() == "exec1\n"
    assert not nd.hw.exists() and not (up / "home/pi").exists() and not (up / "etc/apt/sources.list.d").exists()
    cmd = nspawn_command(nd, json.loads(nd.config.read_text()))
    assert not any("/lab/hw" in w for w in cmd)
    assert f"--bind-ro={tmp_path / 'site'}:/opt/lab-runner" in cmd and "--hostname=exec1" in cmd


def _fleet_with_meta(tmp_path: Path, nodes: int, executors: int) -> Fleet:
    fleet = Fleet(root=tmp_path / "fleet", cache=tmp_path / "cache", net=NET)
    fleet.root.mkdir(parents=True)
    meta = {"id": "abcd1234", "nodes": [f"node{i}" for i in range(1, nodes + 1)],
            "executors": [f"exec{j}" for j in range(1, executors + 1)], "net": NET, "time_scale": 1.0,
            "inventory": str(tmp_path / "virtual.yml")}
    fleet.meta_file.write_text(json.dumps(meta))
    return fleet


def test_fleet_knows_its_executors_without_booting(tmp_path, capsys, monkeypatch):
    fleet = _fleet_with_meta(tmp_path, 4, 2)
    assert fleet.executors() == {"exec1": f"{NET}.201", "exec2": f"{NET}.202"}
    assert [fleet.executor_of(f"node{i}") for i in (1, 2, 3, 4)] == ["exec1", "exec2", "exec1", "exec2"]
    assert fleet.executor_of("exec1") is None
    assert fleet.power("exec2", "status") == "off"
    statuses = fleet.status()
    assert [(s.name, s.role, s.address, s.state) for s in statuses][-2:] == [
        ("exec1", "executor", f"{NET}.201", "down"), ("exec2", "executor", f"{NET}.202", "down")]
    monkeypatch.setenv("LAB_FLEET_DIR", str(fleet.root))
    monkeypatch.setenv("LAB_FLEET_NET", NET)
    code, out, _ = run(capsys, "fleet", "status", "--json")
    doc = json.loads(out)
    assert code == 0 and [n["name"] for n in doc["nodes"]] == ["node1", "node2", "node3", "node4"]
    assert [e["name"] for e in doc["executors"]] == ["exec1", "exec2"]
    code, out, _ = run(capsys, "fleet", "status")
    assert "exec1    127.77.9.201    down     -  (execution node)" in out
    code, _, err = run(capsys, "fleet", "power", "exec9", "off")
    assert code == 2 and "no node 'exec9'" in err and "exec1, exec2" in err and "Traceback" not in err


def test_fleet_without_executors_has_none(tmp_path):
    fleet = _fleet_with_meta(tmp_path, 2, 0)
    assert fleet.executors() == {} and fleet.executor_of("node1") is None
    assert [s.role for s in fleet.status()] == ["node", "node"]


def test_known_hosts_lists_nodes_then_executors(tmp_path):
    fleet = _fleet_with_meta(tmp_path, 2, 1)
    for nd in (fleet.node("node1"), fleet.node("node2"), fleet.executor("exec1")):
        nd.host_pubkey.parent.mkdir(parents=True)
        nd.host_pubkey.write_text(f"ssh-ed25519 KEY-{nd.name} root@{nd.name}\n")
    fleet.root.joinpath("ssh").mkdir()
    fleet._write_known_hosts(["node1", "node2"])
    assert fleet.known_hosts.read_text().splitlines() == [
        f"{NET}.1 ssh-ed25519 KEY-node1", f"{NET}.2 ssh-ed25519 KEY-node2", f"{NET}.201 ssh-ed25519 KEY-exec1"]
    assert fleet._node_host_keys(["node1", "node2"]).splitlines() == fleet.known_hosts.read_text().splitlines()[:2]


@pytest.mark.parametrize("argv, message", [
    (("--nodes", "2", "--executors", "51"), "cannot run 51 execution nodes"),
    (("--nodes", "2", "--executors", "-1"), "cannot run -1 execution nodes"),
    (("--nodes", "201", "--executors", "1"), "cannot run 201 nodes beside execution nodes"),
])
def test_bad_executor_counts_are_one_line_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(Fleet, "check_host", lambda self: None)
    code, _, err = run(capsys, "fleet", "up", *argv)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "fleet").exists()


def test_a_fleet_up_with_other_executors_is_refused(tmp_path, capsys, monkeypatch):
    fleet = _fleet_with_meta(tmp_path, 2, 1)
    monkeypatch.setenv("LAB_FLEET_DIR", str(fleet.root))
    monkeypatch.setenv("LAB_FLEET_NET", NET)
    monkeypatch.setattr(Fleet, "check_host", lambda self: None)
    code, _, err = run(capsys, "fleet", "up", "--nodes", "2", "--executors", "2")
    assert code == 2 and "2 nodes and 1 executors is already up" in err and "--executors" in err


def test_cli_help_names_executors(capsys):
    code, out, _ = run(capsys, "fleet", "up", "--help")
    assert code == 0 and "--executors" in out


@pytest.mark.parametrize("remote", [
    ("hostname",),
    ("sh", "-c", "echo 'a b' \"$HOME\"; ls *"),
    ("printf", "%s\\n", "semi;colon", "back`tick`", "$(id)", "new\nline", ""),
])
def test_ssh_via_quotes_each_hop_for_its_own_shell(tmp_path, remote):
    """What the executor's shell and then the node's shell parse is exactly the argv asked for."""
    import shlex

    from tests.conftest import ssh_via_argv

    fleet = _fleet_with_meta(tmp_path, 3, 2)
    argv = ssh_via_argv(fleet, "node3", shlex.join(remote), user="pi")
    assert argv[0] == "ssh" and argv[-2] == f"root@{NET}.201"  # node3 is exec1's (round robin)
    assert "StrictHostKeyChecking=yes" in argv and f"UserKnownHostsFile={fleet.known_hosts}" in argv
    inner = shlex.split(argv[-1])  # what the executor's shell runs
    assert inner[:3] == ["ssh", "-i", EXECUTOR_NODE_KEY] and inner[-3:-1] == [f"pi@{NET}.3", "--"]
    assert f"UserKnownHostsFile={EXECUTOR_KNOWN_HOSTS}" in inner and "StrictHostKeyChecking=yes" in inner
    assert shlex.split(inner[-1]) == list(remote)  # what the node's shell runs
    assert ssh_via_argv(fleet, "node3", "hostname;", "id -un")[-1].endswith(" -- 'hostname; id -un'")  # as ssh joins
    with pytest.raises(ValueError, match="no execution node"):
        ssh_via_argv(_fleet_with_meta(tmp_path / "plain", 1, 0), "node1", "true")


def test_cpu_ticks_reads_own_and_reaped_children_time():
    from lab.virtual.fleet import cpu_ticks

    line = ("4242 (ansible (play)) S 1 4242 4242 0 -1 4194560 900 0 0 0 "
            "150 30 12 8 20 0 1 0 100 0 0")
    assert cpu_ticks(line) == 150 + 30 + 12 + 8
    assert cpu_ticks("") == 0


def test_cpu_seconds_sums_the_machines_processes(tmp_path, monkeypatch):
    fleet = _fleet_with_meta(tmp_path, 1, 1)
    freezer = tmp_path / "freezer"
    freezer.mkdir()
    (freezer / "cgroup.procs").write_text(f"{os.getpid()}\n999999999\n")  # a process that is gone counts 0
    nd = fleet.executor("exec1")
    nd.root.mkdir(parents=True)
    nd.config.write_text(json.dumps({"freezer": str(freezer)}))
    assert fleet.cpu_seconds("exec1") > 0
    nd.config.write_text(json.dumps({"freezer": None}))
    assert fleet.cpu_seconds("exec1") is None
