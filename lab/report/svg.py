"""Inline SVG charts (no JavaScript, no external resource): fps and temperature against run, onset marked."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 560, 260
FPS_SPAN = 0.6
LEFT, RIGHT, TOP, BOTTOM = 58, 58, 30, 40
HALO = 'stroke="#fff" stroke-width="3" paint-order="stroke"'  # labels stay readable over the lines
MAX_POINTS = 600  # longer series are drawn as per-bucket min and max, which keeps dips and spikes
FPS_COLOUR, TEMP_COLOUR, ONSET_COLOUR, MARK_COLOUR, ERROR_COLOUR = "#1f5fbf", "#d9731a", "#c0392b", "#777", "#c0392b"


@dataclass
class Line:
    """One repeat's series: x = benchmark number, fps and temperature (NaN where missing)."""

    xs: list[int]
    fps: list[float]
    temp: list[float]
    onset: int | None = None
    label: str = ""
    errors: list[int] = field(default_factory=list)
    marks: list[tuple[int, str]] = field(default_factory=list)
    # per benchmark (NaN where not read), keys of TELEMETRY_PANELS: lanes, GT/s, host CmaFree MiB, chip CMA failures
    telemetry: dict[str, list[float]] = field(default_factory=dict)


# the telemetry chart's panels: (title, unit, [(series key, colour, dashed, legend)], drawn as bars)
LINK_COLOUR, MAX_COLOUR, CMA_COLOUR, CMA_ERROR_COLOUR = "#1f5fbf", "#999", "#2a8a4a", "#c0392b"
TELEMETRY_PANELS = (
    ("PCIe link width", "lanes", [("pcie_width", LINK_COLOUR, False, "negotiated"),
                                  ("pcie_max_width", MAX_COLOUR, True, "max")], False),
    ("PCIe link speed", "GT/s", [("pcie_speed", LINK_COLOUR, False, "negotiated"),
                                 ("pcie_max_speed", MAX_COLOUR, True, "max")], False),
    ("Host CmaFree", "MiB", [("cma_free_mib", CMA_COLOUR, False, "free"),
                             ("cma_total_mib", MAX_COLOUR, True, "total")], False),
    ("Chip CMA alloc failures", "per run", [("cma_errors", CMA_ERROR_COLOUR, False, "new")], True),
)
PANEL_H = 58


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [round(math.floor(low / step) * step, 10)]
    while ticks[-1] < high - 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _finite(values: list[float]) -> list[float]:
    """The values that are not NaN."""
    return [v for v in values if not math.isnan(v)]


