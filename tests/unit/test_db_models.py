"""Results database: idempotent sample ingest, write/read round trip, identities, artifacts and secrets."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from lab.db import ingest
from lab.db.ingest import (RECORD_KEYS, count_samples, get_or_create_stack, ingest_samples, store_artifact,
                           upsert_unit)
from lab.db.models import Artifact, Campaign, LogEvent, Phase, Run, Sample
from lab.errors import AgentError

SEED_FPS = [124.78, 124.76, 124.90, 124.81, 124.89, 124.81, 124.80, 124.89, 124.99, 124.81, 124.89, 124.87,
            122.80, 121.38, 118.53, 108.49, 101.51, 98.34, 96.64, 94.04, 91.14, 88.55, 85.65, 83.99, 81.60]
T0 = datetime(2026, 4, 30, 4, 8, 1, tzinfo=UTC)
_names = itertools.count()


def make_run(session, node: str = "node1") -> tuple[Run, Phase]:
    """A campaign with one run and one phase, flushed."""
    campaign = Campaign(name=f"c{next(_names)}", scenario_name="cma_soak", scenario_text="name: cma_soak\n",
                        command_line="lab run scenarios/cma_soak.yaml --inventory virtual")
    stack = get_or_create_stack(session, "h10-5.3.0", "5.3.0", "5.3.0", "5.3.0", chip="hailo10h")
    unit = upsert_unit(session, node, serial="FBFBBDDFC4DEF768D6CEF1F9", soc_id="8CD33CE2AA4ABFFE", chip="hailo10h")
    run = Run(campaign=campaign, index=0, node=node, unit=unit, stack=stack, repeat=1)
    phase = Phase(run=run, index=1, name="soak", boot_id="0b9f6c3e-8d1a-4b57-9a55-3e1f8f2a9c11")
    session.add_all([campaign, run, phase])
    session.flush()
    return run, phase


def seed_records(start: int = 1, stop: int = 25) -> list[dict]:
    """The seed report's 25 benchmark runs as agent records."""
    return [{"seq": i, "ts": (T0 + timedelta(seconds=16 * i)).isoformat(), "step": "benchmark", "step_index": 2,
             "run_index": i, "fps": SEED_FPS[i - 1], "temp": 60.0 + i / 2, "configure_count": i,
             "boot_id": "0b9f6c3e", "uptime": 60.0 + 16 * i, "throttled": "0x0"} for i in range(start, stop + 1)]


def test_ingest_twice_adds_nothing(db_session):
    run, phase = make_run(db_session)
    assert ingest_samples(db_session, run.id, seed_records(), phase_id=phase.id) == 25
    assert ingest_samples(db_session, run.id, seed_records(), phase_id=phase.id) == 0
    assert ingest_samples(db_session, run.id, seed_records(20, 25), phase_id=phase.id) == 0
    db_session.commit()
    assert count_samples(db_session, run.id) == 25
    fps = db_session.scalars(select(Sample.fps).where(Sample.run_id == run.id).order_by(Sample.seq)).all()
    assert fps == SEED_FPS


def test_ingest_overlapping_batches(db_session):
    run, phase = make_run(db_session)
    assert ingest_samples(db_session, run.id, seed_records(1, 10), phase_id=phase.id) == 10
    records = seed_records(5, 25)
    assert ingest_samples(db_session, run.id, records + records, phase_id=phase.id) == 15
    db_session.commit()
    seqs = db_session.scalars(select(Sample.seq).where(Sample.run_id == run.id).order_by(Sample.seq)).all()
    assert seqs == list(range(1, 26))


def test_ingest_is_per_run(db_session):
    run1, _ = make_run(db_session, "node1")
    run2, _ = make_run(db_session, "node2")
    assert ingest_samples(db_session, run1.id, seed_records()) == 25
    assert ingest_samples(db_session, run2.id, seed_records()) == 25


