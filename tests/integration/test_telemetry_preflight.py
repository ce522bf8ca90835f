"""Telemetry per run and pre-flight (issue 13, items 3 and 4) on a 2-node virtual fleet: a unit whose PCIe
link negotiated below the slot's speed and whose chip-side CMA pool runs out at once, and a unit whose
device another client (hailort.service) holds from boot. Real SSH, real Ansible, a real SQLite database."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from lab.cli import main
from lab.db.models import Artifact, Campaign, Phase, Sample
from lab.virtual.emulator.packaging import build_hailo_files, build_models
from lab.virtual.fleet import Fleet
from tests.conftest import fleet_leftovers, require_fleet, ssh_cmd

pytestmark = pytest.mark.fleet
NET = "127.77.152"
PROFILE = """
nodes:
  node1: {chip: hailo10h, pcie_speed_gts: 2.5, cma_pool_chunks: 1}
  node2: {chip: hailo10h, cma_leak: 0.0, device_holder: hailort.service}
"""
SOAK = """name: telemetry
matrix: {stacks: [h10-5.3.0]}
phases:
  - name: install
    steps: [provision]
  - name: soak
    reboot: true%s
    steps:
      - benchmark: {hef: yolo26s_hailo10h.hef, runs: 3}
"""


@pytest.fixture(scope="module")
def rack(tmp_path_factory):
    """The fleet, Hailo's files beside its inventory and the field report's model in models/."""
    require_fleet()
    base = tmp_path_factory.mktemp("telemetry")
    (base / "profile.yaml").write_text(PROFILE)
    build_hailo_files(base / "hailo-files")
    build_models(base / "models")
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    fleet.up(profile=base / "profile.yaml", inventory=inventory, time_scale=0.01)
    prefix = f"lab-{fleet.meta()['id']}-"
    try:
        yield fleet, base, inventory, f"sqlite:///{base / 'lab.db'}"
    finally:
        fleet.down()
        assert fleet_leftovers(fleet, prefix) == []


def sh(fleet: Fleet, node: str, command: str) -> str:
    result = ssh_cmd(fleet, f"{NET}.{node.removeprefix('node')}", command, timeout=30)
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return result.stdout


def test_telemetry_per_run_and_a_held_device(rack, capsys, monkeypatch):
    fleet, base, inventory, db = rack
    monkeypatch.chdir(base)
    (base / "soak.yaml").write_text(SOAK % "")
    code = main(["run", str(base / "soak.yaml"), "--inventory", str(inventory), "--db", db, "--name", "held"])
    out = capsys.readouterr().out
    assert code == 1, out  # node2's run is an infrastructure error
    with Session(create_engine(db)) as s:
        c = s.scalar(select(Campaign).where(Campaign.name == "held"))
        runs = {r.node: r for r in c.runs}
        assert runs["node1"].verdict != "infra_error", runs["node1"].error
        assert runs["node2"].verdict == "infra_error"
        error = runs["node2"].error
        samples = s.scalars(select(Sample).where(Sample.run_id == runs["node1"].id, Sample.step == "benchmark")
                            .order_by(Sample.seq)).all()
        soak = s.scalar(select(Phase).where(Phase.run_id == runs["node1"].id, Phase.name == "soak"))
        held = s.scalar(select(Phase).where(Phase.run_id == runs["node2"].id, Phase.name == "soak"))
        logs = s.scalars(select(Artifact.name).where(Artifact.run_id == runs["node1"].id,
                                                     Artifact.name.like("%runtime_log%"))).all()
        node1 = dict(soak=(soak.ready_s, soak.preflight), held=(held.status, held.preflight))
    # node2: the holder is named (process, pid, unit) in the run's error and in the CLI's output
    assert "node2: /dev/hailo0 is held by hailort (pid " in error and "hailort.service)" in error, error
    assert "/dev/hailo0 is held by hailort (pid " in out
    status, preflight = node1["held"]
    assert status == "infra_error" and preflight["holders"][0]["comm"] == "hailort"
    # node1: every run carries its link (2.5 GT/s x1 of 8.0 GT/s x4), CMA and its own runtime-log count
    assert [(x.pcie_speed, x.pcie_width, x.pcie_max_speed, x.pcie_max_width) for x in samples] == [(2.5, 1, 8.0, 4)] * 3
    assert all(x.power_state == "D0" and x.aspm == "default L1" for x in samples)
    assert all(x.cma_total_kb == 65536 and 0 < x.cma_free_kb < 65536 for x in samples)
    assert all(x.soc_temp is not None and x.arm_clock_mhz == 2400.0 and x.throttled == "0x0" for x in samples)
    assert [x.cma_errors for x in samples] == [0, 1, 1]  # a one-chunk pool: the second configure fails
    assert len(logs) == 3  # one runtime-log artifact per run
    ready_s, found = node1["soak"]
    assert ready_s is not None and ready_s > 0
    assert found["devices"] == [{"address": "0001:01:00.0", "device": "0x45c4"}] and found["holders"] == []
    assert found["driver"] == "hailo1x_pci" and found["dev_node"] is True


def test_a_scenario_that_stops_the_holder_measures(rack, capsys, monkeypatch):
    fleet, base, inventory, db = rack
    monkeypatch.chdir(base)
    (base / "stop.yaml").write_text((SOAK % "\n    stop_services: [hailort.service]")
                                    .replace("  - name: install\n    steps: [provision]\n", ""))
    code = main(["run", str(base / "stop.yaml"), "--inventory", str(inventory), "--db", db, "--name", "stopped",
                 "--limit", "node2"])
    out = capsys.readouterr().out
    assert code == 0, out
    with Session(create_engine(db)) as s:
        run = s.scalar(select(Campaign).where(Campaign.name == "stopped")).runs[0]
        fps = s.scalars(select(Sample.fps).where(Sample.run_id == run.id, Sample.step == "benchmark")).all()
        phase = s.scalar(select(Phase).where(Phase.run_id == run.id, Phase.name == "soak"))
        assert run.verdict == "stable" and len(fps) == 3 and all(f > 0 for f in fps)
        assert phase.preflight["stopped_services"] == [{"service": "hailort.service", "rc": 0}]
        assert phase.preflight["holders"] == [] and phase.ready_s > 0
    assert sh(fleet, "node2", "systemctl is-active hailort.service").strip() == "active"  # started again after
