"""Render-ready view of a campaign model: formatted rows and sentences shared by every renderer."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from lab.analysis import VerdictCounts
from lab.report.model import CampaignModel, RunInfo, StackInfo, UnitInfo
from lab.report.telemetry import host_text, preflight_text, summarize, telemetry_row

THERMAL_WORDS = {"not_thermal": "not thermal", "thermal": "thermal", "mixed": "mixed (some runs thermal)",
                 "inconclusive": "inconclusive", "no_temperature": "no temperature recorded",
                 "no_degradation": "nothing to explain (no run degraded)"}
TRIGGER_WORDS = {"configure_count": "configure count", "inference_time": "inference time", "mixed": "mixed",
                 "inconclusive": "inconclusive", "no_degradation": "no degradation in the runs that varied them",
                 "not_tested": "not tested"}


def pct(x: float) -> str:
    """A proportion as a whole percentage."""
    return str(int(math.floor(x * 100 + 0.5)))


def interval(counts: VerdictCounts) -> str:
    """`21–100 %`: the Wilson 95 % interval of k of n."""
    return f"{pct(counts.interval.low)}–{pct(counts.interval.high)} %"


def kn(counts: VerdictCounts) -> str:
    """`2/3`: runs degraded of runs counted."""
    return f"{counts.degraded}/{counts.counted}"


def notes(counts: VerdictCounts) -> str:
    """`, 1 device error, 2 infra errors not counted` (empty when there were none)."""
    out = ""
    if counts.device_error:
        out += f", {plural(counts.device_error, 'device error')}"
    if counts.infra_error:
        out += f", {plural(counts.infra_error, 'infra error')} not counted"
    return out


def plural(n: int, word: str) -> str:
    """`1 run`, `2 runs`."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def cell_text(counts: VerdictCounts) -> str:
    """`0/1 [0–79 %], 1 infra error not counted`."""
    return f"{kn(counts)} [{interval(counts)}]{notes(counts)}"


def num(value: float | None, digits: int = 2) -> str:
    """A number with fixed decimals, or an empty string."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def when(value: datetime | None) -> str:
    """UTC time to the second, or an empty string."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def stack_versions(stack: StackInfo) -> str:
    """`HailoRT 5.3.0, driver 5.3.0, firmware 5.3.0`."""
    return f"HailoRT {stack.hailort}, driver {stack.driver}, firmware {stack.firmware}"


def observed_versions(unit: UnitInfo) -> str:
    """What the unit reported about itself, e.g. `HailoRT 5.3.0, driver 5.3.0, firmware 5.3.0 (HAILO10H)`."""
    reports = []
    for seen in unit.observed:
        parts = [f"{name} {seen[key]}" for key, name in (("hailort", "HailoRT"), ("driver", "driver"),
                                                         ("firmware_version", "firmware")) if seen.get(key)]
        arch = f" ({seen['architecture']})" if seen.get("architecture") else ""
        reports.append(", ".join(parts) + arch)
    return "; ".join(dict.fromkeys(reports)) or "not reported"


def colour(counts: VerdictCounts | None) -> str:
    """Matrix cell colour: green none degraded, red all, amber between, grey nothing counted."""
    if counts is None or counts.counted == 0:
        return "#e6e6e6"
    p = counts.degraded / counts.counted
    if p == 0:
        return "#cdebd0"
    if p == 1:
        return "#f3b8b2"
    return "#f7d9a8"


