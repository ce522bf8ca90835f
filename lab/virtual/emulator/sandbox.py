"""An emulated node on the controller host: tmp directories instead of /lab/hw, /run, /dev and firmware."""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from lab.virtual.emulator import packages
from lab.virtual.emulator.hailo_emu import driver, hef, hw, shims, tables
from lab.virtual.emulator.hailo_emu.chip import Chip
from lab.virtual.emulator.hailo_emu.cli import main as hailortcli_main
from lab.virtual.emulator.hailo_emu.clock import Clock, FakeClock


@dataclass
class Result:
    """Exit status and output of one emulated command."""

    rc: int
    out: str
    err: str


def release_for(version: str) -> packages.Release:
    """The release row of a HailoRT version."""
    for rel in packages.RELEASES:
        if rel.version == version:
            return rel
    raise ValueError("no emulated release %s" % version)


class Sandbox:
    """One emulated unit and its software stack, for tests, demos and dry runs of the model.

    With `fake_clock` (the default) time only moves when the sandbox is told to, and every nominal
    second passes instantly; otherwise the real clock runs at `time_scale` as on a virtual node.
    """

    def __init__(self, root: Path, unit=None, version: str = "5.3.0", time_scale: float = 1.0, fake_clock: bool = True):
        self.root = Path(root)
        self.unit_raw = dict(unit or {})
        self.unit_raw.setdefault("node", "node1")
        self.time_scale = time_scale
        self.clock = FakeClock(time_scale) if fake_clock else Clock(time_scale)
        self.library = version
        self.env = {
            hw.HW_DIR_ENV: str(self.root / "hw"),
            hw.STATE_DIR_ENV: str(self.root / "run"),
            hw.CARRY_DIR_ENV: str(self.root / "var-lib"),
            hw.FIRMWARE_DIR_ENV: str(self.root / "firmware"),
            hw.DEV_DIR_ENV: str(self.root / "dev"),
            hw.JOURNAL_ENV: "",
        }
        (self.root / "hw").mkdir(parents=True, exist_ok=True)
        (self.root / "hw" / "unit.json").write_text(json.dumps(self.unit_raw))
        (self.root / "hw" / "fleet.json").write_text(json.dumps({"time_scale": time_scale}))
        self.paths = hw.Paths(self.env)
        self.chip = Chip(self.paths, clock=self.clock)
        self.driver_version = None
        self.install_driver(version)

    @property
    def module(self) -> str:
        """The kernel module of the installed driver."""
        return release_for(self.driver_version).module

    def install_driver(self, version: str) -> None:
        """Replace the firmware files with those of driver package `version` (as apt would)."""
        fw_dir = self.root / "firmware"
        shutil.rmtree(fw_dir, ignore_errors=True)
        for path, (data, _mode) in packages.driver_package(release_for(version)).files.items():
            if path.startswith("/lib/firmware/"):
                target = fw_dir / path[len("/lib/firmware/") :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        self.driver_version = version

    def modprobe(self, remove: bool = False) -> Result:
        """`modprobe [-r] MODULE` of the installed driver."""
        err = io.StringIO()
        rel = release_for(self.driver_version)
        rc = shims.driver_main(["unload" if remove else "load"], rel.module, rel.version, chip=self.chip, err=err)
        return Result(rc, "", err.getvalue())

    def pcie(self, action: str) -> Result:
        """PCIe `remove` or `rescan`."""
        err = io.StringIO()
        return Result(shims.pcie_main([action], chip=self.chip, err=err), "", err.getvalue())

    def hailortcli(self, *argv: str, version: str | None = None) -> Result:
        """Run the emulated hailortcli of library `version` (default: the sandbox's)."""
        out, err = io.StringIO(), io.StringIO()
        rc = hailortcli_main(list(argv), version or self.library, chip=self.chip, out=out, err=err)
        return Result(rc, out.getvalue(), err.getvalue())

    def hef(self, filename: str) -> str:
        """Path of an emulated HEF from the hailo-models package."""
        path = self.root / "models" / filename
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(hef.dumps(tables.MODELS[filename]))
        return str(path)

    def benchmark(self, filename: str = "yolo26s_hailo10h.hef", seconds: float = 15) -> Result:
        """`hailortcli benchmark -t SECONDS HEF`."""
        return self.hailortcli("benchmark", "-t", str(seconds), self.hef(filename))

    def idle(self, seconds: float) -> None:
        """Let `seconds` of nominal time pass with nobody using the device (fake clock only)."""
        if not isinstance(self.clock, FakeClock):
            raise TypeError("idle() needs the fake clock")
        self.clock.advance(seconds * self.time_scale if self.time_scale else 0.0)

    def reboot(self) -> None:
        """Power-cycle: /run and /dev are wiped, then the driver loads at boot (coldplug)."""
        shutil.rmtree(self.root / "run", ignore_errors=True)
        shutil.rmtree(self.root / "dev", ignore_errors=True)
        self.modprobe()

    def kernel_log(self) -> str:
        """Everything the driver logged since boot, in dmesg's format."""
        return self.chip.klog.read()

    def state(self) -> dict:
        """The chip's state document."""
        return self.chip.store.peek() or {}

    def dev_node_exists(self) -> bool:
        """Whether /dev/hailo0 is there."""
        return os.path.exists(self.paths.dev_node)

    def firmware_version(self):
        """Version of the installed firmware files."""
        return driver.firmware_version(self.chip)
