"""Planning a campaign: rounds, phase timing, each node's phase spec, and a stored campaign planned again."""

from __future__ import annotations

import pytest

from lab.engine.plan import (StoredRun, check_campaign_name, host_phase_spec, phase_nominal_seconds, phase_seconds,
                             plan_campaign, poll_seconds, replan, rounds)
from lab.errors import ConfigError
from lab.scenario import RunSpec, parse_scenario
from tests.unit.test_engine_campaign import plan  # noqa: F401  (the fixture: 2 nodes, 2 repeats, install + soak)


def test_round_k_holds_each_nodes_kth_run():
    runs = [RunSpec(0, "a", "s1", 1), RunSpec(1, "a", "s2", 1), RunSpec(2, "b", "s1", 1), RunSpec(3, "a", "s1", 2)]
    assert [[r.index for r in batch] for batch in rounds(runs)] == [[0, 2], [1], [3]]
    assert rounds([]) == []


PHASE = """name: t
matrix: {stacks: [h10-5.1.1]}
phases:
  - name: p
    steps:
      - benchmark: {hef: x.hef, runs: 25, time_to_run: 15, gap: 2}
      - configure_cycles: {hef: x.hef, count: 10, frames: 100}
      - cooldown: 60
      - identify
"""


def test_a_phases_timing_follows_its_steps_and_the_time_scale():
    phase = parse_scenario(PHASE).phases[0]
    assert phase_nominal_seconds(phase) == 25 * (15 + 2 + 5) + 10 * (2 + 100 / 20) + 60 + 30
    assert phase_seconds(phase, 0.02) == pytest.approx(phase_nominal_seconds(phase) * 0.02 * 3 + 600)
    assert poll_seconds(phase, 1.0) == 23  # about 1/30 of the phase (710 s)
    assert poll_seconds(phase, 0.001) == 2 and poll_seconds(phase, 100) == 30  # between 2 and 30 s


def test_the_phase_spec_reboots_unless_an_interrupted_attempt_already_did(plan):  # noqa: F811
    host = plan.inventory.hosts["pi-01"]
    stack = plan.loaded.stacks["h10-5.1.1"]
    install, soak = (host_phase_spec("c1", plan, i, 7, host, stack) for i in (0, 1))
    assert (install["reboot"], soak["reboot"]) == (False, True)
    assert host_phase_spec("c1", plan, 1, 7, host, stack, reboot=False)["reboot"] is False
    assert install["stack"]["name"] == "h10-5.1.1" and install["agent"]["steps"] == []
    assert (soak["stack"], soak["agent"]["run_key"], soak["agent"]["phase_index"]) == (None, "7", 1)
    assert soak["agent"]["driver_module"] == "hailo1x_pci" and soak["timeout"] >= 600


def test_a_stored_campaign_is_planned_again_from_what_it_kept(plan):  # noqa: F811
    stored = [StoredRun(s.index, s.node, s.stack, s.repeat) for s in plan.runs]
    again = replan(plan.loaded.scenario.name, plan.loaded.text, str(plan.inventory.source), plan.settings(), stored)
    assert again.runs == plan.runs and again.phase_names == plan.phase_names == ["install", "soak"]
    assert again.installs == plan.installs and list(again.loaded.stacks) == list(plan.loaded.stacks)
    with pytest.raises(ConfigError, match="the inventory no longer has node pi-09"):
        replan(plan.loaded.scenario.name, plan.loaded.text, str(plan.inventory.source), plan.settings(),
               [StoredRun(0, "pi-09", "h10-5.1.1", 1)])


def test_a_campaign_name_becomes_a_directory_on_every_node():
    assert check_campaign_name("soak-2026.12_01") == "soak-2026.12_01"
    for bad in ("../etc", "a b", "", "-x", "x" * 129):
        with pytest.raises(ConfigError, match="invalid campaign name"):
            check_campaign_name(bad)


def test_a_missing_model_stops_the_plan_before_any_node(tmp_path, monkeypatch):
    (tmp_path / "rack.yml").write_text("all:\n  hosts:\n    pi-01: {ansible_host: 192.0.2.11, lab_chip: hailo10h}\n"
                                       "  vars:\n    lab_hailo_sources: [archive]\n")  # 192.0.2.x: nothing answers
    (tmp_path / "s.yaml").write_text(PHASE.replace("x.hef", "missing.hef"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="missing.hef"):  # a model missing on the controller stops the plan
        plan_campaign(tmp_path / "s.yaml", str(tmp_path / "rack.yml"))
