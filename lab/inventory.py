"""Inventories: loaded with Ansible's own InventoryManager; hosts, groups and the variables lab uses."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import InventoryError

CHIPS = ("hailo10h", "hailo8", "hailo8l")


@dataclass
class Host:
    """One node of an inventory, with what lab needs to reach it and run the agent there."""

    name: str
    address: str
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def chip(self) -> str | None:
        return self.vars.get("lab_chip")

    @property
    def time_scale(self) -> float:
        return float(self.vars.get("lab_time_scale", 1.0))


@dataclass
class Inventory:
    """A loaded inventory: its source, hosts in order, and group membership."""

    source: Path
    hosts: dict[str, Host]
    groups: dict[str, list[str]]

    def select(self, limit: str | None = None) -> list[Host]:
        """Hosts matching an Ansible-style limit (comma-separated names or groups), or all."""
        if not limit:
            return list(self.hosts.values())
        wanted: list[str] = []
        for part in (p.strip() for p in limit.split(",") if p.strip()):
            if part in self.hosts:
                wanted.append(part)
            elif part in self.groups:
                wanted.extend(self.groups[part])
            else:
                raise InventoryError(f"--limit names {part!r}, which is neither a host nor a group",
                                     str(self.source), f"hosts: {', '.join(self.hosts)}")
        return [self.hosts[n] for n in dict.fromkeys(wanted)]


def resolve(name_or_path: str) -> Path:
    """`pis` -> ./inventory/pis.yml (or .yaml, .ini); a path is taken as it is."""
    path = Path(name_or_path)
    if path.exists():
        return path
    if "/" not in name_or_path:
        for suffix in (".yml", ".yaml", ".ini"):
            candidate = Path("inventory") / f"{name_or_path}{suffix}"
            if candidate.exists():
                return candidate
    raise InventoryError(f"no inventory {name_or_path!r}", name_or_path,
                         "give a path, or a name in inventory/ (pis -> inventory/pis.yml); "
                         "`lab fleet up` writes inventory/virtual.yml")


def load(name_or_path: str) -> Inventory:
    """Load an inventory with ansible's InventoryManager; errors name the file and the fix."""
    from ansible import constants as C
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    path = resolve(name_or_path)
    loader = DataLoader()
    # An inventory Ansible cannot parse is an error here, not a warning followed by "no hosts".
    C.INVENTORY_UNPARSED_IS_FAILED = True
    C.INVENTORY_ANY_UNPARSED_IS_FAILED = True
    noise = io.StringIO()
    try:
        with contextlib.redirect_stderr(noise):  # Ansible warns once per plugin; the error says it once
            manager = InventoryManager(loader=loader, sources=[str(path)])
    except AnsibleError as exc:
        first = " ".join(str(exc).split())[:300]
        raise InventoryError(f"cannot read inventory: {first}", str(path),
                             "use YAML (all/children/hosts) or INI; see inventory/pis.example.yml") from None
    variables = VariableManager(loader=loader, inventory=manager)
    hosts: dict[str, Host] = {}
    for host in manager.get_hosts():
        hv = variables.get_vars(host=host, include_hostvars=False)
        keep = {k: v for k, v in hv.items() if not k.startswith("ansible_become_pass") and k != "ansible_password"}
        hosts[host.name] = Host(host.name, str(hv.get("ansible_host", host.name)), keep)
    if not hosts:
        raise InventoryError("the inventory has no hosts", str(path), "add hosts, e.g. under all: hosts:")
    for name, host in hosts.items():
        chip = host.chip
        if chip is not None and chip not in CHIPS:
            raise InventoryError(f"host {name} has lab_chip {chip!r}", str(path), f"use one of {', '.join(CHIPS)}")
    groups = {g.name: [h.name for h in g.get_hosts()] for g in manager.groups.values() if g.name not in ("all", "ungrouped")}
    return Inventory(path, hosts, groups)
