"""`lab run` end to end on a 4-node virtual fleet with a planted truth (issue: lab run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from lab.cli import main
from lab.db.models import Artifact, Campaign, LogEvent, Phase, Run, Sample
from lab.virtual.emulator.packaging import build_hailo_files, build_models
from lab.virtual.fleet import Fleet
from tests.conftest import PROJECT, fleet_leftovers, require_fleet

pytestmark = pytest.mark.fleet
NET = "127.77.220"
PROFILE = """
nodes:
  node1: {chip: hailo10h}
  node2: {chip: hailo10h}
  node3: {chip: hailo10h, cma_leak: 0.0}
  node4: {chip: hailo8}
"""


@pytest.fixture(scope="module")
def mixed_fleet(tmp_path_factory):
    """Two susceptible Hailo-10H units, one immune Hailo-10H, one Hailo-8, at time scale 0.01."""
    require_fleet()
    base = tmp_path_factory.mktemp("runfleet")
    (base / "profile.yaml").write_text(PROFILE)
    build_hailo_files(base / "hailo-files")  # beside the inventory, as a person downloads them from Hailo
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    fleet.up(profile=base / "profile.yaml", inventory=inventory, time_scale=0.01)
    prefix = f"lab-{fleet.meta()['id']}-"
    try:
        yield inventory, f"sqlite:///{base / 'lab.db'}"
    finally:
        fleet.down()
        assert fleet_leftovers(fleet, prefix) == []


def run_scenario(capsys, inventory, db, scenario, name):
    build_models(Path("models"))  # the field report's model, on the controller (the test's directory)
    code = main(["run", str(PROJECT / "scenarios" / scenario), "--inventory", str(inventory), "--db", db,
                 "--name", name])
    captured = capsys.readouterr()
    run_scenario.progress = captured.err  # without a terminal: the plain progress log
    return code, captured.out


def campaign(session, name):
    return session.scalar(select(Campaign).where(Campaign.name == name))


def test_cma_soak_finds_the_planted_truth(mixed_fleet, capsys):
    inventory, db = mixed_fleet
    code, out = run_scenario(capsys, inventory, db, "cma_soak.yaml", "soak1")
    assert code == 0, out
    assert out.splitlines()[0] == "campaign soak1: finished"
    log = [line.split("] ", 1)[1] for line in run_scenario.progress.splitlines() if line.startswith("[")]
    for node in ("node1", "node2", "node3", "node4"):  # each change once per run, every 5th run, no repeats
        rounds = 1 if node == "node4" else 2  # Hailo-10H: the field report's 5.3.0, then the archive's 5.1.1
        assert [line for line in log if line.startswith(f"{node}: ") and " run " not in line] == [
            f"{node}: install started", f"{node}: install done (ok)", f"{node}: soak started",
            f"{node}: soak done (ok)"] * rounds
        runs = [line.split(" run ", 1)[1].split()[0] for line in log if line.startswith(f"{node}: soak benchmark")]
        assert runs == ["5/25", "10/25", "15/25", "20/25", "25/25"] * rounds
    with Session(create_engine(db)) as s:
        c = campaign(s, "soak1")
        verdicts = {(r.node, r.stack.name): r.verdict for r in c.runs}
        assert verdicts == {("node1", "h10-5.3.0"): "degraded", ("node2", "h10-5.3.0"): "degraded",
                            ("node3", "h10-5.3.0"): "stable", ("node4", "h8-4.23.0"): "stable",
                            ("node1", "h10-5.1.1"): "stable", ("node2", "h10-5.1.1"): "stable",
                            ("node3", "h10-5.1.1"): "stable"}
        for run in c.runs:
            rows = s.scalars(select(Sample).where(Sample.run_id == run.id, Sample.step == "benchmark")
                             .order_by(Sample.seq)).all()
            assert [r.run_index for r in rows] == list(range(1, 26)), run.node
            assert all(r.fps is not None and r.temp is not None and r.boot_id for r in rows), run.node
            phases = {p.name: p for p in run.phases}
            assert phases["install"].status == phases["soak"].status == "ok"
            assert phases["install"].boot_id and phases["soak"].boot_id
            assert phases["install"].boot_id != phases["soak"].boot_id  # the soak starts from a fresh boot
            assert {r.boot_id for r in rows} == {phases["soak"].boot_id}
            logs = s.scalar(select(func.count()).select_from(Artifact).where(
                Artifact.run_id == run.id, Artifact.name.like("%runtime_log%")))
            per_run = s.scalar(select(func.count()).select_from(Artifact).where(
                Artifact.run_id == run.id, Artifact.name.like("%-run___-runtime_log%")))
            ten_h = run.stack.chip == "hailo10h"  # 5.x: the chip's runtime log after every benchmark run
            assert (logs - per_run, per_run) == (1, 25 if ten_h else 0), run.node  # and one at the phase's end
            assert all((r.cma_errors is not None) == ten_h for r in rows), run.node
        fps = {r.node: s.scalars(select(Sample.fps).where(Sample.run_id == r.id, Sample.step == "benchmark")
                                 .order_by(Sample.seq)).all() for r in c.runs if r.stack.name != "h10-5.1.1"}
        assert 123.5 < fps["node1"][0] < 126 and 78 < fps["node1"][-1] < 85  # the seed's 125 -> 81.6
        assert max(fps["node3"]) - min(fps["node3"]) < 1.5
        cma = dict(s.execute(select(Run.node, func.count()).join(LogEvent, LogEvent.run_id == Run.id)
                             .where(Run.campaign_id == c.id, LogEvent.message.like("%cma_alloc%alloc failed%"),
                                    Run.index.in_([r.index for r in c.runs if r.stack.name != "h10-5.1.1"]))
                             .group_by(Run.node)).all())
        assert cma.get("node1", 0) > 0 and cma.get("node2", 0) > 0
        assert "node3" not in cma and "node4" not in cma


def test_recovery_matrix_records_each_step(mixed_fleet, capsys):
    inventory, db = mixed_fleet
    code, out = run_scenario(capsys, inventory, db, "recovery_matrix.yaml", "recovery1")
    assert code == 0, out
    with Session(create_engine(db)) as s:
        c = campaign(s, "recovery1")
        node1 = next(r for r in c.runs if r.node == "node1")
        phases = {p.name: p for p in node1.phases}

        def bench(phase):
            return s.scalars(select(Sample.fps).where(Sample.phase_id == phases[phase].id, Sample.step == "benchmark",
                                                      Sample.fps.is_not(None)).order_by(Sample.seq)).all()

        degraded = bench("degrade")[-1]
        assert degraded < 80
        for action in ("cooldown", "driver_reload", "pcie_rescan"):
            assert phases[action].status == "ok"
            assert max(bench(action)) < degraded + 3, action  # none of these recover
            steps = s.scalars(select(Sample.step).where(Sample.phase_id == phases[action].id)).all()
            assert action in steps
        # a chip reset on 5.3.0 bricks the device until reboot: device_error, the rest of the phase skipped
        assert phases["chip_reset"].status == "device_error"
        assert bench("chip_reset") == []
        assert phases["reboot"].status == "ok"
        assert min(bench("reboot")) > 123.5  # only a reboot recovers
        assert phases["power_cycle"].status == "ok" and min(bench("power_cycle")) > 123.5  # and a cold cycle
        assert phases["power_cycle"].boot_id not in (None, phases["reboot"].boot_id)
        assert node1.verdict == "device_error"
        node4 = next(r for r in c.runs if r.node == "node4")
        assert {p.status for p in node4.phases} == {"ok"}


def test_clean_reinstall_purges_then_soaks(mixed_fleet, capsys):
    inventory, db = mixed_fleet
    code, out = run_scenario(capsys, inventory, db, "clean_reinstall.yaml", "reinstall1")
    assert code == 0, out
    with Session(create_engine(db)) as s:
        c = campaign(s, "reinstall1")
        assert {r.node: r.verdict for r in c.runs} == {
            "node1": "degraded", "node2": "degraded", "node3": "stable", "node4": "stable"}
        for run in c.runs:
            statuses = [(p.name, p.status) for p in run.phases]
            assert statuses == [("reinstall", "ok"), ("soak", "ok")], run.node
            idents = s.scalars(select(Sample.extra).where(Sample.run_id == run.id, Sample.step == "identify")).all()
            assert len(idents) == 2 and all(i.get("identity", {}).get("firmware_version") for i in idents)
        assert s.scalar(select(func.count()).select_from(Phase).join(Run).where(Run.campaign_id == c.id)) == 8
