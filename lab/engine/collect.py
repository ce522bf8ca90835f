"""Bring the agents' records and artifacts into the store, while a phase runs and after it: cursors per node."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lab.contract import PHASE_END, PHASE_START, SAMPLE, Record
from lab.engine.ports import AgentFiles, Store
from lab.inventory import Host

# Polls and fetches of different nodes run side by side (each node's own are serialised by its lock).
WORKERS = 16


@dataclass
class NodeCursor:
    """How far the controller has read one node's record file, and what it saw last."""

    host: Host
    offset: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    reachable: bool = True
    artifacts: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (run id, sha256)


def parse_records(data: bytes) -> tuple[list[Record], int]:
    """The complete records at the start of `data` and how many bytes they took (a record still being
    written waits for the next read). A line that is not a record (torn by a power cut) is skipped."""
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            records.append(Record.from_json(json.loads(line)))
        except (ValueError, TypeError):  # ContractError is a ValueError
            continue
    return records, end


def run_id_of(record: Record) -> int | None:
    """The run a record belongs to (its run_key is the controller's run id), None for a node-wide record."""
    try:
        return int(record.run_key) if record.run_key is not None else None
    except ValueError:
        return None


def runs_of(records: list[Record]) -> dict[int, list[Record]]:
    """Records by the run they belong to; records without one are not a run's."""
    by_run: dict[int, list[Record]] = {}
    for rec in records:
        run_id = run_id_of(rec)
        if run_id is not None:
            by_run.setdefault(run_id, []).append(rec)
    return by_run


class Collector:
    """Reads new records from every node (from its last offset), stores them, and tells the engine."""

    def __init__(self, files: AgentFiles, store: Store, campaign: str, campaign_id: int, hosts: list[Host],
                 on_read: Callable[[int, list[Record]], None] | None = None,
                 on_record: Callable[[str, dict], None] | None = None):
        self.files = files
        self.store = store
        self.campaign = campaign
        self.campaign_id = campaign_id
        self.cursors = {h.name: NodeCursor(h) for h in hosts}
        self.on_read = on_read  # run id, its records just stored: the engine's state follows
        self.on_record = on_record  # node, record: the progress display
        # One lock per node: the live poller and the end-of-phase fetch never interleave on one node.
        self._locks = {h.name: threading.Lock() for h in hosts}
        self._pool: ThreadPoolExecutor | None = None

    def poll(self, names: list[str] | None = None, timeout: float = 20.0) -> int:
        """Fetch and store what is new on each node; unreachable nodes are skipped, not waited on."""
        return sum(self.poll_node(self.cursors[name], timeout) for name in names or list(self.cursors))

    def poll_many(self, names: list[str], timeout: float = 20.0, stop: threading.Event | None = None) -> None:
        """Poll several nodes side by side; once `stop` is set, nodes not yet started are skipped."""
        self._each(names, lambda name: self.poll_node(self.cursors[name], timeout), stop)

    def finish(self, names: list[str]) -> None:
        """End of a phase, for several nodes side by side: the last records, then the artifacts they name."""
        self._each(names, lambda name: (self.poll([name]), self.fetch_artifacts(name)))

    def _each(self, names: list[str], work: Callable[[str], object], stop: threading.Event | None = None) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="collector")
        futures = [self._pool.submit(lambda n=n: None if stop is not None and stop.is_set() else work(n))
                   for n in names]
        for future in futures:
            future.result()

    def close(self) -> None:
        """Stop the worker threads and every connection to the nodes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.files.close()

    def poll_node(self, cur: NodeCursor, timeout: float = 20.0) -> int:
        with self._locks[cur.host.name]:
            data = self.files.read_records(cur.host, cur.offset, timeout)
            cur.reachable = data is not None
            if data is None:
                return 0
            records, used = parse_records(data)
            cur.offset += used
            return self.ingest(cur, records)

    def ingest(self, cur: NodeCursor, records: list[Record]) -> int:
        """Store records (every kind, keyed by run and node-side seq), then tell the engine and the display."""
        by_run = runs_of(records)
        for run_id, recs in by_run.items():
            for rec in recs:
                for art in rec.artifacts():  # a benchmark sample on a Hailo-10H names two
                    cur.artifacts[art.name] = (run_id, art.sha256)
        added = self.store.ingest(self.campaign, self.campaign_id, cur.host, records)
        if self.on_read is not None:
            for run_id, recs in by_run.items():
                self.on_read(run_id, recs)
        for rec in records:
            if rec.kind in (SAMPLE, PHASE_START, PHASE_END):
                cur.last = rec.to_json()
            if self.on_record:
                self.on_record(cur.host.name, rec.to_json())
        return added

    def fetch_artifacts(self, name: str, timeout: float = 120.0) -> int:
        """Copy the artifacts a node's records named into the store, checking each sha256."""
        cur = self.cursors[name]
        wanted = cur.artifacts
        have = self.store.stored_artifacts(self.campaign_id, name)
        missing = sorted(n for n in wanted if n not in have)
        if not missing or not cur.reachable:
            return 0  # a node that stopped answering keeps its artifacts; they are named in its records
        files = self.files.fetch(cur.host, missing, timeout) or {}
        for art, data in files.items():
            run_id, digest = wanted[art]
            self.store.store_artifact(self.campaign_id, name, art, run_id, data,
                                      intact=hashlib.sha256(data).hexdigest() == digest)
        return len(files)