def decimate(xs: list[int], ys: list[float], limit: int = MAX_POINTS) -> tuple[list[int], list[float]]:
    """At most about `limit` points: per bucket the lowest and highest value, in x order."""
    if len(xs) <= limit:
        return xs, ys
    size = math.ceil(len(xs) / (limit // 2))
    out_x, out_y = [], []
    for start in range(0, len(xs), size):
        bucket = [(x, y) for x, y in zip(xs[start:start + size], ys[start:start + size]) if not math.isnan(y)]
        if not bucket:
            continue
        lo, hi = min(bucket, key=lambda p: p[1]), max(bucket, key=lambda p: p[1])
        for x, y in sorted({lo, hi}):
            out_x.append(x)
            out_y.append(y)
    return out_x, out_y


def _path(xs: list[int], ys: list[float], sx, sy) -> str:  # noqa: ANN001 - scale functions
    """An SVG path through the points; a NaN breaks the line."""
    parts, pen = [], False
    for x, y in zip(xs, ys):
        if math.isnan(y):
            pen = False
            continue
        parts.append(f"{'L' if pen else 'M'}{sx(x):.1f},{sy(y):.1f}")
        pen = True
    return "".join(parts)


def chart(title: str, lines: list[Line], fps_label: str = "fps", temp_label: str = "chip °C") -> str:
    """One chart: fps (left axis, solid) and temperature (right axis, dashed) for each line; onsets in red."""
    xs_all = [x for line in lines for x in line.xs]
    fps_all = _finite([v for line in lines for v in line.fps])
    temp_all = _finite([v for line in lines for v in line.temp])
    x_max = max(xs_all, default=1)
    x_ticks = [t for t in nice_ticks(1, x_max, 8) if 1 <= t <= x_max] or [1]
    top = max(fps_all, default=1.0)
    # at least 40 % of the top in view, so noise on a flat series does not look like a trend
    f_ticks = nice_ticks(min(min(fps_all, default=0.0), FPS_SPAN * top), top)
    t_ticks = nice_ticks(min(temp_all), max(temp_all)) if temp_all else []
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        """x pixel of a benchmark number."""
        return LEFT + (x - 1) / max(1, x_max - 1) * plot_w

    def scale(ticks: list[float]):  # noqa: ANN202
        """y pixel function for an axis with these ticks."""
        lo, hi = ticks[0], ticks[-1]
        return lambda y: TOP + plot_h - (y - lo) / ((hi - lo) or 1) * plot_h

    sf = scale(f_ticks)
    st = scale(t_ticks) if t_ticks else None
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}"><title>{escape(title)}</title>',
           f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#bbb"/>',
           f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>']
    for t in f_ticks:
        y = sf(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
                   f'fill="{FPS_COLOUR}">{t:g}</text>')
    for t in t_ticks:
        out.append(f'<text x="{LEFT + plot_w + 6}" y="{st(t) + 4:.1f}" font-size="11" '
                   f'fill="{TEMP_COLOUR}">{t:g}</text>')
    for t in x_ticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{TOP + plot_h}" x2="{x:.1f}" y2="{TOP + plot_h + 4}" stroke="#555"/>'
                   f'<text x="{x:.1f}" y="{TOP + plot_h + 16}" font-size="11" text-anchor="middle">{t:g}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 6}" font-size="11" text-anchor="middle">'
               f'benchmark run</text>')
    out.append(f'<text x="14" y="{TOP + plot_h / 2}" font-size="11" fill="{FPS_COLOUR}" text-anchor="middle" '
               f'transform="rotate(-90 14 {TOP + plot_h / 2})">{escape(fps_label)}</text>')
    if t_ticks:
        xr = WIDTH - 10
        out.append(f'<text x="{xr}" y="{TOP + plot_h / 2}" font-size="11" fill="{TEMP_COLOUR}" '
                   f'text-anchor="middle" transform="rotate(90 {xr} {TOP + plot_h / 2})">{escape(temp_label)}</text>')
    seen_marks: set[tuple[int, str]] = set()
    for line in lines:
        for position, label in line.marks:
            if (position, label) in seen_marks:
                continue
            seen_marks.add((position, label))
            x = sx(position + 0.5)
            tx, ty = x + 3, TOP + plot_h - 4
            out.append(f'<line class="mark" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" '
                       f'stroke="{MARK_COLOUR}" stroke-dasharray="2,3"/><text x="{tx:.1f}" y="{ty}" font-size="10" '
                       f'fill="{MARK_COLOUR}" {HALO} transform="rotate(-90 {tx:.1f} {ty})">{escape(label)}</text>')
    for n, line in enumerate(lines):
        opacity = 1.0 if n == 0 else max(0.35, 0.8 - 0.15 * n)
        if st is not None:
            tx, ty = decimate(line.xs, line.temp)
            out.append(f'<path class="temp" d="{_path(tx, ty, sx, st)}" fill="none" stroke="{TEMP_COLOUR}" '
                       f'stroke-width="1.5" stroke-dasharray="5,3" opacity="{opacity}"/>')
        fx, fy = decimate(line.xs, line.fps)
        out.append(f'<path class="fps" d="{_path(fx, fy, sx, sf)}" fill="none" stroke="{FPS_COLOUR}" '
                   f'stroke-width="2" opacity="{opacity}"/>')
        if len(fx) <= 60:
            out.extend(f'<circle cx="{sx(x):.1f}" cy="{sf(y):.1f}" r="2.2" fill="{FPS_COLOUR}" opacity="{opacity}"/>'
                       for x, y in zip(fx, fy) if not math.isnan(y))
        for x in line.errors:
            cx, cy = sx(x), TOP + plot_h - 8
            out.append(f'<path class="error" d="M{cx - 4:.1f},{cy - 4:.1f}L{cx + 4:.1f},{cy + 4:.1f}M{cx - 4:.1f},'
                       f'{cy + 4:.1f}L{cx + 4:.1f},{cy - 4:.1f}" stroke="{ERROR_COLOUR}" stroke-width="2"/>')
    onsets: dict[int, list[str]] = {}
    for line in lines:
        if line.onset is not None:
            onsets.setdefault(line.onset, []).append(line.label)
    for n, (onset, labels) in enumerate(sorted(onsets.items())):
        x = sx(onset)
        which = f" ({', '.join(label for label in labels if label)})" if any(labels) else ""
        out.append(f'<line class="onset" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" '
                   f'stroke="{ONSET_COLOUR}" stroke-width="1.5" stroke-dasharray="6,3"/>'
                   f'<text x="{x + 4:.1f}" y="{TOP + plot_h - 8 - 13 * n}" font-size="11" fill="{ONSET_COLOUR}" {HALO}>'
                   f'onset run {onset}{escape(which)}</text>')
    legend_x = LEFT
    out.append(f'<g font-size="11"><line x1="{legend_x}" y1="{TOP + plot_h + 28}" x2="{legend_x + 22}" '
               f'y2="{TOP + plot_h + 28}" stroke="{FPS_COLOUR}" stroke-width="2"/>'
               f'<text x="{legend_x + 26}" y="{TOP + plot_h + 32}">fps</text>')
    if t_ticks:
        out.append(f'<line x1="{legend_x + 60}" y1="{TOP + plot_h + 28}" x2="{legend_x + 82}" '
                   f'y2="{TOP + plot_h + 28}" stroke="{TEMP_COLOUR}" stroke-width="1.5" stroke-dasharray="5,3"/>'
                   f'<text x="{legend_x + 86}" y="{TOP + plot_h + 32}">temperature</text>')
    out.append("</g></svg>")
    return "".join(out)


