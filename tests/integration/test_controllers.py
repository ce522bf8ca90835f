"""Two controllers, one PostgreSQL database, on a real 4-node virtual fleet (issue 15).

Two `lab run` processes, each with its own working directory and inventory (disjoint halves of the fleet),
start at the same moment on a fresh PostgreSQL database (both migrate it at once) and write it side by side;
a third controller asking for nodes of both halves is refused by the node locks, naming the campaign and the
controller that holds them, and a fourth asking for a name already running is refused by the database claim;
neither disturbs the two campaigns. Real ansible-runner, SSH and PostgreSQL ($LAB_TEST_PG_URL, which
scripts/with-postgres sets); the agents' record files on the nodes are the truth the database is checked against.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, make_url, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from lab.cli import main
from lab.db.models import Campaign, Run, Sample
from lab.virtual.emulator.packaging import build_hailo_files, build_models
from lab.virtual.fleet import Fleet
from tests.conftest import PROJECT, fleet_leftovers, require_fleet, ssh_cmd
from tests.db_fixtures import pg_server_url

pytestmark = [pytest.mark.fleet, pytest.mark.postgres]
NET = "127.77.183"
NODES = ("node1", "node2", "node3", "node4")
HALVES = {"ctl-a": ("node1", "node2"), "ctl-b": ("node3", "node4")}  # campaign (and controller) -> its nodes
STACK = "h10-5.3.0"
HEF = "yolo26s_hailo10h.hef"
RUNS = 60
SCENARIO = f"""name: two-controllers
matrix: {{stacks: [{STACK}]}}
recover: none
phases:
  - name: warm
    steps: [identify]
  - name: soak
    steps:
      - benchmark: {{hef: {HEF}, runs: {RUNS}, time_to_run: 15}}
"""


@pytest.fixture(scope="module")
def fleet4(tmp_path_factory):
    """4 Hailo-10H nodes at time scale 0.02 with STACK installed; an inventory per half beside the fleet's."""
    require_fleet()
    pg_server_url()  # skipped (failed under CI) without PostgreSQL, before a fleet is booted
    base = tmp_path_factory.mktemp("controllers")
    shutil.copytree(PROJECT / "stacks", base / "stacks")
    build_hailo_files(base / "hailo-files")  # the inventory's ../hailo-files
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    fleet.up(nodes=len(NODES), inventory=inventory, time_scale=0.02)
    prefix = f"lab-{fleet.meta()['id']}-"
    try:
        assert main(["provision", STACK, "--inventory", str(inventory)]) == 0
        data = yaml.safe_load(inventory.read_text())
        for campaign, nodes in HALVES.items():  # beside the fleet's: `../hailo-files` resolves the same
            half = {"virtual": {**data["virtual"], "hosts": {n: data["virtual"]["hosts"][n] for n in nodes}}}
            (inventory.parent / f"{campaign}.yml").write_text(yaml.safe_dump(half, sort_keys=False))
        yield fleet, base, inventory
    finally:
        fleet.down()
        assert fleet_leftovers(fleet, prefix) == []


