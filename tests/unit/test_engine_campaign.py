"""The campaign loop over in-memory ports: a whole campaign, a failing node, a refused lock, resume and catch-up."""

from __future__ import annotations

import pytest

from lab.engine.campaign import Ports, resume_campaign, run_campaign
from lab.engine.memory import MemoryFleet, MemoryStore, measuring_node
from lab.engine.plan import plan_campaign
from lab.engine.state import NodeResult, PhaseClosed, PowerCycled
from lab.errors import ConfigError

SCENARIO = """name: soak
matrix:
  stacks: [h10-5.1.1]
  repeats: 2
phases:
  - name: install
    steps: [provision]
  - name: soak
    reboot: true
    steps:
      - benchmark: {hef: /usr/share/hailo-models/yolov8s_h10.hef, runs: 3, time_to_run: 15}
"""


@pytest.fixture
def plan(tmp_path, monkeypatch):
    (tmp_path / "rack.yml").write_text("""all:
  hosts:
    pi-01: {ansible_host: 192.0.2.11, lab_chip: hailo10h}
    pi-02: {ansible_host: 192.0.2.12, lab_chip: hailo10h}
  vars:
    lab_hailo_sources: [archive]
""")
    (tmp_path / "soak.yaml").write_text(SCENARIO)
    monkeypatch.chdir(tmp_path)
    return plan_campaign(tmp_path / "soak.yaml", str(tmp_path / "rack.yml"))


def ports(fleet: MemoryFleet, store: MemoryStore) -> Ports:
    return Ports(fleet, fleet.open_files, store, fleet.power_for)


def test_a_campaign_runs_every_round_phase_by_phase_and_records_every_sample(plan):
    fleet, store = MemoryFleet({"pi-01": measuring_node(), "pi-02": measuring_node((125.0, 90.0, 80.0))}), MemoryStore()
    shown: list[tuple[str, dict]] = []
    name, campaign_id, code = run_campaign(ports(fleet, store), plan, "c1", "lab run", lambda n, r: shown.append((n, r)))
    assert (name, code) == ("c1", 0)
    # two rounds (repeat 1, then 2), each: install then soak on both nodes side by side
    assert [(n, p) for n, p, _ in fleet.phases_run] == [("pi-01", "install"), ("pi-02", "install"),
                                                        ("pi-01", "soak"), ("pi-02", "soak")] * 2
    campaign = store.campaigns["c1"]
    assert {r["node"]: r["verdict"] for r in campaign.runs.values() if r["repeat"] == 1} == {"pi-01": "stable",
                                                                                             "pi-02": "degraded"}
    assert all(len(records) == 5 for records in campaign.records.values())  # start, 3 samples, end
    assert campaign.status == "finished" and fleet.holders == {} and fleet.released == [["pi-01", "pi-02"]]
    # the provisioning-only phase is announced by the engine; the agent's own phase_end by the record itself
    ends = [(n, r["phase"]) for n, r in shown if r["kind"] == "phase_end"]
    assert ends.count(("pi-01", "install")) == 2 and ends.count(("pi-01", "soak")) == 2


def test_a_node_that_fails_stops_its_own_run_only(plan):
    def freezes(node, spec):
        if spec["agent"]["phase"] == "soak":
            return [{"kind": "phase_start"}, {"kind": "sample", "step": "benchmark", "run": 1, "fps": 125.0}], \
                NodeResult(node, "unreachable", "ssh: connect to host timed out")
        return [], NodeResult(node, "ok")

    fleet, store = MemoryFleet({"pi-01": measuring_node(), "pi-02": freezes}), MemoryStore()
    _, _, code = run_campaign(ports(fleet, store), plan, "c1")
    assert code == 1
    runs = sorted(store.campaigns["c1"].runs.values(), key=lambda r: r["index"])
    by_node = {(r["node"], r["repeat"]): r for r in runs}
    assert by_node[("pi-02", 1)]["error"] == "soak: unreachable: ssh: connect to host timed out"
    assert by_node[("pi-01", 1)]["verdict"] == "stable" and by_node[("pi-01", 2)]["verdict"] == "stable"
    frozen = next(k for k, r in store.campaigns["c1"].runs.items() if r is by_node[("pi-02", 1)])
    assert [r["kind"] for r in store.campaigns["c1"].records[frozen].values()] == ["phase_start", "sample"]  # kept
    # the gone node is not released (it does not answer); its second run goes on with the others
    assert fleet.released == [["pi-01"]]
    assert [p for n, p, _ in fleet.phases_run if n == "pi-02"] == ["install", "soak", "install", "soak"]


