"""Entry points of the driver package's commands: the modprobe hook, PCIe remove/rescan, modinfo."""

from __future__ import annotations

import sys

from . import driver, tables
from .chip import Chip


def driver_main(argv, module: str, version: str, chip=None, err=None) -> int:
    """`hailo-emu-driver load|unload`: run by modprobe's install/remove directives for MODULE."""
    err = err or sys.stderr
    if not argv or argv[0] not in ("load", "unload"):
        err.write("usage: hailo-emu-driver load|unload [module options]\n")
        return 2
    chip = chip or Chip()
    if argv[0] == "load":
        return driver.load_module(chip, module, version)
    return driver.unload_module(chip, module, err)


def pcie_main(argv, chip=None, err=None) -> int:
    """`hailo-emu-pcie remove|rescan`: what writing 1 to the sysfs remove/rescan files does."""
    err = err or sys.stderr
    if len(argv) != 1 or argv[0] not in ("remove", "rescan"):
        err.write("usage: hailo-emu-pcie remove|rescan\n")
        return 2
    chip = chip or Chip()
    if argv[0] == "remove":
        return driver.pcie_remove(chip, err)
    return driver.pcie_rescan(chip)


def modinfo_main(argv, module: str, version: str, chip=None, out=None, err=None) -> int:
    """`hailo-emu-modinfo [-F FIELD] [--loaded] MODULE`: modinfo for the emulated module.

    Like modinfo it describes the module installed on disk; with --loaded it describes the module
    currently loaded (as /sys/module/MODULE/version would), or fails when none is.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    field = None
    loaded = False
    names = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-F", "--field") and args:
            field = args.pop(0)
        elif arg == "--loaded":
            loaded = True
        else:
            names.append(arg)
    if len(names) != 1:
        err.write("usage: hailo-emu-modinfo [-F field] [--loaded] MODULE\n")
        return 2
    if names[0] != module:
        err.write("modinfo: ERROR: Module %s not found.\n" % names[0])
        return 1
    if loaded:
        chip = chip or Chip()
        with chip.transaction() as s:
            version = s["modules"].get(module)
        if not version:
            err.write("modinfo: ERROR: Module %s is not loaded.\n" % module)
            return 1
    device = "45c4" if module == "hailo1x_pci" else tables.CHIPS["hailo8"]["pci_device"]
    fields = driver.modinfo_fields(module, version, device)
    if field:
        for key, value in fields:
            if key == field:
                out.write(value + "\n")
        return 0
    for key, value in fields:
        out.write(("%-16s%s" % (key + ":", value)).rstrip() + "\n")
    return 0
