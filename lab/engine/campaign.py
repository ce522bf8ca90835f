"""The campaign loop: rounds of runs, phase by phase on all their nodes at once, over the engine's ports.

Planning is lab/engine/plan.py, the decisions lab/engine/state.py; this module only moves data
between them and the ports (executor, agent files, store) and the progress callbacks.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from lab.contract import AGENT_WORKDIR, Record
from lab.engine.collect import Collector
from lab.engine.plan import Plan, check_campaign_name, host_phase_spec, new_campaign_name, replan, rounds
from lab.engine.ports import AgentFiles, Executor, Power, StoredCampaign, Store
from lab.engine.state import CampaignState, Effect, NodeResult, PhaseClosed, PhaseState, RunState
from lab.errors import ConfigError
from lab.inventory import Host

POLL_SECONDS = 2.0
BOOT_POLL_SECONDS = 2.0  # after a power cycle: how often to ask whether the node is back


def _parallel(work: Callable, items: list) -> list:
    """`work` on every item side by side (threads: each waits on a node), results in order."""
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(32, len(items))) as pool:
        return list(pool.map(work, items))


@dataclass
class Ports:
    """The adapters a campaign runs over."""

    executor: Executor
    files: Callable[[str, list[Host]], AgentFiles]  # (campaign, hosts) -> the agents' files, open until closed
    store: Store
    power: Callable[[list[Host]], Power]  # the plan's hosts -> their power drivers


OnRecord = Callable[[str, dict], None]
OnPhase = Callable[[str, str], None]


class CampaignEngine:
    """Runs a planned campaign through the ports, recording every transition as it happens."""

    def __init__(self, ports: Ports, plan: Plan, state: CampaignState, campaign_id: int,
                 on_record: OnRecord | None = None, on_phase: OnPhase | None = None):
        self.ports = ports
        self.plan = plan
        self.state = state
        self.campaign_id = campaign_id
        self.on_record = on_record
        self.on_phase = on_phase or (lambda node, phase: None)
        self.broken: dict[str, str] = {}  # node -> why it could not be prepared
        self.specs = {s.index: s for s in plan.runs}
        self.power = ports.power(plan.hosts)
        self._lock = threading.Lock()  # the poller's reads and the loop's transitions never interleave

    @property
    def name(self) -> str:
        return self.state.name

    def _apply(self, effects: list[Effect]) -> None:
        self.ports.store.apply(effects)
        for effect in effects:
            if isinstance(effect, PhaseClosed) and effect.announce and self.on_record is not None:
                # provisioning-only phases and failures end visibly too
                self.on_record(effect.node, {"kind": "phase_end", "phase": effect.phase, "status": effect.status,
                                             "error": effect.error})

    def _read(self, run_id: int, records: list[Record]) -> None:
        with self._lock:
            self.state.records_read(run_id, records)

    def collector(self, nodes: list[str]) -> Collector:
        hosts = {h.name: h for h in self.plan.hosts}
        chosen = [hosts[n] for n in nodes]
        return Collector(self.ports.files(self.name, chosen), self.ports.store, self.name, self.campaign_id,
                         chosen, self._read, self.on_record)

    # ---- the campaign ---------------------------------------------------------------------
    def execute(self) -> int:
        """Every round (stack x repeat) phase by phase; returns 0, or 1 if any run hit an infra error."""
        used = self.plan.nodes
        collector = self.collector(used)
        try:
            if self.state.resuming:
                collector.poll([n for n in used if n not in self.broken])  # what nodes recorded meanwhile
            for batch in rounds(self.plan.runs):
                self._round([spec.index for spec in batch], collector)
        finally:
            collector.close()
            self.ports.executor.release(self.plan, self.name,
                                        [n for n in used if n not in self.broken and n not in self.state.gone])
        finished = self.state.finish(self.ports.store.benchmark_series(self.state.runs))
        self._apply([finished])
        return finished.exit_status

    def _round(self, indexes: list[int], collector: Collector) -> None:
        """One stack x repeat on its nodes: every phase in order; a node that fails stops its own run only."""
        active, effects = self.state.start_round(indexes, self.broken)
        self._apply(effects)
        for index, phase in enumerate(self.plan.loaded.scenario.phases):
            todo = self.state.phase_todo(active, index)
            if not todo:
                continue
            for run in todo:
                self.on_phase(run.node, phase.name)
            self._apply(self.state.start_phase(todo, index))
            results: dict[str, NodeResult] = {}
            if phase.power_cycle:  # a cold start: the controller cuts the power, then the phase runs without a reboot
                cold = [r for r in todo if self.state.needs_reboot(r, index)]
                results.update(self._power_cycle(cold, index, f"{phase.name}: power_cycle", collector, recovery=False))
            specs = {run.node: self._spec(run, index) for run in todo if run.node not in results}
            if specs:
                results.update(self._run_phase(specs, collector))
            self._recover(todo, index, results, collector)
            # a node that stopped answering is not waited on again (what it recorded so far is stored)
            collector.finish([r.node for r in todo if results[r.node].outcome != "unreachable"])
            with self._lock:
                for run in todo:
                    self._apply(self.state.phase_result(run, index, results[run.node]))
            active = [r for r in active if not r.finished]

    def _spec(self, run: RunState, index: int, boot_cause: str | None = None) -> dict:
        """The node's phase spec; the phase's own reboot or power cycle only when not done already."""
        hosts = {h.name: h for h in self.plan.hosts}
        fresh = self.state.needs_reboot(run, index) and boot_cause is None
        return host_phase_spec(self.name, self.plan, index, run.run_id, hosts[run.node],
                               self.plan.loaded.stacks[self.specs[run.index].stack], reboot=fresh,
                               boot_cause=boot_cause)

    def _recover(self, todo: list[RunState], index: int, results: dict[str, NodeResult], collector: Collector) -> None:
        """Nodes that stopped answering or hung in a reboot: cycle their power and run the phase again (its
        agent resumes; nothing recorded is lost), as long as their runs have recoveries left."""
        phase = self.plan.loaded.scenario.phases[index]
        while True:
            lost = [r for r in todo if self.state.wants_recovery(r, results[r.node], self.power.has_driver(r.node))]
            if not lost:
                return
            why = {r.node: f"{phase.name}: {results[r.node].outcome}: {results[r.node].why}" for r in lost}
            failed = self._power_cycle(lost, index, why, collector, recovery=True)
            for node, result in failed.items():
                results[node] = NodeResult(node, results[node].outcome,
                                           f"{results[node].why}; a power cycle did not bring it back: {result.why}")
            again = {r.node: self._spec(r, index, boot_cause="recovery") for r in lost if r.node not in failed}
            if again:
                results.update(self._run_phase(again, collector))

    def _power_cycle(self, runs: list[RunState], index: int, reason: str | dict[str, str], collector: Collector,
                     recovery: bool) -> dict[str, NodeResult]:
        """Cycle the runs' nodes' power and wait for each to boot anew; returns the nodes that did not
        (failed, with why). Every cycle is recorded with its reason."""
        if not runs:
            return {}
        hosts = {h.name: h for h in self.plan.hosts}
        files = collector.files
        timeout = float(self.plan.loaded.scenario.reboot_timeout)
        # the boot to leave behind: the node's own answer, else the last boot its records or Ansible named
        # (a node hung in a reboot or frozen does not answer)
        read = dict(zip([r.node for r in runs], _parallel(lambda r: files.boot(hosts[r.node], 10), runs)))
        before = {r.node: read[r.node][0] if read[r.node] else self.state.last_boot(r.node) for r in runs}
        started = time.monotonic()
        asked = self.power.cycle([r.node for r in runs])

        def new_boot(run: RunState) -> float | None:
            if asked[run.node].outcome != "ok":
                return None
            while time.monotonic() - started < timeout:
                now = files.boot(hosts[run.node], 10)
                if now is not None and now[0] != before[run.node]:
                    return round(time.monotonic() - started, 1)
                time.sleep(BOOT_POLL_SECONDS)
            return None

        waited = dict(zip([r.node for r in runs], _parallel(new_boot, runs)))
        failed: dict[str, NodeResult] = {}
        effects: list[Effect] = []
        for run in runs:
            told = asked[run.node]
            if told.outcome != "ok":
                failed[run.node] = NodeResult(run.node, "failed", f"power cycle refused: {told.why}")
            elif waited[run.node] is None:
                failed[run.node] = NodeResult(run.node, "unreachable",
                                              f"no new boot within {timeout:.0f} s of a power cycle")
            why = reason[run.node] if isinstance(reason, dict) else reason
            detail = failed[run.node].why if run.node in failed else f"{told.why}; new boot after {waited[run.node]} s"
            with self._lock:
                effects.append(self.state.power_cycled(run, index, why, run.node not in failed, detail.strip("; "),
                                                       waited[run.node], recovery))
        self._apply(effects)
        return failed

    def _run_phase(self, specs: dict[str, dict], collector: Collector):
        """The executor runs the phase while a poller stores what the nodes record."""
        stop = threading.Event()
        nodes = list(specs)

        def poll() -> None:
            while not stop.wait(POLL_SECONDS):
                collector.poll_many(nodes, timeout=10, stop=stop)  # side by side: a sweep does not grow with the fleet

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            return self.ports.executor.run_phase(self.plan, self.name, specs)
        finally:
            stop.set()
            poller.join()

    def prepare(self) -> None:
        """Deploy the agent and take every node's lock; refuse (exit 2) when another campaign holds one."""
        used = self.plan.nodes
        prepared = self.ports.executor.prepare(self.plan, self.name, used)
        self.broken = {n: r.why for n, r in prepared.items() if r.outcome != "ok"}
        locked = {n: r.facts for n, r in prepared.items()
                  if r.outcome != "ok" and r.facts.get("lab_lock_holder") not in (None, "", self.name)}
        if locked:
            self.ports.executor.release(self.plan, self.name, used)
            raise ConfigError(lock_refusal(locked), str(self.plan.inventory.source),
                              "wait for that campaign to finish; if it is gone, `lab resume` it or remove the lock")

    def catch_up(self, nodes: list[str]) -> None:
        """After a campaign ended with nodes gone: store what they recorded before they vanished, release them.

        A node that froze, lost power or hung in a reboot keeps its fsynced records; once it answers again
        they are read from the start (ingest is idempotent), their artifacts copied, and its lock released
        unless its agent is still running a phase. Runs keep their infra_error verdict.
        """
        nodes = [h.name for h in self.plan.hosts if h.name in nodes]
        if not nodes:
            return
        collector = self.collector(nodes)
        try:
            collector.finish(nodes)
        finally:
            collector.close()
        reached = [n for n in nodes if collector.cursors[n].reachable]
        if reached:
            self.ports.executor.release(self.plan, self.name, reached)


