"""`lab analyze`: the verdict for one series of benchmark runs (a CSV file)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lab.analysis import SeriesReport, analyze_csv
from lab.cli.parse import read_input
from lab.cli.root import app

_THERMAL = {"thermal": "yes", "not_thermal": "no", "inconclusive": "inconclusive", "no_drop": "nothing to explain"}


def report_lines(report: SeriesReport) -> list[str]:
    """The compact human summary of a series report."""
    s = report.series
    lines = [
        f"{report.source}: {s.verdict.value} ({s.runs} runs)",
        f"  baseline: {s.baseline_fps:.2f} fps (noise {s.noise_fps:.2f})",
        f"  end: {s.end_fps:.2f} fps ({s.drop_fraction:.1%} below baseline)",
    ]
    if s.onset_run is not None:
        after = f" (after {s.configures_at_onset} configures)" if s.configures_at_onset is not None else ""
        lines.append(f"  onset: run {s.onset_run}{after}")
    if s.slope_fps_per_run is not None and s.slope_runs:
        lines.append(f"  slope: {s.slope_fps_per_run:.2f} fps/run over runs {s.slope_runs[0]}-{s.slope_runs[1]}")
    falling = ", still falling" if s.still_falling else ""
    lines.append(f"  floor: {s.floor_fps:.2f} fps at run {s.floor_run}{falling}")
    if report.thermal is not None:
        lines.append(f"  thermal: {_THERMAL[report.thermal.verdict]} ({report.thermal.reason})")
    return lines


@app.command("analyze")
def analyze_command(
    csv_file: Path = typer.Argument(..., metavar="CSV", help="Columns run,fps[,temp[,configures]] with a header."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Say whether one series of benchmark runs degraded, from when, how fast, and whether it is thermal.

    Example:
        lab analyze runs.csv
        lab analyze runs.csv --json

    runs.csv holds one line per benchmark run, e.g. `1,124.78,60.70` under a `run,fps,temp` header.
    """
    report = analyze_csv(read_input(csv_file), str(csv_file))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    for line in report_lines(report):
        typer.echo(line)
