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

DEFAULT_HW_DIR = "/lab/hw"
DEFAULT_STATE_DIR = "/run/hailo-emu"
DEFAULT_FIRMWARE_DIR = "/lib/firmware"
DEFAULT_DEV_DIR = "/dev"
DEFAULT_JOURNAL = "/run/systemd/journal/socket"


class Paths:
    """Where the emulator reads hardware and firmware and keeps its state (each overridable by env)."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        self.hw_dir = env.get(HW_DIR_ENV, DEFAULT_HW_DIR)
        self.state_dir = env.get(STATE_DIR_ENV, DEFAULT_STATE_DIR)
        self.firmware_dir = env.get(FIRMWARE_DIR_ENV, DEFAULT_FIRMWARE_DIR)
        self.dev_dir = env.get(DEV_DIR_ENV, DEFAULT_DEV_DIR)
        self.journal_socket = env.get(JOURNAL_ENV, DEFAULT_JOURNAL)

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


def _derived(node: str, what: str, length: int) -> str:
    """A stable upper-case hex string derived from the node name (default serial and SoC ID)."""
    return hashlib.sha256(("%s:%s" % (node, what)).encode()).hexdigest().upper()[:length]


def unit_with_defaults(raw: dict) -> dict:
    """Complete a unit description with the documented defaults of its chip."""
    chip = raw.get("chip") or "hailo10h"
    if chip not in tables.CHIPS:
        raise ValueError("unknown chip %r (known: %s)" % (chip, ", ".join(sorted(tables.CHIPS))))
    unit = dict(tables.UNIT_DEFAULTS[chip])
    unit.update({k: v for k, v in raw.items() if v is not None})
    unit["chip"] = chip
    node = str(unit.get("node") or "node")
    unit["node"] = node
    if not unit.get("serial"):
        if chip == "hailo10h":
            unit["serial"] = _derived(node, "serial", 24)
        else:
            unit["serial"] = "HLDDLBB" + str(int(_derived(node, "serial", 12), 16))[-9:]
    if not unit.get("soc_id"):
        unit["soc_id"] = _derived(node, "soc", 64) if chip == "hailo10h" else ""
    return unit


def load_unit(paths: Paths) -> dict:
    """The unit mounted into this node, completed with defaults (a default Hailo-10H when absent)."""
    return unit_with_defaults(_read_json(os.path.join(paths.hw_dir, "unit.json")))


def load_time_scale(paths: Paths) -> float:
    """The fleet's time scale (1.0 on a real-time node); sleeps are multiplied by it."""
    value = _read_json(os.path.join(paths.hw_dir, "fleet.json")).get("time_scale", 1.0)
    scale = float(value)
    if scale < 0 or scale > 1:
        raise ValueError("time_scale must be within [0, 1], got %r" % value)
    return scale
