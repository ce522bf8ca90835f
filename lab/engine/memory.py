"""In-memory adapters of the engine's ports: a scripted fleet of nodes and a store in dicts.

They run the real engine (planning, state machine, loop) with no node, no SSH and no database, for
unit tests and for reading how a campaign would go. A node's behaviour per phase is a script:
which records its agent writes and how the executor reports it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from lab.analysis import RunSample
from lab.contract import Record
from lab.engine.plan import Plan, StoredRun
from lab.engine.ports import StoredCampaign
from lab.engine.state import (CampaignFinished, Effect, NodeResult, PhaseClosed, PhaseStarted, PowerCycled, RunFailed,
                              RunStarted)
from lab.errors import ConfigError
from lab.inventory import Host

# What a node does in one phase: (its agent's records without seq/run_key, its outcome). Given the
# node's phase spec, so a script can look at the steps, the reboot flag or the run key.
Script = Callable[[str, dict], tuple[list[dict], NodeResult]]


def measuring_node(fps: Sequence[float] = (125.0, 124.9, 125.1)) -> Script:
    """A node whose agent starts, records one benchmark sample per fps and ends `ok`, for every phase with steps."""
    def script(node: str, spec: dict) -> tuple[list[dict], NodeResult]:
        agent = spec["agent"]
        if not agent["steps"]:
            return [], NodeResult(node, "ok")
        records = [{"kind": "phase_start", "boot_id": f"boot-{node}-{agent['phase_index']}"}]
        records += [{"kind": "sample", "step": "benchmark", "run": i + 1, "fps": f} for i, f in enumerate(fps)]
        records.append({"kind": "phase_end", "status": "ok"})
        return records, NodeResult(node, "ok")
    return script


@dataclass
class MemoryFleet:
    """Nodes in memory: an executor and agent files over per-node scripts and record files."""

    scripts: dict[str, Script]
    holders: dict[str, str] = field(default_factory=dict)  # node -> the campaign holding its lock
    lockers: dict[str, str] = field(default_factory=dict)  # node -> the controller that took its lock
    files: dict[str, bytearray] = field(default_factory=dict)  # node -> its record file
    seq: dict[str, int] = field(default_factory=dict)
    answering: set[str] | None = None  # nodes that answer reads (None: all)
    phases_run: list[tuple[str, str, bool]] = field(default_factory=list)  # (node, phase, reboot)
    released: list[list[str]] = field(default_factory=list)
    drivers: set[str] = field(default_factory=set)  # nodes with a power driver
    refusing: set[str] = field(default_factory=set)  # nodes whose power driver refuses (a PDU that does not answer)
    boots: dict[str, int] = field(default_factory=dict)  # node -> boots since the fleet came up
    cycles: list[str] = field(default_factory=list)  # every power cycle asked, in order

    # ---- the executor ---------------------------------------------------------------------------
    def prepare(self, plan: Plan, campaign: str, nodes: list[str]) -> dict[str, NodeResult]:
        out = {}
        for node in nodes:
            if node not in self.holders:
                self.holders[node], self.lockers[node] = campaign, "memory controller"
            holder = self.holders[node]
            outcome = "ok" if holder == campaign else "failed"
            out[node] = NodeResult(node, outcome, "" if outcome == "ok" else f"node is in use by campaign {holder}",
                                   {"lab_lock_holder": holder, "lab_lock_controller": self.lockers.get(node, "")})
        return out

    def run_phase(self, plan: Plan, campaign: str, specs: Mapping[str, dict]) -> dict[str, NodeResult]:
        results = {}
        for node, spec in specs.items():
            self.phases_run.append((node, spec["agent"]["phase"], bool(spec["reboot"])))
            records, result = self.scripts[node](node, spec)
            for rec in records:
                self.write(node, {**rec, "run_key": spec["agent"]["run_key"], "phase": spec["agent"]["phase"],
                                  "phase_index": spec["agent"]["phase_index"]})
            facts = dict(result.facts)
            if records and "lab_agent_last_seq" not in facts:
                facts["lab_agent_last_seq"] = self.seq[node]
            results[node] = NodeResult(node, result.outcome, result.why, facts)
        return results

    def release(self, plan: Plan, campaign: str, nodes: list[str]) -> None:
        self.released.append(list(nodes))
        for node in nodes:
            if self.holders.get(node) == campaign:
                del self.holders[node]
                self.lockers.pop(node, None)

    def write(self, node: str, record: dict) -> None:
        """Append one record to the node's file, numbered as the agent numbers them."""
        self.seq[node] = self.seq.get(node, 0) + 1
        self.files.setdefault(node, bytearray()).extend(
            json.dumps({"seq": self.seq[node], "ts": 1.8e9 + self.seq[node], **record}).encode() + b"\n")

    # ---- the agent files ------------------------------------------------------------------------
    def open_files(self, campaign: str, hosts: list[Host]) -> MemoryFleet:
        return self

    def read_records(self, host: Host, offset: int, timeout: float) -> bytes | None:
        if self.answering is not None and host.name not in self.answering:
            return None
        return bytes(self.files.get(host.name, b""))[offset:]

    def fetch(self, host: Host, names: list[str], timeout: float) -> dict[str, bytes] | None:
        return {}

    def boot(self, host: Host, timeout: float) -> tuple[str, float] | None:
        if self.answering is not None and host.name not in self.answering:
            return None
        return f"boot-{host.name}-{self.boots.get(host.name, 0)}", 1.0

    # ---- power ----------------------------------------------------------------------------------
    def power_for(self, hosts: list[Host]) -> MemoryFleet:
        return self

    def has_driver(self, node: str) -> bool:
        return node in self.drivers

    def cycle(self, nodes: list[str]) -> dict[str, NodeResult]:
        """A cycle boots the node anew and makes it answer again (a refusing driver does nothing)."""
        out = {}
        for node in nodes:
            self.cycles.append(node)
            if node in self.refusing:
                out[node] = NodeResult(node, "failed", "memory PDU: no answer")
                continue
            self.boots[node] = self.boots.get(node, 0) + 1
            if self.answering is not None:
                self.answering.add(node)
            out[node] = NodeResult(node, "ok", "memory PDU: cycled")
        return out

    def close(self) -> None:
        pass


