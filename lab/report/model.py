"""The campaign model: one campaign's runs, units, stacks, series and findings as plain dataclasses."""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lab.analysis import (Attribution, RecoveryAnalysis, RunSample, SeriesAnalysis, ThermalAnalysis,
                          VerdictCounts)
from lab.report.telemetry import TELEMETRY, CmaFall

PENDING = "pending"  # a run not finished yet: neither counted nor shown as a verdict
# A record's columns as the CSV and JSON exports list them (and the database loader reads them, in this order)
SAMPLE_COLUMNS = ("seq", "step", "step_index", "run_index", "ts", "fps", "temp", "temp_min", "temp_max",
                  "configure_count", "boot_id", "uptime", "nominal_s", "throttled", "chip_throttling", "error",
                  *(c for c in TELEMETRY if c != "throttled"))


def natural_key(text: str) -> list:
    """Sort key that puts node2 before node10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


@dataclass
class CampaignInfo:
    """What was run, where, when, and the command that reproduces it."""

    id: int
    name: str
    scenario: str
    scenario_text: str
    inventory: str | None
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    command_line: str | None
    exit_status: int | None
    reproduce: str
    models: dict[str, Any] = field(default_factory=dict)  # name -> sha256, md5, size (campaign.settings)


@dataclass
class StackInfo:
    """A pinned software stack: name and the HailoRT / driver / firmware versions."""

    id: int
    name: str
    chip: str | None
    hailort: str
    driver: str
    firmware: str


@dataclass
class UnitInfo:
    """One Hailo device (identity survives reinstalls) and the versions it reported."""

    key: str
    node: str
    serial: str | None = None
    soc_id: str | None = None
    chip: str | None = None
    board: str | None = None
    observed: list[dict[str, Any]] = field(default_factory=list)  # distinct identity reports
    identity: dict[str, Any] = field(default_factory=dict)  # identify --extended, as the chip reported it

    @property
    def label(self) -> str:
        """What the chip says it is, shortened: `SoC 3F7A01C2…D41E`, the serial, else (no identity) the node."""
        return unit_label(self.key, self.node)


def unit_label(key: str, node: str) -> str:
    """A unit key as a reader sees it: a SoC ID (64 hex digits) as its first 8 and last 4, a serial whole."""
    kind, _, value = key.partition(":")
    if kind == "soc" and value:
        return f"SoC {value[:8]}…{value[-4:]}" if len(value) > 16 else f"SoC {value}"
    if kind == "serial" and value:
        return value
    return value if kind == "node" and value else node


@dataclass
class PhaseInfo:
    """One phase of a run: status and the boot it ran in."""

    index: int
    name: str
    status: str
    boot_id: str | None
    error: str | None
    id: int | None = None
    preflight: dict[str, Any] | None = None  # what the pre-flight found before this phase measured
    ready_s: float | None = None  # seconds from boot until the node was ready to measure


@dataclass
class PowerInfo:
    """A power cycle the controller made in a run: in which phase, why, and whether the node booted anew."""

    phase: str
    recovery: bool  # to bring back a lost node (else the phase's own power_cycle)
    reason: str
    ok: bool
    detail: str
    waited_s: float | None = None


@dataclass
class ArtifactInfo:
    """Raw tool output or a log kept whole, without its bytes (those are fetched only for HTML)."""

    id: int
    run_index: int | None
    node: str | None
    name: str
    kind: str
    sha256: str
    size: int
    path: str | None


@dataclass
class Segment:
    """A stretch of a run's benchmarks: `soak` (fresh since boot) or `probe` after a recovery action."""

    kind: str
    boot: int
    action: str | None
    start: int
    stop: int
    lead: int = 0  # benchmarks at the start, before any other workload (a reboot's probe)
    lead_open: bool = True
    failure: str | None = None