def has_telemetry(lines: list[Line]) -> bool:
    """Whether any repeat read any of the charted telemetry."""
    return any(_finite(values) for line in lines for values in line.telemetry.values())


def telemetry_chart(title: str, lines: list[Line]) -> str:
    """PCIe link width and speed against their maximum, host CmaFree and the chip's CMA alloc failures, per
    benchmark run, in small panels sharing the fps chart's x axis; the degradation onset marked in each."""
    panels = [p for p in TELEMETRY_PANELS
              if any(_finite(line.telemetry.get(key, [])) for line in lines for key, *_ in p[2])]
    axis = TOP + len(panels) * (PANEL_H + 22) + 6  # the x tick labels, under the last panel
    height = axis + 26
    x_max = max((x for line in lines for x in line.xs), default=1)
    x_ticks = nice_ticks(1, x_max)
    x_ticks = [t for t in x_ticks if 1 <= t <= x_max] or [1]
    plot_w = WIDTH - LEFT - RIGHT

    def sx(x: float) -> float:
        """x pixel of a benchmark number."""
        return LEFT + (x - 1) / max(1, x_max - 1) * plot_w

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart telemetry" role="img" width="{WIDTH}" '
           f'height="{height}" viewBox="0 0 {WIDTH} {height}"><title>{escape(title)} — telemetry</title>',
           f'<text x="{LEFT}" y="18" font-size="13" font-weight="bold">{escape(title)} — telemetry</text>']
    onsets = sorted({line.onset for line in lines if line.onset is not None})
    for n, (name, unit, series, bars) in enumerate(panels):
        top = TOP + n * (PANEL_H + 22) + 14
        values = [v for line in lines for key, *_ in series for v in _finite(line.telemetry.get(key, []))]
        ticks = nice_ticks(0.0, max(values + [1.0]), 2)
        lo, hi = ticks[0], ticks[-1]

        def sy(y: float, top: float = top, lo: float = lo, hi: float = hi) -> float:
            """y pixel in this panel."""
            return top + PANEL_H - (y - lo) / ((hi - lo) or 1) * PANEL_H

        out.append(f'<g class="panel" data-panel="{escape(name)}"><rect x="{LEFT}" y="{top}" width="{plot_w}" '
                   f'height="{PANEL_H}" fill="#fff" stroke="#bbb"/><text x="{LEFT}" y="{top - 3}" font-size="11">'
                   f'{escape(name)} ({escape(unit)})</text>')
        for t in ticks:
            out.append(f'<text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" font-size="10" text-anchor="end">{t:g}</text>')
        for onset in onsets:
            out.append(f'<line class="telemetry-onset" x1="{sx(onset):.1f}" y1="{top}" x2="{sx(onset):.1f}" '
                       f'y2="{top + PANEL_H}" stroke="{ONSET_COLOUR}" stroke-width="1.2" stroke-dasharray="6,3"/>')
        legend_x = LEFT + plot_w + 4
        for k, (key, colour, dashed, legend) in enumerate(series):
            out.append(f'<text x="{legend_x}" y="{top + 10 + 12 * k}" font-size="9" fill="{colour}">'
                       f'{escape(legend)}</text>')
            for m, line in enumerate(lines):
                ys = line.telemetry.get(key, [])
                if not _finite(ys):
                    continue
                opacity = 1.0 if m == 0 else max(0.35, 0.8 - 0.15 * m)
                if bars:
                    width = max(1.0, plot_w / max(1, x_max) * 0.6)
                    out.extend(f'<rect class="{key}" x="{sx(x) - width / 2:.1f}" y="{sy(y):.1f}" width="{width:.1f}" '
                               f'height="{sy(lo) - sy(y):.1f}" fill="{colour}" opacity="{opacity}"/>'
                               for x, y in zip(line.xs, ys) if not math.isnan(y) and y > 0)
                    continue
                xs, ys = decimate(line.xs, ys)
                dash = ' stroke-dasharray="4,3"' if dashed else ""
                out.append(f'<path class="{key}" d="{_path(xs, ys, sx, sy)}" fill="none" stroke="{colour}" '
                           f'stroke-width="1.6"{dash} opacity="{opacity}"/>')
        out.append("</g>")
    for t in x_ticks:
        out.append(f'<text x="{sx(t):.1f}" y="{axis}" font-size="11" text-anchor="middle">{t:g}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{height - 6}" font-size="11" text-anchor="middle">'
               f'benchmark run</text></svg>')
    return "".join(out)