def test_ingest_many_records_in_chunks(db_session):
    run, _ = make_run(db_session)
    records = [{"seq": i, "ts": i, "step": "configure_cycles", "configures": i} for i in range(1, 1201)]
    assert ingest_samples(db_session, run.id, records) == 1200
    assert ingest_samples(db_session, run.id, records) == 0
    assert count_samples(db_session, run.id) == 1200


TRICKY_TEXT = ["", "\\", "\\N", "\\.", "a\tb", "line\nbreak", "cr\rlf\r\n", "NULL", "'quoted' \"double\"",
               "ünïcødé ✓ 温度", "back\\slash\\", " "]


def test_ingest_keeps_any_text_exactly(db_session):
    """Text and `extra` come back as given, whatever they hold (PostgreSQL gets them through COPY's text format)."""
    run, _ = make_run(db_session)
    records = [{"seq": i, "ts": 1777522081.25 + i, "step": text, "boot_id": text, "throttled": text, "error": text,
                "note": text, "more": [text, {f"k{text}": text}]} for i, text in enumerate(TRICKY_TEXT, 1)]
    assert ingest_samples(db_session, run.id, records) == len(TRICKY_TEXT)
    db_session.commit()
    db_session.expire_all()
    stored = db_session.scalars(select(Sample).where(Sample.run_id == run.id).order_by(Sample.seq)).all()
    assert [(s.step, s.boot_id, s.throttled, s.error, s.extra) for s in stored] == [
        (t, t, t, t, {"note": t, "more": [t, {f"k{t}": t}]}) for t in TRICKY_TEXT]


def test_ingest_without_temporary_tables(db_session, monkeypatch):
    """A PostgreSQL role that may not create temporary tables ingests through multi-row VALUES, the same way."""
    monkeypatch.setattr(ingest, "_may_create_temp_tables", lambda *_: False)
    run, phase = make_run(db_session)
    assert ingest_samples(db_session, run.id, seed_records(1, 10), phase_id=phase.id) == 10
    assert ingest_samples(db_session, run.id, seed_records(), phase_id=phase.id) == 15
    records = [{"seq": 100 + i, "ts": 1777522081.25, "step": t, "error": t, "more": {t: t}}
               for i, t in enumerate(TRICKY_TEXT)]
    assert ingest_samples(db_session, run.id, records) == len(TRICKY_TEXT)
    db_session.commit()
    db_session.expire_all()
    stored = db_session.scalars(select(Sample).where(Sample.run_id == run.id, Sample.seq >= 100)
                                .order_by(Sample.seq)).all()
    assert [(s.step, s.error, s.extra) for s in stored] == [(t, t, {"more": {t: t}}) for t in TRICKY_TEXT]
    assert count_samples(db_session, run.id) == 25 + len(TRICKY_TEXT)


def test_record_keys_and_extra(db_session):
    run, phase = make_run(db_session)
    record = {"seq": 7, "ts": 1777522081.5, "step": "benchmark", "phase": "soak", "run": 3, "temp_mean": 61.5,
              "temp_min": 60.1, "temp_max": 62.0, "configures": 3, "fps": float("nan"), "net": "yolo26s",
              "error": None}
    assert ingest_samples(db_session, run.id, [record]) == 1
    sample = db_session.scalar(select(Sample).where(Sample.run_id == run.id))
    assert (sample.phase_id, sample.run_index, sample.temp, sample.temp_min, sample.temp_max) == (
        phase.id, 3, 61.5, 60.1, 62.0)
    assert (sample.configure_count, sample.fps, sample.error) == (3, None, None)
    assert sample.ts == datetime(2026, 4, 30, 4, 8, 1, 500000, tzinfo=UTC)
    assert sample.extra == {"net": "yolo26s", "flagged": ["fps nan is not a finite number"], "raw": {"fps": "NaN"}}


