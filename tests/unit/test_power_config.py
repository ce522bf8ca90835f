"""lab_power validation: every bad input is one line naming the inventory and the host, exit 2 through `lab power`,
`lab check --inventory` and `lab run`, with nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli import main
from lab.errors import ConfigError
from lab.inventory import Host, Secret, load
from lab.power.base import check_power, driver_for
from lab.power.command import CommandDriver
from lab.power.pdudaemon import PdudaemonDriver
from lab.power.shelly import ShellyDriver
from tests.conftest import PROJECT

GOOD = {
    "pdudaemon": '{driver: pdudaemon, daemon: "127.0.0.1:16421", pdu: rack, port: 2}',
    "command": "{driver: command, 'on': [relay, 'on', '3'], 'off': [relay, 'off', '3']}",
    "shelly": "{driver: shelly, host: 192.0.2.50, password: plug-secret-81}",
}

# (lab_power as YAML, the error line after "lab: error: ") -- {inv} is the inventory's path
BAD = [
    ("{driver: pdu}", "host n1: lab_power has driver 'pdu', which lab does not know, {inv}, "
                      "use one of command, pdudaemon, shelly"),
    ("{pdu: rack, port: 2}", "host n1: lab_power has no driver, {inv}, use one of command, pdudaemon, shelly, e.g. "
                             'lab_power: {driver: pdudaemon, daemon: "127.0.0.1:16421", pdu: rack-pdu, port: 3}'),
    ("rack-2", "host n1: lab_power must be a mapping with a driver, got 'rack-2', {inv}, e.g. lab_power: "
               '{driver: pdudaemon, daemon: "127.0.0.1:16421", pdu: rack-pdu, port: 3}'),
    ("{driver: pdudaemon, daemon: pdu-host, pdu: rack, port: 2}",
     "host n1: lab_power.daemon must be HOST:PORT, got 'pdu-host', {inv}, e.g. daemon: \"127.0.0.1:16421\""),
    ('{driver: pdudaemon, daemon: "pdu-host:http", pdu: rack, port: 2}',
     "host n1: lab_power.daemon must be HOST:PORT with a port from 1 to 65535, got 'pdu-host:http', {inv}, "
     "e.g. daemon: \"127.0.0.1:16421\""),
    ('{driver: pdudaemon, daemon: "pdu-host:99999", pdu: rack, port: 2}',
     "host n1: lab_power.daemon must be HOST:PORT with a port from 1 to 65535, got 'pdu-host:99999', {inv}, "
     "e.g. daemon: \"127.0.0.1:16421\""),
    ('{driver: pdudaemon, daemon: "127.0.0.1:16421", pdu: rack, port: 0}',
     "host n1: lab_power.port must be a positive integer, got 0, {inv}, the outlet's number as the PDU counts them"),
    ('{driver: pdudaemon, daemon: "127.0.0.1:16421", pdu: rack, port: two}',
     "host n1: lab_power.port must be a positive integer, got 'two', {inv}, "
     "the outlet's number as the PDU counts them"),
    ('{driver: pdudaemon, daemon: "127.0.0.1:16421", pdu: rack}',
     "host n1: lab_power (pdudaemon) has no 'port', {inv}, pdudaemon needs daemon, pdu and port, e.g. lab_power: "
     '{driver: pdudaemon, daemon: "127.0.0.1:16421", pdu: rack-pdu, port: 3}'),
    ('{driver: pdudaemon, daemon: "127.0.0.1:16421", pdu: rack, prot: 2}',
     "host n1: lab_power (pdudaemon) has unknown key 'prot', {inv}, pdudaemon takes daemon, pdu, port, delay, timeout"),
    ('{driver: pdudaemon, daemon: "127.0.0.1:16421", pdu: rack, port: 2, delay: 2.5}',
     "host n1: lab_power.delay must be a whole number of seconds, got 2.5, {inv}, pdudaemon takes whole seconds"),
    ("{driver: command, 'on': relay on 3, 'off': [relay, 'off', '3']}",
     "host n1: lab_power.on must be a list of strings (an argument list, no shell), got 'relay on 3', {inv}, "
     "e.g. [uhubctl, -l, '1-1', -p, '2', -a, 'off']: quote on, off, yes, no and numbers (YAML reads them otherwise)"),
    # YAML 1.1 reads a bare on as true: the item is named
    ("{driver: command, 'on': [relay, on, '3'], 'off': [relay, 'off', '3']}",
     "host n1: lab_power.on must be a list of strings (an argument list, no shell), item 2 is true, {inv}, "
     "e.g. [uhubctl, -l, '1-1', -p, '2', -a, 'off']: quote on, off, yes, no and numbers (YAML reads them otherwise)"),
    ("{driver: command, 'on': [relay, 'on', '3']}",
     "host n1: lab_power (command) has no 'off', {inv}, command needs on and off, e.g. lab_power: "
     "{driver: command, 'on': [relay, 'on', '3'], 'off': [relay, 'off', '3']}"),
    ("{driver: shelly, host: 'plug 7'}",
     "host n1: lab_power.host must be HOST or HOST:PORT, got 'plug 7', {inv}, e.g. host: 192.0.2.50 (or 192.0.2.50:8080)"),
    ("{driver: shelly, host: 192.0.2.50, channel: -1}",
     "host n1: lab_power.channel must be a whole number from 0, got -1, {inv}, a plug has channel 0; a relay 0, 1, ..."),
    ("{driver: shelly, host: 192.0.2.50, delay: 0}",
     "host n1: lab_power.delay must be a number of seconds above 0, got 0, {inv}, e.g. 5 or 2.5"),
]


def inventory(tmp_path: Path, power: str, extra: str = "") -> Path:
    """An inventory with node n1 (the lab_power given) and n2 (a good pdudaemon one)."""
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n"
                    f"    n1: {{ansible_host: 127.77.9.1, lab_power: {power}}}\n"
                    f"    n2: {{ansible_host: 127.77.9.2, lab_power: {GOOD['pdudaemon']}}}\n" + extra)
    return path


@pytest.mark.parametrize("driver, cls", [("pdudaemon", PdudaemonDriver), ("command", CommandDriver),
                                         ("shelly", ShellyDriver)])
def test_good_lab_power_gives_its_driver(tmp_path, driver, cls):
    inv = load(str(inventory(tmp_path, GOOD[driver])))
    check_power(inv)
    assert isinstance(driver_for(inv.hosts["n1"]), cls)


def test_labels_and_defaults(tmp_path):
    inv = load(str(inventory(tmp_path, GOOD["shelly"])))
    shelly = driver_for(inv.hosts["n1"])
    assert shelly.label == "shelly 192.0.2.50 switch 0"
    assert (shelly.config.user, shelly.config.delay, shelly.config.password) == ("admin", 5.0, Secret("plug-secret-81"))
    pdu = driver_for(inv.hosts["n2"])
    assert pdu.label == "pdudaemon 127.0.0.1:16421 rack port 2" and pdu.config.delay == 5


def test_a_host_without_lab_power_has_no_driver():
    assert driver_for(Host("n3", "127.77.9.3", {})) is None


def test_a_password_is_a_secret_wherever_it_is_shown(tmp_path):
    inv = load(str(inventory(tmp_path, GOOD["shelly"])))
    host = inv.hosts["n1"]
    config = driver_for(host).config
    for text in (repr(host), str(host.vars), repr(config), f"{config.password}", str(config.model_dump())):
        assert "plug-secret-81" not in text
    assert config.password.reveal() == "plug-secret-81"


@pytest.mark.parametrize("power, line", BAD)
def test_bad_lab_power_is_one_line(tmp_path, power, line):
    path = inventory(tmp_path, power)
    with pytest.raises(ConfigError) as err:
        check_power(load(str(path)))
    assert str(err.value) == line.replace("{inv}", str(path))
    assert err.value.exit_code == 2


@pytest.mark.parametrize("power, line", BAD[:4] + BAD[11:12])
@pytest.mark.parametrize("command", [["power", "n1", "n2", "on"], ["check"], ["run", "cma_soak"]])
def test_bad_lab_power_exits_2_through_the_cli(tmp_path, capsys, power, line, command):
    path = inventory(tmp_path, power)
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [command[0], *([str(PROJECT / "scenarios" / "cma_soak.yaml")] if command[0] == "run" else command[1:])]
    assert main([*args, "--inventory", str(path)]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "lab: error: " + line.replace("{inv}", str(path)) + "\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written (no database, no file)


def test_a_secret_is_not_shown_in_a_validation_error(tmp_path):
    path = inventory(tmp_path, "{driver: shelly, host: 192.0.2.50, password: plug-secret-81, user: [x]}")
    with pytest.raises(ConfigError) as err:
        check_power(load(str(path)))
    assert "plug-secret-81" not in str(err.value)
    assert str(err.value) == f"host n1: lab_power.user must be a user name, got a list, {path}, Shelly's user is admin"


def test_lab_check_inventory_says_how_many_nodes_have_power(tmp_path, capsys):
    path = inventory(tmp_path, GOOD["command"], extra="    n3: {ansible_host: 127.77.9.3}\n")
    assert main(["check", "cma_soak", "--inventory", str(path)]) == 0
    assert capsys.readouterr() == (f"OK {path} (inventory: 3 hosts, 2 with lab_power)\n"
                                   "OK cma_soak (scenario: cma_soak)\n", "")
