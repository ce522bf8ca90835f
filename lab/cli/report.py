"""`lab report`, `lab compare`, `lab campaigns`: verdicts and reproducibility reports from the results database."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from lab.cli.root import app
from lab.db.queries import campaign_rows
from lab.db.report_load import load_report
from lab.db.session import open_database
from lab.errors import ConfigError
from lab.report.build import FORMATS, write_atomic, write_markdown_with_figures, write_report
from lab.report.compare import (compare_view, render_campaigns_json, render_campaigns_text, render_compare_html,
                                render_compare_json, render_compare_markdown, render_compare_text)

DB_HELP = "Database URL (default: $LAB_DB, else sqlite:///lab.db)."
COMPARE_FORMATS = {"text": render_compare_text, "md": render_compare_markdown, "json": render_compare_json,
                   "html": render_compare_html}


@app.command("report")
def report_command(
    campaign: str = typer.Argument(..., metavar="CAMPAIGN", help="Campaign name or id (see `lab campaigns`)."),
    fmt: str = typer.Option("text", "--format", "-f", help="text, md, html, csv or json."),
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file (atomically) instead of stdout."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Report a campaign: verdict per run, unit x stack matrix with 95 % intervals, thermal, trigger, recovery.

    Units are the HATs, keyed by chip identity (SoC ID, else serial), with the Pis they sat in.
    Per run: telemetry, pre-flight, and where CMA alloc failures begin beside where fps falls.

    Formats:
        text  a compact terminal table
        md    to paste into a forum post or vendor issue; with -o, PNG charts in STEM-figures/ beside it
        html  one file with charts and raw artifacts, opens offline
        csv   every sample with its run's verdict
        json  every sample, verdict and finding

    Example:
        lab report cma_soak-20260430-050801-1a2b
        lab report 3 --format md -o report.md
        lab report 3 --format html -o report.html
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}", "--format", f"use one of {', '.join(FORMATS)}")
    engine = open_database(db)
    try:
        if output is None:
            write_report(engine, campaign, fmt, sys.stdout)
            sys.stdout.flush()
            return
        if fmt == "md":
            _, folder, count = write_markdown_with_figures(engine, campaign, output)
            typer.echo(f"wrote {output} and {count} PNG figures in {folder}", err=True)
            return
        write_atomic(output, lambda fh: write_report(engine, campaign, fmt, fh))
    finally:
        engine.dispose()
    typer.echo(f"wrote {output}", err=True)


@app.command("compare")
def compare_command(
    campaigns: list[str] = typer.Argument(..., metavar="CAMPAIGN...", help="Two or more campaign names or ids."),
    fmt: str = typer.Option("text", "--format", "-f", help="text, md, json or html."),
    db: str = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Put campaigns side by side: k/n runs degraded per unit x stack in each, e.g. around a reinstall.

    Example:
        lab compare 3 4
        lab compare before-reinstall after-reinstall --format md
        lab compare 3 4 --format html > compare.html
    """
    if fmt not in COMPARE_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}", "--format", f"use one of {', '.join(COMPARE_FORMATS)}")
    engine = open_database(db)
    try:
        models = [load_report(engine, ref) for ref in campaigns]
    finally:
        engine.dispose()
    typer.echo(COMPARE_FORMATS[fmt](compare_view(models)), nl=False)


@app.command("campaigns")
def campaigns_command(
    db: str = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List the campaigns in the database: name, scenario, status, start, runs and degraded k/n.

    The degraded count uses the verdicts recorded when each run finished; `lab report` recomputes them.

    Example:
        lab campaigns
        lab campaigns --db postgresql+psycopg2://lab@127.0.0.1:5432/lab --json
    """
    engine = open_database(db)
    try:
        rows = campaign_rows(engine)
    finally:
        engine.dispose()
    typer.echo(render_campaigns_json(rows) if as_json else render_campaigns_text(rows), nl=False)