@dataclass
class Series:
    """A run's benchmarks in record order, as arrays (no object per sample); NaN marks a missing value."""

    fps: array = field(default_factory=lambda: array("d"))
    temp: array = field(default_factory=lambda: array("d"))
    configures: array = field(default_factory=lambda: array("l"))
    inference_s: array = field(default_factory=lambda: array("d"))
    phase: array = field(default_factory=lambda: array("i"))
    throttling: array = field(default_factory=lambda: array("b"))  # the chip's own report: 1, 0, or -1 for none
    errors: dict[int, str] = field(default_factory=dict)
    flagged: dict[int, str] = field(default_factory=dict)  # benchmark position -> values outside physical bounds
    flagged_other: list[str] = field(default_factory=list)  # the same for records of other steps
    segments: list[Segment] = field(default_factory=list)
    marks: list[tuple[int, str]] = field(default_factory=list)  # (benchmark position, action) before it
    boot_causes: dict[int, str] = field(default_factory=dict)  # boot number -> reboot | power_cycle | recovery
    configure_phases: set[int] = field(default_factory=set)
    infer_phases: set[int] = field(default_factory=set)
    failure: tuple[int, str] | None = None  # (phase, error) of a device failure outside a recovery probe
    # benchmark position -> the telemetry read with it (the TELEMETRY columns that were set; see series.py)
    telemetry: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        """How many benchmarks the run recorded."""
        return len(self.fps)

    def samples(self, start: int = 0, stop: int | None = None, phases: set[int] | None = None) -> list[RunSample]:
        """Benchmarks with an fps as RunSamples, numbered 1.. over the whole run."""
        stop = len(self.fps) if stop is None else stop
        out: list[RunSample] = []
        append = out.append
        rows = zip(range(start + 1, stop + 1), self.fps[start:stop], self.temp[start:stop],
                   self.configures[start:stop], self.inference_s[start:stop], self.phase[start:stop],
                   self.throttling[start:stop])
        for run, fps, temp, configures, inference, phase, throttling in rows:
            if fps != fps or (phases is not None and phase not in phases):  # NaN: no fps
                continue
            append(RunSample(run, fps, None if temp != temp else temp, configures, inference,
                             None if throttling < 0 else bool(throttling)))
        return out

    def fps_values(self, start: int, stop: int) -> list[float]:
        """The fps of benchmarks [start, stop) that gave one."""
        return [fps for fps in self.fps[start:stop] if fps == fps]


@dataclass
class RunInfo:
    """One cell of the matrix: a node with one stack for one repeat, its phases and its benchmarks."""

    id: int
    index: int
    node: str
    unit_key: str
    stack_id: int
    repeat: int
    status: str
    recorded_verdict: str | None
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    phases: list[PhaseInfo] = field(default_factory=list)
    series: Series = field(default_factory=Series)
    identity: dict[str, Any] = field(default_factory=dict)
    system: dict[str, Any] = field(default_factory=dict)  # installed versions, kernel, DKMS (last phase start)
    host_serial: str | None = None  # the Pi this run's HAT sat in
    host_model: str | None = None
    executor: str | None = None  # the execution node its phases went through (None: the controller's own)
    power: list[PowerInfo] = field(default_factory=list)  # power cycles, in order


@dataclass
class RunFinding:
    """The verdict of one run and the analyses behind it."""

    verdict: str
    reason: str
    series: SeriesAnalysis | None = None
    thermal: ThermalAnalysis | None = None
    recovery: RecoveryAnalysis | None = None
    attribution: Attribution | None = None
    cma: CmaFall | None = None  # where the chip's CMA alloc failures begin beside where fps falls


@dataclass
class Cell:
    """One unit x stack: k of n runs degraded with its Wilson interval."""

    unit_key: str
    stack_id: int
    counts: VerdictCounts
    runs: list[int]


@dataclass
class StackTotal:
    """One stack over the fleet: runs k of n, and units with at least one degraded run."""

    stack_id: int
    counts: VerdictCounts
    units_degraded: int
    units_tested: int


@dataclass
class CampaignFinding:
    """A campaign-wide answer (thermal, trigger): the verdict, per-run tallies and why."""

    verdict: str
    counts: dict[str, int]
    reason: str


@dataclass
class ActionFinding:
    """What one recovery action did over the campaign's degraded runs."""

    action: str
    tested: int
    recovered: int
    partial: int
    not_recovered: int
    device_error: int
    device_error_all: int  # device errors over every run, degraded or not
    restores: bool


@dataclass
class Findings:
    """Every computed answer: per run, per unit x stack, per stack and per campaign."""

    runs: dict[int, RunFinding]
    cells: list[Cell]
    stacks: list[StackTotal]
    total: VerdictCounts
    thermal: CampaignFinding
    trigger: CampaignFinding
    recovery: list[ActionFinding]


@dataclass
class CampaignModel:
    """Everything a report shows about one campaign."""

    campaign: CampaignInfo
    units: dict[str, UnitInfo]
    stacks: dict[int, StackInfo]
    runs: list[RunInfo]
    artifacts: list[ArtifactInfo]
    sample_count: int
    findings: Findings | None = None
