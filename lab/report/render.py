"""Text, Markdown and HTML renderers of a campaign model (pure: the model and artifact bytes in, text out)."""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any

import jinja2

from lab.report.model import ArtifactInfo, CampaignModel, RunInfo
from lab.report.svg import TELEMETRY_PANELS, Line, chart, has_telemetry, telemetry_chart
from lab.report.view import build_view, table

MAX_CHARTS = 60  # one chart per unit x stack; a bigger fleet shows its degraded cells first
EMBED_BUDGET = 4 * 1024 * 1024  # artifact bytes embedded in one HTML file
EMBED_ONE = 256 * 1024  # larger artifacts are listed with their sha256, not embedded


def render_text(model: CampaignModel) -> str:
    """A compact terminal report: summary, unit x stack matrix, one line per run, findings."""
    v = build_view(model)
    c = v["campaign"]
    out = [f"campaign {c.name} (scenario {c.scenario}): {c.status}",
           f"  {v['started']} -> {v['finished'] or 'not finished'}, {v['runs_count']} runs, {v['samples']} records",
           f"  reproduce: {c.reproduce}", "",
           f"degraded: {v['total']['kn']} runs [{v['total']['interval']}]{v['total']['notes']}"]
    out += [f"  {s['sentence']}" for s in v["stacks"]]
    out += ["", "unit x stack: k/n runs degraded [95 % Wilson interval]"]
    out += table([[m["unit"], m["chip"]] + [cell["text"] for cell in m["cells"]] + [m["sat_in"]]
                  for m in v["matrix"]], ["unit", "chip"] + v["stack_names"] + ["sat in (Pi, runs)"])
    out += ["", "runs"]
    out += table([[str(r["index"]), r["unit"], r["where"], r["stack"], str(r["repeat"]), r["verdict"], r["baseline"],
                   r["onset"], r["slope"], r["floor"], r["end"], r["temp"]] for r in v["runs"]],
                 ["#", "unit", "node", "stack", "rep", "verdict", "baseline", "onset", "fps/run", "floor", "end",
                  "temp °C"])
    notes = [f"  #{r['index']} {r['unit']}: {r['verdict']}: {r['reason']}" for r in v["runs"]
             if r["verdict"] not in ("stable", "degraded")]
    notes += [f"  #{r['index']} {r['unit']}: recorded at run time as {r['recorded']}" for r in v["runs"]
              if r["differs"]]
    out += notes
    if v["telemetry"]:
        out += ["", "telemetry per run (PCIe link current of max; host CMA free at its lowest; the Pi's SoC)"]
        out += table([[str(t["index"]), t["unit"], t["node"], t["link"], t["link_flag"], t["power"], t["aspm"],
                       t["cma"], t["soc_temp"], t["arm_clock"], t["throttled"]] for t in v["telemetry"]],
                     ["#", "unit", "node", "PCIe link", "", "power", "ASPM", "host CMA (lowest)", "Pi SoC", "ARM clock",
                      "Pi throttled"])
        out += ["", "CMA alloc failures (chip runtime log) against the fall of fps, per run"]
        out += [f"  #{t['index']} {t['unit']} · {t['stack']} rep {t['repeat']}: {t['cma_fall']}"
                for t in v["telemetry"] if t["cma_fall"]]
        out += ["", "pre-flight"]
        out += [f"  #{t['index']} {t['pi']} {t['preflight_phase']}: {t['preflight']}" for t in v["telemetry"]
                if t["preflight"]]
    if v["flagged"]:
        out += ["", "flagged (outside physical bounds, kept verbatim, not analysed)"]
        out += [f"  {line}" for line in v["flagged"]]
    if v["installed"]:
        out += ["", "installed (per run, at its last phase start)"]
        for i in v["installed"]:
            out += [f"  #{i['index']} {i['node']} ({i['stack']}): kernel {i['kernel']}; {i['packages']}; "
                    f"wheel {i['wheels']}; dkms {i['dkms']}; held {i['holds']}; firmware {i['firmware']}; "
                    f"bootloader {i['bootloader']}"]
    if v["models"]:
        out += ["", "models (from the controller, checked on every node)"]
        out += [f"  {m['name']}: sha256 {m['sha256']}, md5 {m['md5']}, {m['size']} bytes" for m in v["models"]]
    out += ["", f"thermal:  {v['thermal']['verdict']} ({v['thermal']['reason']})",
            f"trigger:  {v['trigger']['verdict']} ({v['trigger']['reason']})",
            f"recovery: {v['recovery_sentence']}",
            f"CMA:      {v['cma_sentence']}"]
    if v["power"]:
        out += ["", "power cycles (by lab: a phase's cold start, or a lost node brought back)"]
        out += [f"  #{p['index']} {p['unit']} {p['phase']}: {p['kind']}, {p['reason']} -> {p['outcome']}"
                for p in v["power"]]
    return "\n".join(out) + "\n"


