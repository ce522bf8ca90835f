"""Render-ready view of a campaign model: formatted rows and sentences shared by every renderer."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from lab.analysis import VerdictCounts
from lab.report.model import CampaignModel, RunInfo, StackInfo, UnitInfo

THERMAL_WORDS = {"not_thermal": "not thermal", "thermal": "thermal", "mixed": "mixed (some runs thermal)",
                 "inconclusive": "inconclusive", "no_temperature": "no temperature recorded",
                 "no_degradation": "nothing to explain (no run degraded)"}
TRIGGER_WORDS = {"configure_count": "configure count", "inference_time": "inference time", "mixed": "mixed",
                 "inconclusive": "inconclusive", "no_degradation": "no degradation in the runs that varied them",
                 "not_tested": "not tested"}


def natural_key(text: str) -> list:
    """Sort key that puts node2 before node10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


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
        matrix.append({"unit": unit.label, "node": unit.node, "chip": unit.chip or "", "cells": row})
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
                       "error": p.error or ""} for p in run.phases],
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
            rows.append({"index": run.index, "node": run.node, "stack": model.stacks[run.stack_id].name,
                         "verdict": finding.verdict, "before": num(r.before_fps), "degraded": num(r.degraded_fps),
                         "action": o.action, "after": num(o.fps_after) or "no fps",
                         "outcome": o.outcome if finding.verdict == "degraded" or o.outcome == "device_error"
                         else "– (not degraded)",
                         "restored": f"{pct(o.restored_fraction)} %" if o.restored_fraction is not None else ""})
    return rows


def unit_row(unit: UnitInfo) -> dict[str, str]:
    """Identity and software versions of one unit."""
    return {"unit": unit.label, "node": unit.node, "key": unit.key, "serial": unit.serial or "",
            "soc_id": unit.soc_id or "", "chip": unit.chip or "", "board": unit.board or "",
            "versions": observed_versions(unit)}


def table(rows: list[list[str]], header: list[str]) -> list[str]:
    """Left-aligned columns separated by two spaces, trailing blanks removed."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    return ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header] + rows]