@pytest.mark.parametrize("record, problem", [
    ({"ts": 1, "step": "benchmark"}, "no 'seq'"),
    ({"seq": 1, "step": "benchmark"}, "no 'ts'"),
    ({"seq": "x", "ts": 1, "step": "benchmark"}, "seq='x': invalid literal for int() with base 10: 'x'"),
    ({"seq": 1.5, "ts": 1, "step": "benchmark"}, "seq=1.5: not a whole number"),
    ({"seq": 1, "ts": "yesterday", "step": "b"}, "ts='yesterday': Invalid isoformat string: 'yesterday'"),
    ({"seq": 2**31, "ts": 1, "step": "b"}, "seq=2147483648: out of range"),
])
def test_unreadable_record(db_session, record, problem):
    run, _ = make_run(db_session)
    with pytest.raises(AgentError) as info:
        ingest_samples(db_session, run.id, [seed_records(1, 1)[0], record])
    assert info.value.what == f"unreadable sample record #2 (seq {record.get('seq')!r}): {problem}"
    assert info.value.where == f"run {run.id}"


@pytest.mark.parametrize("key, value, reason", [
    ("fps", "fast", "fps 'fast' is not a number"),
    ("fps", 2.01e154, "fps 2.01e+154 is outside 0..100000 fps"),
    ("fps", -1.0, "fps -1 is outside 0..100000 fps"),
    ("temp_mean", 900.0, "temp_mean 900 is outside -40..150 °C"),
    ("temp_max", float("inf"), "temp_max inf is not a finite number"),
    ("run", 2**40, "run 1099511627776 is outside 0..2147483647"),
    ("configures", True, "configures True is not a number"),
    ("uptime", -5, "uptime -5 is outside 0..1000000000 s"),
])
def test_impossible_value_is_flagged_and_kept_verbatim(db_session, key, value, reason):
    """A node's record with an absurd figure: the sample is kept, the value verbatim in extra, the column empty."""
    run, _ = make_run(db_session)
    good = seed_records(1, 2)
    bad = {"seq": 5, "ts": 1777522081.5, "step": "benchmark", "fps": 120.0, "temp_mean": 60.0, key: value}
    assert ingest_samples(db_session, run.id, [good[0], bad, good[1]]) == 3
    sample = db_session.scalar(select(Sample).where(Sample.run_id == run.id, Sample.seq == 5))
    column = RECORD_KEYS[key]
    assert getattr(sample, column) is None
    assert sample.extra == {"flagged": [reason], "raw": {key: json.dumps(value)}}
    others = {"fps": 120.0, "temp": 60.0}
    assert all(getattr(sample, c) == v for c, v in others.items() if c != column)


# --- write/read round trip (property) ----------------------------------------------------------------

text_ok = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")  # PostgreSQL text has no NUL
finite = st.floats(allow_nan=False, allow_infinity=False)
fps_ok, temp_ok = st.floats(0, 100_000), st.floats(-40, 150)
seconds_ok = st.floats(0, 1e9)
records = st.fixed_dictionaries(
    {"ts": st.datetimes(datetime(1970, 1, 2), datetime(2100, 1, 1), timezones=st.just(UTC)),
     "step": st.text(text_ok, min_size=1, max_size=32)},
    optional={"step_index": st.integers(0, 2**31 - 1), "run_index": st.integers(0, 2**31 - 1),
              "fps": fps_ok, "temp": temp_ok, "temp_min": temp_ok, "temp_max": temp_ok,
              "configure_count": st.integers(0, 2**31 - 1), "boot_id": st.text(text_ok, max_size=64),
              "uptime": seconds_ok, "nominal_s": seconds_ok, "throttled": st.text(text_ok, max_size=32), "error": st.text(text_ok, max_size=200),
              "extra_key": st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), finite,
                                     st.text(text_ok, max_size=20))},
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(records, min_size=1, max_size=20))
def test_samples_write_read_round_trip(db_session, batch):
    run, phase = make_run(db_session)
    batch = [dict(r, seq=i) for i, r in enumerate(batch)]
    assert ingest_samples(db_session, run.id, batch, phase_id=phase.id) == len(batch)
    db_session.commit()
    db_session.expire_all()
    stored = db_session.scalars(select(Sample).where(Sample.run_id == run.id).order_by(Sample.seq)).all()
    columns = sorted(set(RECORD_KEYS.values()))
    for record, sample in zip(batch, stored, strict=True):
        want = {c: record.get(c) for c in columns}
        assert {c: getattr(sample, c) for c in columns} == want
        assert sample.extra == ({"extra_key": record["extra_key"]} if "extra_key" in record else None)
        assert sample.phase_id == phase.id


