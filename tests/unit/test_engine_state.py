"""The campaign state machine: every transition, from events to effects, with no node and no database."""

from __future__ import annotations

import pytest

from lab.analysis import RunSample
from lab.contract import Record
from lab.engine.state import (CampaignFinished, CampaignState, NodeResult, PhaseClosed, PhaseStarted, PowerCycled,
                              RunFailed, RunStarted, run_verdict)

PATH = "/var/lib/lab-agent/c1/records.jsonl"
MISSING = ("configure_cycles: HailoRT's Python binding is not installed (no hailo_platform: python3-hailort, "
           "python3-h10-hailort or Hailo's hailort wheel): No module named 'hailo_platform'")


def recs(dicts) -> list[Record]:
    """Records as the collector hands them over (seq and kind given, a timestamp added)."""
    return [Record.from_json({"ts": 1.8e9, **d}) for d in dicts]


def state(nodes=("node1", "node2"), phases=("provision", "measure")) -> CampaignState:
    """Campaign c1: run index i on nodes[i], run id 10 + i, every phase pending."""
    return CampaignState.new("c1", [(i, 10 + i, n) for i, n in enumerate(nodes)], list(phases), PATH)


def started(st: CampaignState, index: int = 1):
    active, _ = st.start_round([0, 1], {})
    st.start_phase(active, index)
    return active


def test_a_round_marks_its_runs_running_and_fails_a_node_that_could_not_be_prepared():
    st = state()
    active, effects = st.start_round([0, 1], {"node2": "unreachable: no route"})
    assert [r.node for r in active] == ["node1"]
    assert effects == [RunFailed(11, "prepare failed: unreachable: no route"), RunStarted(10)]
    assert st.runs[11].status == "infra_error" and [p.status for p in st.runs[11].phases] == ["skipped", "skipped"]
    assert st.runs[10].status == "running"


def test_a_finished_run_is_left_alone_in_a_later_round():
    st = state()
    st.runs[10].status = "infra_error"
    active, effects = st.start_round([0, 1], {})
    assert [r.run_id for r in active] == [11] and effects == [RunStarted(11)]


def test_only_unfinished_phases_are_run_again():
    st = state()
    active, _ = st.start_round([0, 1], {})
    st.runs[10].phases[0].status = "ok"
    assert [r.run_id for r in st.phase_todo(active, 0)] == [11]
    assert st.start_phase(active, 1) == [PhaseStarted(10, 1), PhaseStarted(11, 1)]
    assert [r.phases[1].status for r in active] == ["running", "running"]


def test_records_read_tell_how_far_a_run_is_read_which_phase_began_and_how_it_ended():
    st = state()
    st.records_read(10, recs([{"seq": 4, "kind": "phase_start", "phase_index": 1, "boot_id": "b1"},
                         {"seq": 5, "kind": "sample", "phase_index": 1, "fps": 125.0},
                         {"seq": 6, "kind": "phase_end", "phase_index": 1, "status": "device_error", "error": "HAILO_TIMEOUT(4)"}]))
    phase = st.runs[10].phases[1]
    assert (st.runs[10].last_read, phase.begun, phase.boot_id, phase.agent_end) == (6, True, "b1", ("device_error", "HAILO_TIMEOUT(4)"))
    st.records_read(99, recs([{"seq": 1, "kind": "phase_start", "phase_index": 0}]))  # another campaign's run: ignored
    st.records_read(10, recs([{"seq": 2, "kind": "phase_resume", "phase_index": 0}, {"seq": 3, "kind": "x", "phase_index": 7}]))
    assert st.runs[10].phases[0].begun and st.runs[10].last_read == 6


def test_a_phase_the_agent_ended_ok_closes_ok_without_announcing_it_again():
    st = state()
    run = started(st)[0]
    st.records_read(10, recs([{"seq": 1, "kind": "phase_start", "phase_index": 1, "boot_id": "b1"},
                         {"seq": 2, "kind": "phase_end", "phase_index": 1, "status": "ok"}]))
    effects = st.phase_result(run, 1, NodeResult("node1", "ok", facts={"lab_agent_last_seq": "2", "lab_phase_boot_id": "b2"}))
    assert effects == [PhaseClosed(10, 1, "node1", "measure", "ok", None, "b1", announce=False)]


