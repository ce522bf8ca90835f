"""Thermal or not, on curves the emulator's chip model produces: poorly cooled units that throttle, leaking ones.

Every curve here is 25 (or more) back-to-back 15 s `hailortcli benchmark` runs from a fresh boot with no
cooldown, parsed by the agent's own parser. The emulator is a model for testing the lab, not a claim about
Hailo's hardware (docs/emulator.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lab.agent.parsers import parse_benchmark, run_throttling
from lab.analysis import RunSample, Verdict, analyze_series, analyze_thermal
from lab.virtual.emulator.hailo_emu import platform_api as hp
from lab.virtual.emulator.sandbox import Sandbox

NOTICE = "throttling state is now: "


def soak(root: Path, unit: dict, runs: int = 25, version: str = "5.3.0", hef: str = "yolo26s_hailo10h.hef"):
    """`runs` back-to-back benchmarks of a freshly booted unit: RunSamples with the chip's throttling reports."""
    sb = Sandbox(root, unit=unit, version=version)
    sb.reboot()
    samples, state = [], None
    for run in range(1, runs + 1):
        r = sb.benchmark(hef)
        assert r.rc == 0, r.err
        parsed = parse_benchmark(r.err + r.out)
        throttling, state = run_throttling(parsed.throttling_states, state)
        samples.append(RunSample(run, parsed.fps, parsed.temperature.mean, throttling=throttling))
    return samples


def curve_only(samples):
    """The same runs without the chip's throttling reports (what a CSV or an older HailoRT gives)."""
    return [RunSample(s.run, s.fps, s.temp) for s in samples]


# (throttle point °C, temperature rise at full load °C, thermal time constant s): poorly cooled Hailo-10H
# units heating at different rates to different plateaus; each leaves a clean baseline in its first 5 runs
POORLY_COOLED = [(70, 18, 130), (70, 22, 90), (80, 30, 130), (80, 35, 90), (80, 40, 130), (90, 40, 130),
                 (90, 50, 90), (90, 60, 130)]
IDS = [f"throttle{t}-rise{r}-tau{tau}" for t, r, tau in POORLY_COOLED]


def _unit(throttle: float, rise: float, tau: float) -> dict:
    return {"cma_leak": 0, "throttle_temp_c": throttle, "load_temp_rise_c": rise, "thermal_tau_s": tau}


@pytest.mark.parametrize(("throttle", "rise", "tau"), POORLY_COOLED, ids=IDS)
def test_throttling_that_settles_without_cooldown_is_thermal(tmp_path, throttle, rise, tau) -> None:
    samples = curve_only(soak(tmp_path, _unit(throttle, rise, tau)))
    series = analyze_series(samples)
    t = analyze_thermal(samples, series)
    assert series.verdict is Verdict.DEGRADED, series.method
    assert (t.verdict, t.thermal, t.recovered_when_cooled) == ("thermal", True, None), t.reason
    # the evidence: fps stopped falling as the temperature settled above the throttle point, and followed it
    assert t.settled_temp_c > throttle and series.onset_run < t.settled_run
    assert abs(t.fps_change_settled) < series.baseline_fps - series.threshold_fps
    assert t.correlation_on_drop <= -0.9
    assert t.reason.startswith("fps fell from ")
    assert f"stopped falling from run {t.settled_run} as the temperature settled at {t.settled_temp_c:.2f} °C" \
        in t.reason
    assert f"r = {t.correlation_on_drop:.2f}" in t.reason


@pytest.mark.parametrize(("throttle", "rise", "tau"), POORLY_COOLED[::3], ids=IDS[::3])
def test_the_chips_throttling_reports_decide(tmp_path, throttle, rise, tau) -> None:
    samples = soak(tmp_path, _unit(throttle, rise, tau))
    t = analyze_thermal(samples)
    assert (t.verdict, t.throttling_reported) == ("thermal", True), t.reason
    assert t.reason.startswith("the chip reported throttling in every run below the degradation threshold")
    assert all(s.throttling for s in samples if s.temp > throttle + 0.5)  # reported from the first hot run on
    assert all(s.throttling is None for s in samples if s.temp < throttle - 1)  # nothing reported before


def test_tools_that_report_no_throttling_state_leave_the_curve_to_decide(tmp_path) -> None:
    samples = soak(tmp_path, _unit(80, 40, 130), version="5.1.1")  # the notification came with HailoRT 5.2.0
    assert all(s.throttling is None for s in samples)
    t = analyze_thermal(samples)
    assert (t.verdict, t.throttling_reported) == ("thermal", None)
    assert t.reason.startswith("fps fell from ")