def test_a_node_held_by_another_campaign_refuses_the_campaign_before_anything_is_stored(plan):
    fleet, store = MemoryFleet({"pi-01": measuring_node(), "pi-02": measuring_node()}, holders={"pi-02": "other"}), MemoryStore()
    with pytest.raises(ConfigError, match="pi-02 is in use by campaign other"):
        run_campaign(ports(fleet, store), plan, "c1")
    assert store.campaigns == {} and fleet.holders == {"pi-02": "other"}  # our own lock on pi-01 is given back


def test_a_refusal_names_the_campaign_and_the_controller_holding_each_busy_node(plan):
    fleet = MemoryFleet({}, holders={"pi-01": "other", "pi-02": "third"},
                        lockers={"pi-01": "pi@ctl2 pid 4242 since 2026-12-02T07:55:01Z"})
    with pytest.raises(ConfigError) as refused:
        run_campaign(ports(fleet, MemoryStore()), plan, "c1")
    assert refused.value.what == ("pi-01 is in use by campaign other (controller pi@ctl2 pid 4242 since "
                                  "2026-12-02T07:55:01Z), a per-node lock (/var/lib/lab-agent/lock); "
                                  "1 more node in use: pi-02")
    assert fleet.holders == {"pi-01": "other", "pi-02": "third"}  # nothing of theirs released


def test_one_controller_runs_a_campaign_name_at_a_time(plan):
    claims: dict[str, str] = {}  # one database, two controllers
    mine, theirs = MemoryStore(claims, "pi@ctl1 pid 1"), MemoryStore(claims, "pi@ctl2 pid 2")
    fleet = MemoryFleet({"pi-01": measuring_node(), "pi-02": measuring_node()})
    with theirs.claim("c1"):
        with pytest.raises(ConfigError, match=r"^campaign c1 is being run by another controller \(controller "
                                              r"pi@ctl2 pid 2\)"):
            run_campaign(ports(fleet, mine), plan, "c1")
        assert fleet.holders == {} and fleet.phases_run == []  # refused before any node was touched
    assert run_campaign(ports(fleet, mine), plan, "c1")[2] == 0
    assert claims == {}  # given back when the campaign ended


def test_a_campaign_name_is_used_once(plan):
    fleet, store = MemoryFleet({"pi-01": measuring_node(), "pi-02": measuring_node()}), MemoryStore()
    run_campaign(ports(fleet, store), plan, "c1")
    with pytest.raises(ConfigError, match="a campaign named 'c1' already exists"):
        run_campaign(ports(fleet, store), plan, "c1")


def test_resume_loads_the_state_and_continues_without_rebooting_a_begun_phase(plan):
    """The controller stopped while the soak ran: the stored state says install is done and soak began."""
    fleet, store = MemoryFleet({"pi-01": measuring_node(), "pi-02": measuring_node()}), MemoryStore()

    class Stop(Exception):
        pass

    def stops_in_soak(node, spec):
        if spec["agent"]["phase"] == "soak":
            fleet.write(node, {"kind": "phase_start", "run_key": spec["agent"]["run_key"], "phase": "soak",
                               "phase_index": 1})
            raise Stop  # the controller dies here; the node's agent goes on
        return [], NodeResult(node, "ok")

    fleet.scripts = {"pi-01": stops_in_soak, "pi-02": stops_in_soak}
    with pytest.raises(Stop):
        run_campaign(ports(fleet, store), plan, "c1")
    assert store.campaigns["c1"].status == "running"
    fleet.phases_run.clear()
    fleet.scripts = {"pi-01": measuring_node(), "pi-02": measuring_node()}
    name, _, code = resume_campaign(ports(fleet, store), "c1")
    assert (name, code) == ("c1", 0)
    # the interrupted soak resumes without a reboot; install is not run again; the second round runs in full
    # (pi-01's agent began the soak before the controller died; pi-02's never did, so it reboots first)
    assert fleet.phases_run[:2] == [("pi-01", "soak", False), ("pi-02", "soak", True)]
    assert fleet.phases_run[2:] == [("pi-01", "install", False), ("pi-02", "install", False),
                                    ("pi-01", "soak", True), ("pi-02", "soak", True)]
    assert {r["verdict"] for r in store.campaigns["c1"].runs.values()} == {"stable"}


