"""Phases through execution nodes (issue 15), end to end: a 4-node virtual fleet behind 2 executors, the field
report's soak through real `ansible-runner worker`s over ssh, an executor killed mid-phase, and an executor
missing ansible-runner. Real sshd, real ansible-runner, real SQLite; no mock.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from lab.cli import main
from lab.db.models import Campaign, Run, Sample
from lab.virtual.emulator.packaging import build_hailo_files, build_models
from lab.virtual.fleet import Fleet
from tests.conftest import PROJECT, fleet_leftovers, require_fleet, ssh_cmd, without_ansible_runner

pytestmark = pytest.mark.fleet
NET = "127.77.182"
PROFILE = """
nodes:
  node1: {chip: hailo10h}
  node2: {chip: hailo10h}
  node3: {chip: hailo10h}
  node4: {chip: hailo10h}
"""
RUNS = 12  # the field report's soak, shortened: its install, a fresh boot, RUNS back-to-back benchmarks


def soak(runs: int) -> str:
    """scenarios/cma_soak.yaml with one stack (the field report's 5.3.0, from Hailo's files) and `runs` runs."""
    text = (PROJECT / "scenarios" / "cma_soak.yaml").read_text()
    text = text.replace("stacks: [h10-5.3.0, h10-5.1.1, h8-4.23.0]", "stacks: [h10-5.3.0]")
    text = text.replace("runs: 25", f"runs: {runs}")
    assert f"runs: {runs}" in text and "stacks: [h10-5.3.0]" in text
    return text


@pytest.fixture(scope="module")
def racks(tmp_path_factory):
    """Four Hailo-10H nodes spread over exec1 and exec2 (time scale 0.02), Hailo's files beside the inventory."""
    require_fleet()
    base = tmp_path_factory.mktemp("executors15")
    (base / "profile.yaml").write_text(PROFILE)
    build_hailo_files(base / "hailo-files")
    build_models(base / "models")
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    prefix = None
    try:
        fleet.up(profile=base / "profile.yaml", inventory=inventory, time_scale=0.02, executors=2)
        prefix = f"lab-{fleet.meta()['id']}-"
        fleet.inventory = inventory
        fleet.base = base
        yield fleet
    finally:
        fleet.down()
        if prefix:
            assert fleet_leftovers(fleet, prefix) == []


def scenario_file(fleet, runs: int, name: str) -> Path:
    path = fleet.base / f"{name}.yaml"  # beside models/: the field report's model is found there
    path.write_text(soak(runs))
    return path


def lab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`lab ARGS` as a person runs it (its own process, nice 10)."""
    return subprocess.run(["nice", "-n", "10", str(Path(sys.executable).parent / "lab"), *args], capture_output=True,
                          text=True, cwd=cwd, stdin=subprocess.DEVNULL, timeout=1800)


def benchmarks(db: str, name: str) -> dict[str, tuple[str | None, str, str | None, int]]:
    """node -> (executor, status, error, benchmark samples with fps) of a campaign's runs."""
    engine = create_engine(db)
    try:
        with Session(engine) as s:
            try:
                c = s.scalar(select(Campaign).where(Campaign.name == name))
            except OperationalError:  # `lab run` is still creating its tables
                return {}
            if c is None:
                return {}
            out = {}
            for run in c.runs:
                n = s.scalar(select(func.count()).select_from(Sample).where(
                    Sample.run_id == run.id, Sample.step == "benchmark", Sample.fps.is_not(None)))
                out[run.node] = (run.executor, run.status, run.error, n)
            return out
    finally:
        engine.dispose()