def build_view(model: CampaignModel) -> dict[str, Any]:
    """Everything the text, Markdown and HTML renderers print, already formatted."""
    f = model.findings
    assert f is not None, "compute_findings first"
    c = model.campaign
    stacks = [{"name": model.stacks[t.stack_id].name, "chip": model.stacks[t.stack_id].chip or "",
               "versions": stack_versions(model.stacks[t.stack_id]), "hailort": model.stacks[t.stack_id].hailort,
               "driver": model.stacks[t.stack_id].driver, "firmware": model.stacks[t.stack_id].firmware,
               "kn": kn(t.counts), "interval": interval(t.counts), "units": f"{t.units_degraded}/{t.units_tested}",
               "sentence": stack_sentence(model.stacks[t.stack_id], t.counts, t.units_degraded, t.units_tested)}
              for t in f.stacks]
    cells = {(cell.unit_key, cell.stack_id): cell for cell in f.cells}
    matrix = []
    for key, unit in model.units.items():
        row = []
        for stack_id in model.stacks:
            cell = cells.get((key, stack_id))
            row.append({"text": cell_text(cell.counts) if cell else "–",
                        "notes": notes(cell.counts)[2:] if cell else "",
                        "kn": kn(cell.counts) if cell else "–", "interval": interval(cell.counts) if cell else "",
                        "colour": colour(cell.counts if cell else None),
                        "title": cell.counts.method if cell else "not run"})
        matrix.append({"unit": unit.label, "key": unit.key, "node": unit.node, "chip": unit.chip or "",
                       "sat_in": sat_in(model, key), "cells": row})
    runs = [run_row(model, run) for run in model.runs]
    return {
        "campaign": c, "title": f"{c.scenario}: {c.name}",
        "started": when(c.started_at), "finished": when(c.finished_at),
        "runs_count": len(model.runs), "samples": model.sample_count,
        "total": {"kn": kn(f.total), "interval": interval(f.total), "notes": notes(f.total)},
        "stacks": stacks, "stack_names": [model.stacks[s].name for s in model.stacks], "matrix": matrix,
        "runs": runs, "units": [unit_row(u) for u in model.units.values()], "flagged": flagged_lines(model),
        "installed": installed_rows(model),
        "models": [{"name": n, "sha256": m.get("sha256", ""), "md5": m.get("md5", ""), "size": str(m.get("size", ""))}
                   for n, m in sorted(c.models.items())],
        "thermal": {"verdict": THERMAL_WORDS.get(f.thermal.verdict, f.thermal.verdict), "reason": f.thermal.reason},
        "trigger": {"verdict": TRIGGER_WORDS.get(f.trigger.verdict, f.trigger.verdict), "reason": f.trigger.reason},
        "recovery": [{"action": a.action, "tested": a.tested, "recovered": a.recovered, "partial": a.partial,
                      "not_recovered": a.not_recovered, "device_error": a.device_error,
                      "device_error_all": a.device_error_all, "restores": a.restores} for a in f.recovery],
        "recovery_sentence": recovery_sentence(model),
        "recovery_runs": recovery_rows(model),
        "power": power_rows(model),
        "telemetry": telemetry_rows(model),
        "cma_sentence": cma_sentence(model),
    }


def stack_sentence(stack: StackInfo, counts: VerdictCounts, units_degraded: int, units_tested: int) -> str:
    """`h10-5.3.0 (HailoRT ..): degraded in 2 of 3 runs (95 % interval 21–94 %), on 2 of 3 units`."""
    text = (f"{stack.name} ({stack_versions(stack)}): degraded in {counts.degraded} of {counts.counted} runs "
            f"(95 % interval {interval(counts)}), on {units_degraded} of {units_tested} units")
    if counts.device_error:
        text += f"; {plural(counts.device_error, 'run')} ended in a device error"
    if counts.infra_error:
        text += f"; {plural(counts.infra_error, 'run')} with an infrastructure error not counted"
    return text


def recovery_sentence(model: CampaignModel) -> str:
    """Which actions restored throughput, in one line."""
    actions = model.findings.recovery if model.findings else []
    if not actions:
        return "not tested (no recovery action was measured after a degradation)"
    parts = []
    for a in actions:
        if a.tested == 0:
            parts.append(f"{a.action}: no degraded run to recover"
                         + (f", device error in {a.device_error_all} runs" if a.device_error_all else ""))
            continue
        verb = f"restored throughput in {a.recovered} of {a.tested} degraded runs"
        detail = [f"{n} {w}" for n, w in ((a.partial, "partial"), (a.not_recovered, "not recovered"),
                                          (a.device_error, "device error")) if n]
        verb += f" ({', '.join(detail)})" if detail else ""
        parts.append(f"{a.action}: {verb}")
    restoring = [a.action for a in actions if a.restores]
    head = f"only {', '.join(restoring)} restores throughput" if restoring and len(restoring) < len(actions) else (
        "every action restores throughput" if restoring else "no action restores throughput")
    return f"{head}; " + "; ".join(parts)


