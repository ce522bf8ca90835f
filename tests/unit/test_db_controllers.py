"""Several controllers on one database: real processes and connections migrating, creating campaigns and claiming
campaign names at the same moment (SQLite, and PostgreSQL when configured; the claims are PostgreSQL's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.orm import Session

from lab.cli import main
from lab.controller import controller_name
from lab.db.models import Base, Campaign, Run, Stack, Unit
from lab.db.session import current_revision, head_revision, make_engine, open_database
from lab.db.store import SqlStore
from lab.engine.campaign import Ports, resume_campaign, run_campaign
from lab.engine.memory import MemoryFleet, measuring_node
from lab.errors import ConfigError
from tests.unit.test_engine_campaign import plan  # noqa: F401  (the fixture)

# A controller process: waits at the start line (a file), then does one thing and prints what it saw.
CONTROLLER = """
import sys, time
from pathlib import Path
ready, go, what, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
from lab.db.session import current_revision, open_database
from lab.db.store import SqlStore
ready.touch()
while not go.exists():
    time.sleep(0.005)
if what == "migrate":
    print(current_revision(open_database(url)))
elif what == "claim":
    with SqlStore(open_database(url)).claim(sys.argv[5]):
        print("claimed", flush=True)
        time.sleep(600)
"""


def controllers(tmp_path: Path, count: int, *args: str) -> list[subprocess.Popen]:
    """`count` controller processes doing `args`, released at the same instant once all have started."""
    go = tmp_path / "go"
    procs = []
    for i in range(count):
        ready = tmp_path / f"ready{i}"
        procs.append(subprocess.Popen([sys.executable, "-c", CONTROLLER, str(ready), str(go), *args],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(count)):
        assert time.monotonic() < deadline, "the controller processes did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()
    return procs


def test_controllers_starting_at_once_on_a_fresh_database_migrate_it_once(db_url, tmp_path):
    procs = controllers(tmp_path, 3, "migrate", db_url)
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert [out.strip() for out, _ in outs] == [head_revision()] * 3
    engine = make_engine(db_url, where="test")
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM alembic_version")) == 1
            assert set(Base.metadata.tables) <= set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_two_controllers_create_campaigns_with_the_same_stacks_at_once(plan, db_url):  # noqa: F811
    """The stack row both campaigns need is created by one, found by the other; ids never mix."""
    engines = [open_database(db_url) for _ in range(2)]  # two controllers: two engines, their own connections
    start = threading.Barrier(2)

    def create(i: int) -> tuple[int, dict[int, int]]:
        start.wait()
        return SqlStore(engines[i]).create(plan, f"c{i}", f"lab run #{i}")

    try:
        with ThreadPoolExecutor(2) as pool:
            (id0, runs0), (id1, runs1) = pool.map(create, range(2))
        assert id0 != id1 and not set(runs0.values()) & set(runs1.values())
        with Session(engines[0]) as s:
            assert s.scalar(select(func.count()).select_from(Stack)) == 1
            for campaign_id, runs in ((id0, runs0), (id1, runs1)):
                stored = s.scalars(select(Run).where(Run.campaign_id == campaign_id)).all()
                assert {r.index: r.id for r in stored} == runs and len(stored) == len(plan.runs)
    finally:
        for engine in engines:
            engine.dispose()


def test_two_controllers_meeting_a_new_unit_at_once_store_it_once(db_url):
    from lab.db.ingest import upsert_unit

    engines = [open_database(db_url) for _ in range(2)]
    start = threading.Barrier(2)

    def meet(i: int) -> int:
        start.wait()
        with Session(engines[i]) as s, s.begin():
            return upsert_unit(s, f"node{i}", serial="HS-1", soc_id="ABC", chip="hailo10h").id

    try:
        with ThreadPoolExecutor(2) as pool:
            ids = list(pool.map(meet, range(2)))
        assert ids[0] == ids[1]
        with Session(engines[0]) as s:
            assert s.scalar(select(func.count()).select_from(Unit)) == 1
    finally:
        for engine in engines:
            engine.dispose()


# ---- one controller per campaign name (PostgreSQL advisory locks) ---------------------------------------------
@pytest.fixture
def pg_url(db_url) -> str:
    """A fresh PostgreSQL database (the SQLite case of `db_url` is skipped: it has no claims)."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has no advisory locks: several controllers need PostgreSQL")
    return db_url


def test_a_campaign_name_is_claimed_by_one_controller_at_a_time(pg_url):
    first, second = open_database(pg_url), make_engine(pg_url, where="test")
    try:
        with SqlStore(first).claim("c1"):
            with pytest.raises(ConfigError) as refused, SqlStore(second).claim("c1"):
                pass
            with SqlStore(second).claim("c2"):  # another name is free
                pass
        assert str(refused.value).startswith(
            f"campaign c1 is being run by another controller (controller {controller_name()}, connected 20")
        assert "\n" not in str(refused.value)
        with SqlStore(second).claim("c1"):  # given back at the end of the block
            pass
    finally:
        first.dispose()
        second.dispose()


