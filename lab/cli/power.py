"""`lab power NODE... {on,off,cycle,status}`: switch or read nodes' power through their `lab_power` drivers."""

from __future__ import annotations

import dataclasses
import enum
import json

import typer

from lab.cli.root import app
from lab.inventory import load
from lab.power.base import power_nodes, powered_hosts


class Action(str, enum.Enum):
    """What `lab power` does to each node."""

    on = "on"
    off = "off"
    cycle = "cycle"
    status = "status"


@app.command("power")
def power(
    nodes: list[str] = typer.Argument(..., help="Nodes (or groups) of the inventory.", show_default=False),
    action: Action = typer.Argument(..., help="on, off, cycle (off, the driver's delay, on) or status.",
                                    show_default=False),
    inventory: str = typer.Option(..., "--inventory", "-i", help="Inventory path, or a name in inventory/."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for each node's driver."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of results."),
) -> None:
    """Switch nodes' power on, off, cycle it, or read it, through each node's `lab_power` driver, in parallel.

    Prints one line per node in the order given: `NODE: STATE (DRIVER: WHAT IT SAID)`, or `NODE: error: WHY`.

    A PDU that does not answer fails its own nodes; the others go on.

    Exits 0 if every node's action succeeded, 1 if any failed, 2 for bad input (an unknown node, no lab_power).

    Example:

        lab power node1 node2 cycle --inventory virtual
        lab power pi-03 status --inventory pis --json
    """
    inv = load(inventory)
    hosts = powered_hosts(inv, nodes)
    results = power_nodes(hosts, action.value, timeout=timeout, source=str(inv.source))
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    else:
        for r in results:
            typer.echo(f"{r.node}: {r.state} ({r.detail})" if r.ok else f"{r.node}: error: {r.detail}")
    raise typer.Exit(0 if all(r.ok for r in results) else 1)
