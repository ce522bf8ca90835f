"""The emulated chip: thermal model, chip-side CMA leak driven by configures, runtime log, inference."""

from __future__ import annotations

import contextlib
import math
import os
import random

from . import kernel, tables
from .clock import Clock
from .hw import Paths, load_power_epoch, load_time_scale, load_unit
from .klog import KernelLog
from .state import Store, pid_alive, shared_file

RUNTIME_LOG_FILE = "runtime.log"
RUNTIME_LOG_MAX_BYTES = 512 * 1024
RUNTIME_LOG_KEEP_LINES = 2000


def leak_factor(fallback: float) -> float:
    """Share of nominal throughput left after `fallback` configures fell back to scattered buffers."""
    curve = tables.LEAK_CURVE
    last = len(curve) - 1
    if fallback <= 0:
        return 1.0
    if fallback <= last:
        i = int(fallback)
        j = min(i + 1, last)
        return curve[i] + (curve[j] - curve[i]) * (fallback - i)
    floor = tables.LEAK_FLOOR
    return floor + (curve[last] - floor) * math.exp(-(fallback - last) / tables.LEAK_TAIL_CONFIGURES)


def throttle_factor(temp: float, unit: dict) -> float:
    """Share of throughput the thermal throttle leaves at die temperature `temp` (reversible)."""
    excess = temp - unit["throttle_temp_c"]
    if excess <= 0:
        return 1.0
    return max(unit["throttle_floor"], 1.0 - unit["throttle_per_c"] * excess)


def throttling_state(factor: float) -> str:
    """The throttling state the chip reports at throttle factor `factor` (tables.THROTTLING_STATES)."""
    for lowest, state in tables.THROTTLING_STATES:
        if factor >= lowest:
            return state
    return tables.THROTTLING_STATES[-1][1]


def reports_throttling(library_version: str, is_soc: bool) -> bool:
    """Whether this libhailort logs the chip's throttling-state changes (HailoRT >= 5.2.0 with a Hailo-10H)."""
    try:
        version = tuple(int(part) for part in library_version.split(".")[:3])
    except ValueError:
        return False
    return is_soc and version >= tables.THROTTLING_REPORTED_SINCE


def load_target(unit: dict, utilisation: float) -> float:
    """Temperature the die tends to under a load running at `utilisation` of nominal throughput."""
    share = tables.FIXED_POWER_SHARE
    return unit["idle_temp_c"] + unit["load_temp_rise_c"] * (share + (1.0 - share) * utilisation)


def relax(temp: float, target: float, seconds: float, tau: float) -> float:
    """First-order approach of `temp` to `target` over `seconds` with time constant `tau`."""
    if seconds <= 0:
        return temp
    return target + (temp - target) * math.exp(-seconds / tau)


class RunStats:
    """What one stretch of inference measured: mean fps, frames and temperature samples."""

    def __init__(self, seconds: float, fps: float, frames: int, temps):
        self.seconds = seconds
        self.fps = fps
        self.frames = frames
        self.temps = list(temps)

    @property
    def temp_mean(self) -> float:
        """Mean of the temperature samples."""
        return sum(self.temps) / len(self.temps) if self.temps else float("nan")


