"""`lab nodes`, `lab exec`: identity and health of each node; ad-hoc commands on all of them."""

from __future__ import annotations

import json
import shlex

import typer

from lab.cli.root import app
from lab.inventory import load
from lab.probe import describe_node, host_probe, parse_probe
from lab.ssh import run_on_hosts


@app.command("nodes")
def nodes(
    inventory: str = typer.Option(..., "--inventory", "-i", help="Inventory path, or a name in inventory/."),
    limit: str = typer.Option(None, "--limit", help="Only these hosts or groups."),
    timeout: float = typer.Option(15.0, "--timeout", help="Seconds to wait for each host."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Identity and health of each node: the Pi and the HAT in it, reachable, HailoRT, firmware, device, lock.

    The Pi is named by its own serial and model (devicetree, else /proc/cpuinfo); the HAT by the unit key
    a campaign files its runs under (SoC ID from `identify --extended`, else the serial; `<N/A>` is none),
    with its serial and SoC ID. With --json also what is installed: kernel, Hailo packages and dkms as dpkg has them (with their
    Debian revisions), a hailort wheel, dkms status and the held packages.

    Example:
        lab nodes --inventory virtual --json
    """
    inv = load(inventory)
    hosts = inv.select(limit)
    results = run_on_hosts(hosts, host_probe, timeout)
    rows = []
    for host, res in zip(hosts, results):
        info = describe_node(parse_probe(res.stdout)) if res.rc == 0 else {}
        rows.append({"node": host.name, "address": host.address, "reachable": res.error is None,
                     "error": res.error, **info})
    if as_json:
        typer.echo(json.dumps({"nodes": rows}, indent=2))
    else:
        for r in rows:
            if not r["reachable"]:
                typer.echo(f"{r['node']:<10} {r['address']:<15} UNREACHABLE  {r['error']}")
                continue
            typer.echo(f"{r['node']:<10} {r['address']:<15} {r.get('architecture') or '-':<9} "
                       f"hailort {r.get('hailort') or '-':<7} fw {r.get('firmware') or '-':<22} "
                       f"device {r.get('device') or '-':<7} up {float(r.get('uptime') or 0):.0f}s"
                       + (f"  locked by {r['lock']}" if r.get("lock") else "")
                       + (f" (controller {r['lock_controller']})" if r.get("lock") and r.get("lock_controller") else ""))
            pi, hat = r.get("pi") or {}, r.get("hat") or {}
            typer.echo(f"{'':<10} pi {pi.get('serial') or '-'} ({pi.get('model') or 'model unknown'})  "
                       f"hat {hat.get('unit') or 'unidentified'} serial {hat.get('serial') or '-'}"
                       + (f" soc_id {hat['soc_id'][:16]}..." if hat.get("soc_id") else ""))
    raise typer.Exit(0 if all(r["reachable"] for r in rows) else 1)


@app.command("exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(
    command: list[str] = typer.Argument(..., help="The command: one argument is a shell line, several are quoted."),
    inventory: str = typer.Option(..., "--inventory", "-i", help="Inventory path, or a name in inventory/."),
    limit: str = typer.Option(None, "--limit", help="Only these hosts or groups."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds each host may take."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Run an ad-hoc command on every node in parallel (fabric); unreachable hosts are reported.

    Example:
        lab exec --inventory virtual -- hailortcli fw-control identify
    """
    inv = load(inventory)
    hosts = inv.select(limit)
    line = command[0] if len(command) == 1 else shlex.join(command)
    results = run_on_hosts(hosts, line, timeout)
    if as_json:
        typer.echo(json.dumps({"command": line, "results": [r.to_dict() for r in results]}, indent=2))
    else:
        for r in results:
            head = f"{r.host} | " + (f"rc={r.rc}" if r.error is None else f"ERROR {r.error}")
            typer.echo(head)
            for stream in (r.stdout, r.stderr):
                for out_line in stream.rstrip("\n").splitlines():
                    typer.echo(f"  {out_line}")
    raise typer.Exit(0 if all(r.rc == 0 for r in results) else 1)
