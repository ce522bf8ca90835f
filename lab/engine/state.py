"""A campaign as a state machine: events in (records read, a phase's result on a node), effects out.

Pure: no I/O. The engine (lab/engine/campaign.py) feeds it what the ports report and hands the
effects it returns to the store and the progress display. Resume is the same machine loaded from
the database (`CampaignState.from_stored`), continued.

Statuses. A run: pending -> running -> done | infra_error. A phase: pending -> running -> ok |
device_error | degraded-free statuses the agent reports (`ok`, `device_error`, `infra_error`), or
skipped (its run failed before it). Verdicts come at the end from each phase's benchmark series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.analysis import RunSample, classify_run
from lab.contract import PHASE_END, PHASE_RESUME, PHASE_START, Record

OPEN = ("pending", "running")  # a phase (or run) not finished yet
REBOOT_TASK = "Reboot before the phase:"  # phase.yml's reboot task: a node failing it hung in its reboot


# ---- state --------------------------------------------------------------------------------------

@dataclass
class PhaseState:
    """One phase of one run, as far as the controller knows."""

    name: str
    status: str = "pending"
    error: str | None = None
    begun: bool = False  # the node's agent recorded this phase's start: its reboot is done
    boot_id: str | None = None  # the boot its last start was recorded in
    agent_end: tuple[str, str | None] | None = None  # (status, error) of the agent's own phase_end record


@dataclass
class RunState:
    """One run (a node, a stack, a repeat) with its phases."""

    index: int  # the RunSpec's index in the plan
    run_id: int
    node: str
    phases: list[PhaseState]
    status: str = "pending"
    error: str | None = None
    verdict: str | None = None
    last_read: int = 0  # highest record number of this run the controller has stored
    recoveries: int = 0  # power cycles used to bring its node back

    @property
    def finished(self) -> bool:
        return self.status not in OPEN


# ---- effects: what the store records and the progress shows ---------------------------------------

@dataclass(frozen=True)
class RunStarted:
    run_id: int


@dataclass(frozen=True)
class PhaseStarted:
    run_id: int
    index: int


@dataclass(frozen=True)
class PhaseClosed:
    """A phase ended; `announce` when the agent's own phase_end never reached the progress display."""

    run_id: int
    index: int
    node: str
    phase: str
    status: str
    error: str | None
    boot_id: str | None
    announce: bool
    run_error: str | None = None  # a device error also becomes the run's error (the first one wins)


@dataclass(frozen=True)
class RunFailed:
    """The run ends infra_error: open phases become skipped (pending) or infra_error (running)."""

    run_id: int
    error: str


@dataclass(frozen=True)
class PowerCycled:
    """The controller cycled a node's power during a run's phase: why, whether a new boot came, how long it took."""

    run_id: int
    index: int
    node: str
    reason: str
    ok: bool
    detail: str
    waited_s: float | None = None
    recovery: bool = False  # to bring back a node that was lost, not the scenario's own power_cycle


@dataclass(frozen=True)
class CampaignFinished:
    campaign: str
    verdicts: dict[int, str]  # run id -> verdict of every run that completed
    status: str  # finished | infra_errors
    exit_status: int


Effect = RunStarted | PhaseStarted | PhaseClosed | RunFailed | PowerCycled | CampaignFinished


# ---- events: what the ports report ------------------------------------------------------------

@dataclass(frozen=True)
class NodeResult:
    """How a node came out of a playbook: ok, failed (a task failed), unreachable, or lost (the execution node
    it runs through died mid-playbook: the node itself is likely fine and still measuring), with its facts."""

    node: str
    outcome: str  # ok | failed | unreachable | lost
    why: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)


def unread_error(campaign: str, last_seq: int, records_path: str) -> str:
    """Why a phase whose records the controller did not all read cannot count as done."""
    return (f"the node recorded up to record {last_seq} but the controller could not read them; check that "
            f"the SSH user can read {records_path}, then `lab resume {campaign}`")


