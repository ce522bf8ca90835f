"""The driver shim, the kernel-log sinks, the unit schema, time scaling and two processes sharing a chip."""

from __future__ import annotations

import ast
import io
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from lab.virtual.emulator import nodevars, packages
from lab.virtual.emulator.hailo_emu import hw, klog, shims
from lab.virtual.emulator.hailo_emu.clock import Clock
from lab.virtual.emulator.sandbox import Sandbox
from lab.virtual.emulator.unit import validate_unit


def test_journal_entries_are_kernel_lines(tmp_path):
    path = str(tmp_path / "journal.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        klog.KernelLog(str(tmp_path / "run"), path).emit(["hailo1x 0001:01:00.0: Firmware load failed"], klog.ERR)
        fields = dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())
    assert fields == {
        "MESSAGE": "hailo1x 0001:01:00.0: Firmware load failed",
        "PRIORITY": "3",
        "SYSLOG_FACILITY": "0",
        "SYSLOG_IDENTIFIER": "kernel",
    }


def test_no_journal_is_fine(tmp_path):
    log = klog.KernelLog(str(tmp_path / "run"), str(tmp_path / "absent.sock"))
    log.emit(["hailo1x: Exit module."])
    assert log.read().rstrip().endswith("] hailo1x: Exit module.")


