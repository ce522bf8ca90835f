"""The Raspberry Pi's own identity (the host a HAT sits in): /proc/cpuinfo and the devicetree; stdlib only."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Dict, Optional

from lab.contract import PI_DEVICETREE_DIR
CPUINFO = "/proc/cpuinfo"

# The Raspberry Pi kernel's cpuinfo ends with `Revision\t: %04x`, `Serial\t\t: %s` and `Model\t\t: %s`.
# Case matters: an x86 host's cpuinfo has lower-case `model` (a number) and `model name` lines.
_CPUINFO_LINE = re.compile(r"^(?P<key>Serial|Model|Revision)\s*:\s*(?P<value>.*?)\s*$")


@dataclass
class PiIdentity:
    """Which Pi this is: serial and model, and where each source said what (None where it said nothing)."""

    serial: Optional[str] = None
    model: Optional[str] = None
    revision: Optional[str] = None
    cpuinfo_serial: Optional[str] = None
    cpuinfo_model: Optional[str] = None
    devicetree_serial: Optional[str] = None
    devicetree_model: Optional[str] = None

    def to_dict(self) -> Dict[str, Optional[str]]:
        """The identity as plain data."""
        return asdict(self)


def parse_cpuinfo(text: str) -> Dict[str, str]:
    """The Pi lines of /proc/cpuinfo (Serial, Model, Revision); empty on a machine that prints none."""
    found: Dict[str, str] = {}
    for line in text.splitlines():
        m = _CPUINFO_LINE.match(line)
        if m and m["value"]:
            found[m["key"]] = m["value"]
    return found


def devicetree_string(data: bytes) -> Optional[str]:
    """A devicetree string property (NUL-terminated) as text; None when empty."""
    text = data.split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return text or None


def pi_identity(cpuinfo: str, dt_serial: Optional[bytes], dt_model: Optional[bytes]) -> PiIdentity:
    """The Pi's identity from its sources: the devicetree first, /proc/cpuinfo where the devicetree is silent."""
    lines = parse_cpuinfo(cpuinfo)
    ident = PiIdentity(cpuinfo_serial=lines.get("Serial"), cpuinfo_model=lines.get("Model"),
                       revision=lines.get("Revision"),
                       devicetree_serial=devicetree_string(dt_serial) if dt_serial is not None else None,
                       devicetree_model=devicetree_string(dt_model) if dt_model is not None else None)
    ident.serial = ident.devicetree_serial or ident.cpuinfo_serial
    ident.model = ident.devicetree_model or ident.cpuinfo_model
    return ident


def _read(path: str) -> Optional[bytes]:
    """A file's bytes, or None when it cannot be read (absent on a machine without a devicetree)."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def read_pi_identity(devicetree_dir: str = PI_DEVICETREE_DIR, cpuinfo_path: str = CPUINFO) -> PiIdentity:
    """This machine's Pi identity (a virtual node's devicetree_dir is the fleet's stand-in, see docs/emulator.md)."""
    cpuinfo = _read(cpuinfo_path) or b""
    return pi_identity(cpuinfo.decode("utf-8", "replace"), _read(os.path.join(devicetree_dir, "serial-number")),
                       _read(os.path.join(devicetree_dir, "model")))
