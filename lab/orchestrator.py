"""Campaign execution: the matrix's runs, phase by phase on all nodes at once, with reboots and live ingest."""

from __future__ import annotations

import getpass
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lab import inventory as inventory_mod
from lab.analysis import RunSample, classify_run
from lab.ansible import run_playbook
from lab.bundle import build_bundle
from lab.collector import Collector
from lab.contract import (AGENT_WORKDIR, HEF_DIRS, MEMINFO, PI_DEVICETREE_DIR, SYSFS_ROOT, AgentSpec, NodePhaseSpec,
                          driver_module_for)
from lab.db.ingest import get_or_create_stack
from lab.db.models import Campaign, Phase, Run, Sample
from lab.errors import ConfigError
from lab.inputs import load_scenario_file
from lab.inventory import Host, Inventory
from lab.models import ModelFile, resolve_models
from lab.scenario import LoadedScenario, RunSpec, expand_matrix
from lab.sources import installs_for
from lab.stack import Stack
from lab.steps import ProvisionStep

POLL_SECONDS = 2.0
# Inventory variables that name node commands (strings are split like a shell would, never run by one).
COMMAND_VARS = {"kernel_log": "lab_kernel_log_cmd", "pcie_remove": "lab_pcie_remove_cmd",
                "pcie_rescan": "lab_pcie_rescan_cmd", "driver_version": "lab_driver_version_cmd",
                "throttled": "lab_throttled_cmd", "firmware_version": "lab_firmware_version_cmd",
                "bootloader_version": "lab_bootloader_version_cmd", "vcgencmd": "lab_vcgencmd"}


@dataclass
class Plan:
    """A validated campaign: the scenario, the inventory, the chosen hosts and the expanded runs."""

    loaded: LoadedScenario
    inventory: Inventory
    hosts: list[Host]
    runs: list[RunSpec]
    limit: str | None = None
    installs: dict[tuple[str, str], dict] = field(default_factory=dict)  # (stack, node) -> how it is installed
    models: dict[str, ModelFile] = field(default_factory=dict)  # controller models by name


def plan_installs(loaded: LoadedScenario, runs: list[RunSpec], inv: Inventory) -> dict[tuple[str, str], dict]:
    """(stack, node) -> where that node gets that stack's packages, for every stack a run provisions.

    A stack that no source of the node's group provides (e.g. a version missing from the Hailo files
    folder) is a ConfigError here, before any node is touched."""
    provisions = [s for p in loaded.scenario.phases for s in p.steps if isinstance(s, ProvisionStep)]
    out: dict[tuple[str, str], dict] = {}
    for spec in runs:
        for step in provisions:
            name = step.stack or spec.stack
            if (name, spec.node) not in out:
                host = inv.hosts[spec.node]
                out[(name, spec.node)] = installs_for(loaded.stacks[name], [host], str(inv.source))[host.name]
    return out


def plan_campaign(scenario_path: str | Path, inventory_name: str, limit: str | None = None) -> Plan:
    """Load and check everything a campaign needs, touching no node and no database."""
    loaded = load_scenario_file(scenario_path)
    inv = inventory_mod.load(inventory_name)
    hosts = inv.select(limit)
    chips = {h.name: h.chip for h in hosts if h.chip}
    runs = expand_matrix(loaded.scenario, [h.name for h in hosts], inv.groups, chips, loaded.stacks)
    models = resolve_models(loaded)  # a model missing on the controller stops here, before any node
    return Plan(loaded, inv, hosts, runs, limit, plan_installs(loaded, runs, inv), models)


def _argv(value: Any) -> list[str] | None:
    import shlex

    if not value:
        return None
    return [str(v) for v in value] if isinstance(value, list) else shlex.split(str(value))


