"""The agent fit for real HailoRT: numpy buffers, monotonic rates, failures that end the phase, 4.23's late exit."""

from __future__ import annotations

import os
import sys
import time

import pytest

from lab.agent.records import RecordLog, read_records
from lab.agent.steps import Agent, Buffers
from lab.contract import AgentSpec
from lab.virtual.emulator import packages
from lab.virtual.emulator.hailo_emu import hw, kernel, wallclock
from lab.virtual.emulator.sandbox import Sandbox, release_for
from tests.conftest import FIXTURES
from tests.unit.fake_node import fake_boot_tools
from tests.unit.test_agent import node, records, run_agent  # noqa: F401  (node is a fixture)

SCALE = 0.5
YOLO_FPS = 124.85  # yolo26s_hailo10h.hef's nominal fps on a fresh Hailo-10H (docs/emulator.md)
# time-scaled emulation on a loaded host: a late turn of the agent's loop costs the emulated device time
TOLERANCE = 0.3
LATE_EXIT = FIXTURES / "parsers" / "benchmark" / "inputs" / "benchmark_h8_4.23_latency_timeout.txt"


@pytest.fixture
def platform(tmp_path, monkeypatch):
    """A booted Hailo-10H on 5.3.0 and its hailo_platform importable as python3-h10-hailort installs it."""
    box = Sandbox(tmp_path / "unit", time_scale=SCALE, fake_clock=False)
    box.reboot()
    for key, value in box.env.items():
        monkeypatch.setenv(key, value)
    site = tmp_path / "dist-packages"
    for path, (data, _mode) in packages.python_package(release_for("5.3.0")).files.items():
        if path.startswith("/usr/lib/python3/dist-packages/"):
            target = site / path[len("/usr/lib/python3/dist-packages/"):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    bindir = tmp_path / "bin"  # the pre-flight asks systemd and timedated whether the node is ready
    bindir.mkdir()
    fake_boot_tools(bindir)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    yield box
    for name in [m for m in sys.modules if m == "hailo_platform" or m.startswith("hailo_platform.")]:
        del sys.modules[name]


def agent(tmp_path, steps: list) -> Agent:
    paths = hw.Paths({hw.STATE_DIR_ENV: str(tmp_path / "unit" / "run"), hw.DEV_DIR_ENV: str(tmp_path / "unit" / "dev")})
    spec = {"campaign": "c1", "run_key": "1", "phase": "p", "phase_index": 1, "time_scale": SCALE,
            "chip": "hailo10h", "steps": steps,  # the platform sandbox's kernel view: sysfs, meminfo, /dev/hailo0
            "sysfs_root": os.path.join(paths.state_dir, kernel.SYSFS_DIR),
            "meminfo": os.path.join(paths.state_dir, kernel.MEMINFO_FILE), "dev_node": paths.dev_node,
            "ready_timeout": 5}
    return Agent(AgentSpec.from_json(spec), RecordLog(str(tmp_path / "records.jsonl")), str(tmp_path))


def samples(tmp_path) -> list:
    return [r for r in read_records(str(tmp_path / "records.jsonl")) if r["kind"] == "sample"]


def test_inference_steps_hand_pyhailort_real_buffers(platform, tmp_path):
    """Before: create_bindings() without buffers, which real pyhailort refuses at run time."""
    hef = platform.hef("yolo26s_hailo10h.hef")
    a = agent(tmp_path, [{"kind": "configure_cycles", "hef": hef, "count": 3, "frames": 40},
                         {"kind": "infer_continuous", "hef": hef, "duration": 4, "sample_every": 2}])
    assert a.run_phase() == "ok"
    got = samples(tmp_path)
    assert [(r["step"], r["run"]) for r in got] == [("configure_cycles", 1), ("configure_cycles", 2),
                                                    ("configure_cycles", 3), ("infer_continuous", 1),
                                                    ("infer_continuous", 2)]
    assert all(not r.get("error") for r in got)
    # 40 frames a cycle: the cycle's own open and configure are outside the measured frames
    assert all(abs(r["fps"] - YOLO_FPS) < TOLERANCE * YOLO_FPS for r in got), [r["fps"] for r in got]
    assert platform.state()["configures"] == 4


def measure_across_a_step(tmp_path, monkeypatch, hef: str, clock=None) -> list:
    """infer_continuous for 12 nominal s (4 windows of 1.5 real s) while the wall clock steps 60 s forward
    in the middle of the second window (timed from the moment inference starts, so a slow configure on a
    busy host does not move the step out of the measurements)."""
    a = agent(tmp_path, [{"kind": "infer_continuous", "hef": hef, "duration": 12, "sample_every": 3}])
    if clock is not None:
        a.clock = clock
    started = []
    bindings = Buffers.bindings

    def bindings_then_start(self, configured, count):
        made = bindings(self, configured, count)
        started.append(time.monotonic())  # the first window begins right after this
        return made

    monkeypatch.setattr(Buffers, "bindings", bindings_then_start)
    age = (lambda: time.monotonic() - started[0] if started else 0.0)
    wallclock.install(wallclock.SteppedClock(step=60.0, after=2.25, age=age))
    try:
        assert a.run_phase() == "ok"
    finally:
        wallclock.uninstall()
    stamps = [r["ts"] for r in read_records(str(tmp_path / "records.jsonl"))]
    assert max(b - a for a, b in zip(stamps, stamps[1:])) > 55  # the step fell inside the phase
    return samples(tmp_path)


def test_rates_stay_right_when_the_wall_clock_steps(platform, tmp_path, monkeypatch):
    """A Pi 5 without an RTC battery: timesyncd steps the wall clock forward shortly after boot."""
    got = measure_across_a_step(tmp_path, monkeypatch, platform.hef("yolo26s_hailo10h.hef"))
    assert len(got) == 4 and got[-1]["inference_s"] == pytest.approx(12, abs=0.5)
    # a rate from the wall clock would be off by the step: see the next test
    assert all(abs(r["fps"] - YOLO_FPS) < TOLERANCE * YOLO_FPS for r in got), [r["fps"] for r in got]


def test_a_rate_from_the_wall_clock_is_wrong_across_the_step(platform, tmp_path, monkeypatch):
    """What the agent did before (time.time() for every rate): the window with the step loses its frames."""
    got = measure_across_a_step(tmp_path, monkeypatch, platform.hef("yolo26s_hailo10h.hef"), clock=lambda: time.time())
    assert min(r["fps"] for r in got) < 0.05 * YOLO_FPS  # 60 s more in one window than was measured
    assert got[-1]["inference_s"] > 60  # and the step is counted as inference time: the phase ends early


def test_emulated_wall_clock_steps_once_and_monotonic_never():
    step = wallclock.SteppedClock(step=60.0, after=10.0, age=lambda: 5.0)
    assert time.time() - step.time() == pytest.approx(60.0, abs=0.1)
    assert time.time_ns() - step.time_ns() == pytest.approx(60e9, abs=1e8)
    assert wallclock.emulated_wall(1000.0, 9.9, 60.0, 10.0) == 940.0
    assert wallclock.emulated_wall(1000.0, 10.0, 60.0, 10.0) == 1000.0
    before = time.monotonic()
    wallclock.install(step)
    try:
        assert time.monotonic() - before < 1.0 and time.time() < wallclock._REAL["time"]() - 59
    finally:
        wallclock.uninstall()
    assert abs(time.time() - wallclock._REAL["time"]()) < 1.0


def test_emulated_wall_clock_reads_the_unit(tmp_path):
    (tmp_path / "unit.json").write_text('{"node": "n1", "wall_clock_step_s": 0}')
    assert wallclock.settings(str(tmp_path)) == (0.0, wallclock.DEFAULT_AFTER_S)
    (tmp_path / "unit.json").write_text('{"node": "n1"}')
    assert wallclock.settings(str(tmp_path)) == (wallclock.DEFAULT_STEP_S, wallclock.DEFAULT_AFTER_S)
    assert wallclock.settings(str(tmp_path / "absent")) == (0.0, 0.0)


def test_a_node_without_the_python_binding_ends_the_phase_saying_so(node):  # noqa: F811
    """Before: ImportError in the agent, no phase_end, and the controller reads an unfinished phase."""
    out = run_agent(node, [{"kind": "configure_cycles", "hef": "x.hef", "count": 2, "frames": 10},
                           {"kind": "infer_continuous", "hef": "x.hef", "duration": 10},
                           {"kind": "collect", "items": ["cma"]}])
    assert out["status"] == "infra_error"
    recs = records(node)
    failed = [r for r in recs if r["kind"] == "sample"]
    assert len(failed) == 1 and failed[0]["step"] == "configure_cycles" and failed[0]["infra"] is True
    assert "no hailo_platform" in failed[0]["error"] and "python3-hailort" in failed[0]["error"]
    assert [r["step"] for r in recs if r.get("skipped")] == ["infer_continuous"]
    assert recs[-2]["kind"] == "artifact"  # collect still runs
    assert recs[-1]["kind"] == "phase_end" and recs[-1]["status"] == "infra_error"
    assert recs[-1]["error"].startswith("configure_cycles: HailoRT's Python binding is not installed")


def test_an_unexpected_error_in_a_step_ends_the_phase_with_it(node):  # noqa: F811
    out = run_agent(node, [{"kind": "cooldown", "seconds": "soon"},
                           {"kind": "benchmark", "hef": "resnet.hef", "runs": 1}])
    assert out["status"] == "infra_error"
    recs = [r for r in records(node) if r.get("step")]  # after phase_start, system and the pre-flight
    assert recs[0]["step"] == "cooldown" and "ValueError" in recs[0]["error"]
    assert recs[1]["step"] == "benchmark" and recs[1]["skipped"] is True
    end = records(node)[-1]
    assert end["kind"] == "phase_end" and end["error"].startswith("cooldown step failed: ValueError")


def test_a_benchmark_that_exits_non_zero_after_its_fps_keeps_the_figure(node):  # noqa: F811
    """HailoRT 4.23: both FPS bars printed, then the latency measurement fails and the tool exits 4."""
    (node.parent / "bench.txt").write_text(LATE_EXIT.read_text())
    fake = node.parent / "bin" / "hailortcli"
    fake.write_text(fake.read_text() + "exit 4\n")
    out = run_agent(node, [{"kind": "benchmark", "hef": "yolov8s.hef", "runs": 2, "time_to_run": 15}])
    assert out["status"] == "ok"
    got = [r for r in records(node) if r["kind"] == "sample"]
    assert [(r["run"], r["fps"], r["rc"]) for r in got] == [(1, 309.44, 4), (2, 309.44, 4)]
    assert got[0]["error"] == "exit 4 after the FPS was printed: HAILO_TIMEOUT(4)"


def test_a_benchmark_without_a_figure_still_fails_the_run(node):  # noqa: F811
    (node.parent / "bench.txt").write_text("\n".join(LATE_EXIT.read_text().splitlines()[:2] + [
        "[HailoRT CLI] [error] CHECK_SUCCESS failed with status=HAILO_TIMEOUT(4) - Measuring FPS in HW-only mode failed",
        ""]))
    fake = node.parent / "bin" / "hailortcli"
    fake.write_text(fake.read_text() + "exit 4\n")
    out = run_agent(node, [{"kind": "benchmark", "hef": "yolov8s.hef", "runs": 2, "time_to_run": 15}])
    assert out["status"] == "device_error"
    got = [r for r in records(node) if r["kind"] == "sample"]
    assert len(got) == 1 and got[0].get("fps") is None and got[0]["rc"] == 4