anything = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8))
MEASURED = ("fps", "temp_mean", "temp_min", "temp_max", "run", "configures", "uptime", "nominal_s")  # one key per column (temp and temp_mean are aliases)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(values=st.lists(st.dictionaries(st.sampled_from(MEASURED), anything, max_size=4), min_size=1, max_size=5))
def test_any_measured_value_never_stops_ingest(db_session, values):
    """Whatever a node writes in its measured fields, every record is stored; what cannot be a figure is flagged."""
    run, _ = make_run(db_session)
    batch = [{"seq": i, "ts": 1777522081.5 + i, "step": "benchmark", **v} for i, v in enumerate(values)]
    assert ingest_samples(db_session, run.id, batch) == len(batch)
    stored = db_session.scalars(select(Sample).where(Sample.run_id == run.id).order_by(Sample.seq)).all()
    for record, sample in zip(batch, stored, strict=True):
        raw = (sample.extra or {}).get("raw", {})
        for key in MEASURED:
            if record.get(key) is not None and key not in raw:  # a number, or text that reads as one ("0")
                assert getattr(sample, RECORD_KEYS[key]) == float(record[key])
        assert set(raw) <= set(record) and len((sample.extra or {}).get("flagged", [])) == len(raw)


# --- identities, artifacts, secrets, cascades --------------------------------------------------------

def test_unit_identity_survives_a_move_and_an_unidentified_unit_stays_apart(db_session):
    first = upsert_unit(db_session, "node1", serial="S1", chip="hailo10h")
    moved = upsert_unit(db_session, "node7", serial="S1", board="Hailo-10H")
    assert moved.id == first.id and (moved.node, moved.chip, moved.board) == ("node7", "hailo10h", "Hailo-10H")
    bare = upsert_unit(db_session, "node2", chip="hailo8", scope="c1")
    assert bare.key == "unidentified:c1:node2" and bare.id != first.id
    assert upsert_unit(db_session, "node3", soc_id="ABC").key == "soc:ABC"


def test_stack_rows_are_shared(db_session):
    a = get_or_create_stack(db_session, "h8-4.23.0", "4.23.0", "4.23.0", "4.23.0", chip="hailo8")
    b = get_or_create_stack(db_session, "h8-4.23.0", "4.23.0", "4.23.0", "4.23.0")
    c = get_or_create_stack(db_session, "h8-4.23.0", "4.23.0", "4.23.0", "4.22.0")
    assert a.id == b.id != c.id


def test_artifacts_are_stored_once(db_session, tmp_path):
    run, phase = make_run(db_session)
    log = b"hailo10 kern.err kernel: cma: cma_alloc: linux,cma: alloc failed, req-size: 256 pages, ret: -16\n"
    one = store_artifact(db_session, run.campaign_id, "runtime_log.txt", "runtime_log", data=log,
                         run_id=run.id, phase_id=phase.id, node="node1")
    two = store_artifact(db_session, run.campaign_id, "runtime_log.txt", "runtime_log", data=log,
                         run_id=run.id, phase_id=phase.id, node="node1")
    assert one.id == two.id
    assert (one.sha256, one.size, one.blob, one.path) == (hashlib.sha256(log).hexdigest(), len(log), log, None)
    (tmp_path / "dmesg.txt").write_bytes(b"hailo1x 0001:01:00.0: Firmware loaded in 0 ms\n")
    on_disk = store_artifact(db_session, run.campaign_id, "dmesg.txt", "dmesg", path=tmp_path / "dmesg.txt")
    assert (on_disk.blob, on_disk.path, on_disk.run_id) == (None, str(tmp_path / "dmesg.txt"), None)
    assert db_session.scalar(select(func.count()).select_from(Artifact)) == 2
    with pytest.raises(ValueError):
        store_artifact(db_session, run.campaign_id, "x", "x")


