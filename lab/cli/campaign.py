"""`lab run`, `lab provision`: execute a scenario on an inventory's nodes; install a pinned stack."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer

from lab.cli.root import app
from lab.db.session import open_database
from lab.db.store import SqlStore
from lab.engine.campaign import Ports, resume_campaign, run_campaign
from lab.engine.plan import check_campaign_name, plan_campaign
from lab.node_files import SshAgentFiles
from lab.power.port import InventoryPower
from lab.progress import Progress
from lab.remote_executor import StreamingExecutor, check_executors


@app.command("run")
def run(
    scenario: Path = typer.Argument(..., help="Scenario file (scenarios/cma_soak.yaml) or a shipped one's name (cma_soak)."),
    inventory: str = typer.Option(..., "--inventory", "-i", help="Inventory path, or a name in inventory/ (pis)."),
    db: str = typer.Option(None, "--db", help="Database URL (default: $LAB_DB, else sqlite:///lab.db)."),
    limit: str = typer.Option(None, "--limit", help="Only these hosts or groups (comma-separated)."),
    name: str = typer.Option(None, "--name", help="Campaign name (default: scenario-date-time-xxxx)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document at the end."),
) -> None:
    """Run a scenario on every node of an inventory at once and record every sample.

    Example:
        lab run scenarios/cma_soak.yaml --inventory virtual
    """
    plan = plan_campaign(scenario, inventory, limit)
    if name is not None:
        check_campaign_name(name)  # before the database is opened: a refused run writes nothing
    # an execution node without a usable ansible-runner, or credentials it would need: one line, exit 2, nothing opened
    check_executors(plan.hosts, str(plan.inventory.source))
    engine = open_database(db)
    command = shlex.join(["lab", *sys.argv[1:]]) if sys.argv else "lab run"
    with Progress([h.name for h in plan.hosts]) as progress:
        name, campaign_id, code = run_campaign(ports(engine), plan, name, command, progress.on_record,
                                               progress.on_phase)
    _print_summary(engine, name, as_json)
    raise typer.Exit(code)


def ports(engine) -> Ports:
    """The real adapters: Ansible for the nodes (through their execution nodes where the inventory names one),
    SSH for the agents' files, the database for results, the inventory's power drivers."""
    return Ports(StreamingExecutor(), SshAgentFiles, SqlStore(engine), InventoryPower)


def _print_summary(engine, name: str, as_json: bool) -> None:
    """The campaign's runs at the end of `lab run` / `lab resume`."""
    from lab.db.queries import campaign_summary

    summary = campaign_summary(engine, name)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(f"campaign {name}: {summary['status']}")
    for r in summary["runs"]:
        where = f"{r['node']} via {r['executor']}" if r.get("executor") else r["node"]
        typer.echo(f"  {where:<10} {r['stack']:<12} repeat {r['repeat']}  {r['verdict'] or r['status']:<12} "
                   f"{r['samples']} samples  {r['error'] or ''}".rstrip())


def load_stack_ref(ref: str):
    """A stack by path, or by name: ./stacks/NAME.yaml first, then the stacks lab ships."""
    from lab.errors import ConfigError
    from lab.resources import find_input, shipped_names
    from lab.stack import known_stacks, load_stack

    path = find_input(ref, "stack")
    if not path.exists():
        known = sorted(set(known_stacks(Path("stacks"))) | set(shipped_names("stack")))
        raise ConfigError(f"unknown stack {ref!r}", ref, f"known stacks: {', '.join(known)}")
    return load_stack(path)


@app.command("provision")
def provision(
    stack: str = typer.Argument(..., help="Stack name (a file in stacks/) or path."),
    inventory: str = typer.Option(..., "--inventory", "-i", help="Inventory path, or a name in inventory/."),
    clean: bool = typer.Option(False, "--clean", help="Purge every Hailo package and leftover first."),
    limit: str = typer.Option(None, "--limit", help="Only these hosts or groups (comma-separated)."),
) -> None:
    """Install, hold and verify a pinned stack on every node (optionally after a clean purge).

    Example:
        lab provision h10-5.3.0 --inventory virtual --clean
    """
    from lab.inventory import load

    from lab.sources import installs_for

    pinned = load_stack_ref(stack)
    inv = load(inventory)
    hosts = inv.select(limit)
    installs = installs_for(pinned, hosts, str(inv.source))  # a stack no source provides stops here
    check_executors(hosts, str(inv.source))
    result = StreamingExecutor().play("provision.yml", inv, [h.name for h in hosts],
                                      {"lab_stack": pinned.model_dump(mode="json"), "lab_installs": installs,
                                       "lab_clean": clean})
    failed = result.failed_hosts
    for h in hosts:
        r = result.hosts.get(h.name)
        state = "failed" if h.name in failed or h.name in result.lost or r is None else ("changed" if r.changed else "ok")
        msg = result.lost.get(h.name) or ("; ".join(r.messages) if r and state == "failed" else "")
        typer.echo(f"{h.name:<10} {pinned.name}: {state} {msg}".rstrip())
    raise typer.Exit(1 if failed or result.lost else 0)


@app.command("resume")
def resume(
    campaign: str = typer.Argument(..., help="Campaign name or id (see `lab campaigns`)."),
    db: str = typer.Option(None, "--db", help="Database URL (default: $LAB_DB, else sqlite:///lab.db)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document at the end."),
) -> None:
    """Finish a campaign whose controller stopped; nothing is measured twice, finished phases are kept.

    On a campaign that ended with unreachable nodes, it collects what those nodes recorded before they
    vanished (once they answer again) and releases their locks; nothing is run again.

    Example:
        lab resume cma_soak-20261121-220804-4b59
    """
    engine = open_database(db)
    with Progress([]) as progress:
        name, _, code = resume_campaign(ports(engine), campaign, progress.on_record, progress.on_phase)
    _print_summary(engine, name, as_json)
    raise typer.Exit(code)