def test_resume_of_a_finished_campaign_does_nothing(plan):
    fleet, store = MemoryFleet({"pi-01": measuring_node(), "pi-02": measuring_node()}), MemoryStore()
    run_campaign(ports(fleet, store), plan, "c1")
    fleet.phases_run.clear()
    assert resume_campaign(ports(fleet, store), "c1")[2] == 0 and fleet.phases_run == []


def test_resume_after_infra_errors_collects_what_a_vanished_node_recorded_and_releases_it(plan):
    def vanishes(node, spec):
        if spec["agent"]["phase"] == "soak":
            fleet.write(node, {"kind": "phase_start", "run_key": spec["agent"]["run_key"], "phase": "soak",
                               "phase_index": 1})
            fleet.answering = {"pi-01"}
            return [], NodeResult(node, "unreachable", "ssh: timed out")
        return [], NodeResult(node, "ok")

    fleet, store = MemoryFleet({"pi-01": measuring_node(), "pi-02": vanishes}), MemoryStore()
    run_campaign(ports(fleet, store), plan, "c1")
    gone = next(rid for rid, r in store.campaigns["c1"].runs.items() if r["node"] == "pi-02" and r["repeat"] == 1)
    assert store.campaigns["c1"].records[gone] == {}  # pi-02 stopped answering before its records were read
    fleet.write("pi-02", {"kind": "sample", "run_key": str(gone), "phase": "soak", "phase_index": 1, "step": "benchmark",
                          "fps": 125.0})
    fleet.answering = None  # pi-02 is back
    fleet.phases_run.clear()
    name, _, code = resume_campaign(ports(fleet, store), "c1")
    assert code == 1 and fleet.phases_run == []  # nothing is run again
    assert [r["kind"] for r in store.campaigns["c1"].records[gone].values()] == ["phase_start", "sample"]
    assert fleet.released[-1] == ["pi-02"] and store.campaigns["c1"].runs[gone]["verdict"] == "infra_error"
    assert any(isinstance(e, PhaseClosed) for e in store.effects)


# ---- power ------------------------------------------------------------------------------------

COLD = SCENARIO.replace("    reboot: true\n", "    power_cycle: true\n") + "reboot_timeout: 5\n"


@pytest.fixture
def cold_plan(tmp_path, monkeypatch):
    (tmp_path / "rack.yml").write_text("""all:
  hosts:
    pi-01: {ansible_host: 192.0.2.11, lab_chip: hailo10h}
    pi-02: {ansible_host: 192.0.2.12, lab_chip: hailo10h}
  vars:
    lab_hailo_sources: [archive]
    lab_power: {driver: command, on: [/bin/true], off: [/bin/true]}
""")
    (tmp_path / "cold.yaml").write_text(COLD)
    monkeypatch.chdir(tmp_path)
    return plan_campaign(tmp_path / "cold.yaml", str(tmp_path / "rack.yml"))


def test_a_power_cycle_phase_cuts_power_then_runs_without_a_reboot(cold_plan, monkeypatch):
    monkeypatch.setattr("lab.engine.campaign.BOOT_POLL_SECONDS", 0.01)
    fleet, store = MemoryFleet({"pi-01": measuring_node(), "pi-02": measuring_node()}, drivers={"pi-01", "pi-02"}), \
        MemoryStore()
    assert run_campaign(ports(fleet, store), cold_plan, "c1")[2] == 0
    assert fleet.cycles == ["pi-01", "pi-02"] * 2  # each round's soak, both nodes
    assert {(n, p, r) for n, p, r in fleet.phases_run if p == "soak"} == {("pi-01", "soak", False), ("pi-02", "soak", False)}
    cycled = [e for e in store.effects if isinstance(e, PowerCycled)]
    assert [(e.node, e.reason, e.ok, e.recovery) for e in cycled[:2]] == [("pi-01", "soak: power_cycle", True, False),
                                                                         ("pi-02", "soak: power_cycle", True, False)]


