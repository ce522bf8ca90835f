"""Writing results: idempotent bulk ingest of agent records, and get-or-create of units, stacks, artifacts."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from lab.bounds import INT32_MAX, RECORD_BOUNDS
from lab.db.models import Artifact, Phase, Sample, Stack, Unit
from lab.errors import AgentError

# Agent record key -> sample column. Keys not listed (except `phase` and `kind`) are kept in `extra`.
RECORD_KEYS = {
    "seq": "seq", "ts": "ts", "step": "step", "step_index": "step_index",
    "run_index": "run_index", "run": "run_index",
    "fps": "fps", "temp": "temp", "temp_mean": "temp", "temp_min": "temp_min", "temp_max": "temp_max",
    "configure_count": "configure_count", "configures": "configure_count",
    "boot_id": "boot_id", "uptime": "uptime", "throttled": "throttled", "error": "error", "nominal_s": "nominal_s",
    "hailo_throttling": "chip_throttling",
    # per-run telemetry (lab/agent/steps.py Agent.telemetry, runtime_log_after_run)
    "pcie_speed": "pcie_speed", "pcie_width": "pcie_width", "pcie_max_speed": "pcie_max_speed",
    "pcie_max_width": "pcie_max_width", "power_state": "power_state", "aspm": "aspm",
    "cma_free_kb": "cma_free_kb", "cma_total_kb": "cma_total_kb", "soc_temp": "soc_temp",
    "arm_clock_mhz": "arm_clock_mhz", "cma_errors": "cma_errors",
}
_FLOATS = {"fps", "temp", "temp_min", "temp_max", "uptime", "nominal_s", "pcie_speed", "pcie_max_speed", "soc_temp",
           "arm_clock_mhz"}
_INTS = {"seq", "step_index", "run_index", "configure_count", "pcie_width", "pcie_max_width", "cma_free_kb",
         "cma_total_kb", "cma_errors"}
_BOOLS = {"chip_throttling"}
_CHUNK = 5000  # rows per executemany or COPY (this bounds memory per statement)
_COPY_TABLE = "lab_sample_in"  # PostgreSQL: the temporary table each batch is copied into


def parse_ts(value: Any) -> datetime:
    """A record timestamp (ISO 8601 text or Unix seconds) as aware UTC."""
    if isinstance(value, bool):
        raise ValueError("a timestamp cannot be true/false")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def sample_row(record: Mapping[str, Any], run_id: int, phase_id: int | None = None) -> dict[str, Any]:
    """One agent record as a `sample` row (every column present); raises ValueError naming the bad key."""
    return dict(zip(_COLUMNS, _row_values(record, run_id, phase_id)))


def _row_values(record: Mapping[str, Any], run_id: int, phase_id: int | None) -> list[Any]:
    """One agent record as the values of `_COLUMNS`, in order (the hot loop of ingest: one pass, no lookups twice).

    A measured value that is not a number or lies outside its physical bound (lab/bounds.py) is
    not stored in its column: the sample is kept with that column NULL, the value verbatim (its JSON
    text) in `extra["raw"]` and the reason in `extra["flagged"]`, so one absurd figure never stops
    ingest and never reaches an analysis. Only a damaged `seq`, `ts` or `step` makes a record unreadable.
    """
    values: list[Any] = [None] * len(_COLUMNS)
    values[0], values[1] = run_id, phase_id
    extra: dict[str, Any] = {}
    position, converters, limits = _POSITION, _CONVERTERS, _LIMITS
    for key, value in record.items():
        at = position.get(key)
        if at is None:
            if key != "phase":
                extra[key] = value
            continue
        if value is None:
            values[at] = None
            continue
        try:
            converted = converters[at](value)
        except (TypeError, ValueError, OverflowError) as exc:
            if at in _REQUIRED_AT:
                raise ValueError(f"{key}={value!r}: {exc}") from None
            _flag(extra, key, value)
            continue
        limit = limits.get(key)
        if limit is not None and not limit[0] <= converted <= limit[1]:  # also false for NaN
            if at in _REQUIRED_AT:
                raise ValueError(f"{key}={value!r}: out of range")
            _flag(extra, key, value)
            continue
        values[at] = converted
    for required, at in _REQUIRED:
        if values[at] is None:
            raise ValueError(f"no '{required}'")
    values[-1] = extra or None
    return values


def _flag(extra: dict[str, Any], key: str, value: Any) -> None:
    """Keep an impossible value verbatim in `extra` with the reason, instead of in its column."""
    bound = RECORD_BOUNDS.get(key)
    reason = (bound.problem(key, value) if bound else None) or f"{key} {value!r} is not a {_KIND.get(key, 'value')}"
    extra.setdefault("flagged", []).append(reason)
    extra.setdefault("raw", {})[key] = json.dumps(value)


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("true/false is not a number")
    return float(value)  # NaN and infinities are caught by the bounds


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("not true/false")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("not a whole number")
    return int(value)


_COLUMNS = ("run_id", "phase_id", *sorted(set(RECORD_KEYS.values())), "extra")
_POSITION = {key: _COLUMNS.index(column) for key, column in RECORD_KEYS.items()}  # record key -> value index
_CONVERTERS = {_COLUMNS.index(c): parse_ts if c == "ts" else _float if c in _FLOATS else _int if c in _INTS
               else _bool if c in _BOOLS else str for c in set(RECORD_KEYS.values())}  # value index -> conversion
_REQUIRED = tuple((c, _COLUMNS.index(c)) for c in ("seq", "ts", "step"))
_REQUIRED_AT = frozenset(at for _, at in _REQUIRED)
# record key -> (low, high): measured values by their physical bounds, seq by the INTEGER column
_LIMITS = {**{key: (b.low, b.high) for key, b in RECORD_BOUNDS.items() if key in RECORD_KEYS},
           "seq": (0, INT32_MAX)}
_KIND = {**{key: "number" for key, column in RECORD_KEYS.items() if column in _FLOATS | _INTS},
         **{key: "true/false" for key, column in RECORD_KEYS.items() if column in _BOOLS}}


def ingest_samples(session: Session, run_id: int, records: Iterable[Mapping[str, Any]],
                   phase_id: int | None = None) -> int:
    """Insert agent records for one run, skipping any (run, seq) already stored; returns rows added.

    Takes the agent's whole record stream and keeps every record (samples, events, identity,
    phase_start/phase_end: the node's file is the source of truth); a record's `kind` stays in
    `extra`, and a record without `step` is filed under its kind. A record's `phase` (a phase
    name) selects its phase when `phase_id` is not given.
    Uses INSERT .. ON CONFLICT DO NOTHING on SQLite and PostgreSQL, so ingesting the same
    file twice, or concurrently, never duplicates a sample.
    """
    phases: dict[str, int] | None = None
    rows = []
    for i, record in enumerate(records):
        if record.get("step") is None and record.get("kind"):
            record = {**record, "step": record["kind"]}
        pid = phase_id
        if pid is None and record.get("phase") is not None:
            if phases is None:
                phases = dict(session.execute(select(Phase.name, Phase.id).where(Phase.run_id == run_id)).all())
            pid = phases.get(str(record["phase"]))
        try:
            rows.append(_row_values(record, run_id, pid))
        except ValueError as exc:
            raise AgentError(f"unreadable sample record #{i + 1} (seq {record.get('seq')!r}): {exc}",
                             where=f"run {run_id}", hint="the agent's records file is damaged") from None
    added = 0
    for start in range(0, len(rows), _CHUNK):
        added += _insert_ignore(session, rows[start:start + _CHUNK])
    return added


def _bind_processors(dialect: Dialect) -> list[tuple[int, Callable[[Any], Any]]]:
    """The column types' own conversions for this dialect, for the columns that need one (timestamp, JSON).

    Numbers and text are already of their Python type (see `_row_values`), so theirs are skipped.
    """
    table = Sample.__table__
    found = ((_COLUMNS.index(name), table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
             for name in ("ts", "extra"))
    return [(i, proc) for i, proc in found if proc is not None]


def _insert_ignore(session: Session, rows: list[list[Any]]) -> int:
    """INSERT rows (values of `_COLUMNS`), ignoring those whose (run_id, seq) exists; returns how many were inserted.

    The hot path of a million-sample campaign, so it hands the driver plain values (SQLite: one
    executemany of tuples, whose rowcount sums the rows really inserted; PostgreSQL: COPY into a
    temporary table, see `_copy_ignore`, else psycopg2's execute_values, pages of multi-row VALUES with
    RETURNING), converted only by the column types' own bind processors.
    """
    if not rows:
        return 0
    connection = session.connection()
    dialect = connection.dialect
    fast = dialect.name == "sqlite" or (dialect.name == "postgresql" and dialect.driver == "psycopg2")
    if not fast:  # other drivers: through SQLAlchemy, which applies the column types itself
        return _insert_ignore_orm(session, dialect.name, [dict(zip(_COLUMNS, r)) for r in rows])
    for i, proc in _bind_processors(dialect):
        for row in rows:
            if row[i] is not None:
                row[i] = proc(row[i])
    columns = ", ".join(_COLUMNS)
    if dialect.name == "sqlite":
        marks = ", ".join("?" * len(_COLUMNS))
        sql = f"INSERT INTO sample ({columns}) VALUES ({marks}) ON CONFLICT (run_id, seq) DO NOTHING"
        return connection.exec_driver_sql(sql, [tuple(r) for r in rows]).rowcount
    with connection.connection.cursor() as cursor:
        if _may_create_temp_tables(connection.connection, cursor):
            return _copy_ignore(cursor, rows)
        from psycopg2.extras import execute_values  # a role without TEMPORARY: multi-row VALUES

        sql = f"INSERT INTO sample ({columns}) VALUES %s ON CONFLICT (run_id, seq) DO NOTHING RETURNING id"
        return len(execute_values(cursor, sql, rows, page_size=1000, fetch=True))


def _may_create_temp_tables(dbapi_connection: Any, cursor: Any) -> bool:
    """Whether this role may create temporary tables here (PostgreSQL's default); asked once per connection."""
    info = dbapi_connection.info  # lives as long as the driver's connection, across pool check-outs
    if "lab_temp_tables" not in info:
        cursor.execute("SELECT has_database_privilege(current_database(), 'TEMPORARY')")
        info["lab_temp_tables"] = bool(cursor.fetchone()[0])
    return info["lab_temp_tables"]


def _copy_ignore(cursor: Any, rows: list[list[Any]]) -> int:
    """PostgreSQL (psycopg2): COPY rows into a temporary table, then INSERT .. SELECT .. ON CONFLICT DO NOTHING.

    Multi-row INSERT .. VALUES made the server parse and type 18 literals per row, more than half of
    its time per sample; COPY does not. The INSERT keeps ON CONFLICT, so ingest stays idempotent and
    safe when run concurrently; the table is per connection and emptied after each batch.
    """
    columns = ", ".join(_COLUMNS)
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_COPY_TABLE} ON COMMIT DELETE ROWS "
                   f"AS SELECT {columns} FROM sample WITH NO DATA")
    text = "".join(["\t".join([_copy_text(value) for value in row]) + "\n" for row in rows])
    cursor.copy_expert(f"COPY {_COPY_TABLE} ({columns}) FROM STDIN", io.StringIO(text))
    cursor.execute(f"INSERT INTO sample ({columns}) SELECT {columns} FROM {_COPY_TABLE} "
                   "ON CONFLICT (run_id, seq) DO NOTHING")
    added = cursor.rowcount
    cursor.execute(f"TRUNCATE {_COPY_TABLE}")  # not DELETE: a long ingest would scan every dead row again
    return added