def run_row(model: CampaignModel, run: RunInfo) -> dict[str, Any]:
    """One run's verdict and the figures behind it."""
    finding = model.findings.runs[run.index]
    s = finding.series
    degraded = finding.verdict == "degraded"
    temps = [t for t in run.series.temp if not math.isnan(t)]
    row = {"index": run.index, "node": run.node, "unit": model.units[run.unit_key].label,
           "executor": run.executor or "",  # the execution node its phases went through ("" for the controller)
           "where": f"{run.node} via {run.executor}" if run.executor else run.node,
           "pi": host_text(run.node, run.host_serial, run.host_model),
           "stack": model.stacks[run.stack_id].name, "repeat": run.repeat, "verdict": finding.verdict,
           "reason": finding.reason, "benchmarks": len(run.series),
           "baseline": num(s.baseline_fps) if s else "", "end": num(s.end_fps) if s else "",
           "onset": str(s.onset_run) if s and degraded and s.onset_run is not None else "",
           "slope": num(s.slope_fps_per_run) if s and degraded and s.slope_fps_per_run is not None else "",
           "floor": f"{num(s.floor_fps)} @{s.floor_run}" if s else "",
           "temp": f"{min(temps):.1f}–{max(temps):.1f}" if temps else "",
           "thermal": THERMAL_WORDS.get(finding.thermal.verdict, finding.thermal.verdict)
           if finding.thermal and degraded else "",
           "recorded": run.recorded_verdict or "", "boots": [p.boot_id for p in run.phases if p.boot_id],
           "phases": [{"index": p.index, "name": p.name, "status": p.status, "boot_id": p.boot_id or "",
                       "error": p.error or "", "preflight": preflight_text(p.preflight, p.ready_s)
                       if p.preflight or p.ready_s is not None else ""} for p in run.phases],
           "method": s.method if s else ""}
    row["differs"] = bool(run.recorded_verdict and run.recorded_verdict != finding.verdict)
    return row


def installed_rows(model: CampaignModel) -> list[dict[str, str]]:
    """What each run's node ran as installed (dpkg, the wheel, kernel, DKMS, firmware), not as pinned."""
    rows = []
    for run in model.runs:
        sysinfo = run.system
        if not sysinfo:
            continue
        packages = ", ".join(f"{n} {v}" for n, v in sorted((sysinfo.get("packages") or {}).items()))
        wheels = ", ".join(f"hailort {v} ({p})" for p, v in sorted((sysinfo.get("wheels") or {}).items()))
        dkms = sysinfo.get("dkms")
        rows.append({"index": str(run.index), "node": run.node, "stack": model.stacks[run.stack_id].name,
                     "kernel": str(sysinfo.get("kernel") or ""), "packages": packages or "none",
                     "wheels": wheels or "none",
                     "dkms": "; ".join(dkms) if dkms else ("no dkms" if dkms is None else "nothing built"),
                     "holds": ", ".join(sysinfo.get("holds") or []) or "none",
                     "firmware": str(sysinfo.get("firmware_version") or "not recorded"),
                     "bootloader": str(sysinfo.get("bootloader_version") or "not recorded")})
    return rows


def flagged_lines(model: CampaignModel) -> list[str]:
    """One line per record whose value lies outside its physical bound (kept verbatim, left out of the analysis)."""
    lines = []
    for run in model.runs:
        who = f"#{run.index} {model.units[run.unit_key].label}"
        lines += [f"{who} benchmark {position + 1}: {reason}" for position, reason in sorted(run.series.flagged.items())]
        lines += [f"{who} {reason}" for reason in run.series.flagged_other]
    return lines


def recovery_rows(model: CampaignModel) -> list[dict[str, Any]]:
    """Every run's recovery outcomes: action, fps after, outcome, restored fraction."""
    rows = []
    for run in model.runs:
        finding = model.findings.runs[run.index]
        if finding.recovery is None:
            continue
        r = finding.recovery
        for o in r.outcomes:
            rows.append({"index": run.index, "node": run.node, "unit": model.units[run.unit_key].label,
                         "stack": model.stacks[run.stack_id].name,
                         "verdict": finding.verdict, "before": num(r.before_fps), "degraded": num(r.degraded_fps),
                         "action": o.action, "after": num(o.fps_after) or "no fps",
                         "outcome": o.outcome if finding.verdict == "degraded" or o.outcome == "device_error"
                         else "– (not degraded)",
                         "restored": f"{pct(o.restored_fraction)} %" if o.restored_fraction is not None else ""})
    return rows


def power_rows(model: CampaignModel) -> list[dict[str, str]]:
    """Every power cycle the controller made: the run, the phase, why (the scenario's cold start, or a node
    brought back), and whether it booted anew."""
    rows = []
    for run in model.runs:
        for p in run.power:
            rows.append({"index": str(run.index), "node": run.node, "unit": model.units[run.unit_key].label,
                         "phase": p.phase, "kind": "recovery" if p.recovery else "power_cycle", "reason": p.reason,
                         "outcome": (f"new boot after {p.waited_s:.0f} s" if p.ok and p.waited_s is not None
                                     else p.detail if not p.ok else "ok")})
    return rows


