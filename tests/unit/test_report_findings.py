"""Report findings from agent records (no database): boots, recovery probes, attribution, verdict rules."""

from __future__ import annotations

import math

import pytest

from lab.report.findings import compute_findings, run_finding
from lab.report.model import CampaignInfo, CampaignModel, PhaseInfo, RunInfo, StackInfo, UnitInfo
from lab.report.series import SeriesBuilder
from lab.report.synthetic import SEED_FPS, SEED_TEMP


class Records:
    """Agent records of one run, written the way the node agent writes them, fed to a SeriesBuilder."""

    def __init__(self) -> None:
        self.builder = SeriesBuilder()
        self.phase, self.boot, self.nominal = -1, None, 0.0
        self.phases: list[PhaseInfo] = []

    def start(self, name: str, boot: str, status: str = "ok", error: str | None = None,
              boot_cause: str | None = None) -> Records:
        self.phase, self.boot, self.nominal = self.phase + 1, boot, 0.0
        self.phases.append(PhaseInfo(self.phase, name, status, boot, error))
        self.add("phase_start", **({"boot_cause": boot_cause} if boot_cause else {}))
        return self

    def add(self, step: str, fps: float | None = None, temp: float | None = None, error: str | None = None,
            seconds: float = 0.0, step_index: int | None = None, **extra) -> Records:
        self.nominal += seconds
        self.builder.add(step, self.phase, fps, temp, self.boot, self.nominal, error, extra or None, step_index)
        return self

    def bench(self, *fps: float, temps: tuple[float, ...] = ()) -> Records:
        for i, value in enumerate(fps):
            self.add("benchmark", value, temps[i] if i < len(temps) else None, seconds=15.0)
        return self

    def run(self, index: int = 0, status: str = "done", verdict: str | None = None,
            error: str | None = None) -> RunInfo:
        run = RunInfo(index + 1, index, f"node{index + 1}", f"node:node{index + 1}", 1, 1, status, verdict, error,
                      None, None, self.phases)
        run.series, run.identity = self.builder.series, self.builder.identity
        return run


def test_seed_soak_is_degraded_at_13_not_thermal():
    run = Records().start("soak", "b1").add("identify", hailort_version="5.3.0",
                                            identity={"firmware_version": "5.3.0"}).bench(
        *SEED_FPS, temps=SEED_TEMP).run()
    f = run_finding(run)
    assert (f.verdict, f.series.onset_run, round(f.series.slope_fps_per_run, 2)) == ("degraded", 13, -3.57)
    assert f.thermal.verdict == "not_thermal"
    assert run.identity == {"hailort": "5.3.0", "firmware_version": "5.3.0"}
    assert f.recovery is None and f.attribution is None
    assert list(run.series.configures) == list(range(1, 26))
    assert list(run.series.inference_s) == [15.0 * k for k in range(1, 26)]


def recovery_run() -> RunInfo:
    """The recovery matrix on a susceptible unit: only the reboot restores; the chip reset bricks."""
    low = [80.9, 80.5]
    r = Records().start("install", "b0").add("phase_end", status="ok")
    r.start("degrade", "b1").add("identify").bench(*SEED_FPS, 80.0, 79.5, 79.0, 78.6, 78.2)
    r.start("cooldown", "b1").add("cooldown", seconds=240).bench(*low)
    r.start("driver_reload", "b1").add("driver_reload").bench(*low)
    r.start("pcie_rescan", "b1").add("pcie_rescan").bench(*low)
    r.start("chip_reset", "b1", "device_error", "benchmark run 1 failed: HAILO_TIMEOUT(4)").add("chip_reset")
    r.add("benchmark", None, error="HAILO_TIMEOUT(4)").add("benchmark", skipped=True, error="skipped")
    r.start("reboot", "b2").add("identify").bench(124.9, 124.8, 124.95)
    return r.run(verdict="device_error")


