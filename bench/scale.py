"""Scale: the same time-scaled soak on 1, 8, 32 and 64 virtual nodes; does the controller grow faster than the fleet?

One fleet of the largest size is brought up and provisioned once; each campaign runs on its first N nodes
(`lab run --limit`), the counts interleaved (ascending, then descending on the next repeat). Per count:
campaign wall time and its ratio to 1 node, controller CPU (user+sys of `lab run` and every descendant:
ansible-playbook and its forks, ssh, the ssh masters it leaves behind) and peak memory (PSS of that tree),
and the fleet's own memory (PSS of every node's processes) and CPU.

`--executors 0,2` repeats all of it on a second fleet whose nodes sit behind 2 execution nodes (`lab fleet up
--executors 2`: only they reach the nodes, each runs its nodes' phases through `ansible-runner worker`), and
adds the execution nodes' CPU and peak memory: the controller alone against the same campaigns through
executors, in one run.

    .venv/bin/python bench/scale.py --nodes 1,8,32,64 --time-scale 0.5
    .venv/bin/python bench/scale.py --nodes 1,64 --runs 10 --time-scale 1.0 --executors 0,2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from benchlib import (LAB, PROJECT, BenchFleet, add_common_args, benchmark_samples, fleet_env, lab_argv, log, machine, measure, median,
                      parse_variants, phase_walls, stop_cleanly, table)

STACK = "h10-5.3.0"


def write_scenario(workdir: Path, runs: int, time_to_run: int) -> Path:
    """The soak without its reboot: identify, `runs` back-to-back benchmarks, then the logs and temperatures."""
    (workdir / "stacks").unlink(missing_ok=True)
    (workdir / "stacks").symlink_to(PROJECT / "stacks")
    path = workdir / f"scale-soak-{runs}x{time_to_run}.yaml"
    path.write_text(yaml.safe_dump({
        "name": "scale_soak", "description": f"identify, {runs} back-to-back benchmarks, logs",
        "matrix": {"stacks": [STACK], "repeats": 1},
        "phases": [{"name": "soak", "steps": [
            "identify", {"collect": ["dmesg", "temps"]},
            {"benchmark": {"hef": "yolo26s_hailo10h.hef", "runs": runs, "time_to_run": time_to_run}},
            {"collect": ["runtime_log", "dmesg", "temps"]}]}],
    }, sort_keys=False))
    return path


def run_count(n: int, fleet: BenchFleet, scenario: Path, workdir: Path, env: dict, tag: str,
              variant: Path | None = None) -> dict:
    """One campaign on the fleet's first n nodes (with the current tree's lab, or a variant's)."""
    db = workdir / f"{tag}.db"
    name = f"scale-{tag}"
    lab, lab_env = lab_argv(variant, env)
    m = measure([*lab, "run", str(scenario), "--inventory", str(fleet.inventory), "--db", f"sqlite:///{db}",
                 "--name", name, "--limit", ",".join(fleet.node_names(n)), "--json"],
                env=lab_env, cwd=workdir, stdout=workdir / f"{tag}.out", fleet_dir=fleet.root, every=2.0)
    if m.rc != 0:
        log(f"lab run on {n} node(s) exited {m.rc}; see {workdir / (tag + '.out')}")
    samples = benchmark_samples(db, name) if db.exists() else {}
    walls = phase_walls(db, name) if db.exists() else {}
    return {"nodes": n, "rc": m.rc, "wall_s": m.wall_s, "phase_wall_s": round(max(walls.values(), default=0.0), 2),
            "nodes_ok": sum(1 for v in samples.values() if v >= 1), "samples": sum(samples.values()),
            "controller_cpu_s": round(m.cpu_s, 2), "controller_user_s": m.user_s, "controller_sys_s": m.sys_s,
            "controller_peak_pss_mib": m.peak_pss_mib, "controller_peak_procs": m.peak_procs,
            "fleet_pss_mib": m.fleet_pss_mib, "fleet_cpu_s": m.fleet_cpu_s,
            "executor_pss_mib": m.executor_pss_mib, "executor_cpu_s": m.executor_cpu_s}


