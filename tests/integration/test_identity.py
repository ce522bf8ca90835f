"""A HAT that moves between Pis stays one unit (issue 13, identity), on a 2-node virtual fleet: a campaign, the
HATs swapped (`lab fleet swap-hats`), a second campaign; units keyed by the chip's SoC ID, each run saying
which Pi its HAT sat in, and `lab nodes --json` showing both."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from lab.cli import main
from lab.db.models import Campaign, Unit
from lab.virtual.fleet import Fleet
from tests.conftest import fleet_leftovers, require_fleet

pytestmark = pytest.mark.fleet
NET = "127.77.151"
PROFILE = """
nodes:
  node1: {chip: hailo10h}
  node2: {chip: hailo10h, cma_leak: 0.0}
"""
SCENARIO = """name: hatmove
matrix: {stacks: [h10-5.1.1]}
phases:
  - name: install
    steps:
      - provision: {}
  - name: soak
    steps:
      - identify
      - benchmark: {hef: /usr/share/hailo-models/resnet_v1_50_h10.hef, runs: 2, time_to_run: 5}
"""


@pytest.fixture(scope="module")
def rack(tmp_path_factory):
    require_fleet()
    base = tmp_path_factory.mktemp("hatmove")
    (base / "profile.yaml").write_text(PROFILE)
    (base / "hatmove.yaml").write_text(SCENARIO)
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    fleet.up(profile=base / "profile.yaml", inventory=inventory, time_scale=0.01)
    prefix = f"lab-{fleet.meta()['id']}-"
    try:
        yield fleet, base, inventory, f"sqlite:///{base / 'lab.db'}"
    finally:
        fleet.down()
        assert fleet_leftovers(fleet, prefix) == []


def nodes_json(inventory, capsys) -> dict:
    code = main(["nodes", "--inventory", str(inventory), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return {row["node"]: row for row in json.loads(out)["nodes"]}


def test_a_hat_that_moves_is_one_unit_with_runs_in_both_pis(rack, capsys, monkeypatch):
    fleet, base, inventory, db = rack
    monkeypatch.chdir(base)
    monkeypatch.setenv("LAB_FLEET_DIR", str(fleet.root))
    monkeypatch.setenv("LAB_FLEET_NET", NET)
    before = nodes_json(inventory, capsys)
    assert main(["run", str(base / "hatmove.yaml"), "--inventory", str(inventory), "--db", db, "--name", "first"]) == 0
    capsys.readouterr()
    installed = nodes_json(inventory, capsys)
    pis = {n: installed[n]["pi"]["serial"] for n in ("node1", "node2")}
    hats = {n: installed[n]["hat"]["unit"] for n in ("node1", "node2")}
    assert all(len(s) == 16 for s in pis.values()) and pis["node1"] != pis["node2"]
    assert all(h.startswith("soc:") for h in hats.values()) and hats["node1"] != hats["node2"]
    assert installed["node1"]["pi"]["model"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert installed["node1"]["hat"]["serial"] is None  # 5.1.1 prints no serial line for an AI HAT+ 2
    assert before["node1"]["pi"] == installed["node1"]["pi"]

    assert main(["fleet", "swap-hats", "node1", "node2"]) == 0
    capsys.readouterr()
    swapped = nodes_json(inventory, capsys)
    assert {n: swapped[n]["pi"]["serial"] for n in pis} == pis  # the Pis stay
    assert {n: swapped[n]["hat"]["unit"] for n in hats} == {"node1": hats["node2"], "node2": hats["node1"]}

    assert main(["run", str(base / "hatmove.yaml"), "--inventory", str(inventory), "--db", db, "--name", "second"]) == 0
    capsys.readouterr()
    with Session(create_engine(db)) as s:
        units = {u.key: u for u in s.scalars(select(Unit))}
        assert set(units) == set(hats.values())  # the same 2 units, keyed by SoC ID
        runs = {}
        for name in ("first", "second"):
            campaign = s.scalar(select(Campaign).where(Campaign.name == name))
            for run in campaign.runs:
                runs[(name, run.node)] = (run.unit.key, run.host_serial, run.host_model)
        for node, other in (("node1", "node2"), ("node2", "node1")):
            hat = hats[node]
            assert runs[("first", node)] == (hat, pis[node], "Raspberry Pi 5 Model B Rev 1.0")
            assert runs[("second", other)] == (hat, pis[other], "Raspberry Pi 5 Model B Rev 1.0")  # same HAT, other Pi
            assert units[hat].node == other and units[hat].identity["soc_id"] == hat.removeprefix("soc:")
