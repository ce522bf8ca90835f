"""Physical bounds of every number that enters lab: a value outside them is a broken tool or file, not a result.

The bounds are wide on purpose (docs/analysis.md, "Physical bounds"): they reject what no Hailo
device on a Raspberry Pi can report (an fps of 2e154, a chip at 900 °C, a negative run), never a
surprising but possible figure. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

INT32_MAX = 2**31 - 1  # the database's INTEGER columns


@dataclass(frozen=True)
class Bound:
    """The closed range a quantity can physically take, and its unit for messages."""

    low: float
    high: float
    unit: str
    whole: bool = False

    def problem(self, name: str, value: Any) -> str | None:
        """Why `value` cannot be this quantity (not a number, not finite, out of range), or None if it can."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} {_show(value)} is not a number"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name} {_show(value)} is not a finite number"
        if self.whole and isinstance(value, float) and not value.is_integer():
            return f"{name} {_show(value)} is not a whole number"
        if not self.low <= value <= self.high:
            return f"{name} {_show(value)} is outside {_show(self.low)}..{_show(self.high)}{self.unit}"
        return None


# A Hailo-8 runs its smallest model-zoo networks at a few thousand fps; 100,000 is far above any of them.
FPS = Bound(0.0, 100_000.0, " fps")
# Die and SoC sensors: silicon is rated -40..125 °C; a reading past 150 °C is a broken sensor or parse.
TEMP_C = Bound(-40.0, 150.0, " °C")
LATENCY_MS = Bound(0.0, 600_000.0, " ms")  # ten minutes for one frame is a hang, not a latency
POWER_W = Bound(0.0, 100.0, " W")  # the M.2 HATs draw a few watts; the Pi 5's supply gives 27 W in all
RUN = Bound(0, INT32_MAX, "", whole=True)  # some tools and sheets count runs from 0
COUNT = Bound(0, INT32_MAX, "", whole=True)
SECONDS = Bound(0.0, 1e9, " s")  # 31 years
PCIE_GTS = Bound(2.5, 64.0, " GT/s")  # PCIe 1.0 .. 6.0 per lane
PCIE_LANES = Bound(1, 32, " lanes", whole=True)
KB = Bound(0, 2**40, " kB", whole=True)  # a terabyte of CMA is past any Pi
CLOCK_MHZ = Bound(0.0, 10_000.0, " MHz")

# lab analyze CSV columns
CSV_BOUNDS: dict[str, Bound] = {"run": RUN, "fps": FPS, "temp": TEMP_C, "configures": COUNT, "inference_s": SECONDS}

# Agent record keys (lab/agent/records.py) that carry a measured or counted number
RECORD_BOUNDS: dict[str, Bound] = {
    "fps": FPS, "temp": TEMP_C, "temp_mean": TEMP_C, "temp_min": TEMP_C, "temp_max": TEMP_C,
    "run": RUN, "run_index": RUN, "step_index": COUNT, "configures": COUNT, "configure_count": COUNT,
    "uptime": SECONDS, "nominal_s": SECONDS,
    "pcie_speed": PCIE_GTS, "pcie_max_speed": PCIE_GTS, "pcie_width": PCIE_LANES, "pcie_max_width": PCIE_LANES,
    "cma_free_kb": KB, "cma_total_kb": KB, "soc_temp": TEMP_C, "arm_clock_mhz": CLOCK_MHZ, "cma_errors": COUNT,
}


def field_bound(path: tuple[str, ...]) -> Bound | None:
    """The bound of a parsed tool-output field, from its key path (e.g. ("temperature", "mean")), if any."""
    key = path[-1].lower() if path else ""
    parent = path[-2].lower() if len(path) > 1 else ""
    if "fps" in key or parent == "networks":
        return FPS
    if "temp" in key or "temp" in parent:
        return TEMP_C
    if key.endswith("_ms"):
        return LATENCY_MS
    if key.endswith("_w"):
        return POWER_W
    return None


def out_of_bounds(data: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any, str]]:
    """Every (key path, value, problem) in a parsed result whose bounded number is impossible."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from out_of_bounds(value, (*path, str(key)))
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            yield from out_of_bounds(value, (*path, str(i)))
    elif data is not None and not isinstance(data, (str, bool)):
        bound = field_bound(path)
        problem = bound.problem(".".join(path), data) if bound else None
        if problem:
            yield path, data, problem


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf(?:inity)?|nan)", re.IGNORECASE)


def line_of_number(text: str, value: float) -> int | None:
    """The first line (1-based) of `text` that shows `value` as a number, or None."""
    for number, line in enumerate(text.splitlines(), 1):
        for token in _NUMBER.findall(line):
            try:
                seen = float(token)
            except ValueError:
                continue
            if seen == value or (math.isnan(seen) and isinstance(value, float) and math.isnan(value)) or (
                    math.isfinite(seen) and math.isfinite(value) and math.isclose(seen, value, rel_tol=1e-9)):
                return number
    return None


def _show(value: Any) -> str:
    """A number as a person reads it (2.01e+154, 125.3, 100000); anything else as its repr."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)