def warm_up(fleet: BenchFleet, variants: dict, workdir: Path, env: dict, executors: int) -> None:
    """One short campaign per variant on every node, not measured: each variant's agent and the model are on
    every node before the measured campaigns, as in a lab that runs one version. (Otherwise the first measured
    campaign at a node count copies them to the nodes the smaller counts never used, and the order of the
    variants decides which one pays for it.)"""
    scenario = write_scenario(workdir, 1, 1)
    for variant, folder in variants.items():
        lab, lab_env = lab_argv(folder, env)
        tag = f"warmup-{variant}-e{executors}"
        done = subprocess.run([*lab, "run", str(scenario), "--inventory", str(fleet.inventory), "--db",
                               f"sqlite:///{workdir / (tag + '.db')}", "--name", tag], env=lab_env, cwd=workdir,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise SystemExit(f"the warm-up campaign of {variant} failed:\n{done.stdout.decode(errors='replace')[-2000:]}")
        log(f"warm-up: {variant}'s agent and the model on all {fleet.nodes} node(s)")


def run_counts(fleet: BenchFleet, counts: list[int], variants: dict, scenario: Path, workdir: Path, env: dict,
               repeats: int, executors: int) -> list[dict]:
    """Every node count and variant on one provisioned fleet, interleaved; one result each."""
    results = []
    for r in range(repeats):
        for n in (counts if r % 2 == 0 else counts[::-1]):
            names = list(variants) if (r + counts.index(n)) % 2 == 0 else list(variants)[::-1]
            for variant in names:  # variants alternate which goes first
                res = run_count(n, fleet, scenario, workdir, env, tag=f"{variant}-e{executors}-n{n}-r{r}",
                                variant=variants[variant])
                res.update(repeat=r, variant=variant, executors=executors)
                through = f" through {executors} executor(s)" if executors else ""
                log(f"{variant}, {n} node(s){through}: {res['wall_s']:.1f} s, controller CPU "
                    f"{res['controller_cpu_s']:.1f} s, execution nodes' CPU {res['executor_cpu_s'] or 0:.1f} s, "
                    f"{res['nodes_ok']}/{n} ok")
                results.append(res)
    return results


def summarise(results: list[dict], fleet_nodes: int, cores: int) -> list[dict]:
    """Per variant and node count: medians, the wall's ratio to the variant's smallest count, per-node figures."""
    rows = []
    for variant, executors in dict.fromkeys((r["variant"], r.get("executors", 0)) for r in results):
        mine = [r for r in results if r["variant"] == variant and r.get("executors", 0) == executors]
        rows += _summarise(variant, executors, mine, fleet_nodes, cores)
    return rows


def _summarise(variant: str, executors: int, results: list[dict], fleet_nodes: int, cores: int) -> list[dict]:
    base = median([r["wall_s"] for r in results if r["nodes"] == min(x["nodes"] for x in results)])
    rows = []
    for n in sorted({r["nodes"] for r in results}):
        mine = [r for r in results if r["nodes"] == n]
        wall = median([r["wall_s"] for r in mine])
        cpu = median([r["controller_cpu_s"] for r in mine])
        fleet_cpu = median([r["fleet_cpu_s"] for r in mine])
        rows.append({
            "variant": variant, "executors": executors, "nodes": n, "repeats": len(mine),
            "ok": f"{min(r['nodes_ok'] for r in mine)}/{n}",
            "wall_s": round(wall, 1), "vs_1": round(wall / base, 3),
            "phase_s": round(median([r["phase_wall_s"] for r in mine]), 1),
            "ctl_cpu_s": round(cpu, 1), "ctl_cpu_per_node": round(cpu / n, 2),
            "ctl_cores": round(cpu / wall, 2),
            "ctl_pss_mib": round(median([r["controller_peak_pss_mib"] for r in mine]), 1),
            "ctl_mib_per_node": round(median([r["controller_peak_pss_mib"] for r in mine]) / n, 1),
            "fleet_pss_per_node_mib": round(median([r["fleet_pss_mib"] for r in mine]) / fleet_nodes, 1),
            "node_cpu_s": round(fleet_cpu, 1), "node_cores": round(fleet_cpu / wall, 2),
            "node_busy_pct": round(100 * fleet_cpu / wall / cores, 1),
            "exec_cpu_s": round(median([r.get("executor_cpu_s") or 0.0 for r in mine]), 1),
            "exec_pss_mib": round(median([r.get("executor_pss_mib") or 0.0 for r in mine]), 1),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="1,8,32,64", help="comma-separated node counts")
    ap.add_argument("--time-scale", type=float, default=0.5)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--time-to-run", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--executors", default="0",
                    help="comma-separated execution-node counts: one fleet each (0: the controller reaches the nodes)")
    add_common_args(ap)
    args = ap.parse_args(argv)
    stop_cleanly()
    variants = parse_variants(args.variant, current=not args.no_current)
    counts = sorted({int(c) for c in args.nodes.split(",") if c.strip()})
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-", dir="/var/tmp"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = fleet_env()
    where = machine()
    results = []
    provisions = {}
    scenario = write_scenario(workdir, args.runs, args.time_to_run)
    for executors in sorted({int(c) for c in args.executors.split(",") if c.strip()}):
        with BenchFleet(workdir, max(counts), args.time_scale, env, executors=executors) as fleet:
            prov = measure([LAB, "provision", STACK, "--inventory", str(fleet.inventory)], env=env, cwd=workdir,
                           stdout=workdir / f"provision-e{executors}.out", fleet_dir=fleet.root, every=2.0)
            log(f"provisioned {max(counts)} node(s) in {prov.wall_s:.1f} s (controller CPU {prov.cpu_s:.1f} s, "
                f"execution nodes' CPU {prov.executor_cpu_s or 0:.1f} s)")
            if prov.rc != 0:
                raise SystemExit(f"provisioning failed:\n{prov.stdout[-2000:]}")
            provisions[executors] = {"wall_s": prov.wall_s, "cpu_s": prov.cpu_s, "executor_cpu_s": prov.executor_cpu_s}
            warm_up(fleet, variants, workdir, env, executors)
            results += run_counts(fleet, counts, variants, scenario, workdir, env, args.repeats, executors)
    rows = summarise(results, max(counts), where["cores"])
    if args.json:
        print(json.dumps({"machine": where, "time_scale": args.time_scale, "runs": args.runs,
                          "variants": {k: str(v or PROJECT) for k, v in variants.items()},
                          "provision": provisions, "summary": rows,
                          "results": results}, indent=2))
        return 0
    print(f"# soak: identify, {args.runs} x {args.time_to_run} s benchmarks, logs; time scale {args.time_scale}; "
          f"one fleet of {max(counts)} nodes, campaigns on the first N; load average at start "
          f"{' '.join(where['loadavg'])}; workdir {workdir}")
    keys = list(rows[0])
    print(table(keys, [[row[k] for k in keys] for row in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