# fps that keeps falling at constant temperature: the chip-side CMA leak of the leak table (tables.FIRMWARE)
LEAKING = [
    ("seed-unit-5.3.0", {}, "5.3.0", 25),
    ("seed-unit-5.3.0-40-runs", {}, "5.3.0", 40),
    ("5.2.0-double-leak", {"cma_leak": 2.0}, "5.2.0", 25),
    ("5.2.0-40-runs", {}, "5.2.0", 40),
    ("warm-unit", {"load_temp_rise_c": 24}, "5.3.0", 25),
    ("cool-unit", {"load_temp_rise_c": 12, "idle_temp_c": 45}, "5.3.0", 25),
    ("leaking-and-throttling", {"load_temp_rise_c": 40, "throttle_temp_c": 80}, "5.3.0", 25),
]


@pytest.mark.parametrize(("unit", "version", "runs"), [c[1:] for c in LEAKING], ids=[c[0] for c in LEAKING])
def test_fps_falling_on_a_temperature_plateau_stays_not_thermal(tmp_path, unit, version, runs) -> None:
    samples = soak(tmp_path, unit, runs=runs, version=version)
    for given in (samples, curve_only(samples)):
        t = analyze_thermal(given)
        assert (t.verdict, t.thermal) == ("not_thermal", False), t.reason
        assert t.reason.startswith(f"temperature plateaued from run {t.plateau_run}")
        assert t.fps_slope_on_plateau < -1.0


def test_too_few_runs_or_no_temperature(tmp_path) -> None:
    samples = curve_only(soak(tmp_path, _unit(80, 40, 130), runs=12))
    assert analyze_thermal(samples[:2]).verdict == "no_temperature"
    assert analyze_thermal([RunSample(s.run, s.fps) for s in samples]).verdict == "no_temperature"
    still_heating = analyze_thermal(samples)  # fps falling, temperature still rising: nothing settled yet
    assert (still_heating.verdict, still_heating.thermal, still_heating.settled_run) == ("inconclusive", None, None)
    assert "still rising" in still_heating.reason


# --- what the emulated tools print --------------------------------------------------------------

def _notices(text: str):
    return [line.split(NOTICE)[1] for line in text.splitlines() if NOTICE in line]


@pytest.mark.parametrize(("version", "reported"), [("5.1.1", False), ("5.2.0", True), ("5.3.0", True)])
def test_benchmark_logs_throttling_state_changes_from_520(tmp_path, version, reported) -> None:
    sb = Sandbox(tmp_path, unit=_unit(80, 40, 130), version=version)
    sb.reboot()
    seen = [state for _ in range(25) for state in _notices(sb.benchmark().err)]
    assert seen == (["THROTTLING_LIGHT", "THROTTLING_MEDIUM"] if reported else [])
    sb.idle(900)  # the chip cools while nobody holds it: that change is notified to no one
    assert _notices(sb.benchmark().err) == []
    assert sb.chip.temperatures()[0] < 80


def test_hailo8_tools_print_no_throttling_state(tmp_path) -> None:
    sb = Sandbox(tmp_path, unit={"chip": "hailo8", "load_temp_rise_c": 70, "throttle_temp_c": 80}, version="4.23.0")
    sb.reboot()
    outputs = [sb.benchmark("yolov8s_h8.hef", seconds=5) for _ in range(10)]
    assert all(r.rc == 0 for r in outputs)
    assert parse_benchmark(outputs[-1].out).fps < 290  # it throttles, and says nothing about it
    assert all(NOTICE not in r.err + r.out for r in outputs)


def test_python_api_logs_throttling_state_changes(tmp_path, monkeypatch, capsys) -> None:
    sb = Sandbox(tmp_path / "unit", unit=_unit(80, 40, 130), time_scale=0.0, fake_clock=False)
    sb.reboot()
    for key, value in sb.env.items():
        monkeypatch.setenv(key, value)
    hp.set_library_version("5.3.0")
    for _ in range(6):  # heat to just below the throttle point
        sb.benchmark()
    assert sb.chip.temperatures()[0] < 80.5
    capsys.readouterr()
    with hp.VDevice(hp.VDevice.create_params()) as vdevice:
        model = vdevice.create_infer_model(sb.hef("yolo26s_hailo10h.hef"))
        with model.configure() as configured:
            bindings = configured.create_bindings(
                input_buffers={model.input().name: np.zeros(model.input().shape, np.uint8)},
                output_buffers={model.output().name: np.empty(model.output().shape, np.uint8)})
            for _ in range(60):
                configured.run([bindings] * 125, 10000)  # about a minute of inference
    assert _notices(capsys.readouterr().err) == ["THROTTLING_LIGHT", "THROTTLING_MEDIUM"]