@dataclass
class MemoryCampaign:
    """One campaign's rows, as dicts."""

    id: int
    name: str
    plan: Plan
    command_line: str
    status: str = "running"
    exit_status: int | None = None
    runs: dict[int, dict] = field(default_factory=dict)  # run id -> {index, node, stack, repeat, status, ...}
    records: dict[int, dict[int, dict]] = field(default_factory=dict)  # run id -> seq -> record


class MemoryStore:
    """The store port in dicts: every transition and record, readable by tests."""

    def __init__(self, claims: dict[str, str] | None = None, controller: str = "memory controller"):
        self.campaigns: dict[str, MemoryCampaign] = {}
        self.effects: list[Effect] = []
        self.claims = {} if claims is None else claims  # name -> controller; share one dict as several controllers
        self.controller = controller

    @contextmanager
    def claim(self, name: str) -> Iterator[None]:
        holder = self.claims.setdefault(name, self.controller)
        if holder != self.controller:
            raise ConfigError(f"campaign {name} is being run by another controller (controller {holder})",
                              "memory", "wait for it to finish, or give this campaign another --name")
        try:
            yield
        finally:
            del self.claims[name]

    def campaign_exists(self, name: str) -> bool:
        return name in self.campaigns

    def create(self, plan: Plan, name: str, command_line: str) -> tuple[int, dict[int, int]]:
        campaign = MemoryCampaign(len(self.campaigns) + 1, name, plan, command_line)
        run_ids = {}
        executors = {h.name: h.executor for h in plan.hosts}
        for spec in plan.runs:
            run_id = 100 * campaign.id + spec.index + 1
            run_ids[spec.index] = run_id
            campaign.runs[run_id] = {"index": spec.index, "node": spec.node, "stack": spec.stack,
                                     "repeat": spec.repeat, "executor": executors.get(spec.node), "status": "pending", "error": None, "verdict": None,
                                     "phases": [{"status": "pending", "error": None, "boot_id": None}
                                                for _ in plan.phase_names]}
            campaign.records[run_id] = {}
        self.campaigns[name] = campaign
        return campaign.id, run_ids

    def _run(self, run_id: int) -> dict:
        return next(c.runs[run_id] for c in self.campaigns.values() if run_id in c.runs)

    def apply(self, effects: Sequence[Effect]) -> None:
        for effect in effects:
            self.effects.append(effect)
            if isinstance(effect, RunStarted):
                self._run(effect.run_id)["status"] = "running"
            elif isinstance(effect, PhaseStarted):
                self._run(effect.run_id)["phases"][effect.index]["status"] = "running"
            elif isinstance(effect, PhaseClosed):
                run = self._run(effect.run_id)
                run["phases"][effect.index].update(status=effect.status, error=effect.error, boot_id=effect.boot_id)
                if effect.run_error is not None:
                    run["error"] = effect.run_error
            elif isinstance(effect, RunFailed):
                run = self._run(effect.run_id)
                run.update(status="infra_error", verdict="infra_error", error=effect.error)
                for phase in run["phases"]:
                    if phase["status"] in ("pending", "running"):
                        phase["status"] = "skipped" if phase["status"] == "pending" else "infra_error"
            elif isinstance(effect, PowerCycled):
                self._run(effect.run_id).setdefault("power", []).append(effect)
            elif isinstance(effect, CampaignFinished):
                campaign = self.campaigns[effect.campaign]
                for run_id, verdict in effect.verdicts.items():
                    campaign.runs[run_id].update(verdict=verdict, status="done")
                campaign.status, campaign.exit_status = effect.status, effect.exit_status

    def ingest(self, campaign: str, campaign_id: int, host: Host, records: list[Record]) -> int:
        added = 0
        for rec in records:
            stored = self.campaigns[campaign].records[int(rec.run_key)]
            if rec.seq not in stored:
                stored[rec.seq] = rec.to_json()
                added += 1
        return added

    def stored_artifacts(self, campaign_id: int, node: str) -> set[str]:
        return set()

    def store_artifact(self, campaign_id: int, node: str, name: str, run_id: int, data: bytes, intact: bool) -> None:
        pass

    def benchmark_series(self, run_ids: Iterable[int]) -> dict[int, list[list[RunSample]]]:
        out = {}
        for run_id in run_ids:
            records = next(c.records[run_id] for c in self.campaigns.values() if run_id in c.runs)
            by_phase: dict[int, list[RunSample]] = {}
            for seq in sorted(records):
                rec = records[seq]
                if rec.get("step") == "benchmark" and rec.get("fps") is not None:
                    series = by_phase.setdefault(rec["phase_index"], [])
                    series.append(RunSample(len(series) + 1, rec["fps"], rec.get("temp"), rec.get("configures")))
            out[run_id] = list(by_phase.values())
        return out

    def load(self, ref: str) -> StoredCampaign:
        campaign = self.campaigns.get(ref)
        if campaign is None:
            raise ConfigError(f"no campaign {ref!r}", ref, "see `lab campaigns`")
        plan = campaign.plan
        stored = StoredCampaign(campaign.id, campaign.name, campaign.status, campaign.exit_status,
                                plan.loaded.scenario.name, plan.loaded.text, str(plan.inventory.source),
                                campaign.command_line, plan.settings(),
                                [StoredRun(r["index"], r["node"], r["stack"], r["repeat"]) for r in campaign.runs.values()],
                                {r["index"]: rid for rid, r in campaign.runs.items()})
        for run_id, run in campaign.runs.items():
            records = campaign.records[run_id]
            phases = []
            for index, phase in enumerate(run["phases"]):
                mine = [records[s] for s in sorted(records) if records[s].get("phase_index") == index]
                ends = [r for r in mine if r["kind"] == "phase_end"]
                starts = [r for r in mine if r["kind"] == "phase_start"]
                phases.append((phase["status"], phase["error"], any(r["kind"] in ("phase_start", "phase_resume") for r in mine),
                               starts[-1].get("boot_id") if starts else phase["boot_id"],
                               (ends[-1].get("status", "ok"), ends[-1].get("error")) if ends else None))
            stored.progress[run_id] = (run["status"], run["error"], phases, max(records, default=0))
            stored.recoveries[run_id] = sum(1 for e in run.get("power", []) if e.recovery)
        return stored
