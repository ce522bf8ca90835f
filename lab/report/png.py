"""PNG figures for the Markdown report (forums take image uploads, not inline SVG): the HTML report's charts of fps
and chip temperature per unit x stack with the onset marked, and the unit x stack matrix, drawn with matplotlib."""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

import matplotlib

matplotlib.use("Agg")  # no display: draw to memory only (before anything else of matplotlib is imported)

from matplotlib.figure import Figure  # noqa: E402 - after the backend is chosen
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lab.report.model import CampaignModel  # noqa: E402
from lab.report.render import chart_groups  # noqa: E402
from lab.report.svg import (ERROR_COLOUR, FPS_COLOUR, FPS_SPAN, MARK_COLOUR, ONSET_COLOUR,  # noqa: E402
                            TELEMETRY_PANELS, TEMP_COLOUR, Line, has_telemetry)
from lab.report.view import build_view  # noqa: E402

MAX_MATRIX_ROWS = 60  # units drawn in the matrix figure; the Markdown table above it has them all
DPI = 100


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes, without the matplotlib version in its metadata (same input, same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def chart_png(title: str, lines: list[Line]) -> bytes:
    """fps (left axis, solid) and chip temperature (right axis, dashed) against benchmark run; onsets red dashed."""
    fig = Figure(figsize=(7.2, 3.4))
    ax = fig.add_subplot()
    fps_all = [v for line in lines for v in line.fps if not math.isnan(v)]
    temps = [v for line in lines for v in line.temp if not math.isnan(v)]
    x_max = max((x for line in lines for x in line.xs), default=1)
    top = max(fps_all, default=1.0)
    ax.set_ylim(min(min(fps_all, default=0.0), FPS_SPAN * top) * 0.98, top * 1.02)  # as the SVG: 40 % of the top
    ax.set_xlim(0.5, x_max + 0.5)
    ax.set_xlabel("benchmark run")
    ax.set_ylabel("fps", color=FPS_COLOUR)
    ax.tick_params(axis="y", colors=FPS_COLOUR)
    ax.grid(True, axis="y", color="#eee")
    ax.set_title(title, fontsize=10, loc="left")
    twin = ax.twinx() if temps else None
    if twin is not None:
        twin.set_ylabel("chip °C", color=TEMP_COLOUR)
        twin.tick_params(axis="y", colors=TEMP_COLOUR)
    seen: set[tuple[int, str]] = set()
    for line in lines:
        for position, label in line.marks:
            if (position, label) not in seen:
                seen.add((position, label))
                ax.axvline(position + 0.5, color=MARK_COLOUR, linestyle=":", linewidth=1)
                ax.annotate(label, (position + 0.5, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                            fontsize=7, color=MARK_COLOUR, ha="right", va="bottom")
    for n, line in enumerate(lines):
        alpha = 1.0 if n == 0 else max(0.35, 0.8 - 0.15 * n)
        label = f"fps {line.label}".strip()
        ax.plot(line.xs, line.fps, color=FPS_COLOUR, linewidth=1.8, alpha=alpha, label=label,
                marker="o" if len(line.xs) <= 60 else None, markersize=2.5)
        if twin is not None:
            twin.plot(line.xs, line.temp, color=TEMP_COLOUR, linewidth=1.3, linestyle="--", alpha=alpha,
                      label=f"temperature {line.label}".strip())
        if line.errors:
            ax.plot(line.errors, [ax.get_ylim()[0]] * len(line.errors), linestyle="none", marker="x",
                    color=ERROR_COLOUR, markersize=7)
    onsets: dict[int, list[str]] = {}
    for line in lines:
        if line.onset is not None:
            onsets.setdefault(line.onset, []).append(line.label)
    for n, (onset, labels) in enumerate(sorted(onsets.items())):
        which = f" ({', '.join(label for label in labels if label)})" if any(labels) else ""
        ax.axvline(onset, color=ONSET_COLOUR, linestyle="--", linewidth=1.4)
        ax.annotate(f"onset run {onset}{which}", (onset, 0.06 + 0.08 * n), xycoords=("data", "axes fraction"),
                    xytext=(4, 0), textcoords="offset points", fontsize=8, color=ONSET_COLOUR)
    handles = ax.get_legend_handles_labels()[0][:1] + (twin.get_legend_handles_labels()[0][:1] if twin else [])
    # above the plot, beside the title: inside it, it would cover the curves' plateau
    ax.legend(handles, ["fps", "temperature"][:len(handles)], loc="lower right", bbox_to_anchor=(1.0, 1.0),
              ncol=2, fontsize=8, frameon=False, borderaxespad=0.1)
    fig.tight_layout()
    return _png(fig)


def telemetry_png(title: str, lines: list[Line]) -> bytes:
    """The HTML report's telemetry chart: PCIe link width and speed against their maximum, host CmaFree against its
    total and the chip's CMA alloc failures per benchmark run (bars), one small panel each, onsets red dashed."""
    panels = [p for p in TELEMETRY_PANELS
              if any(not math.isnan(v) for line in lines for key, *_ in p[2] for v in line.telemetry.get(key, []))]
    fig = Figure(figsize=(7.2, 0.9 + 1.1 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    x_max = max((x for line in lines for x in line.xs), default=1)
    onsets = sorted({line.onset for line in lines if line.onset is not None})
    for ax, (name, unit, series, bars) in zip(axes, panels):
        ax.set_title(f"{name} ({unit})", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        ax.set_xlim(0.5, x_max + 0.5)
        for n, line in enumerate(lines):
            alpha = 1.0 if n == 0 else max(0.35, 0.8 - 0.15 * n)
            for key, colour, dashed, legend in series:
                ys = line.telemetry.get(key, [])
                if not any(not math.isnan(v) for v in ys):
                    continue
                if bars:
                    ax.bar(line.xs, [0.0 if math.isnan(v) else v for v in ys], color=colour, alpha=alpha, width=0.6,
                           label=legend if n == 0 else None)
                else:
                    ax.plot(line.xs, ys, color=colour, linestyle="--" if dashed else "-", linewidth=1.4, alpha=alpha,
                            label=legend if n == 0 else None)
        ax.set_ylim(bottom=0)
        if bars:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # failures come whole
        for onset in onsets:
            ax.axvline(onset, color=ONSET_COLOUR, linestyle="--", linewidth=1.2)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    axes[-1].set_xlabel("benchmark run")
    fig.suptitle(f"{title} — telemetry", fontsize=10, x=0.02, ha="left")
    fig.tight_layout()
    return _png(fig)


def matrix_png(model: CampaignModel) -> bytes:
    """The unit x stack matrix: k/n runs degraded and the 95 % interval per cell, coloured as in the HTML report."""
    v = build_view(model)
    stacks, rows = v["stack_names"], v["matrix"][:MAX_MATRIX_ROWS]
    left = max([len(m["unit"]) for m in rows] + [4]) * 0.075 + 0.3
    col = max([len(s) for s in stacks] + [14]) * 0.075 + 0.3
    height = 0.42
    width = left + col * len(stacks)
    wide = max(width + 0.2, 4.9)  # never narrower than the title
    fig = Figure(figsize=(wide, height * (len(rows) + 1) + 0.5))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(-0.1, wide - 0.1)  # one data unit per inch, as the cell sizes assume
    ax.set_ylim(height * (len(rows) + 1) + 0.4, -0.1)
    ax.text(0, 0.12, "Unit x stack: runs degraded (k/n, 95 % Wilson interval)", fontsize=9, fontweight="bold",
            va="center")
    y0 = 0.3
    ax.add_patch(Rectangle((0, y0), width, height, facecolor="#f2f2f2", edgecolor="#ccc"))
    ax.text(0.08, y0 + height / 2, "unit", fontsize=8, va="center", fontweight="bold")
    for j, name in enumerate(stacks):
        ax.text(left + col * (j + 0.5), y0 + height / 2, name, fontsize=8, va="center", ha="center",
                fontweight="bold")
    for i, m in enumerate(rows):
        y = y0 + height * (i + 1)
        ax.add_patch(Rectangle((0, y), left, height, facecolor="#f2f2f2", edgecolor="#ccc"))
        ax.text(0.08, y + height / 2, m["unit"], fontsize=8, va="center")
        for j, cell in enumerate(m["cells"]):
            ax.add_patch(Rectangle((left + col * j, y), col, height, facecolor=cell["colour"], edgecolor="#ccc"))
            text = f"{cell['kn']}  [{cell['interval']}]" if cell["interval"] else cell["kn"]
            ax.text(left + col * (j + 0.5), y + height / 2, text, fontsize=8, va="center", ha="center")
    if len(v["matrix"]) > len(rows):
        ax.text(0, y0 + height * (len(rows) + 1) + 0.2, f"{len(v['matrix']) - len(rows)} more units in the table",
                fontsize=8, color="#666")
    return _png(fig)


def _slug(text: str) -> str:
    """A file-name-safe form of a unit and stack label."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-.")[:60] or "chart"


def figures(model: CampaignModel) -> list[tuple[str, str, bytes]]:
    """(file name, title, PNG bytes): the matrix first, then one chart per unit x stack."""
    out = [("matrix.png", "Unit x stack: runs degraded", matrix_png(model))]
    for n, (title, lines) in enumerate(chart_groups(model)[0], 1):
        unit_stack = title.split(" — ")[0].replace(" · ", "-")
        out.append((f"fps-{n:02d}-{_slug(unit_stack)}.png", title, chart_png(title, lines)))
        if has_telemetry(lines):  # the same group's link and CMA figures, right after its fps
            out.append((f"telemetry-{n:02d}-{_slug(unit_stack)}.png", f"{title} — telemetry",
                        telemetry_png(title, lines)))
    return out


def figures_dir(markdown: Path) -> Path:
    """Where the figures of `report.md` go: `report-figures/` beside it."""
    return markdown.with_name(markdown.stem + "-figures")


def write_figures(model: CampaignModel, directory: Path) -> list[tuple[str, str]]:
    """Write every figure into `directory` (replacing it whole, never half-written); returns (file name, title)."""
    directory = Path(directory)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        out = []
        for name, title, data in figures(model):
            (tmp / name).write_bytes(data)
            out.append((name, title))
        os.chmod(tmp, 0o755)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def markdown_figures(directory_name: str, written: list[tuple[str, str]]) -> str:
    """The `## Figures` section: an image link per figure, relative to the Markdown file."""
    lines = ["## Figures", "",
             "fps (solid, left axis) and chip temperature (dashed, right axis) against benchmark run; red dashed line: "
             "onset of degradation; after each, when the runs read it, the PCIe link width and speed against their "
             "maximum, host CmaFree and the chip's CMA alloc failures per benchmark run. The PNG files beside this "
             "report can be uploaded with it.", ""]
    for name, title in written:
        alt = title.replace("[", "(").replace("]", ")").replace("\n", " ")
        lines += [f"![{alt}]({quote(directory_name)}/{quote(name)})", ""]
    return "\n".join(lines)


def with_figures(markdown: str, section: str) -> str:
    """The Markdown report with the figures section before its runs table (at the end when it has none)."""
    at = markdown.find("\n## Runs\n")
    if at < 0:
        return markdown.rstrip("\n") + "\n\n" + section
    return markdown[:at + 1] + section + "\n" + markdown[at + 1:]
