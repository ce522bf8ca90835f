"""A node's kernel side and boot tools as the agent reads them at pre-flight, for agent unit tests."""

from __future__ import annotations

from pathlib import Path

# The node's kernel side, as the agent reads it (sysfs subset, meminfo) and the tools it asks at pre-flight.
SYSTEMCTL = """#!/bin/sh
case "$1" in is-system-running) echo running;; is-active) echo inactive; exit 3;; esac
"""
TIMEDATECTL = "#!/bin/sh\necho yes\n"


def fake_kernel(root: Path, device: str = "0x45c4", width: str = "1") -> dict:
    """A Pi 5's sysfs subset with one bound Hailo device, its meminfo and /dev/hailo0, as spec fields."""
    dev = root / "sys/bus/pci/devices/0001:01:00.0"
    (dev / "link").mkdir(parents=True)
    for name, text in (("vendor", "0x1e60"), ("device", device), ("current_link_speed", "5.0 GT/s PCIe"),
                       ("current_link_width", width), ("max_link_speed", "8.0 GT/s PCIe"), ("max_link_width", "4"),
                       ("power_state", "D0"), ("link/l0s_aspm", "0"), ("link/l1_aspm", "1")):
        (dev / name).write_text(text + "\n")
    (root / "sys/bus/pci/drivers/hailo1x_pci").mkdir(parents=True)
    (dev / "driver").symlink_to("../../../bus/pci/drivers/hailo1x_pci")
    (root / "sys/module/pcie_aspm/parameters").mkdir(parents=True)
    (root / "sys/module/pcie_aspm/parameters/policy").write_text("[default] performance powersave powersupersave\n")
    (root / "meminfo").write_text("MemTotal:        8245360 kB\nCmaTotal:          65536 kB\nCmaFree:           58580 kB\n")
    (root / "hailo0").write_text("")
    return {"sysfs_root": str(root / "sys"), "meminfo": str(root / "meminfo"), "dev_node": str(root / "hailo0"),
            "ready_timeout": 2}


def fake_boot_tools(bindir: Path) -> None:
    """`systemctl` (the system is running, no service active) and `timedatectl` (synchronised) in bindir."""
    for name, text in (("systemctl", SYSTEMCTL), ("timedatectl", TIMEDATECTL)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
