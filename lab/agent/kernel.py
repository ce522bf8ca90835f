"""What the agent reads from the node's kernel interfaces: the Hailo PCI device and its link, who holds
/dev/hailo0, host CMA, and the Pi firmware's figures (vcgencmd). Parsers are pure; readers take roots.

Real Pi: sysfs at /sys, /proc/meminfo, `vcgencmd`. A virtual node: the emulator's files, named by the
inventory (lab_sysfs_root, lab_meminfo, lab_vcgencmd); the code is the same.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any, Dict, List, Optional

HAILO_VENDOR = "0x1e60"
# PCI device IDs of the Hailo chips (hailort-drivers: Hailo-10H 45c4, Hailo-8 and Hailo-8L share 2864)
CHIP_DEVICE_IDS = {"hailo10h": "0x45c4", "hailo8": "0x2864", "hailo8l": "0x2864"}
DEVICE_NAMES = {"0x45c4": "Hailo-10H", "0x2864": "Hailo-8/8L"}

_SPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*GT/s")
_TEMP = re.compile(r"^temp=(-?\d+(?:\.\d+)?)'C\s*$")
_CLOCK = re.compile(r"^frequency\(\d+\)=(\d+)\s*$")
_THROTTLED = re.compile(r"^throttled=(0x[0-9a-fA-F]+)\s*$")
_MEMINFO = re.compile(r"^(\w+(?:\(\w+\))?):\s+(\d+)(?: kB)?\s*$")


# ---- parsers (pure) -----------------------------------------------------------------------------
def parse_link_speed(text: str) -> Optional[float]:
    """current_link_speed / max_link_speed in GT/s: `8.0 GT/s PCIe` (Linux >= 5.6), `5 GT/s` (older);
    None for `Unknown`."""
    m = _SPEED.match(text or "")
    return float(m.group(1)) if m else None


def parse_int(text: str) -> Optional[int]:
    """A decimal attribute such as current_link_width (`1`); None when absent or not a number."""
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def parse_meminfo(text: str) -> Dict[str, int]:
    """/proc/meminfo as name -> value (kB for the `kB` lines): {"CmaTotal": 65536, "CmaFree": 58580, ...}."""
    out: Dict[str, int] = {}
    for line in (text or "").splitlines():
        m = _MEMINFO.match(line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def parse_measure_temp(text: str) -> Optional[float]:
    """`vcgencmd measure_temp`: `temp=52.0'C` -> 52.0."""
    m = _TEMP.match((text or "").strip())
    return float(m.group(1)) if m else None


def parse_measure_clock(text: str) -> Optional[int]:
    """`vcgencmd measure_clock arm`: `frequency(48)=1500345728` -> Hz (the clock id in parentheses varies)."""
    m = _CLOCK.match((text or "").strip())
    return int(m.group(1)) if m else None


def parse_throttled(text: str) -> Optional[str]:
    """`vcgencmd get_throttled`: `throttled=0x50000` -> "0x50000" (kept in hex; lab/pi.py decodes the bits)."""
    m = _THROTTLED.match((text or "").strip())
    return m.group(1).lower() if m else None


def parse_aspm_policy(text: str) -> Optional[str]:
    """/sys/module/pcie_aspm/parameters/policy: `[default] performance powersave powersupersave` -> "default"."""
    m = re.search(r"\[(\w+)\]", text or "")
    return m.group(1) if m else None


def cgroup_unit(text: str) -> Optional[str]:
    """The systemd unit of a process from /proc/PID/cgroup (`0::/system.slice/hailort.service` -> hailort.service)."""
    for line in (text or "").splitlines():
        path = line.split(":", 2)[-1]
        for part in reversed(path.strip("/").split("/")):
            if part.endswith((".service", ".scope")):
                return part
    return None


def chip_mismatch(node: str, chip: Optional[str], device_id: Optional[str]) -> Optional[str]:
    """One line when the inventory's lab_chip does not match the PCI device found, else None."""
    want = CHIP_DEVICE_IDS.get(chip or "")
    if want is None or device_id is None or device_id == want:
        return None
    found = DEVICE_NAMES.get(device_id, "unknown Hailo device")
    return ("%s: the inventory says lab_chip %s but the PCI device is %s:%s (%s); fix lab_chip for %s in the inventory"
            % (node, chip, HAILO_VENDOR[2:], device_id[2:], found, node))


