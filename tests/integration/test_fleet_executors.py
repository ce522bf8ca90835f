"""The virtual fleet's execution nodes (issue 15): `lab fleet up --nodes 4 --executors 2` boots exec1 and exec2
beside the nodes, with the controller's ansible-runner and ansible-core and the only key the nodes accept."""

from __future__ import annotations

import json
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from lab.ansible import check_worker, controller_runner_version, run_playbook_streamed
from lab.cli import main
from lab.errors import PlaybookError
from lab.virtual.fleet import Fleet
from tests.conftest import fleet_leftovers, require_fleet, ssh_argv, ssh_cmd, ssh_via, without_ansible_runner

pytestmark = pytest.mark.fleet
NET = "127.77.181"
EXEC1 = f"{NET}.201"
EXEC2 = f"{NET}.202"
NODES = ("node1", "node2", "node3", "node4")
RACKS = {"exec1": ["node1", "node3"], "exec2": ["node2", "node4"]}  # round robin


@pytest.fixture(scope="module")
def efleet(tmp_path_factory):
    """Four nodes and two execution nodes (time scale 0.02); down and checked for leftovers afterwards."""
    require_fleet()
    base = tmp_path_factory.mktemp("executors")
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    prefix = None
    try:
        fleet.up(nodes=4, executors=2, inventory=inventory, time_scale=0.02)
        prefix = f"lab-{fleet.meta()['id']}-"
        fleet.inventory = inventory
        fleet.base = base
        yield fleet
    finally:
        names = fleet.down()
        if prefix:  # the executor too: no mount, process (its machine is lab-<id>-exec1) or file left
            assert names == [*NODES, "exec1", "exec2"]
            assert fleet_leftovers(fleet, prefix) == []
        assert not inventory.exists()


def test_executor_answers_the_controller_with_strict_host_keys(efleet, tmp_path):
    for name, address in (("exec1", EXEC1), ("exec2", EXEC2)):
        out = ssh_cmd(efleet, address, "hostname; id -un; test ! -e /lab/hw && echo no-device")
        assert (out.returncode, out.stdout.split()) == (0, [name, "root", "no-device"]), out.stderr
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    out = subprocess.run(ssh_argv(efleet, EXEC1, "true", known_hosts=empty), capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=30)
    assert out.returncode == 255 and "Host key verification failed" in out.stderr


def test_executor_runs_the_controllers_ansible_runner(efleet):
    """`ansible-runner worker --worker-info` over ssh: the controller's version, so check_worker accepts it."""
    out = ssh_cmd(efleet, EXEC1, "ansible-runner", "worker", "--worker-info", timeout=30)
    assert out.returncode == 0, out.stderr
    assert str(yaml.safe_load(out.stdout)["runner_version"]) == controller_runner_version()
    version = check_worker(ssh_argv(efleet, EXEC1, "ansible-runner", timeout=30), "executor exec1")
    assert version.split(".")[:2] == controller_runner_version().split(".")[:2]
    import ansible.release

    out = ssh_cmd(efleet, EXEC1, "ansible-playbook --version", timeout=30)
    assert out.returncode == 0 and f"[core {ansible.release.__version__}]" in out.stdout, out.stdout + out.stderr


def test_executor_reaches_its_nodes_and_the_controller_does_not(efleet):
    """Only the executor's key opens the nodes (root and pi), with host keys checked on the executor."""
    assert {n: efleet.executor_of(n) for n in NODES} == {n: e for e, nodes in RACKS.items() for n in nodes}
    for i in (1, 2, 3, 4):
        for user in ("root", "pi"):
            out = ssh_via(efleet, f"node{i}", "hostname; id -un", user=user, timeout=10)
            assert (out.returncode, out.stdout.split()) == (0, [f"node{i}", user]), out.stderr
        out = ssh_cmd(efleet, f"{NET}.{i}", "true")  # the controller's own key, the nodes' host keys known
        assert out.returncode == 255 and "Permission denied (publickey)" in out.stderr, out.stderr
    out = ssh_cmd(efleet, EXEC1, "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -i /root/.ssh/lab_nodes "
                                 f"-o UserKnownHostsFile=/dev/null root@{NET}.1 true")
    assert out.returncode == 255 and "Host key verification failed" in out.stderr  # strict checking on the executor


