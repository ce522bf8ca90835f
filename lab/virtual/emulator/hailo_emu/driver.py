"""The driver shim: what `modprobe hailo1x_pci` / `hailo_pci`, PCIe remove/rescan and resets do to the chip."""

from __future__ import annotations

import hashlib
import os
import random

from . import klog, tables
from .state import shared_file

FIRMWARE_MAGIC = "HAILO-EMU-FIRMWARE"
FW_LOAD_MS = {"hailo10h": 2607, "hailo8": 164, "hailo8l": 164}
BOOT_TIMEOUT_S = 5.0

# Verbatim from a Hailo-10H on firmware 5.3.0 after `fw-control reset --reset-type chip`.
RESET_FAILURE = (
    "Firmware batch programming completed for stage 3",
    "Timeout waiting for vDMA boot data completion",
    "Failed writing firmware files over vDMA. err -110",
    "Failed writing SOC firmware on stage 3",
    "SCU log could not be read from device",
    "Firmware load failed",
    "Failed activating board -110",
    "probe with driver hailo1x failed with error -110",
)


def driver_name(module: str) -> str:
    """Kernel log prefix of a module: hailo1x_pci -> hailo1x, hailo_pci -> hailo."""
    return {"hailo1x_pci": "hailo1x", "hailo_pci": "hailo"}.get(module, module)


def firmware_version(chip) -> str | None:
    """Version of the firmware files installed under /lib/firmware for this chip (None when absent)."""
    path = os.path.join(chip.paths.firmware_dir, chip.spec["firmware_version_file"])
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            words = f.readline().split()
    except OSError:
        return None
    if len(words) >= 3 and words[0] == FIRMWARE_MAGIC:
        return words[2]
    return None


def _missing_firmware(chip) -> list:
    """Firmware files the probe needs but cannot find."""
    sku = chip.unit["board_sku"]
    names = [f.format(sku=sku) for f in chip.spec["firmware_files"]]
    return [n for n in names if not os.path.exists(os.path.join(chip.paths.firmware_dir, n))]


def _set_dev_node(chip, present: bool) -> None:
    """Create or remove the /dev/hailo0 marker file."""
    node = chip.paths.dev_node
    if present:
        os.makedirs(os.path.dirname(node), exist_ok=True)
        with open(node, "w", encoding="utf-8") as f:
            f.write("emulated Hailo device (lab virtual node)\n")
        shared_file(node)
    elif os.path.exists(node):
        os.remove(node)


def _h10_stage_one(p: str, sku) -> list:
    """The first firmware stage of a Hailo-10H boot (certificate, SCU firmware, board DTB)."""
    return [
        p + "Writing file hailo/hailo10h/customer_certificate.bin",
        p + "File hailo/hailo10h/customer_certificate.bin written successfully",
        p + "Writing file hailo/hailo10h/scu_fw.bin",
        p + "File hailo/hailo10h/scu_fw.bin written successfully",
        p + "Board SKU-ID is: %s" % sku,
        p + "Writing file hailo/hailo10h/u-boot-%s.dtb.signed" % sku,
        p + "File hailo/hailo10h/u-boot-%s.dtb.signed written successfully" % sku,
    ]


def _h10_stage_two(p: str) -> list:
    """The second firmware stage of a Hailo-10H boot (U-Boot, kernel and root file system over vDMA)."""
    lines = [
        p + "Reading firmware file hailo/hailo10h/%s" % f
        for f in ("u-boot-spl.bin", "u-boot-tfa.itb", "fitImage", "image-fs")
    ]
    for index in (0, 2, 3):
        lines += [
            p + "Firmware file programmed successfully",
            p + "Firmware file index %d programmed successfully" % index,
        ]
    return lines + [
        p + "Firmware batch programming completed for stage 2",
        p + "vDMA transfer completed, triggering boot",
        p + "SOC Firmware Batch loaded successfully",
    ]


def _fail_probe(chip, s: dict, lines: list) -> bool:
    """Log a failed probe: the device node does not appear."""
    chip.klog.emit(lines, klog.ERR)
    s["bound"] = None
    _set_dev_node(chip, False)
    return False


