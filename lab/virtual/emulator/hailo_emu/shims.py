"""Entry points of the driver package's commands: the modprobe hook, PCIe remove/rescan, modinfo, vcgencmd,
the second client of the device and its systemd generator."""

from __future__ import annotations

import os
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


def vcgencmd_main(argv, chip=None, out=None) -> int:
    """`hailo-emu-vcgencmd CMD...`: the Pi firmware's measure_temp, measure_clock arm and get_throttled."""
    from . import kernel

    out = out or sys.stdout
    code, text = kernel.vcgencmd(chip or Chip(), list(argv))
    out.write(text)
    return code


def holder_main(argv, chip=None, err=None, wait_s: float = 300.0) -> int:
    """`hailo-emu-holder NAME`: a second client of the device, as hailort.service or an application is.

    Waits for /dev/hailo0, takes the device (the emulated libhailort then answers other processes as
    the real one does when the device is in use), keeps /dev/hailo0 open and sleeps until stopped.
    Its process name is NAME (what `ps` and /proc/PID/comm show), so a pre-flight can name it.
    """
    import signal
    import time

    err = err or sys.stderr
    if len(argv) != 1:
        err.write("usage: hailo-emu-holder NAME\n")
        return 2
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(argv[0][:15])
    except OSError:
        pass
    chip = chip or Chip()
    deadline = time.monotonic() + wait_s
    while not os.path.exists(chip.paths.dev_node):
        if time.monotonic() > deadline:
            err.write("hailo-emu-holder: %s never appeared\n" % chip.paths.dev_node)
            return 1
        time.sleep(0.5)
    handle = chip.store.claim_device()
    if handle is None:
        err.write("hailo-emu-holder: the device is in use by another process\n")
        return 1
    node = os.open(chip.paths.dev_node, os.O_RDONLY)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            signal.pause()
    finally:
        os.close(node)
        os.close(handle)


def holder_generator_main(argv, hw_dir=None) -> int:
    """systemd generator: the unit's `device_holder` service (from /lab/hw/unit.json), wanted at boot.

    Generated into the generator's normal directory (under /run), so `systemctl stop NAME` and
    `systemctl start NAME` work on it as on a packaged service; nothing is written when the unit has none.
    """
    import json

    from .hw import Paths

    if not argv:
        return 0
    path = os.path.join(hw_dir or Paths().hw_dir, "unit.json")
    try:
        with open(path, encoding="utf-8") as f:
            name = (json.load(f) or {}).get("device_holder")
    except (OSError, ValueError):
        return 0
    if not name or not isinstance(name, str) or "/" in name or not name.endswith(".service"):
        return 0
    stem = name[: -len(".service")]
    unit_dir = argv[0]
    os.makedirs(os.path.join(unit_dir, "multi-user.target.wants"), exist_ok=True)
    with open(os.path.join(unit_dir, name), "w", encoding="utf-8") as f:
        f.write(
            "# Generated by hailo-emu-holder-generator: the unit profile's second client of the device\n"
            "[Unit]\nDescription=%s (emulated second client holding /dev/hailo0, lab virtual node)\n"
            "After=hailo-emu-coldplug.service\n\n"
            "[Service]\nExecStart=/usr/lib/hailort-pcie-driver/emulator/hailo-emu-holder %s\n" % (stem, stem)
        )
    link = os.path.join(unit_dir, "multi-user.target.wants", name)
    if not os.path.lexists(link):
        os.symlink(os.path.join("..", name), link)
    return 0
