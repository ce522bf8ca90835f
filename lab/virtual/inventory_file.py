"""The Ansible inventory of a virtual fleet (inventory/virtual.yml)."""

from __future__ import annotations

from pathlib import Path

import yaml

from lab.virtual.emulator.nodevars import virtual_node_vars
from lab.virtual.node import LOGIN_USER, write_atomic

HEADER = "# Written by `lab fleet up`; removed by `lab fleet down`. Do not edit.\n"


def host_vars(address: str, unit: dict, time_scale: float) -> dict:
    """One node's variables: its address, its unit's chip, and the emulator's stand-ins for kernel interfaces."""
    chip = unit.get("chip", "hailo10h")
    hv = {"ansible_host": address, "lab_chip": chip}
    extra = virtual_node_vars(chip, time_scale)
    extra.pop("lab_time_scale", None)  # a group variable
    return {**hv, **extra}


def render(fleet_root: Path, key_file: Path, known_hosts: Path, meta: dict, addresses: dict[str, str],
           units: dict[str, dict] | None = None, power: dict[str, dict] | None = None) -> dict:
    """The inventory as data: group `virtual`, one host per node, connection and lab variables.

    `power`: per node, its `lab_power` (the outlet of the fleet's pdudaemon that powers it).
    """
    group_vars = {
        # As on a Pi: the login user `pi` with sudo (lab.virtual.node.add_login_user), never root.
        "ansible_user": LOGIN_USER,
        "ansible_become": True,
        "ansible_ssh_private_key_file": str(key_file),
        # Host keys are verified against the fleet's own known_hosts file.
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes",
        "ansible_python_interpreter": "/usr/bin/python3",
        "lab_time_scale": meta["time_scale"],
    }
    # As on a rack: a folder of Hailo's files first (beside inventory/; `lab fleet hailo-files` writes it), then the
    # archive the nodes list (the fleet's emulated Raspberry Pi archive, see lab.virtual.node).
    group_vars["lab_hailo_sources"] = [{"files": "../hailo-files"}, "archive"]
    hosts = {name: host_vars(addr, (units or {}).get(name, {}), meta["time_scale"]) for name, addr in addresses.items()}
    for name, entry in (power or {}).items():
        hosts[name]["lab_power"] = entry
    return {"virtual": {"hosts": hosts, "vars": group_vars}}


def write(path: Path, data: dict) -> None:
    """Write the inventory (`render`'s data) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, HEADER + yaml.safe_dump(data, sort_keys=False))