class Chip:
    """One emulated Hailo chip whose state lives in the node's /run (lost at every boot, unless the unit's
    HAT keeps power through a warm reboot: see state.boot_state)."""

    def __init__(self, paths=None, unit=None, clock=None):
        self.paths = paths or Paths()
        self.unit = unit if unit is not None else load_unit(self.paths)
        self.clock = clock if clock is not None else Clock(load_time_scale(self.paths))
        self.spec = tables.CHIPS[self.unit["chip"]]
        keeps_power = bool(self.unit.get("warm_reboot_keeps_power"))
        self.store = Store(self.paths.state_dir, self.paths.carry_dir if keeps_power else None,
                           load_power_epoch(self.paths) if keeps_power else None)
        self.klog = KernelLog(self.paths.state_dir, self.paths.journal_socket)
        self.notices = []  # throttling-state changes delivered to this process while it held the device

    @property
    def arch(self) -> str:
        """Device architecture string, e.g. HAILO10H."""
        return self.spec["arch"]

    @property
    def is_soc(self) -> bool:
        """Whether the chip runs its own OS (Hailo-10H), hence has a runtime log and a CMA pool."""
        return self.unit["chip"] == "hailo10h"

    @contextlib.contextmanager
    def transaction(self, catch_up: bool = True):
        """The chip state, locked; idle time since the last operation is applied first."""
        now = self.clock.now()
        with self.store.transaction(now) as s:
            if s["temp"] is None:
                s["temp"] = self.unit["idle_temp_c"]
                s["r"] = now
            if catch_up:
                self._catch_up(s, now)
            yield s
            kernel.sync(self, s)

    def _catch_up(self, s: dict, now: float) -> None:
        """Cool the idle chip for the virtual time since the last update (not while a run streams)."""
        if s.get("active") and pid_alive(s["active"]):
            return
        s["active"] = None
        self._idle(s, self.clock.idle_nominal(now - s["r"], end=now))
        self._throttling(s)  # nobody holds the device: a change now is notified to no one
        s["r"] = max(s["r"], now)

    def _idle(self, s: dict, nominal: float) -> None:
        """Let `nominal` virtual seconds pass at idle power."""
        u = self.unit
        s["temp"] = relax(s["temp"], u["idle_temp_c"], nominal, u["thermal_tau_s"])
        s["v"] += nominal

    def _throttling(self, s: dict):
        """Re-evaluate the throttling state at the die temperature; returns the new state when it changed."""
        state = throttling_state(throttle_factor(s["temp"], self.unit))
        if state == s.get("throttling", tables.THROTTLING_STATES[0][1]):
            return None
        s["throttling"] = state
        return state

    def _notify(self, s: dict) -> None:
        """Re-evaluate the throttling state for the process holding the device, which is told of a change."""
        state = self._throttling(s)
        if state is not None:
            self.notices.append(state)

    def take_notices(self) -> list:
        """The throttling-state changes notified to this process since the last call, oldest first."""
        notices, self.notices = self.notices, []
        return notices

    def firmware_entry(self, s: dict) -> dict:
        """The leak-table row of the firmware running on the chip."""
        return tables.FIRMWARE.get(s.get("firmware") or "", tables.UNKNOWN_FIRMWARE)

    def runtime_log(self, s: dict, lines) -> None:
        """Append lines to the chip-side runtime log (Hailo-10H only); call inside a transaction."""
        if not self.is_soc:
            return
        path = os.path.join(self.paths.state_dir, RUNTIME_LOG_FILE)
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
        shared_file(path)
        if os.path.getsize(path) > RUNTIME_LOG_MAX_BYTES:
            with open(path, encoding="utf-8") as f:
                tail = f.readlines()[-RUNTIME_LOG_KEEP_LINES:]
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(tail)

    def log_open(self) -> None:
        """What the chip-side server logs when a process opens the device."""
        with self.transaction() as s:
            self.runtime_log(
                s,
                [
                    "hailo10 user.info HailoRT-Server: [device.cpp:54] [Device] OS Version: " + tables.CHIP_OS_VERSION,
                    "hailo10 user.info HailoRT-Server: [control.cpp:89] [control__parse_identify_results] "
                    "firmware_version is: %s" % s.get("firmware"),
                ],
            )

    def configure(self) -> dict:
        """One configure cycle: allocate the DMA buffer in the chip's CMA pool, leaking per the table."""
        with self.transaction() as s:
            s["configures"] += 1
            leak = self.firmware_entry(s)["leak"] * float(self.unit["cma_leak"]) if self.is_soc else 0.0
            free = float(self.unit["cma_pool_chunks"]) - s["cma_used"]
            failed = leak > 0 and free < 1.0 - 1e-9
            if failed:
                s["fallback"] += leak
                self.runtime_log(
                    s,
                    [
                        "hailo10 kern.err kernel: cma: cma_alloc: linux,cma: alloc failed, "
                        "req-size: 256 pages, ret: -16"
                    ],
                )
            else:
                s["cma_used"] = min(float(self.unit["cma_pool_chunks"]), s["cma_used"] + leak)
            rng = random.Random("%s:cfg:%d" % (s["boot_id"], s["configures"]))
            ms = tables.CONFIGURE_MS + rng.uniform(-0.6, 0.6)
            self.runtime_log(
                s,
                [
                    "hailo10 user.info HailoRT-Server: [vdevice.cpp:474] [configure] "
                    "Configuring HEF on VDevice took %.5f milliseconds" % ms
                ],
            )
            return {
                "configures": s["configures"],
                "fallback": s["fallback"],
                "cma_failed": failed,
                "configure_ms": ms,
                "boot_id": s["boot_id"],
            }

    def fetch_runtime_log(self) -> str:
        """Drain the chip-side runtime log (each line is returned once)."""
        path = os.path.join(self.paths.state_dir, RUNTIME_LOG_FILE)
        with self.transaction():
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except FileNotFoundError:
                return ""
            os.remove(path)
        return text

    def clear_runtime_log(self) -> None:
        """Forget the chip-side log (the chip-side OS rebooted); call inside a transaction."""
        path = os.path.join(self.paths.state_dir, RUNTIME_LOG_FILE)
        if os.path.exists(path):
            os.remove(path)

    def temperatures(self):
        """(ts0, ts1): the two on-die sensors now."""
        with self.transaction() as s:
            t = s["temp"]
        return t + 0.21, t - 0.17

    @contextlib.contextmanager
    def streaming(self):
        """Mark this process as streaming: its own steps advance time, others do not cool the chip."""
        with self.transaction() as s:
            s["active"] = os.getpid()
        try:
            yield
        finally:
            with self.transaction(catch_up=False) as s:
                if s.get("active") == os.getpid():
                    s["active"] = None
                s["r"] = self.clock.now()

    def busy_idle(self, nominal: float) -> None:
        """Spend `nominal` seconds with the device open but not inferring (open, configure, teardown)."""
        self.clock.sleep(nominal)
        with self.transaction(catch_up=False) as s:
            self._idle(s, nominal)
            self._notify(s)
            s["r"] = self.clock.now()

    def _load(self, s: dict, seconds: float, fallback: float) -> float:
        """Let `seconds` of virtual time pass under inference; returns the utilisation it ran at."""
        u = self.unit
        utilisation = leak_factor(fallback) * throttle_factor(s["temp"], u)
        s["temp"] = relax(s["temp"], load_target(u, utilisation), seconds, u["thermal_tau_s"])
        s["v"] += seconds
        return utilisation

    def infer(self, model_fps: float, fallback: float, seconds: float, step: float = 1.0) -> RunStats:
        """Stream inference for `seconds` of virtual time in steps; call inside `streaming()`."""
        nominal = model_fps * float(self.unit["perf_factor"])
        total = 0.0
        frames = 0.0
        temps = []
        remaining = seconds
        while remaining > 1e-9:
            dt = min(step, remaining)
            self.clock.sleep(dt)
            with self.transaction(catch_up=False) as s:
                utilisation = self._load(s, dt, fallback)
                self._notify(s)
                s["r"] = self.clock.now()
                temps.append(s["temp"])
            frames += nominal * utilisation * dt
            total += dt
            remaining -= dt
        fps = frames / total if total else 0.0
        return RunStats(total, fps, int(frames), temps)

    def account(self, fallback: float, load_seconds: float) -> None:
        """Book inference done frame by frame (Python API): real time not spent inferring was idle."""
        with self.transaction(catch_up=False) as s:
            now = self.clock.now()
            busy_real = load_seconds * self.clock.time_scale
            self._idle(s, self.clock.idle_nominal(now - s["r"] - busy_real))
            self._load(s, load_seconds, fallback)
            self._notify(s)
            s["r"] = max(s["r"], now)

    def jitter(self, key: str, spread: float) -> float:
        """A reproducible small noise term for one measurement of this boot."""
        with self.transaction() as s:
            boot = s["boot_id"]
        return random.Random("%s:%s" % (boot, key)).uniform(-spread, spread)
