"""Turn one run's agent records, in order, into its benchmark series: boots, recovery probes, counters."""

from __future__ import annotations

from typing import Any

from lab.report.model import Segment, Series

ACTIONS = ("cooldown", "driver_reload", "pcie_rescan", "chip_reset")
REBOOT = "reboot"  # a warm reboot before a phase
POWER_CYCLE = "power_cycle"  # a cold power cycle before a phase
RECOVERY = "recovery"  # a power cycle that brought back a lost node (not an experiment)
MEASURE_STEPS = ("benchmark", "configure_cycles")  # rows whose `extra` matters only without an fps
NAN = float("nan")
SYSTEM_KEYS = ("kernel", "packages", "wheels", "dkms", "holds", "firmware_version", "bootloader_version")
IDENTITY_KEYS = ("firmware_version", "architecture", "serial_number", "board_name", "product_name", "part_number")


class SeriesBuilder:
    """Feed a run's records in `seq` order with `add`; read `series` and `identity` afterwards.

    A benchmark belongs to the soak segment of its boot until a recovery action (cooldown,
    driver reload, PCIe rescan, chip reset) happens in that boot; after it, benchmarks are
    that action's probe. A new boot after benchmarks marks a reboot, and the first
    benchmarks of the new boot (before other workload) are the reboot's probe. Configure
    and inference counters are cumulative since boot: a benchmark is one configure plus its
    nominal seconds, a configure cycle one configure, continuous inference one configure
    plus its seconds.
    """

    def __init__(self) -> None:
        """An empty series, before the run's first record."""
        self.series = s = Series()
        self.identity: dict[str, Any] = {}
        self.system: dict[str, Any] = {}
        self._boot: str | None = None
        self._boot_no = 0
        self._configures = 0
        self._inference = 0.0
        self._phase: int | None = None  # nominal_s counts from 0 in each phase: the last phase and value seen
        self._nominal = 0.0
        self._action: str | None = None
        self._boot_probe = False  # this boot came from a reboot or power cycle after benchmarks
        self._segment: Segment | None = None
        self._infer_key: tuple[int, int | None] | None = None
        self._infer_done = 0.0
        self._append = (s.fps.append, s.temp.append, s.configures.append, s.inference_s.append, s.phase.append,
                        s.throttling.append)

    def add(self, step: str, phase: int, fps: float | None, temp: float | None, boot_id: str | None,
            nominal_s: float | None, error: str | None, extra: dict | None, step_index: int | None = None,
            chip_throttling: bool | None = None, telemetry: dict[str, Any] | None = None) -> None:
        """Account for one record (every kind: samples, events, identity, phase markers).

        `telemetry` (the TELEMETRY columns the record set) belongs to a benchmark: its own on a benchmark
        record; on any other record (a runtime-log snapshot taken after a benchmark run) to the benchmark
        before it, or to the next one when none came before.
        """
        if telemetry:
            self._telemetry(step == "benchmark", telemetry)
        if boot_id is not None and boot_id != self._boot:
            self._new_boot(boot_id, extra.get("boot_cause") if extra is not None else None)
        delta = 0.0
        if nominal_s is not None:
            delta = nominal_s - self._nominal if phase == self._phase else nominal_s
            delta = delta if delta > 0.0 else 0.0
            self._phase, self._nominal = phase, nominal_s
        if extra is not None and extra.get("skipped"):
            return  # a step the agent skipped after a device failure: nothing happened
        if step == "system":  # what the node runs as installed, at a phase start: the last one is kept
            self.system = {k: v for k, v in (extra or {}).items() if k in SYSTEM_KEYS}
            return
        flags = extra.get("flagged") if extra is not None else None  # impossible values, kept out of the columns
        if step == "benchmark":  # the hot path: one call per benchmark, a million in a big campaign
            self._configures += 1
            self._inference += delta
            segment = self._segment or self._current()
            position = segment.stop
            add_fps, add_temp, add_configures, add_inference, add_phase, add_throttling = self._append
            add_fps(NAN if fps is None else fps)
            add_throttling(-1 if chip_throttling is None else int(chip_throttling))
            add_temp(NAN if temp is None else temp)
            add_configures(self._configures)
            add_inference(self._inference)
            add_phase(phase)
            segment.stop = position + 1
            if segment.lead_open:
                segment.lead += 1
            if flags:
                self.series.flagged[position] = "; ".join(map(str, flags))
            if fps is None and (error or not flags):  # a flagged fps is a broken figure, not a failed run
                self.series.errors[position] = error or "no fps"
                self._fail(phase, f"benchmark {position + 1}: {error or 'no fps'}")
            return
        if flags:
            self.series.flagged_other.append(f"{step}: {'; '.join(map(str, flags))}")
        if step == "configure_cycles":
            self._configures += 1  # one record per cycle (its own `configures` counts within the step only)
            self._inference += delta
            self._workload(phase, fps, error, self.series.configure_phases)
        elif step == "infer_continuous":
            self._infer(phase, step_index, delta, extra or {})
            self._workload(phase, fps, error, self.series.infer_phases)
        elif step in ACTIONS:
            self._start_probe(step)
        elif step in ("identify", "identity"):
            self._identity(extra or {}, error)
        elif step == "preflight" and error and (extra or {}).get("device_failure"):
            self._fail(phase, error)  # the device did not come up (a bricked chip after a reboot)

    def _telemetry(self, benchmark: bool, reading: dict[str, Any]) -> None:
        """File a telemetry reading under its benchmark position (see `add`)."""
        readings = self.series.telemetry
        position = len(self.series) if benchmark or not len(self.series) else len(self.series) - 1
        mine = readings.get(position)
        if mine is None:  # the usual case: one reading per benchmark, kept as given
            readings[position] = dict(reading)
            return
        for name, value in reading.items():
            if name == "cma_errors" and mine.get(name) is not None:
                value = mine[name] + value  # two snapshots after one benchmark: their new lines add up
            mine[name] = value

    def _new_boot(self, boot_id: str, cause: str | None) -> None:
        """A new boot: mark what booted it (a warm reboot unless the controller said a power cycle) after
        benchmarks, reset the counters and the probe state."""
        cause = cause if cause in (POWER_CYCLE, RECOVERY) else REBOOT
        self._boot_probe = False
        if self._boot is not None and len(self.series):
            self.series.marks.append((len(self.series), cause))
            self._boot_probe = cause != RECOVERY  # what this boot measures first is the reboot's or cycle's probe
        self._boot, self._boot_no = boot_id, self._boot_no + 1
        self.series.boot_causes[self._boot_no] = cause
        self._configures, self._inference, self._phase, self._nominal = 0, 0.0, None, 0.0
        self._action, self._segment, self._infer_key = None, None, None

    def _start_probe(self, action: str) -> None:
        """A recovery action: the following benchmarks of this boot are its probe."""
        self._action = action
        position = len(self.series)
        self.series.marks.append((position, action))
        # opened now, so a failure before any benchmark (the action itself failed) belongs to it
        self._segment = Segment("probe", self._boot_no, action, position, position)
        self.series.segments.append(self._segment)

    def _current(self) -> Segment:
        """The open segment for the next benchmark (a soak segment starts at the boot's first one)."""
        if self._segment is None:
            position = len(self.series)
            self._segment = Segment("soak", self._boot_no, None, position, position)
            self.series.segments.append(self._segment)
        return self._segment

    def _workload(self, phase: int, fps: float | None, error: str | None, phases: set[int]) -> None:
        """A configure cycle or continuous inference: it ends the reboot probe of its segment."""
        phases.add(phase)
        self._current().lead_open = False
        if error and fps is None:
            self._fail(phase, error)

    def _infer(self, phase: int, step_index: int | None, delta: float, extra: dict) -> None:
        """Count one configure per continuous-inference step and add its inference seconds."""
        key = (phase, step_index)
        if key != self._infer_key:
            self._infer_key, self._infer_done = key, 0.0
            self._configures += 1
        done = extra.get("inference_s")
        if isinstance(done, (int, float)):
            self._inference += max(0.0, float(done) - self._infer_done)
            self._infer_done = float(done)
        else:
            self._inference += delta

    def _identity(self, extra: dict, error: str | None) -> None:
        """Keep the versions and identity the device reported; an identify failure is a device failure."""
        ident = extra.get("identity") if isinstance(extra.get("identity"), dict) else {}
        found = {"hailort": extra.get("hailort_version"), "driver": extra.get("driver_version")}
        found.update({k: ident.get(k) for k in IDENTITY_KEYS})
        self.identity.update({k: v for k, v in found.items() if v is not None})
        if error:
            self._fail(None, error)

    def _fail(self, phase: int | None, message: str) -> None:
        """A device failure: the probe's outcome inside a probe, else the run's device error."""
        segment = self._segment
        if segment is None and self._boot_probe:  # the device failed before measuring after a reboot or cycle:
            segment = self._current()               # that is the reboot's (or cycle's) outcome, not the run's
            segment.failure = segment.failure or message
            return
        if segment is not None and segment.kind == "probe":
            segment.failure = segment.failure or message
        elif self.series.failure is None:
            self.series.failure = (phase if phase is not None else -1, message)
