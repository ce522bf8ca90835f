"""Nominal (virtual) time versus real time: sleeps shrink by the fleet's time scale, figures do not."""

from __future__ import annotations

import os
import time

from . import tables


def process_started():
    """Real monotonic time at which this process started (from /proc/self/stat), None where unknown."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.monotonic() - max(0.0, age)


class Clock:
    """Real monotonic time; `sleep` takes nominal seconds and sleeps them times the time scale."""

    def __init__(self, time_scale: float = 1.0, grace: float = tables.IDLE_GRACE_S, started="auto"):
        self.time_scale = float(time_scale)
        self.grace = grace
        self.started = process_started() if started == "auto" else started

    def now(self) -> float:
        """Real monotonic seconds (shared by every process on the host, so comparable across them)."""
        return time.monotonic()

    def sleep(self, nominal: float) -> None:
        """Wait `nominal` seconds of virtual time."""
        if nominal > 0 and self.time_scale > 0:
            time.sleep(nominal * self.time_scale)

    def sleep_until(self, real_deadline: float) -> None:
        """Wait until the real monotonic clock reaches `real_deadline`."""
        delay = real_deadline - self.now()
        if delay > 0:
            time.sleep(delay)

    def idle_nominal(self, real_gap: float, end=None) -> float:
        """Virtual seconds that a real gap between two device operations stands for.

        The first `grace` real seconds count 1:1 (process start-up, which no time scale shrinks);
        the rest is divided by the time scale. At time scale 0 no idle time passes at all. When the
        gap ends (real time `end`) in this process's first operation after another process's, this
        process's own start-up (up to STARTUP_MAX_S) also counts 1:1, however slow the host is.
        """
        if real_gap <= 0:
            return 0.0
        own = 0.0
        if end is not None and self.started is not None and end - real_gap < self.started:
            own = max(0.0, min(real_gap, end - self.started, tables.STARTUP_MAX_S))
        real_gap -= own
        head = min(real_gap, self.grace)
        tail = real_gap - head
        if self.time_scale <= 0:
            return own + head
        return own + head + tail / self.time_scale


class FakeClock(Clock):
    """A clock that only moves when told to: deterministic emulation for tests and dry runs."""

    def __init__(self, time_scale: float = 1.0, start: float = 1000.0, grace: float = tables.IDLE_GRACE_S):
        super().__init__(time_scale, grace, started=None)
        self.t = start

    def now(self) -> float:
        """The fake real time."""
        return self.t

    def sleep(self, nominal: float) -> None:
        """Advance the fake real time by `nominal` times the time scale."""
        if nominal > 0:
            self.t += nominal * self.time_scale

    def sleep_until(self, real_deadline: float) -> None:
        """Jump to `real_deadline` when it is in the future."""
        self.t = max(self.t, real_deadline)

    def advance(self, real_seconds: float) -> None:
        """Let `real_seconds` of fake real time pass (an idle gap)."""
        self.t += real_seconds
