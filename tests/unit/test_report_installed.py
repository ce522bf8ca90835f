"""What each node ran as installed (dpkg, the wheel, kernel, DKMS, firmware) and the campaign's models,
in every report format."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lab.db.models import Campaign, Run, Sample
from lab.db.planted import plant_campaign
from lab.report.build import write_report

SYSTEM = {"kernel": "6.12.47+rpt-rpi-2712", "packages": {"dkms": "3.2.2-1", "hailort": "5.3.0",
                                                         "hailort-pcie-driver": "5.3.0"},
          "wheels": {"/usr/local/lib/python3.13/dist-packages/hailort-5.3.0.dist-info": "5.3.0"},
          "dkms": ["hailo1x_pci/5.3.0, 6.12.47+rpt-rpi-2712, aarch64: installed"],
          "holds": ["hailort", "hailort-pcie-driver", "linux-image-rpi-2712"],
          "firmware_version": "2025/05/08 15:13:17 version 69471177", "bootloader_version": None}
MODELS = {"yolo26s_hailo10h.hef": {"path": "/home/lab/models/yolo26s_hailo10h.hef", "sha256": "ab" * 32,
                                   "md5": "07f0dd9d2f44834f75c123af243e7ec3", "size": 13815808,
                                   "node_path": "/var/lib/lab-agent/models/" + "ab" * 32 + "/yolo26s_hailo10h.hef"}}


@pytest.fixture()
def installed(db_engine):
    """The planted campaign, with a system record on run 0 and its model in the campaign's settings."""
    with Session(db_engine) as session, session.begin():
        campaign = plant_campaign(session)
        campaign.settings = {**(campaign.settings or {}), "models": MODELS}
        run = session.scalars(select(Run).where(Run.campaign_id == campaign.id, Run.index == 0)).one()
        seq = session.scalar(select(func.max(Sample.seq)).where(Sample.run_id == run.id)) + 1
        session.add(Sample(run_id=run.id, seq=seq, step="system", ts=datetime(2026, 4, 30, 6, tzinfo=timezone.utc),
                           extra={"kind": "system", **SYSTEM}))
    return db_engine


def render(engine, fmt: str) -> str:
    out = io.StringIO()
    write_report(engine, "planted", fmt, out)
    return out.getvalue()


def test_text(installed):
    text = render(installed, "text")
    assert ("  #0 node1 (h10-5.3.0): kernel 6.12.47+rpt-rpi-2712; dkms 3.2.2-1, hailort 5.3.0, "
            "hailort-pcie-driver 5.3.0; wheel hailort 5.3.0 (/usr/local/lib/python3.13/dist-packages/"
            "hailort-5.3.0.dist-info); dkms hailo1x_pci/5.3.0, 6.12.47+rpt-rpi-2712, aarch64: installed; "
            "held hailort, hailort-pcie-driver, linux-image-rpi-2712; firmware 2025/05/08 15:13:17 version 69471177; "
            "bootloader not recorded\n") in text
    assert f"  yolo26s_hailo10h.hef: sha256 {'ab' * 32}, md5 07f0dd9d2f44834f75c123af243e7ec3, 13815808 bytes\n" in text


def test_markdown_and_html(installed):
    md = render(installed, "md")
    assert "## Installed on each node" in md and "| 0 | node1 | h10-5.3.0 | 6.12.47+rpt-rpi-2712 |" in md
    assert "| yolo26s_hailo10h.hef | `" + "ab" * 32 + "` | `07f0dd9d2f44834f75c123af243e7ec3` | 13815808 |" in md
    html = render(installed, "html")
    assert '<h2 id="installed">' in html and "hailo1x_pci/5.3.0" in html and "07f0dd9d2f44834f75c123af243e7ec3" in html


def test_json_and_csv(installed):
    doc = json.loads(render(installed, "json"))
    assert doc["runs"][0]["installed"] == SYSTEM
    assert doc["runs"][1]["installed"] == {}
    assert doc["campaign"]["models"] == MODELS
    rows = [r for r in csv.DictReader(io.StringIO(render(installed, "csv"))) if r["step"] == "system"]
    assert len(rows) == 1 and json.loads(rows[0]["extra"])["packages"] == SYSTEM["packages"]


def test_a_campaign_without_system_records_says_nothing_of_it(db_engine):
    with Session(db_engine) as session, session.begin():
        plant_campaign(session)
    assert "installed (per run" not in render(db_engine, "text")
    assert "## Installed on each node" not in render(db_engine, "md")
