"""Live progress of a campaign in the terminal: per node its phase, run k of n, last fps and temperature."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.live import Live
from rich.table import Table


@dataclass
class NodeLine:
    """What the terminal shows for one node."""

    phase: str = "-"
    step: str = "-"
    run: str = "-"
    fps: str = "-"
    temp: str = "-"
    note: str = ""


class Progress:
    """Collects updates from the collector; a rich Live table on a terminal, a line per node every 5 s otherwise."""

    def __init__(self, nodes: list[str], console: Console | None = None, every: float = 5.0):
        self.lines = {n: NodeLine() for n in nodes}
        self.console = console or Console(stderr=True)
        self.every = every
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_phase(self, node: str, phase: str) -> None:
        with self._lock:
            line = self.lines.setdefault(node, NodeLine())
            line.phase, line.step, line.run, line.note = phase, "starting", "-", ""

    def on_record(self, node: str, rec: dict) -> None:
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

    def table(self) -> Table:
        table = Table(title="lab run", expand=False)
        for col in ("node", "phase", "step", "run", "fps", "°C", "note"):
            table.add_column(col)
        with self._lock:
            for node, l in sorted(self.lines.items()):
                table.add_row(node, l.phase, l.step, l.run, l.fps, l.temp, l.note)
        return table

    def _plain(self) -> None:
        while not self._stop.wait(self.every):
            with self._lock:
                for node, l in sorted(self.lines.items()):
                    if l.phase == "-":
                        continue  # not started (nodes still being locked): a refused run prints only its error
                    print(f"[{time.strftime('%H:%M:%S')}] {node}: {l.phase} {l.step} run {l.run} "
                          f"fps {l.fps} temp {l.temp} {l.note}".rstrip(), file=sys.stderr, flush=True)

    def _live(self) -> None:
        with Live(self.table(), console=self.console, refresh_per_second=2, transient=False) as live:
            while not self._stop.wait(1.0):
                live.update(self.table())
            live.update(self.table())

    def __enter__(self) -> Progress:
        target = self._live if self.console.is_terminal else self._plain
        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
