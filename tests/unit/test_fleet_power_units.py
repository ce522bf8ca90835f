"""The pure pieces of the virtual fleet's power (issue 14): pdudaemon's config, the inventory's lab_power,
the power epoch, the unit field `warm_reboot_keeps_power` and the emulator's state-reset rule."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from lab.errors import ConfigError, HostSetupError
from lab.virtual import inventory_file, pdu
from lab.virtual.emulator.hailo_emu import hw
from lab.virtual.emulator.hailo_emu.chip import Chip
from lab.virtual.emulator.hailo_emu.clock import FakeClock
from lab.virtual.emulator.hailo_emu.state import HOST_FIELDS, STATE_FILE, Store, boot_state, power_on_state
from lab.virtual.emulator.unit import validate_unit
from lab.virtual.fleet import Fleet
from lab.virtual.supervisor import bump_power_epoch, next_power_epoch

NET = "127.77.172"


def test_config_listens_on_the_fleet_address_with_one_localcmdline_pdu():
    conf = pdu.render_config(NET, "/opt/lab/.venv/bin/python")
    assert conf["daemon"] == {"hostname": f"{NET}.254", "port": 16521, "logging_level": "INFO", "listener": "http"}
    assert list(conf["pdus"]) == ["virtual-fleet"]
    entry = conf["pdus"]["virtual-fleet"]
    assert entry["driver"] == "localcmdline"
    # pdudaemon puts the outlet number at %s and runs the line through a shell
    assert shlex.split(entry["cmd_on"] % 3) == ["/opt/lab/.venv/bin/python", "-m", "lab", "fleet", "power", "node3", "on"]
    assert shlex.split(entry["cmd_off"] % 12) == ["/opt/lab/.venv/bin/python", "-m", "lab", "fleet", "power", "node12",
                                                   "off"]


def test_config_quotes_an_odd_python_path():
    python = "/srv/my lab/100%/py'thon;rm -rf"
    cmd = pdu.render_config(NET, python)["pdus"]["virtual-fleet"]["cmd_on"] % 2
    assert shlex.split(cmd) == [python, "-m", "lab", "fleet", "power", "node2", "on"]


def test_daemon_command_runs_debians_pdudaemon_with_its_own_files(tmp_path):
    argv = pdu.daemon_command(tmp_path / "pdudaemon.conf", tmp_path / "pdudaemon.log")
    assert argv == ["/usr/bin/python3", "/usr/sbin/pdudaemon", "--conf", str(tmp_path / "pdudaemon.conf"),
                    "--logfile", str(tmp_path / "pdudaemon.log"), "--loglevel", "INFO"]
    assert "--journal" not in argv


def test_inventory_lab_power_per_node(tmp_path):
    meta = {"time_scale": 0.02}
    addresses = {"node1": f"{NET}.1", "node2": f"{NET}.2"}
    power = {name: pdu.lab_power_entry(NET, i) for i, name in enumerate(addresses, start=1)}
    inv = inventory_file.render(tmp_path, tmp_path / "key", tmp_path / "kh", meta, addresses, {}, power)
    hosts = inv["virtual"]["hosts"]
    assert hosts["node1"]["lab_power"] == {"driver": "pdudaemon", "daemon": f"{NET}.254:16521",
                                           "pdu": "virtual-fleet", "port": 1}
    assert hosts["node2"]["lab_power"]["port"] == 2
    assert "lab_power" not in inv["virtual"]["vars"]
    without = inventory_file.render(tmp_path, tmp_path / "key", tmp_path / "kh", meta, addresses, {})
    assert all("lab_power" not in hv for hv in without["virtual"]["hosts"].values())


def test_unit_field_warm_reboot_keeps_power():
    assert validate_unit({}).resolved()["warm_reboot_keeps_power"] is False
    assert validate_unit({"warm_reboot_keeps_power": True}).resolved()["warm_reboot_keeps_power"] is True
    for bad in ("yes", 1, "true"):
        with pytest.raises(ValueError, match="warm_reboot_keeps_power"):
            validate_unit({"warm_reboot_keeps_power": bad})


def test_shipped_cold_profile_plants_one_unit_that_needs_cold_power():
    from lab.virtual.profile import load_profile

    units = load_profile(Path(__file__).resolve().parents[2] / "profiles" / "cold.yaml")
    assert {n: bool(u.get("warm_reboot_keeps_power")) for n, u in units.items()} == {"node1": True, "node2": False}


def test_power_epoch_counts_cold_power_ons(tmp_path):
    assert next_power_epoch(None) == 1 and next_power_epoch("7") == 8 and next_power_epoch("junk") == 1
    assert bump_power_epoch(tmp_path) == 1
    assert bump_power_epoch(tmp_path) == 2
    assert (tmp_path / hw.POWER_EPOCH_FILE).read_text() == "2\n"
    paths = hw.Paths({hw.HW_DIR_ENV: str(tmp_path)})
    assert hw.load_power_epoch(paths) == "2"
    assert hw.load_power_epoch(hw.Paths({hw.HW_DIR_ENV: str(tmp_path / "none")})) is None


def _bricked(epoch: str) -> dict:
    s = power_on_state(10.0)
    s.update(power_epoch=epoch, bricked=True, firmware=None, cma_used=7.0, fallback=0.4, modules={"hailo1x_pci": "5.3.0"},
             bound="hailo1x_pci", enabled_once=True, probes=3)
    return s


def test_boot_state_default_starts_fresh_at_every_boot():
    s = boot_state(_bricked("4"), False, "4", 20.0)
    assert s["bricked"] is False and s["cma_used"] == 0.0 and s["modules"] == {}


def test_boot_state_keeps_the_chip_through_a_warm_reboot_only():
    carried = _bricked("4")
    warm = boot_state(carried, True, "4", 20.0)
    assert warm["bricked"] is True and warm["cma_used"] == 7.0 and warm["fallback"] == 0.4
    assert warm["boot_id"] == carried["boot_id"]  # the chip itself never restarted
    fresh = power_on_state(0.0)
    assert {k: warm[k] for k in HOST_FIELDS} == {k: fresh[k] for k in HOST_FIELDS}  # the host's side starts over
    cold = boot_state(carried, True, "5", 20.0)
    assert cold["bricked"] is False and cold["cma_used"] == 0.0 and cold["power_epoch"] == "5"
    assert boot_state(carried, True, None, 20.0)["bricked"] is False  # nothing records power: fresh
    assert boot_state(None, True, "4", 20.0)["bricked"] is False
    assert boot_state({**carried, "schema": 0}, True, "4", 20.0)["bricked"] is False


@pytest.mark.parametrize("keeps", [True, False])
def test_store_carries_the_state_across_a_new_run_directory(tmp_path, keeps):
    run, carry = tmp_path / "run", tmp_path / "var-lib"
    store = Store(str(run), str(carry) if keeps else None, "1")
    with store.transaction(1.0) as s:
        s["bricked"] = True
    (run / STATE_FILE).unlink()  # the node rebooted: /run is new
    with Store(str(run), str(carry) if keeps else None, "1").transaction(2.0) as s:
        assert s["bricked"] is keeps
    (run / STATE_FILE).unlink()
    with Store(str(run), str(carry) if keeps else None, "2").transaction(3.0) as s:  # a power cycle
        assert s["bricked"] is False
    assert (carry / "chip-powered.json").exists() is keeps


def test_chip_reads_the_unit_and_the_epoch(tmp_path):
    (tmp_path / "hw").mkdir()
    (tmp_path / "hw" / "unit.json").write_text(json.dumps({"warm_reboot_keeps_power": True}))
    (tmp_path / "hw" / hw.POWER_EPOCH_FILE).write_text("3\n")
    env = {hw.HW_DIR_ENV: str(tmp_path / "hw"), hw.STATE_DIR_ENV: str(tmp_path / "run"),
           hw.CARRY_DIR_ENV: str(tmp_path / "carry")}
    chip = Chip(hw.Paths(env), clock=FakeClock(1.0))
    assert (chip.store.carry_dir, chip.store.epoch) == (str(tmp_path / "carry"), "3")
    (tmp_path / "hw" / "unit.json").write_text("{}")
    chip = Chip(hw.Paths(env), clock=FakeClock(1.0))
    assert (chip.store.carry_dir, chip.store.epoch) == (None, None)


def test_fleet_up_without_pdudaemon_fails_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(pdu, "PDUDAEMON", tmp_path / "no-pdudaemon")
    monkeypatch.setattr(Fleet, "check_host", lambda self: None)
    fleet = Fleet(root=tmp_path / "fleet", cache=tmp_path / "cache", net=NET)
    with pytest.raises(HostSetupError) as err:
        fleet.up(nodes=2, inventory=tmp_path / "inventory" / "virtual.yml")
    assert err.value.exit_code == 2 and "pdudaemon is not installed" in str(err.value)
    assert "apt-get install pdudaemon" in err.value.hint
    assert sorted(os.listdir(tmp_path)) == []


def test_fleet_power_refuses_bad_input(tmp_path):
    fleet = Fleet(root=tmp_path / "fleet", net=NET)
    with pytest.raises(ConfigError, match="no virtual fleet is up"):
        fleet.power("node1", "off")
    (tmp_path / "fleet").mkdir()
    (tmp_path / "fleet" / "fleet.json").write_text(json.dumps({"nodes": ["node1"], "net": NET}))
    with pytest.raises(ConfigError, match="no node 'node9'"):
        fleet.power("node9", "off")
    with pytest.raises(ConfigError, match="unknown power action 'cycle'"):
        fleet.power("node1", "cycle")
    assert fleet.power("node1", "status") == "off"  # no supervisor: no power
    assert fleet.power("node1", "off") == "node1 power off"


def test_pdudaemon_pid_is_only_ever_ours(tmp_path):
    assert not pdu.is_ours(os.getpid(), tmp_path)  # a stranger's PID is never signalled
    assert not pdu.is_ours(None, tmp_path)
    (tmp_path / pdu.CONF_FILE).write_text("{}")
    (tmp_path / pdu.LOG_FILE).write_text("")
    pdu.stop(os.getpid(), tmp_path)  # not ours: only its files go
    assert list(tmp_path.iterdir()) == []
