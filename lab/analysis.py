"""Pure analysis of benchmark series: baseline, onset, slope, floor, thermal, attribution, verdicts, statistics."""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

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
COOLED_C = 3.0  # a run this much below the peak temperature counts as cooled down
THERMAL_CORRELATION = -0.7  # fps must follow temperature at least this closely to call it thermal
RECOVERY_TOLERANCE = 0.03  # an action recovers when fps is back within 3 % of the pre-degradation fps
ATTRIBUTION_TOLERANCE = 0.25  # two onsets "agree" on a quantity within 25 %
WILSON_Z = 1.959963984540054  # two-sided 95 %


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
    """One benchmark run: index, fps, and optionally chip temperature and cumulative counters."""

    run: int
    fps: float
    temp: Optional[float] = None
    configures: Optional[int] = None  # open/configure cycles since boot, this run included
    inference_s: Optional[float] = None  # inference seconds since boot, this run included


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


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _slope(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    """Least-squares slope of ys over xs, or None with fewer than two distinct xs."""
    if len(xs) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    """Pearson correlation, or None when either side is constant."""
    if len(xs) < 3:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else None


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
    runs, fps = [x.run for x in s], [x.fps for x in s]
    n = len(s)
    width = min(BASELINE_RUNS, max(1, n // 2))
    window = fps[:width]
    baseline = reference_fps if reference_fps is not None else _median(window)
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
    base_how = f"given reference {baseline:g}" if reference_fps is not None else f"median fps of {window_runs}"
    method = (
        f"baseline = {base_how}; noise = {MAD_TO_SIGMA} x MAD of {window_runs}; "
        f"degraded when the median of the last {tail} runs ({end:.2f}) < baseline - max({DEGRADED_FRACTION:.0%}, "
        f"{DEGRADED_SIGMAS:g} sigma) = {threshold:.2f}; onset = first run after the last two consecutive runs at or "
        f"above baseline - max({ONSET_FRACTION:.1%}, {ONSET_SIGMAS:g} sigma) = {band:.2f}; slope = least squares "
        f"fps/run from the onset to the last run; floor = lowest fps from the onset on; still falling when the "
        f"least-squares fit over the last {tail} runs drops more than the onset band"
    )
    return SeriesAnalysis(
        verdict=Verdict.DEGRADED if degraded else Verdict.STABLE, runs=n, baseline_fps=baseline,
        noise_fps=noise, threshold_fps=threshold, band_fps=band, end_fps=end,
        drop_fraction=(baseline - end) / baseline if baseline else 0.0, onset_run=onset,
        configures_at_onset=s[start].configures if degraded else None, slope_fps_per_run=slope,
        slope_runs=slope_runs, floor_fps=fps[floor_index], floor_run=runs[floor_index],
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
    reason: str
    method: str


def analyze_thermal(samples: Iterable[RunSample], series: Optional[SeriesAnalysis] = None) -> ThermalAnalysis:
    """Thermal or not: fps falling on a temperature plateau, or fps not back after cooling, is not thermal."""
    s = [x for x in _sorted(samples) if x.temp is not None]
    method = (
        f"plateau = first run after which no run is more than {PLATEAU_RISE_C} °C hotter (at least "
        f"{PLATEAU_MIN_RUNS} runs); not thermal if the least-squares fps fit over the plateau falls by more "
        f"than the degradation tolerance, or if the coolest run after the peak is {COOLED_C:g} °C below it and "
        f"fps has not recovered above the degradation threshold; thermal if it has recovered and "
        f"corr(fps, temp) <= {THERMAL_CORRELATION}"
    )
    none = dict(plateau_run=None, plateau_temp_c=None, peak_run=None, peak_temp_c=None, fps_slope_on_plateau=None,
                correlation=None, recovered_when_cooled=None, method=method)
    if len(s) < PLATEAU_MIN_RUNS:
        return ThermalAnalysis("no_temperature", None, reason="fewer than 3 runs with a temperature", **none)
    series = series or analyze_series(s)
    runs, fps, temps = [x.run for x in s], [x.fps for x in s], [x.temp for x in s]
    n = len(s)
    peak = max(range(n), key=lambda i: temps[i])
    plateau = next((k for k in range(n - PLATEAU_MIN_RUNS + 1) if max(temps[k:]) - temps[k] <= PLATEAU_RISE_C), None)
    plateau_slope = _slope(runs[plateau:], fps[plateau:]) if plateau is not None else None
    coolest = min(range(peak, n), key=lambda i: temps[i])
    cooled = temps[peak] - temps[coolest] >= COOLED_C
    recovered = fps[coolest] >= series.threshold_fps if cooled else None
    corr = _pearson(fps, temps)  # type: ignore[arg-type]
    found = dict(
        plateau_run=runs[plateau] if plateau is not None else None,
        plateau_temp_c=temps[plateau] if plateau is not None else None, peak_run=runs[peak],
        peak_temp_c=temps[peak], fps_slope_on_plateau=plateau_slope, correlation=corr,
        recovered_when_cooled=recovered, method=method,
    )
    tolerance = series.baseline_fps - series.threshold_fps
    if not any(v < series.threshold_fps for v in fps):
        return ThermalAnalysis("no_drop", None, reason="fps never fell below the degradation threshold", **found)
    if plateau is not None and plateau_slope is not None and plateau_slope * (runs[-1] - runs[plateau]) < -tolerance:
        reason = (f"temperature plateaued from run {runs[plateau]} ({temps[plateau]:.2f} °C) "
                  f"while fps kept falling ({plateau_slope:.2f} fps/run)")
        return ThermalAnalysis("not_thermal", False, reason=reason, **found)
    if cooled and not recovered:
        reason = f"cooled {temps[peak] - temps[coolest]:.1f} °C below the peak and fps stayed at {fps[coolest]:.2f}"
        return ThermalAnalysis("not_thermal", False, reason=reason, **found)
    if cooled and corr is not None and corr <= THERMAL_CORRELATION:
        reason = f"fps follows temperature (r = {corr:.2f}) and recovered to {fps[coolest]:.2f} once cooled"
        return ThermalAnalysis("thermal", True, reason=reason, **found)
    reason = "fps recovered on cooling but does not follow temperature" if cooled else "no cooling observed"
    return ThermalAnalysis("inconclusive", None, reason=reason, **found)


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

    def close(x: float, y: float) -> bool:
        return abs(x - y) <= ATTRIBUTION_TOLERANCE * max(abs(x), abs(y), 1e-9)

    method = (f"onsets from analyze_series; cumulative configures and inference seconds compared at the onsets "
              f"(or, for a group that never degraded, at its last run); 'agree' means within "
              f"{ATTRIBUTION_TOLERANCE:.0%}")
    da, db = a.verdict is Verdict.DEGRADED, b.verdict is Verdict.DEGRADED
    cause, reason = "inconclusive", "the groups did not separate configure count from inference time"
    if not da and not db:
        cause, reason = "no_degradation", "neither group degraded"
    elif da and db:
        same_cfg, same_inf = close(cfg[0], cfg[1]), close(inf[0], inf[1])  # type: ignore[arg-type]
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
    target, lost = before_fps * (1 - tolerance), before_fps - degraded_fps
    outcomes = []
    for action, fps in after.items():
        if fps is None:
            outcomes.append(RecoveryOutcome(action, None, "device_error", None))
            continue
        fraction = (fps - degraded_fps) / lost if lost > 0 else None
        if fps >= target:
            outcome = "recovered"
        elif fps - degraded_fps > tolerance * before_fps:
            outcome = "partial"
        else:
            outcome = "not_recovered"
        outcomes.append(RecoveryOutcome(action, fps, outcome, fraction))
    method = (f"recovered when fps after the action >= {1 - tolerance:.0%} of the fps before degradation "
              f"({target:.2f}); partial when it gained more than {tolerance:.0%} of it over the degraded fps; "
              f"restored fraction = (after - degraded) / (before - degraded)")
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
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
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
        if not math.isfinite(number) or number < 0:
            raise ConfigError(f"{name} {cell!r} is out of range", where, f"{name} must be a finite number >= 0")
        if name in ("run", "configures"):
            if number != int(number):
                raise ConfigError(f"{name} {cell!r} is not a whole number", where, _CSV_HINT)
            number = int(number)
        values[name] = number
    return RunSample(**values)  # type: ignore[arg-type]


def analyze_csv(text: str, source: str) -> SeriesReport:
    """Parse a series CSV and analyze it (series verdict + thermal analysis when temperatures are present)."""
    samples = parse_series_csv(text, source)
    series = analyze_series(samples)
    has_temp = sum(1 for x in samples if x.temp is not None) >= PLATEAU_MIN_RUNS
    return SeriesReport(source, series, analyze_thermal(samples, series) if has_temp else None)