def test_a_scenario_that_cuts_power_needs_a_driver_on_every_node(tmp_path, monkeypatch):
    (tmp_path / "rack.yml").write_text("""all:
  hosts:
    pi-01: {ansible_host: 192.0.2.11, lab_chip: hailo10h, lab_power: {driver: command, on: [a], off: [b]}}
    pi-02: {ansible_host: 192.0.2.12, lab_chip: hailo10h}
  vars:
    lab_hailo_sources: [archive]
""")
    (tmp_path / "cold.yaml").write_text(COLD)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="host pi-02 has no lab_power, and phase 'soak' of cold.yaml cuts its power"):
        plan_campaign(tmp_path / "cold.yaml", str(tmp_path / "rack.yml"))


def test_a_node_that_stops_answering_is_power_cycled_and_finishes_its_phase(plan, monkeypatch):
    monkeypatch.setattr("lab.engine.campaign.BOOT_POLL_SECONDS", 0.01)
    fleet, store = MemoryFleet({}, drivers={"pi-02"}), MemoryStore()
    frozen = {"once": True}

    def freezes_once(node, spec):
        agent = spec["agent"]
        if agent["phase"] == "soak" and frozen.pop("once", False):
            fleet.answering = {"pi-01"}  # pi-02 freezes after its first sample
            return [{"kind": "phase_start", "boot_id": "b0"},
                    {"kind": "sample", "step": "benchmark", "run": 1, "fps": 125.0}], \
                NodeResult(node, "unreachable", "ssh: connection timed out")
        if agent["phase"] == "soak" and agent["boot_cause"] == "recovery":  # the agent resumes after its record 2
            return [{"kind": "phase_resume", "boot_id": "b1"},
                    {"kind": "sample", "step": "benchmark", "run": 2, "fps": 125.0},
                    {"kind": "sample", "step": "benchmark", "run": 3, "fps": 124.9},
                    {"kind": "phase_end", "status": "ok"}], NodeResult(node, "ok")
        return measuring_node()(node, spec)

    fleet.scripts = {"pi-01": measuring_node(), "pi-02": freezes_once}
    assert run_campaign(ports(fleet, store), plan, "c1")[2] == 0
    assert fleet.cycles == ["pi-02"]
    run = next(r for r in store.campaigns["c1"].runs.values() if r["node"] == "pi-02" and r["repeat"] == 1)
    assert run["verdict"] == "stable" and [e.reason for e in run["power"]] == [
        "soak: unreachable: ssh: connection timed out"]
    rid = next(k for k, r in store.campaigns["c1"].runs.items() if r is run)
    fps = [r["fps"] for r in store.campaigns["c1"].records[rid].values() if r.get("step") == "benchmark"]
    assert fps == [125.0, 125.0, 124.9]  # the sample before the freeze is kept, nothing measured twice


def test_a_pdu_that_refuses_leaves_the_node_infra_error_and_the_others_go_on(plan, monkeypatch):
    monkeypatch.setattr("lab.engine.campaign.BOOT_POLL_SECONDS", 0.01)

    def hangs(node, spec):
        if spec["agent"]["phase"] == "soak":
            return [], NodeResult(node, "failed", "Reboot before the phase: Timed out waiting for last boot time check")
        return [], NodeResult(node, "ok")

    fleet = MemoryFleet({"pi-01": measuring_node(), "pi-02": hangs}, drivers={"pi-02"}, refusing={"pi-02"})
    store = MemoryStore()
    assert run_campaign(ports(fleet, store), plan, "c1")[2] == 1
    runs = {(r["node"], r["repeat"]): r for r in store.campaigns["c1"].runs.values()}
    assert runs[("pi-02", 1)]["error"] == ("soak: failed: Reboot before the phase: Timed out waiting for last boot time "
                                          "check; a power cycle did not bring it back: power cycle refused: memory PDU: "
                                          "no answer")
    assert runs[("pi-01", 1)]["verdict"] == runs[("pi-01", 2)]["verdict"] == "stable"
    assert [(e.ok, e.recovery) for e in runs[("pi-02", 1)]["power"]] == [(False, True)]