@dataclass
class CampaignState:
    """Every run of a campaign and what the controller learnt about it; transitions return effects."""

    name: str
    runs: dict[int, RunState]  # by run id
    records_path: str = ""  # where a node keeps the campaign's records (named in errors)
    recover: int = 0  # power cycles a run may use to bring its node back (the scenario's `recover`)
    resuming: bool = False
    gone: set[str] = field(default_factory=set)  # nodes that stopped answering (not waited on again)

    @classmethod
    def new(cls, name: str, runs: Iterable[tuple[int, int, str]], phases: list[str], records_path: str = "") -> CampaignState:
        """A fresh campaign: (run index, run id, node) per run, every phase pending."""
        return cls(name, {rid: RunState(index, rid, node, [PhaseState(p) for p in phases]) for index, rid, node in runs},
                   records_path)

    def by_index(self, index: int) -> RunState:
        return next(r for r in self.runs.values() if r.index == index)

    # ---- a round of runs --------------------------------------------------------------------
    def start_round(self, indexes: Iterable[int], broken: Mapping[str, str]) -> tuple[list[RunState], list[Effect]]:
        """The runs of a round that go on (finished ones are left alone; a node whose preparation failed
        fails its run), each marked running."""
        active, effects = [], []
        for index in indexes:
            run = self.by_index(index)
            if run.finished:
                continue  # finished (or failed) before the controller stopped
            if run.node in broken:
                effects += self.fail_run(run, f"prepare failed: {broken[run.node]}")
            else:
                active.append(run)
        for run in active:
            run.status = "running"
            effects.append(RunStarted(run.run_id))
        return active, effects

    def phase_todo(self, active: list[RunState], index: int) -> list[RunState]:
        """The active runs whose phase `index` is not finished yet."""
        return [r for r in active if r.phases[index].status in OPEN]

    def needs_reboot(self, run: RunState, index: int) -> bool:
        """False when an interrupted attempt of this phase already rebooted (its agent resumes)."""
        return not (self.resuming and run.phases[index].begun)

    def wants_recovery(self, run: RunState, result: NodeResult, has_power: bool) -> bool:
        """Whether to cycle the node's power and run the phase again: it stopped answering, or hung in the
        phase's reboot, it has a power driver, and its run has recoveries left."""
        lost = result.outcome == "unreachable" or (result.outcome == "failed" and result.why.startswith(REBOOT_TASK))
        refused = "host key" in result.why  # it answers, with a key we do not trust: power changes nothing
        return lost and not refused and has_power and run.recoveries < self.recover

    def last_boot(self, node: str) -> str | None:
        """The latest boot a node's records or Ansible named (its last run's last phase with one)."""
        for run in sorted((r for r in self.runs.values() if r.node == node), key=lambda r: -r.index):
            for phase in reversed(run.phases):
                if phase.boot_id:
                    return phase.boot_id
        return None

    def power_cycled(self, run: RunState, index: int, reason: str, ok: bool, detail: str,
                     waited_s: float | None, recovery: bool) -> PowerCycled:
        """A power cycle of the run's node happened (a recovery counts against the run's budget)."""
        if recovery:
            run.recoveries += 1
        return PowerCycled(run.run_id, index, run.node, reason, ok, detail, waited_s, recovery)

    def start_phase(self, runs: list[RunState], index: int) -> list[Effect]:
        for run in runs:
            run.phases[index].status = "running"
        return [PhaseStarted(r.run_id, index) for r in runs]

    # ---- events -----------------------------------------------------------------------------
    def records_read(self, run_id: int, records: Iterable[Record]) -> None:
        """Records of one run reached the database: how far it is read, which phases began, how they ended."""
        run = self.runs.get(run_id)
        if run is None:
            return
        for rec in records:
            run.last_read = max(run.last_read, rec.seq)
            index = rec.phase_index
            if not isinstance(index, int) or not 0 <= index < len(run.phases):
                continue
            phase = run.phases[index]
            if rec.kind in (PHASE_START, PHASE_RESUME):
                phase.begun = True
            if rec.kind == PHASE_START:
                phase.boot_id = rec.body.get("boot_id")
            elif rec.kind == PHASE_END:
                phase.agent_end = (str(rec.body.get("status") or "ok"), rec.body.get("error"))

    def phase_result(self, run: RunState, index: int, result: NodeResult) -> list[Effect]:
        """A node's outcome of phase `index`: the phase closes; the run fails if the node or its agent did."""
        phase = run.phases[index]
        if result.outcome == "unreachable":
            self.gone.add(run.node)
        # lost: its executor died ("executor X lost: ..."); no power cycle, the node is not gone: what it records
        # meanwhile is read when the executor answers again (`lab resume`)
        failure = (result.why if result.outcome == "lost" else f"{result.outcome}: {result.why}"
                   if result.outcome != "ok" else self._unread(run, result))
        if failure is not None:
            error = f"{phase.name}: {failure}"
            return [self._close(run, index, "infra_error", error, phase.boot_id, announce=True),
                    *self.fail_run(run, error)]
        if phase.agent_end is not None:
            status, error = phase.agent_end
        else:
            status, error = "ok", None  # a phase of reboot and provisioning only: Ansible reported success
        boot = phase.boot_id or (str(result.facts["lab_phase_boot_id"]) if result.facts.get("lab_phase_boot_id") else None)
        effects: list[Effect] = [self._close(run, index, status, error, boot, announce=phase.agent_end is None)]
        if status == "infra_error":  # the agent could not measure here: pre-flight refused, no binding, a step broke
            effects += self.fail_run(run, f"{phase.name}: {error}")
        return effects

    def _unread(self, run: RunState, result: NodeResult) -> str | None:
        last = result.facts.get("lab_agent_last_seq")
        if last in (None, "") or run.last_read >= int(last):
            return None
        return unread_error(self.name, int(last), self.records_path)

    def _close(self, run: RunState, index: int, status: str, error: str | None, boot: str | None,
               announce: bool) -> PhaseClosed:
        phase = run.phases[index]
        phase.status, phase.error, phase.boot_id = status, error, boot
        run_error = None
        if status == "device_error":
            run.error = run_error = run.error or error
        return PhaseClosed(run.run_id, index, run.node, phase.name, status, error, boot, announce, run_error)

    def fail_run(self, run: RunState, error: str) -> list[Effect]:
        run.status, run.verdict, run.error = "infra_error", "infra_error", error
        for phase in run.phases:
            if phase.status in OPEN:
                phase.status = "skipped" if phase.status == "pending" else "infra_error"
        return [RunFailed(run.run_id, error)]

    # ---- the end ----------------------------------------------------------------------------
    def finish(self, series: Mapping[int, list[list[RunSample]]]) -> CampaignFinished:
        """Verdicts from each run's benchmark series (one per phase); exit 1 if any run hit an infra error."""
        infra = False
        verdicts = {}
        for run in self.runs.values():
            if run.status == "infra_error":
                infra = True
                continue
            device_error = next((p.error or "device error" for p in run.phases if p.status == "device_error"), None)
            run.verdict = verdicts[run.run_id] = run_verdict(series.get(run.run_id, []), device_error)
            run.status = "done"
        return CampaignFinished(self.name, verdicts, "infra_errors" if infra else "finished", 1 if infra else 0)


def run_verdict(phases: list[list[RunSample]], device_error: str | None) -> str:
    """A run's verdict: each phase's benchmark series is judged on its own (a reboot resets the chip);
    the run is degraded if any phase degraded, a device error wins, and no sample at all is an infra error."""
    if device_error:
        return "device_error"
    verdicts = [classify_run(series).verdict.value for series in phases]
    if not verdicts:
        return classify_run([]).verdict.value
    return "degraded" if "degraded" in verdicts else "stable"
