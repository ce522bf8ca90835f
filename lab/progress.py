"""Progress of a campaign: a live table per node on a terminal, otherwise a line per change and a heartbeat."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from rich.console import Console
from rich.live import Live
from rich.table import Table

HEARTBEAT_SECONDS = 60.0  # a log without a terminal hears from a quiet campaign at most once a minute
EVERY_RUNS = 5  # benchmark runs told without a terminal: every 5th and the last


@dataclass
class NodeLine:
    """What the terminal shows for one node."""

    phase: str = "-"
    step: str = "-"
    run: str = "-"
    fps: str = "-"
    temp: str = "-"
    note: str = ""


@dataclass
class _NodeState:
    """What the plain log knows of one node in its current phase."""

    phase: str
    running: bool = True
    step: str | None = None
    run: int | None = None
    runs: int | None = None
    errors: set[str] = field(default_factory=set)


def _stamp(now: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(now))


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _one_line(text) -> str:
    return " ".join(str(text).split())


class PlainLog:
    """The lines to print without a terminal: one per change worth telling, else a heartbeat after a silent minute.

    Pure: it takes events and a clock and returns lines (time-stamped), so it is tested without threads or sleeps.
    """

    def __init__(self, clock: Callable[[], float] = time.time, heartbeat: float = HEARTBEAT_SECONDS,
                 every_runs: int = EVERY_RUNS):
        self.clock = clock
        self.heartbeat = heartbeat
        self.every_runs = every_runs
        self.nodes: dict[str, _NodeState] = {}
        self.last_line: float | None = None
        self._round_phase: str | None = None
        self._round_nodes: set[str] = set()

    def phase(self, node: str, phase: str) -> list[str]:
        """A node starts a phase (the engine's on_phase)."""
        if phase != self._round_phase or node in self._round_nodes:
            # Phases run in lockstep across the fleet, so a new phase means the last one is over for every node;
            # a node whose run ended without a phase_end record (unreachable, unread) must not haunt the heartbeat.
            for state in self.nodes.values():
                state.running = False
            self._round_phase, self._round_nodes = phase, set()
        self._round_nodes.add(node)
        self.nodes[node] = _NodeState(phase)
        return self._lines([f"{node}: {phase} started"])

    def record(self, node: str, rec: dict) -> list[str]:
        """A record the collector read from a node (the engine's on_record)."""
        state = self.nodes.get(node)
        if state is None or not state.running:
            return []  # not started yet (a refused run prints only its error), or finished: never repeated
        if rec.get("phase") not in (None, state.phase):
            return []  # a resumed campaign reads each node's records from the start: earlier phases are told already
        kind, phase = rec.get("kind"), state.phase
        if kind == "phase_end":
            state.running = False
            line = f"{node}: {phase} done ({rec.get('status') or 'ok'})"
            error = _one_line(rec.get("error") or "")
            if error and not any(told in error for told in state.errors):  # "benchmark run 13 failed: <told>"
                line += f": {error}"
            return self._lines([line])
        if kind == "phase_resume":
            return self._lines([f"{node}: {phase} resumed"])
        step = str(rec.get("step") or kind or "")
        if step != state.step:
            state.step, state.run, state.runs = step, None, None
        run, runs = _int(rec.get("run")), _int(rec.get("runs"))
        if run is not None:
            state.run, state.runs = run, runs or state.runs
        where = f"{node}: {phase} {step}" + (f" run {run}/{runs}" if run and runs else f" run {run}" if run else "")
        if rec.get("error"):
            error = _one_line(rec["error"])
            if rec.get("skipped") or error in state.errors:
                return []  # a step skipped after a device failure repeats that failure, which was told
            state.errors.add(error)
            return self._lines([f"{where} error: {error}"])
        if kind == "sample" and run and (run % self.every_runs == 0 or run == runs):
            line = where
            if rec.get("fps") is not None:
                line += f" fps {float(rec['fps']):.1f}"
            if rec.get("temp_mean") is not None:
                line += f" temp {float(rec['temp_mean']):.1f}"
            return self._lines([line])
        return []

    def tick(self) -> list[str]:
        """The heartbeat, when nothing was printed for a minute and a node is still running; else nothing."""
        now = self.clock()
        if self.last_line is not None and now < self.last_line:
            self.last_line = now  # the wall clock went back: count the silence from here
        if self.last_line is None or now - self.last_line < self.heartbeat:
            return []
        by_phase: dict[str, list[_NodeState]] = {}
        for _, state in sorted(self.nodes.items()):
            if state.running:
                by_phase.setdefault(state.phase, []).append(state)
        if not by_phase:
            return []
        parts = []
        for phase, states in by_phase.items():
            part = f"{len(states)} node{'s' if len(states) > 1 else ''} in {phase}"
            runs = [s.run for s in states if s.run]
            if runs:
                lo, hi = min(runs), max(runs)
                total = max((s.runs for s in states if s.runs), default=None)
                part += (f", run {lo}" if lo == hi else f", runs {lo}-{hi}") + (f"/{total}" if total else "")
            parts.append(part)
        return self._lines([f"still running: {'; '.join(parts)}"], now)

    def _lines(self, messages: list[str], now: float | None = None) -> list[str]:
        now = self.clock() if now is None else now
        self.last_line = now
        return [f"[{_stamp(now)}] {m}" for m in messages]


class Progress:
    """Collects updates from the collector; a rich Live table on a terminal, a PlainLog on stderr otherwise."""

    def __init__(self, nodes: list[str], console: Console | None = None, heartbeat: float = HEARTBEAT_SECONDS,
                 clock: Callable[[], float] = time.time):
        self.lines = {n: NodeLine() for n in nodes}
        self.console = console or Console(stderr=True)
        self.plain = None if self.console.is_terminal else PlainLog(clock, heartbeat)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_phase(self, node: str, phase: str) -> None:
        """A node starts a phase."""
        with self._lock:
            line = self.lines.setdefault(node, NodeLine())
            line.phase, line.step, line.run, line.note = phase, "starting", "-", ""
            if self.plain:
                self._print(self.plain.phase(node, phase))

    def on_record(self, node: str, rec: dict) -> None:
        """A record read from a node."""
        with self._lock:
            line = self.lines.setdefault(node, NodeLine())
            line.step = str(rec.get("step") or rec.get("kind") or line.step)
            if rec.get("run") and rec.get("runs"):
                line.run = f"{rec['run']}/{rec['runs']}"
            if rec.get("fps") is not None:
                line.fps = f"{rec['fps']:.1f}"
            if rec.get("temp_mean") is not None:
                line.temp = f"{rec['temp_mean']:.1f}"
            if rec.get("error"):
                line.note = str(rec["error"])[:60]
            if rec.get("kind") == "phase_end":
                line.step = f"done ({rec.get('status')})"
            if self.plain:
                self._print(self.plain.record(node, rec))

    def table(self) -> Table:
        """The terminal's table: one row per node."""
        table = Table(title="lab run", expand=False)
        for col in ("node", "phase", "step", "run", "fps", "°C", "note"):
            table.add_column(col)
        with self._lock:
            for node, l in sorted(self.lines.items()):
                table.add_row(node, l.phase, l.step, l.run, l.fps, l.temp, l.note)
        return table

    @staticmethod
    def _print(lines: list[str]) -> None:
        for text in lines:
            print(text, file=sys.stderr, flush=True)

    def _heartbeat(self) -> None:
        # Event lines are printed by on_phase/on_record as they happen; this thread only wakes for the heartbeat.
        while not self._stop.wait(1.0):
            with self._lock:
                self._print(self.plain.tick())

    def _live(self) -> None:
        with Live(self.table(), console=self.console, refresh_per_second=2, transient=False) as live:
            while not self._stop.wait(1.0):
                live.update(self.table())
            live.update(self.table())

    def __enter__(self) -> Progress:
        target = self._heartbeat if self.plain else self._live
        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
