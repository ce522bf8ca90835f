"""A phase whose agent wrote records the controller never read ends as an infra error, not as a quiet success."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from lab.db.ingest import ingest_samples
from lab.orchestrator import CampaignRunner
from lab.scenario import RunSpec
from tests.db_fixtures import store_one_run


@pytest.fixture
def runner(db_engine):
    """A runner of one stored run (run index 0 on node1) whose records 1-3 are in the database."""
    with Session(db_engine) as s, s.begin():
        run = store_one_run(s)
        ingest_samples(s, run.id, [{"seq": n, "ts": 1.8e9 + n, "kind": "sample", "step": "benchmark", "fps": 124.8}
                          for n in (1, 2, 3)])
        run_id = run.id
    r = CampaignRunner.__new__(CampaignRunner)  # only what _unread reads: engine, name, run ids
    r.engine, r.name, r.run_ids = db_engine, "c1", {0: run_id}
    return r


SPEC = RunSpec(0, "node1", "h10-5.3.0", 1)


@pytest.mark.parametrize("last_seq", [3, "3", None, ""])
def test_every_record_read(runner, last_seq):
    assert runner._unread(SPEC, last_seq) is None


def test_records_the_controller_never_read(runner):
    assert runner._unread(SPEC, "7") == (
        "the node recorded up to record 7 but the controller could not read them; check that the SSH user can "
        "read /var/lib/lab-agent/c1/records.jsonl, then `lab resume c1`")