def _copy_text(value: Any) -> str:
    """One value in COPY's text format: NULL as \\N, backslash, tab, newline and CR escaped."""
    if value is None:
        return "\\N"
    if value.__class__ is str:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return str(value)  # numbers (str of a float is its shortest exact repr), aware datetimes


def _insert_ignore_orm(session: Session, dialect: str, rows: list[dict[str, Any]]) -> int:
    """The portable path: ON CONFLICT DO NOTHING RETURNING where the dialect has it, else look first."""
    table = Sample.__table__
    if dialect in ("sqlite", "postgresql"):
        module = sqlite if dialect == "sqlite" else postgresql
        stmt = module.insert(table).on_conflict_do_nothing(index_elements=["run_id", "seq"]).returning(table.c.id)
        return len(session.execute(stmt, rows).all())
    # Not concurrency-safe, but lab supports only the two above.
    seqs = {r["seq"] for r in rows}
    have = set(session.scalars(select(Sample.seq).where(Sample.run_id == rows[0]["run_id"], Sample.seq.in_(seqs))))
    fresh = list({r["seq"]: r for r in rows if r["seq"] not in have}.values())
    if fresh:
        session.execute(insert(table), fresh)
    return len(fresh)


def count_samples(session: Session, run_id: int) -> int:
    """How many samples a run has."""
    return session.scalar(select(func.count()).select_from(Sample).where(Sample.run_id == run_id)) or 0


