"""The unit's "hardware" as the node sees it: /lab/hw/unit.json and fleet.json, with per-chip defaults."""

from __future__ import annotations

import hashlib
import json
import os

from . import tables

HW_DIR_ENV = "HAILO_EMU_HW_DIR"
STATE_DIR_ENV = "HAILO_EMU_STATE_DIR"
FIRMWARE_DIR_ENV = "HAILO_EMU_FIRMWARE_DIR"
DEV_DIR_ENV = "HAILO_EMU_DEV_DIR"
JOURNAL_ENV = "HAILO_EMU_JOURNAL_SOCKET"
CARRY_DIR_ENV = "HAILO_EMU_CARRY_DIR"

DEFAULT_HW_DIR = "/lab/hw"
DEFAULT_STATE_DIR = "/run/hailo-emu"
DEFAULT_FIRMWARE_DIR = "/lib/firmware"
DEFAULT_DEV_DIR = "/dev"
DEFAULT_JOURNAL = "/run/systemd/journal/socket"
# Persistent (survives the node's reboots): where a unit that keeps its HAT powered keeps the chip's state.
DEFAULT_CARRY_DIR = "/var/lib/hailo-emu"
POWER_EPOCH_FILE = "power-epoch"  # in the hw directory, written by the host (the fleet's supervisor)


class Paths:
    """Where the emulator reads hardware and firmware and keeps its state (each overridable by env)."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        self.hw_dir = env.get(HW_DIR_ENV, DEFAULT_HW_DIR)
        self.state_dir = env.get(STATE_DIR_ENV, DEFAULT_STATE_DIR)
        self.firmware_dir = env.get(FIRMWARE_DIR_ENV, DEFAULT_FIRMWARE_DIR)
        self.dev_dir = env.get(DEV_DIR_ENV, DEFAULT_DEV_DIR)
        self.journal_socket = env.get(JOURNAL_ENV, DEFAULT_JOURNAL)
        self.carry_dir = env.get(CARRY_DIR_ENV, DEFAULT_CARRY_DIR)

    @property
    def dev_node(self) -> str:
        """The device node the driver creates when it binds the chip."""
        return os.path.join(self.dev_dir, "hailo0")


def _read_json(path: str) -> dict:
    """A JSON object from `path`, or {} when the file is absent."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError("%s must hold a JSON object" % path)
    return data


def _derived(seed: str, what: str, length: int) -> str:
    """A stable upper-case hex string derived from a name (default SoC ID, ULT ID, Pi serial)."""
    return hashlib.sha256(("%s:%s" % (seed, what)).encode()).hexdigest().upper()[:length]


# The fields of a node's entry that belong to the Pi, not to the HAT: they stay when a HAT moves.
PI_FIELDS = ("node", "pi_serial", "pi_model", "pci_address")
PI5_MODEL = "Raspberry Pi 5 Model B Rev 1.0"


def unit_with_defaults(raw: dict) -> dict:
    """Complete a unit description with the documented defaults of its chip.

    The HAT's identity (SoC ID, ULT ID) derives from `hat`, the HAT's own name (default: the node it
    was first put in), so a HAT that moves to another node keeps it; the Pi's (`pi_serial`) derives
    from the node. A `serial` left empty is a board with none programmed, as Raspberry Pi's HATs are.
    """
    chip = raw.get("chip") or "hailo10h"
    if chip not in tables.CHIPS:
        raise ValueError("unknown chip %r (known: %s)" % (chip, ", ".join(sorted(tables.CHIPS))))
    unit = dict(tables.UNIT_DEFAULTS[chip])
    unit.update({k: v for k, v in raw.items() if v is not None})
    unit["chip"] = chip
    node = str(unit.get("node") or "node")
    unit["node"] = node
    hat = str(unit.get("hat") or node)
    unit["hat"] = hat
    if unit.get("soc_id") is None:
        unit["soc_id"] = _derived(hat, "soc", 64)
    if unit.get("ult_id") is None:
        unit["ult_id"] = _derived(hat, "ult", 24)
    unit["serial"] = unit.get("serial") or ""
    unit.update(pi_identity(unit))
    return unit


def pi_identity(unit: dict) -> dict:
    """The Pi's own serial (16 lower-case hex digits, as a Pi 5 reports it) and model, defaults derived from the node."""
    node = str(unit.get("node") or "node")
    return {"pi_serial": str(unit.get("pi_serial") or _derived(node, "pi", 16).lower()),
            "pi_model": str(unit.get("pi_model") or PI5_MODEL)}


def hat_of(unit: dict) -> dict:
    """A node entry's HAT fields (what moves with the HAT), its name (`hat`) made explicit."""
    hat = {k: v for k, v in unit.items() if k not in PI_FIELDS}
    hat["hat"] = str(unit.get("hat") or unit.get("node") or "node")
    return hat


def load_unit(paths: Paths) -> dict:
    """The unit mounted into this node, completed with defaults (a default Hailo-10H when absent)."""
    return unit_with_defaults(_read_json(os.path.join(paths.hw_dir, "unit.json")))


def load_power_epoch(paths: Paths):
    """The host's power epoch (a count of cold power-ons), or None where nothing records it."""
    try:
        with open(os.path.join(paths.hw_dir, POWER_EPOCH_FILE), encoding="utf-8") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return text or None


def load_time_scale(paths: Paths) -> float:
    """The fleet's time scale (1.0 on a real-time node); sleeps are multiplied by it."""
    value = _read_json(os.path.join(paths.hw_dir, "fleet.json")).get("time_scale", 1.0)
    scale = float(value)
    if scale < 0 or scale > 1:
        raise ValueError("time_scale must be within [0, 1], got %r" % value)
    return scale
