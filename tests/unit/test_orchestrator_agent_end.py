"""A phase the agent ended `infra_error` (no Python binding, an error in a step) makes the run an infra error."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from lab.db.ingest import ingest_samples
from lab.db.models import Phase
from lab.orchestrator import CampaignRunner
from lab.scenario import RunSpec
from tests.db_fixtures import store_one_run

SPEC = RunSpec(0, "node1", "h10-5.3.0", 1)
MISSING = ("configure_cycles: HailoRT's Python binding is not installed (no hailo_platform: python3-hailort, "
           "python3-h10-hailort or Hailo's hailort wheel): No module named 'hailo_platform'")


@pytest.fixture
def runner(db_engine):
    """A runner of one stored run whose phase 1 the agent ended with `status`."""
    def make(status: str, error: str | None):
        with Session(db_engine) as s, s.begin():
            run = store_one_run(s)
            phase = Phase(run_id=run.id, index=1, name="measure", status="running")
            s.add(phase)
            s.flush()
            ingest_samples(s, run.id, [{"seq": 1, "ts": 1.8e9, "kind": "phase_start"},
                                       {"seq": 2, "ts": 1.8e9 + 1, "kind": "phase_end", "status": status,
                                        "error": error}], phase_id=phase.id)
            run_id, phase_id = run.id, phase.id
        r = CampaignRunner.__new__(CampaignRunner)  # only what _end_phase reads
        r.engine, r.name, r.run_ids, r.on_record = db_engine, "c1", {0: run_id}, None
        return r, phase_id
    return make


def test_the_agents_infra_error_reaches_the_controller(runner, db_engine):
    r, phase_id = runner("infra_error", MISSING)
    assert r._end_phase(SPEC, 1, None, None) == ("infra_error", MISSING)
    with Session(db_engine) as s:
        phase = s.get(Phase, phase_id)
        assert (phase.status, phase.error) == ("infra_error", MISSING)


def test_an_ok_phase_stays_ok(runner):
    r, _ = runner("ok", None)
    assert r._end_phase(SPEC, 1, None, None) == ("ok", None)