def phase_nominal_seconds(phase) -> float:
    """A phase's expected duration on the node at time scale 1 (each step's nominal time plus a margin)."""
    nominal = 0.0
    for step in phase.steps:
        kind = step.kind
        if kind == "benchmark":
            nominal += step.runs * (step.time_to_run + step.gap + 5)
        elif kind == "configure_cycles":
            nominal += step.count * (2 + step.frames / 20)
        elif kind == "infer_continuous":
            nominal += step.duration + 10
        elif kind == "cooldown":
            nominal += step.seconds
        else:
            nominal += 30
    return nominal


def phase_seconds(phase, time_scale: float) -> float:
    """A generous bound on a phase's wall time on the node (for the async timeout)."""
    return phase_nominal_seconds(phase) * time_scale * 3 + 600


def poll_seconds(phase, time_scale: float) -> int:
    """The delay between `async_status` asks, every 2-30 s (about 1/30 of the phase).

    The node itself waits for the agent's end first (phase.yml's `wait_for`, one ask per 30 s), so
    this only paces the asks made after the agent's result is written, or while a node keeps failing
    the wait; each ask is a module run (~0.1 CPU s on the controller, ~0.25 on the node).
    """
    return int(min(30, max(2, phase_nominal_seconds(phase) * time_scale / 30)))


def host_phase_spec(campaign: str, plan: Plan, phase_index: int, run_id: int, host: Host, stack: Stack) -> dict:
    """Everything one node needs for one phase, as data: reboot, provisioning, and the agent's steps.

    The contract's NodePhaseSpec as JSON (phase.yml reads it as lab_phase_specs[host])."""
    scenario = plan.loaded.scenario
    phase = scenario.phases[phase_index]
    chip = host.chip or stack.chip
    provision = [s for s in phase.steps if s.kind == "provision"]
    purge = any(s.clean for s in provision)
    stack_data = None
    if provision:
        chosen = provision[-1].stack
        pinned = plan.loaded.stacks.get(chosen, stack) if chosen else stack
        stack_data = pinned.model_dump(mode="json")
        stack_data["install"] = plan.installs[(pinned.name, host.name)]
    steps = []
    used: dict[str, str] = {}  # node path -> sha256 of the controller models this phase uses
    for step in phase.steps:
        if step.kind == "provision":
            continue
        data = step.model_dump(mode="json")
        if "hef" in data and isinstance(data["hef"], dict):
            data["hef"] = data["hef"].get(chip)
        if data.get("hef") in plan.models:  # a controller model: the node's checksummed copy
            model = plan.models[data["hef"]]
            data["hef"] = model.node_path
            used[model.node_path] = model.sha256
        steps.append(data)
    commands = {key: _argv(host.vars.get(var)) for key, var in COMMAND_VARS.items()}
    agent = AgentSpec(
        campaign=campaign,
        run_key=str(run_id),
        phase=phase.name,
        phase_index=phase_index,
        time_scale=host.time_scale,
        chip=chip,
        driver_module=host.vars.get("lab_driver_module") or driver_module_for(chip),
        hef_dirs=host.vars.get("lab_hef_dirs") or list(HEF_DIRS),
        node=host.name,
        inventory_chip=host.chip,  # the pre-flight checks it against the PCI device ID
        # kernel interfaces: /sys and /proc/meminfo on a Pi, the emulator's files on a virtual node
        sysfs_root=host.vars.get("lab_sysfs_root") or SYSFS_ROOT,
        meminfo=host.vars.get("lab_meminfo") or MEMINFO,
        stop_services=list(phase.stop_services),
        commands={k: v for k, v in commands.items() if v},
        # where the Pi's devicetree is (a real Pi's by default; a virtual node's stand-in)
        devicetree_dir=host.vars.get("lab_devicetree_dir") or PI_DEVICETREE_DIR,
        steps=steps,
    )
    return NodePhaseSpec(reboot=phase.reboot, reboot_timeout=scenario.reboot_timeout, purge=purge, stack=stack_data,
                         models=used, timeout=int(phase_seconds(phase, host.time_scale)),
                         poll=poll_seconds(phase, host.time_scale), agent=agent).to_json()


