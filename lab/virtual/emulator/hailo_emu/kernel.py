"""The kernel side of a unit as the host sees it: a sysfs subset, /proc/meminfo's CMA lines and vcgencmd.

A real Pi's kernel shows the Hailo device under /sys/bus/pci/devices/<bdf>/ (vendor, device, link
speed and width, power state, ASPM) and the host's CMA in /proc/meminfo; a virtual node's container
sees neither (its /sys and /proc/meminfo are the host machine's), so the emulated driver keeps the
same files, formatted as Linux formats them, under the emulator's state directory (sys/, proc/meminfo).
The node's inventory names where to read them (lab_sysfs_root, lab_meminfo); nothing else differs.
A model for testing lab, not a claim about Hailo hardware.
"""

from __future__ import annotations

import os
import shutil

from . import tables
from .state import shared_dir

SYSFS_DIR = "sys"
MEMINFO_FILE = os.path.join("proc", "meminfo")
HOST_MEMINFO = "/proc/meminfo"
# drivers/pci/pcie/aspm.c: the policies, the active one in brackets; Raspberry Pi OS keeps "default"
ASPM_POLICY = "[default] performance powersave powersupersave"


def link_speed_text(gts: float) -> str:
    """A link speed as Linux prints current_link_speed / max_link_speed (pci_speed_string): `5.0 GT/s PCIe`."""
    return "%.1f GT/s PCIe" % gts


def sysfs_root(chip) -> str:
    """The root of the modeled sysfs subset (what lab_sysfs_root names on a virtual node)."""
    return os.path.join(chip.paths.state_dir, SYSFS_DIR)


def meminfo_path(chip) -> str:
    """The modeled /proc/meminfo (what lab_meminfo names on a virtual node)."""
    return os.path.join(chip.paths.state_dir, MEMINFO_FILE)


def _write(path: str, text: str) -> None:
    """One attribute file, world-readable, written through a temporary name (readers never see half)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _signature(chip, s: dict) -> list:
    """What the files depend on: when it has not changed since the last write, nothing is written."""
    u = chip.unit
    return [s["pcie_present"], s["bound"], u["pci_address"], u["pcie_speed_gts"], u["pcie_width"],
            u["pcie_max_speed_gts"], u["pcie_max_width"]]


def sync(chip, s: dict) -> None:
    """Bring the sysfs subset and meminfo in line with the chip state; call inside a transaction.

    Best effort: a process that may not write there (another user's files) leaves it to the next one.
    """
    try:
        _sync(chip, s)
    except OSError:
        pass


def _sync(chip, s: dict) -> None:
    """The work of `sync`."""
    sig = _signature(chip, s)
    root = sysfs_root(chip)
    if s.get("kernel_view") == sig and os.path.isdir(root) and os.path.exists(meminfo_path(chip)):
        return
    shared_dir(chip.paths.state_dir)
    u = chip.unit
    bdf = u["pci_address"]
    module = chip.spec["module"]
    devices = os.path.join(root, "bus", "pci", "devices")
    drivers = os.path.join(root, "bus", "pci", "drivers")
    shutil.rmtree(devices, ignore_errors=True)
    shutil.rmtree(drivers, ignore_errors=True)
    os.makedirs(devices, exist_ok=True)
    os.makedirs(drivers, exist_ok=True)
    _write(os.path.join(root, "module", "pcie_aspm", "parameters", "policy"), ASPM_POLICY + "\n")
    if s["pcie_present"]:
        dev = os.path.join(devices, bdf)
        files = {
            "vendor": "0x%s\n" % tables.PCI_VENDOR,
            "device": "0x%s\n" % chip.spec["pci_device"],
            "class": "0x128000\n",
            "current_link_speed": link_speed_text(float(u["pcie_speed_gts"])) + "\n",
            "current_link_width": "%d\n" % int(u["pcie_width"]),
            "max_link_speed": link_speed_text(float(u["pcie_max_speed_gts"])) + "\n",
            "max_link_width": "%d\n" % int(u["pcie_max_width"]),
            # the bound driver keeps the device in D0; unbound, runtime PM lets it drop to D3hot
            "power_state": ("D0" if s["bound"] else "D3hot") + "\n",
            # the Hailo driver disables L0s at probe ("Disabling ASPM L0s"); L1 stays as the policy left it
            "link/l0s_aspm": ("0" if s["bound"] else "1") + "\n",
            "link/l1_aspm": "1\n",
        }
        for name, text in files.items():
            _write(os.path.join(dev, name), text)
        if s["bound"]:
            os.makedirs(os.path.join(drivers, module), exist_ok=True)
            os.symlink(os.path.join("..", "..", "devices", bdf), os.path.join(drivers, module, bdf))
            os.symlink(os.path.join("..", "..", "drivers", module), os.path.join(dev, "driver"))
    _write(meminfo_path(chip), meminfo_text(_host_meminfo(), cma_free_kb(s)))
    s["kernel_view"] = sig


def cma_free_kb(s: dict) -> int:
    """The host's free CMA: the total less what the host keeps and what the bound driver holds."""
    used = tables.HOST_CMA_BASE_USED_KB + (tables.HOST_CMA_DRIVER_KB if s["bound"] else 0)
    return tables.HOST_CMA_TOTAL_KB - used


def _host_meminfo() -> str:
    """The machine's own /proc/meminfo (what a container sees), or a minimal one."""
    try:
        with open(HOST_MEMINFO, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return "MemTotal:        8245360 kB\nMemFree:         7000000 kB\n"


def meminfo_text(host: str, free_kb: int, total_kb: int = tables.HOST_CMA_TOTAL_KB) -> str:
    """/proc/meminfo with the Pi's CMA lines in place of the machine's (show_val_kb: 16-column label, 8 digits)."""
    lines = [line for line in host.splitlines() if not line.startswith(("CmaTotal:", "CmaFree:"))]
    cma = ["%-16s%8d kB" % ("CmaTotal:", total_kb), "%-16s%8d kB" % ("CmaFree:", free_kb)]
    at = next((i for i, line in enumerate(lines) if line.startswith("HugePages_Total:")), len(lines))
    return "\n".join(lines[:at] + cma + lines[at:]) + "\n"


def soc_temperature(chip, s: dict) -> float:
    """The Pi's SoC temperature: idle plus a share of the HAT's heat (they share a case and a fan)."""
    return round(tables.SOC_IDLE_TEMP_C + 0.3 * max(0.0, s["temp"] - chip.unit["idle_temp_c"]), 1)


def vcgencmd(chip, args: list) -> tuple:
    """(exit status, output) of `vcgencmd ARGS` for the commands lab reads, in the firmware's format."""
    with chip.transaction() as s:
        temp = soc_temperature(chip, s)
    capped = temp >= tables.SOC_SOFT_LIMIT_C
    if args == ["measure_temp"]:
        return 0, "temp=%.1f'C\n" % temp
    if args == ["measure_clock", "arm"]:
        # the index in parentheses is the firmware's clock id (unverified for a Pi 5: parsers ignore it)
        return 0, "frequency(0)=%d\n" % (tables.ARM_CAPPED_HZ if capped else tables.ARM_CLOCK_HZ)
    if args == ["get_throttled"]:
        # bit 3: soft temperature limit active, bit 19: it has occurred since boot
        return 0, "throttled=0x%x\n" % ((1 << 3) | (1 << 19) if capped else 0)
    return 255, "error=1 error_msg=\"Command not registered\"\n"
