"""Several campaigns side by side (e.g. before and after a clean reinstall), and the list of campaigns."""

from __future__ import annotations

import json
import string
from typing import Any

from lab.analysis import wilson_interval
from lab.report.model import CampaignModel, natural_key
from lab.report.render import _environment  # the report's own template environment (HTML autoescaped)
from lab.report.view import THERMAL_WORDS, TRIGGER_WORDS, cell_text, colour, pct, recovery_sentence, table, when


def _labels(n: int) -> list[str]:
    """A, B, ... Z, then A2, B2, ..."""
    letters = string.ascii_uppercase
    return [letters[i % 26] + (str(i // 26 + 1) if i >= 26 else "") for i in range(n)]


def compare_view(models: list[CampaignModel]) -> dict[str, Any]:
    """Rows of unit x stack with one "k/n [interval]" cell per campaign, stack totals and findings."""
    labels = _labels(len(models))
    campaigns, rows, totals = [], {}, {}
    for label, model in zip(labels, models):
        f = model.findings
        assert f is not None, "compute_findings first"
        c = model.campaign
        campaigns.append({"label": label, "id": c.id, "name": c.name, "scenario": c.scenario, "status": c.status,
                          "started_at": c.started_at, "started": when(c.started_at), "runs": len(model.runs),
                          "total": f.total, "thermal": f.thermal.verdict, "trigger": f.trigger.verdict,
                          "recovery": recovery_sentence(model)})
        for cell in f.cells:
            unit, stack = model.units[cell.unit_key], model.stacks[cell.stack_id]
            # keyed by the chip's identity: a HAT that moved to another Pi between campaigns keeps its row
            row = rows.setdefault((unit.key, stack.name), {"unit": unit.label, "key": unit.key, "node": unit.node,
                                                           "stack": stack.name, "cells": {}})
            row["cells"][label] = cell.counts
        for t in f.stacks:
            totals.setdefault(model.stacks[t.stack_id].name, {})[label] = t
    ordered = sorted(rows.values(), key=lambda r: (r["stack"], natural_key(r["node"]), r["unit"]))
    return {"labels": labels, "campaigns": campaigns, "rows": ordered,
            "totals": [{"stack": name, "cells": cells} for name, cells in sorted(totals.items())]}


def _cell(counts) -> str:  # noqa: ANN001 - VerdictCounts | None
    """One campaign's cell: `k/n [interval]`, or a dash when the unit did not run that stack."""
    return cell_text(counts) if counts is not None else "–"


def _total(total) -> str:  # noqa: ANN001 - StackTotal | None
    """One campaign's stack total with its units."""
    return f"{_cell(total.counts)}, units {total.units_degraded}/{total.units_tested}" if total else "–"


def compare_lines(view: dict[str, Any]) -> list[list[str]]:
    """Body rows shared by the text and Markdown tables: units, stack totals, findings."""
    labels = view["labels"]
    body = [[r["unit"], r["stack"]] + [_cell(r["cells"].get(x)) for x in labels] for r in view["rows"]]
    body += [["all units", t["stack"]] + [_total(t["cells"].get(x)) for x in labels] for t in view["totals"]]
    by = {c["label"]: c for c in view["campaigns"]}
    body.append(["thermal", ""] + [THERMAL_WORDS.get(by[x]["thermal"], by[x]["thermal"]) for x in labels])
    body.append(["trigger", ""] + [TRIGGER_WORDS.get(by[x]["trigger"], by[x]["trigger"]) for x in labels])
    return body


def render_compare_text(view: dict[str, Any]) -> str:
    """A terminal table: one column per campaign (legend first)."""
    out = [f"{c['label']} = {c['name']} (scenario {c['scenario']}, {c['status']}, {c['started']}, "
           f"{c['runs']} runs)" for c in view["campaigns"]]
    out += ["", "unit x stack: k/n runs degraded [95 % Wilson interval]"]
    out += table(compare_lines(view), ["unit", "stack"] + view["labels"])
    out += [""] + [f"recovery {c['label']}: {c['recovery']}" for c in view["campaigns"]]
    return "\n".join(out) + "\n"


def render_compare_markdown(view: dict[str, Any]) -> str:
    """The same comparison as a Markdown table, ready to paste."""
    def row(cells: list[str]) -> str:
        """One Markdown table row, pipes escaped."""
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    out = ["# Campaigns compared", ""]
    out += [f"- **{c['label']}**: `{c['name']}` (scenario `{c['scenario']}`, {c['status']}, {c['started']}, "
            f"{c['runs']} runs)" for c in view["campaigns"]]
    out += ["", "Runs degraded, k/n with the 95 % Wilson interval; infrastructure errors are not counted.", ""]
    header = ["unit", "stack"] + view["labels"]
    out += [row(header), row(["---"] * len(header))]
    out += [row(line) for line in compare_lines(view)]
    out += [""] + [f"- recovery in {c['label']}: {c['recovery']}" for c in view["campaigns"]]
    return "\n".join(out) + "\n"


def compare_document(view: dict[str, Any]) -> dict[str, Any]:
    """The comparison as JSON-ready data."""
    def counts(c) -> Any:  # noqa: ANN001
        """VerdictCounts as a dict, or None."""
        return c.to_dict() if c is not None else None

    return {
        "campaigns": [{k: (v.to_dict() if k == "total" else v) for k, v in c.items() if k != "started"}
                      for c in view["campaigns"]],
        "rows": [{"unit": r["unit"], "key": r["key"], "stack": r["stack"], "cells": {x: counts(r["cells"].get(x))
                                                                   for x in view["labels"]}} for r in view["rows"]],
        "totals": [{"stack": t["stack"], "cells": {x: ({"units_degraded": t["cells"][x].units_degraded,
                                                         "units_tested": t["cells"][x].units_tested,
                                                         **t["cells"][x].counts.to_dict()} if x in t["cells"] else None)
                                                    for x in view["labels"]}} for t in view["totals"]],
    }


def render_compare_json(view: dict[str, Any]) -> str:
    """One JSON document."""
    return json.dumps(compare_document(view), indent=2, default=lambda v: v.isoformat()) + "\n"


def render_campaigns_text(rows: list[dict[str, Any]]) -> str:
    """`lab campaigns`: one line per campaign, degraded k/n from the verdicts recorded by `lab run`."""
    if not rows:
        return "no campaigns in this database\n"
    body = []
    for r in rows:
        ci = wilson_interval(r["degraded"], r["counted"])
        infra = f", {r['infra_error']} infra error" if r["infra_error"] else ""
        body.append([r["name"], r["scenario"], r["status"], when(r["started_at"]), str(r["runs"]),
                     f"{r['degraded']}/{r['counted']} [{interval_of(ci)}]{infra}"])
    return "\n".join(table(body, ["name", "scenario", "status", "started", "runs", "degraded"])) + "\n"


def interval_of(ci) -> str:  # noqa: ANN001 - analysis.Interval
    """`0–49 %` for an Interval."""
    return f"{pct(ci.low)}–{pct(ci.high)} %"


def render_campaigns_json(rows: list[dict[str, Any]]) -> str:
    """`lab campaigns --json`: a list with each campaign's interval."""
    out = []
    for r in rows:
        ci = wilson_interval(r["degraded"], r["counted"])
        out.append({**r, "interval": [ci.low, ci.high]})
    return json.dumps(out, indent=2, default=lambda v: v.isoformat()) + "\n"


def render_compare_html(view: dict[str, Any]) -> str:
    """The comparison as one self-contained HTML page (no script, no request): `lab compare --format html`."""
    labels = view["labels"]
    rows = [{"unit": r["unit"], "stack": r["stack"],
             "cells": [{"text": _cell(r["cells"].get(x)), "colour": colour(r["cells"].get(x))} for x in labels]}
            for r in view["rows"]]
    totals = [{"stack": t["stack"], "cells": [{"text": _total(t["cells"].get(x)),
                                               "colour": colour(t["cells"][x].counts if x in t["cells"] else None)}
                                              for x in labels]} for t in view["totals"]]
    by = {c["label"]: c for c in view["campaigns"]}
    findings = [["thermal"] + [THERMAL_WORDS.get(by[x]["thermal"], by[x]["thermal"]) for x in labels],
                ["trigger"] + [TRIGGER_WORDS.get(by[x]["trigger"], by[x]["trigger"]) for x in labels]]
    return _environment(True).get_template("compare.html.j2").render(
        v=view, rows=rows, totals=totals, findings=findings)
