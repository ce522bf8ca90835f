"""Inventory variables that tell the agent and the roles how to reach kernel-side things on each kind of node."""

from __future__ import annotations

from lab.contract import MEMINFO, PI_DEVICETREE_DIR, SYSFS_ROOT
from lab.virtual.emulator.hailo_emu import tables

# The only variables in which a virtual node's inventory differs from a Pi's, besides its address, SSH
# key and known_hosts and the time scale: how to reach kernel-side things the emulator stands in for.
KERNEL_INTERFACE_VARS = (
    "lab_kernel_log_cmd", "lab_pcie_remove_cmd", "lab_pcie_rescan_cmd", "lab_driver_version_cmd",
    "lab_loaded_driver_version_cmd", "lab_throttled_cmd", "lab_firmware_version_cmd", "lab_bootloader_version_cmd",
    "lab_sysfs_root", "lab_meminfo", "lab_vcgencmd", "lab_devicetree_dir",
)

# Where the Pi's devicetree is on a virtual node: its stand-in (written by lab.virtual.node.write_hw).
VIRTUAL_DEVICETREE_DIR = "/lab/hw/devicetree"

# The emulator's kernel view (hailo_emu/kernel.py): its sysfs subset and meminfo under its state directory.
EMU_SYSFS_ROOT = "/run/hailo-emu/sys"
EMU_MEMINFO = "/run/hailo-emu/proc/meminfo"


def virtual_node_vars(chip: str = "hailo10h", time_scale: float = 1.0) -> dict:
    """Host variables of a virtual node: emulator commands standing in for kernel interfaces."""
    module = tables.CHIPS[chip]["module"]
    return {
        # nspawn nodes cannot read the host's ring buffer; the shim logs to the journal as `kernel`
        "lab_kernel_log_cmd": "journalctl -b -t kernel -o short-monotonic --no-pager",
        "lab_pcie_remove_cmd": "hailo-emu-pcie remove",
        "lab_pcie_rescan_cmd": "hailo-emu-pcie rescan",
        "lab_driver_module": module,
        "lab_driver_version_cmd": "hailo-emu-modinfo -F version %s" % module,
        "lab_loaded_driver_version_cmd": "hailo-emu-modinfo --loaded -F version %s" % module,
        # the host's /sys/firmware has no devicetree (and /proc/cpuinfo is the host's): the Pi's identity
        "lab_devicetree_dir": VIRTUAL_DEVICETREE_DIR,
        "lab_sysfs_root": EMU_SYSFS_ROOT,
        "lab_meminfo": EMU_MEMINFO,
        "lab_vcgencmd": "hailo-emu-vcgencmd",
        "lab_time_scale": time_scale,
    }


def real_pi_vars(chip: str = "hailo10h") -> dict:
    """The same variables for a real Raspberry Pi 5 (what an inventory of real nodes should set).

    No PCIe remove/rescan commands: the agent finds the device by its PCI vendor and device ID under
    lab_sysfs_root and writes its `remove` and the bus's `rescan` itself (no fixed address).
    """
    module = tables.CHIPS[chip]["module"]
    return {
        "lab_kernel_log_cmd": "dmesg",
        "lab_sysfs_root": SYSFS_ROOT,
        "lab_meminfo": MEMINFO,
        "lab_vcgencmd": "vcgencmd",
        "lab_driver_module": module,
        "lab_driver_version_cmd": "modinfo -F version %s" % module,
        "lab_loaded_driver_version_cmd": "cat /sys/module/%s/version" % module,
        "lab_throttled_cmd": "vcgencmd get_throttled",
        "lab_firmware_version_cmd": "vcgencmd version",
        "lab_bootloader_version_cmd": "vcgencmd bootloader_version",
        "lab_devicetree_dir": PI_DEVICETREE_DIR,
        "lab_time_scale": 1.0,
    }
