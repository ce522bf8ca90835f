"""lab/db's read side on the planted campaign: campaign lookups, the report loader's streaming, artifact bytes and
the live view's queries (SQLite, and PostgreSQL when the fixtures have it)."""

from __future__ import annotations


import pytest
from sqlalchemy.orm import Session

from lab.db.ingest import store_artifact
from lab.db.live import RunKey, campaign_state, encode_cursor, live_state, new_records, runs_of
from lab.db.models import Campaign
from lab.db.planted import plant_campaign
from lab.db.queries import campaign_ref, campaign_rows, campaign_summary, find_campaign
from lab.db.report_load import artifact_bytes, load_report, load_series, open_campaign, reproduce_command, stream_runs
from lab.errors import ConfigError
from lab.report.model import SAMPLE_COLUMNS
from lab.report.synthetic import RECOVERY_NAMES, recovery_phases, recovery_records

RECORDS = 196  # 7 runs with records x (25 benchmarks + phase_start, identity, phase_end); run 6 has none


@pytest.fixture
def planted(db_engine):
    """The planted campaign (8 runs; run 6 an infra error without records), committed; the engine."""
    with Session(db_engine) as session, session.begin():
        plant_campaign(session)
    return db_engine


def campaign_id(engine) -> int:
    """The planted campaign's id."""
    with Session(engine) as session:
        return find_campaign(session, "planted").id


def test_find_campaign_by_name_or_id_and_a_clear_error(planted):
    with Session(planted) as session:
        campaign = find_campaign(session, "planted")
        assert find_campaign(session, str(campaign.id)).name == "planted"
        with pytest.raises(ConfigError, match="no campaign 'nope' in this database"):
            find_campaign(session, "nope")


def test_campaign_ref_is_a_row_or_none(planted):
    cid = campaign_id(planted)
    cid_, name, status, finished = campaign_ref(planted, "planted")
    assert (cid_, name, status, finished.year) == (cid, "planted", "finished", 2026)
    assert campaign_ref(planted, str(cid))[1] == "planted"
    assert campaign_ref(planted, "nope") is None
    assert campaign_ref(planted, "999") is None


def test_campaign_rows_count_recorded_verdicts(planted):
    [row] = campaign_rows(planted)
    assert {k: row[k] for k in ("name", "scenario", "status", "runs", "degraded", "counted", "infra_error")} == {
        "name": "planted", "scenario": "cma_soak", "status": "finished", "runs": 8, "degraded": 4, "counted": 7,
        "infra_error": 1}


def test_campaign_summary_counts_benchmark_samples_per_run(planted):
    summary = campaign_summary(planted, "planted")
    assert (summary["name"], summary["status"], summary["exit_status"]) == ("planted", "finished", 1)
    assert [r["samples"] for r in summary["runs"]] == [25, 25, 25, 25, 25, 25, 0, 25]
    assert [r["verdict"] for r in summary["runs"]] == ["degraded", "degraded", "stable", "stable", "degraded",
                                                        "degraded", "infra_error", "stable"]
    assert summary["runs"][6]["error"] == "soak: unreachable: reboot timeout after 600 s"


def test_open_campaign_reads_no_record_and_load_series_reads_them_all(planted):
    model = open_campaign(planted, "planted")
    assert model.sample_count == 0 and all(len(run.series) == 0 for run in model.runs)
    assert [u.node for u in model.units.values()] == ["node1", "node2", "node3", "node4"]
    assert [p.name for p in model.runs[0].phases] == ["install", "soak"]
    assert model.campaign.reproduce == "lab run scenarios/cma_soak.yaml --inventory pis"
    load_series(planted, model)
    assert model.sample_count == RECORDS
    assert [len(run.series) for run in model.runs] == [25, 25, 25, 25, 25, 25, 0, 25]
    assert model.findings is None  # load_report computes them, load_series does not
    assert load_report(planted, "planted").findings is not None


def test_stream_runs_yields_each_run_loaded_with_its_full_rows(planted):
    model = open_campaign(planted, "planted")
    seen = []
    for run, rows in stream_runs(planted, model):
        assert len(run.series) == 25, "the run's series is loaded before it is yielded"
        assert model.sample_count == 0, "the count is set once the stream is exhausted"
        assert all(len(row) == 2 + len(SAMPLE_COLUMNS) + 1 for row in rows)
        seen.append((run.index, len(rows)))
        first = dict(zip(("run_id", "phase_id", *SAMPLE_COLUMNS, "extra"), rows[0]))
        assert first["run_id"] == run.id and first["seq"] == 1
        # ts comes formatted by the database, ISO 8601 UTC with microseconds, on every backend
        assert first["ts"] == f"2026-04-30T05:{8 + run.index:02d}:01.000000+00:00"
    assert seen == [(0, 28), (1, 28), (2, 28), (3, 28), (4, 28), (5, 28), (7, 28)]
    assert model.sample_count == RECORDS
    assert all(len(unit.observed) == 1 for unit in model.units.values())  # what each chip reported, once


