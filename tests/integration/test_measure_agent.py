"""The agent measures as real HailoRT wants it, on a two-node virtual fleet: configure cycles and continuous
inference through hailo_platform with numpy buffers (python3-h10-hailort pulls python3-numpy), from a fresh
boot whose wall clock is stepped inside the measuring phase, as on a Pi 5 without an RTC battery (every fps
stays right across the step: every rate comes from the monotonic clock); a node without the binding ends its
run saying so; a 4.23 benchmark that exits non-zero after its FPS keeps the figure."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from lab.cli import main
from lab.db.models import Campaign, Sample
from lab.virtual.fleet import Fleet
from tests.conftest import fleet_leftovers, require_fleet, ssh_cmd

pytestmark = pytest.mark.fleet
NET = "127.77.150"
STEP_S = 600.0  # how far behind the node's wall clock is at boot
STEP_AFTER_S = 50.0  # real seconds after boot at which it is stepped (the agent starts well before)
# node1 boots with its clock 10 min behind and has it stepped 50 s after boot, inside the measuring phase
# node2, a Hailo-8 on 4.23 whose benchmark's latency measurement times out after both FPS bars (exit 4)
PROFILE = f"""
nodes:
  node1: {{chip: hailo10h, wall_clock_step_s: {STEP_S}, wall_clock_step_after_s: {STEP_AFTER_S}}}
  node2: {{chip: hailo8, benchmark_latency_timeout: true}}
"""
HEF = "/usr/share/hailo-models/resnet_v1_50_h10.hef"
RESNET_FPS = 307.47  # its nominal fps on a Hailo-10H (docs/emulator.md); 5.1.1 does not leak
SCENARIO = f"""name: clock_step
description: configure cycles and continuous inference from a fresh boot, across the wall-clock step
matrix: {{stacks: [h10-5.1.1]}}
phases:
  - name: install
    steps:
      - provision
  - name: measure
    reboot: true
    steps:
      - configure_cycles: {{hef: {HEF}, count: 3, frames: 300}}
      - infer_continuous: {{hef: {HEF}, duration: 900}}
      - configure_cycles: {{hef: {HEF}, count: 3, frames: 300}}
"""
TIME_SCALE = 0.1  # 900 nominal s of inference: 90 real s, from about 10 s after boot


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A Hailo-10H node whose wall clock steps after boot, a Hailo-8 node whose 4.23 benchmark exits 4 late."""
    require_fleet()
    base = tmp_path_factory.mktemp("measure")
    (base / "profile.yaml").write_text(PROFILE)
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    fleet.up(profile=base / "profile.yaml", inventory=inventory, time_scale=TIME_SCALE)
    prefix = f"lab-{fleet.meta()['id']}-"
    try:
        yield fleet, base, inventory, f"sqlite:///{base / 'lab.db'}"
    finally:
        fleet.down()
        assert fleet_leftovers(fleet, prefix) == []


def test_rates_are_right_across_the_wall_clock_step(fleet, capsys, monkeypatch):
    fleet, base, inventory, db = fleet
    monkeypatch.chdir(base)
    (base / "clock_step.yaml").write_text(SCENARIO)
    code = main(["run", str(base / "clock_step.yaml"), "--inventory", str(inventory), "--db", db, "--name", "clk"])
    out = capsys.readouterr().out
    assert code == 0, out
    with Session(create_engine(db)) as s:
        c = s.scalar(select(Campaign).where(Campaign.name == "clk"))
        (run,) = c.runs
        assert run.status == "done" and run.error is None, run.error
        rows = s.execute(select(Sample.seq, Sample.step, Sample.ts, Sample.uptime, Sample.fps, Sample.error)
                         .where(Sample.run_id == run.id).order_by(Sample.seq)).all()
    measured = [r for r in rows if r.step in ("configure_cycles", "infer_continuous")]
    assert [r.step for r in measured] == ["configure_cycles"] * 3 + ["infer_continuous"] * 60 + ["configure_cycles"] * 3
    assert all(r.error is None for r in measured), [r.error for r in measured]
    # the step: between two records the wall clock moved STEP_S more than the (monotonic) uptime did
    after = [r for r in rows if r.uptime is not None]
    jumps = [(b.seq, (b.ts - a.ts).total_seconds() - (b.uptime - a.uptime)) for a, b in zip(after, after[1:])]
    stepped = [seq for seq, extra in jumps if extra > STEP_S / 2]
    assert len(stepped) == 1, jumps
    first, last = measured[0].seq, measured[-1].seq
    assert first < stepped[0] <= last, f"the step (record {stepped[0]}) fell outside the measurements {first}-{last}"
    # every rate is right, the one measured across the step too (a wall-clock rate there would be ~10x off)
    assert all(abs(r.fps - RESNET_FPS) < 0.2 * RESNET_FPS for r in measured), [(r.seq, r.fps) for r in measured]
    node_clock = ssh_cmd(fleet, f"{NET}.1", "python3", "-c", "'import time; print(time.time())'", timeout=20)
    assert node_clock.returncode == 0, node_clock.stderr  # the hook loads in every Python on the node


