"""Power control's API: the driver protocol, a node's driver from its `lab_power`, and power actions on many nodes.

labgrid's split: `lab/power/config.py` holds what the inventory says (validated models), the drivers act
(`pdudaemon.py`, `command.py`, `shelly.py`). The engine's Power port and `lab power` stand on `driver_for`
and `power_nodes` only.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from typing import Protocol

from lab.errors import ConfigError, PowerError
from lab.inventory import POWER_VAR, Host, Inventory
from lab.power.command import CommandDriver
from lab.power.config import CommandPower, PdudaemonPower, ShellyPower, parse_power
from lab.power.pdudaemon import PdudaemonDriver
from lab.power.shelly import ShellyDriver

__all__ = ["ACTIONS", "PowerDriver", "PowerError", "PowerResult", "check_power", "driver_for", "power_nodes",
           "powered_hosts"]

ACTIONS = ("on", "off", "cycle", "status")
_STATE_AFTER = {"on": "on", "off": "off", "cycle": "on"}


@dataclass(frozen=True)
class PowerResult:
    """What one power action did to one node: its state afterwards ("on", "off", "unknown") and one line of detail.

    `detail` names the driver and what it answered; it never holds a credential."""

    node: str
    action: str
    ok: bool
    state: str | None
    detail: str


class PowerDriver(Protocol):
    """Switches one node's power. Each call blocks until the driver answered; a failure is a one-line PowerError.

    `on`, `off` and `cycle` return one line saying what was done; `status` returns "on", "off" or "unknown".
    `label` names the driver and outlet (`pdudaemon 127.0.0.1:16421 rack port 2`), `unknown_status` says why
    the driver cannot tell the state."""

    label: str
    unknown_status: str

    def on(self) -> str: ...

    def off(self) -> str: ...

    def cycle(self) -> str: ...

    def status(self) -> str: ...


def driver_for(host: Host, source: str | None = None) -> PowerDriver | None:
    """The power driver a host's `lab_power` names, or None without one; ConfigError (file, host) if it is bad.

    The file named is `source`, else the inventory Ansible read the host from (its `inventory_file`)."""
    config = parse_power(host, source or str(host.vars.get("inventory_file") or "the inventory"))
    if config is None:
        return None
    if isinstance(config, PdudaemonPower):
        return PdudaemonDriver(config)
    if isinstance(config, CommandPower):
        return CommandDriver(config)
    if isinstance(config, ShellyPower):
        return ShellyDriver(config)
    raise AssertionError(f"no driver for {type(config).__name__}")  # parse_power returns one of the three


def check_power(inventory: Inventory) -> None:
    """Validate every host's `lab_power`; the first bad one is a one-line ConfigError naming the file and host."""
    for host in inventory.hosts.values():
        parse_power(host, str(inventory.source))


def powered_hosts(inventory: Inventory, names: list[str]) -> list[Host]:
    """The hosts (or groups' hosts) named, in order, each with a valid `lab_power`; ConfigError otherwise."""
    hosts: list[Host] = []
    for name in names:
        if name in inventory.hosts:
            hosts.append(inventory.hosts[name])
        elif name in inventory.groups:
            hosts.extend(inventory.hosts[h] for h in inventory.groups[name])
        else:
            raise ConfigError(f"no node {name!r} in the inventory", str(inventory.source),
                              f"nodes: {', '.join(inventory.hosts)}")
    hosts = list({h.name: h for h in hosts}.values())
    for host in hosts:
        if parse_power(host, str(inventory.source)) is None:
            raise ConfigError(f"node {host.name} has no {POWER_VAR}", str(inventory.source),
                              f"add {POWER_VAR} (driver: pdudaemon, shelly or command) to its host or group vars; "
                              "see README, Wiring a rack's power")
    return hosts


def power_nodes(hosts: list[Host], action: str, timeout: float | None = None,
                source: str | None = None) -> list[PowerResult]:
    """Run `action` on every host's power driver in parallel: one result per host, in the order given.

    A driver that fails or does not answer within `timeout` seconds fails its own node only. A host without
    lab_power gets a failed result; a bad lab_power is a ConfigError before any node is touched."""
    if action not in ACTIONS:
        raise ConfigError(f"no power action {action!r}", None, f"use one of {', '.join(ACTIONS)}")
    drivers = {h.name: driver_for(h, source) for h in hosts}
    if not hosts:
        return []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(hosts), thread_name_prefix="power")
    try:
        futures = {h.name: pool.submit(_act, h.name, drivers[h.name], action) for h in hosts}
        concurrent.futures.wait(futures.values(), timeout=timeout)
        results = []
        for host in hosts:
            future = futures[host.name]
            if future.done():
                results.append(future.result())
            else:
                label = drivers[host.name].label if drivers[host.name] else "power"
                results.append(PowerResult(host.name, action, False, None,
                                           f"{label}: no answer within {timeout:g} s"))
        return results
    finally:
        # a driver still waiting has its own timeout; do not hold the other nodes' results for it
        pool.shutdown(wait=False, cancel_futures=True)


def _act(node: str, driver: PowerDriver | None, action: str) -> PowerResult:
    """One node's action as a result; a PowerError is that node's failure, not the others'."""
    if driver is None:
        return PowerResult(node, action, False, None, f"no {POWER_VAR} for this node")
    try:
        if action == "status":
            state = driver.status()
            what = state if state != "unknown" else driver.unknown_status
            return PowerResult(node, action, True, state, f"{driver.label}: {what}")
        done = getattr(driver, action)()
        return PowerResult(node, action, True, _STATE_AFTER[action], f"{driver.label}: {done}")
    except PowerError as exc:
        return PowerResult(node, action, False, None, str(exc))
