"""All Hailo text parsers (public entry): chip runtime log and kernel driver log here, hailortcli re-exported.

Standard library only and Python >= 3.9: this package is copied alone onto nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from .hailortcli import (  # noqa: F401  (re-exported in __all__: callers import every parser from here)
    NUMBER,
    PCI_ADDRESS,
    THROTTLING_NONE,
    BenchmarkResult,
    ErrorsResult,
    HailoMessage,
    IdentifyResult,
    Record,
    Run2Result,
    RunResult,
    ScanResult,
    Temperature,
    ToolOutputError,
    VersionResult,
    numbered_lines,
    parse_benchmark,
    parse_errors,
    parse_identify,
    parse_run,
    parse_run2,
    parse_scan,
    parse_version,
    run_throttling,
)

__all__ = [
    "PARSERS", "ToolOutputError", "detect_kinds", "parse",
    "parse_benchmark", "parse_dmesg", "parse_errors", "parse_identify", "parse_run", "parse_run2",
    "parse_runtime_log", "parse_scan", "parse_version", "run_throttling",
    "BenchmarkResult", "Board", "CmaFailure", "DmesgEvent", "DmesgResult", "ErrorsResult", "HailoMessage",
    "IdentifyResult", "Run2Result", "RunResult", "RuntimeLogEntry", "RuntimeLogResult", "ScanResult",
    "Temperature", "VersionResult",
]


# --- hailortcli logs runtime (the chip-side Linux) -------------------------------------------

@dataclass
class RuntimeLogEntry(Record):
    """One chip-side syslog line: `host facility.level source: message`."""

    line: int
    host: str
    facility: str
    level: str
    source: str
    message: str
    event: Optional[str] = None


@dataclass
class CmaFailure(Record):
    """A chip-side `cma_alloc ... alloc failed` line (ret -16 is -EBUSY)."""

    line: int
    region: str
    pages: int
    ret: int


@dataclass
class RuntimeLogResult(Record):
    """`hailortcli logs runtime`: entries plus configure durations and CMA allocation failures."""

    entries: List[RuntimeLogEntry] = field(default_factory=list)
    host: Optional[str] = None
    firmware_version: Optional[str] = None
    os_version: Optional[str] = None
    configure_count: int = 0
    configure_ms: List[float] = field(default_factory=list)
    cma_failure_count: int = 0
    cma_failures: List[CmaFailure] = field(default_factory=list)


_FACILITY = r"kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|local[0-7]"
_LEVEL = r"emerg|alert|crit|err|error|warn|warning|notice|info|debug"
_RUNTIME = re.compile(
    r"^(?P<host>\S+) (?P<facility>" + _FACILITY + r")\.(?P<level>" + _LEVEL + r") "
    r"(?P<source>[^:\s][^:]*): (?P<message>.*?)\s*$"
)
_CMA = re.compile(r"cma_alloc: (?P<region>\S+): alloc failed, req-size: (?P<pages>\d+) pages, ret: (?P<ret>-?\d+)")
_CONFIGURE = re.compile(r"Configuring HEF on VDevice took (?P<ms>" + NUMBER + r") milliseconds")
_RT_FIRMWARE = re.compile(r"firmware_version is: (?P<v>\S+)")
_RT_OS = re.compile(r"OS Version: (?P<v>.+)$")


def parse_runtime_log(text: str) -> RuntimeLogResult:
    """Parse `hailortcli logs runtime`: flags cma_alloc failures and collects configure durations."""
    r = RuntimeLogResult()
    for number, line in numbered_lines(text):
        m = _RUNTIME.match(line)
        if not m:
            continue
        entry = RuntimeLogEntry(number, m["host"], m["facility"], m["level"], m["source"], m["message"])
        cma, conf = _CMA.search(entry.message), _CONFIGURE.search(entry.message)
        fw, os_version = _RT_FIRMWARE.search(entry.message), _RT_OS.search(entry.message)
        if cma:
            entry.event = "cma_alloc_failed"
            r.cma_failures.append(CmaFailure(number, cma["region"], int(cma["pages"]), int(cma["ret"])))
        elif conf:
            entry.event = "configure"
            r.configure_ms.append(float(conf["ms"]))
        elif fw:
            entry.event, r.firmware_version = "firmware_version", fw["v"]
        elif os_version:
            entry.event, r.os_version = "os_version", os_version["v"]
        r.entries.append(entry)
        r.host = r.host or entry.host
    if not r.entries:
        raise ToolOutputError("runtime-log", "not hailortcli logs runtime output (no 'host facility.level source:' line)")
    r.configure_count, r.cma_failure_count = len(r.configure_ms), len(r.cma_failures)
    return r


# --- kernel log of the hailo1x / hailo_pci drivers ------------------------------------------

@dataclass
class DmesgEvent(Record):
    """One kernel line of a Hailo PCIe driver, classified by `kind`."""

    line: int
    time: Optional[float]
    timestamp: Optional[str]
    host: Optional[str]
    driver: str
    device: Optional[str]
    kind: str
    message: str
    error_code: Optional[int] = None


@dataclass
class Board(Record):
    """A board the driver added: PCI id (`1e60-45c4`) and device node."""

    id: str
    dev_node: str


@dataclass
class DmesgResult(Record):
    """Driver lines from dmesg or journalctl; `outcome` is `ready`, `failed` or None (no verdict line)."""

    events: List[DmesgEvent] = field(default_factory=list)
    driver: Optional[str] = None
    module: Optional[str] = None
    driver_version: Optional[str] = None
    devices: List[str] = field(default_factory=list)
    firmware_load_ms: Optional[int] = None
    firmware_already_loaded: bool = False
    sku_id: Optional[int] = None
    boards: List[Board] = field(default_factory=list)
    error_codes: List[int] = field(default_factory=list)
    probe_failed: bool = False
    outcome: Optional[str] = None


# dmesg `[ 1.2]`, dmesg -T `[Thu Apr 30 05:08:01 2026]`, journalctl short / short-precise /
# short-iso `Apr 30 05:08:01 host kernel:` and short-monotonic `[ 1.2] host kernel:`
_PREFIX = re.compile(
    r"^(?:\[\s*(?P<mono>\d+\.\d+)\]\s*"
    r"|\[(?P<ctime>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\]\s*"
    r"|(?P<wall>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?"
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s+)?"
    r"(?:(?P<host>[\w.-]+) kernel(?:\[\d+\])?: )?"
)
_DRIVER_LINE = re.compile(
    r"^(?P<driver>hailo1x_pci|hailo1x|hailo_pci|hailo)(?: (?P<device>" + PCI_ADDRESS + r"))?: (?P<message>.*?)\s*$"
)
_MODULES = {"hailo": "hailo_pci", "hailo_pci": "hailo_pci", "hailo1x": "hailo1x_pci", "hailo1x_pci": "hailo1x_pci"}
_INIT = re.compile(r"driver version (?P<v>\S+)")
_ADDED = re.compile(r"Added board (?P<id>[0-9a-fA-F]{4}-[0-9a-fA-F]{4}), (?P<node>\S+)")
_SKU = re.compile(r"Board SKU-ID is: (?P<sku>\d+)")
_LOADED_MS = re.compile(r"Firmware loaded in (?P<ms>\d+) ms")
_FAIL = re.compile(r"\b(?:fail(?:ed|ure)?|timeout|could not|not found|unable)\b", re.IGNORECASE)
_CODE = re.compile(r"(?P<code>-\d+)\s*$")
_FATAL = re.compile(r"probe (?:with driver \S+|of \S+) failed|Firmware load failed|Failed activating board")


def _dmesg_kind(message: str) -> str:
    """Classify one driver message: init, probe, firmware, firmware_loaded, board_added, failure, other."""
    if message.startswith("Init module"):
        return "init"
    if _ADDED.search(message):
        return "board_added"
    if "already loaded" in message:
        return "firmware_already_loaded"
    if _LOADED_MS.search(message) or "Firmware was loaded successfully" in message:
        return "firmware_loaded"
    if _FAIL.search(message):
        return "failure"
    if message.startswith("Probing"):
        return "probe"
    if "irmware" in message or message.startswith(("Writing file", "File ")):
        return "firmware"
    return "other"


def parse_dmesg(text: str) -> DmesgResult:
    """Parse hailo1x / hailo_pci kernel lines (plain, timestamped or journalctl); other lines are ignored."""
    r = DmesgResult()
    for number, line in numbered_lines(text):
        prefix = _PREFIX.match(line)  # every group is optional: it always matches
        m = _DRIVER_LINE.match(line[prefix.end():]) if prefix else None
        if not prefix or not m:
            continue
        msg, kind = m["message"], _dmesg_kind(m["message"])
        code = _CODE.search(msg) if kind == "failure" else None
        event = DmesgEvent(
            number, float(prefix["mono"]) if prefix["mono"] else None, prefix["ctime"] or prefix["wall"],
            prefix["host"], m["driver"], m["device"], kind, msg, int(code["code"]) if code else None,
        )
        r.events.append(event)
        if event.device and event.device not in r.devices:
            r.devices.append(event.device)
        if event.error_code is not None and event.error_code not in r.error_codes:
            r.error_codes.append(event.error_code)
        if kind == "init" and (v := _INIT.search(msg)) is not None:
            r.driver_version = v["v"]
        elif kind == "board_added" and (added := _ADDED.search(msg)) is not None:
            r.boards.append(Board(added["id"], added["node"]))
            r.outcome = "ready"
        elif (sku := _SKU.search(msg)) is not None:
            r.sku_id = int(sku["sku"])
        elif kind == "firmware_already_loaded":
            r.firmware_already_loaded = True  # the chip kept its state: a driver reload, not a power cycle
        elif kind == "firmware_loaded" and (ms := _LOADED_MS.search(msg)) is not None:
            r.firmware_load_ms = int(ms["ms"])
        elif kind == "failure" and _FATAL.search(msg):
            r.outcome = "failed"
            r.probe_failed = r.probe_failed or msg.startswith("probe")
    if not r.events:
        raise ToolOutputError("dmesg", "no hailo1x or hailo_pci driver line in this kernel log")
    # `hailo_pci: loading out-of-tree module` names the module; per-device lines name the driver
    named = next((e for e in r.events if e.device), r.events[0])
    r.driver, r.module = named.driver, _MODULES[named.driver]
    return r


PARSERS: Dict[str, Callable[[str], Record]] = {
    "benchmark": parse_benchmark,
    "identify": parse_identify,
    "run": parse_run,
    "run2": parse_run2,
    "scan": parse_scan,
    "version": parse_version,
    "runtime-log": parse_runtime_log,
    "dmesg": parse_dmesg,
    "errors": parse_errors,
}


def parse(kind: str, text: str) -> Record:
    """Parse `text` as the output of `kind` (a key of PARSERS); raises ToolOutputError."""
    if kind not in PARSERS:
        raise ValueError("unknown kind {!r}; known: {}".format(kind, ", ".join(PARSERS)))
    return PARSERS[kind](text)


def detect_kinds(text: str) -> List[str]:
    """The kinds whose own output is in `text` (for suggesting a KIND); `errors` last, if it has HailoRT lines."""
    # HailoRT error lines alone are accepted by every hailortcli parser; they say nothing about the tool
    own = "\n".join(line for line in text.splitlines() if not line.startswith("[HailoRT"))
    kinds = []
    for kind, parser in PARSERS.items():
        try:
            parser(text if kind == "errors" else own)
        except ToolOutputError:
            continue
        kinds.append(kind)
    return kinds
