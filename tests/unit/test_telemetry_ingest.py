"""Telemetry and pre-flight records into the database: sample columns of schema 0004 with their bounds,
phase.preflight and phase.ready_s; the scenario's stop_services option."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.db.ingest import ingest_samples, sample_row, store_preflight
from lab.db.models import Phase, Run, Sample
from lab.db.planted import plant_campaign
from lab.errors import ConfigError
from lab.scenario import parse_scenario

RECORD = {"seq": 9, "ts": 1764633600.0, "kind": "sample", "step": "benchmark", "phase": "soak", "run": 2, "fps": 120.5,
          "pcie_speed": 5.0, "pcie_width": 1, "pcie_max_speed": 8.0, "pcie_max_width": 4, "power_state": "D0",
          "aspm": "default L1", "cma_free_kb": 55296, "cma_total_kb": 65536, "soc_temp": 51.3, "arm_clock_mhz": 2400.0,
          "cma_errors": 3, "throttled": "0x0"}


def test_telemetry_fields_land_in_their_columns():
    row = sample_row(RECORD, run_id=1)
    assert {k: row[k] for k in ("pcie_speed", "pcie_width", "pcie_max_speed", "pcie_max_width", "power_state", "aspm",
                                "cma_free_kb", "cma_total_kb", "soc_temp", "arm_clock_mhz", "cma_errors")} == {
        "pcie_speed": 5.0, "pcie_width": 1, "pcie_max_speed": 8.0, "pcie_max_width": 4, "power_state": "D0",
        "aspm": "default L1", "cma_free_kb": 55296, "cma_total_kb": 65536, "soc_temp": 51.3, "arm_clock_mhz": 2400.0,
        "cma_errors": 3}
    assert row["extra"] == {"kind": "sample"}


@pytest.mark.parametrize("key, value, reason", [
    ("pcie_width", 64, "pcie_width 64 is outside 1..32 lanes"),
    ("pcie_speed", 0.0, "pcie_speed 0 is outside 2.5..64 GT/s"),
    ("cma_free_kb", -4, "cma_free_kb -4 is outside 0..1099511627776 kB"),
    ("soc_temp", 900.0, "soc_temp 900 is outside -40..150 °C"),
    ("cma_errors", 1.5, "cma_errors 1.5 is not a whole number"),
])
def test_impossible_telemetry_is_flagged_not_stored(key, value, reason):
    row = sample_row({**RECORD, key: value}, run_id=1)
    assert row[key] is None and row["extra"]["flagged"] == [reason]


def test_preflight_fills_the_phase(db_engine):
    with Session(db_engine) as session, session.begin():
        campaign = plant_campaign(session)
        run = session.scalars(select(Run).where(Run.campaign_id == campaign.id, Run.index == 0)).one()
        phase = run.phases[-1]
        record = {"seq": 10_000, "ts": 1764633600.0, "kind": "preflight", "phase": phase.name, "ready": True,
                  "ready_s": 41.25, "waited_s": 0.4, "holders": [], "stopped_services": [], "driver": "hailo1x_pci",
                  "devices": [{"address": "0001:01:00.0", "device": "0x45c4"}], "dev_node": True}
        ingest_samples(session, run.id, [record])
        store_preflight(session, run.id, record)
        run_id, phase_id = run.id, phase.id
    with Session(db_engine) as session:
        phase = session.get(Phase, phase_id)
        assert phase.ready_s == 41.25
        assert phase.preflight == {"ready": True, "ready_s": 41.25, "waited_s": 0.4, "holders": [],
                                   "stopped_services": [], "driver": "hailo1x_pci", "dev_node": True,
                                   "devices": [{"address": "0001:01:00.0", "device": "0x45c4"}]}
        stored = session.scalar(select(Sample).where(Sample.run_id == run_id, Sample.seq == 10_000))
        assert stored.step == "preflight"
    with Session(db_engine) as session, session.begin():
        assert store_preflight(session, run_id, {"phase": "no such phase"}) is None
        store_preflight(session, run_id, {"phase": phase.name, "ready": False, "error": "node1: not ready"})
    with Session(db_engine) as session:
        phase = session.get(Phase, phase_id)
        assert phase.ready_s is None and phase.preflight == {"ready": False, "error": "node1: not ready"}


SCENARIO = """name: s
matrix: {stacks: [h10-5.3.0]}
phases:
  - name: soak
    stop_services: %s
    steps: [identify]
"""


def test_stop_services_names_systemd_services():
    assert parse_scenario(SCENARIO % "[hailort.service, hailo-ollama.service]", "s.yaml").phases[0].stop_services == [
        "hailort.service", "hailo-ollama.service"]
    assert parse_scenario(SCENARIO.replace("    stop_services: %s\n", ""), "s.yaml").phases[0].stop_services == []
    for bad in ("['hailort; reboot']", "[hailort]", "['-r.service']"):
        with pytest.raises(ConfigError, match="is not a systemd service name"):
            parse_scenario(SCENARIO % bad, "s.yaml")


def test_the_phase_spec_names_the_kernel_interfaces_and_the_services_to_stop(tmp_path, monkeypatch):
    """What the controller hands each node's agent: where sysfs and meminfo are, vcgencmd, the node's name and
    chip, and the phase's stop_services, all from the inventory and the scenario."""
    from lab.engine.plan import host_phase_spec, plan_campaign

    (tmp_path / "rack.yml").write_text("""all:
  hosts:
    pi-01: {ansible_host: 192.0.2.11, lab_chip: hailo10h, lab_sysfs_root: /sys, lab_meminfo: /proc/meminfo,
            lab_vcgencmd: vcgencmd}
    pi-02: {ansible_host: 192.0.2.12}
  vars:
    lab_hailo_sources: [archive]
""")
    (tmp_path / "s.yaml").write_text((SCENARIO % "[hailort.service]").replace("[identify]", "[identify, provision]")
                                     .replace("h10-5.3.0", "h10-5.1.1"))
    monkeypatch.chdir(tmp_path)
    plan = plan_campaign(tmp_path / "s.yaml", str(tmp_path / "rack.yml"))
    stack = plan.loaded.stacks["h10-5.1.1"]
    agent = host_phase_spec("c", plan, 0, 1, plan.inventory.hosts["pi-01"], stack)["agent"]
    assert (agent["node"], agent["inventory_chip"], agent["chip"]) == ("pi-01", "hailo10h", "hailo10h")
    assert (agent["sysfs_root"], agent["meminfo"], agent["commands"]["vcgencmd"]) == ("/sys", "/proc/meminfo",
                                                                                     ["vcgencmd"])
    assert agent["stop_services"] == ["hailort.service"]
    other = host_phase_spec("c", plan, 0, 2, plan.inventory.hosts["pi-02"], stack)["agent"]
    assert (other["inventory_chip"], other["chip"], other["sysfs_root"]) == (None, "hailo10h", "/sys")
    assert "vcgencmd" not in other["commands"]
