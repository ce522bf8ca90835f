"""CSV and JSON of every sample and verdict, written in the same single pass that loads the campaign's records."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any, TextIO

from lab.report.findings import compute_findings, run_finding
from lab.report.model import SAMPLE_COLUMNS, CampaignModel, RunFinding, RunInfo
from lab.report.telemetry import RunTelemetry, link_text, summarize
from lab.report.view import cma_sentence

TS = 2 + SAMPLE_COLUMNS.index("ts")  # position in a scanned row: run id, phase id, then the columns
CSV_HEADER = ("campaign", "run", "node", "unit", "stack", "repeat", "verdict", "phase") + SAMPLE_COLUMNS + ("extra",)
JSON_COLUMNS = ("run", "phase") + SAMPLE_COLUMNS + ("extra",)
RunRows = Iterable[tuple[RunInfo, list]]  # each run with its raw rows, as `lab.db.report_load.stream_runs` yields them


def write_csv(model: CampaignModel, runs: RunRows, out: TextIO) -> None:
    """One row per record (every step) with its run's verdict; floats exact, ts ISO 8601 UTC, extra as JSON.

    `runs` fills the model's series as it is read; the findings are computed once it is exhausted.
    """
    writer = csv.writer(out)  # RFC 4180: CRLF, so a field holding a lone CR or LF is quoted too
    writer.writerow(CSV_HEADER)
    names = {p.id: p.name for run in model.runs for p in run.phases}
    known: dict[int, RunFinding] = {}
    for run, raw in runs:  # write one run's records as CSV rows, with the run's verdict computed first
        known[run.index] = finding = run_finding(run)  # the run's verdict is known once its records are in
        head = (model.campaign.name, run.index, run.node, model.units[run.unit_key].label,
                model.stacks[run.stack_id].name, run.repeat, finding.verdict)
        for row in raw:
            if row[TS].__class__ is not str:
                row = list(row)
                row[TS] = iso_ts(row[TS])
            writer.writerow((*head, names.get(row[1]), *row[2:]))
    compute_findings(model, known)


def write_json(model: CampaignModel, runs: RunRows, out: TextIO) -> None:
    """One JSON document: campaign and stacks, every sample (streamed), then units, runs, matrix, findings.

    Samples are arrays in the order of `sample_columns` (a million objects would repeat every key a
    million times); `extra` is the record's own JSON. `runs` is read as for `write_csv`.
    """
    head = json.dumps({"campaign": campaign_dict(model), "stacks": [vars(s) for s in model.stacks.values()],
                       "sample_columns": list(JSON_COLUMNS)}, indent=2, default=_default, ensure_ascii=False)
    out.write(head[:-2] + ',\n  "samples": [')
    names = {p.id: p.name for run in model.runs for p in run.phases}
    encode = array_encoder()
    written = 0
    for run, raw in runs:  # write one run's records as JSON arrays, `extra` spliced in as it is stored
        heads: dict[int | None, str] = {}  # phase id -> `[run index, "phase name", `, the same for a phase's rows
        lines = []
        for row in raw:
            head = heads.get(row[1])
            if head is None:
                head = heads[row[1]] = f"{encode((run.index, names.get(row[1])))[:-1]}, "
            values = row[2:-1]
            if row[TS].__class__ is not str:
                values = (*values[:TS - 2], iso_ts(row[TS]), *values[TS - 1:])
            lines.append(f"{head}{encode(values)[1:-1]}, {row[-1] or 'null'}]")
        if lines:
            out.write(("\n    " if not written else ",\n    ") + ",\n    ".join(lines))
            written += len(lines)
    compute_findings(model)
    tail = json.dumps(report_document(model), indent=2, default=_default, ensure_ascii=False)
    out.write(("\n  ]," if written else "],") + tail[1:] + "\n")


def iso_ts(value: str | datetime | None) -> str | None:
    """A `ts` as ISO 8601 UTC text (already text when the database formatted it)."""
    if value is None or isinstance(value, str):
        return value
    return value.isoformat(timespec="microseconds")


def array_encoder() -> Callable[[tuple], str]:
    """`json.dumps(values, ensure_ascii=False)` for a tuple of plain values, with the C encoder built once.

    JSONEncoder.encode builds a new C encoder on every call: over a million samples, a third of the time
    spent encoding them. This is the same encoder (same output), made once.
    """
    encoder = json.JSONEncoder(ensure_ascii=False, check_circular=False)
    make = json.encoder.c_make_encoder
    if make is None:  # a Python without the C accelerator
        return encoder.encode
    iterencode = make(None, encoder.default, json.encoder.encode_basestring, None, encoder.key_separator,
                      encoder.item_separator, False, False, True)
    join = "".join
    return lambda values: join(iterencode(values, 0))


def campaign_dict(model: CampaignModel) -> dict[str, Any]:
    """The campaign's own fields, with the reproduction command and the scenario text."""
    c = model.campaign
    return {"id": c.id, "name": c.name, "scenario": c.scenario, "status": c.status, "started_at": c.started_at,
            "finished_at": c.finished_at, "inventory": c.inventory, "command_line": c.command_line,
            "exit_status": c.exit_status, "reproduce": c.reproduce, "scenario_text": c.scenario_text,
            "models": c.models}