def test_artifact_bytes_from_the_blob_or_the_file_and_none_when_it_is_gone(planted, tmp_path):
    kept, gone = tmp_path / "kept.txt", tmp_path / "gone.txt"
    kept.write_bytes(b"on disk\n")
    gone.write_bytes(b"deleted\n")
    with Session(planted) as session, session.begin():
        cid = find_campaign(session, "planted").id
        by_path = store_artifact(session, cid, "kept.txt", "raw", path=kept).id
        missing = store_artifact(session, cid, "gone.txt", "raw", path=gone).id
    gone.unlink()
    model = open_campaign(planted, "planted")
    stored = [a.id for a in model.artifacts if a.name == "soak-identify-0.txt"][:1]
    blobs = dict(artifact_bytes(planted, stored + [by_path, missing]))
    assert blobs[stored[0]] == b"$ hailortcli --version\nHailoRT-CLI version 5.3.0\n"
    assert blobs[by_path] == b"on disk\n"
    assert blobs[missing] is None


@pytest.mark.parametrize(("command_line", "expected"), [
    ("lab run scenarios/x.yaml -i inv.yml --limit 'node1,node2' --db sqlite:///lab.db --name n",
     "lab run scenarios/x.yaml --inventory inv.yml --limit node1,node2"),
    ("lab run --inventory=pis scenarios/x.yaml --json", "lab run scenarios/x.yaml --inventory pis"),
    ("lab run 'unbalanced", "lab run scenarios/soak.yaml --inventory INVENTORY"),
    (None, "lab run scenarios/soak.yaml --inventory INVENTORY"),
])
def test_reproduce_command_keeps_scenario_inventory_and_limit(command_line, expected):
    campaign = Campaign(name="c", scenario_name="soak", scenario_text="", command_line=command_line)
    assert reproduce_command(campaign) == expected


def test_live_queries(planted):
    cid = campaign_id(planted)
    runs = runs_of(planted, cid)
    assert [(r.index, r.node, r.stack, r.repeat) for r in runs][:4] == [
        (0, "node1", "h10-5.3.0", 1), (1, "node2", "h10-5.3.0", 1), (2, "node3", "h10-5.3.0", 1),
        (3, "node4", "h8-4.23.0", 1)]
    assert all(isinstance(r, RunKey) for r in runs)
    state = live_state(planted, "planted")
    assert state["cursor"] == "28.28.28.28.28.28.0.28"
    first = state["runs"][0]
    assert (first["phase"], first["phase_no"], first["k"], first["n"], first["fps"], first["step"]) == (
        "soak", 2, 25, 25, 81.6, "phase_end")  # the last record stored is the phase's end
    assert len(first["series"]) == 25 and state["runs"][6]["series"] == []
    assert campaign_state(planted, cid)["runs"][6] == {
        "run": 6, "status": "infra_error", "verdict": "infra_error", "phase": "soak", "phase_status": "infra_error",
        "phases": 2, "phase_no": 2}
    assert campaign_state(planted, cid + 1000) == {"status": "gone", "runs": []}
    records, cursor = new_records(planted, runs, [0] * 8, limit=3)
    assert [(r["run"], r["seq"]) for r in records] == [(0, 1), (0, 2), (0, 3)]
    assert encode_cursor(cursor) == "3.0.0.0.0.0.0.0"
    records, cursor = new_records(planted, runs, [28] * 6 + [0, 27])
    assert [(r["run"], r["seq"], r["phase"]) for r in records] == [(7, 28, "soak")] and cursor[-1] == 28


def test_recovery_records_are_pure_data_with_the_phase_named_last():
    phases = recovery_phases(1)
    assert [p["name"] for p in phases] == list(RECOVERY_NAMES)
    assert [p["error"] for p in phases if p["error"]] == ["benchmark run 1 failed: HAILO_TIMEOUT(4)"]
    records = recovery_records(1, "9")
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert all(list(r)[-1] == "phase" and r["phase"] == RECOVERY_NAMES[r["phase_index"]] for r in records)
    assert records[-1]["boot_id"] == "r1-2" and records[0]["boot_id"] == "r1-1"
