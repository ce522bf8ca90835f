"""Findings of a campaign from its runs (pure): verdicts, unit x stack matrix, thermal, trigger, recovery."""

from __future__ import annotations

import statistics
from collections import Counter
from itertools import islice

from lab.analysis import (RecoveryAnalysis, SeriesAnalysis, Verdict, aggregate_verdicts, analyze_series,
                          analyze_thermal, attribute_trigger, classify_run, recovery_outcomes)
from lab.report.model import (PENDING, ActionFinding, CampaignFinding, CampaignModel, Cell, Findings, RunFinding,
                              RunInfo, Segment, StackTotal)
from lab.report.series import POWER_CYCLE, REBOOT
from lab.report.telemetry import cma_errors_of, cma_versus_fall

DEGRADED_TAIL = 3  # the degraded fps before a recovery attempt: median of the last 3 soak benchmarks


def compute_findings(model: CampaignModel, known: dict[int, RunFinding] | None = None) -> Findings:
    """Every finding of the campaign (reusing run findings already `known` by run index); stored on the model."""
    known = known or {}
    runs = {run.index: known.get(run.index) or run_finding(run) for run in model.runs}
    counted = [(run, runs[run.index]) for run in model.runs if runs[run.index].verdict != PENDING]
    cells = []
    by_cell: dict[tuple[str, int], list[RunInfo]] = {}
    for run in model.runs:
        by_cell.setdefault((run.unit_key, run.stack_id), []).append(run)
    for (unit, stack), members in by_cell.items():
        verdicts = [runs[r.index].verdict for r in members if runs[r.index].verdict != PENDING]
        cells.append(Cell(unit, stack, aggregate_verdicts(verdicts), [r.index for r in members]))
    stacks = []
    for stack_id in model.stacks:
        mine = [c for c in cells if c.stack_id == stack_id]
        stacks.append(StackTotal(stack_id, aggregate_verdicts(
            [runs[i].verdict for c in mine for i in c.runs if runs[i].verdict != PENDING]),
            sum(1 for c in mine if c.counts.degraded), sum(1 for c in mine if c.counts.counted)))
    findings = Findings(runs, cells, stacks, aggregate_verdicts([f.verdict for _, f in counted]),
                        thermal_finding([f for _, f in counted]), trigger_finding([f for _, f in counted]),
                        recovery_findings([f for _, f in counted]))
    model.findings = findings
    return findings


def run_finding(run: RunInfo) -> RunFinding:
    """Verdict of one run: infra error, device error outside a recovery probe, else its soak segments."""
    if run.status == "infra_error" or run.recorded_verdict == Verdict.INFRA_ERROR.value:
        verdict = classify_run([], infra_error=run.error or "infrastructure error")
        return RunFinding(verdict.verdict.value, verdict.reason)
    series = run.series
    if series.failure is not None:
        phase, message = series.failure
        error = next((p.error for p in run.phases if p.index == phase and p.error), None)
        verdict = classify_run([], device_error=error or message)
        return RunFinding(verdict.verdict.value, verdict.reason)
    failed = next((p for p in run.phases if p.status == "device_error"), None)
    if failed is not None and not any(s.kind == "probe" for s in series.segments):
        verdict = classify_run([], device_error=failed.error or "device error")
        return RunFinding(verdict.verdict.value, verdict.reason)
    soaks = [(s, series.samples(s.start, s.stop)) for s in series.segments if s.kind == "soak"]
    soaks = [(s, samples) for s, samples in soaks if samples]  # one RunSample list per soak segment
    if not soaks:
        if run.status in ("pending", "running"):
            return RunFinding(PENDING, f"run is {run.status}")
        verdict = classify_run([])
        return RunFinding(verdict.verdict.value, verdict.reason)
    segment, samples = soaks[0]
    if len(soaks) > 1:  # the first degraded segment, else the longest one
        analysed = [(s, samples, analyze_series(samples)) for s, samples in soaks]
        segment, samples, _ = next((a for a in analysed if a[2].verdict is Verdict.DEGRADED),
                                   max(analysed, key=lambda a: len(a[1])))
    verdict = classify_run(samples)
    detail = verdict.series
    with_temp = (x for x in samples if x.temp is not None)
    thermal = analyze_thermal(samples, detail) if next(islice(with_temp, 2, None), None) else None  # 3 or more
    value, reason = verdict.verdict.value, verdict.reason
    if run.status in ("pending", "running"):  # a live report: figures so far, no verdict yet
        value, reason = PENDING, f"run is {run.status} ({len(series)} benchmarks so far; {reason})"
    fall = detail.onset_run if detail is not None and value == Verdict.DEGRADED.value else None
    cma = cma_versus_fall(cma_errors_of(series.telemetry), fall) if series.telemetry else None
    return RunFinding(value, reason, detail, thermal, run_recovery(run, segment, detail), run_attribution(run), cma)


