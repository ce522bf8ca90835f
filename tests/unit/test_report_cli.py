"""`lab report`, `lab compare`, `lab campaigns`: exact output, one-line errors, exit codes, atomic files."""

from __future__ import annotations

import json
import stat

import pytest
from sqlalchemy.orm import Session

import lab.cli
from lab.cli import report as report_module  # noqa: F401 - registers the commands
from lab.db.planted import plant_campaign
from lab.db.session import open_database
from lab.report.synthetic import soc_id


@pytest.fixture()
def lab_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run `lab ARGS` through main()'s error boundary; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(lab.cli, "_register", lambda: None)  # only this module's commands

    def run(*args: str):
        code = lab.cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture()
def db(tmp_path) -> str:
    """A SQLite database with two planted campaigns: `before` (infra error on node3) and `after` (none)."""
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    engine = open_database(url)
    with Session(engine) as session, session.begin():
        plant_campaign(session, "before", repeats=1, infra_errors=((2, 1),), artifacts=False)
        plant_campaign(session, "after", repeats=1, infra_errors=(), artifacts=False)
    engine.dispose()
    return url


def test_campaigns_lists_every_campaign(lab_cli, db):
    assert lab_cli("campaigns", "--db", db) == (0, (
        "name    scenario  status    started                  runs  degraded\n"
        "before  cma_soak  finished  2026-04-30 05:08:01 UTC  4     2/3 [21–94 %], 1 infra error\n"
        "after   cma_soak  finished  2026-04-30 05:08:01 UTC  4     2/4 [15–85 %]\n"), "")


def test_campaigns_json(lab_cli, db):
    code, out, _ = lab_cli("campaigns", "--db", db, "--json")
    doc = json.loads(out)
    assert code == 0
    assert [(c["name"], c["runs"], c["degraded"], c["counted"], c["infra_error"]) for c in doc] == [
        ("before", 4, 2, 3, 1), ("after", 4, 2, 4, 0)]
    assert doc[0]["started_at"] == "2026-04-30T05:08:01+00:00"


def test_campaigns_empty(lab_cli, tmp_path):
    assert lab_cli("campaigns", "--db", f"sqlite:///{tmp_path / 'empty.db'}") == (
        0, "no campaigns in this database\n", "")


def test_compare_side_by_side(lab_cli, db):
    assert lab_cli("compare", "before", "after", "--db", db) == (0, (
        "A = before (scenario cma_soak, finished, 2026-04-30 05:08:01 UTC, 4 runs)\n"
        "B = after (scenario cma_soak, finished, 2026-04-30 05:08:01 UTC, 4 runs)\n"
        "\n"
        "unit x stack: k/n runs degraded [95 % Wilson interval]\n"
        "unit               stack      A                                                     B\n"
        "SoC A4EE0CA6…45AC  h10-5.3.0  1/1 [21–100 %]                                        1/1 [21–100 %]\n"
        "SoC FAF1C754…88FA  h10-5.3.0  1/1 [21–100 %]                                        1/1 [21–100 %]\n"
        "SoC FA8A31B4…A9CC  h10-5.3.0  0/0 [0–100 %], 1 infra error not counted              0/1 [0–79 %]\n"
        "SoC A82B2479…B110  h8-4.23.0  0/1 [0–79 %]                                          0/1 [0–79 %]\n"
        "all units          h10-5.3.0  2/2 [34–100 %], 1 infra error not counted, units 2/2  "
        "2/3 [21–94 %], units 2/3\n"
        "all units          h8-4.23.0  0/1 [0–79 %], units 0/1                               "
        "0/1 [0–79 %], units 0/1\n"
        "thermal                       not thermal                                           not thermal\n"
        "trigger                       not tested                                            not tested\n"
        "\n"
        "recovery A: not tested (no recovery action was measured after a degradation)\n"
        "recovery B: not tested (no recovery action was measured after a degradation)\n"), "")


def test_compare_markdown_and_json(lab_cli, db):
    code, out, _ = lab_cli("compare", "before", "2", "--db", db, "--format", "md")
    assert code == 0
    assert "| SoC FA8A31B4…A9CC | h10-5.3.0 | 0/0 [0–100 %], 1 infra error not counted | 0/1 [0–79 %] |\n" in out
    code, out, _ = lab_cli("compare", "1", "2", "--db", db, "--format", "json")
    doc = json.loads(out)
    assert [c["name"] for c in doc["campaigns"]] == ["before", "after"]
    node3 = next(r for r in doc["rows"] if r["key"] == f"soc:{soc_id(2)}")
    assert node3["unit"] == "SoC FA8A31B4…A9CC"
    assert (node3["cells"]["A"]["counted"], node3["cells"]["A"]["infra_error"], node3["cells"]["B"]["counted"]) == (
        0, 1, 1)


def test_report_writes_the_file_atomically(lab_cli, db, tmp_path):
    target = tmp_path / "out" / "report.md"
    target.parent.mkdir()
    assert lab_cli("report", "after", "--db", db, "--format", "md", "-o", str(target)) == (
        0, "", f"wrote {target} and 9 PNG figures in {target.parent / 'report-figures'}\n")
    assert target.read_text().startswith("# cma_soak: after\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["report-figures", "report.md"]  # no temporary file


@pytest.mark.parametrize("fmt", ["text", "md", "html", "csv", "json"])
def test_unknown_campaign_leaves_no_file(lab_cli, db, tmp_path, fmt):
    target = tmp_path / f"report.{fmt}"
    assert lab_cli("report", "nope", "--db", db, "-f", fmt, "-o", str(target)) == (
        2, "", "lab: error: no campaign 'nope' in this database, list them with `lab campaigns`\n")
    assert not target.exists() and list(tmp_path.glob(".report*")) == []


def test_bad_options_are_one_line_errors(lab_cli, db, tmp_path):
    assert lab_cli("report", "after", "--db", db, "--format", "pdf") == (
        2, "", "lab: error: unknown format 'pdf', --format, use one of text, md, html, csv, json\n")
    assert lab_cli("compare", "after", "--db", db, "--format", "pdf") == (
        2, "", "lab: error: unknown format 'pdf', --format, use one of text, md, json, html\n")
    missing = tmp_path / "no" / "such" / "dir" / "r.html"
    assert lab_cli("report", "after", "--db", db, "-f", "html", "-o", str(missing)) == (
        2, "", f"lab: error: the output directory does not exist, {missing.parent}, "
               "create it or pick another -o PATH\n")


def test_report_to_stdout(lab_cli, db):
    code, out, err = lab_cli("report", "2", "--db", db)
    assert (code, err) == (0, "")
    assert out.startswith("campaign after (scenario cma_soak): finished\n")
    assert "degraded: 2/4 runs [15–85 %]\n" in out