def report_document(model: CampaignModel) -> dict[str, Any]:
    """Units, runs with verdicts and analyses, matrix, stack totals, findings and artifacts, JSON-ready."""
    f = model.findings
    assert f is not None, "compute_findings first"
    return {
        "records": model.sample_count,
        "units": [{"key": u.key, "label": u.label, "node": u.node, "serial": u.serial, "soc_id": u.soc_id,
                   "chip": u.chip, "board": u.board, "identity": u.identity, "reported": u.observed,
                   "sat_in": [{"run": r.index, "node": r.node, "host_serial": r.host_serial,
                               "host_model": r.host_model} for r in model.runs if r.unit_key == u.key]}
                  for u in model.units.values()],
        "runs": [run_dict(model, run, f.runs[run.index]) for run in model.runs],
        "matrix": [{"unit": cell.unit_key, "label": model.units[cell.unit_key].label,
                    "stack": model.stacks[cell.stack_id].name, "runs": cell.runs,
                    **cell.counts.to_dict()} for cell in f.cells],
        "stack_totals": [{"stack": model.stacks[t.stack_id].name, "units_degraded": t.units_degraded,
                          "units_tested": t.units_tested, **t.counts.to_dict()} for t in f.stacks],
        "findings": {"total": f.total.to_dict(), "thermal": vars(f.thermal), "trigger": vars(f.trigger),
                     "recovery": [vars(a) for a in f.recovery], "cma": cma_sentence(model)},
        "artifacts": [vars(a) for a in model.artifacts],
    }


def run_dict(model: CampaignModel, run: RunInfo, finding: RunFinding) -> dict[str, Any]:
    """One run: identity, verdict and why, the analyses behind it, recovery marks and phases."""
    return {"index": run.index, "node": run.node, "unit": run.unit_key, "stack": model.stacks[run.stack_id].name,
            "repeat": run.repeat, "status": run.status, "verdict": finding.verdict, "reason": finding.reason,
            "recorded_verdict": run.recorded_verdict, "error": run.error, "started_at": run.started_at,
            "finished_at": run.finished_at, "benchmarks": len(run.series),
            "series": _dict(finding.series), "thermal": _dict(finding.thermal),
            "recovery": _dict(finding.recovery), "attribution": _dict(finding.attribution),
            "marks": [{"before_benchmark": pos + 1, "action": label} for pos, label in run.series.marks],
            "reported": run.identity,
            "installed": run.system,
            "flagged": [{"benchmark": pos + 1, "reason": why} for pos, why in sorted(run.series.flagged.items())]
            + [{"benchmark": None, "reason": why} for why in run.series.flagged_other],
            "phases": [{"index": p.index, "name": p.name, "status": p.status, "boot_id": p.boot_id,
                        "error": p.error, "preflight": p.preflight, "ready_s": p.ready_s} for p in run.phases],
            "host": {"node": run.node, "serial": run.host_serial, "model": run.host_model},
            "executor": run.executor,
            "power": [asdict(p) for p in run.power],
            "telemetry": telemetry_dict(summarize(run.series.telemetry)) if run.series.telemetry else None,
            "cma": asdict(finding.cma) if finding.cma is not None else None}


def telemetry_dict(t: RunTelemetry) -> dict[str, Any]:
    """A run's telemetry summary: the figures, the link flag and the throttling names."""
    return {"pcie": {"width": list(t.width) if t.width else None, "max_width": t.max_width,
                     "speed_gts": list(t.speed) if t.speed else None, "max_speed_gts": t.max_speed,
                     "below_max": t.link_below_max, "text": link_text(t)},
            "power_states": t.power_states, "aspm": t.aspm,
            "host_cma_kb": {"free_min": t.cma_free_min_kb, "total": t.cma_total_kb},
            "soc_temp_c": list(t.soc_temp) if t.soc_temp else None,
            "arm_clock_mhz": list(t.arm_clock_mhz) if t.arm_clock_mhz else None,
            "throttled": t.throttled, "throttled_unreadable": t.throttled_unreadable,
            "cma_errors": {str(run): n for run, n in sorted(t.cma_errors.items())}}


def _dict(result: Any) -> Any:
    """An analysis result as a dict, or None."""
    return None if result is None else result.to_dict()


def _default(value: Any) -> Any:
    """JSON for datetimes (ISO 8601)."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
