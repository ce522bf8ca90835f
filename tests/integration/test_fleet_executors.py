"""The virtual fleet's execution nodes (issue 15): `lab fleet up --nodes 2 --executors 1` boots exec1 beside
the nodes, with the controller's ansible-runner and ansible-core and the only key the nodes accept."""

from __future__ import annotations

import json
import subprocess
import textwrap

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


@pytest.fixture(scope="module")
def efleet(tmp_path_factory):
    """Two nodes and one execution node (time scale 0.02); down and checked for leftovers afterwards."""
    require_fleet()
    base = tmp_path_factory.mktemp("executors")
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    prefix = None
    try:
        fleet.up(nodes=2, executors=1, inventory=inventory, time_scale=0.02)
        prefix = f"lab-{fleet.meta()['id']}-"
        fleet.inventory = inventory
        fleet.base = base
        yield fleet
    finally:
        names = fleet.down()
        if prefix:  # the executor too: no mount, process (its machine is lab-<id>-exec1) or file left
            assert names == ["node1", "node2", "exec1"]
            assert fleet_leftovers(fleet, prefix) == []
        assert not inventory.exists()


def test_executor_answers_the_controller_with_strict_host_keys(efleet, tmp_path):
    out = ssh_cmd(efleet, EXEC1, "hostname; id -un; test ! -e /lab/hw && echo no-device")
    assert (out.returncode, out.stdout.split()) == (0, ["exec1", "root", "no-device"]), out.stderr
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
    for i in (1, 2):
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
    rack = doc["virtual"]["children"]["rack1"]
    assert rack["vars"] == {"lab_executor": "exec1"} and list(rack["hosts"]) == ["node1", "node2"]
    node_vars = doc["virtual"]["vars"]
    out = ssh_cmd(efleet, EXEC1, "test", "-f", node_vars["ansible_ssh_private_key_file"])
    assert out.returncode == 0
    known = node_vars["ansible_ssh_common_args"].split("UserKnownHostsFile=")[1].split()[0]
    out = ssh_cmd(efleet, EXEC1, "cat", known)
    assert [line.split()[0] for line in out.stdout.splitlines()] == [f"{NET}.1", f"{NET}.2"]


def test_a_phase_streams_through_the_executor_with_the_fleets_inventory(efleet, tmp_path):
    """The fleet's own inventory, as written, drives a real `ansible-runner worker` on exec1 over ssh."""
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
    worker = ssh_argv(efleet, EXEC1, "ansible-runner", "worker", "--private-data-dir", "/var/tmp/lab-runner/test-1",
                      "--delete", "--keepalive-seconds", "5", timeout=30)
    result = run_playbook_streamed(playbook, efleet.inventory, worker, limit="node1,node2", timeout=300,
                                   idle_timeout=60, where="executor exec1")
    assert result.status == "successful", {h: r.messages for h, r in result.hosts.items()}
    assert {h: r.facts.get("seen_as") for h, r in result.hosts.items()} == {"node1": "node1", "node2": "node2"}


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
    assert [(n["name"], n["state"]) for n in doc["nodes"]] == [("node1", "running"), ("node2", "running")]
    assert [(e["name"], e["state"], e["role"]) for e in doc["executors"]] == [("exec1", "down", "executor")]
    assert ssh_cmd(efleet, EXEC1, "true").returncode == 255
    assert efleet.fault("exec1", "up") == "exec1 is up"
    out = ssh_cmd(efleet, EXEC1, "ansible-runner", "worker", "--worker-info", timeout=30)
    assert out.returncode == 0, out.stderr
    assert ssh_via(efleet, "node2", "hostname", timeout=10).stdout.strip() == "node2"