@lru_cache(maxsize=2)
def _environment(autoescape: bool) -> jinja2.Environment:
    """The jinja2 environment of the packaged templates (HTML autoescaped, Markdown not)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("lab.report", "templates"), autoescape=autoescape,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["cell"] = lambda value: str(value).replace("|", "\\|").replace("\n", " ")
    return env


def render_markdown(model: CampaignModel) -> str:
    """A Markdown report to paste into a forum post or a vendor issue."""
    return _environment(False).get_template("report.md.j2").render(v=build_view(model))


def render_html(model: CampaignModel, blobs: dict[int, bytes | None] | None = None) -> str:
    """One self-contained HTML file: inline SVG charts, inline CSS, artifacts embedded; no request of any kind."""
    v = build_view(model)
    v["charts"], v["charts_left_out"] = charts(model)
    v["artifact_groups"] = artifact_groups(model, blobs or {})
    return _environment(True).get_template("report.html.j2").render(v=v)


def chart_groups(model: CampaignModel) -> tuple[list[tuple[str, list[Line]]], int]:
    """(title, lines) per unit x stack, its repeats overlaid, degraded cells first past MAX_CHARTS; and how many
    groups were left out. The SVG charts here and the PNG figures (png.py) draw the same groups."""
    findings = model.findings
    assert findings is not None, "compute_findings first"
    groups: dict[tuple[str, int], list] = {}
    for run in model.runs:
        groups.setdefault((run.unit_key, run.stack_id), []).append(run)
    order = list(groups)
    if len(order) > MAX_CHARTS:
        order.sort(key=lambda key: not any(findings.runs[r.index].verdict == "degraded" for r in groups[key]))
    out = []
    for key in order[:MAX_CHARTS]:
        runs = groups[key]
        lines = []
        for run in runs:
            f = findings.runs[run.index]
            s = run.series
            onset = f.series.onset_run if f.series and f.verdict == "degraded" else None
            lines.append(Line(list(range(1, len(s) + 1)), list(s.fps), list(s.temp), onset,
                              f"repeat {run.repeat}" if len(runs) > 1 else "", [i + 1 for i in s.errors],
                              s.marks, telemetry_series(run)))
        verdicts = ", ".join(dict.fromkeys(findings.runs[r.index].verdict for r in runs))
        title = f"{model.units[key[0]].label} · {model.stacks[key[1]].name} — {verdicts}"
        if any(line.xs for line in lines):
            out.append((title, lines))
    return out, max(0, len(groups) - MAX_CHARTS)


NAN = float("nan")
_SCALE = {"cma_free_mib": ("cma_free_kb", 1 / 1024), "cma_total_mib": ("cma_total_kb", 1 / 1024)}


def telemetry_series(run: RunInfo) -> dict[str, list[float]]:
    """The charted telemetry of a run, one value per benchmark (NaN where not read); empty when none was."""
    readings = run.series.telemetry
    if not readings:
        return {}
    out = {}
    for _, _, series, _ in TELEMETRY_PANELS:
        for key, *_ in series:
            column, factor = _SCALE.get(key, (key, 1.0))
            values = []
            for position in range(len(run.series)):
                value = readings.get(position, {}).get(column)
                values.append(float(value) * factor if isinstance(value, (int, float))
                              and not isinstance(value, bool) else NAN)
            out[key] = values
    return out


def charts(model: CampaignModel) -> tuple[list[str], int]:
    """Per unit x stack (its repeats overlaid), degraded cells first past MAX_CHARTS: the fps and temperature SVG,
    followed by its telemetry SVG (PCIe link, CMA) when the runs read any."""
    groups, left_out = chart_groups(model)
    out = []
    for title, lines in groups:
        out.append(chart(title, lines))
        if has_telemetry(lines):
            out.append(telemetry_chart(title, lines))
    return out, left_out


def artifact_groups(model: CampaignModel, blobs: dict[int, bytes | None]) -> list[dict[str, Any]]:
    """Artifacts per run, each with its text (for a <details> block) and a data: URI when embedded."""
    by_run: dict[Any, list[dict[str, Any]]] = {}
    nodes = {run.index: run.node for run in model.runs}
    for a in model.artifacts:
        data = blobs.get(a.id)
        item = {"name": a.name, "size": a.size, "sha256": a.sha256, "kind": a.kind, "id": a.id,
                "text": None, "href": None}
        if data is not None:
            item["href"] = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
            if b"\0" not in data[:4096]:
                item["text"] = data.decode("utf-8", errors="replace")
        by_run.setdefault(a.run_index, []).append(item)
    groups = []
    for run_index, items in sorted(by_run.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        label = f"run #{run_index} ({nodes.get(run_index, '?')})" if run_index is not None else "campaign"
        groups.append({"label": label, "artifacts": items, "embedded": sum(1 for i in items if i["href"])})
    return groups


def embed_choice(artifacts: list[ArtifactInfo], budget: int = EMBED_BUDGET, one: int = EMBED_ONE) -> list[int]:
    """Ids of the artifacts to embed: logs and identities before benchmark outputs, within the byte budget."""
    chosen, used = [], 0
    ranked = sorted(artifacts, key=lambda a: ("benchmark" in a.name, a.run_index or 0, a.name))
    for a in ranked:
        if a.size <= one and used + a.size <= budget:
            chosen.append(a.id)
            used += a.size
    return chosen