def run_verdict(session: Session, run_id: int, device_error: str | None) -> str:
    """A run's verdict: each phase's benchmark series is judged on its own (a reboot resets the chip);
    the run is degraded if any phase degraded, a device error wins, and no sample at all is an infra error."""
    rows = session.execute(select(Sample.phase_id, Sample.fps, Sample.temp, Sample.configure_count)
                           .where(Sample.run_id == run_id, Sample.step == "benchmark", Sample.fps.is_not(None))
                           .order_by(Sample.seq)).all()
    by_phase: dict[int | None, list[RunSample]] = {}
    for phase_id, fps, temp, configures in rows:
        series = by_phase.setdefault(phase_id, [])
        series.append(RunSample(len(series) + 1, fps, temp, configures))
    verdicts = [classify_run(series, device_error=device_error).verdict.value for series in by_phase.values()]
    if device_error:
        return "device_error"
    if not verdicts:
        return classify_run([]).verdict.value
    return "degraded" if "degraded" in verdicts else "stable"


def new_campaign_name(scenario: str) -> str:
    """A unique, sortable campaign name: scenario, UTC time, a short random suffix."""
    return f"{scenario}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


class CampaignRunner:
    """Runs a planned campaign, recording everything in the database as it happens."""

    def __init__(self, engine: Engine, plan: Plan, name: str, command_line: str = "",
                 on_record: Callable[[str, dict], None] | None = None, on_phase: Callable[[str, str], None] | None = None):
        self.engine = engine
        self.plan = plan
        self.name = name
        self.command_line = command_line
        self.on_record = on_record
        self.on_phase = on_phase or (lambda node, phase: None)
        self.campaign_id: int | None = None
        self.run_ids: dict[int, int] = {}  # RunSpec.index -> run id
        self.broken: dict[str, str] = {}  # node -> why it could not be prepared
        self.gone: set[str] = set()  # nodes that stopped answering during a phase (not waited on again)
        self.resuming = False
        self.done_phases: dict[int, set[int]] = {}  # run id -> indexes of finished phases (resume)

    # ---- set-up -------------------------------------------------------------------------
    def create(self) -> int:
        """Write the campaign, its stacks, runs and pending phases."""
        loaded = self.plan.loaded
        with Session(self.engine) as session, session.begin():
            settings = {"scenario_path": str(loaded.path), "limit": self.plan.limit,
                        "stacks": {n: st.model_dump(mode="json") for n, st in loaded.stacks.items()},
                        "models": {n: m.as_setting() for n, m in self.plan.models.items()}}
            campaign = Campaign(name=self.name, scenario_name=loaded.scenario.name, scenario_text=loaded.text,
                                inventory=str(self.plan.inventory.source), command_line=self.command_line,
                                settings=settings)
            session.add(campaign)
            session.flush()
            for spec in self.plan.runs:
                pin = loaded.stacks[spec.stack]
                stack = get_or_create_stack(session, pin.name, pin.hailort, pin.driver, pin.firmware, pin.chip)
                run = Run(campaign_id=campaign.id, index=spec.index, node=spec.node, stack_id=stack.id,
                          repeat=spec.repeat)
                session.add(run)
                session.flush()
                for i, phase in enumerate(loaded.scenario.phases):
                    session.add(Phase(run_id=run.id, index=i, name=phase.name))
                self.run_ids[spec.index] = run.id
            self.campaign_id = campaign.id
        return self.campaign_id

    def used_nodes(self) -> list[str]:
        return sorted({r.node for r in self.plan.runs})

    def prepare(self) -> None:
        """Deploy the agent and take every node's lock; refuse (exit 2) when another campaign holds one."""
        used = self.used_nodes()
        prepared = run_playbook("prepare.yml", self.plan.inventory.source,
                                extravars={"lab_campaign": self.name, "lab_agent_bundle": str(build_bundle()),
                                           "lab_controller_user": getpass.getuser(),
                                           "lab_models": {n: {"src": str(m.path), "dest": m.node_path, "sha256": m.sha256}
                                                          for n, m in self.plan.models.items()}},
                                limit=",".join(used), forks=len(used))
        self.broken = {n: explain("; ".join(prepared.hosts[n].messages) if n in prepared.hosts else "not reached")
                       for n in used if n not in prepared.hosts or n in prepared.failed_hosts}
        locked = {n: why for n, why in self.broken.items() if "in use by campaign" in why}
        if locked:
            run_playbook("release.yml", self.plan.inventory.source, extravars={"lab_campaign": self.name},
                         limit=",".join(used), forks=len(used))
            node, why = sorted(locked.items())[0]
            owner = why.split("in use by campaign", 1)[1].split()[0]
            raise ConfigError(f"{node} is in use by campaign {owner} (a per-node lock, /var/lib/lab-agent/lock)",
                              str(self.plan.inventory.source),
                              "wait for that campaign to finish; if it is gone, `lab resume` it or remove the lock")

    # ---- execution ----------------------------------------------------------------------
    def execute(self) -> int:
        """Run every round (stack x repeat) phase by phase; returns 0, or 1 if any run hit an infra error."""
        assert self.campaign_id is not None
        hosts = {h.name: h for h in self.plan.hosts}
        used = self.used_nodes()
        inventory = self.plan.inventory.source
        broken = self.broken
        collector = Collector(self.engine, self.name, self.campaign_id, [hosts[n] for n in used], self.on_record)
        try:
            if self.resuming:
                collector.poll([n for n in used if n not in broken])  # catch up on what nodes recorded meanwhile
            for runs in self._rounds():
                self._round(runs, hosts, collector, broken)
        finally:
            collector.close()
            run_playbook("release.yml", inventory, extravars={"lab_campaign": self.name},
                         limit=",".join(n for n in used if n not in broken and n not in self.gone) or "none",
                         forks=len(used))
        return self._finish()

    def _rounds(self) -> list[list[RunSpec]]:
        """Round k holds each node's k-th run, so nodes on different stacks (chips) run side by side."""
        queues: dict[str, list[RunSpec]] = {}
        for spec in self.plan.runs:
            queues.setdefault(spec.node, []).append(spec)
        depth = max(len(q) for q in queues.values())
        return [[q[k] for q in queues.values() if k < len(q)] for k in range(depth)]

    def _round(self, runs: list[RunSpec], hosts: dict[str, Host], collector: Collector, broken: dict[str, str]) -> None:
        """One stack x repeat on its nodes: every phase in order; a node that fails stops its own run only."""
        active = {}
        for spec in runs:
            run_id = self.run_ids[spec.index]
            if self.resuming and run_id not in self.done_phases:
                continue  # finished (or failed) before the controller stopped
            if spec.node in broken:
                self._fail_run(run_id, f"prepare failed: {broken[spec.node]}")
            else:
                active[spec.node] = spec
        self._mark_runs(active.values(), "running")
        for index, phase in enumerate(self.plan.loaded.scenario.phases):
            todo = {n: sp for n, sp in active.items() if index not in self.done_phases.get(self.run_ids[sp.index], ())}
            if not todo:
                continue
            specs = {}
            for node, spec in todo.items():
                stack = self.plan.loaded.stacks[spec.stack]
                run_id = self.run_ids[spec.index]
                specs[node] = host_phase_spec(self.name, self.plan, index, run_id, hosts[node], stack)
                if self.resuming and self._phase_begun(run_id, index):
                    specs[node]["reboot"] = False  # the interrupted attempt already rebooted; its agent resumes
                self.on_phase(node, phase.name)
            active_all, active = active, todo
            self._mark_phases(active.values(), index, "running")
            stop = threading.Event()
            poller = threading.Thread(target=self._poll_loop, args=(collector, list(active), stop), daemon=True)
            poller.start()
            try:
                result = run_playbook("phase.yml", self.plan.inventory.source,
                                      extravars={"lab_campaign": self.name, "lab_phase_specs": specs},
                                      limit=",".join(active), forks=len(active))
            finally:
                stop.set()
                poller.join()
            # a node that stopped answering is not waited on again (what it recorded so far is stored)
            collector.finish([n for n in active if not (n in result.hosts and result.hosts[n].unreachable)])
            for node, spec in list(active.items()):
                host = result.hosts.get(node)
                if host is None or host.unreachable or host.failed:
                    why = explain("; ".join(host.messages) if host else "the playbook never reached the node")
                    kind = "unreachable" if host is None or host.unreachable else "failed"
                    if kind == "unreachable":
                        self.gone.add(node)
                    failure = f"{kind}: {why}"
                else:
                    failure = self._unread(spec, host.facts.get("lab_agent_last_seq"))
                if failure is None:
                    status, error = self._end_phase(spec, index, None, None, host.facts.get("lab_phase_boot_id"))
                    # the agent could not measure on this node: pre-flight refused (device held, chip mismatch),
                    # no Python binding, a step broke
                    if status == "infra_error":
                        self._fail_run(self.run_ids[spec.index], f"{phase.name}: {error}")
                        del active_all[node]
                else:  # this node's run ends here; the others go on
                    self._end_phase(spec, index, "infra_error", f"{phase.name}: {failure}")
                    self._fail_run(self.run_ids[spec.index], f"{phase.name}: {failure}")
                    del active_all[node]
            active = active_all

    def _unread(self, spec: RunSpec, last_seq: Any) -> str | None:
        """Why the node's records did not all reach the database (the agent's last record is missing), or None."""
        if last_seq in (None, ""):
            return None
        run_id = self.run_ids[spec.index]
        with Session(self.engine) as session:
            if session.scalar(select(Sample.id).where(Sample.run_id == run_id, Sample.seq == int(last_seq))) is not None:
                return None
        return (f"the node recorded up to record {last_seq} but the controller could not read them; check that "
                f"the SSH user can read {AGENT_WORKDIR}/{self.name}/records.jsonl, then `lab resume {self.name}`")

    def catch_up(self, nodes: list[str]) -> None:
        """After a campaign ended with nodes gone: store what they recorded before they vanished, release them.

        A node that froze, lost power or hung in a reboot keeps its fsynced records; once it answers again
        they are read from the start (ingest is idempotent), their artifacts copied, and its lock released
        unless its agent is still running a phase. Runs keep their infra_error verdict.
        """
        hosts = [h for h in self.plan.hosts if h.name in nodes]
        if not hosts:
            return
        collector = Collector(self.engine, self.name, self.campaign_id, hosts, self.on_record)
        try:
            collector.finish([h.name for h in hosts])
        finally:
            collector.close()
        reached = [h.name for h in hosts if collector.cursors[h.name].reachable]
        if reached:
            run_playbook("release.yml", self.plan.inventory.source, extravars={"lab_campaign": self.name},
                         limit=",".join(reached), forks=len(reached))

    def _phase_begun(self, run_id: int, index: int) -> bool:
        """Whether the node's agent already started this phase (so its reboot is done)."""
        with Session(self.engine) as session:
            phase = session.scalar(select(Phase).where(Phase.run_id == run_id, Phase.index == index))
            return session.scalar(select(Sample.id).where(
                Sample.run_id == run_id, Sample.phase_id == phase.id,
                Sample.step.in_(("phase_start", "phase_resume"))).limit(1)) is not None

    def _poll_loop(self, collector: Collector, nodes: list[str], stop: threading.Event) -> None:
        while not stop.wait(POLL_SECONDS):
            collector.poll_many(nodes, timeout=10, stop=stop)  # side by side: a sweep does not grow with the fleet

    # ---- bookkeeping ----------------------------------------------------------------------
    def _mark_runs(self, specs, status: str) -> None:
        with Session(self.engine) as session, session.begin():
            for spec in specs:
                run = session.get(Run, self.run_ids[spec.index])
                run.status = status
                run.started_at = run.started_at or datetime.now(UTC)

    def _mark_phases(self, specs, index: int, status: str) -> None:
        with Session(self.engine) as session, session.begin():
            for spec in specs:
                phase = session.scalar(select(Phase).where(Phase.run_id == self.run_ids[spec.index], Phase.index == index))
                phase.status = status
                phase.started_at = datetime.now(UTC)

    def _end_phase(self, spec: RunSpec, index: int, status: str | None, error: str | None,
                   boot_id: str | None = None) -> tuple[str, str | None]:
        """Close a phase: its status from the agent's phase_end record (unless the node failed) and its boot.

        Returns the phase's status and error (`infra_error` from the agent: it could not measure on this node).
        """
        run_id = self.run_ids[spec.index]
        with Session(self.engine) as session, session.begin():
            phase = session.scalar(select(Phase).where(Phase.run_id == run_id, Phase.index == index))
            records = session.scalars(select(Sample).where(Sample.run_id == run_id, Sample.phase_id == phase.id,
                                                           Sample.step.in_(("phase_start", "phase_end")))).all()
            starts = [r for r in records if r.step == "phase_start"]
            ends = [r for r in records if r.step == "phase_end"]
            phase.boot_id = starts[-1].boot_id if starts else boot_id
            told = status is None and bool(ends)  # the agent's own phase_end already reached the progress
            if status is None:
                if ends:
                    status = (ends[-1].extra or {}).get("status", "ok")
                    error = ends[-1].error
                else:
                    status = "ok"  # a phase of reboot and provisioning only: Ansible reported success
            if status == "device_error":
                run = session.get(Run, run_id)
                run.error = run.error or error
            phase.status, phase.error = status, error
            phase.finished_at = datetime.now(UTC)
            name = phase.name
        if not told and self.on_record is not None:  # provisioning-only phases and failures end visibly too
            self.on_record(spec.node, {"kind": "phase_end", "phase": name, "status": status, "error": error})
        return status, error

    def _fail_run(self, run_id: int, error: str) -> None:
        with Session(self.engine) as session, session.begin():
            run = session.get(Run, run_id)
            run.status, run.verdict, run.error = "infra_error", "infra_error", error
            run.finished_at = datetime.now(UTC)
            for phase in run.phases:
                if phase.status in ("pending", "running"):
                    phase.status = "skipped" if phase.status == "pending" else "infra_error"

    def _finish(self) -> int:
        """Verdict per run from its benchmark series, campaign status and exit code."""
        infra = False
        with Session(self.engine) as session, session.begin():
            campaign = session.get(Campaign, self.campaign_id)
            for run in campaign.runs:
                if run.status == "infra_error":
                    infra = True
                    continue
                device_error = next((p.error or "device error" for p in run.phases if p.status == "device_error"), None)
                run.verdict = run_verdict(session, run.id, device_error)
                run.status = "done"
                run.finished_at = datetime.now(UTC)
            code = 1 if infra else 0
            campaign.status = "finished" if not infra else "infra_errors"
            campaign.finished_at = datetime.now(UTC)
            campaign.exit_status = code
        return code


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
HOST_KEY_SIGNS = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED", "host key")


