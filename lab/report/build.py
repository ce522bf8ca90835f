"""One call per report: load the campaign through lab.db, render it, write it to a stream or atomically to a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from lab.db.report_load import artifact_bytes, load_report, open_campaign, stream_runs
from lab.db.session import Engine
from lab.errors import ConfigError
from lab.report.export import write_csv, write_json
from lab.report.model import CampaignModel
from lab.report.render import embed_choice, render_html, render_markdown, render_text

FORMATS = ("text", "md", "html", "csv", "json")
SUFFIX = {"text": ".txt", "md": ".md", "html": ".html", "csv": ".csv", "json": ".json"}


def write_report(engine: Engine, ref: str, fmt: str, out: TextIO) -> CampaignModel:
    """Render campaign `ref` as `fmt` onto `out`; returns the model it rendered."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}", "--format", f"use one of {', '.join(FORMATS)}")
    if fmt in ("csv", "json"):  # the records are written as they stream in, one run's at a time
        model = open_campaign(engine, ref)
        (write_csv if fmt == "csv" else write_json)(model, stream_runs(engine, model), out)
        return model
    model = load_report(engine, ref)
    if fmt == "text":
        out.write(render_text(model))
    elif fmt == "md":
        out.write(render_markdown(model))
    else:
        blobs = dict(artifact_bytes(engine, embed_choice(model.artifacts)))
        out.write(render_html(model, blobs))
    return model


def write_markdown_with_figures(engine: Engine, ref: str, path: Path) -> tuple[CampaignModel, Path, int]:
    """`--format md -o PATH`: the Markdown report and its PNG figures in `STEM-figures/` beside it, linked by
    relative path; returns (model, figures directory, figure count)."""
    from lab.report.png import figures_dir, markdown_figures, with_figures, write_figures  # matplotlib: only here

    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigError("the output directory does not exist", str(directory), "create it or pick another -o PATH")
    model = load_report(engine, ref)
    folder = figures_dir(path)
    written = write_figures(model, folder)
    text = with_figures(render_markdown(model), markdown_figures(folder.name, written))
    write_atomic(path, lambda fh: fh.write(text))
    return model, folder, len(written)


def write_atomic(path: Path, write: Callable[[TextIO], object]) -> None:
    """Write a text file through a temporary file in the same directory, then rename it into place (mode 0600)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ConfigError("the output directory does not exist", str(directory), "create it or pick another -o PATH")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
