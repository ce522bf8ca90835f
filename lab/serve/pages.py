"""Pure renderers of the web view's own pages (campaign list, live campaign, errors): data in, HTML text out."""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import quote

import jinja2

from lab.analysis import wilson_interval
from lab.report.compare import interval_of
from lab.report.svg import FPS_SPAN
from lab.report.view import when

@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """Templates of lab/serve/templates, HTML-escaped: every name and text from the database is inert."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("lab.serve", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["path"] = lambda value: quote(str(value), safe="")
    env.filters["num"] = lambda value, digits=1: "–" if value is None else f"{value:.{digits}f}"
    return env


def campaign_href(name: str) -> str:
    """The page of a campaign, its name percent-encoded (a name may hold any character)."""
    return "/campaigns/" + quote(name, safe="")


def index_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`lab campaigns` rows, newest first, with the degraded k/n and its interval as text."""
    out = []
    for r in sorted(rows, key=lambda r: (r["started_at"] is not None, r["started_at"], r["id"]), reverse=True):
        ci = wilson_interval(r["degraded"], r["counted"])
        infra = f", {r['infra_error']} infra error" if r["infra_error"] else ""
        out.append({**r, "href": campaign_href(r["name"]), "started": when(r["started_at"]),
                    "degraded_text": f"{r['degraded']}/{r['counted']} [{interval_of(ci)}]{infra}"})
    return out


def render_index(rows: list[dict[str, Any]]) -> str:
    """`/`: every campaign, newest first, and a form to compare some of them."""
    return _environment().get_template("index.html.j2").render(rows=index_rows(rows))


def live_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per run: phase, run k of n, last fps and °C, and the polyline of its recent fps."""
    out = []
    for r in state["runs"]:
        k, n = r["k"], r["n"]
        run = f"{k}/{n}" if k and n else str(k) if k else "–"
        out.append({**r, "run_text": run, "points": polyline(r["series"]),
                    "phase_text": f"{r['phase']} ({r['phase_status']})" if r["phase"] else "–"})
    return out


CHART_W, CHART_H = 180, 40


def polyline(values: list[float | None]) -> str:
    """SVG polyline points of a small fps chart; empty for no fps.

    The y axis spans at least 40 % of the top (as the report's charts), so noise on a flat line stays flat.
    """
    ys = [v for v in values if v is not None]
    if not ys:
        return ""
    top = max(ys)
    low = min(min(ys), FPS_SPAN * top)
    span = (top - low) or 1.0
    step = CHART_W / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{1 + (top - v) / span * (CHART_H - 2):.1f}"
                    for i, v in enumerate(values) if v is not None)


def render_live(state: dict[str, Any]) -> str:
    """`/campaigns/NAME` while it runs: a table per run that /static/live.js keeps current from the event stream."""
    return _environment().get_template("live.html.j2").render(
        s=state, rows=live_rows(state), started=when(state["started_at"]), href=campaign_href(state["name"]),
        chart_w=CHART_W, chart_h=CHART_H)


def render_error(status: int, what: str, hint: str = "") -> str:
    """An error page (404 for an unknown campaign, 400 for bad input, 401 without the token): one line and a hint."""
    return _environment().get_template("error.html.j2").render(status=status, what=what, hint=hint)
