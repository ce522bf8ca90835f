"""The agent's reading of kernel interfaces (lab/agent/kernel.py) against verbatim output, and lab/pi.py's
decoding of the Pi's throttled bits."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab.agent import kernel

KERNEL = Path(__file__).resolve().parent.parent / "fixtures" / "kernel"


@pytest.mark.parametrize("text, want", [
    ("8.0 GT/s PCIe\n", 8.0),  # Linux >= 5.6 (pci_speed_string with the "PCIe" suffix)
    ("5.0 GT/s PCIe\n", 5.0),  # a Pi 5's external slot by default (Gen 2)
    ("2.5 GT/s PCIe\n", 2.5),
    ("16.0 GT/s PCIe\n", 16.0),
    ("5 GT/s\n", 5.0),  # Linux < 5.6
    ("2.5 GT/s\n", 2.5),
    ("Unknown\n", None),  # a link the kernel cannot read (device in D3cold)
    ("", None),
])
def test_link_speed(text, want):
    assert kernel.parse_link_speed(text) == want


@pytest.mark.parametrize("text, want", [("1\n", 1), ("4\n", 4), ("", None), ("x\n", None)])
def test_link_width(text, want):
    assert kernel.parse_int(text) == want


def test_meminfo_cma_lines():
    info = kernel.parse_meminfo((KERNEL / "meminfo_cma.txt").read_text())
    assert info["CmaTotal"] == 65536 and info["CmaFree"] == 15444 and info["VmallocTotal"] == 1114112
    assert len(info) == 23


def test_meminfo_without_cma_reads_as_absent(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:        8245360 kB\nHugePages_Total:       0\n")
    assert kernel.read_cma(str(tmp_path / "meminfo")) == {"cma_free_kb": None, "cma_total_kb": None}
    assert kernel.read_cma(str(KERNEL / "meminfo_cma.txt")) == {"cma_free_kb": 15444, "cma_total_kb": 65536}


def test_vcgencmd_lines():
    lines = (KERNEL / "vcgencmd.txt").read_text().splitlines()
    assert [kernel.parse_measure_clock(line) for line in lines[0:3:2]] == [600169920, 1500345728]
    assert [kernel.parse_measure_temp(line) for line in lines[1:4:2]] == [52.0, 62.0]
    assert kernel.parse_throttled(lines[4]) == "0x0"
    assert kernel.parse_throttled("throttled=0x50005\n") == "0x50005"
    assert kernel.parse_measure_temp("error=1 error_msg=\"Command not registered\"") is None
    assert kernel.parse_measure_clock("frequency(0)=2400000000") == 2400000000


@pytest.mark.parametrize("text, want", [
    ("[default] performance powersave powersupersave\n", "default"),
    ("default performance [powersave] powersupersave\n", "powersave"),
    ("[default] performance powersave\n", "default"),  # kernels before powersupersave (4.x)
    ("", None),
])
def test_aspm_policy(text, want):
    assert kernel.parse_aspm_policy(text) == want


@pytest.mark.parametrize("text, want", [
    ("0::/system.slice/hailort.service\n", "hailort.service"),  # cgroup v2 (Raspberry Pi OS bookworm)
    ("0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope"),
    ("12:pids:/system.slice/hailo-ollama.service\n1:name=systemd:/system.slice/hailo-ollama.service\n",
     "hailo-ollama.service"),  # cgroup v1
    ("0::/\n", None),
])
def test_unit_of_a_process(text, want):
    assert kernel.cgroup_unit(text) == want


def _pci(root: Path, address: str, vendor: str, device: str) -> Path:
    dev = root / "bus/pci/devices" / address
    dev.mkdir(parents=True)
    (dev / "vendor").write_text(vendor + "\n")
    (dev / "device").write_text(device + "\n")
    return dev


def test_the_device_is_found_by_pci_ids_at_any_address(tmp_path):
    _pci(tmp_path, "0000:00:00.0", "0x14e4", "0x2712")  # the Pi 5's root port
    _pci(tmp_path, "0002:01:00.0", "0x1de4", "0x0001")  # RP1
    _pci(tmp_path, "0000:01:00.0", "0x1e60", "0x2864")  # a Hailo-8 behind a switch, not at 0001:01:00.0
    found = kernel.find_devices(str(tmp_path))
    assert [(d["address"], d["device"]) for d in found] == [("0000:01:00.0", "0x2864")]
    assert kernel.find_devices(str(tmp_path / "nothing")) == []


def test_link_power_state_and_aspm(tmp_path):
    dev = _pci(tmp_path, "0001:01:00.0", "0x1e60", "0x45c4")
    for name, text in (("current_link_speed", "5.0 GT/s PCIe"), ("current_link_width", "1"),
                       ("max_link_speed", "8.0 GT/s PCIe"), ("max_link_width", "4"), ("power_state", "D0")):
        (dev / name).write_text(text + "\n")
    (tmp_path / "module/pcie_aspm/parameters").mkdir(parents=True)
    (tmp_path / "module/pcie_aspm/parameters/policy").write_text("[default] performance powersave powersupersave\n")
    assert kernel.read_link(str(tmp_path), str(dev)) == {"pcie_speed": 5.0, "pcie_width": 1, "pcie_max_speed": 8.0,
                                                         "pcie_max_width": 4, "power_state": "D0", "aspm": "default"}
    (dev / "link").mkdir()  # Linux >= 6.5: per-link ASPM states
    (dev / "link/l0s_aspm").write_text("0\n")
    (dev / "link/l1_aspm").write_text("1\n")
    assert kernel.read_link(str(tmp_path), str(dev))["aspm"] == "default L1"
    (dev / "link/l1_aspm").write_text("0\n")
    assert kernel.read_link(str(tmp_path), str(dev))["aspm"] == "default off"
    assert kernel.bound_driver(str(dev)) is None
    (tmp_path / "bus/pci/drivers/hailo_pci").mkdir(parents=True)
    (dev / "driver").symlink_to("../../../bus/pci/drivers/hailo_pci")
    assert kernel.bound_driver(str(dev)) == "hailo_pci"


def test_the_process_holding_the_device_is_named(tmp_path):
    node = tmp_path / "hailo0"
    node.write_text("")
    assert kernel.device_holders(str(node)) == []
    with open(node) as fh:
        holder = subprocess.Popen(["sleep", "30"], stdin=fh)
    try:
        found = kernel.device_holders(str(node))
        assert [(h["pid"], h["comm"]) for h in found] == [(holder.pid, "sleep")]
        assert kernel.describe_holders(found).startswith(f"sleep (pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    assert kernel.describe_holders([{"pid": 312, "comm": "hailort", "unit": "hailort.service"}]) == (
        "hailort (pid 312, hailort.service)")


def test_a_chip_mismatch_is_one_line_naming_the_node():
    assert kernel.chip_mismatch("pi-03", "hailo8", "0x45c4") == (
        "pi-03: the inventory says lab_chip hailo8 but the PCI device is 1e60:45c4 (Hailo-10H); "
        "fix lab_chip for pi-03 in the inventory")
    assert kernel.chip_mismatch("pi-01", "hailo10h", "0x2864").startswith(
        "pi-01: the inventory says lab_chip hailo10h but the PCI device is 1e60:2864 (Hailo-8/8L)")
    assert kernel.chip_mismatch("pi-01", "hailo10h", "0x45c4") is None
    assert kernel.chip_mismatch("pi-03", "hailo8l", "0x2864") is None  # 8 and 8L share a device ID
    assert kernel.chip_mismatch("pi-03", None, "0x2864") is None  # no chip in the inventory: nothing to check


def test_seconds_since_boot_counts_from_init(tmp_path):
    (tmp_path / "1").mkdir()
    ticks = os.sysconf("SC_CLK_TCK")
    (tmp_path / "uptime").write_text("1234.50 4000.00\n")
    (tmp_path / "1/stat").write_text("1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 %d 1 2\n" % (1200 * ticks))
    assert kernel.seconds_since_boot(str(tmp_path)) == 34.5
    assert kernel.seconds_since_boot(str(tmp_path / "none")) is None