def run_recovery(run: RunInfo, segment: Segment, detail: SeriesAnalysis | None) -> RecoveryAnalysis | None:
    """Outcome of each recovery action after the analysed soak segment (probe fps vs baseline)."""
    series = run.series
    if detail is None:
        return None
    tail = series.fps_values(segment.start, segment.stop)[-DEGRADED_TAIL:]
    after: dict[str, float | None] = {}
    later = series.segments[series.segments.index(segment) + 1:]
    for probe in later:
        if probe.kind == "probe" and probe.boot == segment.boot:
            action = probe.action or "action"
        elif probe.kind == "soak" and probe.boot > segment.boot and (probe.lead or probe.failure):
            action = POWER_CYCLE if series.boot_causes.get(probe.boot) == POWER_CYCLE else REBOOT
            probe = Segment("probe", probe.boot, action, probe.start, probe.start + probe.lead, failure=probe.failure)
        else:
            continue
        fps = series.fps_values(probe.start, probe.stop)
        if not fps and probe.failure is None:
            continue  # nothing measured after this action
        key = _unique(after, action)
        after[key] = statistics.median(fps) if fps and probe.failure is None else None
        if action in (REBOOT, POWER_CYCLE) and series.boot_causes.get(probe.boot + 1) != POWER_CYCLE:
            break  # later boots are new experiments, not recovery of this degradation (unless cold follows warm)
    if not after:
        return None
    return recovery_outcomes(detail.baseline_fps, statistics.median(tail), after)


def _unique(taken: dict, action: str) -> str:
    """`action`, or `action (2)`, ... when the scenario repeats it."""
    key, n = action, 1
    while key in taken:
        n += 1
        key = f"{action} ({n})"
    return key


def run_attribution(run: RunInfo):  # noqa: ANN201 - Attribution | None
    """Configure count vs inference time, when the run had a configure-cycles phase and an inference phase."""
    series = run.series
    configure = series.configure_phases - series.infer_phases
    infer = series.infer_phases - series.configure_phases
    if not configure or not infer:
        return None
    a, b = series.samples(phases=configure), series.samples(phases=infer)
    if len(a) < 2 or len(b) < 2:
        return None
    return attribute_trigger(a, b)


def thermal_finding(findings: list[RunFinding]) -> CampaignFinding:
    """Thermal or not over the degraded runs: unanimous conclusive answers decide, else mixed/inconclusive."""
    degraded = [f for f in findings if f.verdict == Verdict.DEGRADED.value]
    if not degraded:
        return CampaignFinding("no_degradation", {}, "no run degraded")
    counts = Counter(f.thermal.verdict if f.thermal else "no_temperature" for f in degraded)
    conclusive = {v for v in counts if v in ("thermal", "not_thermal")}
    if conclusive == {"not_thermal"} or conclusive == {"thermal"}:
        verdict = conclusive.pop()
    elif conclusive:
        verdict = "mixed"
    else:
        verdict = "no_temperature" if set(counts) == {"no_temperature"} else "inconclusive"
    example = next((f.thermal.reason for f in degraded if f.thermal and f.thermal.verdict == verdict), None)
    tally = _tally(counts, len(degraded), "degraded runs")
    return CampaignFinding(verdict, dict(counts), f"{tally}" + (f"; e.g. {example}" if example else ""))


def trigger_finding(findings: list[RunFinding]) -> CampaignFinding:
    """Configure count or inference time, over the runs that varied them."""
    tested = [f.attribution for f in findings if f.attribution is not None]
    if not tested:
        return CampaignFinding("not_tested", {}, "no run had both a configure-cycles phase and a "
                                                 "continuous-inference phase")
    counts = Counter(a.cause for a in tested)
    decided = {c for c in counts if c in ("configure_count", "inference_time")}
    if len(decided) == 1:
        verdict = decided.pop()
    elif decided:
        verdict = "mixed"
    else:
        verdict = "no_degradation" if set(counts) == {"no_degradation"} else "inconclusive"
    example = next((a.reason for a in tested if a.cause == verdict), None)
    tally = _tally(counts, len(tested), "runs that varied them")
    return CampaignFinding(verdict, dict(counts), tally + (f"; {example}" if example else ""))


def _tally(counts: Counter, total: int, what: str) -> str:
    """`not_thermal in 2 of 2 degraded runs, ...`."""
    return ", ".join(f"{name.replace('_', ' ')} in {n} of {total} {what}" for name, n in counts.most_common())


def recovery_findings(findings: list[RunFinding]) -> list[ActionFinding]:
    """Per action: outcomes over the degraded runs, and device errors over all runs."""
    actions: dict[str, ActionFinding] = {}
    for finding in findings:
        if finding.recovery is None:
            continue
        degraded = finding.verdict == Verdict.DEGRADED.value
        for outcome in finding.recovery.outcomes:
            act = actions.setdefault(outcome.action, ActionFinding(outcome.action, 0, 0, 0, 0, 0, 0, False))
            act.device_error_all += outcome.outcome == "device_error"
            if not degraded:
                continue
            act.tested += 1
            setattr(act, outcome.outcome, getattr(act, outcome.outcome) + 1)
    for act in actions.values():
        act.restores = act.tested > 0 and act.recovered == act.tested
    return list(actions.values())