def test_an_executor_missing_ansible_runner_is_one_line_before_anything_is_stored(racks, capsys, tmp_path):
    with without_ansible_runner(racks, "exec2"):
        db = tmp_path / "lab.db"
        code = main(["run", str(scenario_file(racks, RUNS, "missing")), "--inventory", str(racks.inventory),
                     "--db", f"sqlite:///{db}"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith("lab: error: executor exec2: no ansible-runner worker answered (exit 127; "), err
        assert "install ansible-runner" in err and "on executor exec2 (the controller's version)" in err
        assert not db.exists()  # nothing stored, no database even opened
        assert main(["check", "--inventory", str(racks.inventory)]) == 2
        out, err = capsys.readouterr()
        assert "OK executor exec1 (ansible-runner " in out and err.startswith("lab: error: executor exec2: "), out + err


def test_the_soak_through_two_executors_records_every_sample(racks, tmp_path):
    db = f"sqlite:///{tmp_path / 'lab.db'}"
    done = lab("run", str(scenario_file(racks, RUNS, "soak")), "--inventory", str(racks.inventory), "--db", db,
               "--name", "racks1", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    runs = benchmarks(db, "racks1")
    assert runs == {node: (racks.executor_of(node), "done", None, RUNS) for node in ("node1", "node2", "node3", "node4")}
    assert {racks.executor_of(n) for n in runs} == {"exec1", "exec2"}
    summary = done.stdout.splitlines()
    assert summary[0] == "campaign racks1: finished"
    assert all(f"{n} via {racks.executor_of(n)}" in done.stdout for n in runs)
    report = lab("report", "racks1", "--db", db, cwd=tmp_path)
    assert report.returncode == 0 and "node1 via exec1" in report.stdout, report.stderr[-2000:]
    # the controller never reached a node: its own key opens none of them
    assert ssh_cmd(racks, f"{NET}.1", "true").returncode == 255
    # and what travelled to an executor: no private data dir left, the controller's files cached by sha256
    exec1 = racks.executors()["exec1"]
    left = ssh_cmd(racks, exec1, "ls -A /var/tmp/lab-runner 2>/dev/null; ls ~/.cache/lab/files | wc -l", timeout=20)
    lines = left.stdout.split()
    assert lines[-1] != "0" and lines[:-1] == [], left.stdout


def test_an_executor_killed_mid_phase_loses_its_own_runs_only_and_resume_collects(racks, tmp_path):
    db = f"sqlite:///{tmp_path / 'lab.db'}"
    runs = 40
    env = {**os.environ}
    proc = subprocess.Popen(["nice", "-n", "10", str(Path(sys.executable).parent / "lab"), "run",
                             str(scenario_file(racks, runs, "long")), "--inventory", str(racks.inventory),
                             "--db", db, "--name", "lost1"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, env=env)
    exec2_nodes = [n for n in ("node1", "node2", "node3", "node4") if racks.executor_of(n) == "exec2"]
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:  # the soak is under way on exec2's nodes: some samples stored
            now = benchmarks(db, "lost1") if (tmp_path / "lab.db").exists() else {}
            if exec2_nodes and all(now.get(n, (0, 0, 0, 0))[3] >= 3 for n in exec2_nodes):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(1)
        else:
            raise AssertionError(f"exec2's nodes never began measuring: {now}")
        killed_at = time.monotonic()
        racks.power("exec2", "off")  # abruptly: its workers and ssh die with it
        out, err = proc.communicate(timeout=1200)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out + err[-3000:]
    after = benchmarks(db, "lost1")
    for node, (executor, status, error, samples) in after.items():
        if executor == "exec2":
            assert status == "infra_error" and error.startswith("soak: executor exec2 lost: "), (node, error)
            assert 3 <= samples < runs, (node, samples)  # every sample read before the loss is kept
        else:
            assert (executor, status, error, samples) == ("exec1", "done", None, runs), node
    assert time.monotonic() - killed_at < 600  # exec1's nodes finished; nobody waited out a phase timeout
    # exec2 comes back; its nodes measured on meanwhile (the agents never stopped): resume collects the rest
    racks.power("exec2", "on")
    racks.wait_ssh(["exec2"], 120)
    for _ in range(20):
        resumed = lab("resume", "lost1", "--db", db, cwd=tmp_path)
        assert resumed.returncode == 1, resumed.stdout + resumed.stderr[-2000:]
        now = benchmarks(db, "lost1")
        if all(now[n][3] == runs for n in exec2_nodes):
            break
        time.sleep(5)
    assert {n: now[n][1:] for n in exec2_nodes} == {n: ("infra_error", after[n][2], runs) for n in exec2_nodes}
    with Session(create_engine(db)) as s:  # the runs keep their executor
        assert {r.node: r.executor for r in s.scalars(select(Run))} == {n: racks.executor_of(n) for n in after}
    # the worker that died with exec2 left its private data dir; resume's executor check removed it
    left = ssh_cmd(racks, racks.executors()["exec2"], "ls -A /var/tmp/lab-runner", timeout=20)
    assert left.returncode == 0 and left.stdout.split() == [], left.stdout + left.stderr
