"""The Ansible inventory of a virtual fleet (inventory/virtual.yml)."""

from __future__ import annotations

from pathlib import Path

import yaml

from lab.virtual.emulator.nodevars import virtual_node_vars
from lab.virtual.node import EXECUTOR_KNOWN_HOSTS, EXECUTOR_NODE_KEY, LOGIN_USER, write_atomic

HEADER = "# Written by `lab fleet up`; removed by `lab fleet down`. Do not edit.\n"
EXECUTORS_GROUP = "lab_executors"  # the inventory contract's group of execution nodes
RUNNER = "ansible-runner"  # the worker program on an executor (on its PATH, lab.virtual.runner's wrapper)


def rack_of(index: int, executors: int) -> int:
    """The rack (1..executors) of the node with this 1-based index: nodes go round-robin over the executors."""
    return (index - 1) % executors + 1


def spread(nodes: list[str], executors: list[str]) -> dict[str, list[str]]:
    """Executor -> the nodes it runs, in node order (node i goes to executor rack_of(i)); {} without executors."""
    out: dict[str, list[str]] = {name: [] for name in executors}
    if not executors:
        return out
    for i, node in enumerate(nodes, start=1):
        out[executors[rack_of(i, len(executors)) - 1]].append(node)
    return out


def ssh_args(known_hosts: str | Path) -> str:
    """ansible_ssh_common_args: host keys verified against this known_hosts file, never accepted blindly."""
    return f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"


def host_vars(address: str, unit: dict, time_scale: float) -> dict:
    """One node's variables: its address, its unit's chip, and the emulator's stand-ins for kernel interfaces."""
    chip = unit.get("chip", "hailo10h")
    hv = {"ansible_host": address, "lab_chip": chip}
    extra = virtual_node_vars(chip, time_scale)
    extra.pop("lab_time_scale", None)  # a group variable
    return {**hv, **extra}


def render(fleet_root: Path, key_file: Path, known_hosts: Path, meta: dict, addresses: dict[str, str],
           units: dict[str, dict] | None = None, power: dict[str, dict] | None = None,
           executors: dict[str, str] | None = None) -> dict:
    """The inventory as data: group `virtual`, one host per node, connection and lab variables.

    `power`: per node, its `lab_power` (the outlet of the fleet's pdudaemon that powers it).
    `executors`: execution node -> address; when given, see `with_executors`.
    """
    group_vars = {
        # As on a Pi: the login user `pi` with sudo (lab.virtual.node.add_login_user), never root.
        "ansible_user": LOGIN_USER,
        "ansible_become": True,
        "ansible_ssh_private_key_file": str(key_file),
        # Host keys are verified against the fleet's own known_hosts file.
        "ansible_ssh_common_args": ssh_args(known_hosts),
        "ansible_python_interpreter": "/usr/bin/python3",
        "lab_time_scale": meta["time_scale"],
    }
    # As on a rack: a folder of Hailo's files first (beside inventory/; `lab fleet hailo-files` writes it), then the
    # archive the nodes list (the fleet's emulated Raspberry Pi archive, see lab.virtual.node).
    group_vars["lab_hailo_sources"] = [{"files": "../hailo-files"}, "archive"]
    hosts = {name: host_vars(addr, (units or {}).get(name, {}), meta["time_scale"]) for name, addr in addresses.items()}
    for name, entry in (power or {}).items():
        hosts[name]["lab_power"] = entry
    if executors:
        return with_executors(hosts, group_vars, key_file, known_hosts, executors)
    return {"virtual": {"hosts": hosts, "vars": group_vars}}


def with_executors(hosts: dict[str, dict], group_vars: dict, key_file: Path, known_hosts: Path,
                   executors: dict[str, str]) -> dict:
    """The inventory contract for execution nodes: group `lab_executors`, the nodes spread over racks.

    Executors are reached from the controller (its key and known_hosts, as root). Node `i` is in group
    `rack<k>` (k = rack_of(i)) whose `lab_executor` is `exec<k>`; the nodes' connection variables are as
    seen from the executor (the key and known_hosts lab fleet up put there), since only it reaches them.
    """
    names = list(executors)
    execs = {name: {"ansible_host": address, "ansible_user": "root", "ansible_ssh_private_key_file": str(key_file),
                    "ansible_ssh_common_args": ssh_args(known_hosts),
                    "ansible_python_interpreter": "/usr/bin/python3", "lab_runner": RUNNER}
             for name, address in executors.items()}
    node_vars = {**group_vars, "ansible_ssh_private_key_file": EXECUTOR_NODE_KEY,
                 "ansible_ssh_common_args": ssh_args(EXECUTOR_KNOWN_HOSTS)}
    racks = {f"rack{k}": {"vars": {"lab_executor": name}, "hosts": {node: hosts[node] for node in nodes}}
             for k, (name, nodes) in enumerate(spread(list(hosts), names).items(), start=1)}
    return {"all": {"children": {EXECUTORS_GROUP: {"hosts": execs},
                                 "virtual": {"vars": node_vars, "children": racks}}}}


def write(path: Path, data: dict) -> None:
    """Write the inventory (`render`'s data) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, HEADER + yaml.safe_dump(data, sort_keys=False))