def load_firmware(chip, s: dict, module: str) -> bool:
    """Upload the firmware as the driver does at probe or after a chip reset; False when it fails."""
    p = "%s %s: " % (driver_name(module), chip.unit["pci_address"])
    rng = random.Random()
    if chip.unit["chip"] == "hailo10h":
        if s["bricked"]:
            chip.clock.sleep(BOOT_TIMEOUT_S)
            return _fail_probe(chip, s, _h10_stage_one(p, chip.unit["board_sku"]) + [p + x for x in RESET_FAILURE])
        if s["firmware"]:
            chip.klog.emit([p + "SOC Firmware batch was already loaded"], klog.WARNING)
            chip.klog.emit([p + "Firmware loaded in 0 ms"])
            return True
    elif s["firmware"]:
        chip.klog.emit([p + "soft reset finished", p + "Soft reset done"])
    missing = _missing_firmware(chip)
    version = firmware_version(chip)
    if missing or not version:
        name = missing[0] if missing else chip.spec["firmware_version_file"]
        return _fail_probe(
            chip,
            s,
            [
                p + "Direct firmware load for %s failed with error -2" % name,
                p + "Firmware load failed",
                p + "Failed activating board -2",
                p + "probe with driver %s failed with error -2" % driver_name(module),
            ],
        )
    ms = FW_LOAD_MS[chip.unit["chip"]] + rng.randint(-25, 25)
    chip.clock.sleep(ms / 1000.0)
    if chip.unit["chip"] == "hailo10h":
        chip.klog.emit(
            _h10_stage_one(p, chip.unit["board_sku"]) + _h10_stage_two(p) + [p + "Firmware loaded in %d ms" % ms]
        )
    else:
        lines = []
        for name in chip.spec["firmware_files"]:
            lines += [p + "Writing file %s" % name, p + "File %s written successfully" % name]
        chip.klog.emit(lines + [p + "NNC Firmware loaded successfully", p + "FW loaded, took %d ms" % ms])
    s["firmware"] = version
    return True


def probe(chip, s: dict, module: str) -> bool:
    """Bind `module` to the chip: the probe lines, the firmware, then /dev/hailo0."""
    p = "%s %s: " % (driver_name(module), chip.unit["pci_address"])
    rng = random.Random()
    dev = chip.spec["pci_device"]
    lines = [
        p + "Probing on: %s:%s..." % (tables.PCI_VENDOR, dev),
        p + "Probing: Allocate memory for device extension, %d" % (13192 if module == "hailo_pci" else 13256),
    ]
    if not s["enabled_once"]:
        lines.append(p + "enabling device (0000 -> 0002)")
        s["enabled_once"] = True
    lines.append(p + "Probing: Device enabled")
    for bar, size in ((0, 16384), (2, 4096), (4, 16384)):
        lines.append(p + "Probing: mapped bar %d - %016x %d" % (bar, rng.getrandbits(32), size))
    if module == "hailo1x_pci":
        lines.append(p + "Probing: Setting max_desc_page_size to 4096, (PAGE_SIZE=16384)")
        lines.append(p + "Probing: Enabled 64 bit dma")
    else:
        lines.append(p + "Probing: Setting max_desc_page_size to 4096, (page_size=16384)")
        lines.append(p + "Probing: Enabled 64 bit dma")
        lines.append(p + "Probing: Using userspace allocated vdma buffers")
    lines += [p + "Disabling ASPM L0s", p + "Successfully disabled ASPM L0s"]
    chip.klog.emit(lines)
    s["probes"] = s.get("probes", 0) + 1
    if not load_firmware(chip, s, module):
        return False
    chip.klog.emit([p + "Probing: Added board %s-%s, /dev/hailo0" % (tables.PCI_VENDOR, dev)])
    s["bound"] = module
    _set_dev_node(chip, True)
    return True