def explain(why: str) -> str:
    """A node failure in words a person can act on (host key problems above all)."""
    if any(sign in why for sign in HOST_KEY_SIGNS):
        return ("host key changed or unknown: the node's SSH host key does not match known_hosts; "
                "verify the node, then update known_hosts")
    return why


def check_campaign_name(name: str) -> str:
    """A campaign name becomes a directory on every node: letters, digits, '.', '_' and '-' only."""
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"invalid campaign name {name!r}", "--name",
                          "use letters, digits, '.', '_' and '-' (it names a directory on every node)")
    return name


def run_campaign(engine: Engine, plan: Plan, name: str | None = None, command_line: str = "",
                 on_record=None, on_phase=None) -> tuple[str, int, int]:
    """Lock the nodes, create and execute a campaign; returns (name, campaign id, exit status).

    Nothing is written to the database before every node is locked for this campaign, so a refused
    or invalid campaign leaves no trace.
    """
    name = check_campaign_name(name or new_campaign_name(plan.loaded.scenario.name))
    with Session(engine) as session:
        if session.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
            raise ConfigError(f"a campaign named {name!r} already exists", "--name", "pick another name or omit --name")
    runner = CampaignRunner(engine, plan, name, command_line, on_record, on_phase)
    runner.prepare()
    campaign_id = runner.create()
    return name, campaign_id, runner.execute()


