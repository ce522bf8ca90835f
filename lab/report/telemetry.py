"""A run's telemetry as the field report read it (PCIe link, power, CMA, the Pi's SoC, throttling, pre-flight),
summarised, and the run where CMA errors begin set beside the run where fps begins to fall. Pure: no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.pi import THROTTLED_BITS, decode_throttled

# sample columns read per benchmark run (the Pi's get_throttled text included); see series.py for how they attach
TELEMETRY = ("pcie_speed", "pcie_width", "pcie_max_speed", "pcie_max_width", "power_state", "aspm", "cma_free_kb",
             "cma_total_kb", "soc_temp", "arm_clock_mhz", "cma_errors", "throttled")
_BIT_ORDER = {name: bit for bit, name in THROTTLED_BITS.items()}


@dataclass
class CmaFall:
    """Where the chip's CMA alloc failures begin beside where fps begins to fall (benchmark numbers, 1-based)."""

    first_error_run: int | None  # first benchmark whose runtime log had new CMA `alloc failed` lines
    fall_run: int | None  # onset of the degradation, None when fps did not fall
    errors: int  # CMA alloc failures over the run
    measured: bool  # whether any benchmark run had its runtime log read (HailoRT 5.x only)
    sentence: str


@dataclass
class RunTelemetry:
    """One run's telemetry over its benchmarks: worst link against its maximum, ranges and minima, decoded flags."""

    width: tuple[int, int] | None = None  # (lowest, highest) negotiated lanes
    max_width: int | None = None
    speed: tuple[float, float] | None = None  # (lowest, highest) negotiated GT/s
    max_speed: float | None = None
    power_states: list[str] = field(default_factory=list)
    aspm: list[str] = field(default_factory=list)
    cma_free_min_kb: int | None = None
    cma_total_kb: int | None = None
    soc_temp: tuple[float, float] | None = None
    arm_clock_mhz: tuple[float, float] | None = None
    throttled: list[str] | None = None  # decoded names over the run; None when never read
    throttled_unreadable: list[str] = field(default_factory=list)
    cma_errors: dict[int, int] = field(default_factory=dict)  # benchmark number -> new CMA alloc failures

    @property
    def link_below_max(self) -> bool:
        """Whether the link ran, at some point, narrower or slower than the device and slot allow."""
        return bool((self.width and self.max_width and self.width[0] < self.max_width)
                    or (self.speed and self.max_speed and self.speed[0] < self.max_speed))

    @property
    def empty(self) -> bool:
        """Nothing was read."""
        return self == RunTelemetry()


def _number(value: Any) -> float | None:
    """A finite number, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        return None
    return float(value)


def cma_errors_of(readings: Mapping[int, Mapping[str, Any]]) -> dict[int, int]:
    """Benchmark number (1-based) -> new CMA alloc failures, for the benchmarks whose runtime log was read."""
    out = {}
    for position in sorted(readings):
        errors = _number(readings[position].get("cma_errors"))
        if errors is not None:
            out[position + 1] = int(errors)
    return out


_FINITE = (int, float)
_INF = (math.inf, -math.inf)


def summarize(readings: Mapping[int, Mapping[str, Any]]) -> RunTelemetry:
    """The run's telemetry from its readings (benchmark position, 0-based -> the TELEMETRY fields that were read)."""
    t = RunTelemetry()
    columns: dict[str, list[Any]] = {name: [] for name in TELEMETRY}
    for position in sorted(readings):
        for name, value in readings[position].items():
            if value is not None and name in columns:
                columns[name].append(value)
    t.cma_errors = cma_errors_of(readings)

    def span(name: str) -> tuple[float, float] | None:
        """(lowest, highest) of a numeric column, or None (not a number, NaN and infinities left out)."""
        values = [v for v in columns[name] if v.__class__ in _FINITE and v == v and v not in _INF]
        return (float(min(values)), float(max(values))) if values else None

    width = span("pcie_width")
    t.width = (int(width[0]), int(width[1])) if width else None
    max_width = span("pcie_max_width")
    t.max_width = int(max_width[1]) if max_width else None
    t.speed = span("pcie_speed")
    max_speed = span("pcie_max_speed")
    t.max_speed = max_speed[1] if max_speed else None
    t.power_states = list(dict.fromkeys(str(v) for v in columns["power_state"]))
    t.aspm = list(dict.fromkeys(str(v) for v in columns["aspm"]))
    free = span("cma_free_kb")
    t.cma_free_min_kb = int(free[0]) if free else None
    total = span("cma_total_kb")
    t.cma_total_kb = int(total[1]) if total else None
    t.soc_temp = span("soc_temp")
    t.arm_clock_mhz = span("arm_clock_mhz")
    if columns["throttled"]:
        names: set[str] = set()
        for text in dict.fromkeys(str(v) for v in columns["throttled"]):
            try:
                names.update(decode_throttled(text))
            except ValueError:
                t.throttled_unreadable.append(text)
        t.throttled = sorted(names, key=lambda n: (_BIT_ORDER.get(n, 99), n))
    return t