def load_module(chip, module: str, version: str) -> int:
    """`modprobe MODULE`: register the driver and bind the chip when it is this driver's chip."""
    with chip.transaction() as s:
        if module in s["modules"]:
            return 0
        s["modules"][module] = version
        chip.klog.emit(["%s: Init module. driver version %s" % (driver_name(module), version)])
        if s["pcie_present"] and s["bound"] is None and chip.spec["module"] == module:
            probe(chip, s, module)
    return 0


def unload_module(chip, module: str, err) -> int:
    """`modprobe -r MODULE`: release the board and unregister; refused while a process uses it."""
    with chip.transaction() as s:
        if module not in s["modules"]:
            return 0
        if s["bound"] == module:
            if chip.store.device_busy():
                err.write("modprobe: FATAL: Module %s is in use.\n" % module)
                return 1
            _release(chip, s, module)
        chip.klog.emit(
            ["%s: Exit module." % driver_name(module), "%s: Hailo PCIe driver unloaded." % driver_name(module)]
        )
        del s["modules"][module]
    return 0


def _release(chip, s: dict, module: str) -> None:
    """The driver's remove callback: the device node goes away, the chip keeps running."""
    p = "%s %s: " % (driver_name(module), chip.unit["pci_address"])
    chip.klog.emit([p + "Remove: Releasing board", p + "Remove: Freed board, /dev/hailo0"])
    s["bound"] = None
    _set_dev_node(chip, False)


def pcie_remove(chip, err) -> int:
    """`echo 1 > /sys/bus/pci/devices/ADDR/remove`: the device leaves the bus (the chip stays powered)."""
    with chip.transaction() as s:
        if not s["pcie_present"]:
            err.write("hailo-emu-pcie: no PCI device at %s\n" % chip.unit["pci_address"])
            return 1
        if s["bound"]:
            _release(chip, s, s["bound"])
        s["pcie_present"] = False
    return 0


def pcie_rescan(chip) -> int:
    """`echo 1 > /sys/bus/pci/rescan`: a removed device comes back and a loaded driver probes it."""
    with chip.transaction() as s:
        if s["pcie_present"]:
            return 0
        s["pcie_present"] = True
        chip.klog.emit(
            [
                "pci %s: [%s:%s] type 00 class 0x128000 PCIe Endpoint"
                % (chip.unit["pci_address"], tables.PCI_VENDOR, chip.spec["pci_device"])
            ],
            klog.INFO,
        )
        if chip.spec["module"] in s["modules"]:
            probe(chip, s, chip.spec["module"])
    return 0


def chip_reset(chip, mode: str) -> None:
    """`fw-control reset`: chip resets reboot the chip-side OS (or brick it, per the leak table)."""
    with chip.transaction() as s:
        if mode != "chip" or not s["bound"]:
            return
        module = s["bound"]
        outcome = chip.firmware_entry(s)["chip_reset"]
        s["firmware"] = None
        s["cma_used"] = 0.0
        s["fallback"] = 0.0
        s["configures"] = 0
        chip.clear_runtime_log()
        if chip.unit["chip"] == "hailo10h" and outcome == "bricks":
            s["bricked"] = True
        if not load_firmware(chip, s, module):
            s["bound"] = None


def srcversion(module: str, version: str) -> str:
    """The module's srcversion (the seed's value for hailo1x_pci 5.3.0, otherwise derived)."""
    if (module, version) == ("hailo1x_pci", "5.3.0"):
        return "91195A5A35A8DAAA5717B7D"
    return hashlib.sha256(("%s-%s" % (module, version)).encode()).hexdigest().upper()[:23]


def modinfo_fields(module: str, version: str, chip_device: str) -> list:
    """(field, value) pairs as `modinfo MODULE` prints them for the emulated module."""
    return [
        ("filename", "(emulated) %s, lab virtual node" % module),
        ("version", version),
        ("license", "GPL v2"),
        ("description", "Hailo PCIe driver"),
        ("author", "Hailo Technologies Ltd."),
        ("srcversion", srcversion(module, version)),
        ("alias", "pci:v00001E60d0000%ssv*sd*bc*sc*i*" % chip_device.upper()),
        ("depends", ""),
        ("name", module),
    ]
