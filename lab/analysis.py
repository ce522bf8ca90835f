"""Pure analysis of benchmark series: baseline, onset, slope, floor, thermal, attribution, verdicts, statistics.

Every function here takes any finite floats, however large or small: values are scaled by a power of two
(exact) before they are summed or multiplied, sums use math.fsum, and a result that would overflow saturates
at the largest float. No field of a result is ever inf or NaN; one that is undefined is None.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import sys
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from lab.bounds import CSV_BOUNDS
from lab.bounds import _show as _show_number
from lab.errors import ConfigError

# Thresholds; docs/analysis.md explains each one, change both together.
BASELINE_RUNS = 5  # the reference is the start of a fresh boot (the seed is flat for 12 runs)
TAIL_RUNS = 5  # the end state is a median of the last runs, so one dip or spike decides nothing
DEGRADED_FRACTION = 0.03  # a sustained drop of 3 % (3.7 fps at 125) is degradation...
DEGRADED_SIGMAS = 4.0  # ...unless the baseline noise makes 4 sigma larger
ONSET_FRACTION = 0.005  # a run 0.5 % below baseline has left the baseline band...
ONSET_SIGMAS = 3.0  # ...or 3 sigma below it, whichever is wider
MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation of normal noise
PLATEAU_RISE_C = 0.3  # temperature has plateaued once no later run is more than this hotter
PLATEAU_MIN_RUNS = 3
SETTLED_RISE_C = 1.0  # without cooling, the temperature has settled once no later run is more than this hotter
COOLED_C = 3.0  # a run this much below the peak temperature counts as cooled down
THERMAL_CORRELATION = -0.7  # fps must follow temperature at least this closely to call it thermal
RECOVERY_TOLERANCE = 0.03  # an action recovers when fps is back within 3 % of the pre-degradation fps
ATTRIBUTION_TOLERANCE = 0.25  # two onsets "agree" on a quantity within 25 %
WILSON_Z = 1.959963984540054  # two-sided 95 %

_MAX = sys.float_info.max


class Verdict(str, Enum):
    """Outcome of one run: infra errors never count as degraded nor as not reproduced."""

    STABLE = "stable"
    DEGRADED = "degraded"
    DEVICE_ERROR = "device_error"
    INFRA_ERROR = "infra_error"


class _Result:
    """Mixin: results convert to JSON-ready dicts (enums become their values)."""

    def to_dict(self) -> dict:
        """Return the result as nested dicts and lists."""
        return asdict(self, dict_factory=lambda items: {k: v.value if isinstance(v, Enum) else v for k, v in items})


@dataclass(frozen=True)
class RunSample:
    """One benchmark run: index, fps, and optionally chip temperature, cumulative counters, throttling state."""

    run: int
    fps: float
    temp: Optional[float] = None
    configures: Optional[int] = None  # open/configure cycles since boot, this run included
    inference_s: Optional[float] = None  # inference seconds since boot, this run included
    throttling: Optional[bool] = None  # the chip reported throttling during this run (None: no report)


@dataclass(frozen=True)
class SeriesAnalysis(_Result):
    """Whether a series degraded, and its baseline, onset, slope and floor."""

    verdict: Verdict
    runs: int
    baseline_fps: float
    noise_fps: float
    threshold_fps: float
    band_fps: float
    end_fps: float
    drop_fraction: float
    onset_run: Optional[int]
    configures_at_onset: Optional[int]
    slope_fps_per_run: Optional[float]
    slope_runs: Optional[List[int]]
    floor_fps: float
    floor_run: int
    still_falling: bool
    method: str


# --- overflow-safe arithmetic ----------------------------------------------------------------

def _clamp(value: float) -> float:
    """`value`, or the largest finite float of its sign when it overflowed."""
    return math.copysign(_MAX, value) if math.isinf(value) else value


def _exponent(values: Iterable[float]) -> int:
    """An e with |v| / 2**e < 1 for every v (0 when all are zero): dividing by 2**e is exact for normal floats."""
    largest = max((abs(v) for v in values), default=0.0)
    return math.frexp(largest)[1]


def _down(values: Iterable[float], e: int) -> List[float]:
    """The values divided by 2**e."""
    return [math.ldexp(v, -e) for v in values]


def _up(value: float, e: int) -> float:
    """`value` times 2**e, saturating at the largest finite float."""
    try:
        return math.ldexp(value, e)
    except OverflowError:
        return math.copysign(_MAX, value)


def _minus(a: float, b: float) -> float:
    """a - b, saturating instead of overflowing."""
    return _clamp(a - b)


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _deviations(values: Sequence[float]) -> Tuple[List[float], int]:
    """Deviations from the mean scaled to below 1, and the power of two they were divided by (overall)."""
    e = _exponent(values)
    scaled = _down(values, e)
    mean = math.fsum(scaled) / len(scaled)
    centred = [v - mean for v in scaled]
    f = _exponent(centred)
    return _down(centred, f), e + f


def _slope(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    """Least-squares slope of ys over xs, or None with fewer than two distinct xs."""
    if len(xs) < 2:
        return None
    dx, ex = _deviations(xs)
    dy, ey = _deviations(ys)
    sxx = math.fsum(d * d for d in dx)
    if not sxx:
        return None
    return _up(math.fsum(a * b for a, b in zip(dx, dy)) / sxx, ey - ex)


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    """Pearson correlation, or None with fewer than 3 values or when either side is constant."""
    if len(xs) < 3:
        return None
    dx, _ = _deviations(xs)
    dy, _ = _deviations(ys)
    sxx, syy = math.fsum(d * d for d in dx), math.fsum(d * d for d in dy)
    if not sxx or not syy:
        return None
    r = math.fsum(a * b for a, b in zip(dx, dy)) / (math.sqrt(sxx) * math.sqrt(syy))
    return max(-1.0, min(1.0, r))


def _sorted(samples: Iterable[RunSample]) -> List[RunSample]:
    ordered = sorted(samples, key=lambda s: s.run)
    if not ordered:
        raise ValueError("a series needs at least one run")
    if len({s.run for s in ordered}) != len(ordered):
        raise ValueError("a series has the same run index twice")
    return ordered


def analyze_series(samples: Iterable[RunSample], reference_fps: Optional[float] = None) -> SeriesAnalysis:
    """Decide stable/degraded from the end state, then find onset, slope and floor (docs/analysis.md)."""
    s = _sorted(samples)
    runs = [x.run for x in s]
    n = len(s)
    # every fps figure is computed on fps / 2**e, which is exact and keeps differences and sums finite
    e = _exponent([x.fps for x in s] + ([reference_fps] if reference_fps is not None else []))
    fps = _down([x.fps for x in s], e)
    width = min(BASELINE_RUNS, max(1, n // 2))
    window = fps[:width]
    baseline = math.ldexp(reference_fps, -e) if reference_fps is not None else _median(window)
    centre = _median(window)
    noise = MAD_TO_SIGMA * _median([abs(v - centre) for v in window]) if width > 1 else 0.0
    threshold = baseline - max(DEGRADED_FRACTION * baseline, DEGRADED_SIGMAS * noise)
    band = baseline - max(ONSET_FRACTION * baseline, ONSET_SIGMAS * noise)
    tail = min(TAIL_RUNS, max(1, n // 2))
    end = _median(fps[-tail:])
    degraded = end < threshold
    onset = slope = slope_runs = None
    start = 0
    if degraded:
        # the final stretch below the band begins after the last two consecutive in-band runs,
        # so one noisy run back inside the band does not move the onset
        inside = [i for i in range(n) if fps[i] >= band and (i == 0 or fps[i - 1] >= band)]
        start = inside[-1] + 1 if inside else 0
        start = min(start, n - 1)
        onset = runs[start]
        slope = _slope(runs[start:], fps[start:])
        slope_runs = [runs[start], runs[-1]] if slope is not None else None
    floor_index = min(range(start, n), key=lambda i: fps[i])
    tail_slope = _slope(runs[-tail:], fps[-tail:])
    still_falling = bool(degraded and tail_slope is not None
                         and tail_slope * (runs[-1] - runs[-tail]) < -(baseline - band))
    window_runs = f"runs {runs[0]}-{runs[width - 1]}"
    base_how = f"given reference {reference_fps:g}" if reference_fps is not None else f"median fps of {window_runs}"
    end_fps, threshold_fps, band_fps = _up(end, e), _up(threshold, e), _up(band, e)
    method = (
        f"baseline = {base_how}; noise = {MAD_TO_SIGMA} x MAD of {window_runs}; "
        f"degraded when the median of the last {tail} runs ({end_fps:.2f}) < baseline - max({DEGRADED_FRACTION:.0%}, "
        f"{DEGRADED_SIGMAS:g} sigma) = {threshold_fps:.2f}; onset = first run after the last two consecutive runs at "
        f"or above baseline - max({ONSET_FRACTION:.1%}, {ONSET_SIGMAS:g} sigma) = {band_fps:.2f}; slope = least "
        f"squares fps/run from the onset to the last run; floor = lowest fps from the onset on; still falling when "
        f"the least-squares fit over the last {tail} runs drops more than the onset band"
    )
    return SeriesAnalysis(
        verdict=Verdict.DEGRADED if degraded else Verdict.STABLE, runs=n, baseline_fps=_up(baseline, e),
        noise_fps=_up(noise, e), threshold_fps=threshold_fps, band_fps=band_fps, end_fps=end_fps,
        drop_fraction=_clamp((baseline - end) / baseline) if baseline else 0.0, onset_run=onset,
        configures_at_onset=s[start].configures if degraded else None,
        slope_fps_per_run=_up(slope, e) if slope is not None else None,
        slope_runs=slope_runs, floor_fps=s[floor_index].fps, floor_run=runs[floor_index],
        still_falling=still_falling, method=method,
    )


@dataclass(frozen=True)
class ThermalAnalysis(_Result):
    """Is a drop thermal: `verdict` thermal, not_thermal, inconclusive, no_drop or no_temperature."""

    verdict: str
    thermal: Optional[bool]
    plateau_run: Optional[int]
    plateau_temp_c: Optional[float]
    peak_run: Optional[int]
    peak_temp_c: Optional[float]
    fps_slope_on_plateau: Optional[float]
    correlation: Optional[float]
    recovered_when_cooled: Optional[bool]
    settled_run: Optional[int]
    settled_temp_c: Optional[float]
    fps_change_settled: Optional[float]
    correlation_on_drop: Optional[float]
    throttling_reported: Optional[bool]
    reason: str
    method: str


THERMAL_METHOD = (
    f"plateau = first run after which no run is more than {PLATEAU_RISE_C} °C hotter (at least "
    f"{PLATEAU_MIN_RUNS} runs); settled = the same with {SETTLED_RISE_C} °C; drop runs = runs below the "
    f"degradation threshold; first rule that applies: no_drop without drop runs; not_thermal if the "
    f"least-squares fps fit over the plateau falls by more than the degradation tolerance; not_thermal if the "
    f"coolest run after the peak is {COOLED_C:g} °C below it and fps has not recovered above the threshold; "
    f"not_thermal if the chip reported no throttling in a drop run, thermal if it reported throttling in every "
    f"one; with cooling, thermal if fps recovered and corr(fps, temp) <= {THERMAL_CORRELATION}; without cooling, "
    f"thermal if the temperature settled, the fps fit over the settled runs changes by less than the tolerance, "
    f"the drop began no later than the settled run, the end state is degraded and corr(fps, temp) from the run before "
    f"the onset <= {THERMAL_CORRELATION}, not_thermal when all but the correlation hold; else inconclusive"
)


def _settled_from(temps: Sequence[float], rise: float) -> Optional[int]:
    """First index k, with PLATEAU_MIN_RUNS values from k on, after which no value exceeds temps[k] by over `rise`."""
    n = len(temps)
    hottest = [0.0] * n  # hottest[k] = max(temps[k:])
    top = -math.inf
    for k in range(n - 1, -1, -1):
        top = max(top, temps[k])
        hottest[k] = top
    return next((k for k in range(n - PLATEAU_MIN_RUNS + 1) if _minus(hottest[k], temps[k]) <= rise), None)


def _run_list(runs: Sequence[int]) -> str:
    """`run 3`, `runs 3, 5`, `runs 3-25` (consecutive) or `runs 3, 5, ..., 25 (9 runs)`."""
    if len(runs) == 1:
        return f"run {runs[0]}"
    if len(runs) <= 3:
        return "runs " + ", ".join(str(r) for r in runs)
    if list(runs) == list(range(runs[0], runs[0] + len(runs))):
        return f"runs {runs[0]}-{runs[-1]}"
    return f"runs {runs[0]}, {runs[1]}, ..., {runs[-1]} ({len(runs)} runs)"


def analyze_thermal(samples: Iterable[RunSample], series: Optional[SeriesAnalysis] = None) -> ThermalAnalysis:
    """Thermal or not: fps falling on a temperature plateau, or not back after cooling, is not thermal;
    the chip's own throttling reports decide next; then fps that recovers on cooling, or that stops falling as
    the temperature settles while following it, is thermal (docs/analysis.md)."""
    s = [x for x in _sorted(samples) if x.temp is not None]
    none = dict(plateau_run=None, plateau_temp_c=None, peak_run=None, peak_temp_c=None, fps_slope_on_plateau=None,
                correlation=None, recovered_when_cooled=None, settled_run=None, settled_temp_c=None,
                fps_change_settled=None, correlation_on_drop=None, throttling_reported=None, method=THERMAL_METHOD)
    if len(s) < PLATEAU_MIN_RUNS:
        return ThermalAnalysis("no_temperature", None, reason="fewer than 3 runs with a temperature", **none)
    series = series or analyze_series(s)
    runs, temps = [x.run for x in s], [float(x.temp) for x in s]  # type: ignore[arg-type]
    n = len(s)
    # fps figures on fps / 2**e (exact), so differences, sums and products cannot overflow
    e = _exponent([x.fps for x in s] + [series.baseline_fps, series.threshold_fps])
    fps = _down([x.fps for x in s], e)
    threshold = math.ldexp(series.threshold_fps, -e)
    tolerance = math.ldexp(series.baseline_fps, -e) - threshold

    def real(value: float) -> float:
        return _up(value, e)

    def change(start: Optional[int]) -> Optional[float]:
        """Fitted fps change from index `start` to the last run (scaled), or None."""
        slope = _slope(runs[start:], fps[start:]) if start is not None else None
        return None if slope is None else _clamp(slope * (runs[-1] - runs[start]))  # type: ignore[index]

    peak = max(range(n), key=lambda i: temps[i])
    plateau = _settled_from(temps, PLATEAU_RISE_C)
    plateau_slope = _slope(runs[plateau:], fps[plateau:]) if plateau is not None else None
    settled = _settled_from(temps, SETTLED_RISE_C)
    settled_change = change(settled)
    coolest = min(range(peak, n), key=lambda i: temps[i])
    cooled = _minus(temps[peak], temps[coolest]) >= COOLED_C
    recovered = fps[coolest] >= threshold if cooled else None
    corr = _pearson(fps, temps)
    drop = [i for i in range(n) if fps[i] < threshold]
    onset = next((i for i in range(n) if runs[i] >= series.onset_run), n - 1) if series.onset_run is not None \
        else (drop[0] if drop else 0)
    first = max(0, onset - 1)  # the last run before the drop began
    corr_drop = _pearson(fps[first:], temps[first:])
    denied = [runs[i] for i in drop if s[i].throttling is False]
    reported = False if denied else (True if drop and all(s[i].throttling is True for i in drop) else None)
    found = dict(
        plateau_run=runs[plateau] if plateau is not None else None,
        plateau_temp_c=temps[plateau] if plateau is not None else None, peak_run=runs[peak],
        peak_temp_c=temps[peak], fps_slope_on_plateau=real(plateau_slope) if plateau_slope is not None else None,
        correlation=corr, recovered_when_cooled=recovered, settled_run=runs[settled] if settled is not None else None,
        settled_temp_c=temps[settled] if settled is not None else None,
        fps_change_settled=real(settled_change) if settled_change is not None else None,
        correlation_on_drop=corr_drop, throttling_reported=reported, method=THERMAL_METHOD,
    )

    def verdict(name: str, reason: str) -> ThermalAnalysis:
        return ThermalAnalysis(name, {"thermal": True, "not_thermal": False}.get(name), reason=reason, **found)

    if not drop:
        return verdict("no_drop", "fps never fell below the degradation threshold")
    plateau_change = change(plateau)
    if plateau is not None and plateau_slope is not None and plateau_change is not None and plateau_change < -tolerance:
        return verdict("not_thermal", f"temperature plateaued from run {runs[plateau]} ({temps[plateau]:.2f} °C) "
                                      f"while fps kept falling ({real(plateau_slope):.2f} fps/run)")
    if cooled and not recovered:
        return verdict("not_thermal", f"cooled {_minus(temps[peak], temps[coolest]):.1f} °C below the peak and fps "
                                      f"stayed at {s[coolest].fps:.2f}")
    follows = f"r = {corr_drop:.2f} from run {runs[first]}" if corr_drop is not None else "r undefined"
    if denied:
        return verdict("not_thermal", f"the chip reported no throttling in {_run_list(denied)}, where fps was "
                                      f"below the degradation threshold ({series.threshold_fps:.2f})")
    if reported:
        return verdict("thermal", f"the chip reported throttling in every run below the degradation threshold "
                                  f"({_run_list([runs[i] for i in drop])}); {follows}")
    if cooled:
        if corr is not None and corr <= THERMAL_CORRELATION:
            return verdict("thermal", f"fps follows temperature (r = {corr:.2f}) and recovered to "
                                      f"{s[coolest].fps:.2f} once cooled")
        return verdict("inconclusive", "fps recovered on cooling but does not follow temperature")
    if settled is None:
        return verdict("inconclusive", f"no cooling observed and the temperature was still rising at the last run "
                                       f"(never within {SETTLED_RISE_C:g} °C for {PLATEAU_MIN_RUNS} runs)")
    if series.verdict is not Verdict.DEGRADED:
        return verdict("inconclusive", f"no cooling observed and fps fell below the degradation threshold only "
                                       f"in {_run_list([runs[i] for i in drop])}")
    held = (f"the temperature settled from run {runs[settled]} ({temps[settled]:.2f} °C, within "
            f"{SETTLED_RISE_C:g} °C to the end)")
    if onset > settled:  # a stepwise throttle may still drop fps on the last degree: too little heating to tell
        return verdict("inconclusive", f"fps began to fall at run {runs[onset]}, after {held}: no cooling "
                                       f"observed and too little heating left to tell")
    if settled_change is not None and abs(settled_change) > tolerance:
        moving = "falling" if settled_change < 0 else "rising"
        return verdict("inconclusive", f"{held} but fps was still {moving} ({real(settled_change):+.2f} fps fitted "
                                       f"over those runs): no cooling observed, too few runs to tell")
    if corr_drop is None or corr_drop > THERMAL_CORRELATION:
        return verdict("not_thermal", f"fps stopped falling as {held}, but it does not follow the temperature "
                                      f"({follows})")
    level = real(_median(fps[settled:]))
    return verdict("thermal", f"fps fell from {s[first].fps:.2f} to {level:.2f} while the temperature rose from "
                              f"{temps[first]:.2f} to {temps[settled]:.2f} °C, and stopped falling from run "
                              f"{runs[settled]} as the temperature settled at {temps[settled]:.2f} °C (fps "
                              f"{real(settled_change or 0.0):+.2f} fitted over the {n - settled} settled runs); "
                              f"{follows}")


@dataclass(frozen=True)
class Attribution(_Result):
    """What triggers degradation: `cause` configure_count, inference_time, inconclusive or no_degradation."""

    cause: str
    onset_a: Optional[int]
    onset_b: Optional[int]
    configures: List[Optional[float]]
    inference_s: List[Optional[float]]
    reason: str
    method: str


def _close(x: float, y: float) -> bool:
    """Whether x and y agree within ATTRIBUTION_TOLERANCE of the larger magnitude (overflow-safe)."""
    e = _exponent([x, y, 1e-9])  # 1e-9: two zeros agree
    a, b, floor = math.ldexp(x, -e), math.ldexp(y, -e), math.ldexp(1e-9, -e)
    return abs(a - b) <= ATTRIBUTION_TOLERANCE * max(abs(a), abs(b), floor)


def attribute_trigger(group_a: Sequence[RunSample], group_b: Sequence[RunSample]) -> Attribution:
    """Compare two groups that varied configure count vs inference time: which quantity predicts the onset."""
    for sample in list(group_a) + list(group_b):
        if sample.configures is None or sample.inference_s is None:
            raise ValueError(f"run {sample.run} lacks configures or inference_s")
    a, b = analyze_series(group_a), analyze_series(group_b)

    def at(samples: Sequence[RunSample], analysis: SeriesAnalysis) -> RunSample:
        """The sample at the onset, or the last one when the group never degraded."""
        ordered = _sorted(samples)
        return next((x for x in ordered if x.run == analysis.onset_run), ordered[-1])

    sa, sb = at(group_a, a), at(group_b, b)
    cfg, inf = [sa.configures, sb.configures], [sa.inference_s, sb.inference_s]
    method = (f"onsets from analyze_series; cumulative configures and inference seconds compared at the onsets "
              f"(or, for a group that never degraded, at its last run); 'agree' means within "
              f"{ATTRIBUTION_TOLERANCE:.0%}")
    da, db = a.verdict is Verdict.DEGRADED, b.verdict is Verdict.DEGRADED
    cause, reason = "inconclusive", "the groups did not separate configure count from inference time"
    if not da and not db:
        cause, reason = "no_degradation", "neither group degraded"
    elif da and db:
        same_cfg, same_inf = _close(cfg[0], cfg[1]), _close(inf[0], inf[1])  # type: ignore[arg-type]
        if same_cfg and not same_inf:
            cause, reason = "configure_count", "both onsets came at the same configure count, not the same inference time"
        elif same_inf and not same_cfg:
            cause, reason = "inference_time", "both onsets came at the same inference time, not the same configure count"
    else:
        deg, ok = (sa, sb) if da else (sb, sa)
        if ok.inference_s >= deg.inference_s and ok.configures < deg.configures:  # type: ignore[operator]
            cause, reason = "configure_count", "the stable group ran longer but configured fewer times"
        elif ok.configures >= deg.configures and ok.inference_s < deg.inference_s:  # type: ignore[operator]
            cause, reason = "inference_time", "the stable group configured as often but ran for less time"
    return Attribution(cause, a.onset_run, b.onset_run, cfg, inf, reason, method)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RecoveryOutcome(_Result):
    """What one recovery action did: recovered, partial, not_recovered or device_error (no fps at all)."""

    action: str
    fps_after: Optional[float]
    outcome: str
    restored_fraction: Optional[float]


@dataclass(frozen=True)
class RecoveryAnalysis(_Result):
    """Outcomes of recovery actions on a degraded device and which ones restored throughput."""

    before_fps: float
    degraded_fps: float
    outcomes: List[RecoveryOutcome]
    restoring_actions: List[str]
    method: str


def recovery_outcomes(before_fps: float, degraded_fps: float, after: Mapping[str, Optional[float]],
                      tolerance: float = RECOVERY_TOLERANCE) -> RecoveryAnalysis:
    """Classify each action by the fps measured after it (None: the device gave no fps at all)."""
    # fps figures on fps / 2**e (exact), so differences and products cannot overflow
    e = _exponent([before_fps, degraded_fps] + [v for v in after.values() if v is not None])
    before, degraded = math.ldexp(before_fps, -e), math.ldexp(degraded_fps, -e)
    target, lost, gain = _clamp(before * (1 - tolerance)), before - degraded, _clamp(tolerance * before)
    outcomes = []
    for action, fps in after.items():
        if fps is None:
            outcomes.append(RecoveryOutcome(action, None, "device_error", None))
            continue
        now = math.ldexp(fps, -e)
        fraction = (now - degraded) / lost if lost > 0 else None
        if fraction is not None and math.isinf(fraction):  # a loss too small to divide by: undefined
            fraction = None
        if now >= target:
            outcome = "recovered"
        elif now - degraded > gain:
            outcome = "partial"
        else:
            outcome = "not_recovered"
        outcomes.append(RecoveryOutcome(action, fps, outcome, fraction))
    method = (f"recovered when fps after the action >= {1 - tolerance:.0%} of the fps before degradation "
              f"({_up(target, e):.2f}); partial when it gained more than {tolerance:.0%} of it over the degraded "
              f"fps; restored fraction = (after - degraded) / (before - degraded)")
    return RecoveryAnalysis(before_fps, degraded_fps, outcomes,
                            [o.action for o in outcomes if o.outcome == "recovered"], method)


@dataclass(frozen=True)
class Interval(_Result):
    """A proportion k/n with its confidence interval."""

    k: int
    n: int
    low: float
    high: float
    method: str


def wilson_interval(k: int, n: int, z: float = WILSON_Z) -> Interval:
    """Wilson score interval for k successes in n trials (95 % by default); n = 0 gives [0, 1]."""
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k} n={n}")
    method = f"Wilson score interval, z = {z:.2f}"
    if n == 0:
        return Interval(k, n, 0.0, 1.0, method)
    p = k / n
    a = z * z / n  # z**2 / n; inf when z is huge, and the interval tends to [0, 1]
    if math.isinf(a):
        return Interval(k, n, 0.0, 1.0, method)
    # centre = (p + z²/2n) / (1 + z²/n); half = z / (1 + z²/n) × sqrt(p(1 − p)/n + z²/4n²), rearranged so
    # that no intermediate exceeds the inputs
    centre = (p + a / 2) / (1 + a)
    half = math.sqrt(a / (1 + a)) * math.sqrt((p * (1 - p) + a / 4) / (1 + a))
    return Interval(k, n, max(0.0, centre - half), min(1.0, centre + half), method)


@dataclass(frozen=True)
class RunVerdict(_Result):
    """The verdict of one run, why, and the series analysis behind it when there was one."""

    verdict: Verdict
    reason: str
    series: Optional[SeriesAnalysis]


def classify_run(samples: Sequence[RunSample], infra_error: Optional[str] = None,
                 device_error: Optional[str] = None, reference_fps: Optional[float] = None) -> RunVerdict:
    """Per-run verdict; an infra error wins (the run says nothing about the device), then a device error."""
    if infra_error:
        return RunVerdict(Verdict.INFRA_ERROR, infra_error, None)
    if device_error:
        return RunVerdict(Verdict.DEVICE_ERROR, device_error, None)
    if not samples:
        return RunVerdict(Verdict.INFRA_ERROR, "no samples were recorded", None)
    series = analyze_series(samples, reference_fps)
    if series.verdict is Verdict.DEGRADED:
        reason = f"fell from {series.baseline_fps:.2f} to {series.end_fps:.2f} fps from run {series.onset_run}"
    else:
        reason = f"held {series.end_fps:.2f} fps against a {series.baseline_fps:.2f} fps baseline"
    return RunVerdict(series.verdict, reason, series)


@dataclass(frozen=True)
class VerdictCounts(_Result):
    """Counts for "k of n runs degraded": infra errors are left out of both k and n; device errors count in n only."""

    degraded: int
    counted: int
    stable: int
    device_error: int
    infra_error: int
    interval: Interval
    method: str


def aggregate_verdicts(verdicts: Iterable[Union[Verdict, str, RunVerdict]]) -> VerdictCounts:
    """Count verdicts into k of n degraded with a Wilson 95 % interval."""
    values = [Verdict(v.verdict if isinstance(v, RunVerdict) else v) for v in verdicts]
    count = {v: values.count(v) for v in Verdict}
    k = count[Verdict.DEGRADED]
    n = k + count[Verdict.STABLE] + count[Verdict.DEVICE_ERROR]
    method = ("k = degraded runs; n = degraded + stable + device_error runs; infra_error runs excluded from "
              "both; interval = Wilson 95 %")
    return VerdictCounts(k, n, count[Verdict.STABLE], count[Verdict.DEVICE_ERROR], count[Verdict.INFRA_ERROR],
                         wilson_interval(k, n), method)


@dataclass(frozen=True)
class SeriesReport(_Result):
    """What `lab analyze` reports for one CSV: the series and, with temperatures, the thermal analysis."""

    source: str
    series: SeriesAnalysis
    thermal: Optional[ThermalAnalysis]


COLUMNS = ("run", "fps", "temp", "configures", "inference_s")
_CSV_HINT = "expected a header run,fps[,temp[,configures[,inference_s]]] and one row per run"


def parse_series_csv(text: str, source: str) -> List[RunSample]:
    """Read `run,fps[,temp[,configures[,inference_s]]]` rows; bad input raises ConfigError at file:line."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    columns: Optional[List[str]] = None
    samples: List[RunSample] = []
    first_line = {}
    for row in reader:
        line = reader.line_num
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if columns is None:
            columns, is_header = _header(cells, source, line)
            if not is_header:  # the first row is already data, its cells read by position
                samples.append(_row(cells, columns, source, line))
                first_line[samples[-1].run] = line
            continue
        sample = _row(cells, columns, source, line)
        if sample.run in first_line:
            raise ConfigError(f"run {sample.run} appears twice (first at line {first_line[sample.run]})",
                              f"{source}:{line}", "give each run once")
        first_line[sample.run] = line
        samples.append(sample)
    if not samples:
        raise ConfigError("no runs in this CSV", f"{source}:{reader.line_num or 1}", _CSV_HINT)
    return sorted(samples, key=lambda x: x.run)