def cma_versus_fall(cma_errors: Mapping[int, int], fall_run: int | None) -> CmaFall:
    """The run where CMA errors begin beside the run where fps begins to fall, in one sentence.

    `cma_errors` maps benchmark number (1-based) to the new CMA `alloc failed` lines its runtime log had
    (empty when no log was read per run); `fall_run` is the degradation onset, None when fps held.
    """
    errors = sum(n for n in cma_errors.values() if n > 0)
    first = min((run for run, n in cma_errors.items() if n > 0), default=None)
    fall = f"fps falls from run {fall_run}" if fall_run is not None else "fps does not fall"
    if not cma_errors:
        return CmaFall(None, fall_run, 0, False, f"no runtime log read per benchmark run; {fall}")
    if first is None:
        return CmaFall(None, fall_run, 0, True, f"no CMA alloc failures; {fall}")
    head = f"CMA alloc failures from benchmark run {first} ({errors} in all); {fall}"
    if fall_run is not None:
        gap = fall_run - first
        head += (f" ({gap} run{'s' if gap != 1 else ''} after the first failure)" if gap > 0 else
                 " (the run of the first failure)" if gap == 0 else
                 f" ({-gap} run{'s' if gap != -1 else ''} before the first failure)")
    return CmaFall(first, fall_run, errors, True, head)


# --- formatting shared by every report format ---------------------------------------------------------------------

def _g(value: float) -> str:
    """A GT/s figure with one decimal (8.0, 16.0, 2.5)."""
    return f"{value:.1f}"


def _range(values: tuple[float, float] | None, digits: int, unit: str) -> str:
    """`52.1–61.3 °C`, a single value when it did not change, or an empty string."""
    if values is None:
        return ""
    low, high = (f"{v:.{digits}f}" for v in values)
    return f"{low}{unit}" if low == high else f"{low}–{high}{unit}"


def link_text(t: RunTelemetry) -> str:
    """`x1 of x4, 8.0 of 16.0 GT/s`; a link that changed over the run shows its range (`x1–x4 of x4`)."""
    parts = []
    if t.width:
        low, high = t.width
        now = f"x{low}" if low == high else f"x{low}–x{high}"
        parts.append(f"{now} of x{t.max_width}" if t.max_width else now)
    if t.speed:
        low, high = t.speed
        now = _g(low) if low == high else f"{_g(low)}–{_g(high)}"
        parts.append(f"{now} of {_g(t.max_speed)} GT/s" if t.max_speed else f"{now} GT/s")
    return ", ".join(parts)


def cma_text(t: RunTelemetry) -> str:
    """Host CMA at its lowest over the run: `51.2 of 64.0 MiB free`."""
    if t.cma_free_min_kb is None:
        return ""
    total = f" of {t.cma_total_kb / 1024:.1f}" if t.cma_total_kb else ""
    return f"{t.cma_free_min_kb / 1024:.1f}{total} MiB free"


def throttled_text(t: RunTelemetry) -> str:
    """The Pi's throttling flags seen over the run, by name; `none` when every reading was clear."""
    if t.throttled is None:
        return ""
    text = ", ".join(t.throttled) or "none"
    if t.throttled_unreadable:
        text += "; unreadable " + ", ".join(repr(v) for v in t.throttled_unreadable)
    return text