def unit_row(unit: UnitInfo) -> dict[str, str]:
    """Identity and software versions of one unit."""
    identity = ", ".join(f"{k} {v}" for k, v in unit.identity.items() if k != "soc_id" and v not in (None, ""))
    return {"unit": unit.label, "node": unit.node, "key": unit.key, "serial": unit.serial or "",
            "soc_id": unit.soc_id or "", "chip": unit.chip or "", "board": unit.board or "",
            "identity": identity, "versions": observed_versions(unit)}


def sat_in(model: CampaignModel, unit_key: str) -> str:
    """Which Pis the unit (the HAT) sat in, with its runs: `node1 (Pi …ab12cd34) #0; node2 (Pi …9f8e7d6c) #4`."""
    places: dict[tuple[str, str | None], list[str]] = {}
    for run in model.runs:
        if run.unit_key == unit_key:
            places.setdefault((run.node, run.host_serial), []).append(f"#{run.index}")
    parts = []
    for (node, serial), runs in places.items():
        pi = f" (Pi …{serial[-8:]})" if serial else ""
        parts.append(f"{node}{pi} {' '.join(runs)}")
    return "; ".join(parts)


def telemetry_rows(model: CampaignModel) -> list[dict[str, Any]]:
    """Per run that read any: the PCIe link against its maximum, power state, ASPM, host CMA, the Pi's SoC
    temperature and clock, its throttling decoded, the CMA failures beside the fall of fps, and the pre-flight."""
    rows = []
    for run in model.runs:
        finding = model.findings.runs[run.index]
        pre = next((p for p in reversed(run.phases) if p.preflight or p.ready_s is not None), None)
        if not run.series.telemetry and pre is None:
            continue
        t = summarize(run.series.telemetry)
        cma = finding.cma
        rows.append({"index": run.index, "unit": model.units[run.unit_key].label, "node": run.node,
                     "pi": host_text(run.node, run.host_serial, run.host_model),
                     "pi_short": f"{run.node} (Pi …{run.host_serial[-8:]})" if run.host_serial else run.node,
                     "host_serial": run.host_serial or "", "host_model": run.host_model or "",
                     "stack": model.stacks[run.stack_id].name, "repeat": run.repeat, "verdict": finding.verdict,
                     **telemetry_row(t),
                     "cma_errors": str(sum(t.cma_errors.values())) if t.cma_errors else "",
                     "cma_first": str(cma.first_error_run) if cma and cma.first_error_run else "",
                     "fall": str(cma.fall_run) if cma and cma.fall_run is not None else "",
                     "cma_fall": cma.sentence if cma else "",
                     "preflight": preflight_text(pre.preflight, pre.ready_s) if pre else "",
                     "preflight_phase": pre.name if pre else ""})
    return rows


def cma_sentence(model: CampaignModel) -> str:
    """Over the runs whose runtime log was read per benchmark run: where CMA failures began against the fall."""
    findings = [model.findings.runs[run.index] for run in model.runs]
    measured = [f.cma for f in findings if f.cma is not None and f.cma.measured]
    if not measured:
        return "not measured (no run read the chip's runtime log after each benchmark run)"
    failing = [c for c in measured if c.first_error_run is not None]
    falling = [c for c in measured if c.fall_run is not None]
    text = f"alloc failures in {len(failing)} of {len(measured)} runs read after each benchmark run"
    both = [c for c in failing if c.fall_run is not None]
    if falling:
        gaps = [c.fall_run - c.first_error_run for c in both]
        before = [g for g in gaps if g > 0]
        parts = []
        if before:
            lead = f"{min(before)}" if min(before) == max(before) else f"{min(before)}–{max(before)}"
            parts.append(f"before the fall (by {lead} runs) in {len(before)}")
        if any(g == 0 for g in gaps):
            parts.append(f"at the fall in {sum(1 for g in gaps if g == 0)}")
        if any(g < 0 for g in gaps):
            parts.append(f"after the fall in {sum(1 for g in gaps if g < 0)}")
        if len(falling) > len(both):
            parts.append(f"never in {len(falling) - len(both)}")
        text += f"; of the {len(falling)} runs whose fps fell, failures began " + ", ".join(parts)
    if len(failing) > len(both):
        text += f"; {plural(len(failing) - len(both), 'run')} failed CMA allocations without a fall in fps"
    return text


def table(rows: list[list[str]], header: list[str]) -> list[str]:
    """Left-aligned columns separated by two spaces, trailing blanks removed."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    return ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header] + rows]
