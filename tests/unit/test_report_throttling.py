"""The chip's own throttling reports (HailoRT 5.2+ on Hailo-10H) travel from a node's records to the verdict."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy.orm import Session

from lab.db.ingest import get_or_create_stack, ingest_samples
from lab.db.models import Campaign, Run, Sample
from lab.db.session import open_database
from lab.report.build import write_report

# fps falls from run 10 while the chip keeps heating to the last run: the curve alone cannot tell
FPS = [125.0] * 9 + [125.0 - 2.5 * k for k in range(1, 17)]
TEMP = [60.0 + 1.2 * i for i in range(25)]


def _campaign(tmp_path, name: str, throttling: list[bool | None]) -> dict:
    engine = open_database(f"sqlite:///{tmp_path / (name + '.db')}")
    with Session(engine) as session, session.begin():
        campaign = Campaign(name=name, scenario_name="cma_soak", scenario_text="name: cma_soak\n")
        session.add(campaign)
        session.flush()
        stack = get_or_create_stack(session, "h10-5.2.0", "5.2.0", "5.2.0", "5.2.0", "hailo10h")
        run = Run(campaign_id=campaign.id, index=0, node="node1", stack_id=stack.id, status="done")
        session.add(run)
        session.flush()
        records = []
        for i, (fps, temp, chip) in enumerate(zip(FPS, TEMP, throttling)):
            record = {"seq": i + 1, "ts": 1_777_000_000.0 + 16 * i, "step": "benchmark", "boot_id": "b",
                      "run": i + 1, "fps": fps, "temp_mean": temp}
            if chip is not None:
                record["hailo_throttling"] = chip
            records.append(record)
        ingest_samples(session, run.id, records)
        stored = session.query(Sample.chip_throttling).order_by(Sample.seq).all()
        assert [row[0] for row in stored] == throttling
    out = io.StringIO()
    write_report(engine, name, "json", out)
    engine.dispose()
    (run_doc,) = json.loads(out.getvalue())["runs"]
    return run_doc


def test_without_a_report_from_the_chip_a_still_heating_drop_is_inconclusive(tmp_path):
    run = _campaign(tmp_path, "silent", [None] * 25)
    assert run["verdict"] == "degraded"
    assert (run["thermal"]["verdict"], run["thermal"]["throttling_reported"]) == ("inconclusive", None)


def test_the_chip_saying_it_throttled_in_every_slow_run_makes_it_thermal(tmp_path):
    run = _campaign(tmp_path, "said", [False] * 9 + [True] * 16)
    assert (run["thermal"]["verdict"], run["thermal"]["throttling_reported"]) == ("thermal", True)
    assert "reported throttling" in run["thermal"]["reason"]


@pytest.mark.parametrize("quiet_run", [14, 25])
def test_the_chip_saying_it_did_not_throttle_in_a_slow_run_makes_it_not_thermal(tmp_path, quiet_run):
    chip = [False] * 9 + [True] * 16
    chip[quiet_run - 1] = False
    run = _campaign(tmp_path, f"denied{quiet_run}", chip)
    assert (run["thermal"]["verdict"], run["thermal"]["throttling_reported"]) == ("not_thermal", False)
    assert f"run {quiet_run}" in run["thermal"]["reason"]