def plan_from_campaign(campaign: Campaign) -> Plan:
    """Rebuild a stored campaign's plan: its scenario text, its pinned stacks, its inventory, its runs."""
    from lab.scenario import parse_scenario

    settings = campaign.settings or {}
    # A campaign stored before stacks stopped naming sources still resumes: its `source` is ignored.
    stacks = {n: Stack.model_validate({k: v for k, v in d.items() if k != "source"})
              for n, d in (settings.get("stacks") or {}).items()}
    scenario = parse_scenario(campaign.scenario_text, settings.get("scenario_path") or campaign.scenario_name)
    path = Path(settings.get("scenario_path") or ".")
    loaded = LoadedScenario(path, campaign.scenario_text, scenario, stacks, path.parent)
    inv = inventory_mod.load(campaign.inventory or "")
    hosts = inv.select(settings.get("limit"))
    runs = [RunSpec(r.index, r.node, r.stack.name, r.repeat, inv.hosts[r.node].chip if r.node in inv.hosts else None)
            for r in campaign.runs]
    missing = sorted({r.node for r in runs} - set(inv.hosts))
    if missing:
        raise ConfigError(f"the inventory no longer has node {missing[0]}", campaign.inventory,
                          "restore the inventory the campaign ran with")
    models = {n: ModelFile(n, Path(m["path"]), m["sha256"], m["md5"], m["size"])
              for n, m in (settings.get("models") or {}).items()}
    return Plan(loaded, inv, hosts, runs, settings.get("limit"), plan_installs(loaded, runs, inv), models)