def telemetry_row(t: RunTelemetry) -> dict[str, str]:
    """The run's telemetry as the report's columns (empty strings where nothing was read)."""
    return {"link": link_text(t), "link_flag": "below max" if t.link_below_max else "",
            "power": "/".join(t.power_states), "aspm": "/".join(t.aspm), "cma": cma_text(t),
            "soc_temp": _range(t.soc_temp, 1, " °C"), "arm_clock": _range(t.arm_clock_mhz, 0, " MHz"),
            "throttled": throttled_text(t)}


def _holder(holder: Any) -> str:
    """Who holds the device: a process name with its pid, a service, or several."""
    if isinstance(holder, list):
        return ", ".join(_holder(h) for h in holder)
    if isinstance(holder, dict):
        name = next((str(holder[k]) for k in ("name", "comm", "process", "unit", "service") if holder.get(k)), "")
        pid = holder.get("pid")
        return f"{name} (pid {pid})" if name and pid is not None else name or (f"pid {pid}" if pid else str(holder))
    return str(holder)


def _device(pre: Mapping[str, Any]) -> str:
    """`0001:01:00.0 [1e60:45c4]` from whichever of bdf, vendor and device id the pre-flight recorded."""
    device = pre.get("device")
    found = dict(device) if isinstance(device, dict) else ({"bdf": device} if device else {})
    for key in ("bdf", "vendor", "device_id", "ids"):
        if key in pre and key not in found:
            found[key] = pre[key]
    ids = found.get("ids")
    if ids is None and found.get("vendor"):
        ids = f"{found['vendor']}:{found.get('device_id') or found.get('device') or '?'}"
    if isinstance(ids, (list, tuple)):
        ids = ":".join(map(str, ids))
    bdf = found.get("bdf") or found.get("address") or ""
    return " ".join(p for p in (str(bdf), f"[{ids}]" if ids else "") if p)


def _chip(check: Any) -> str:
    """The inventory's chip against the hardware's."""
    if isinstance(check, dict):
        expected, found = check.get("expected"), check.get("found")
        ok = check.get("ok", check.get("match"))
        if expected or found:
            verdict = "matches" if ok or (ok is None and expected == found) else "MISMATCH"
            return f"chip {found or '?'} {verdict} inventory {expected or '?'}"
        return "chip checked" if ok else "chip check failed"
    return f"chip {check}" if check else ""


def preflight_text(pre: Mapping[str, Any] | None, ready_s: float | None = None) -> str:
    """One line: `ready after 23.4 s; device 0001:01:00.0 [1e60:45c4]; free; chip hailo10h matches ...`."""
    pre = pre or {}
    ready_s = ready_s if ready_s is not None else _number(pre.get("ready_s"))
    parts = []
    if ready_s is not None:
        parts.append(f"ready after {ready_s:.1f} s")
    elif pre.get("ready") is False:
        parts.append("not ready")
    elif pre.get("ready"):
        parts.append("ready")
    device = _device(pre)
    if device:
        parts.append(f"device {device}")
    if "holder" in pre:
        parts.append(f"held by {_holder(pre['holder'])}" if pre["holder"] else "device free")
    chip = _chip(pre.get("chip") if "chip" in pre else pre.get("chip_check"))
    if chip:
        parts.append(chip)
    for key, value in pre.items():  # anything else it found, said plainly (a clock check, a service stopped)
        if key not in _PREFLIGHT_KEYS and isinstance(value, (str, int, float, bool)) and len(str(value)) <= 80:
            parts.append(f"{key.replace('_', ' ')} {'yes' if value is True else 'no' if value is False else value}")
    return "; ".join(parts)


_PREFLIGHT_KEYS = {"ready", "ready_s", "device", "bdf", "vendor", "device_id", "ids", "holder", "chip", "chip_check"}


def host_text(node: str, serial: str | None, model: str | None) -> str:
    """`node1 (Pi 5 Model B Rev 1.0, serial …a1b2c3d4)`: the node and the Pi it is."""
    what = [m for m in ((model or "").replace("Raspberry Pi", "Pi").strip(),
                        f"serial …{serial[-8:]}" if serial and len(serial) > 8 else
                        f"serial {serial}" if serial else "") if m]
    return f"{node} ({', '.join(what)})" if what else node
