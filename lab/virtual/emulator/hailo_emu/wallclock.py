"""The node's wall clock as a Raspberry Pi 5 without an RTC battery has it: stepped shortly after boot.

A Pi 5 has no RTC battery by default. It boots with the wall clock at the time saved at its last
shutdown (systemd-timesyncd's clock file), so the clock is behind; a few seconds after the network
comes up timesyncd gets its first NTP answer and steps CLOCK_REALTIME forward. Anything that measured
a rate with the wall clock across that moment is wrong by the step; monotonic clocks never step.

A virtual node (a systemd-nspawn container) shares the host's CLOCK_REALTIME and cannot step it, so
the emulator models the step for the node's Python processes only: `lab-emu-wallclock.pth` in the
node's dist-packages imports this module at every interpreter start-up, and `install()` makes
`time.time()` and `time.time_ns()` return the emulated wall clock: real time minus `step` seconds
until the node has been up `after` seconds, real time from then on. Nothing else is changed:
`time.monotonic()`, `time.perf_counter()`, CLOCK_BOOTTIME and `/proc/uptime` never step, and
C-level readers of the clock (`datetime.now()`, `time.localtime()`, `date`, the journal) keep the
host's time. A process started after the step sees real time and is left untouched.

Settings: `wall_clock_step_s` and `wall_clock_step_after_s` in the unit's /lab/hw/unit.json
(HAILO_EMU_HW_DIR overrides the directory); the node's boot is its PID 1's start. Standard library
only and Python >= 3.9: this file is copied alone into the node.
"""

from __future__ import annotations

import json
import os
import time

DEFAULT_STEP_S = 60.0  # seconds the clock is behind at boot (an assumption: a short reboot's downtime)
DEFAULT_AFTER_S = 20.0  # real seconds after boot at which the clock is stepped (an assumption)
_REAL = {"time": time.time, "time_ns": time.time_ns}


def settings(hw_dir=None) -> tuple:
    """(step_s, after_s) of this node's unit: 0 step means a clock that never steps."""
    hw_dir = hw_dir or os.environ.get("HAILO_EMU_HW_DIR", "/lab/hw")
    try:
        with open(os.path.join(hw_dir, "unit.json"), encoding="utf-8") as f:
            unit = json.load(f)
    except (OSError, ValueError):
        return 0.0, 0.0  # not a virtual node (or no unit): the real clock
    step = unit.get("wall_clock_step_s")
    after = unit.get("wall_clock_step_after_s")
    return (float(DEFAULT_STEP_S if step is None else step), float(DEFAULT_AFTER_S if after is None else after))


def boot_age() -> float:
    """Seconds since this node booted: since its PID 1 started (CLOCK_BOOTTIME, which never steps)."""
    with open("/proc/1/stat", encoding="ascii") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")


def emulated_wall(real: float, age: float, step: float, after: float) -> float:
    """The wall clock at real time `real` on a node up `age` seconds: behind by `step` until `after`."""
    return real - step if age < after else real


class SteppedClock:
    """time.time()/time.time_ns() replacements: the emulated wall clock of this node."""

    def __init__(self, step: float, after: float, age=boot_age):
        self.step = step
        self.after = after
        self.age = age

    def time(self) -> float:
        """Wall-clock seconds, as the node's clock shows them now."""
        return emulated_wall(_REAL["time"](), self.age(), self.step, self.after)

    def time_ns(self) -> int:
        """Wall-clock nanoseconds, as the node's clock shows them now."""
        real = _REAL["time_ns"]()
        return real - int(self.step * 1e9) if self.age() < self.after else real


def install(clock=None) -> bool:
    """Make time.time()/time_ns() follow the node's stepped wall clock; False when there is nothing to do."""
    if clock is None:
        try:
            step, after = settings()
            if not step or boot_age() >= after:
                return False  # the step is already behind this process, or this node's clock never steps
        except (OSError, ValueError, IndexError, AttributeError):
            return False
        clock = SteppedClock(step, after)
    time.time = clock.time
    time.time_ns = clock.time_ns
    return True


def uninstall() -> None:
    """Give time.time()/time_ns() back their real functions."""
    time.time = _REAL["time"]
    time.time_ns = _REAL["time_ns"]