NO_BINDING = f"""name: no_binding
description: continuous inference on a node whose Python binding was removed
matrix: {{stacks: [h10-5.1.1]}}
phases:
  - name: measure
    steps:
      - infer_continuous: {{hef: {HEF}, duration: 30}}
      - collect: [cma]
"""


def test_a_node_without_the_python_binding_ends_its_run_naming_it(fleet, capsys, monkeypatch):
    """After the campaign above: python3-h10-hailort removed, the agent records why and the run is infra_error."""
    fleet, base, inventory, db = fleet
    monkeypatch.chdir(base)
    # the stack holds its packages and hailo-h10-all depends on the binding: take the binding alone away
    removed = ssh_cmd(fleet, f"{NET}.1", "dpkg", "--remove", "--force-depends", "python3-h10-hailort", timeout=120)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    (base / "no_binding.yaml").write_text(NO_BINDING)
    code = main(["run", str(base / "no_binding.yaml"), "--inventory", str(inventory), "--db", db, "--name", "nob"])
    out = capsys.readouterr().out
    assert code == 1, out  # an infra error: the run says nothing about the device
    with Session(create_engine(db)) as s:
        (run,) = s.scalar(select(Campaign).where(Campaign.name == "nob")).runs
        assert (run.status, run.verdict) == ("infra_error", "infra_error")
        assert run.error.startswith("measure: infer_continuous: HailoRT's Python binding is not installed"), run.error
        rows = s.execute(select(Sample.step, Sample.error).where(Sample.run_id == run.id).order_by(Sample.seq)).all()
    # the pre-flight found the node ready and the device free: the missing binding is what failed
    assert [r.step for r in rows] == ["phase_start", "system", "preflight", "infer_continuous", "collect", "phase_end"]
    assert rows[2].error is None and "no hailo_platform" in rows[3].error


LATE_EXIT = """name: late_exit
description: HailoRT 4.23 benchmarks that exit non-zero after printing their FPS
matrix: {stacks: [h8-4.23.0]}
phases:
  - name: install
    steps:
      - provision
  - name: soak
    steps:
      - benchmark: {hef: /usr/share/hailo-models/yolov8s_h8.hef, runs: 2, time_to_run: 15}
"""


def test_a_4_23_benchmark_that_exits_non_zero_after_its_fps_keeps_the_figure(fleet, capsys, monkeypatch):
    fleet, base, inventory, db = fleet
    monkeypatch.chdir(base)
    (base / "late_exit.yaml").write_text(LATE_EXIT)
    code = main(["run", str(base / "late_exit.yaml"), "--inventory", str(inventory), "--db", db, "--name", "late"])
    out = capsys.readouterr().out
    assert code == 0, out
    with Session(create_engine(db)) as s:
        (run,) = s.scalar(select(Campaign).where(Campaign.name == "late")).runs
        assert (run.node, run.status, run.verdict) == ("node2", "done", "stable")
        rows = s.execute(select(Sample.fps, Sample.error, Sample.extra).where(
            Sample.run_id == run.id, Sample.step == "benchmark").order_by(Sample.seq)).all()
    assert len(rows) == 2
    assert all(abs(r.fps - 309.4) < 5 for r in rows), [r.fps for r in rows]  # the streaming bar's FPS
    assert all(r.extra["rc"] == 4 and r.error == "exit 4 after the FPS was printed: HAILO_TIMEOUT(4)" for r in rows)
