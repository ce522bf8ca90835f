"""Bring the agents' records and artifacts from the nodes into the database, while a phase runs and after."""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import subprocess
import tarfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from lab.agent.parsers import ToolOutputError, parse_dmesg, parse_runtime_log
from lab.db.ingest import ingest_samples, store_artifact, upsert_unit
from lab.db.models import Artifact, LogEvent, Run
from lab.inventory import Host

AGENT_WORKDIR = "/var/lib/lab-agent"


@dataclass
class NodeCursor:
    """How far the controller has read one node's record file, and what it saw last."""

    host: Host
    offset: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    reachable: bool = True
    artifacts: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (run id, sha256)


def remote(host: Host, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run a command on a node over SSH; every argument is quoted, nothing is left to the remote shell."""
    return subprocess.run(host.ssh_argv(shlex.join(argv)), capture_output=True, timeout=timeout)


class Collector:
    """Reads new records from every node (tail from the last offset) and ingests them idempotently."""

    def __init__(self, engine: Engine, campaign: str, campaign_id: int, hosts: list[Host],
                 on_record: Callable[[str, dict], None] | None = None):
        self.engine = engine
        self.campaign = campaign
        self.campaign_id = campaign_id
        self.cursors = {h.name: NodeCursor(h) for h in hosts}
        self.on_record = on_record
        self._lock = threading.Lock()

    def path(self, name: str = "records.jsonl") -> str:
        return f"{AGENT_WORKDIR}/{self.campaign}/{name}"

    def poll(self, names: list[str] | None = None, timeout: float = 20.0) -> int:
        """Fetch and ingest what is new on each node; unreachable nodes are skipped, not waited on."""
        added = 0
        for name in names or list(self.cursors):
            added += self.poll_node(self.cursors[name], timeout)
        return added

    def poll_node(self, cur: NodeCursor, timeout: float = 20.0) -> int:
        with self._lock:  # the live poller and the end-of-phase fetch never interleave on one node
            try:
                proc = remote(cur.host, ["sh", "-c", 'test -f "$1" && tail -c +"$2" "$1" || true', "sh",
                                         self.path(), str(cur.offset + 1)], timeout)
            except subprocess.TimeoutExpired:
                cur.reachable = False
                return 0
            if proc.returncode != 0:
                cur.reachable = False
                return 0
            cur.reachable = True
            data = proc.stdout
            end = data.rfind(b"\n") + 1  # a record still being written waits for the next poll
            records = []
            for line in data[:end].splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
            cur.offset += end
            return self.ingest(cur, records)

    def ingest(self, cur: NodeCursor, records: list[dict]) -> int:
        """Store records (every kind, keyed by run and node-side seq) and what they tell about the unit."""
        by_run: dict[int, list[dict]] = {}
        for rec in records:
            try:
                run_id = int(rec.get("run_key"))
            except (TypeError, ValueError):
                continue
            rec = dict(rec)
            rec.setdefault("step", rec.get("kind"))
            by_run.setdefault(run_id, []).append(rec)
            art = rec.get("artifact")
            if isinstance(art, dict) and art.get("artifact"):
                cur.artifacts[str(art["artifact"])] = (run_id, str(art.get("sha256")))
        added = 0
        with Session(self.engine) as session, session.begin():
            for run_id, recs in by_run.items():
                added += ingest_samples(session, run_id, recs)
                for rec in recs:
                    if rec.get("kind") == "identity" and isinstance(rec.get("identity"), dict):
                        self._identity(session, run_id, cur.host, rec["identity"])
        for rec in records:
            cur.last = rec if rec.get("kind") in ("sample", "phase_start", "phase_end") else cur.last
            if self.on_record:
                self.on_record(cur.host.name, rec)
        return added

    def _identity(self, session: Session, run_id: int, host: Host, ident: dict) -> None:
        arch = (ident.get("architecture") or "").lower() or host.chip
        unit = upsert_unit(session, host.name, serial=ident.get("serial_number"), chip=arch,
                           board=ident.get("board_name") or ident.get("product_name"))
        run = session.get(Run, run_id)
        if run is not None and run.unit_id is None:
            run.unit_id = unit.id

    def fetch_artifacts(self, name: str, timeout: float = 120.0) -> int:
        """Copy the artifacts a node's records named into the database, checking each sha256."""
        cur = self.cursors[name]
        wanted = cur.artifacts
        with Session(self.engine) as session:
            have = set(session.scalars(select(Artifact.name).where(Artifact.campaign_id == self.campaign_id,
                                                                   Artifact.node == name)))
        missing = sorted(n for n in wanted if n not in have)
        if not missing:
            return 0
        try:
            proc = remote(cur.host, ["tar", "-C", self.path("artifacts"), "-cf", "-", "--", *missing], timeout)
        except subprocess.TimeoutExpired:
            return 0
        stored = 0
        with tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r:") as tar, Session(self.engine) as session:
            with session.begin():
                for member in tar.getmembers():
                    fh = tar.extractfile(member)
                    if fh is None or member.name not in wanted:
                        continue
                    data = fh.read()
                    run_id, digest = wanted[member.name]
                    kind = "raw" if hashlib.sha256(data).hexdigest() == digest else "raw-mismatch"
                    store_artifact(session, self.campaign_id, member.name, kind, data=data, run_id=run_id, node=name)
                    session.add_all(self.log_events(member.name, data, run_id, name))
                    stored += 1
        return stored

    def log_events(self, artifact: str, data: bytes, run_id: int, node: str) -> list[LogEvent]:
        """The notable lines of a collected log: chip-side runtime log entries and Hailo driver kernel lines."""
        text = data.decode(errors="replace")
        events: list[LogEvent] = []
        try:
            if "runtime_log" in artifact:
                for e in parse_runtime_log(text).entries:
                    events.append(LogEvent(campaign_id=self.campaign_id, run_id=run_id, node=node, source="runtime_log",
                                           level=e.level, message=f"{e.source}: {e.message}"))
            elif "dmesg" in artifact:
                for e in parse_dmesg(text).events:
                    events.append(LogEvent(campaign_id=self.campaign_id, run_id=run_id, node=node, source="dmesg",
                                           level="err" if e.error_code else "info", message=e.message))
        except ToolOutputError:
            pass  # a log without any Hailo line: the artifact itself is kept
        return events
