"""Planning a campaign, with no node and no database touched: the runs, their rounds, phase timing, each node's phase spec."""

from __future__ import annotations

import re
import shlex
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab import inventory as inventory_mod
from lab.contract import HEF_DIRS, MEMINFO, PI_DEVICETREE_DIR, SYSFS_ROOT, AgentSpec, NodePhaseSpec, driver_module_for
from lab.errors import ConfigError
from lab.inputs import load_scenario_file
from lab.inventory import Host, Inventory
from lab.models import ModelFile, resolve_models
from lab.power.config import parse_power
from lab.scenario import LoadedScenario, RunSpec, expand_matrix, parse_scenario
from lab.sources import installs_for
from lab.stack import Stack
from lab.steps import ProvisionStep

# Inventory variables that name node commands (strings are split like a shell would, never run by one).
COMMAND_VARS = {"kernel_log": "lab_kernel_log_cmd", "pcie_remove": "lab_pcie_remove_cmd",
                "pcie_rescan": "lab_pcie_rescan_cmd", "driver_version": "lab_driver_version_cmd",
                "throttled": "lab_throttled_cmd", "firmware_version": "lab_firmware_version_cmd",
                "bootloader_version": "lab_bootloader_version_cmd", "vcgencmd": "lab_vcgencmd"}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


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

    @property
    def nodes(self) -> list[str]:
        """The nodes some run uses, sorted."""
        return sorted({r.node for r in self.runs})

    @property
    def phase_names(self) -> list[str]:
        return [p.name for p in self.loaded.scenario.phases]

    def settings(self) -> dict[str, Any]:
        """What a stored campaign keeps to be planned again on resume (scenario path, limit, stacks, models)."""
        return {"scenario_path": str(self.loaded.path), "limit": self.limit,
                "stacks": {n: st.model_dump(mode="json") for n, st in self.loaded.stacks.items()},
                "models": {n: m.as_setting() for n, m in self.models.items()}}


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
    for host in inv.hosts.values():  # a bad lab_power stops here (one line, exit 2), before any node is touched
        parse_power(host, str(inv.source))
    hosts = inv.select(limit)
    chips = {h.name: h.chip for h in hosts if h.chip}
    runs = expand_matrix(loaded.scenario, [h.name for h in hosts], inv.groups, chips, loaded.stacks)
    models = resolve_models(loaded)  # a model missing on the controller stops here, before any node
    check_power_drivers(loaded, hosts, inv)
    return Plan(loaded, inv, hosts, runs, limit, plan_installs(loaded, runs, inv), models)


def check_power_drivers(loaded: LoadedScenario, hosts: list[Host], inv: Inventory) -> None:
    """A scenario that cuts power needs a power driver (`lab_power`) on every node it runs on."""
    if not loaded.scenario.cuts_power():
        return
    phase = next(p.name for p in loaded.scenario.phases if p.power_cycle)
    for host in hosts:
        if not host.vars.get("lab_power"):
            raise ConfigError(f"host {host.name} has no lab_power, and phase '{phase}' of {loaded.path.name} cuts its "
                              f"power", str(inv.source), "give the host a power driver (README: Wiring a rack's power)")


@dataclass(frozen=True)
class StoredRun:
    """A run as the database keeps it: enough to plan it again."""

    index: int
    node: str
    stack: str
    repeat: int


def replan(scenario_name: str, scenario_text: str, inventory: str, settings: dict[str, Any],
           runs: list[StoredRun]) -> Plan:
    """A stored campaign's plan again: its scenario text, its pinned stacks, its inventory, its runs."""
    # A campaign stored before stacks stopped naming sources still resumes: its `source` is ignored.
    stacks = {n: Stack.model_validate({k: v for k, v in d.items() if k != "source"})
              for n, d in (settings.get("stacks") or {}).items()}
    scenario = parse_scenario(scenario_text, settings.get("scenario_path") or scenario_name)
    path = Path(settings.get("scenario_path") or ".")
    loaded = LoadedScenario(path, scenario_text, scenario, stacks, path.parent)
    inv = inventory_mod.load(inventory or "")
    hosts = inv.select(settings.get("limit"))
    specs = [RunSpec(r.index, r.node, r.stack, r.repeat, inv.hosts[r.node].chip if r.node in inv.hosts else None)
             for r in runs]
    missing = sorted({r.node for r in specs} - set(inv.hosts))
    if missing:
        raise ConfigError(f"the inventory no longer has node {missing[0]}", inventory,
                          "restore the inventory the campaign ran with")
    models = {n: ModelFile(n, Path(m["path"]), m["sha256"], m["md5"], m["size"])
              for n, m in (settings.get("models") or {}).items()}
    return Plan(loaded, inv, hosts, specs, settings.get("limit"), plan_installs(loaded, specs, inv), models)


def rounds(runs: list[RunSpec]) -> list[list[RunSpec]]:
    """Round k holds each node's k-th run, so nodes on different stacks (chips) run side by side."""
    queues: dict[str, list[RunSpec]] = {}
    for spec in runs:
        queues.setdefault(spec.node, []).append(spec)
    depth = max((len(q) for q in queues.values()), default=0)
    return [[q[k] for q in queues.values() if k < len(q)] for k in range(depth)]


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


def _argv(value: Any) -> list[str] | None:
    if not value:
        return None
    return [str(v) for v in value] if isinstance(value, list) else shlex.split(str(value))


def host_phase_spec(campaign: str, plan: Plan, phase_index: int, run_id: int, host: Host, stack: Stack,
                    reboot: bool = True, boot_cause: str | None = None) -> dict:
    """Everything one node needs for one phase, as data: reboot, provisioning, and the agent's steps.

    The contract's NodePhaseSpec as JSON (phase.yml reads it as lab_phase_specs[host]). `boot_cause` tells the
    agent what the controller did to the node before (default: the phase's own reboot or power cycle). `reboot=False`: an interrupted attempt already rebooted for this phase; its agent resumes."""
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
        boot_cause=boot_cause or ("reboot" if phase.reboot and reboot else
                                  "power_cycle" if phase.power_cycle and reboot else None),
        steps=steps,
    )
    return NodePhaseSpec(reboot=phase.reboot and reboot, reboot_timeout=scenario.reboot_timeout, purge=purge,
                         stack=stack_data, models=used, timeout=int(phase_seconds(phase, host.time_scale)),
                         poll=poll_seconds(phase, host.time_scale), agent=agent).to_json()


def new_campaign_name(scenario: str) -> str:
    """A unique, sortable campaign name: scenario, UTC time, a short random suffix."""
    return f"{scenario}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


def check_campaign_name(name: str) -> str:
    """A campaign name becomes a directory on every node: letters, digits, '.', '_' and '-' only."""
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"invalid campaign name {name!r}", "--name",
                          "use letters, digits, '.', '_' and '-' (it names a directory on every node)")
    return name