def test_a_provisioning_only_phase_closes_ok_in_the_boot_ansible_saw_and_is_announced():
    st = state()
    run = started(st, 0)[0]
    effects = st.phase_result(run, 0, NodeResult("node1", "ok", facts={"lab_phase_boot_id": "b9"}))
    assert effects == [PhaseClosed(10, 0, "node1", "provision", "ok", None, "b9", announce=True)]
    assert run.status == "running"


def test_a_device_error_becomes_the_runs_error_and_the_first_one_wins():
    st = state()
    run = started(st)[0]
    run.error = "earlier: HAILO_PCIE_DRIVER_FAIL"
    st.records_read(10, recs([{"seq": 1, "kind": "phase_end", "phase_index": 1, "status": "device_error", "error": "timeout"}]))
    (closed,) = st.phase_result(run, 1, NodeResult("node1", "ok"))
    assert (closed.status, closed.error, closed.run_error) == ("device_error", "timeout", "earlier: HAILO_PCIE_DRIVER_FAIL")
    assert run.status == "running"  # a device error is a result, not a failure of the run


def test_the_agents_infra_error_ends_the_run():
    st = state()
    run = started(st)[0]
    st.records_read(10, recs([{"seq": 1, "kind": "phase_end", "phase_index": 1, "status": "infra_error", "error": MISSING}]))
    effects = st.phase_result(run, 1, NodeResult("node1", "ok", facts={"lab_agent_last_seq": 1}))
    assert effects == [PhaseClosed(10, 1, "node1", "measure", "infra_error", MISSING, None, announce=False),
                       RunFailed(10, f"measure: {MISSING}")]
    assert run.finished and run.verdict == "infra_error"


def test_a_failed_node_ends_its_run_and_the_other_goes_on():
    st = state()
    one, two = started(st)
    effects = st.phase_result(one, 1, NodeResult("node1", "failed", "Wait for the phase: timed out"))
    assert effects == [PhaseClosed(10, 1, "node1", "measure", "infra_error", "measure: failed: Wait for the phase: timed out",
                                   None, announce=True), RunFailed(10, "measure: failed: Wait for the phase: timed out")]
    assert [p.status for p in one.phases] == ["skipped", "infra_error"]
    assert two.status == "running" and not st.gone


def test_an_unreachable_node_is_gone_and_its_later_phases_skipped():
    st = state(phases=("p0", "p1", "p2"))
    run = started(st)[0]
    st.phase_result(run, 1, NodeResult("node1", "unreachable", "ssh: connection timed out"))
    assert st.gone == {"node1"}
    assert [p.status for p in run.phases] == ["skipped", "infra_error", "skipped"]
    assert run.error == "p1: unreachable: ssh: connection timed out"


@pytest.mark.parametrize("last_seq", [3, "3", None, ""])
def test_every_record_read(last_seq):
    st = state()
    run = started(st)[0]
    st.records_read(10, recs([{"seq": n, "kind": "sample", "phase_index": 1} for n in (1, 2, 3)]))
    (closed,) = st.phase_result(run, 1, NodeResult("node1", "ok", facts={"lab_agent_last_seq": last_seq}))
    assert closed.status == "ok"


def test_records_the_controller_never_read_end_the_run():
    st = state()
    run = started(st)[0]
    st.records_read(10, recs([{"seq": n, "kind": "sample", "phase_index": 1} for n in (1, 2, 3)]))
    effects = st.phase_result(run, 1, NodeResult("node1", "ok", facts={"lab_agent_last_seq": "7"}))
    assert effects[-1] == RunFailed(10, (
        "measure: the node recorded up to record 7 but the controller could not read them; check that the SSH user can "
        "read /var/lib/lab-agent/c1/records.jsonl, then `lab resume c1`"))


