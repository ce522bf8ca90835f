"""`lab fleet`: bring the virtual fleet up and down, show its state, inject faults."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lab.cli.root import app
from lab.resources import find_input
from lab.virtual.fleet import FAULTS, POWER_ACTIONS, Fleet, status_dicts

fleet_app = typer.Typer(help="The virtual fleet: Debian Trixie nodes in systemd-nspawn on 127.77.0.N.", no_args_is_help=True)
app.add_typer(fleet_app, name="fleet")


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


@fleet_app.command("up")
def up(
    nodes: int = typer.Option(None, "--nodes", "-n", help="Number of nodes (default: the profile's, else 4)."),
    profile: Path = typer.Option(None, "--profile", help="Fleet profile: per node, the unit's hardware."),
    time_scale: float = typer.Option(1.0, "--time-scale", help="Emulated time runs this much faster (records stay nominal)."),
    inventory: Path = typer.Option(Path("inventory/virtual.yml"), "--inventory-file", help="Where to write the inventory."),
    executors: int = typer.Option(0, "--executors", "-e", help="Also boot this many execution nodes (exec1.., "
                                  "ansible-runner workers); the inventory spreads the nodes over them."),
) -> None:
    """Boot the virtual fleet and write its inventory.

    With --executors K, K execution nodes (exec1..execK on <net>.201..) run the phases of their
    racks' nodes through `ansible-runner worker`; only they hold the key the nodes accept.

    Example:
        lab fleet up --nodes 4 --profile profiles/mixed.yaml --time-scale 0.02
        lab fleet up --nodes 4 --executors 2
    """
    if profile is not None:
        profile = find_input(profile, "profile")
    result = Fleet().up(nodes=nodes, profile=profile, time_scale=time_scale, inventory=inventory, log=_say,
                        executors=executors)
    execs = f" and {len(result['executors'])} execution node(s)" if result["executors"] else ""
    typer.echo(f"{len(result['nodes'])} node(s){execs} answer SSH after {result['seconds']} s; "
               f"inventory: {result['inventory']}")


@fleet_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Show each node's and execution node's name, address, state (running, frozen, down) and boot_id, and the
    PDU daemon's address and PID. In --json, execution nodes are under "executors".

    Example:
        lab fleet status --json
    """
    fleet = Fleet()
    statuses = fleet.status()
    pdu = fleet.pdu_status()
    if as_json:
        doc = {"nodes": status_dicts([s for s in statuses if s.role == "node"])}
        executors = status_dicts([s for s in statuses if s.role == "executor"])
        if executors:
            doc["executors"] = executors
        if pdu:  # a fleet is up: its PDU daemon's address and PID (null when it is not running)
            doc["pdudaemon"] = pdu
        typer.echo(json.dumps(doc, indent=2))
        return
    if not statuses:
        typer.echo("no virtual fleet is up")
        return
    if pdu:
        typer.echo(f"pdudaemon {pdu['address']} " + (f"pid {pdu['pid']}" if pdu["pid"] else "not running"))
    for s in statuses:
        note = ", ".join(filter(None, ["execution node" if s.role == "executor" else None, s.note]))
        typer.echo(f"{s.name:<8} {s.address:<15} {s.state:<8} {s.boot_id or '-'}" + (f"  ({note})" if note else ""))


@fleet_app.command("down")
def down() -> None:
    """Stop every node (and execution node) and remove every mount, process and file of the fleet.

    Example:
        lab fleet down
    """
    names = Fleet().down(log=_say)
    typer.echo(f"stopped {len(names)} machine(s)" if names else "no virtual fleet was up")


@fleet_app.command("fault")
def fault(
    node: str = typer.Argument(..., help="Node name, e.g. node2, or an execution node, e.g. exec1."),
    action: str = typer.Argument(..., help=f"One of: {', '.join(FAULTS)}."),
) -> None:
    """Inject a fault: freeze/thaw all its processes, power it down/up, make its next reboot hang.

    Example:
        lab fleet fault node2 hang-reboot
    """
    typer.echo(Fleet().fault(node, action))


@fleet_app.command("power")
def power(
    node: str = typer.Argument(..., help="Node name, e.g. node2, or an execution node, e.g. exec1."),
    action: str = typer.Argument(..., help=f"One of: {', '.join(POWER_ACTIONS)}."),
) -> None:
    """What a PDU outlet does to the node: cut its power (off), restore it (on), or print on/off (status).

    An execution node takes the same actions: `lab fleet power exec1 off` kills it at once, with every
    ansible-runner worker on it (an executor lost mid-phase).

    Fast, as the fleet's pdudaemon calls it: `off` returns once the node is down, `on` without waiting
    for SSH. Unlike the node's own reboot, power off then on is a cold power-on: a unit whose HAT keeps
    power through a warm reboot (`warm_reboot_keeps_power`) starts its chip fresh only then.

    Example:
        lab fleet power node2 off
    """
    typer.echo(Fleet().power(node, action))


@fleet_app.command("swap-hats")
def swap_hats(
    node_a: str = typer.Argument(..., help="A node, e.g. node1."),
    node_b: str = typer.Argument(..., help="Another node, e.g. node2."),
) -> None:
    """Move two nodes' HATs into each other's Pi (both powered off, swapped, powered on).

    Each HAT keeps its identity (SoC ID, ULT ID, serial: derived from its name, `hat` in the
    profile) and each Pi its own (pi_serial, pi_model); the inventory's lab_chip follows the HAT.
    The next `lab fleet up --profile` puts the profile's HATs back.

    Example:
        lab fleet swap-hats node1 node2
    """
    typer.echo(Fleet().swap_hats(node_a, node_b, log=_say))


@fleet_app.command("hailo-files")
def hailo_files(
    folder: Path = typer.Argument(Path("hailo-files"), help="Where to write the files (created if missing)."),
    models: Path = typer.Option(Path("models"), "--models", help="Where to write the models no package ships."),
) -> None:
    """Write the emulated HailoRT versions that are not in the virtual archive as Hailo ships them.

    The runtime and PCIe driver .deb files and the Python wheel of each version (5.2.0, 5.3.0, 5.3.1,
    4.20.0), as a person downloads them from Hailo's developer zone; list the folder in the inventory's
    lab_hailo_sources ({files: FOLDER}) so stacks of those versions install from it. The field
    report's model (yolo26s_hailo10h.hef), which no package ships, goes to the models folder.

    Example:
        lab fleet hailo-files hailo-files --models models
    """
    from lab.virtual.emulator.packaging import build_hailo_files, build_models

    files = build_hailo_files(folder)
    typer.echo(f"{len(files)} file(s) in {folder}: " + ", ".join(sorted(p.name for p in files)))
    hefs = build_models(models)
    typer.echo(f"{len(hefs)} model(s) in {models}: " + ", ".join(sorted(p.name for p in hefs)))