def test_modinfo_reports_installed_and_loaded_versions(tmp_path):
    sb = Sandbox(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert shims.modinfo_main(["hailo1x_pci"], "hailo1x_pci", "5.3.0", chip=sb.chip, out=out, err=err) == 0
    assert "srcversion:     91195A5A35A8DAAA5717B7D\n" in out.getvalue()
    out = io.StringIO()
    assert shims.modinfo_main(["-F", "version", "hailo1x_pci"], "hailo1x_pci", "5.3.0", chip=sb.chip, out=out) == 0
    assert out.getvalue() == "5.3.0\n"
    assert shims.modinfo_main(["--loaded", "hailo1x_pci"], "hailo1x_pci", "5.3.0", chip=sb.chip, err=err) == 1
    sb.modprobe()
    out = io.StringIO()
    shims.modinfo_main(["--loaded", "-F", "version", "hailo1x_pci"], "hailo1x_pci", "5.3.1", chip=sb.chip, out=out)
    assert out.getvalue() == "5.3.0\n"  # the module on disk is 5.3.1, the loaded one still 5.3.0
    assert shims.modinfo_main(["hailo_pci"], "hailo1x_pci", "5.3.0", chip=sb.chip, err=err) == 1
    assert "modinfo: ERROR: Module hailo_pci not found." in err.getvalue()


def test_modprobe_is_idempotent_and_unload_of_an_absent_module_is_quiet(tmp_path):
    sb = Sandbox(tmp_path)
    assert sb.modprobe(remove=True).rc == 0
    sb.modprobe()
    lines = len(sb.kernel_log().splitlines())
    assert sb.modprobe().rc == 0 and len(sb.kernel_log().splitlines()) == lines


def test_unload_is_refused_while_the_device_is_in_use(tmp_path):
    sb = Sandbox(tmp_path)
    sb.modprobe()
    handle = sb.chip.store.claim_device()
    try:
        r = sb.modprobe(remove=True)
        assert r.rc == 1 and r.err == "modprobe: FATAL: Module hailo1x_pci is in use.\n"
    finally:
        os.close(handle)
    assert sb.modprobe(remove=True).rc == 0


def test_missing_firmware_fails_the_probe(tmp_path):
    sb = Sandbox(tmp_path, unit={"board_sku": 9})  # the driver package ships DTBs for SKU 6 and 7
    sb.modprobe()
    assert not sb.dev_node_exists()
    assert "Direct firmware load for hailo/hailo10h/u-boot-9.dtb.signed failed with error -2" in sb.kernel_log()


def test_pcie_remove_twice_fails(tmp_path):
    sb = Sandbox(tmp_path)
    sb.modprobe()
    assert sb.pcie("remove").rc == 0
    assert sb.pcie("remove").rc == 1
    assert sb.hailortcli("scan").rc == 64
    assert sb.pcie("rescan").rc == 0 and sb.hailortcli("scan").rc == 0


def test_unit_defaults_and_validation():
    unit = hw.unit_with_defaults({"node": "node3"})
    assert unit["chip"] == "hailo10h" and unit["cma_leak"] == 1.0 and unit["board_sku"] == 6
    other = hw.unit_with_defaults({"node": "node4"})
    assert unit["serial"] == "" and len(unit["soc_id"]) == 64 and len(unit["ult_id"]) == 24  # an AI HAT+ 2
    assert unit["soc_id"] != other["soc_id"] and unit["pi_serial"] != other["pi_serial"]
    moved = hw.unit_with_defaults({"node": "node4", "hat": "node3"})  # node3's HAT in node4's Pi
    assert (moved["soc_id"], moved["ult_id"]) == (unit["soc_id"], unit["ult_id"])
    assert (moved["pi_serial"], moved["pi_model"]) == (other["pi_serial"], "Raspberry Pi 5 Model B Rev 1.0")
    assert len(unit["pi_serial"]) == 16 and unit["pi_serial"] == unit["pi_serial"].lower()
    module = validate_unit({"chip": "hailo8", "serial": "HLLWM2B219500117", "product_name": "HAILO-8 M.2"}).resolved()
    assert module["serial"] == "HLLWM2B219500117" and validate_unit({"chip": "hailo8"}).resolved()["product_name"] == ""
    assert validate_unit({"soc_id": "", "ult_id": ""}).resolved()["soc_id"] == ""  # a chip that reports none
    for bad in ({"chip": "hailo9"}, {"cma_leak": -1}, {"colour": "red"}, {"pci_address": "1:0"},
                {"pi_serial": "XYZ"}, {"soc_id": "12"}, {"serial": "<N/A>"}):
        with pytest.raises(ValueError):
            validate_unit(bad)


def test_idle_time_scaling():
    clock = Clock(0.02)
    assert clock.idle_nominal(0.1) == pytest.approx(0.1)  # process start-up counts 1:1
    assert clock.idle_nominal(4.8) == pytest.approx(0.25 + 4.55 / 0.02)
    assert Clock(1.0).idle_nominal(240) == pytest.approx(240)
    assert Clock(0.0).idle_nominal(5) == pytest.approx(0.25)


def test_slow_process_start_up_is_not_idle_time():
    """A first operation after another process's: this process's own start-up counts 1:1, however long."""
    clock = Clock(0.01, started=100.0)
    # previous operation at 99.0 (another process); this one started at 100.0 and reached the chip at 100.6
    assert clock.idle_nominal(1.6, end=100.6) == pytest.approx(0.6 + 0.25 + 0.75 / 0.01)
    # an operation after this process's own earlier one: the whole gap is idle time as before
    assert clock.idle_nominal(1.6, end=102.0) == pytest.approx(0.25 + 1.35 / 0.01)
    # start-up counts 1:1 only up to STARTUP_MAX_S (a process that waited before its first operation)
    assert clock.idle_nominal(10.0, end=108.0) == pytest.approx(2.0 + 0.25 + 7.75 / 0.01)


def test_time_scale_is_read_from_the_fleet(tmp_path):
    (tmp_path / "fleet.json").write_text(json.dumps({"time_scale": 0.02, "fleet": "x"}))
    assert hw.load_time_scale(hw.Paths({hw.HW_DIR_ENV: str(tmp_path)})) == 0.02
    assert hw.load_time_scale(hw.Paths({hw.HW_DIR_ENV: str(tmp_path / "none")})) == 1.0


def _python(sb: Sandbox, code: str) -> subprocess.Popen:
    """A separate process using the emulator with the sandbox's environment."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, **sb.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_second_process_gets_out_of_physical_devices(tmp_path):
    sb = Sandbox(tmp_path, time_scale=0.01, fake_clock=False)
    sb.modprobe()
    hef = sb.hef("yolo26s_hailo10h.hef")
    first = _python(
        sb,
        "import sys; from lab.virtual.emulator.hailo_emu.cli import main; "
        f"sys.exit(main(['benchmark', '-t', '60', {hef!r}], '5.3.0'))",
    )
    try:
        deadline = time.monotonic() + 20
        while not sb.state().get("active") and time.monotonic() < deadline:
            time.sleep(0.02)
        second = sb.hailortcli("benchmark", hef)
    finally:
        out, err = first.communicate(timeout=60)
    assert second.rc == 74
    assert second.err.splitlines() == [
        "[HailoRT] [error] Failed to create vdevice. there are not enough free devices. requested: 1, found: 0",
        "[HailoRT] [error] CHECK_SUCCESS failed with status=HAILO_OUT_OF_PHYSICAL_DEVICES(74)",
        "[HailoRT CLI] [error] CHECK_SUCCESS failed with status=HAILO_OUT_OF_PHYSICAL_DEVICES(74)",
    ]
    assert first.returncode == 0 and "yolo26s: FPS: 124." in out
    assert sb.benchmark(seconds=1).rc == 0  # free again


def test_two_processes_never_lose_an_update(tmp_path):
    sb = Sandbox(tmp_path, time_scale=0.0, fake_clock=False)
    sb.modprobe()
    code = (
        "from lab.virtual.emulator.hailo_emu.chip import Chip\nc = Chip()\n" "for _ in range(60):\n    c.configure()\n"
    )
    procs = [_python(sb, code) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read()
    assert sb.state()["configures"] == 120


def test_node_side_is_stdlib_python39_with_relative_imports():
    for path in sorted(packages.EMU_SOURCE.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
        assert ast.get_docstring(tree), f"{path.name}: module docstring"
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert (
                    node.module == "__future__" or node.module.split(".")[0] in sys.stdlib_module_names
                ), f"{path.name}: from {node.module} import"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] in sys.stdlib_module_names, f"{path.name}: import {alias.name}"
            elif isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
                assert ast.get_docstring(node) or node.name.startswith("__"), f"{path.name}: {node.name} docstring"


def test_inventory_variables_name_the_chips_module():
    assert (
        nodevars.virtual_node_vars("hailo8", 0.02)["lab_driver_version_cmd"] == "hailo-emu-modinfo -F version hailo_pci"
    )
    assert nodevars.virtual_node_vars()["lab_time_scale"] == 1.0
    real = nodevars.real_pi_vars()
    assert real["lab_kernel_log_cmd"] == "dmesg" and real["lab_sysfs_root"] == "/sys"
    assert "lab_pcie_remove_cmd" not in real  # the agent finds the device by its PCI IDs, no fixed address


def test_a_broken_unit_file_is_reported_not_a_traceback(tmp_path, monkeypatch):
    from lab.virtual.emulator.hailo_emu.cli import main

    sb = Sandbox(tmp_path)
    (tmp_path / "hw" / "unit.json").write_text('{"chip": "hailo9"}')
    for key, value in sb.env.items():
        monkeypatch.setenv(key, value)
    err = io.StringIO()
    assert main(["scan"], "5.3.0", out=io.StringIO(), err=err) == 8
    assert "unknown chip 'hailo9'" in err.getvalue()
