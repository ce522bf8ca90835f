"""`lab check FILE... [--inventory INV]`: validate scenario, stack and fleet profile files, and an inventory, without touching a node."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from lab.cli.root import app
from lab.errors import ConfigError
from lab.inputs import check_file, check_inventory


@app.command("check")
def check(files: list[Path] = typer.Argument(None, help="Scenario, stack or fleet profile files (YAML), or names of "
                                                    "shipped ones (cma_soak, h10-5.3.0, mixed).",
                                             show_default=False),
          inventory: str = typer.Option(None, "--inventory", "-i",
                                        help="Also check this inventory (path or name in inventory/): its hosts, "
                                             "each one's lab_power, and its execution nodes' ansible-runner "
                                             "(asked over SSH).")) -> None:
    """Validate scenario, stack and fleet profile files, and an inventory's hosts and power drivers; touches no node
    (an inventory's execution nodes are asked over SSH whether their ansible-runner can work for this controller).

    Prints one line per file: `OK FILE (KIND: NAME)`, or on stderr
    `lab: error: WHAT, FILE:LINE, HINT`. Exits 2 if any file is bad.

    Example:

        lab check scenarios/*.yaml stacks/*.yaml
        lab check cma_soak --inventory pis
    """
    if not files and not inventory:
        raise ConfigError("nothing to check", None, "give scenario, stack or profile files, or --inventory INV")
    bad = 0
    if inventory:
        try:
            result = check_inventory(inventory)
        except ConfigError as exc:
            bad += 1
            print(f"lab: error: {exc}", file=sys.stderr)
        else:
            print(f"OK {result.path} ({result.kind}: {result.name})")
            bad += _check_executors(inventory)
    for path in files or []:
        try:
            result = check_file(path)
        except ConfigError as exc:
            bad += 1
            print(f"lab: error: {exc}", file=sys.stderr)
            continue
        print(f"OK {path} ({result.kind}: {result.name})")
    if bad:
        raise typer.Exit(2)


def _check_executors(inventory: str) -> int:
    """Ask every execution node of the inventory for its ansible-runner and ansible-playbook (over SSH): one line
    each, OK or the error and its fix; returns how many failed."""
    from lab.inventory import load
    from lab.remote_executor import check_credentials, check_executor

    bad = 0
    inv = load(inventory)
    for host in inv.hosts.values():
        try:
            check_credentials([host], str(inv.source))
        except ConfigError as exc:
            bad += 1
            print(f"lab: error: {exc}", file=sys.stderr)
    for name, executor in inv.executors.items():
        try:
            said = check_executor(executor)
        except ConfigError as exc:
            bad += 1
            print(f"lab: error: {exc}", file=sys.stderr)
        else:
            print(f"OK executor {name} ({said})")
    return bad