def lock_refusal(locked: dict[str, dict]) -> str:
    """Why a campaign cannot start: the first node another campaign holds, that campaign and the controller that
    locked it (from prepare's facts), and how many more nodes are held."""
    node = sorted(locked)[0]
    facts = locked[node]
    by = f" (controller {facts['lab_lock_controller']})" if facts.get("lab_lock_controller") else ""
    more = len(locked) - 1
    return (f"{node} is in use by campaign {facts['lab_lock_holder']}{by}, a per-node lock ({AGENT_WORKDIR}/lock)"
            + (f"; {more} more node{'s' if more > 1 else ''} in use: {', '.join(sorted(locked)[1:])}" if more else ""))


def records_path(campaign: str) -> str:
    return f"{AGENT_WORKDIR}/{campaign}/records.jsonl"


def run_campaign(ports: Ports, plan: Plan, name: str | None = None, command_line: str = "",
                 on_record: OnRecord | None = None, on_phase: OnPhase | None = None) -> tuple[str, int, int]:
    """Lock the nodes, create and execute a campaign; returns (name, campaign id, exit status).

    Nothing is written to the store before every node is locked for this campaign, so a refused
    or invalid campaign leaves no trace.
    """
    with ExitStack() as claimed:
        name = claim_name(ports.store, claimed, name, plan.loaded.scenario.name)
        state = CampaignState(name, {}, records_path(name), recover=plan.loaded.scenario.recoveries)
        engine = CampaignEngine(ports, plan, state, 0, on_record, on_phase)
        engine.prepare()
        try:
            campaign_id, run_ids = ports.store.create(plan, name, command_line)
        except BaseException:  # nothing was stored: the nodes just locked are given back
            ports.executor.release(plan, name, plan.nodes)
            raise
        engine.campaign_id = campaign_id
        state.runs.update(CampaignState.new(name, [(s.index, run_ids[s.index], s.node) for s in plan.runs],
                                            plan.phase_names).runs)
        return name, campaign_id, engine.execute()


