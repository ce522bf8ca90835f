"""Power control end to end (issue 14) on a 2-node virtual fleet behind its real pdudaemon: `lab power`,
a hung reboot and a frozen node recovered by a power cycle with every sample kept, the recovery matrix
finding the unit that only a cold cycle restores, and a PDU that refuses."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from lab.cli import main
from lab.db.models import Campaign, PowerEvent, Run, Sample
from lab.virtual.emulator.packaging import build_hailo_files, build_models
from lab.virtual.fleet import Fleet
from tests.conftest import PROJECT, fleet_leftovers, require_fleet, ssh_cmd

pytestmark = pytest.mark.fleet
NET = "127.77.173"
SOAK = """name: {name}
matrix: {{stacks: [h10-5.3.0]}}
reboot_timeout: 90
phases:
  - name: install
    steps: [provision]
  - name: soak
    reboot: true
    steps:
      - benchmark: {{hef: yolo26s_hailo10h.hef, runs: {runs}, time_to_run: {seconds}}}
"""


@pytest.fixture(scope="module")
def power_fleet(tmp_path_factory):
    """node1's HAT keeps power through a warm reboot, node2's does not (profiles/cold.yaml); time scale 0.02."""
    require_fleet()
    base = tmp_path_factory.mktemp("powerrun")
    build_hailo_files(base / "hailo-files")  # beside the inventory, as a person downloads them from Hailo
    build_models(base / "models")  # the field report's model, on the controller
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    prefix = None
    try:
        fleet.up(profile=PROJECT / "profiles" / "cold.yaml", inventory=inventory, time_scale=0.02)
        prefix = f"lab-{fleet.meta()['id']}-"
        yield fleet, inventory, base
    finally:
        fleet.down()
        if prefix:
            assert fleet_leftovers(fleet, prefix) == []


def run(capsys, base: Path, inventory: Path, scenario: Path, name: str) -> tuple[int, str]:
    """`lab run` from the fleet's directory, where the field report's model is (models/)."""
    with contextlib.chdir(base):
        code = main(["run", str(scenario), "--inventory", str(inventory), "--db", f"sqlite:///{base / 'lab.db'}",
                     "--name", name])
    return code, capsys.readouterr().out


def soak(base: Path, name: str, runs: int = 5, seconds: int = 15) -> Path:
    path = base / f"{name}.yaml"
    path.write_text(SOAK.format(name=name, runs=runs, seconds=seconds))
    return path


def stored(base: Path, name: str):
    """{node: (verdict, error, benchmark run numbers in record order, [(recovery, reason, ok)])}."""
    with Session(create_engine(f"sqlite:///{base / 'lab.db'}")) as s:
        campaign = s.scalar(select(Campaign).where(Campaign.name == name))
        out = {}
        for r in campaign.runs:
            runs = s.scalars(select(Sample.run_index).where(Sample.run_id == r.id, Sample.step == "benchmark",
                                                            Sample.fps.is_not(None)).order_by(Sample.seq)).all()
            power = s.execute(select(PowerEvent.recovery, PowerEvent.reason, PowerEvent.ok)
                              .where(PowerEvent.run_id == r.id).order_by(PowerEvent.id)).all()
            out[r.node] = (r.verdict, r.error, list(runs), [tuple(p) for p in power])
        return out


def test_the_recovery_matrix_finds_the_unit_that_only_a_cold_cycle_restores(power_fleet, capsys, tmp_path):
    """First on the fresh fleet: node1's HAT keeps through a warm reboot whatever firmware an earlier campaign's
    stack loaded (as a real one would), so this campaign starts from chips that have just been powered on."""
    fleet, inventory, base = power_fleet
    code, out = run(capsys, base, inventory, PROJECT / "scenarios" / "recovery_matrix.yaml", "matrix")
    assert code == 0, out
    assert main(["report", "matrix", "--db", f"sqlite:///{base / 'lab.db'}", "--format", "json",
                 "-o", str(tmp_path / "r.json")]) == 0
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    outcomes = {r["node"]: {o["action"]: o["outcome"] for o in r["recovery"]["outcomes"]}
                for r in report["runs"] if r["recovery"]}
    # node1's HAT stays powered through a warm reboot: its bricked chip survives it, only the cold cycle restores
    assert outcomes["node1"]["reboot"] == "device_error" and outcomes["node1"]["power_cycle"] == "recovered"
    assert outcomes["node2"]["reboot"] == "recovered"
    assert all([p["recovery"] for p in r["power"]] == [False] for r in report["runs"])  # the scenario's own cycles
    assert main(["report", "matrix", "--db", f"sqlite:///{base / 'lab.db'}"]) == 0
    text = capsys.readouterr().out
    assert "power cycles" in text and "power_cycle: power_cycle -> new boot after" in text


def boot_id(fleet: Fleet, node: str) -> str | None:
    """The node's boot_id over real SSH, None while it does not answer."""
    proc = ssh_cmd(fleet, f"{NET}.{node.removeprefix('node')}", "cat /proc/sys/kernel/random/boot_id", timeout=5)
    return proc.stdout.strip() if proc.returncode == 0 else None


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_lab_power_through_the_fleets_pdudaemon(power_fleet, capsys):
    fleet, inventory, base = power_fleet
    label = f"pdudaemon {NET}.254:16521 virtual-fleet port 2"
    old = wait_for(lambda: boot_id(fleet, "node2"), 120, "node2 up")
    assert main(["power", "node2", "off", "--inventory", str(inventory)]) == 0
    assert capsys.readouterr().out.startswith(f"node2: off ({label}: ")
    wait_for(lambda: boot_id(fleet, "node2") is None, 60, "node2's power cut")
    assert boot_id(fleet, "node1") is not None  # the other node is untouched
    assert main(["power", "node2", "status", "--inventory", str(inventory)]) == 0
    assert capsys.readouterr().out.startswith(f"node2: unknown ({label}: ")  # pdudaemon has no status request
    assert main(["power", "node2", "on", "--inventory", str(inventory)]) == 0
    assert capsys.readouterr().out.startswith(f"node2: on ({label}: ")
    on = wait_for(lambda: boot_id(fleet, "node2"), 180, "node2 back")
    assert on != old
    before = {n: boot_id(fleet, n) for n in ("node1", "node2")}
    assert main(["power", "node1", "node2", "cycle", "--inventory", str(inventory), "--json"]) == 0
    import json

    results = json.loads(capsys.readouterr().out)
    assert [(r["node"], r["action"], r["ok"]) for r in results] == [("node1", "cycle", True), ("node2", "cycle", True)]
    for node in ("node1", "node2"):
        wait_for(lambda n=node: boot_id(fleet, n) not in (None, before[n]), 180, f"{node}'s new boot")
    assert main(["power", "node9", "status", "--inventory", str(inventory)]) == 2  # bad input: one line, exit 2
    assert capsys.readouterr().err.count("\n") == 1