NOT_CONFIGURED = "<N/A>"  # what hailortcli <= 4.21 prints for an identify field the board does not have
KEY_MAX = 160  # unit.key's column width


def chip_id(value: Any) -> str | None:
    """An identity value as reported, or None when it says nothing (`<N/A>`, empty, NULs, whitespace)."""
    if value is None:
        return None
    text = str(value).replace("\x00", "").strip()
    return None if not text or text.upper() == NOT_CONFIGURED else text


def unit_key(node: str, serial: str | None = None, soc_id: str | None = None, scope: str | None = None) -> str:
    """A unit's (HAT's) identity, from what its chip reports: its SoC ID, else its serial.

    A chip that reports neither (`<N/A>` and empty count as absent) cannot be told from another one, so
    it is never merged with one: it is keyed `unidentified:<scope>:<node>`, one unit per campaign
    (`scope`) and node. A HAT that moves then shows as two units, never two HATs as one.
    """
    soc, ser = chip_id(soc_id), chip_id(serial)
    if soc:
        return f"soc:{soc.upper()}"
    if ser:
        return f"serial:{ser}"
    if not scope:
        raise ValueError(f"a unit on {node} reports no SoC ID and no serial: its key needs a scope (the campaign)")
    key = f"unidentified:{scope}:{node}"
    if len(key) > KEY_MAX:  # a digest instead of a cut, which could make two keys one
        key = f"unidentified:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def upsert_unit(session: Session, node: str, serial: str | None = None, soc_id: str | None = None,
                chip: str | None = None, board: str | None = None, identity: dict[str, Any] | None = None,
                scope: str | None = None) -> Unit:
    """The unit with this identity, created or updated with what was just discovered.

    `node` becomes the node it was last seen in; its runs stay its runs wherever it moves. A unit first
    stored under its serial (before its SoC ID was read) is re-keyed to its SoC ID, history and all.
    `identity` is the chip's (extended) identify as reported.
    """
    key = unit_key(node, serial, soc_id, scope)
    ser, soc = chip_id(serial), chip_id(soc_id)
    unit = session.scalar(select(Unit).where(Unit.key == key))
    if unit is None and key.startswith("soc:") and ser:
        unit = session.scalar(select(Unit).where(Unit.key == f"serial:{ser}"))
        if unit is not None:
            unit.key = key
    if unit is None:  # INSERT .. ON CONFLICT DO NOTHING: another controller may meet the same HAT at this moment
        session.execute(_dialect_insert(session, Unit).values(key=key, node=node).on_conflict_do_nothing())
        unit = session.scalar(select(Unit).where(Unit.key == key))
    unit.node = node
    for name, value in (("serial", ser), ("soc_id", soc.upper() if soc else None), ("chip", chip), ("board", board)):
        if value:
            setattr(unit, name, value)
    if key.startswith("unidentified:"):
        identity = {**(identity or {}), "note": "unidentified: the chip reports no SoC ID and no serial; "
                                                "its runs are grouped per campaign and node"}
    if identity:
        unit.identity = identity
    session.flush()
    return unit


