"""Campaign progress: without a terminal a line per change and a heartbeat at most once a minute; else the table."""

from __future__ import annotations

import io
import re
import time

import pytest
from rich.console import Console

from lab.progress import PlainLog, Progress

T0 = 1763762884  # 2025-11-21 22:08:04 UTC
STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] ", re.M)


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    """Time stamps in UTC, so the exact lines do not depend on the machine's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def rec(kind: str, phase: str = "soak", **fields) -> dict:
    """A record as the collector hands it over (the agent's base fields, step defaulted to the kind)."""
    return {"seq": 1, "ts": T0, "kind": kind, "run_key": 7, "phase": phase, "phase_index": 1,
            "step": fields.pop("step", kind), **fields}


def soak(runs: int = 25, fail_at: int | None = None, unreadable: tuple[int, ...] = (), fps: float = 118.24,
         every: float = 10.0) -> list[tuple[float, dict]]:
    """(seconds after T0, record) of one node's cma_soak phase: identify, collect, `runs` benchmarks, collect."""
    out = [(0.0, rec("phase_start", steps=4)), (1.0, rec("identity", step="identify")),
           (2.0, rec("artifact", step="collect", item="dmesg"))]
    for k in range(1, runs + 1):
        sample = rec("sample", step="benchmark", step_index=2, run=k, runs=runs)
        if k in unreadable:  # the tool's output could not be parsed: recorded, the soak goes on
            sample["error"] = "unreadable benchmark output: no FPS line"
        elif k == fail_at:
            sample["error"] = "HAILO_TIMEOUT(4)"
        else:
            sample.update(fps=fps - k / 10, temp_mean=60 + k / 2)
        out.append((every * k, sample))
        if k == fail_at:
            break
    last = out[-1][0]
    out.append((last + 1, rec("artifact", step="collect", item="runtime_log")))
    error = f"benchmark run {fail_at} failed: HAILO_TIMEOUT(4)" if fail_at else None
    out.append((last + 2, rec("phase_end", status="device_error" if fail_at else "ok", error=error)))
    return out


def feed(log: PlainLog, clock: Clock, nodes: dict[str, list[tuple[float, dict]]], ticks_until: float = 0) -> list[str]:
    """Deliver every node's records in time order, with the heartbeat thread's tick each second between them."""
    events = sorted((t, node, r) for node, records in nodes.items() for t, r in records)
    lines: list[str] = []
    second = 0
    for t, node, r in events:
        while second < t:
            clock.now = T0 + second
            lines += log.tick()
            second += 1
        clock.now = T0 + t
        lines += log.record(node, r)
    while second <= ticks_until:
        clock.now = T0 + second
        lines += log.tick()
        second += 1
    return lines


def start(log: PlainLog, *nodes: str, phase: str = "soak") -> list[str]:
    """The orchestrator's on_phase for each node."""
    return [line for node in nodes for line in log.phase(node, phase)]


def test_a_three_node_soak_prints_starts_ends_every_fifth_run_and_each_error_once():
    clock = Clock()
    log = PlainLog(clock)
    lines = start(log, "node1", "node2", "node3")
    lines += feed(log, clock, {"node1": soak(), "node2": soak(unreadable=(7, 8)), "node3": soak(fail_at=13)},
                  ticks_until=600)
    assert lines == [
        "[22:08:04] node1: soak started",
        "[22:08:04] node2: soak started",
        "[22:08:04] node3: soak started",
        "[22:08:54] node1: soak benchmark run 5/25 fps 117.7 temp 62.5",
        "[22:08:54] node2: soak benchmark run 5/25 fps 117.7 temp 62.5",
        "[22:08:54] node3: soak benchmark run 5/25 fps 117.7 temp 62.5",
        "[22:09:14] node2: soak benchmark run 7/25 error: unreadable benchmark output: no FPS line",
        "[22:09:44] node1: soak benchmark run 10/25 fps 117.2 temp 65.0",
        "[22:09:44] node2: soak benchmark run 10/25 fps 117.2 temp 65.0",
        "[22:09:44] node3: soak benchmark run 10/25 fps 117.2 temp 65.0",
        "[22:10:14] node3: soak benchmark run 13/25 error: HAILO_TIMEOUT(4)",
        "[22:10:16] node3: soak done (device_error)",
        "[22:10:34] node1: soak benchmark run 15/25 fps 116.7 temp 67.5",
        "[22:10:34] node2: soak benchmark run 15/25 fps 116.7 temp 67.5",
        "[22:11:24] node1: soak benchmark run 20/25 fps 116.2 temp 70.0",
        "[22:11:24] node2: soak benchmark run 20/25 fps 116.2 temp 70.0",
        "[22:12:14] node1: soak benchmark run 25/25 fps 115.7 temp 72.5",
        "[22:12:14] node2: soak benchmark run 25/25 fps 115.7 temp 72.5",
        "[22:12:16] node1: soak done (ok)",
        "[22:12:16] node2: soak done (ok)",
    ]  # and nothing in the five minutes after: every node finished, so no heartbeat


def test_a_finished_node_is_never_repeated():
    clock = Clock()
    log = PlainLog(clock)
    start(log, "node1", "node2")
    feed(log, clock, {"node1": soak(runs=3), "node2": soak(runs=25)[:9]})  # node2 is at run 6
    clock.now = T0 + 200
    assert log.record("node1", rec("phase_end", status="ok")) == []  # read twice (resume re-reads): not told twice
    assert log.record("node1", rec("sample", step="benchmark", run=5, runs=5, fps=1.0)) == []
    assert log.tick() == ["[22:11:24] still running: 1 node in soak, run 6/25"]


def test_a_heartbeat_comes_after_a_silent_minute_and_not_before():
    clock = Clock()
    log = PlainLog(clock)
    start(log, "node1", "node2")
    feed(log, clock, {"node1": soak()[:6], "node2": soak()[:5]}, ticks_until=59)  # runs 3 and 2, quiet so far
    clock.now = T0 + 59.9
    assert log.tick() == []
    clock.now = T0 + 60
    assert log.tick() == ["[22:09:04] still running: 2 nodes in soak, runs 2-3/25"]
    clock.now = T0 + 119
    assert log.tick() == []  # at most once a minute
    clock.now = T0 + 120
    assert log.tick() == ["[22:10:04] still running: 2 nodes in soak, runs 2-3/25"]
    clock.now = T0 + 150
    assert log.record("node1", rec("sample", step="benchmark", run=5, runs=25, fps=117.0)) == [
        "[22:10:34] node1: soak benchmark run 5/25 fps 117.0"]
    clock.now = T0 + 209
    assert log.tick() == []  # a line was printed within the minute
    clock.now = T0 + 210
    assert log.tick() == ["[22:11:34] still running: 2 nodes in soak, runs 2-5/25"]


def test_no_heartbeat_once_every_node_finished():
    clock = Clock()
    log = PlainLog(clock)
    start(log, "node1")
    assert feed(log, clock, {"node1": soak(runs=2)}, ticks_until=3600) == [
        "[22:08:24] node1: soak benchmark run 2/2 fps 118.0 temp 61.0",
        "[22:08:26] node1: soak done (ok)",
    ]


def test_nodes_not_started_print_nothing():
    clock = Clock()
    log = PlainLog(clock)
    assert log.record("node1", rec("phase_start")) == []
    assert log.record("node1", rec("sample", step="benchmark", run=5, runs=5, error="boom")) == []
    clock.now = T0 + 3600
    assert log.tick() == []


def test_heartbeat_groups_phases_and_forgets_a_node_that_ended_without_a_record():
    clock = Clock()
    log = PlainLog(clock)
    start(log, "node1", "node2", phase="install")
    log.record("node1", rec("phase_end", phase="install", status="ok"))
    # node2 became unreachable: no phase_end; the next phase starts without it
    start(log, "node1")
    clock.now = T0 + 60
    assert log.tick() == ["[22:09:04] still running: 1 node in soak"]


def test_a_resumed_campaign_does_not_retell_earlier_phases():
    clock = Clock()
    log = PlainLog(clock)
    assert start(log, "node1") == ["[22:08:04] node1: soak started"]
    assert log.record("node1", rec("phase_start", phase="install")) == []
    assert log.record("node1", rec("phase_end", phase="install", status="ok")) == []
    assert log.record("node1", rec("phase_resume", after_seq=40)) == ["[22:08:04] node1: soak resumed"]
    assert log.record("node1", rec("sample", step="benchmark", run=25, runs=25, fps=96.04, temp_mean=80.0)) == [
        "[22:08:04] node1: soak benchmark run 25/25 fps 96.0 temp 80.0"]


def test_errors_once_skips_not_told_and_a_new_phase_end_error_is():
    clock = Clock()
    log = PlainLog(clock)
    start(log, "node1")
    assert log.record("node1", rec("identity", step="identify", error="identify failed: HAILO_TIMEOUT(4)")) == [
        "[22:08:04] node1: soak identify error: identify failed: HAILO_TIMEOUT(4)"]
    assert log.record("node1", rec("event", step="benchmark", skipped=True,
                                   error="skipped after device failure")) == []
    assert log.record("node1", rec("phase_end", status="device_error", error="agent\nkilled")) == [
        "[22:08:04] node1: soak done (device_error): agent killed"]


def test_plain_progress_prints_each_change_when_it_happens(capsys):
    """Through the object the CLI uses: lines reach stderr at once, not on the next 5 s sweep."""
    with Progress(["node1", "node2"], console=Console(file=io.StringIO())) as progress:
        progress.on_phase("node1", "soak")
        progress.on_record("node1", rec("phase_start"))
        progress.on_record("node1", rec("sample", step="benchmark", run=5, runs=25, fps=118.24, temp_mean=71.3))
        progress.on_record("node1", rec("phase_end", status="ok"))
        err = capsys.readouterr().err
    assert STAMP.sub("", err) == ("node1: soak started\n"
                                  "node1: soak benchmark run 5/25 fps 118.2 temp 71.3\n"
                                  "node1: soak done (ok)\n")
    assert len(STAMP.findall(err)) == 3  # each line time-stamped
    assert capsys.readouterr().err == ""  # node2 never started, node1 finished: nothing more


def test_plain_progress_thread_prints_the_heartbeat(capsys):
    clock = Clock()
    with Progress(["node1"], console=Console(file=io.StringIO()), clock=clock) as progress:
        progress.on_phase("node1", "soak")
        assert capsys.readouterr().err == "[22:08:04] node1: soak started\n"
        clock.now = T0 + 60
        deadline = time.monotonic() + 5
        while "still running" not in (err := capsys.readouterr().err) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert err == "[22:09:04] still running: 1 node in soak\n"


def test_a_terminal_gets_the_live_table_and_no_lines(capsys):
    screen = io.StringIO()
    with Progress(["node1", "node2"], console=Console(file=screen, force_terminal=True, width=80)) as progress:
        progress.on_phase("node1", "soak")
        progress.on_record("node1", rec("sample", step="benchmark", run=5, runs=25, fps=118.24, temp_mean=71.3))
    assert capsys.readouterr().err == ""
    assert "node1" in screen.getvalue()
    out = Console(file=io.StringIO(), width=80, color_system=None)
    out.print(progress.table())
    assert out.file.getvalue().splitlines() == [
        "                         lab run                          ",
        "┏━━━━━━━┳━━━━━━━┳━━━━━━━━━━━┳━━━━━━┳━━━━━━━┳━━━━━━┳━━━━━━┓",
        "┃ node  ┃ phase ┃ step      ┃ run  ┃ fps   ┃ °C   ┃ note ┃",
        "┡━━━━━━━╇━━━━━━━╇━━━━━━━━━━━╇━━━━━━╇━━━━━━━╇━━━━━━╇━━━━━━┩",
        "│ node1 │ soak  │ benchmark │ 5/25 │ 118.2 │ 71.3 │      │",
        "│ node2 │ -     │ -         │ -    │ -     │ -    │      │",
        "└───────┴───────┴───────────┴──────┴───────┴──────┴──────┘",
    ]