# ---- readers ------------------------------------------------------------------------------------
def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def find_devices(sysfs_root: str) -> List[Dict[str, str]]:
    """Every Hailo PCI function: scan <sysfs>/bus/pci/devices/*/vendor for 0x1e60 (no fixed address)."""
    found = []
    for vendor in sorted(glob.glob(os.path.join(sysfs_root, "bus", "pci", "devices", "*", "vendor"))):
        if (_read(vendor) or "").strip().lower() != HAILO_VENDOR:
            continue
        path = os.path.dirname(vendor)
        found.append({"address": os.path.basename(path), "path": path,
                      "device": (_read(os.path.join(path, "device")) or "").strip().lower()})
    return found


def bound_driver(device_path: str) -> Optional[str]:
    """The driver bound to a PCI device (the `driver` link's target name), None when unbound."""
    link = os.path.join(device_path, "driver")
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def read_link(sysfs_root: str, device_path: str) -> Dict[str, Any]:
    """The device's PCIe link (current and max speed in GT/s and width), power state and ASPM."""
    attr = lambda name: _read(os.path.join(device_path, name))  # noqa: E731
    aspm = parse_aspm_policy(_read(os.path.join(sysfs_root, "module", "pcie_aspm", "parameters", "policy")) or "")
    states = [name for name, file in (("L0s", "l0s_aspm"), ("L1", "l1_aspm"))
              if (attr(os.path.join("link", file)) or "").strip() == "1"]
    have_link_dir = os.path.isdir(os.path.join(device_path, "link"))
    if aspm is not None and have_link_dir:
        aspm = "%s %s" % (aspm, "+".join(states) if states else "off")
    power = (attr("power_state") or "").strip() or None
    return {"pcie_speed": parse_link_speed(attr("current_link_speed") or ""),
            "pcie_width": parse_int(attr("current_link_width") or ""),
            "pcie_max_speed": parse_link_speed(attr("max_link_speed") or ""),
            "pcie_max_width": parse_int(attr("max_link_width") or ""),
            "power_state": power, "aspm": aspm}


def read_cma(meminfo_path: str) -> Dict[str, Optional[int]]:
    """Host CMA from meminfo: cma_free_kb and cma_total_kb (None where the kernel has no CMA lines)."""
    info = parse_meminfo(_read(meminfo_path) or "")
    return {"cma_free_kb": info.get("CmaFree"), "cma_total_kb": info.get("CmaTotal")}


def device_holders(dev_node: str, proc_root: str = "/proc") -> List[Dict[str, Any]]:
    """Processes with `dev_node` open (scan of /proc/*/fd): pid, comm and systemd unit of each."""
    me = os.getpid()
    holders = []
    for entry in sorted(os.listdir(proc_root), key=lambda p: int(p) if p.isdigit() else 0):
        if not entry.isdigit() or int(entry) == me:
            continue
        fd_dir = os.path.join(proc_root, entry, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target == dev_node:
                holders.append({"pid": int(entry),
                                "comm": (_read(os.path.join(proc_root, entry, "comm")) or "").strip() or None,
                                "unit": cgroup_unit(_read(os.path.join(proc_root, entry, "cgroup")) or "")})
                break
    return holders


def describe_holders(holders: List[Dict[str, Any]]) -> str:
    """`hailort (pid 312, hailort.service)` for each holder, comma-separated."""
    return ", ".join("%s (pid %s%s)" % (h.get("comm") or "?", h["pid"], ", " + h["unit"] if h.get("unit") else "")
                     for h in holders)


def seconds_since_boot(proc_root: str = "/proc") -> Optional[float]:
    """Seconds since this system's init started: /proc/uptime less PID 1's start (a container's own boot)."""
    try:
        uptime = float((_read(os.path.join(proc_root, "uptime")) or "").split()[0])
        stat = _read(os.path.join(proc_root, "1", "stat")) or ""
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 3)