def fresh_chips(fleet: Fleet, inventory: Path, capsys) -> None:
    """Cut both nodes' power, as a person would before a campaign: node1's HAT keeps through warm reboots
    whatever an earlier campaign left on its chip (a bricked chip after the recovery matrix)."""
    before = {n: boot_id(fleet, n) for n in ("node1", "node2")}
    assert main(["power", "node1", "node2", "cycle", "--inventory", str(inventory)]) == 0
    capsys.readouterr()
    for node in ("node1", "node2"):
        wait_for(lambda n=node: boot_id(fleet, n) not in (None, before[n]), 180, f"{node}'s new boot")


def test_a_hung_reboot_is_cycled_and_the_node_finishes_its_phases(power_fleet, capsys):
    fleet, inventory, base = power_fleet
    fresh_chips(fleet, inventory, capsys)  # the stack (the matrix's 5.3.0) is installed: no firmware reboot
    fleet.fault("node2", "hang-reboot")  # its next reboot (the soak's) never comes back by itself
    code, out = run(capsys, base, inventory, soak(base, "hung"), "hung")
    assert code == 0, out
    got = stored(base, "hung")
    assert got["node1"][:3] == ("stable", None, [1, 2, 3, 4, 5]) and got["node1"][3] == []
    verdict, error, runs, power = got["node2"]
    assert (verdict, error, runs) == ("stable", None, [1, 2, 3, 4, 5])
    assert [(rec, ok) for rec, _, ok in power] == [(True, True)]
    assert power[0][1].startswith("soak: ") and "Reboot before the phase" in power[0][1]


def test_a_frozen_node_is_cycled_and_keeps_every_sample(power_fleet, capsys):
    fleet, inventory, base = power_fleet
    fresh_chips(fleet, inventory, capsys)
    db = create_engine(f"sqlite:///{base / 'lab.db'}")

    def freeze_after_the_first_sample():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with Session(db) as s:
                first = s.scalar(select(Sample.id).join(Run).join(Campaign).where(
                    Campaign.name == "frozen", Run.node == "node2", Sample.step == "benchmark").limit(1))
            if first is not None:
                fleet.fault("node2", "freeze")
                return
            time.sleep(0.5)

    freezer = threading.Thread(target=freeze_after_the_first_sample, daemon=True)
    freezer.start()
    code, out = run(capsys, base, inventory, soak(base, "frozen", runs=12, seconds=90), "frozen")
    freezer.join(timeout=5)
    assert code == 0, out
    verdict, error, runs, power = stored(base, "frozen")["node2"]
    assert runs == list(range(1, 13))  # the samples before the freeze kept, none measured twice
    assert [(rec, ok) for rec, _, ok in power] == [(True, True)] and power[0][1].startswith("soak: unreachable")
    assert stored(base, "frozen")["node1"][2] == list(range(1, 13))


def test_a_pdu_that_refuses_leaves_its_node_infra_error_and_the_other_goes_on(power_fleet, capsys):
    fleet, inventory, base = power_fleet
    fresh_chips(fleet, inventory, capsys)
    data = yaml.safe_load(inventory.read_text())
    data["virtual"]["hosts"]["node2"]["lab_power"]["pdu"] = "no-such-pdu"  # pdudaemon refuses a PDU it does not know
    refusing = inventory.with_name("refusing.yml")
    refusing.write_text(yaml.safe_dump(data))
    scenario = base / "cold.yaml"
    scenario.write_text(SOAK.format(name="cold", runs=3, seconds=15).replace("    reboot: true\n",
                                                                              "    power_cycle: true\n"))
    code, out = run(capsys, base, refusing, scenario, "refused")
    assert code == 1, out
    got = stored(base, "refused")
    assert got["node1"][:3] == ("stable", None, [1, 2, 3])
    verdict, error, runs, power = got["node2"]
    assert verdict == "infra_error" and runs == []
    assert error.startswith("soak: failed: power cycle refused: ") and "no-such-pdu" in error
    assert [(rec, ok) for rec, _, ok in power] == [(False, False)]
