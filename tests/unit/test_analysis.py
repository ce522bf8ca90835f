"""Series analysis: the seed's measured curve, synthetic thermal / noisy / dipping series, statistics, verdicts."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.analysis import (
    RunSample,
    Verdict,
    aggregate_verdicts,
    analyze_csv,
    analyze_series,
    analyze_thermal,
    attribute_trigger,
    classify_run,
    parse_series_csv,
    recovery_outcomes,
    wilson_interval,
)
from lab.errors import ConfigError

# Hypothesis resolves its example database before the autouse chdir; keep it out of the tree
_NO_DATABASE = settings(database=None)
SERIES = Path(__file__).resolve().parent.parent / "fixtures" / "series"
SEED = parse_series_csv((SERIES / "seed_000_25runs.csv").read_text(), "seed_000_25runs.csv")
FRESH_BOOT = [RunSample(i, fps, temp) for i, (fps, temp) in enumerate(
    [(124.90, 59.73), (125.01, 61.34), (124.79, 62.38), (124.30, 63.26), (124.64, 64.16), (124.90, 64.93)], start=1)]


def _flat(values):
    return [RunSample(i, v) for i, v in enumerate(values, start=1)]


# --- the seed (acceptance) ---------------------------------------------------------------------

def test_seed_25_runs_is_degraded_from_run_13() -> None:
    a = analyze_series(SEED)
    assert a.verdict is Verdict.DEGRADED
    assert a.onset_run == 13
    assert a.slope_runs == [13, 25]
    assert -4.0 <= a.slope_fps_per_run <= -2.5
    assert a.baseline_fps == pytest.approx(124.81)
    assert (a.floor_fps, a.floor_run, a.still_falling) == (81.60, 25, True)
    assert "median" in a.method and "least squares" in a.method


def test_seed_25_runs_is_not_thermal() -> None:
    t = analyze_thermal(SEED)
    assert (t.verdict, t.thermal) == ("not_thermal", False)
    assert 15 <= t.plateau_run <= 17
    assert t.fps_slope_on_plateau < -2.0
    assert t.reason.startswith(f"temperature plateaued from run {t.plateau_run}")


def test_seed_fresh_boot_runs_are_stable() -> None:
    a = analyze_series(FRESH_BOOT)
    assert (a.verdict, a.onset_run, a.slope_fps_per_run, a.still_falling) == (Verdict.STABLE, None, None, False)
    assert analyze_thermal(FRESH_BOOT).verdict == "no_drop"


def test_seed_cooldown_without_recovery_is_not_thermal() -> None:
    # the seed's cooldown experiment: after 4 min idle the chip is 15 C cooler and fps stays down
    cooled = SEED[:16] + [RunSample(26, 52.0, 58.0), RunSample(27, 52.3, 58.5), RunSample(28, 51.9, 59.0)]
    t = analyze_thermal(cooled)
    assert (t.verdict, t.thermal, t.recovered_when_cooled) == ("not_thermal", False, False)


# --- synthetic series --------------------------------------------------------------------------

def _throttling(noise: float = 0.0, seed: int = 0):
    """Temperature rises past 80 C, fps drops with it, a fan cools the chip and fps comes back."""
    rnd = random.Random(seed)
    samples = []
    for run in range(1, 31):
        temp = 60 + 2 * run if run <= 15 else 90 - 2 * (run - 15)
        samples.append(RunSample(run, 125 - 4 * max(0.0, temp - 80) + rnd.gauss(0, noise), temp))
    return samples


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_throttling_that_recovers_when_cool_is_thermal(noise: float) -> None:
    t = analyze_thermal(_throttling(noise))
    assert (t.verdict, t.thermal, t.recovered_when_cooled) == ("thermal", True, True)
    assert t.correlation <= -0.7
    assert t.peak_run == 15


def test_throttling_with_no_cooling_yet_is_inconclusive() -> None:
    t = analyze_thermal(_throttling()[:15])
    assert (t.verdict, t.thermal) == ("inconclusive", None)


def _plain_soak(noise: float = 0.0, seed: int = 0, fps_of=None):
    """No cooldown: the chip heats towards 95 C; fps falls 2.5 fps per degree above 80 C (or `fps_of(run, temp)`)."""
    rnd = random.Random(seed)
    samples = []
    for run in range(1, 26):
        temp = round(60 + 35 * (1 - 0.85 ** run), 2)
        fps = fps_of(run, temp) if fps_of else 125 - 2.5 * max(0.0, temp - 80)
        samples.append(RunSample(run, fps + rnd.gauss(0, noise), temp))
    return samples


@pytest.mark.parametrize(("noise", "seed"), [(0.0, 0), (0.3, 1), (1.0, 2), (1.0, 3)])
def test_throttling_that_settles_without_cooling_is_thermal(noise: float, seed: int) -> None:
    t = analyze_thermal(_plain_soak(noise, seed))
    assert (t.verdict, t.thermal, t.settled_run, t.recovered_when_cooled) == ("thermal", True, 19, None)
    assert t.correlation_on_drop <= -0.99
    assert "stopped falling from run 19 as the temperature settled at 93.40 °C" in t.reason
    assert f"r = {t.correlation_on_drop:.2f} from run " in t.reason


def test_a_drop_that_does_not_follow_the_temperature_is_not_thermal() -> None:
    t = analyze_thermal(_plain_soak(fps_of=lambda run, temp: 125.0 if run < 8 else 100.0))  # a step at run 8
    assert (t.verdict, t.thermal) == ("not_thermal", False)
    assert t.correlation_on_drop > -0.7 and "does not follow the temperature" in t.reason


def test_a_drop_on_the_last_degree_of_heating_is_inconclusive() -> None:
    t = analyze_thermal(_plain_soak(fps_of=lambda run, temp: 125.0 if run < 22 else 100.0))
    assert (t.verdict, t.thermal) == ("inconclusive", None)
    assert t.reason.startswith("fps began to fall at run 22, after the temperature settled from run 19")


def test_the_chips_throttling_reports_decide_before_the_curve() -> None:
    curve = _plain_soak()
    hot = [RunSample(s.run, s.fps, s.temp, throttling=s.temp > 80) for s in curve]
    t = analyze_thermal(hot)
    assert (t.verdict, t.throttling_reported) == ("thermal", True)
    assert t.reason.startswith("the chip reported throttling in every run below the degradation threshold (runs 6-25)")
    denied = [RunSample(s.run, s.fps, s.temp, throttling=False if s.run == 20 else s.throttling) for s in hot]
    t = analyze_thermal(denied)
    assert (t.verdict, t.throttling_reported) == ("not_thermal", False)
    assert t.reason.startswith("the chip reported no throttling in run 20, where fps was below")
    unknown = [RunSample(s.run, s.fps, s.temp, throttling=None if s.run == 20 else s.throttling) for s in hot]
    assert (analyze_thermal(unknown).throttling_reported, analyze_thermal(unknown).verdict) == (None, "thermal")


def test_the_field_report_stays_not_thermal_even_if_the_chip_said_it_throttled() -> None:
    # fps falling on a temperature plateau cannot be throttling, whatever else the chip did
    t = analyze_thermal([RunSample(s.run, s.fps, s.temp, throttling=s.run >= 13) for s in SEED])
    assert (t.verdict, t.thermal) == ("not_thermal", False)
    assert t.reason.startswith(f"temperature plateaued from run {t.plateau_run}")


@pytest.mark.parametrize("seed", range(40))
def test_noisy_flat_series_is_stable(seed: int) -> None:
    rnd = random.Random(seed)
    assert analyze_series(_flat([125 + rnd.gauss(0, 1.5) for _ in range(25)])).verdict is Verdict.STABLE


@_NO_DATABASE
@given(st.lists(st.floats(min_value=-1.5, max_value=1.5), min_size=1, max_size=60))
def test_bounded_noise_is_never_degraded(noise: list) -> None:
    # medians of values within 125 +- 1.5 differ by at most 3 fps, below the 3 % (3.75 fps) threshold
    assert analyze_series(_flat([125 + e for e in noise])).verdict is Verdict.STABLE


@_NO_DATABASE
@given(st.lists(st.floats(min_value=-1.5, max_value=1.5), min_size=24, max_size=24), st.integers(6, 14))
def test_a_sustained_20_percent_drop_is_degraded(noise: list, onset: int) -> None:
    values = [125 + e if i + 1 < onset else 100 + e for i, e in enumerate(noise)]
    a = analyze_series(_flat(values))
    assert a.verdict is Verdict.DEGRADED
    assert a.onset_run <= onset  # noise may push a baseline run below the band, never a later one above it
    assert a.floor_fps <= 101.5


@pytest.mark.parametrize("dip_run", [3, 10, 24, 25])
def test_a_single_outlier_dip_is_not_degraded(dip_run: int) -> None:
    a = analyze_series(_flat([60.0 if run == dip_run else 124.8 for run in range(1, 26)]))
    assert a.verdict is Verdict.STABLE


def test_degradation_that_reached_its_floor_is_not_still_falling() -> None:
    values = [124.8] * 12 + [124.8 - 7 * k for k in range(1, 13)] + [41.0] * 8
    a = analyze_series(_flat([max(v, 41.0) for v in values]))
    assert (a.verdict, a.onset_run, a.floor_fps, a.still_falling) == (Verdict.DEGRADED, 13, 41.0, False)


def test_a_reference_baseline_catches_a_device_degraded_from_the_start() -> None:
    degraded_all_along = _flat([90.0 - k for k in range(10)])
    assert analyze_series(degraded_all_along).verdict is Verdict.STABLE  # no fresh baseline to compare with
    a = analyze_series(degraded_all_along, reference_fps=125.0)
    assert (a.verdict, a.onset_run, a.baseline_fps) == (Verdict.DEGRADED, 1, 125.0)
    assert "given reference 125" in a.method


def test_configures_at_onset() -> None:
    samples = [RunSample(s.run, s.fps, s.temp, configures=s.run) for s in SEED]
    assert analyze_series(samples).configures_at_onset == 13


def test_series_needs_runs_once_each() -> None:
    with pytest.raises(ValueError):
        analyze_series([])
    with pytest.raises(ValueError):
        analyze_series([RunSample(1, 125.0), RunSample(1, 124.0)])


# --- configure count vs inference time -------------------------------------------------------

def _group(seconds_per_run: float, runs: int, trigger: str, at: float):
    """fps falls 3/run once configures (or inference seconds) pass `at`; one configure per run."""
    samples = []
    for run in range(1, runs + 1):
        count = run if trigger == "configures" else run * seconds_per_run
        fps = 125.0 if count <= at else 125.0 - 3 * (count - at) / (1 if trigger == "configures" else seconds_per_run)
        samples.append(RunSample(run, fps, configures=run, inference_s=run * seconds_per_run))
    return samples


def test_attribution_configure_count() -> None:
    a = attribute_trigger(_group(15, 25, "configures", 12), _group(60, 25, "configures", 12))
    assert (a.cause, a.onset_a, a.onset_b, a.configures) == ("configure_count", 13, 13, [13, 13])


def test_attribution_inference_time() -> None:
    a = attribute_trigger(_group(15, 25, "inference", 180), _group(60, 25, "inference", 180))
    assert a.cause == "inference_time"
    assert (a.onset_a, a.onset_b) == (13, 4)


def test_attribution_one_group_stable_after_more_inference_but_fewer_configures() -> None:
    short = _group(15, 25, "configures", 12)  # degrades at 13 configures, 195 s
    long = [RunSample(r, 125.0, configures=r, inference_s=r * 120.0) for r in range(1, 9)]  # 8 configures, 960 s
    assert attribute_trigger(short, long).cause == "configure_count"
    assert attribute_trigger(long, short).cause == "configure_count"


def test_attribution_without_degradation_or_counters() -> None:
    flat = [RunSample(r, 125.0, configures=r, inference_s=15.0 * r) for r in range(1, 10)]
    assert attribute_trigger(flat, flat).cause == "no_degradation"
    with pytest.raises(ValueError, match="run 1 lacks"):
        attribute_trigger(_flat([125.0] * 5), flat)


# --- recovery, statistics, verdicts ------------------------------------------------------------

def test_recovery_outcomes_of_the_seed() -> None:
    r = recovery_outcomes(124.9, 52.0, {"cooldown": 52.3, "driver_reload": 52.1, "pcie_rescan": 51.8,
                                        "chip_reset": None, "partial": 90.0, "reboot": 124.9})
    assert [(o.action, o.outcome) for o in r.outcomes] == [
        ("cooldown", "not_recovered"), ("driver_reload", "not_recovered"), ("pcie_rescan", "not_recovered"),
        ("chip_reset", "device_error"), ("partial", "partial"), ("reboot", "recovered")]
    assert r.restoring_actions == ["reboot"]
    assert r.outcomes[-1].restored_fraction == pytest.approx(1.0)


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (7, 8, 0.5291, 0.9776), (0, 8, 0.0, 0.3244), (8, 8, 0.6756, 1.0), (50, 100, 0.4038, 0.5962), (0, 0, 0.0, 1.0)])
def test_wilson_interval(k: int, n: int, low: float, high: float) -> None:
    i = wilson_interval(k, n)
    assert (round(i.low, 4), round(i.high, 4)) == (low, high)
    assert "Wilson" in i.method


@pytest.mark.parametrize(("k", "n"), [(-1, 3), (4, 3), (1, -1)])
def test_wilson_interval_rejects_impossible_counts(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        wilson_interval(k, n)


def test_infra_errors_are_left_out_of_k_and_n() -> None:
    c = aggregate_verdicts(["degraded", Verdict.DEGRADED, "stable", "infra_error", "infra_error", "device_error"])
    assert (c.degraded, c.counted, c.stable, c.device_error, c.infra_error) == (2, 4, 1, 1, 2)
    assert (c.interval.k, c.interval.n) == (2, 4)
    only_infra = aggregate_verdicts(["infra_error"] * 3)
    assert (only_infra.degraded, only_infra.counted, only_infra.interval.low, only_infra.interval.high) == (0, 0, 0, 1)


def test_classify_run() -> None:
    assert classify_run(SEED, infra_error="reboot timed out").verdict is Verdict.INFRA_ERROR
    assert classify_run(SEED, device_error="HAILO_OUT_OF_PHYSICAL_DEVICES(74)").verdict is Verdict.DEVICE_ERROR
    assert classify_run([]).verdict is Verdict.INFRA_ERROR
    degraded = classify_run(SEED)
    assert (degraded.verdict, degraded.reason) == (Verdict.DEGRADED, "fell from 124.81 to 85.65 fps from run 13")
    assert aggregate_verdicts([degraded, classify_run(FRESH_BOOT)]).degraded == 1


def test_results_are_json_ready() -> None:
    report = analyze_csv((SERIES / "seed_000_25runs.csv").read_text(), "seed.csv")
    data = json.loads(json.dumps(report.to_dict()))
    assert (data["series"]["verdict"], data["thermal"]["verdict"]) == ("degraded", "not_thermal")
    assert analyze_csv("run,fps\n1,125\n2,125\n3,125\n", "x.csv").thermal is None


# --- numerical safety: any finite float in, no exception and no inf/NaN out ----------------------

EXTREMES = [sys.float_info.max, -sys.float_info.max, 5e-324, -5e-324, 0.0, -0.0, 2.01e154, 1e-300, 124.8]
FLOATS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(EXTREMES))


def _all_finite(value, where: str = "result") -> None:
    """Every float anywhere in a to_dict() result is finite."""
    if isinstance(value, float):
        assert math.isfinite(value), f"{where} = {value}"
    elif isinstance(value, dict):
        for key, item in value.items():
            _all_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _all_finite(item, f"{where}[{i}]")


@st.composite
def _series(draw, min_size: int = 1, counters: bool = False):
    """RunSamples with unique run indices and any finite fps, temperature, counters and throttling."""
    runs = draw(st.lists(st.integers(-10**9, 10**9), min_size=min_size, max_size=30, unique=True))
    return [RunSample(run, draw(FLOATS), draw(st.none() | FLOATS),
                      draw(st.integers(0, 10**12)) if counters else draw(st.none() | st.integers(0, 10**12)),
                      draw(FLOATS) if counters else draw(st.none() | FLOATS), draw(st.none() | st.booleans()))
            for run in runs]


def test_the_overflow_of_the_issue() -> None:
    # Hypothesis found fps = 2.01e154: sxx * syy overflowed in the Pearson correlation
    samples = [RunSample(run, 125.0, 60.0 + run) for run in range(1, 10)] + [RunSample(10, 2.01e154, 70.0)]
    _all_finite(analyze_thermal(samples).to_dict())
    huge = [RunSample(run, sys.float_info.max * (-1) ** run, -sys.float_info.max * (-1) ** run) for run in range(9)]
    a = analyze_series(huge)
    assert a.baseline_fps <= sys.float_info.max and math.isfinite(a.noise_fps) and math.isfinite(a.threshold_fps)
    _all_finite(analyze_thermal(huge).to_dict())


@settings(_NO_DATABASE, max_examples=300, deadline=None)
@given(_series(), st.none() | FLOATS)
def test_series_and_thermal_analysis_take_any_finite_floats(samples: list, reference) -> None:
    series = analyze_series(samples, reference)
    _all_finite(series.to_dict())
    _all_finite(analyze_thermal(samples).to_dict())
    _all_finite(analyze_thermal(samples, series).to_dict())
    _all_finite(classify_run(samples, reference_fps=reference).to_dict())


@settings(_NO_DATABASE, max_examples=200, deadline=None)
@given(_series(counters=True), _series(counters=True))
def test_attribution_takes_any_finite_floats(group_a: list, group_b: list) -> None:
    _all_finite(attribute_trigger(group_a, group_b).to_dict())


@settings(_NO_DATABASE, max_examples=300, deadline=None)
@given(FLOATS, FLOATS, st.dictionaries(st.text(max_size=4), st.none() | FLOATS, max_size=6), FLOATS)
def test_recovery_outcomes_take_any_finite_floats(before: float, degraded: float, after: dict, tolerance) -> None:
    _all_finite(recovery_outcomes(before, degraded, after).to_dict())
    _all_finite(recovery_outcomes(before, degraded, after, tolerance).to_dict())


@settings(_NO_DATABASE, max_examples=300, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 10**9), FLOATS)
def test_wilson_interval_takes_any_finite_z(k: int, n: int, z: float) -> None:
    k, n = min(k, n), max(k, n)
    interval = wilson_interval(k, n, z)
    _all_finite(interval.to_dict())
    assert 0.0 <= interval.low <= interval.high <= 1.0
    _all_finite(aggregate_verdicts(["degraded"] * min(k, 50) + ["stable"] * min(n - k, 50)).to_dict())


# --- the CSV edge ------------------------------------------------------------------------------

def test_csv_forms() -> None:
    header = parse_series_csv("\ufeffRun, FPS ,temp,configures\n# a comment\n\n2,124.7,,2\n1,124.8,60.1,1\n", "a.csv")
    assert header == [RunSample(1, 124.8, 60.1, 1), RunSample(2, 124.7, None, 2)]
    assert parse_series_csv("1,124.8,60.1\n2,124.7,61.0\n", "b.csv") == [
        RunSample(1, 124.8, 60.1), RunSample(2, 124.7, 61.0)]


@pytest.mark.parametrize(("text", "message"), [
    ("", "no runs in this CSV, x.csv:1, expected a header run,fps[,temp[,configures[,inference_s]]] and one row per run"),
    ("run,fps,tmp\n", "unknown column 'tmp', x.csv:1, columns are run, fps, temp, configures, inference_s"),
    ("run,temp\n1,60\n", "missing column 'fps', x.csv:1, expected a header run,fps[,temp[,configures[,inference_s]]] "
                         "and one row per run"),
    ("run,fps\n1,124.8\n2,abc\n", "fps 'abc' is not a number, x.csv:3, expected a header "
                                  "run,fps[,temp[,configures[,inference_s]]] and one row per run"),
    ("run,fps\n1,124.8\n1,124.7\n", "run 1 appears twice (first at line 2), x.csv:3, give each run once"),
    ("run,fps\n1.5,124.8\n", "run '1.5' is not a whole number, x.csv:2, expected a header "
                             "run,fps[,temp[,configures[,inference_s]]] and one row per run"),
    ("run,fps\n1,124.8,3\n", "expected 2 cells, found 3, x.csv:2, leave optional cells empty instead of dropping them"),
    ("run,fps\n1,-5\n", "fps '-5' is outside 0..100000 fps, x.csv:2, correct the cell or remove the row (docs/analysis.md lists lab's physical bounds)"),
    ("run,fps\n1,\n", "fps '' is not a number, x.csv:2, expected a header run,fps[,temp[,configures[,inference_s]]] "
                      "and one row per run"),
])
def test_bad_csv_names_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_series_csv(text, "x.csv")
    assert str(caught.value) == message
    assert caught.value.exit_code == 2