def test_passwords_are_never_stored(db_session):
    run, phase = make_run(db_session)
    run.campaign.command_line = "lab run s.yaml --db postgresql+psycopg2://lab:hunter2@h/lab"
    run.error = "install failed: ansible_become_password=hunter2"
    phase.error = "PGPASSWORD=hunter2"
    db_session.add(LogEvent(campaign_id=run.campaign_id, source="lab", message="url postgresql://u:hunter2@h/d"))
    db_session.commit()
    db_session.expire_all()
    texts = [run.campaign.command_line, run.error, phase.error, db_session.scalar(select(LogEvent.message))]
    assert not any("hunter2" in t for t in texts)
    assert texts[0] == "lab run s.yaml --db postgresql+psycopg2://lab:***@h/lab"


def test_one_run_per_node_stack_and_repeat(db_session):
    run, _ = make_run(db_session)
    db_session.add(Run(campaign_id=run.campaign_id, index=1, node=run.node, stack_id=run.stack_id, repeat=1))
    with pytest.raises(IntegrityError):
        db_session.flush()


def test_deleting_a_campaign_removes_its_results(db_session):
    run, phase = make_run(db_session)
    ingest_samples(db_session, run.id, seed_records(), phase_id=phase.id)
    db_session.commit()
    db_session.execute(delete(Campaign).where(Campaign.id == run.campaign_id))
    db_session.commit()
    for table in (Run, Phase, Sample):
        assert db_session.scalar(select(func.count()).select_from(table)) == 0


def test_ingest_takes_the_agents_whole_record_stream(db_session):
    run, phase = make_run(db_session)
    stream = [
        {"seq": 1, "ts": 1777522081.0, "kind": "phase_start", "steps": 3, "boot_id": "b"},
        {"seq": 2, "ts": 1777522082.0, "kind": "identity", "serial": "FBFB"},
        {"seq": 3, "ts": 1777522098.0, "kind": "sample", "step": "benchmark", "step_index": 1, "run": 1, "runs": 25,
         "fps": 124.78, "temp_mean": 60.7, "temp_min": 60.1, "temp_max": 61.2, "nominal_s": 15.0, "wall_s": 0.3,
         "boot_id": "b", "uptime": 75.5, "throttled": "0x0", "artifact": {"artifact": "benchmark-1-run001.txt"}},
        {"seq": 4, "ts": 1777522099.0, "kind": "phase_end", "status": "done"},
    ]
    # every record is kept (the node's file is the source of truth), once
    assert ingest_samples(db_session, run.id, stream, phase_id=phase.id) == 4
    assert ingest_samples(db_session, run.id, stream, phase_id=phase.id) == 0
    rows = db_session.scalars(select(Sample).where(Sample.run_id == run.id).order_by(Sample.seq)).all()
    assert [r.step for r in rows] == ["phase_start", "identity", "benchmark", "phase_end"]
    sample = rows[2]
    assert (sample.seq, sample.run_index, sample.fps, sample.temp, sample.nominal_s) == (3, 1, 124.78, 60.7, 15.0)
    assert sample.extra == {"kind": "sample", "runs": 25, "wall_s": 0.3,
                            "artifact": {"artifact": "benchmark-1-run001.txt"}}
    assert rows[3].extra == {"kind": "phase_end", "status": "done"}
