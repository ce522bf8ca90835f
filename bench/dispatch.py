"""Back-to-back fidelity: a 25-run benchmark phase under `lab run` against a shell loop and a naive playbook.

On one virtual node, side by side in one run (interleaved, median of the repeats):
  shell     the seed's own method: `ssh node 'for i in $(seq 25); do hailortcli benchmark ...; done'`
  playbook  a naive Ansible playbook looping a `command` task 25 times (the project's ansible.cfg)
  lab       `lab run` of a scenario with one phase `benchmark: runs: 25` (phase wall from the DB, and the whole run)

    .venv/bin/python bench/dispatch.py --time-scale 0.2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import yaml

from benchlib import (LAB, PROJECT, VENV_BIN, BenchFleet, add_common_args, benchmark_samples, fleet_env, lab_argv, log, machine,
                      measure, median, parse_variants, phase_walls, stop_cleanly, table)

HEF = "/var/lib/lab-bench/yolo26s_hailo10h.hef"  # the shell loop's and naive playbook's copy of the model
STACK = "h10-5.3.0"


def benchmark_argv(time_to_run: int) -> list[str]:
    return ["hailortcli", "benchmark", HEF, "--time-to-run", str(time_to_run), "--batch-size", "1"]


def write_inputs(workdir: Path, runs: int, time_to_run: int) -> tuple[Path, Path]:
    """The lab scenario (one phase of `runs` benchmarks) and the naive playbook doing the same."""
    (workdir / "stacks").unlink(missing_ok=True)
    (workdir / "stacks").symlink_to(PROJECT / "stacks")  # the scenario's stacks are found beside it
    scenario = workdir / f"dispatch-{runs}.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "dispatch", "description": f"{runs} back-to-back benchmarks, nothing else",
        "matrix": {"stacks": [STACK], "repeats": 1},
        "phases": [{"name": "bench", "steps": [{"benchmark": {"hef": Path(HEF).name, "runs": runs,
                                                                "time_to_run": time_to_run}}]}],
    }, sort_keys=False))
    playbook = workdir / f"naive-{runs}.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Naive loop", "hosts": "all", "gather_facts": False,
        "tasks": [{"name": "One benchmark run", "ansible.builtin.command": {"argv": benchmark_argv(time_to_run)},
                   "loop": f"{{{{ range({runs}) | list }}}}"}],
    }], sort_keys=False))
    return scenario, playbook


def run_method(method: str, fleet: BenchFleet, workdir: Path, env: dict, runs: int, time_to_run: int,
               scenario: Path, playbook: Path, tag: str, variants: dict[str, Path | None] | None = None) -> dict:
    """Run one method once (shell, playbook, or a lab variant); returns its wall time, controller CPU, runs done."""
    out = workdir / f"{tag}-{method}.out"
    if method == "shell":
        loop = f"for i in $(seq {runs}); do {shlex.join(benchmark_argv(time_to_run))}; done"
        m = measure([*fleet.ssh_argv(1), loop], env=env, cwd=workdir, stdout=out)
        done = m.stdout.count("FPS:")
        wall = m.wall_s
    elif method == "playbook":
        penv = dict(env, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), PATH=f"{VENV_BIN}:{env.get('PATH', '')}")
        m = measure([str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory), str(playbook)],
                    env=penv, cwd=workdir, stdout=out)
        done = m.stdout.count("(item=")
        wall = m.wall_s
    else:
        db = workdir / f"{tag}-{method}.db"
        name = f"dispatch-{tag}-{method}"
        lab, lab_env = lab_argv((variants or {}).get(method), env)
        m = measure([*lab, "run", str(scenario), "--inventory", str(fleet.inventory), "--db", f"sqlite:///{db}",
                     "--name", name, "--json"], env=lab_env, cwd=workdir, stdout=out)
        done = sum(benchmark_samples(db, name).values()) if db.exists() else 0
        wall = max(phase_walls(db, name).values(), default=float("nan")) if db.exists() else float("nan")
    if m.rc != 0:
        log(f"{method} exited {m.rc}; see {out}")
    return {"method": method, "rc": m.rc, "runs_done": done, "wall_s": wall, "command_wall_s": m.wall_s,
            "controller_cpu_s": round(m.cpu_s, 2)}


def bench_scale(scale: float, args, env: dict, workdir: Path, variants: dict[str, Path | None]) -> list[dict]:
    """Every method `repeats` times at one time scale, interleaved; one fleet of one node."""
    methods = ("shell", "playbook", *variants)
    results = []
    with BenchFleet(workdir, 1, scale, env) as fleet:
        prov = measure([LAB, "provision", STACK, "--inventory", str(fleet.inventory)], env=env, cwd=workdir,
                       stdout=workdir / f"provision-{scale}.out")
        if prov.rc != 0:
            raise SystemExit(f"provisioning failed:\n{prov.stdout[-2000:]}")
        fleet.put_model(1, HEF)
        scenario, playbook = write_inputs(workdir, args.runs, args.time_to_run)
        if args.warmup:  # first SSH, agent deployment and Python caches on the node are not what is measured
            small = write_inputs(workdir, 1, args.time_to_run)
            for method in methods:
                run_method(method, fleet, workdir, env, 1, args.time_to_run, *small, tag=f"s{scale}-warmup",
                           variants=variants)
        for r in range(args.repeats):
            k = r % len(methods)
            for method in methods[k:] + methods[:k]:  # each method goes first in turn
                res = run_method(method, fleet, workdir, env, args.runs, args.time_to_run, scenario, playbook,
                                 tag=f"s{scale}-r{r}", variants=variants)
                res.update(time_scale=scale, repeat=r)
                log(f"scale {scale} repeat {r} {method}: {res['wall_s']:.1f} s, {res['runs_done']}/{args.runs} runs")
                results.append(res)
    return results


def summarise(results: list[dict], runs: int) -> list[dict]:
    """Per scale and method: median wall (phase wall for lab), its ratio to the shell loop, controller CPU."""
    rows = []
    for scale in sorted({r["time_scale"] for r in results}):
        at = [r for r in results if r["time_scale"] == scale]
        shell = median([r["wall_s"] for r in at if r["method"] == "shell"])
        for method in dict.fromkeys(r["method"] for r in at):
            mine = [r for r in at if r["method"] == method]
            wall = median([r["wall_s"] for r in mine])
            rows.append({"time_scale": scale, "method": method, "repeats": len(mine),
                         "runs_ok": f"{min(r['runs_done'] for r in mine)}/{runs}",
                         "median_wall_s": round(wall, 2),
                         "min_s": round(min(r["wall_s"] for r in mine), 2),
                         "max_s": round(max(r["wall_s"] for r in mine), 2),
                         "vs_shell": round(wall / shell, 3),
                         "command_wall_s": round(median([r["command_wall_s"] for r in mine]), 2),
                         "controller_cpu_s": round(median([r["controller_cpu_s"] for r in mine]), 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-scale", type=float, action="append", help="emulator time scale (repeatable; default 0.2)")
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--time-to-run", type=int, default=15, help="nominal seconds per benchmark run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-warmup", dest="warmup", action="store_false")
    add_common_args(ap)
    args = ap.parse_args(argv)
    stop_cleanly()
    variants = parse_variants(args.variant, current=not args.no_current)
    scales = args.time_scale or [0.2]
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="bench-dispatch-", dir="/var/tmp"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = fleet_env()
    where = machine()
    results = []
    for scale in scales:
        results += bench_scale(scale, args, env, workdir, variants)
    rows = summarise(results, args.runs)
    if args.json:
        print(json.dumps({"machine": where, "runs": args.runs, "time_to_run": args.time_to_run,
                          "summary": rows, "results": results}, indent=2))
        return 0
    print(f"# {args.runs} x {args.time_to_run} s benchmark runs on 1 virtual node; median of {args.repeats} "
          f"interleaved repeats; load average at start {' '.join(where['loadavg'])}; workdir {workdir}")
    print("# wall: lab (and variants) = the phase (Phase.started_at..finished_at); "
          "command wall = the whole `lab run` / ssh / ansible-playbook")
    keys = ["time_scale", "method", "repeats", "runs_ok", "median_wall_s", "min_s", "max_s", "vs_shell",
            "command_wall_s", "controller_cpu_s"]
    print(table(keys, [[row[k] for k in keys] for row in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
