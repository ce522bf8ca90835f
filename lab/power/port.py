"""The engine's Power port over each node's `lab_power` driver (lab/power/base.py): cycle many nodes at once."""

from __future__ import annotations

from lab.engine.state import NodeResult
from lab.inventory import Host
from lab.power.base import PowerDriver, driver_for, power_nodes


class InventoryPower:
    """Power for the engine: the drivers the plan's hosts name (hosts without `lab_power` have none)."""

    def __init__(self, hosts: list[Host]):
        self.hosts = {h.name: h for h in hosts}
        self.drivers: dict[str, PowerDriver | None] = {h.name: driver_for(h) for h in hosts}

    def has_driver(self, node: str) -> bool:
        return self.drivers.get(node) is not None

    def cycle(self, nodes: list[str]) -> dict[str, NodeResult]:
        results = power_nodes([self.hosts[n] for n in nodes], "cycle")
        return {r.node: NodeResult(r.node, "ok" if r.ok else "failed", r.detail) for r in results}