def claim_name(store: Store, claimed: ExitStack, name: str | None, scenario: str, tries: int = 3) -> str:
    """Claim the campaign name for this controller (held until `claimed` closes) before any node is touched, so two
    controllers can never run one name: a name another controller runs or that is stored already is refused; a
    generated one is drawn again."""
    if name:
        return _claim(store, claimed, name)
    for _ in range(tries - 1):
        try:
            return _claim(store, claimed, new_campaign_name(scenario))
        except ConfigError:
            continue  # a generated name another controller drew in the same second
    return _claim(store, claimed, new_campaign_name(scenario))


def _claim(store: Store, claimed: ExitStack, name: str) -> str:
    """Claim one name; ConfigError if another controller holds it or a campaign has it already."""
    check_campaign_name(name)
    with ExitStack() as mine:
        mine.enter_context(store.claim(name))
        if store.campaign_exists(name):
            raise ConfigError(f"a campaign named {name!r} already exists", "--name", "pick another name or omit --name")
        claimed.enter_context(mine.pop_all())
    return name


def load_state(stored: StoredCampaign, phase_names: list[str]) -> CampaignState:
    """The state machine of a stored campaign, as the store left it (resume continues from here)."""
    state = CampaignState(stored.name, {}, records_path(stored.name), resuming=True)
    for run in stored.runs:
        run_id = stored.run_ids[run.index]
        status, error, phases, last_read = stored.progress[run_id]
        loaded = [PhaseState(name) for name in phase_names]
        for phase, (p_status, p_error, begun, boot_id, agent_end) in zip(loaded, phases):
            phase.status, phase.error, phase.begun, phase.boot_id, phase.agent_end = \
                p_status, p_error, begun, boot_id, agent_end
        state.runs[run_id] = RunState(run.index, run_id, run.node, loaded, status, error, last_read=last_read,
                                      recoveries=stored.recoveries.get(run_id, 0))
    return state