def _header(cells: List[str], source: str, line: int) -> Tuple[List[str], bool]:
    """The column names, and whether the row was a header (a first row starting with a number is data)."""
    try:
        float(cells[0])
    except ValueError:
        names = [c.lower() for c in cells]
        for name in names:
            if name not in COLUMNS:
                raise ConfigError(f"unknown column {name!r}", f"{source}:{line}",
                                  "columns are " + ", ".join(COLUMNS)) from None
            if names.count(name) > 1:
                raise ConfigError(f"column {name!r} appears twice", f"{source}:{line}", _CSV_HINT) from None
        for required in ("run", "fps"):
            if required not in names:
                raise ConfigError(f"missing column {required!r}", f"{source}:{line}", _CSV_HINT) from None
        return names, True
    if len(cells) > len(COLUMNS):
        raise ConfigError(f"{len(cells)} columns without a header", f"{source}:{line}", _CSV_HINT)
    return list(COLUMNS[: len(cells)]), False


def _row(cells: List[str], columns: List[str], source: str, line: int) -> RunSample:
    """One data row as a RunSample; empty optional cells are None."""
    where = f"{source}:{line}"
    if len(cells) != len(columns):
        raise ConfigError(f"expected {len(columns)} cells, found {len(cells)}", where,
                          "leave optional cells empty instead of dropping them")
    values = {}
    for name, cell in zip(columns, cells):
        if cell == "" and name not in ("run", "fps"):
            values[name] = None
            continue
        try:
            number = float(cell)
        except ValueError:
            raise ConfigError(f"{name} {cell!r} is not a number", where, _CSV_HINT) from None
        problem = CSV_BOUNDS[name].problem(name, number)
        if problem:
            bound = CSV_BOUNDS[name]
            if not bound.whole or math.isfinite(number) and number == int(number):
                problem = problem.replace(_show_number(number), repr(cell), 1)
                raise ConfigError(problem, where, "correct the cell or remove the row "
                                                  "(docs/analysis.md lists lab's physical bounds)")
            raise ConfigError(f"{name} {cell!r} is not a whole number", where, _CSV_HINT)
        if CSV_BOUNDS[name].whole:
            number = int(number)
        values[name] = number
    return RunSample(**values)  # type: ignore[arg-type]


def analyze_csv(text: str, source: str) -> SeriesReport:
    """Parse a series CSV and analyze it (series verdict + thermal analysis when temperatures are present)."""
    samples = parse_series_csv(text, source)
    series = analyze_series(samples)
    has_temp = sum(1 for x in samples if x.temp is not None) >= PLATEAU_MIN_RUNS
    return SeriesReport(source, series, analyze_thermal(samples, series) if has_temp else None)