def _dialect_insert(session: Session, model: type) -> Any:
    """INSERT for `model` in this session's dialect (PostgreSQL or SQLite), which has ON CONFLICT DO NOTHING."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(model)


def get_or_create_stack(session: Session, name: str, hailort: str, driver: str, firmware: str,
                        chip: str | None = None) -> Stack:
    """The stack row for this name and version triple (created if new, also when another controller creates it
    at the same moment: INSERT .. ON CONFLICT DO NOTHING, then read it back)."""
    where = (Stack.name == name, Stack.hailort == hailort, Stack.driver == driver, Stack.firmware == firmware)
    stack = session.scalar(select(Stack).where(*where))
    if stack is None:
        session.execute(_dialect_insert(session, Stack).values(name=name, hailort=hailort, driver=driver,
                                                               firmware=firmware, chip=chip).on_conflict_do_nothing())
        stack = session.scalar(select(Stack).where(*where))
    return stack


def store_artifact(session: Session, campaign_id: int, name: str, kind: str, *, data: bytes | None = None,
                   path: str | Path | None = None, run_id: int | None = None, phase_id: int | None = None,
                   node: str | None = None) -> Artifact:
    """Record an artifact given as bytes (kept in the database) or a file (kept by path); idempotent.

    Storing the same content under the same name for the same run and phase returns the existing row.
    """
    if (data is None) == (path is None):
        raise ValueError("give exactly one of data or path")
    content = data if data is not None else Path(path).read_bytes()  # type: ignore[arg-type]
    digest = hashlib.sha256(content).hexdigest()
    existing = session.scalar(select(Artifact).where(
        Artifact.campaign_id == campaign_id, Artifact.run_id.is_(None) if run_id is None else Artifact.run_id == run_id,
        Artifact.phase_id.is_(None) if phase_id is None else Artifact.phase_id == phase_id,
        Artifact.name == name, Artifact.sha256 == digest))
    if existing is not None:
        return existing
    artifact = Artifact(campaign_id=campaign_id, run_id=run_id, phase_id=phase_id, node=node, name=name, kind=kind,
                        sha256=digest, size=len(content), blob=data,
                        path=str(path) if path is not None else None)
    session.add(artifact)
    session.flush()
    return artifact


PREFLIGHT_KEYS = ("ready", "ready_s", "waited_s", "system_state", "devices", "driver", "dev_node", "ntp_synchronized",
                  "holders", "stopped_services", "chip", "error")


def store_preflight(session: Session, run_id: int, record: Mapping[str, Any]) -> Phase | None:
    """What a phase's pre-flight found (an agent `preflight` record) into phase.preflight and phase.ready_s."""
    phase = session.scalar(select(Phase).where(Phase.run_id == run_id, Phase.name == str(record.get("phase"))))
    if phase is None:
        return None
    phase.preflight = {key: record.get(key) for key in PREFLIGHT_KEYS if key in record}
    ready = record.get("ready_s")
    problem = RECORD_BOUNDS["uptime"].problem("ready_s", ready) if ready is not None else None
    phase.ready_s = None if ready is None or problem else float(ready)
    return phase
