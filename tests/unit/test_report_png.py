"""PNG figures beside the Markdown report: written with `--format md -o`, real images, linked by relative path."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image
from sqlalchemy.orm import Session

import lab.cli
from lab.cli import report as report_module  # noqa: F401 - registers the commands
from lab.db.planted import plant_campaign
from lab.db.report_load import load_report
from lab.db.session import open_database
from lab.report.png import figures, markdown_figures, with_figures
from lab.report.render import chart_groups

LINK = re.compile(r"!\[([^\]]*)\]\(([^)]+)\)")


@pytest.fixture()
def db(tmp_path) -> str:
    """A SQLite database with the planted campaign (4 units, 2 repeats, one infra error)."""
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    engine = open_database(url)
    with Session(engine) as session, session.begin():
        plant_campaign(session, "planted", artifacts=False)
    engine.dispose()
    return url


def test_md_with_output_writes_png_figures_linked_from_the_markdown(db, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lab.cli, "_register", lambda: None)
    target = tmp_path / "out" / "my report.md"
    target.parent.mkdir()
    assert lab.cli.main(["report", "planted", "--db", db, "-f", "md", "-o", str(target)]) == 0
    folder = target.parent / "my report-figures"
    assert capsys.readouterr() == ("", f"wrote {target} and 9 PNG figures in {folder}\n")
    text = target.read_text()
    links = LINK.findall(text)
    groups = ["SoC A4EE0CA6…45AC · h10-5.3.0 — degraded", "SoC FAF1C754…88FA · h10-5.3.0 — degraded",
              "SoC FA8A31B4…A9CC · h10-5.3.0 — stable, infra_error", "SoC A82B2479…B110 · h8-4.23.0 — stable"]
    # each unit x stack: its fps and temperature, then its telemetry (PCIe link, CMA)
    assert [alt for alt, _ in links] == ["Unit x stack: runs degraded"] + [
        title for group in groups for title in (group, f"{group} — telemetry")]
    assert text.index("## Figures") < text.index("## Runs")
    for _, href in links:
        assert not href.startswith(("/", "http")) and " " not in href
        path = target.parent / unquote(href)
        assert path.is_file(), href
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 200
            image.verify()
    assert sorted(p.name for p in folder.iterdir()) == sorted(Path(unquote(h)).name for _, h in links)
    assert sorted(p.name for p in target.parent.iterdir()) == ["my report-figures", "my report.md"]  # no temp left


def test_charts_show_fps_temperature_and_onset(db):
    engine = open_database(db)
    model = load_report(engine, "planted")
    engine.dispose()
    title, lines = chart_groups(model)[0][0]
    assert title == "SoC A4EE0CA6…45AC · h10-5.3.0 — degraded"
    assert [line.onset for line in lines] == [13, 13]
    name, _, data = figures(model)[1]
    assert name == "fps-01-SoC-A4EE0CA6-45AC-h10-5.3.0.png"
    from io import BytesIO

    with Image.open(BytesIO(data)) as image:
        colours = {c for _, c in image.convert("RGB").getcolors(image.width * image.height)}
    near = lambda rgb: any(sum(abs(a - b) for a, b in zip(rgb, c)) <= 30 for c in colours)  # noqa: E731
    assert near((0x1F, 0x5F, 0xBF)) and near((0xD9, 0x73, 0x1A)) and near((0xC0, 0x39, 0x2B))  # fps, temp, onset
    assert figures(model)[0][2] == figures(model)[0][2]  # the same bytes every time (no version or date inside)


def test_figures_section_goes_before_the_runs():
    section = markdown_figures("r-figures", [("matrix.png", "Unit x stack [k/n]")])
    assert section.splitlines()[-1] == "![Unit x stack (k/n)](r-figures/matrix.png)"
    assert with_figures("# t\n\n## Runs\n\nx\n", section) == "# t\n\n" + section + "\n## Runs\n\nx\n"
    assert with_figures("# t\n", section) == "# t\n\n" + section