def test_recovery_probes_only_reboot_restores():
    run = recovery_run()
    assert [(s.kind, s.action, s.start, s.stop) for s in run.series.segments] == [
        ("soak", None, 0, 30), ("probe", "cooldown", 30, 32), ("probe", "driver_reload", 32, 34),
        ("probe", "pcie_rescan", 34, 36), ("probe", "chip_reset", 36, 37), ("soak", None, 37, 40)]
    assert run.series.marks == [(30, "cooldown"), (32, "driver_reload"), (34, "pcie_rescan"), (36, "chip_reset"),
                                (37, "reboot")]
    f = run_finding(run)
    assert f.verdict == "degraded"  # a chip reset that bricks the device is an outcome, not the run's verdict
    outcomes = {o.action: (o.outcome, o.fps_after) for o in f.recovery.outcomes}
    assert outcomes == {"cooldown": ("not_recovered", 80.7), "driver_reload": ("not_recovered", 80.7),
                        "pcie_rescan": ("not_recovered", 80.7), "chip_reset": ("device_error", None),
                        "reboot": ("recovered", 124.9)}
    assert f.recovery.restoring_actions == ["reboot"]
    assert f.recovery.degraded_fps == 78.6  # median of the last three soak benchmarks


def cold_run(keeps_power: bool, preflight: bool = False) -> RunInfo:
    """The recovery matrix with a warm reboot, then a cold power cycle. A unit whose HAT stays powered through
    a warm reboot keeps its bricked chip (identify fails) until the cycle; another recovers at the reboot."""
    r = Records().start("degrade", "b1").add("identify").bench(*SEED_FPS, 80.0, 79.5, 79.0, 78.6, 78.2)
    r.start("chip_reset", "b1", "device_error", "HAILO_TIMEOUT(4)").add("chip_reset")
    r.add("benchmark", None, error="HAILO_TIMEOUT(4)")
    if keeps_power:
        r.start("reboot", "b2", "device_error", "identify: HAILO_TIMEOUT(4)", boot_cause="reboot")
        if preflight:  # the agent's pre-flight saw the driver fail to bind the bricked chip
            r.add("preflight", error="node1: the driver (hailo1x_pci) is installed but did not bind the Hailo device",
                  device_failure=True)
        else:
            r.add("identify", error="HAILO_TIMEOUT(4)")
        r.add("benchmark", skipped=True, error="skipped")
    else:
        r.start("reboot", "b2", boot_cause="reboot").add("identify").bench(124.9, 124.8, 124.95)
    r.start("power_cycle", "b3", boot_cause="power_cycle").add("identify").bench(124.9, 124.85, 124.9)
    return r.run(verdict="device_error")


def test_a_unit_that_needs_cold_power_is_found_by_the_recovery_matrix():
    cold, warm = run_finding(cold_run(keeps_power=True)), run_finding(cold_run(keeps_power=False))
    assert {o.action: o.outcome for o in cold.recovery.outcomes} == {
        "chip_reset": "device_error", "reboot": "device_error", "power_cycle": "recovered"}
    assert cold.recovery.restoring_actions == ["power_cycle"]
    assert cold.verdict == "degraded"  # the bricked chip after a warm reboot is the reboot's outcome, not the run's
    assert {o.action: o.outcome for o in warm.recovery.outcomes} == {
        "chip_reset": "device_error", "reboot": "recovered", "power_cycle": "recovered"}
    assert cold_run(True).series.marks[-2:] == [(31, "reboot"), (31, "power_cycle")]
    bound = run_finding(cold_run(keeps_power=True, preflight=True))  # the same when the pre-flight saw it
    assert {o.action: o.outcome for o in bound.recovery.outcomes}["reboot"] == "device_error"
    assert bound.recovery.restoring_actions == ["power_cycle"]


def test_a_recovery_cycle_is_not_a_recovery_probe():
    r = Records().start("soak", "b1").bench(*SEED_FPS[:10])
    r.start("soak", "b2", boot_cause="recovery").bench(*SEED_FPS[10:])
    run = r.run()
    assert run.series.marks == [(10, "recovery")] and run_finding(run).recovery is None


