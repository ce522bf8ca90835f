"""libhailort as the emulator implements it: discovery, version checks, exclusive use, configure, infer."""

from __future__ import annotations

import os

from . import driver, status, tables
from .chip import Chip


def family(version: str) -> int:
    """Major version of a HailoRT release (4 drives Hailo-8/8L, 5 drives Hailo-10H)."""
    return int(version.split(".")[0])


class Runtime:
    """One process's view of the library: every call checks the driver as libhailort does."""

    def __init__(self, library_version: str, chip=None):
        self.library_version = library_version
        self.chip = chip if chip is not None else Chip()

    def _check(self, s: dict) -> None:
        """Fail like libhailort when the device node is missing or the driver's version differs."""
        if not s["bound"] or not os.path.exists(self.chip.paths.dev_node):
            raise status.driver_not_installed()
        loaded = s["modules"].get(s["bound"], "")
        if loaded != self.library_version:
            raise status.driver_version_mismatch(loaded, self.library_version)

    def scan(self) -> list:
        """Device ids (PCIe addresses) of the usable devices."""
        with self.chip.transaction() as s:
            self._check(s)
        return [self.chip.unit["pci_address"]]

    def identity(self) -> dict:
        """What `identify` reports about the device."""
        u = self.chip.unit
        with self.chip.transaction() as s:
            self._check(s)
            firmware = s["firmware"]
        soc = self.chip.is_soc
        return {
            "device_id": u["pci_address"],
            "protocol_version": 2,
            "firmware_version": firmware,
            "logger_version": 0,
            "is_release": True,
            "extended_context_switch_buffer": not soc,
            "board_name": "" if soc else "Hailo-8",
            "arch": self.chip.arch,
            "serial": u["serial"],
            "part_number": u["part_number"],
            "product_name": u["product_name"],
            "lcs": u["lcs"],
            "soc_id": u["soc_id"],
            "ult_id": u["ult_id"],
            "board_sku": u["board_sku"],
            "boot_source": "PCIE",
            "nn_clock_mhz": 1000 if soc else 400,
        }

    def temperatures(self):
        """(ts0, ts1) of the device."""
        with self.chip.transaction() as s:
            self._check(s)
        return self.chip.temperatures()

    def runtime_log(self) -> str:
        """The chip-side runtime log since the last fetch."""
        with self.chip.transaction() as s:
            self._check(s)
        return self.chip.fetch_runtime_log()

    def reset(self, mode: str) -> None:
        """Reset the device (`chip` reboots the chip-side OS, or bricks it per the leak table)."""
        with self.chip.transaction() as s:
            self._check(s)
        driver.chip_reset(self.chip, mode)

    def open_vdevice(self) -> "VDevice":
        """Create a VDevice over the single device; a second process gets OUT_OF_PHYSICAL_DEVICES."""
        with self.chip.transaction() as s:
            self._check(s)
        handle = self.chip.store.claim_device()
        if handle is None:
            raise status.out_of_devices()
        self.chip.log_open()
        return VDevice(self, handle, open_device_node(self.chip))


def open_device_node(chip):
    """Open /dev/hailo0 as a client of the device does (None if it vanished meanwhile)."""
    try:
        return os.open(chip.paths.dev_node, os.O_RDONLY)
    except OSError:
        return None


class VDevice:
    """An open virtual device holding the exclusive use of the chip until closed."""

    def __init__(self, runtime: Runtime, handle: int, node_fd=None):
        self.runtime = runtime
        self.chip = runtime.chip
        self._handle = handle
        self._node_fd = node_fd  # /dev/hailo0, open as libhailort keeps it: /proc/PID/fd shows the holder

    def configure(self, model: dict) -> "Network":
        """Configure a network on the chip: the configure cycle that the chip-side leak counts."""
        allowed = tables.HEF_COMPATIBLE.get(self.chip.arch, ())
        if model["arch"] not in allowed:
            raise status.hef_not_compatible(self.chip.arch, model["arch"])
        return Network(self, model, self.chip.configure())

    def close(self) -> None:
        """Release the device."""
        if self._handle is not None:
            os.close(self._handle)
            self._handle = None
        if self._node_fd is not None:
            os.close(self._node_fd)
            self._node_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Network:
    """A configured network: inference through it runs at the throughput its configure left."""

    def __init__(self, vdevice: VDevice, model: dict, configured: dict):
        self.vdevice = vdevice
        self.model = model
        self.configured = configured
        self.chip = vdevice.chip

    @property
    def name(self) -> str:
        """The network group's name."""
        return self.model["network"]

    def run_for(self, seconds: float, overhead: float = 0.0):
        """Stream inference for `seconds` (after `overhead` seconds of setup at idle power)."""
        with self.chip.streaming():
            if overhead:
                self.chip.busy_idle(overhead)
            return self.chip.infer(self.model["fps"], self.configured["fallback"], seconds)

    def current_fps(self) -> float:
        """Instantaneous throughput of this network now (for frame-by-frame inference)."""
        from .chip import leak_factor, throttle_factor

        with self.chip.transaction() as s:
            temp = s["temp"]
        u = self.chip.unit
        return (
            self.model["fps"]
            * float(u["perf_factor"])
            * leak_factor(self.configured["fallback"])
            * throttle_factor(temp, u)
        )
