"""The controller-agent contract: the phase spec the controller hands a node and the records the agent writes back.

Both sides import this module: the controller (lab.engine.plan builds a NodePhaseSpec) and the node agent
(the zipapp carries this file; the agent reads an AgentSpec and writes Records). It is therefore stdlib
only and runs on Python >= 3.9 (a Raspberry Pi OS or Debian bullseye python3), like lab/agent/.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

# ---- where things are on a node (a Raspberry Pi 5's; a virtual node's inventory points elsewhere) ----
AGENT_WORKDIR = "/var/lib/lab-agent"  # per campaign: phase specs, records.jsonl, artifacts/
SYSFS_ROOT = "/sys"
MEMINFO = "/proc/meminfo"
DEV_NODE = "/dev/hailo0"
HEF_DIRS: Tuple[str, ...] = ("/usr/share/hailo-models",)  # where the hailo-models package puts its HEFs
PI_DEVICETREE_DIR = "/sys/firmware/devicetree/base"
READY_TIMEOUT = 300.0  # seconds a node may take after boot to be ready to measure (real time, not scaled)
DEFAULT_DRIVER_MODULE = "hailo1x_pci"
# The PCIe driver module of each chip (Hailo-10H: hailo1x_pci; Hailo-8 and 8L share hailo_pci).
CHIP_MODULE: Dict[str, str] = {"hailo10h": "hailo1x_pci", "hailo8": "hailo_pci", "hailo8l": "hailo_pci"}

# ---- record kinds (the `kind` of every line of records.jsonl) ----
PHASE_START = "phase_start"
PHASE_RESUME = "phase_resume"
PHASE_END = "phase_end"
SYSTEM = "system"
PREFLIGHT = "preflight"
IDENTITY = "identity"
SAMPLE = "sample"
EVENT = "event"
ARTIFACT = "artifact"
RECORD_KINDS = (PHASE_START, PHASE_RESUME, PHASE_END, SYSTEM, PREFLIGHT, IDENTITY, SAMPLE, EVENT, ARTIFACT)
# Record fields that name an artifact file (a benchmark sample names its output and its runtime log).
ARTIFACT_FIELDS = ("artifact", "runtime_log")


class ContractError(ValueError):
    """A phase spec or record that does not fit the contract (an unknown, missing or malformed field)."""


def driver_module_for(chip: Optional[str]) -> str:
    """The driver module of a chip (the Hailo-10H's for a chip nobody named)."""
    return CHIP_MODULE.get(chip or "", DEFAULT_DRIVER_MODULE)


def _check_keys(cls: type, data: Any, what: str) -> None:
    """Raise ContractError for a non-object, an unknown key or a missing required key, naming them all."""
    if not isinstance(data, dict):
        raise ContractError("%s: expected a JSON object, got %s" % (what, type(data).__name__))
    known = [f.name for f in fields(cls)]
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ContractError("%s: unknown field(s) %s; known fields: %s"
                            % (what, ", ".join(unknown), ", ".join(sorted(known))))
    missing = [f.name for f in fields(cls) if _required(f) and f.name not in data]
    if missing:
        raise ContractError("%s: missing field(s) %s" % (what, ", ".join(missing)))


def _required(f: Any) -> bool:
    """Whether a dataclass field has no default."""
    return f.default is MISSING and f.default_factory is MISSING


@dataclass
class AgentSpec:
    """What the node agent gets for one phase (phase-RUN-INDEX.json): who it is, where things are, the steps.

    `steps` are the scenario's step models as plain data (lab.steps, dumped by the controller); the agent
    dispatches on each step's `kind`.
    """

    phase: str
    campaign: Optional[str] = None
    run_key: Optional[str] = None
    phase_index: Optional[int] = None
    time_scale: float = 1.0  # the fleet's time compression: nominal seconds * time_scale = wall seconds
    chip: Optional[str] = None  # the chip this phase is for (the inventory's, else the stack's)
    driver_module: str = DEFAULT_DRIVER_MODULE
    hef_dirs: List[str] = field(default_factory=lambda: list(HEF_DIRS))
    node: Optional[str] = None  # the inventory's name for this node (default: its hostname)
    inventory_chip: Optional[str] = None  # the inventory's lab_chip; None: the stack's chip is checked
    sysfs_root: str = SYSFS_ROOT
    meminfo: str = MEMINFO
    dev_node: str = DEV_NODE
    ready_timeout: float = READY_TIMEOUT
    stop_services: List[str] = field(default_factory=list)
    commands: Dict[str, List[str]] = field(default_factory=dict)  # inventory commands as argument lists
    devicetree_dir: str = PI_DEVICETREE_DIR
    # what the controller did to the node just before this phase: "reboot" (warm), "power_cycle" (cold),
    # "recovery" (a power cycle to bring back a node that stopped answering), None (nothing)
    boot_cause: Optional[str] = None
    steps: List[Dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        """The spec as JSON-ready data (every field, defaults included)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "AgentSpec":
        """The spec from JSON data: unknown keys are a ContractError; absent, null or empty values take the default.

        A spec without `inventory_chip` says the chip it names is the inventory's (hand-written specs);
        the controller always sends the key, None when the inventory names no chip.
        """
        _check_keys(cls, data, "phase spec")
        values: Dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if not value and not _required(f) and _default(f) is not None:
                continue  # e.g. "hef_dirs": [] or "sysfs_root": null: the node's usual place
            values[f.name] = value
        if "inventory_chip" not in data:
            values["inventory_chip"] = values.get("chip")
        spec = cls(**values)
        try:
            spec.time_scale = float(spec.time_scale)
            spec.ready_timeout = float(spec.ready_timeout)
        except (TypeError, ValueError) as exc:
            raise ContractError("phase spec: time_scale and ready_timeout must be numbers (%s)" % exc) from None
        if not isinstance(spec.steps, list) or not all(isinstance(s, dict) and "kind" in s for s in spec.steps):
            raise ContractError("phase spec: steps must be a list of objects, each with a `kind`")
        return spec


def _default(f: Any) -> Any:
    """A field's default value (a fresh one for a default_factory)."""
    return f.default_factory() if f.default is MISSING else f.default


@dataclass
class NodePhaseSpec:
    """One node's part of one phase, as phase.yml reads it (lab_phase_specs[host]): reboot, provision, the agent."""

    reboot: bool
    reboot_timeout: int
    purge: bool  # remove every Hailo package before installing (a provision step's `clean`)
    stack: Optional[Dict[str, Any]]  # the stack to pin and install (with its `install` source), or None
    models: Dict[str, str]  # node path -> sha256 of the controller's model files this phase uses
    timeout: int  # the async bound on the agent's run, seconds
    poll: int  # seconds between async_status asks
    agent: AgentSpec

    def to_json(self) -> Dict[str, Any]:
        """The playbook's extravar for this node (JSON-ready)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "agent"}
        data["agent"] = self.agent.to_json()
        return data

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "NodePhaseSpec":
        """The node phase from JSON data (unknown or missing keys are a ContractError)."""
        _check_keys(cls, data, "node phase spec")
        values = dict(data)
        values["agent"] = AgentSpec.from_json(data["agent"])
        return cls(**values)


@dataclass(frozen=True)
class ArtifactRef:
    """A file the agent kept under its campaign's artifacts/ directory, as a record names it."""

    name: str
    sha256: str
    size: int

    def to_json(self) -> Dict[str, Any]:
        """How a record names the artifact: {"artifact": name, "sha256": ..., "size": ...}."""
        return {"artifact": self.name, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ArtifactRef":
        """The reference from a record's artifact object."""
        if not isinstance(data, dict) or not data.get("artifact"):
            raise ContractError("artifact reference: expected an object with `artifact`, got %r" % (data,))
        return cls(str(data["artifact"]), str(data.get("sha256")), int(data.get("size") or 0))


RUN_HEADER = ("run_key", "phase", "phase_index")  # which run and phase a record belongs to
HEADER = ("seq", "ts", "kind") + RUN_HEADER


@dataclass
class Record:
    """One line of the agent's records.jsonl: the header every record has, and the kind's own fields.

    On the wire a record is one flat JSON object; fields whose value is None are left out.
    """

    seq: int
    ts: float
    kind: str
    run_key: Optional[str] = None
    phase: Optional[str] = None
    phase_index: Optional[int] = None
    body: Dict[str, Any] = field(default_factory=dict)  # the kind's own fields

    def __post_init__(self) -> None:
        clash = sorted(k for k in self.body if k in HEADER)
        if clash:
            raise ContractError("record body fields %s are header fields" % ", ".join(clash))

    def to_json(self) -> Dict[str, Any]:
        """The record as one flat JSON object, None values left out."""
        data: Dict[str, Any] = {"seq": self.seq, "ts": self.ts, "kind": self.kind, "run_key": self.run_key,
                                "phase": self.phase, "phase_index": self.phase_index}
        data.update(self.body)
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Record":
        """A record from its flat JSON object; seq, ts and kind are required, every other key is the kind's."""
        if not isinstance(data, dict):
            raise ContractError("record: expected a JSON object, got %s" % type(data).__name__)
        missing = [k for k in ("seq", "ts", "kind") if k not in data]
        if missing:
            raise ContractError("record: missing field(s) %s" % ", ".join(missing))
        rest = {k: v for k, v in data.items() if k not in HEADER}
        return cls(int(data["seq"]), float(data["ts"]), str(data["kind"]), data.get("run_key"), data.get("phase"),
                   data.get("phase_index"), rest)

    def artifacts(self) -> List[ArtifactRef]:
        """The artifact files this record names (its `artifact` and, for a Hailo-10H sample, `runtime_log`)."""
        return [ArtifactRef.from_json(self.body[k]) for k in ARTIFACT_FIELDS
                if isinstance(self.body.get(k), dict) and self.body[k].get("artifact")]
