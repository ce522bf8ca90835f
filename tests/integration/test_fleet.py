"""The virtual fleet end to end: real nspawn nodes, real sshd, real ansible-runner, real faults."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from lab.ansible import run_playbook
from lab.cli import main
from tests.conftest import TEST_NET, port_free, ssh_cmd

pytestmark = pytest.mark.fleet


def boot_id(fleet, address):
    out = ssh_cmd(fleet, address, "cat", "/proc/sys/kernel/random/boot_id")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_up_returns_when_the_login_user_can_log_in(fleet3):
    """`fleet up` waits past pam_nologin ("System is booting up"): the inventory's user logs in at once."""
    for i in (1, 2, 3):
        out = subprocess.run(["ssh", "-i", str(fleet3.key_file), "-o", f"UserKnownHostsFile={fleet3.known_hosts}",
                              "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no",
                              f"pi@{TEST_NET}.{i}", "id", "-un"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        assert (out.returncode, out.stdout.strip()) == (0, "pi"), out.stderr
    # PID 1 failing to spawn systemd-user-sessions after a reboot would leave /run/nologin: it is retried
    show = ssh_cmd(fleet3, f"{TEST_NET}.1", "systemctl show -p Restart --value systemd-user-sessions.service")
    assert (show.returncode, show.stdout.strip()) == (0, "on-failure"), show.stderr


def test_inventory_and_host_keys(fleet3):
    """The inventory names every node with its address, key and known_hosts; host keys are verified."""
    text = fleet3.inventory.read_text()
    for i in (1, 2, 3):
        assert f"ansible_host: {TEST_NET}.{i}" in text
    assert "StrictHostKeyChecking=yes" in text and "StrictHostKeyChecking=no" not in text
    assert "lab_time_scale: 0.02" in text
    known = fleet3.known_hosts.read_text().splitlines()
    assert [line.split()[0] for line in known] == [f"{TEST_NET}.{i}" for i in (1, 2, 3)]
    out = ssh_cmd(fleet3, f"{TEST_NET}.2", "hostname; cat /etc/machine-id; sshd -T | grep -i ^listenaddress")
    assert out.returncode == 0, out.stderr
    hostname, machine_id, *listen = out.stdout.splitlines()
    assert hostname == "node2" and len(machine_id) == 32
    assert listen == [f"listenaddress {TEST_NET}.2:22"]  # its own loopback address only


def test_ping_and_reboot_through_ansible_runner(fleet3):
    """The stock reboot module reboots every node: new boot_id, installed files kept, /run emptied."""
    before = {i: boot_id(fleet3, f"{TEST_NET}.{i}") for i in (1, 2, 3)}
    for i in (1, 2, 3):
        out = ssh_cmd(fleet3, f"{TEST_NET}.{i}", "echo kept > /root/marker && touch /run/volatile-marker")
        assert out.returncode == 0, out.stderr
    result = run_playbook("smoke.yml", fleet3.inventory)
    assert result.status == "successful", result.hosts
    assert sorted(result.hosts) == ["node1", "node2", "node3"]
    assert result.failed_hosts == []
    for i in (1, 2, 3):
        address = f"{TEST_NET}.{i}"
        ids = result.hosts[f"node{i}"].facts["lab_boot_ids"]
        assert ids[0] == before[i] and ids[1] != before[i]
        assert boot_id(fleet3, address) == ids[1]
        out = ssh_cmd(fleet3, address, "cat /root/marker; test -e /run/volatile-marker && echo still-there || echo gone")
        assert out.stdout.split() == ["kept", "gone"]


def test_profile_reaches_node_read_only(fleet3):
    """The unit's hardware file is inside the node and cannot be changed from inside."""
    out = ssh_cmd(fleet3, f"{TEST_NET}.1", "cat /lab/hw/unit.json /lab/hw/fleet.json; touch /lab/hw/x 2>&1 || true")
    assert '"node": "node1"' in out.stdout
    assert '"time_scale": 0.02' in out.stdout
    assert "Read-only file system" in out.stdout


def test_status_json(fleet3, monkeypatch, capsys):
    """`lab fleet status --json` gives name, address, state and boot_id of every node."""
    monkeypatch.setenv("LAB_FLEET_DIR", str(fleet3.root))
    monkeypatch.setenv("LAB_FLEET_NET", TEST_NET)
    assert main(["fleet", "status", "--json"]) == 0
    nodes = json.loads(capsys.readouterr().out)["nodes"]
    assert [(n["name"], n["address"], n["state"]) for n in nodes] == [
        (f"node{i}", f"{TEST_NET}.{i}", "running") for i in (1, 2, 3)
    ]
    assert nodes[0]["boot_id"] == boot_id(fleet3, f"{TEST_NET}.1")


def test_freeze_and_thaw(fleet3):
    """A frozen node accepts TCP but answers nothing (SSH hangs); thaw brings it back unchanged."""
    address = f"{TEST_NET}.3"
    before = boot_id(fleet3, address)
    fleet3.fault("node3", "freeze")
    assert [s.state for s in fleet3.status()][2] == "frozen"
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(["ssh", "-i", str(fleet3.key_file), "-o", f"UserKnownHostsFile={fleet3.known_hosts}",
                        "-o", "BatchMode=yes", "-o", "ControlMaster=no", f"root@{address}", "true"],
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=4)
    fleet3.fault("node3", "thaw")
    assert boot_id(fleet3, address) == before
    assert [s.state for s in fleet3.status()][2] == "running"


def test_down_and_up(fleet3):
    """Power off: connections refused; up: the node boots again with a new boot_id and its files."""
    address = f"{TEST_NET}.2"
    ssh_cmd(fleet3, address, "echo survives > /root/power")
    before = boot_id(fleet3, address)
    fleet3.fault("node2", "down")
    assert [s.state for s in fleet3.status()][1] == "down"
    out = ssh_cmd(fleet3, address, "true")
    assert out.returncode == 255 and "Connection refused" in out.stderr
    fleet3.fault("node2", "up")
    assert boot_id(fleet3, address) != before
    assert ssh_cmd(fleet3, address, "cat /root/power").stdout.strip() == "survives"


def test_hang_reboot(fleet3):
    """After hang-reboot, the node's next reboot does not come back until `up`."""
    address = f"{TEST_NET}.1"
    before = boot_id(fleet3, address)
    fleet3.fault("node1", "hang-reboot")
    ssh_cmd(fleet3, address, "systemctl reboot")
    deadline = time.monotonic() + 30
    while not port_free(address) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(5)  # a normal reboot would be back by now
    assert port_free(address)
    status = fleet3.status()[0]
    assert status.state == "down" and "hangs" in status.note
    fleet3.fault("node1", "up")
    assert boot_id(fleet3, address) != before
