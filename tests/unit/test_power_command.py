"""The `command` power driver with real subprocesses (small scripts in tmp_path), and `lab power`'s exact output."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lab.cli import main
from lab.inventory import Host
from lab.power.base import driver_for, power_nodes
from lab.power.command import CommandDriver
from lab.errors import PowerError


def script(tmp_path: Path, name: str, body: str) -> str:
    """An executable shell script in tmp_path (a stand-in for a relay tool); its path."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


@pytest.fixture()
def relay(tmp_path: Path):
    """A relay tool: `relay PORT on|off` logs `PORT on|off` and keeps the state; `relay PORT status` prints it."""
    tool = script(tmp_path, "relay", 'echo "$1 $2" >> "$(dirname "$0")/relay.log"\n'
                                     'if [ "$2" = status ]; then cat "$(dirname "$0")/state-$1" 2>/dev/null || echo off;'
                                     ' else echo "$2" > "$(dirname "$0")/state-$1"; fi\n')
    return tool


def command_host(name: str, relay: str, port: str, **extra) -> Host:
    power = {"driver": "command", "on": [relay, port, "on"], "off": [relay, port, "off"], **extra}
    return Host(name, "127.77.9.1", {"lab_power": power})


def log(tmp_path: Path) -> list[str]:
    path = tmp_path / "relay.log"
    return path.read_text().splitlines() if path.exists() else []


def test_on_off_status_run_the_commands(tmp_path, relay):
    driver = driver_for(command_host("n1", relay, "3", status=[relay, "3", "status"]))
    assert driver.label == "command relay"
    assert driver.off() == "off command done" and driver.status() == "off"
    assert driver.on() == "on command done" and driver.status() == "on"
    assert log(tmp_path) == ["3 off", "3 status", "3 on", "3 status"]


def test_cycle_is_off_delay_on_without_a_cycle_command(tmp_path, relay):
    driver = driver_for(command_host("n1", relay, "3", delay=0.4))
    start = time.monotonic()
    assert driver.cycle() == "off, 0.4 s, on"
    assert time.monotonic() - start >= 0.4
    assert log(tmp_path) == ["3 off", "3 on"]


def test_cycle_runs_its_own_command(tmp_path, relay):
    driver = driver_for(command_host("n1", relay, "3", cycle=[relay, "3", "cycle"]))
    assert driver.cycle() == "cycle command done"
    assert log(tmp_path) == ["3 cycle"]


def test_no_status_command_is_unknown(tmp_path, relay):
    [result] = power_nodes([command_host("n1", relay, "3")], "status")
    assert result == type(result)("n1", "status", True, "unknown", "command relay: no status command in lab_power")
    assert log(tmp_path) == []


def test_a_failing_command_gives_its_last_line(tmp_path):
    fail = script(tmp_path, "pdu-cli", 'echo "connecting to pdu"\necho "outlet 9: no such outlet" >&2\nexit 4\n')
    driver = driver_for(Host("n1", "x", {"lab_power": {"driver": "command", "on": [fail], "off": [fail]}}))
    with pytest.raises(PowerError) as err:
        driver.off()
    assert str(err.value) == "command pdu-cli: the off command exited 4: outlet 9: no such outlet"


def test_a_status_that_is_neither_on_nor_off(tmp_path):
    odd = script(tmp_path, "odd", "echo maybe\n")
    driver = driver_for(Host("n1", "x", {"lab_power": {"driver": "command", "on": [odd], "off": [odd],
                                                       "status": [odd]}}))
    with pytest.raises(PowerError) as err:
        driver.status()
    assert str(err.value) == "command odd: the status command printed 'maybe', not on or off"


def test_a_missing_program_and_a_hung_one(tmp_path):
    slow = script(tmp_path, "slow", "sleep 5\n")
    driver = driver_for(Host("n1", "x", {"lab_power": {"driver": "command", "on": [str(tmp_path / "nothing")],
                                                       "off": [slow], "timeout": 0.3}}))
    with pytest.raises(PowerError) as err:
        driver.on()
    assert str(err.value) == "command nothing: the on command nothing was not found"
    start = time.monotonic()
    with pytest.raises(PowerError) as err:
        driver.off()
    assert str(err.value) == "command nothing: the off command slow did not finish within 0.3 s"
    assert time.monotonic() - start < 3


def test_arguments_are_never_a_shell_line(tmp_path):
    """An argument with shell syntax reaches the program as one word and runs nothing."""
    echo = script(tmp_path, "echo-args", 'for a in "$@"; do echo "[$a]" >> "$(dirname "$0")/args"; done\n')
    driver = driver_for(Host("n1", "x", {"lab_power": {
        "driver": "command", "on": [echo, "3; touch pwned", "$(touch pwned2)"], "off": [echo]}}))
    assert isinstance(driver, CommandDriver)
    driver.on()
    assert (tmp_path / "args").read_text() == "[3; touch pwned]\n[$(touch pwned2)]\n"
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_nodes_run_in_parallel_and_one_failure_fails_that_node_only(tmp_path, relay):
    slow = script(tmp_path, "slow-relay", f'sleep 1\nexec {relay} "$@"\n')
    broken = script(tmp_path, "broken", "echo 'relay board not found' >&2\nexit 1\n")
    hosts = [command_host("n1", slow, "1"), Host("n2", "x", {"lab_power": {"driver": "command", "on": [broken],
                                                                           "off": [broken]}}),
             command_host("n3", slow, "3")]
    start = time.monotonic()
    results = power_nodes(hosts, "off")
    assert time.monotonic() - start < 1.9  # n1 and n3 slept side by side
    assert [(r.node, r.ok, r.state, r.detail) for r in results] == [
        ("n1", True, "off", "command slow-relay: off command done"),
        ("n2", False, None, "command broken: the off command exited 1: relay board not found"),
        ("n3", True, "off", "command slow-relay: off command done"),
    ]
    assert sorted(log(tmp_path)) == ["1 off", "3 off"]