def test_inventory_follows_the_contract(efleet):
    doc = yaml.safe_load(efleet.inventory.read_text())["all"]["children"]
    ex = doc["lab_executors"]["hosts"]["exec1"]
    assert ex["ansible_host"] == EXEC1 and ex["ansible_user"] == "root" and ex["lab_runner"] == "ansible-runner"
    assert ex["ansible_ssh_private_key_file"] == str(efleet.key_file)
    assert ex["ansible_ssh_common_args"] == f"-o UserKnownHostsFile={efleet.known_hosts} -o StrictHostKeyChecking=yes"
    assert list(doc["lab_executors"]["hosts"]) == ["exec1", "exec2"]
    assert doc["lab_executors"]["hosts"]["exec2"]["ansible_host"] == EXEC2
    for k, (executor, nodes) in enumerate(RACKS.items(), start=1):
        rack = doc["virtual"]["children"][f"rack{k}"]
        assert rack["vars"] == {"lab_executor": executor} and list(rack["hosts"]) == nodes
    node_vars = doc["virtual"]["vars"]
    out = ssh_cmd(efleet, EXEC1, "test", "-f", node_vars["ansible_ssh_private_key_file"])
    assert out.returncode == 0
    known = node_vars["ansible_ssh_common_args"].split("UserKnownHostsFile=")[1].split()[0]
    out = ssh_cmd(efleet, EXEC2, "cat", known)
    assert [line.split()[0] for line in out.stdout.splitlines()] == [f"{NET}.{i}" for i in (1, 2, 3, 4)]


def test_a_phase_streams_through_each_executor_with_the_fleets_inventory(efleet, tmp_path):
    """The fleet's own inventory, as written, drives a real `ansible-runner worker` on each executor over ssh,
    both at once (one per rack, as the controller's adapter runs them)."""
    playbook = tmp_path / "where.yml"
    playbook.write_text(textwrap.dedent("""\
        - hosts: all
          gather_facts: false
          tasks:
            - ansible.builtin.command: hostname
              register: name
              changed_when: false
            - ansible.builtin.set_fact:
                seen_as: "{{ name.stdout }}"
    """))

    def through(executor: str):
        worker = ssh_argv(efleet, efleet.executors()[executor], "ansible-runner", "worker", "--private-data-dir",
                          f"/var/tmp/lab-runner/test-{executor}", "--delete", "--keepalive-seconds", "5", timeout=30)
        return run_playbook_streamed(playbook, efleet.inventory, worker, limit=",".join(RACKS[executor]),
                                     timeout=300, idle_timeout=60, where=f"executor {executor}")

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(RACKS, pool.map(through, RACKS)))
    for executor, result in results.items():
        assert result.status == "successful", {h: r.messages for h, r in result.hosts.items()}
        assert {h: r.facts.get("seen_as") for h, r in result.hosts.items()} == {n: n for n in RACKS[executor]}


def test_executor_without_ansible_runner_is_refused(efleet):
    """A test makes an executor lack its worker (without_ansible_runner); check_worker names it in one line."""
    with without_ansible_runner(efleet, "exec1"):
        with pytest.raises(PlaybookError) as err:
            check_worker(ssh_argv(efleet, EXEC1, "ansible-runner", timeout=30), "executor exec1")
        assert "executor exec1: no ansible-runner worker answered (exit 127" in str(err.value)
        assert "\n" not in str(err.value)
    assert check_worker(ssh_argv(efleet, EXEC1, "ansible-runner", timeout=30), "executor exec1")


def test_power_cut_kills_the_executor_and_leaves_the_nodes(efleet, capsys, monkeypatch):
    """`lab fleet power exec1 off` kills it at once (an executor lost mid-phase); the nodes run on; on again."""
    monkeypatch.setenv("LAB_FLEET_DIR", str(efleet.root))
    monkeypatch.setenv("LAB_FLEET_NET", NET)
    sleeper = subprocess.Popen(ssh_argv(efleet, EXEC1, "sleep 300", timeout=10), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert main(["fleet", "power", "exec1", "off"]) == 0
        assert sleeper.wait(timeout=30) == 255  # the session on the executor died with it
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    capsys.readouterr()
    assert main(["fleet", "status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(n["name"], n["state"]) for n in doc["nodes"]] == [(n, "running") for n in NODES]
    assert [(e["name"], e["state"], e["role"]) for e in doc["executors"]] == [
        ("exec1", "down", "executor"), ("exec2", "running", "executor")]
    assert ssh_via(efleet, "node2", "hostname", timeout=10).stdout.strip() == "node2"  # exec2's rack goes on
    assert ssh_cmd(efleet, EXEC1, "true").returncode == 255
    assert efleet.fault("exec1", "up") == "exec1 is up"
    out = ssh_cmd(efleet, EXEC1, "ansible-runner", "worker", "--worker-info", timeout=30)
    assert out.returncode == 0, out.stderr
    assert ssh_via(efleet, "node3", "hostname", timeout=10).stdout.strip() == "node3"