def resume_campaign(engine: Engine, ref: str, on_record=None, on_phase=None) -> tuple[str, int, int]:
    """Finish a campaign whose controller stopped: finished phases are kept, begun ones resume on the nodes.

    A campaign that ended with infrastructure errors is not run again: what its vanished nodes recorded
    is collected once they answer, and they are released (`CampaignRunner.catch_up`).
    """
    from lab.report.summary import find_campaign

    with Session(engine) as session:
        campaign = find_campaign(session, ref)
        name, campaign_id, status = campaign.name, campaign.id, campaign.status
        if status not in ("running", "infra_errors"):
            return name, campaign_id, int(campaign.exit_status or 0)
        plan = plan_from_campaign(campaign)
        runner = CampaignRunner(engine, plan, name, campaign.command_line or "", on_record, on_phase)
        runner.campaign_id, runner.resuming = campaign_id, True
        stranded = sorted({r.node for r in campaign.runs if r.status == "infra_error"})
        code = int(campaign.exit_status or 1)
        for run in campaign.runs:
            runner.run_ids[run.index] = run.id
            if run.status in ("pending", "running"):
                runner.done_phases[run.id] = {p.index for p in run.phases if p.status not in ("pending", "running")}
    if status == "infra_errors":
        runner.catch_up(stranded)
        return name, campaign_id, code
    runner.prepare()
    return name, campaign_id, runner.execute()