def test_a_node_past_the_timeout_fails_alone(tmp_path, relay):
    slow = script(tmp_path, "slow", "sleep 3\n")
    hosts = [command_host("n1", relay, "1"), Host("n2", "x", {"lab_power": {"driver": "command", "on": [slow],
                                                                            "off": [slow]}})]
    results = power_nodes(hosts, "on", timeout=1)
    assert [(r.node, r.ok, r.detail) for r in results] == [
        ("n1", True, "command relay: on command done"), ("n2", False, "command slow: no answer within 1 s")]


# --- `lab power` through the CLI's error boundary: exact output -------------------------------------------------
@pytest.fixture()
def inventory(tmp_path: Path, relay: str) -> Path:
    broken = script(tmp_path, "broken", "echo 'relay board not found' >&2\nexit 1\n")
    path = tmp_path / "inv.yml"
    path.write_text(
        "all:\n  hosts:\n"
        f"    n1: {{ansible_host: 127.77.9.1, lab_power: {{driver: command, 'on': [{relay}, '1', 'on'],"
        f" 'off': [{relay}, '1', 'off'], status: [{relay}, '1', status], delay: 0.2}}}}\n"
        f"    n2: {{ansible_host: 127.77.9.2, lab_power: {{driver: command, 'on': [{relay}, '2', 'on'],"
        f" 'off': [{relay}, '2', 'off'], delay: 0.1}}}}\n"
        f"    n3: {{ansible_host: 127.77.9.3, lab_power: {{driver: command, 'on': [{broken}], 'off': [{broken}]}}}}\n"
        "    n4: {ansible_host: 127.77.9.4}\n"
        "  children:\n    rack:\n      hosts: {n1: {}, n2: {}}\n")
    return path


def test_lab_power_prints_one_line_per_node_in_order(capsys, inventory, tmp_path):
    assert main(["power", "n2", "n1", "off", "--inventory", str(inventory)]) == 0
    assert capsys.readouterr() == ("n2: off (command relay: off command done)\n"
                                   "n1: off (command relay: off command done)\n", "")
    assert main(["power", "rack", "status", "--inventory", str(inventory)]) == 0
    assert capsys.readouterr() == ("n1: off (command relay: off)\n"
                                   "n2: unknown (command relay: no status command in lab_power)\n", "")
    assert main(["power", "n1", "n2", "cycle", "-i", str(inventory)]) == 0
    assert capsys.readouterr() == ("n1: on (command relay: off, 0.2 s, on)\n"
                                   "n2: on (command relay: off, 0.1 s, on)\n", "")


def test_lab_power_exits_1_when_a_node_fails(capsys, inventory):
    assert main(["power", "n1", "n3", "on", "--inventory", str(inventory)]) == 1
    assert capsys.readouterr() == ("n1: on (command relay: on command done)\n"
                                   "n3: error: command broken: the on command exited 1: relay board not found\n", "")


def test_lab_power_json_is_a_list_of_results(capsys, inventory):
    assert main(["power", "n1", "n3", "off", "--inventory", str(inventory), "--json"]) == 1
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == [
        {"node": "n1", "action": "off", "ok": True, "state": "off", "detail": "command relay: off command done"},
        {"node": "n3", "action": "off", "ok": False, "state": None,
         "detail": "command broken: the off command exited 1: relay board not found"},
    ]


@pytest.mark.parametrize("args, line", [
    (["n9", "on"], "no node 'n9' in the inventory, {inv}, nodes: n1, n2, n3, n4"),
    (["n1", "n4", "off"], "node n4 has no lab_power, {inv}, add lab_power (driver: pdudaemon, shelly or command) to its "
                          "host or group vars; see README, Wiring a rack's power"),
])
def test_lab_power_bad_input_is_one_line_exit_2_and_touches_no_node(capsys, inventory, tmp_path, args, line):
    assert main(["power", *args, "--inventory", str(inventory)]) == 2
    assert capsys.readouterr() == ("", "lab: error: " + line.replace("{inv}", str(inventory)) + "\n")
    assert log(tmp_path) == []  # n1's relay was not run before n4 was found wanting


def test_lab_power_unknown_action_is_a_usage_error(capsys, inventory):
    assert main(["power", "n1", "reboot", "--inventory", str(inventory)]) == 2
    assert "'reboot' is not one of 'on', 'off', 'cycle', 'status'" in capsys.readouterr().err