def resume_campaign(ports: Ports, ref: str, on_record: OnRecord | None = None,
                    on_phase: OnPhase | None = None) -> tuple[str, int, int]:
    """Finish a campaign whose controller stopped: load its state, continue. Finished phases are kept,
    begun ones resume on the nodes.

    A campaign that ended with infrastructure errors is not run again: what its vanished nodes recorded
    is collected once they answer, and they are released (`CampaignEngine.catch_up`).
    """
    stored = ports.store.load(ref)
    if stored.status not in ("running", "infra_errors"):
        return stored.name, stored.id, int(stored.exit_status or 0)
    with ports.store.claim(stored.name):  # one controller drives a campaign: a second `lab resume` is refused
        return _resume(ports, ports.store.load(stored.name), on_record, on_phase)  # as it is now, claimed


def _resume(ports: Ports, stored: StoredCampaign, on_record: OnRecord | None,
            on_phase: OnPhase | None) -> tuple[str, int, int]:
    """Continue a claimed campaign from its stored state."""
    if stored.status not in ("running", "infra_errors"):
        return stored.name, stored.id, int(stored.exit_status or 0)
    plan = replan(stored.scenario_name, stored.scenario_text, stored.inventory, stored.settings, stored.runs)
    state = load_state(stored, plan.phase_names)
    state.recover = plan.loaded.scenario.recoveries
    engine = CampaignEngine(ports, plan, state, stored.id, on_record, on_phase)
    if stored.status == "infra_errors":
        engine.catch_up(sorted({r.node for r in state.runs.values() if r.status == "infra_error"}))
        return stored.name, stored.id, int(stored.exit_status or 1)
    engine.prepare()
    return stored.name, stored.id, engine.execute()