@pytest.fixture
def fresh_pg():
    """A new, empty PostgreSQL database (no schema yet: the controllers create it), dropped afterwards."""
    server = make_url(pg_server_url())
    name = f"lab_controllers_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def lab(cwd: Path, *args: str) -> subprocess.Popen:
    """`lab ARGS` as a controller process of its own, in its own working directory."""
    return subprocess.Popen([sys.executable, "-m", "lab", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def node_samples(fleet: Fleet, campaign: str, node: str) -> list[dict]:
    """The benchmark samples the node's agent recorded (its own file, read from the node's disk)."""
    path = fleet.node(node).upper / "var/lib/lab-agent" / campaign / "records.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [r for r in records if r["kind"] == "sample" and r.get("step") == "benchmark"]


def stored_samples(engine, campaign: str, node: str) -> list[tuple[int, float | None, int | None]]:
    with Session(engine) as s:
        return s.execute(select(Sample.seq, Sample.fps, Sample.run_index).join(Run, Sample.run_id == Run.id)
                         .join(Campaign).where(Campaign.name == campaign, Run.node == node,
                                               Sample.step == "benchmark").order_by(Sample.seq)).all()


def wait_running(engine, procs: dict[str, subprocess.Popen], samples: int = 3, timeout: float = 300) -> None:
    """Until every node of both campaigns has stored `samples` benchmark samples (both controllers running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for campaign, proc in procs.items():
            assert proc.poll() is None, (campaign, proc.communicate())
        try:
            if all(len(stored_samples(engine, c, n)) >= samples for c, nodes in HALVES.items() for n in nodes):
                return
        except (OperationalError, ProgrammingError):  # the schema may not exist yet while the controllers migrate
            pass
        time.sleep(0.3)
    raise AssertionError("the two campaigns never got going")


def test_two_controllers_write_one_postgresql_and_node_locks_refuse_an_overlap(fleet4, fresh_pg, capsys):
    fleet, base, inventory = fleet4
    procs: dict[str, subprocess.Popen] = {}
    engine = create_engine(fresh_pg)
    try:
        for campaign in HALVES:
            home = base / campaign  # each controller its own directory: its models, its ansible-runner files
            build_models(home / "models")
            (home / "scenario.yaml").write_text(SCENARIO)
        for campaign in HALVES:  # started together on the fresh database: both migrate it at once
            procs[campaign] = lab(base / campaign, "run", "scenario.yaml", "--inventory",
                                  str(inventory.parent / f"{campaign}.yml"), "--db", fresh_pg, "--name", campaign)
        wait_running(engine, procs)
        holder = procs["ctl-a"].pid

        # a third controller wants node2 (ctl-a's) and node3 (ctl-b's): refused by their locks, one line, exit 2
        third = subprocess.run([sys.executable, "-m", "lab", "run", "scenario.yaml", "--inventory", str(inventory),
                                "--limit", "node2,node3", "--db", fresh_pg, "--name", "third"], cwd=base / "ctl-a",
                               capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
        assert third.returncode == 2, (third.stdout, third.stderr)
        assert re.fullmatch(
            rf"lab: error: node2 is in use by campaign ctl-a \(controller \S+@\S+ pid {holder} since "
            r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ\), a per-node lock \(/var/lib/lab-agent/lock\); "
            rf"1 more node in use: node3, {re.escape(str(inventory))}, wait for that campaign to finish; "
            r"if it is gone, `lab resume` it or remove the lock\n", third.stderr), third.stderr

        # a fourth asks for a name another controller is running: refused by the database before any node
        fourth = subprocess.run([sys.executable, "-m", "lab", "run", "scenario.yaml", "--inventory",
                                 str(inventory.parent / "ctl-b.yml"), "--db", fresh_pg, "--name", "ctl-a"],
                                cwd=base / "ctl-b", capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                timeout=120)
        assert fourth.returncode == 2, (fourth.stdout, fourth.stderr)
        assert re.fullmatch(rf"lab: error: campaign ctl-a is being run by another controller \(controller "
                            rf"\S+@\S+ pid {holder}, connected [^)]*\), \S+, wait for it to finish, or give this "
                            r"campaign another --name\n", fourth.stderr), fourth.stderr

        for campaign, proc in procs.items():
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, (campaign, out, err)
            assert "Traceback" not in out + err
            assert out.splitlines()[0] == f"campaign {campaign}: finished", out

        with Session(engine) as s:
            assert sorted(s.scalars(select(Campaign.name))) == ["ctl-a", "ctl-b"]  # nothing of third or fourth
            for campaign, nodes in HALVES.items():
                runs = s.scalars(select(Run).join(Campaign).where(Campaign.name == campaign)).all()
                assert sorted(r.node for r in runs) == list(nodes)
                assert {(r.status, r.error) for r in runs} == {("done", None)}
        for campaign, nodes in HALVES.items():  # every sample of every node, each exactly once
            for node in nodes:
                stored = stored_samples(engine, campaign, node)
                assert [(seq, fps) for seq, fps, _ in stored] == [(r["seq"], r["fps"])
                                                                for r in node_samples(fleet, campaign, node)]
                assert [index for _, _, index in stored] == list(range(1, RUNS + 1)), (campaign, node)
        for node in NODES:  # every lock given back, the refused ones took none
            assert ssh_cmd(fleet, f"{NET}.{NODES.index(node) + 1}", "test -e /var/lib/lab-agent/lock").returncode == 1
            assert not (fleet.node(node).upper / "var/lib/lab-agent/third").exists()

        # either controller's database is the other's: both campaigns listed and reported from one place
        capsys.readouterr()
        assert main(["campaigns", "--db", fresh_pg]) == 0
        listed = capsys.readouterr().out
        assert all(re.search(rf"^{c}\s+two-controllers\s+finished\s", listed, re.M) for c in HALVES), listed
        for campaign, nodes in HALVES.items():
            assert main(["report", campaign, "--db", fresh_pg, "--format", "json"]) == 0
            report = json.loads(capsys.readouterr().out)
            assert report["campaign"]["name"] == campaign
            assert sorted(r["node"] for r in report["runs"]) == list(nodes)
    finally:
        for proc in procs.values():  # a failed test leaves no controller behind (each in its own session)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.communicate(timeout=60)
        engine.dispose()
