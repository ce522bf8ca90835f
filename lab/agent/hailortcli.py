"""Parsers for `hailortcli` output (benchmark, identify, run, run2, scan, --version, HailoRT log lines); stdlib only."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

NUMBER = r"-?\d+(?:\.\d+)?"
PCI_ADDRESS = r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"


class ToolOutputError(ValueError):
    """Text that is not the output of the tool it was said to be (the CLI turns it into ParseError)."""

    def __init__(self, kind: str, what: str):
        super().__init__(what)
        self.kind = kind
        self.what = what


class Record:
    """Mixin: a parsed record converts itself to plain JSON-ready data."""

    def to_dict(self) -> dict:
        """Return the record as nested dicts and lists (dataclasses.asdict)."""
        return asdict(self)  # type: ignore[call-overload]


@dataclass
class Temperature(Record):
    """Chip temperature over one measurement, in degrees Celsius."""

    mean: Optional[float] = None
    min: Optional[float] = None
    max: Optional[float] = None


@dataclass
class HailoMessage(Record):
    """One `[HailoRT] [level] ...` or `[HailoRT CLI] [level] ...` line, classified."""

    line: int
    source: str
    level: str
    message: str
    event: str = "other"
    status: Optional[str] = None
    status_code: Optional[int] = None
    temperatures_c: List[float] = field(default_factory=list)
    zone: Optional[str] = None
    clock_from_hz: Optional[int] = None
    clock_to_hz: Optional[int] = None
    driver_version: Optional[str] = None
    library_version: Optional[str] = None
    throttling_state: Optional[str] = None


_MSG = re.compile(r"^\[(?P<source>HailoRT(?: CLI)?)\] \[(?P<level>[a-z]+)\] (?P<message>.*?)\s*$")
_STATUS = re.compile(r"\b(?P<name>HAILO_[A-Z0-9_]+)\((?P<code>\d+)\)")
_MISMATCH = re.compile(r"Driver version \((?P<driver>[^)]+)\) is different from library version \((?P<lib>[^)]+)\)")
_ZONE = re.compile(r"temperature reached (?P<zone>\w+) zone")
_CLOCK = re.compile(r"clock has been changed from (?P<old>\d+) to (?P<new>\d+)")
# libhailort >= 5.2.0 logs each throttling-state change the chip notifies (device.cpp, default callback)
_THROTTLING = re.compile(r"throttling state is now: (?P<state>THROTTLING_[A-Z0-9_]+)")
THROTTLING_NONE = "THROTTLING_NONE"
_TS = re.compile(r"\bTS\d+=(?P<t>" + NUMBER + r")\s*c\b", re.IGNORECASE)


def _message(number: int, line: str) -> Optional[HailoMessage]:
    """Classify one HailoRT log line, or None when the line is not one."""
    m = _MSG.match(line)
    if not m:
        return None
    msg = HailoMessage(number, m["source"], m["level"], m["message"])
    text = msg.message
    status = _STATUS.search(text)
    if status:
        msg.status, msg.status_code = status["name"], int(status["code"])
    msg.temperatures_c = [float(t) for t in _TS.findall(text)]
    mismatch, zone, clock = _MISMATCH.search(text), _ZONE.search(text), _CLOCK.search(text)
    throttling = _THROTTLING.search(text)
    if mismatch:
        msg.event, msg.driver_version, msg.library_version = "driver_version_mismatch", mismatch["driver"], mismatch["lib"]
    elif "not enough free devices" in text:
        msg.event = "no_free_device"
    elif "command is not supported" in text:
        msg.event = "unsupported_command"
    elif zone:
        msg.event, msg.zone = "temperature_zone", zone["zone"]
    elif clock:
        msg.event, msg.clock_from_hz, msg.clock_to_hz = "clock_changed", int(clock["old"]), int(clock["new"])
    elif throttling:
        msg.event, msg.throttling_state = "throttling_state", throttling["state"]
    elif "closed streams" in text:
        msg.event = "closed_streams"
    elif status:
        msg.event = "status"
    return msg


def numbered_lines(text: str) -> List[Tuple[int, str]]:
    """Number the lines from 1, without line endings."""
    return list(enumerate(text.splitlines(), start=1))


def _messages(text: str) -> List[HailoMessage]:
    """Every HailoRT log line of a text (tools print them among their normal output)."""
    found = (_message(n, line) for n, line in numbered_lines(text))
    return [m for m in found if m is not None]


def _failed(messages: List[HailoMessage]) -> bool:
    """Whether the tool reported an error: a failed tool prints only HailoRT lines, still its output."""
    return any(m.level in ("error", "critical") for m in messages)


def _statuses(messages: List[HailoMessage]) -> Dict[str, int]:
    """HAILO_* status names and numbers, in order of first appearance."""
    return {m.status: m.status_code for m in messages if m.status is not None and m.status_code is not None}


# --- hailortcli benchmark ------------------------------------------------------------------

@dataclass
class BenchmarkResult(Record):
    """`hailortcli benchmark`: 5.x short Summary (Hailo-10H) or 4.x long Summary (Hailo-8)."""

    format: Optional[str] = None
    network: Optional[str] = None
    fps: Optional[float] = None
    networks: Dict[str, float] = field(default_factory=dict)
    fps_hw_only: Optional[float] = None
    fps_streaming: Optional[float] = None
    latency_hw_ms: Optional[float] = None
    device: Optional[str] = None
    temperature: Optional[Temperature] = None
    power_avg_w: Optional[float] = None
    power_max_w: Optional[float] = None
    power_supported: Optional[bool] = None
    throttling_states: List[str] = field(default_factory=list)
    messages: List[HailoMessage] = field(default_factory=list)
    statuses: Dict[str, int] = field(default_factory=dict)


_NET_FPS = re.compile(r"^(?P<net>\S+): FPS: (?P<fps>" + NUMBER + r")\s*$")
_TEMP = re.compile(
    r"^\s+temperature: mean=(?P<mean>" + NUMBER + r") min=(?P<min>" + NUMBER + r") max=(?P<max>" + NUMBER + r")\s*$"
)
_DEVICE = re.compile(r"^(?:Device )?(?P<dev>" + PCI_ADDRESS + r"):\s*$")
_FPS_HW = re.compile(r"^FPS\s+\(hw_only\)\s+=\s+(?P<v>" + NUMBER + ")")
_FPS_STREAM = re.compile(r"^(?:FPS)?\s+\(streaming\)\s+=\s+(?P<v>" + NUMBER + ")")
_LATENCY = re.compile(r"^Latency\s+\(hw\)\s+=\s+(?P<v>" + NUMBER + r")\s*ms")
_POWER_AVG = re.compile(r"Power in streaming mode \(average\)\s+=\s+(?P<v>" + NUMBER + r")\s*W")
_POWER_MAX = re.compile(r"^\s+\(max\)\s+=\s+(?P<v>" + NUMBER + r")\s*W")
_PROGRESS = re.compile(r"^Network (?P<net>\S+): +\d+% \| +\d+ \| (?:FPS: (?P<fps>" + NUMBER + r"))?")
# 4.x benchmark sections (benchmark_command.cpp): each progress bar's FPS belongs to the mode measured
_SECTIONS = (("Measuring FPS in HW-only mode", "hw_only"), ("Measuring FPS (and Power", "streaming"),
             ("Measuring HW Latency", "latency"))
_NOT_SUPPORTED = re.compile(r"^Measurement power is not supported")


def parse_benchmark(text: str) -> BenchmarkResult:
    """Parse `hailortcli benchmark` output; fps is the 5.x FPS line, else the 4.x streaming figure.

    The output is read whatever the tool's exit code: a 4.x run that fails after a mode's progress bar
    printed its FPS (the latency measurement, say) still has that figure.
    """
    r = BenchmarkResult(messages=_messages(text))
    measuring, section = False, None
    for _, line in numbered_lines(text):
        if line.startswith(("Starting Measurements", "Measuring ")):
            measuring = True  # `run` prints the same progress lines, only benchmark prints these
            section = next((name for head, name in _SECTIONS if line.startswith(head)), section)
        elif (m := _PROGRESS.match(line)) is not None:
            r.network = r.network or m["net"]
            # 4.x prints each mode's FPS on its bar before the Summary; a run that fails later (exit
            # non-zero, no Summary) keeps these. The Summary's figures, printed last, replace them.
            if m["fps"] is not None and section == "hw_only":
                r.fps_hw_only, r.format = float(m["fps"]), "hailort-4"
            elif m["fps"] is not None and section == "streaming":
                r.fps_streaming, r.format = float(m["fps"]), "hailort-4"
        elif (m := _NET_FPS.match(line)) is not None:
            r.networks[m["net"]], r.format = float(m["fps"]), "hailort-5"
        elif (m := _TEMP.match(line)) is not None and r.temperature is None:
            r.temperature = Temperature(float(m["mean"]), float(m["min"]), float(m["max"]))
        elif (m := _DEVICE.match(line)) is not None and r.device is None:
            r.device = m["dev"]
        elif (m := _FPS_HW.match(line)) is not None:
            r.fps_hw_only, r.format = float(m["v"]), "hailort-4"
        elif (m := _FPS_STREAM.match(line)) is not None:
            r.fps_streaming, r.format = float(m["v"]), "hailort-4"
        elif (m := _LATENCY.match(line)) is not None:
            r.latency_hw_ms = float(m["v"])
        elif (m := _POWER_AVG.search(line)) is not None:
            r.power_avg_w, r.power_supported = float(m["v"]), True
        elif (m := _POWER_MAX.match(line)) is not None:
            r.power_max_w = float(m["v"])
        elif _NOT_SUPPORTED.match(line):
            r.power_supported = False
    if r.networks:
        r.network, r.fps = next(iter(r.networks.items()))
    elif r.format == "hailort-4":
        # streaming is host-to-host throughput, what the 5.x FPS line also measures
        r.fps = r.fps_streaming if r.fps_streaming is not None else r.fps_hw_only
    if r.format is None and not measuring and not _failed(r.messages):
        raise ToolOutputError("benchmark", "not hailortcli benchmark output (no FPS summary, measurement or HailoRT error)")
    r.statuses = _statuses(r.messages)
    r.throttling_states = [m.throttling_state for m in r.messages if m.throttling_state is not None]
    return r


def run_throttling(states: List[str], before: Optional[str]) -> Tuple[Optional[bool], Optional[str]]:
    """Whether the chip throttled during one run, and its throttling state at the end of it.

    `states` are the throttling-state changes the tool logged during the run, oldest first; `before` is
    the state the chip was last reported in before the run (None: unknown). Every change has a throttling
    side (into or out of a THROTTLING_* state other than NONE), so a run that logged one throttled for part
    of it. A run without a change stayed in `before`. The chip notifies changes only, and only to a process
    holding the device: with nothing reported yet, or after time nobody watched, the answer is None.
    """
    if states:
        return True, states[-1]
    if before is None:
        return None, None
    return before != THROTTLING_NONE, before


# --- hailortcli fw-control identify ---------------------------------------------------------

@dataclass
class IdentifyResult(Record):
    """`hailortcli fw-control identify [--extended]`: every field optional.

    4.19-4.21 print `<N/A>` for an unset serial, part or product name and 4.22+ / 5.x print no such
    line; either way the field is None here (`<N/A>` is the tool's "not configured", never a value).
    `extended` says whether the --extended fields were printed (SoC ID, ULT ID, LCS, board SKU, ...).
    """

    device: Optional[str] = None
    control_protocol_version: Optional[int] = None
    firmware_version: Optional[str] = None
    firmware_flags: List[str] = field(default_factory=list)
    logger_version: Optional[int] = None
    board_name: Optional[str] = None
    architecture: Optional[str] = None
    serial_number: Optional[str] = None
    part_number: Optional[str] = None
    product_name: Optional[str] = None
    extended: bool = False
    boot_source: Optional[str] = None
    nn_clock_mhz: Optional[int] = None
    supported_features: List[str] = field(default_factory=list)
    lcs: Optional[int] = None
    soc_id: Optional[str] = None
    mac_address: Optional[str] = None
    ult_id: Optional[str] = None
    pm_values: Optional[str] = None
    gpio_mask: Optional[str] = None
    board_sku: Optional[str] = None
    messages: List[HailoMessage] = field(default_factory=list)
    statuses: Dict[str, int] = field(default_factory=dict)


NOT_CONFIGURED = "<N/A>"  # hailortcli <= 4.21: an identify attribute the board does not have
_IDENTIFY_KEYS = {
    "Control Protocol Version": "control_protocol_version",
    "Firmware Version": "firmware_version",
    "Logger Version": "logger_version",
    "Board Name": "board_name",
    "Device Architecture": "architecture",
    "Serial Number": "serial_number",
    "Part Number": "part_number",
    "Product Name": "product_name",
}
# --extended (fw_control_command.cpp print_extended_device_information; the SKU line's name per 5.x release)
_EXTENDED_KEYS = {
    "Boot source": "boot_source",
    "Neural Network Core Clock Rate": "nn_clock_mhz",
    "Device supported features": "supported_features",
    "LCS": "lcs",
    "SoC ID": "soc_id",
    "MAC Address": "mac_address",
    "ULT ID": "ult_id",
    "PM Values": "pm_values",
    "GPIO Mask": "gpio_mask",
    "SKU-ID": "board_sku",
    "board SKU-ID": "board_sku",
    "Board SKU-ID": "board_sku",
}
_KEY_VALUE = re.compile(r"^(?P<key>[A-Za-z][A-Za-z -]*?):\s*(?P<value>.*?)\s*$")
_EXECUTING = re.compile(r"^Executing on device: (?P<dev>\S+)")
_FIRMWARE = re.compile(r"^(?P<version>\S+)(?:\s*\((?P<flags>[^)]*)\))?$")
# 4.22 and 4.23 print a set LCS without its newline, so the next field follows on the same line
_LCS = re.compile(r"^(?P<lcs>\d+|<N/A>)(?P<rest>.*)$")
_MHZ = re.compile(r"^(?P<mhz>\d+)(?:\.\d+)?\s*MHz$")


def _identify_value(name: str, value: Optional[str]):
    """One identify field's value as stored: numbers as int, `<N/A>` and empty as None."""
    if value is None or value == NOT_CONFIGURED:
        return None
    if name in ("control_protocol_version", "logger_version", "lcs"):
        return int(value) if value.isdigit() else None
    if name == "nn_clock_mhz":
        mhz = _MHZ.match(value)
        return int(mhz["mhz"]) if mhz else None
    return value


def parse_identify(text: str) -> IdentifyResult:
    """Parse `hailortcli fw-control identify [--extended]`; the firmware version is split into version + flags."""
    r = IdentifyResult(messages=_messages(text))
    seen = False
    pending = [line for _, line in numbered_lines(text)]
    pending.reverse()
    while pending:
        line = pending.pop()
        executing, kv = _EXECUTING.match(line), _KEY_VALUE.match(line)
        if executing:
            r.device = executing["dev"]
            continue
        if not kv or (kv["key"] not in _IDENTIFY_KEYS and kv["key"] not in _EXTENDED_KEYS):
            continue
        seen = True
        key, value = kv["key"], kv["value"].replace("\x00", "").strip() or None
        if key in _EXTENDED_KEYS:
            r.extended = True
            name = _EXTENDED_KEYS[key]
            if name == "lcs" and value:
                lcs = _LCS.match(value)
                if lcs and lcs["rest"]:
                    value = lcs["lcs"]
                    pending.append(lcs["rest"])
            if name == "supported_features":
                r.supported_features = [f.strip() for f in (value or "").split(",") if f.strip()]
            else:
                setattr(r, name, _identify_value(name, value))
            continue
        name = _IDENTIFY_KEYS[key]
        if name == "firmware_version" and value:
            fw = _FIRMWARE.match(value)
            r.firmware_version = fw["version"] if fw else value
            if fw and fw["flags"]:
                r.firmware_flags = [f.strip() for f in fw["flags"].split(",") if f.strip()]
        else:
            setattr(r, name, _identify_value(name, value))
    if not seen and not _failed(r.messages):
        raise ToolOutputError("identify", "not hailortcli fw-control identify output (no identify field or HailoRT error)")
    r.statuses = _statuses(r.messages)
    return r


# --- hailortcli run2 / run / scan / --version -----------------------------------------------

@dataclass
class Run2Result(Record):
    """`hailortcli run2`: one `<net>: fps: <n>` line per network."""

    network: Optional[str] = None
    fps: Optional[float] = None
    networks: Dict[str, float] = field(default_factory=dict)
    messages: List[HailoMessage] = field(default_factory=list)
    statuses: Dict[str, int] = field(default_factory=dict)


_RUN2_FPS = re.compile(r"^(?P<net>\S+): fps: (?P<fps>" + NUMBER + r")\s*$")


def parse_run2(text: str) -> Run2Result:
    """Parse `hailortcli run2` output (lower-case `fps:`, unlike benchmark's `FPS:`)."""
    r = Run2Result(messages=_messages(text))
    for _, line in numbered_lines(text):
        m = _RUN2_FPS.match(line)
        if m:
            r.networks[m["net"]] = float(m["fps"])
    if r.networks:
        r.network, r.fps = next(iter(r.networks.items()))
    elif not _failed(r.messages):
        raise ToolOutputError("run2", "not hailortcli run2 output (no '<network>: fps:' line or HailoRT error)")
    r.statuses = _statuses(r.messages)
    return r


@dataclass
class RunResult(Record):
    """`hailortcli run [--measure-temp]` (HailoRT 4.x): inference result and chip temperatures."""

    hef: Optional[str] = None
    network: Optional[str] = None
    frames: Optional[int] = None
    fps: Optional[float] = None
    send_rate_mbit_s: Optional[float] = None
    recv_rate_mbit_s: Optional[float] = None
    device: Optional[str] = None
    temperature: Optional[Temperature] = None
    messages: List[HailoMessage] = field(default_factory=list)
    statuses: Dict[str, int] = field(default_factory=dict)


_RUN_FIELDS = re.compile(
    r"^\s*(?P<key>Network group|Frames count|FPS|Send Rate|Recv Rate|Device"
    r"|Minimum chip temperature|Average chip temperature|Maximum chip temperature): (?P<value>\S+)"
)
_RUN_HEADER = re.compile(r"^Running streaming inference \((?P<hef>.*)\):\s*$")
_NUMBER_PREFIX = re.compile(NUMBER)


def _leading_number(value: str) -> Optional[float]:
    """The number a value starts with (`35.3433C`, `1814.58`), or None."""
    m = _NUMBER_PREFIX.match(value)
    return float(m.group(0)) if m else None


def parse_run(text: str) -> RunResult:
    """Parse `hailortcli run` output: the `> Inference result:` block and `--measure-temp` lines."""
    r = RunResult(messages=_messages(text))
    seen = False
    for _, line in numbered_lines(text):
        header, m = _RUN_HEADER.match(line), _RUN_FIELDS.match(line)
        if header:
            r.hef, seen = header["hef"], True
        elif line.startswith("> Inference result:"):
            seen = True
        elif m and seen:
            key, value = m["key"], m["value"]
            number = _leading_number(value)
            if key == "Network group":
                r.network = r.network or value
            elif key == "Frames count" and number is not None:
                r.frames = int(number)
            elif key == "FPS":
                r.fps = number
            elif key in ("Send Rate", "Recv Rate"):
                setattr(r, "send_rate_mbit_s" if key == "Send Rate" else "recv_rate_mbit_s", number)
            elif key == "Device":
                r.device = value
            else:
                r.temperature = r.temperature or Temperature()
                setattr(r.temperature, {"Minimum": "min", "Average": "mean", "Maximum": "max"}[key.split()[0]], number)
    if not seen and not _failed(r.messages):
        raise ToolOutputError(
            "run", "not hailortcli run output (no 'Running streaming inference', result block or HailoRT error)"
        )
    r.statuses = _statuses(r.messages)
    return r


@dataclass
class ScanResult(Record):
    """`hailortcli scan`: the PCIe addresses of the devices found."""

    devices: List[str] = field(default_factory=list)
    messages: List[HailoMessage] = field(default_factory=list)
    statuses: Dict[str, int] = field(default_factory=dict)


_SCAN_DEVICE = re.compile(r"^\[-\] Device: (?P<dev>\S+)")


def parse_scan(text: str) -> ScanResult:
    """Parse `hailortcli scan` output."""
    r = ScanResult(messages=_messages(text))
    header = False
    for _, line in numbered_lines(text):
        m = _SCAN_DEVICE.match(line)
        if m:
            r.devices.append(m["dev"])
        header = header or line.strip() == "Hailo Devices:"
    if not header and not r.devices and not _failed(r.messages):
        raise ToolOutputError("scan", "not hailortcli scan output (no 'Hailo Devices:', '[-] Device:' or HailoRT error)")
    r.statuses = _statuses(r.messages)
    return r


@dataclass
class VersionResult(Record):
    """`hailortcli --version`: `HailoRT-CLI version 5.3.0`."""

    tool: str
    version: str


_VERSION = re.compile(r"^(?P<tool>HailoRT-CLI|HailoRT) version (?P<version>\d+\.\d+\.\d+\S*)\s*$")


def parse_version(text: str) -> VersionResult:
    """Parse `hailortcli --version` output."""
    for _, line in numbered_lines(text):
        m = _VERSION.match(line.strip())
        if m:
            return VersionResult(m["tool"], m["version"])
    raise ToolOutputError("version", "not hailortcli --version output (no 'HailoRT-CLI version X.Y.Z' line)")


# --- HailoRT error lines ---------------------------------------------------------------------

@dataclass
class ErrorsResult(Record):
    """HailoRT / HailoRT CLI log lines: statuses, version mismatch, health-monitor warnings."""

    messages: List[HailoMessage] = field(default_factory=list)
    statuses: Dict[str, int] = field(default_factory=dict)
    max_temperature_c: Optional[float] = None


def parse_errors(text: str) -> ErrorsResult:
    """Parse the `[HailoRT] [level] ...` lines of any text (other lines are ignored)."""
    messages = _messages(text)
    if not messages:
        raise ToolOutputError("errors", "no HailoRT log line ('[HailoRT] [level] ...')")
    temps = [t for m in messages for t in m.temperatures_c]
    return ErrorsResult(messages, _statuses(messages), max(temps) if temps else None)
