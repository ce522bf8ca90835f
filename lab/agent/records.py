"""The agent's append-only record file: one JSON object per line, flushed and fsynced per record."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Dict, Iterator, List, Optional

from lab.contract import RECORD_KINDS, RUN_HEADER, ArtifactRef, ContractError, Record


class RecordLog:
    """Appends records with a sequence number that continues across agent runs (the node is the source of truth)."""

    def __init__(self, path: str):
        self.path = path
        self.seq = 0
        _drop_torn_tail(path)
        self.existing: List[Dict[str, Any]] = list(read_records(path)) if os.path.exists(path) else []
        for record in self.existing:
            self.seq = max(self.seq, int(record.get("seq", 0)))
        self._fh = open(path, "a", encoding="utf-8")
        own_like_parent(path)

    def append(self, kind: str, **fields: Any) -> Dict[str, Any]:
        """Write one record (a contract Record: header + the kind's fields) and make it durable before returning it."""
        if kind not in RECORD_KINDS:
            raise ContractError("record kind %r is not one of %s" % (kind, ", ".join(RECORD_KINDS)))
        header = {k: fields.pop(k) for k in RUN_HEADER if k in fields}
        self.seq += 1
        record = Record(self.seq, time.time(), kind, body=fields, **header).to_json()
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return record

    def close(self) -> None:
        self._fh.close()


def own_like_parent(path: str, directory: Optional[str] = None) -> None:
    """Give `path` the owner of its campaign directory: the SSH login user, who reads it without sudo.

    On a Pi the login user is `pi` and only Ansible knows the become password, so the controller's
    plain-SSH reads of records and artifacts must not need root.
    """
    if os.geteuid() != 0:
        return
    st = os.stat(directory or os.path.dirname(os.path.abspath(path)))
    os.chown(path, st.st_uid, st.st_gid)


def _drop_torn_tail(path: str) -> None:
    """Cut a last line that a power cut left half-written, so the next record starts on its own line."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)


def read_records(path: str, offset: int = 0) -> Iterator[Dict[str, Any]]:
    """Records of a file from a byte offset; a torn last line (power cut mid-write) is skipped."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        for line in fh:
            if not line.endswith(b"\n"):
                break
            try:
                yield json.loads(line)
            except ValueError:
                continue


def write_artifact(directory: str, name: str, data: bytes) -> Dict[str, Any]:
    """Store raw output atomically (temporary file, then rename; mode 0600) and describe it."""
    os.makedirs(directory, exist_ok=True)
    own_like_parent(directory)
    path = os.path.join(directory, name)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    own_like_parent(tmp, directory)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return ArtifactRef(name, hashlib.sha256(data).hexdigest(), len(data)).to_json()


def node_facts() -> Dict[str, Optional[Any]]:
    """boot_id and uptime of this node, attached to every sample."""
    facts: Dict[str, Optional[Any]] = {"boot_id": None, "uptime": None}
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            facts["boot_id"] = fh.read().strip()
        with open("/proc/uptime") as fh:
            facts["uptime"] = float(fh.read().split()[0])
    except OSError:
        pass
    return facts