def test_campaign_recovery_finding_counts_degraded_runs_only():
    stable = Records().start("degrade", "c1").bench(*[124.8] * 30).start("chip_reset", "c1", "device_error")
    stable = stable.add("chip_reset").add("benchmark", None, error="HAILO_TIMEOUT(4)").run(index=1)
    model = _model([recovery_run(), stable])
    by_action = {a.action: a for a in compute_findings(model).recovery}
    assert (by_action["chip_reset"].tested, by_action["chip_reset"].device_error,
            by_action["chip_reset"].device_error_all) == (1, 1, 2)
    assert by_action["reboot"].restores and not by_action["cooldown"].restores


def test_configure_count_not_inference_time():
    r = Records().start("install", "b0")
    r.start("configures", "b1").bench(124.8, 124.9)
    for _ in range(40):
        r.add("configure_cycles", 300.0, seconds=0.03)
    r.bench(82.0, 81.5, 81.2)
    r.start("runtime", "b2").bench(124.8, 124.85).add("infer_continuous", 124.0, seconds=15, inference_s=15.0,
                                                      step_index=1)
    for k in range(2, 26):
        r.add("infer_continuous", 124.0, seconds=15, inference_s=15.0 * k, step_index=1)
    r.bench(124.9, 124.8, 124.85)
    run = r.run()
    f = run_finding(run)
    assert f.attribution.cause == "configure_count"
    assert f.verdict == "degraded" and f.series.onset_run == 3
    assert (run.series.configures[4], run.series.configures[9]) == (45, 6)  # cumulative since each boot
    assert math.isclose(run.series.inference_s[9], 30 + 375 + 45)
    assert compute_findings(_model([run])).trigger.verdict == "configure_count"


@pytest.mark.parametrize("status, verdict, error, want", [
    ("infra_error", "infra_error", "soak: unreachable", ("infra_error", "soak: unreachable")),
    ("done", None, None, ("infra_error", "no samples were recorded")),
    ("running", None, None, ("pending", "run is running")),
])
def test_runs_without_samples(status, verdict, error, want):
    f = run_finding(Records().start("soak", "b1").run(status=status, verdict=verdict, error=error))
    assert (f.verdict, f.reason) == want


def test_a_running_run_is_pending_with_its_figures_so_far():
    f = run_finding(Records().start("soak", "b1").bench(*SEED_FPS[:20]).run(status="running"))
    assert f.verdict == "pending" and f.series.onset_run == 13
    assert f.reason.startswith("run is running (20 benchmarks so far; fell from 124.81")


def test_device_error_in_the_soak_wins_over_samples():
    r = Records().start("soak", "b1", "device_error", "benchmark run 3 failed: HAILO_OUT_OF_PHYSICAL_DEVICES(74)")
    r.bench(124.8, 124.9).add("benchmark", None, error="HAILO_OUT_OF_PHYSICAL_DEVICES(74)")
    f = run_finding(r.run())
    assert (f.verdict, f.reason) == ("device_error", "benchmark run 3 failed: HAILO_OUT_OF_PHYSICAL_DEVICES(74)")


def test_infra_errors_count_neither_way():
    runs = [Records().start("soak", "b").bench(*SEED_FPS).run(index=0),
            Records().start("soak", "b").bench(*[124.8] * 25).run(index=1),
            Records().start("soak", "b").run(index=2, status="infra_error", verdict="infra_error", error="down")]
    for run in runs:
        run.unit_key = "node:node1"
    f = compute_findings(_model(runs))
    cell = f.cells[0].counts
    assert (cell.degraded, cell.counted, cell.infra_error) == (1, 2, 1)
    assert (round(cell.interval.low, 3), round(cell.interval.high, 3)) == (0.095, 0.905)


def _model(runs: list[RunInfo]) -> CampaignModel:
    units = {run.unit_key: UnitInfo(run.unit_key, run.node) for run in runs}
    info = CampaignInfo(1, "c", "s", "", None, "finished", None, None, None, 0, "lab run s --inventory i")
    return CampaignModel(info, units, {1: StackInfo(1, "h10-5.3.0", "hailo10h", "5.3.0", "5.3.0", "5.3.0")}, runs,
                         [], 0)
