"""The store adapter on a real database (SQLite, and PostgreSQL when configured): the engine's transitions,
its records and resume from what was stored, driven through the in-memory fleet."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.db.models import Campaign, Phase, Run, Sample
from lab.db.store import SqlStore
from lab.engine.campaign import Ports, resume_campaign, run_campaign
from lab.engine.memory import MemoryFleet, measuring_node
from lab.engine.state import NodeResult
from tests.unit.test_engine_campaign import plan  # noqa: F401  (the fixture)


def ports(fleet, db_engine) -> Ports:
    return Ports(fleet, fleet.open_files, SqlStore(db_engine), fleet.power_for)


def rows(db_engine):
    with Session(db_engine) as s:
        campaign = s.scalar(select(Campaign))
        runs = {(r.node, r.repeat): (r.status, r.verdict, r.error, [(p.name, p.status, p.boot_id) for p in
                                                                    sorted(r.phases, key=lambda p: p.index)])
                for r in campaign.runs}
        samples = s.scalar(select(Sample.id).where(Sample.fps.is_not(None)).limit(1))
        return campaign.status, campaign.exit_status, runs, samples, len(s.scalars(select(Sample)).all())


def test_a_campaign_is_stored_as_the_engine_runs_it(plan, db_engine):  # noqa: F811
    def device_error(node, spec):
        if spec["agent"]["phase"] != "soak":
            return [], NodeResult(node, "ok")
        return [{"kind": "phase_start", "boot_id": "b7"}, {"kind": "sample", "step": "benchmark", "run": 1, "fps": 125.0},
                {"kind": "phase_end", "status": "device_error", "error": "HAILO_TIMEOUT(4)"}], NodeResult(node, "ok")

    fleet = MemoryFleet({"pi-01": measuring_node(), "pi-02": device_error})
    name, _, code = run_campaign(ports(fleet, db_engine), plan, "c1", "lab run soak.yaml")
    status, exit_status, runs, _, count = rows(db_engine)
    assert (status, exit_status, code) == ("finished", 0, 0)
    assert runs[("pi-01", 1)][:3] == ("done", "stable", None)
    assert runs[("pi-02", 1)][:3] == ("done", "device_error", "HAILO_TIMEOUT(4)")
    assert runs[("pi-02", 2)][3] == [("install", "ok", None), ("soak", "device_error", "b7")]
    assert count == 2 * 5 + 2 * 3  # every record of both nodes' two runs


def test_resume_continues_from_the_stored_state(plan, db_engine):  # noqa: F811
    fleet = MemoryFleet({})

    class Stop(Exception):
        pass

    def stops(node, spec):
        if spec["agent"]["phase"] == "soak" and spec["agent"]["run_key"] in first:
            fleet.write(node, {"kind": "phase_start", "run_key": spec["agent"]["run_key"], "phase": "soak",
                               "phase_index": 1, "boot_id": "b1"})
            raise Stop
        return [], NodeResult(node, "ok")

    first: set[str] = set()
    fleet.scripts = {"pi-01": stops, "pi-02": stops}
    with Session(db_engine) as s:
        assert s.scalar(select(Run.id)) is None
    first.update({"1", "2", "3", "4"})  # run ids of a fresh database: every run's soak stops the controller
    with pytest.raises(Stop):
        run_campaign(ports(fleet, db_engine), plan, "c1")
    with Session(db_engine) as s:
        soak = s.scalar(select(Phase).where(Phase.name == "soak", Phase.status == "running"))
        assert soak is not None  # the controller died with the soak running
    fleet.scripts = {"pi-01": measuring_node(), "pi-02": measuring_node()}
    fleet.phases_run.clear()
    name, _, code = resume_campaign(ports(fleet, db_engine), "c1")
    assert code == 0
    assert fleet.phases_run[0] == ("pi-01", "soak", False)  # its agent had begun: no second reboot
    status, _, runs, _, _ = rows(db_engine)
    assert status == "finished" and {r[1] for r in runs.values()} == {"stable"}
