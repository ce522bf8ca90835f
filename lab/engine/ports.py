"""The engine's ports: reach the nodes and run a phase, read the agents' files, store campaign results.

Each is a small Protocol with one real adapter (lab/executor.py over ansible-runner, lab/node_files.py
over lab/ssh.py, lab/db/store.py over SQLAlchemy, lab/power/port.py over the inventory's power drivers) and
an in-memory one for unit tests (lab/engine/memory.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from lab.analysis import RunSample
from lab.contract import Record
from lab.engine.plan import Plan, StoredRun
from lab.engine.state import Effect, NodeResult
from lab.inventory import Host


class Executor(Protocol):
    """Reaches the nodes: prepares them for a campaign, runs one phase on many at once, releases them."""

    def prepare(self, plan: Plan, campaign: str, nodes: list[str]) -> dict[str, NodeResult]:
        """Deploy the agent and take each node's lock; a node held by another campaign reports its
        holder in facts['lab_lock_holder'] and the controller that took the lock in facts['lab_lock_controller']."""

    def run_phase(self, plan: Plan, campaign: str, specs: Mapping[str, dict]) -> dict[str, NodeResult]:
        """Run one phase on the nodes of `specs` (node -> its phase spec) side by side."""

    def release(self, plan: Plan, campaign: str, nodes: list[str]) -> None:
        """Give the nodes back (lock, holds kept for the campaign)."""


class AgentFiles(Protocol):
    """Reads what a node's agent wrote for a campaign: its record file and its artifacts."""

    def read_records(self, host: Host, offset: int, timeout: float) -> bytes | None:
        """The record file from byte `offset` on (b"" before the agent wrote any), None if the node did not answer."""

    def fetch(self, host: Host, names: list[str], timeout: float) -> dict[str, bytes] | None:
        """The named artifacts that exist on the node, None if it did not answer."""

    def boot(self, host: Host, timeout: float) -> tuple[str, float] | None:
        """The node's boot_id and uptime (seconds), None if it did not answer. (A container's uptime is its
        host's: only the boot_id tells a new boot on a virtual node.)"""

    def close(self) -> None:
        """Drop every connection kept open."""


class Power(Protocol):
    """Cuts and restores nodes' power through each node's own driver (a PDU, a smart plug, a command)."""

    def has_driver(self, node: str) -> bool:
        """Whether the node has a power driver (the inventory's `lab_power`)."""

    def cycle(self, nodes: list[str]) -> dict[str, NodeResult]:
        """Ask each node's driver for a power cycle, side by side: ok (asked) or failed (the driver refused),
        with a one-line detail that never holds a secret."""


@dataclass
class StoredCampaign:
    """A campaign as the store keeps it: what resume needs to plan it again and load its state."""

    id: int
    name: str
    status: str
    exit_status: int | None
    scenario_name: str
    scenario_text: str
    inventory: str
    command_line: str
    settings: dict[str, Any]
    runs: list[StoredRun]
    run_ids: dict[int, int]  # run index -> run id
    # per run id: (status, error, [(phase status, phase error, begun, boot_id, agent_end)], last record read)
    progress: dict[int, tuple[str, str | None, list[tuple[str, str | None, bool, str | None, tuple | None]], int]] = (
        field(default_factory=dict))
    recoveries: dict[int, int] = field(default_factory=dict)  # run id -> power cycles used to bring its node back


class Store(Protocol):
    """Keeps a campaign's results: the campaign and its runs, every record, artifact and transition."""

    def claim(self, name: str) -> AbstractContextManager[None]:
        """Hold the campaign name for this controller while the block runs (several controllers share one
        store); entering raises ConfigError naming the controller that holds it already."""

    def campaign_exists(self, name: str) -> bool: ...

    def create(self, plan: Plan, name: str, command_line: str) -> tuple[int, dict[int, int]]:
        """Write the campaign, its stacks, runs and pending phases; returns (campaign id, run index -> run id)."""

    def apply(self, effects: Sequence[Effect]) -> None:
        """Record the state machine's transitions."""

    def ingest(self, campaign: str, campaign_id: int, host: Host, records: list[Record]) -> int:
        """Store records (idempotent by run and record number) and what they tell about the unit; returns
        how many were new."""

    def stored_artifacts(self, campaign_id: int, node: str) -> set[str]: ...

    def store_artifact(self, campaign_id: int, node: str, name: str, run_id: int, data: bytes, intact: bool) -> None:
        """Keep one artifact (and the notable lines of a log); `intact` is False when its sha256 did not match."""

    def benchmark_series(self, run_ids: Iterable[int]) -> dict[int, list[list[RunSample]]]:
        """Each run's benchmark samples, one series per phase, in record order."""

    def load(self, ref: str) -> StoredCampaign:
        """A stored campaign by name or id (ConfigError if there is none)."""