def test_a_resumed_phase_that_already_began_does_not_reboot_again():
    st = state()
    st.runs[10].phases[1].begun = True
    assert st.needs_reboot(st.runs[10], 1)  # a new campaign always reboots where the scenario says
    st.resuming = True
    assert not st.needs_reboot(st.runs[10], 1) and st.needs_reboot(st.runs[10], 0)


def series(*fps):
    return [RunSample(i + 1, f, 60.0, None) for i, f in enumerate(fps)]


def test_the_end_gives_each_run_its_verdict_and_the_campaign_its_exit_status():
    st = state(nodes=("node1", "node2", "node3"))
    started(st)
    st.runs[12].phases[1].status, st.runs[12].phases[1].error = "device_error", "HAILO_TIMEOUT(4)"
    done = st.finish({10: [series(*[125.0] * 25)], 11: [series(*[125.0] * 12, *[81.6] * 13)]})
    assert done == CampaignFinished("c1", {10: "stable", 11: "degraded", 12: "device_error"}, "finished", 0)
    assert [r.status for r in st.runs.values()] == ["done"] * 3


def test_an_infra_error_makes_the_campaign_exit_1():
    st = state()
    run = started(st)[0]
    st.phase_result(run, 1, NodeResult("node1", "unreachable", "gone"))
    done = st.finish({11: [series(*[125.0] * 25)]})
    assert (done.verdicts, done.status, done.exit_status) == ({11: "stable"}, "infra_errors", 1)


def test_a_run_verdict_judges_each_phase_on_its_own():
    fall = series(*[125.0] * 12, *[81.6] * 13)
    assert run_verdict([series(*[125.0] * 25), fall], None) == "degraded"
    assert run_verdict([series(*[125.0] * 25)], "HAILO_TIMEOUT(4)") == "device_error"
    assert run_verdict([], None) == "infra_error"


# ---- power: automatic recovery ------------------------------------------------------------------

def test_a_lost_node_with_a_power_driver_is_recovered_while_its_run_has_recoveries_left():
    st = state()
    st.recover = 1
    run = started(st)[0]
    lost = NodeResult("node1", "unreachable", "ssh: connection timed out")
    assert st.wants_recovery(run, lost, has_power=True)
    assert not st.wants_recovery(run, lost, has_power=False)  # no driver: it stays lost, as before
    cycled = st.power_cycled(run, 1, "measure: unreachable: ssh: connection timed out", True, "new boot after 21.0 s",
                             21.0, recovery=True)
    assert cycled == PowerCycled(10, 1, "node1", "measure: unreachable: ssh: connection timed out", True,
                                 "new boot after 21.0 s", 21.0, True)
    assert run.recoveries == 1 and not st.wants_recovery(run, lost, has_power=True)  # the budget is spent


def test_a_reboot_that_hangs_is_recovered_but_a_failed_task_is_not():
    st = state()
    st.recover = 2
    run = started(st)[0]
    hung = NodeResult("node1", "failed", "Reboot before the phase: Timed out waiting for last boot time check")
    broken = NodeResult("node1", "failed", "Install the pinned stack: no package hailort")
    assert st.wants_recovery(run, hung, True) and not st.wants_recovery(run, broken, True)
    assert not st.wants_recovery(run, NodeResult("node1", "ok"), True)


def test_a_node_whose_host_key_changed_is_not_power_cycled():
    st = state()
    st.recover = 1
    run = started(st)[0]
    changed = NodeResult("node1", "unreachable", "host key changed or unknown: the node's SSH host key does not match "
                                                 "known_hosts; verify the node, then update known_hosts")
    assert not st.wants_recovery(run, changed, True)


def test_recover_none_never_cycles():
    st = state()  # recover defaults to 0 in the state: the scenario's `recover: none`
    run = started(st)[0]
    assert not st.wants_recovery(run, NodeResult("node1", "unreachable", "gone"), True)


def test_the_scenarios_own_power_cycle_does_not_spend_the_recovery_budget():
    st = state()
    st.recover = 1
    run = started(st)[0]
    st.power_cycled(run, 1, "measure: power_cycle", True, "asked; new boot after 9 s", 9.0, recovery=False)
    assert run.recoveries == 0