def test_a_controller_that_dies_leaves_its_campaign_name_free(pg_url, tmp_path):
    open_database(pg_url).dispose()
    (holder,) = controllers(tmp_path, 1, "claim", pg_url, "c1")
    try:
        assert holder.stdout.readline() == "claimed\n", holder.stderr.read()
        engine = make_engine(pg_url, where="test")
        with pytest.raises(ConfigError, match=rf"\(controller \S+ pid {holder.pid}, connected "), \
                SqlStore(engine).claim("c1"):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        deadline = time.monotonic() + 30  # the server notices the closed connection at once, but not synchronously
        while True:
            try:
                with SqlStore(engine).claim("c1"):
                    break
            except ConfigError:
                assert time.monotonic() < deadline, "the dead controller's claim was not released"
                time.sleep(0.2)
        engine.dispose()
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()


def test_the_same_campaign_name_from_two_controllers_runs_once(plan, pg_url):  # noqa: F811
    """Controller A runs c1; B asks for c1 on other nodes while it runs: B is refused before touching a node or the
    database, A finishes undisturbed."""
    a_engine, b_engine = open_database(pg_url), open_database(pg_url)
    running, finish = threading.Event(), threading.Event()

    def slow(node: str, spec: dict):
        if spec["agent"]["phase"] == "soak":
            running.set()
            assert finish.wait(60)
        return measuring_node()(node, spec)

    a_fleet, b_fleet = MemoryFleet({"pi-01": slow, "pi-02": slow}), MemoryFleet({})
    a_ports = Ports(a_fleet, a_fleet.open_files, SqlStore(a_engine), a_fleet.power_for)
    b_ports = Ports(b_fleet, b_fleet.open_files, SqlStore(b_engine), b_fleet.power_for)
    try:
        with ThreadPoolExecutor(1) as pool:
            a = pool.submit(run_campaign, a_ports, plan, "c1", "lab run A")
            assert running.wait(60)
            with pytest.raises(ConfigError, match=r"^campaign c1 is being run by another controller \(controller "):
                run_campaign(b_ports, plan, "c1", "lab run B")
            with pytest.raises(ConfigError, match=r"being run by another controller"):  # nor resumed by another
                resume_campaign(b_ports, "c1")
            assert b_fleet.holders == {} and b_fleet.phases_run == []
            finish.set()
            assert a.result(timeout=60)[2] == 0
        with Session(a_engine) as s:
            assert s.scalars(select(Campaign.command_line)).all() == ["lab run A"]
        with pytest.raises(ConfigError, match="a campaign named 'c1' already exists"):  # and once it is done
            run_campaign(b_ports, plan, "c1", "lab run B")
    finally:
        finish.set()
        a_engine.dispose()
        b_engine.dispose()


def test_a_generated_name_another_controller_holds_is_drawn_again(plan, pg_url, monkeypatch):  # noqa: F811
    import lab.engine.campaign as campaign_module

    names = iter(["soak-20261202-075500-aaaa", "soak-20261202-075500-bbbb"])
    monkeypatch.setattr(campaign_module, "new_campaign_name", lambda scenario: next(names))
    engine, other = open_database(pg_url), make_engine(pg_url, where="test")
    fleet = MemoryFleet({"pi-01": measuring_node(), "pi-02": measuring_node()})
    try:
        with SqlStore(other).claim("soak-20261202-075500-aaaa"):
            name, _, code = run_campaign(Ports(fleet, fleet.open_files, SqlStore(engine), fleet.power_for), plan)
        assert (name, code) == ("soak-20261202-075500-bbbb", 0)
    finally:
        engine.dispose()
        other.dispose()


def test_lab_run_with_a_name_another_controller_runs_is_one_line_and_exit_2(plan, pg_url, tmp_path, capsys):  # noqa: F811
    """Refused before any node is reached (the inventory's addresses are TEST-NET, never answered) or anything written."""
    engine = open_database(pg_url)
    try:
        with SqlStore(engine).claim("c1"):
            code = main(["run", str(tmp_path / "soak.yaml"), "--inventory", str(tmp_path / "rack.yml"),
                         "--db", pg_url, "--name", "c1"])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith(f"lab: error: campaign c1 is being run by another controller (controller "
                              f"{controller_name()}, connected "), err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.rstrip().endswith("wait for it to finish, or give this campaign another --name")
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(Campaign)) == 0
    finally:
        engine.dispose()


def test_a_store_gives_a_name_clash_at_creation_as_one_line(plan, db_url):  # noqa: F811
    """SQLite has no claims: a name another controller created meanwhile is a ConfigError, not a traceback."""
    engine = open_database(db_url)
    try:
        SqlStore(engine).create(plan, "c1", "lab run A")
        with pytest.raises(ConfigError, match="a campaign named 'c1' already exists, --name, another controller"):
            SqlStore(engine).create(plan, "c1", "lab run B")
    finally:
        engine.dispose()


def test_a_refused_creation_gives_the_nodes_back(plan, db_url):  # noqa: F811
    engine = open_database(db_url)
    fleet = MemoryFleet({"pi-01": measuring_node(), "pi-02": measuring_node()})
    store = SqlStore(engine)
    looks = iter([False])  # the first look finds no c1: another controller creates it right after
    real = store.campaign_exists
    store.campaign_exists = lambda name: next(looks, real(name))
    try:
        SqlStore(engine).create(plan, "c1", "lab run A")
        with pytest.raises(ConfigError, match="already exists"):
            run_campaign(Ports(fleet, fleet.open_files, store, fleet.power_for), plan, "c1")
        assert fleet.holders == {} and fleet.released == [["pi-01", "pi-02"]]
    finally:
        engine.dispose()
