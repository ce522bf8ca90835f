"""`lab report` on a planted campaign (SQLite and PostgreSQL): the truth in every format, and exact round trips."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from lab.bounds import FPS, TEMP_C
from lab.db.ingest import get_or_create_stack, ingest_samples
from lab.db.models import Campaign, Run, Sample
from lab.db.planted import plant_campaign, plant_recovery_campaign
from lab.db.report_load import load_report
from lab.db.session import open_database
from lab.errors import ConfigError
from lab.report.build import write_report
from lab.report.export import CSV_HEADER
from lab.report.synthetic import soc_id

_names = itertools.count()
TEXT = """\
campaign planted (scenario cma_soak): finished
  2026-04-30 05:08:01 UTC -> 2026-04-30 07:08:01 UTC, 8 runs, 196 records
  reproduce: lab run scenarios/cma_soak.yaml --inventory pis

degraded: 4/7 runs [25–84 %], 1 infra error not counted
  h10-5.3.0 (HailoRT 5.3.0, driver 5.3.0, firmware 5.3.0): degraded in 4 of 5 runs (95 % interval 38–96 %), on 2 of \
3 units; 1 run with an infrastructure error not counted
  h8-4.23.0 (HailoRT 4.23.0, driver 4.23.0, firmware 4.23.0): degraded in 0 of 2 runs (95 % interval 0–66 %), on 0 \
of 1 units

unit x stack: k/n runs degraded [95 % Wilson interval]
unit               chip      h10-5.3.0                                h8-4.23.0     sat in (Pi, runs)
SoC A4EE0CA6…45AC  hailo10h  2/2 [34–100 %]                           –             node1 (Pi …ca12f31b) #0; node2 \
(Pi …15b18a72) #4
SoC FAF1C754…88FA  hailo10h  2/2 [34–100 %]                           –             node2 (Pi …15b18a72) #1; node1 \
(Pi …ca12f31b) #5
SoC FA8A31B4…A9CC  hailo10h  0/1 [0–79 %], 1 infra error not counted  –             node3 (Pi …3b5bb1c6) #2 #6
SoC A82B2479…B110  hailo8    –                                        0/2 [0–66 %]  node4 (Pi …d2b8f62a) #3 #7

runs
#  unit               node   stack      rep  verdict      baseline  onset  fps/run  floor      end     temp °C
0  SoC A4EE0CA6…45AC  node1  h10-5.3.0  1    degraded     124.81    13     -3.57    81.60 @25  85.65   60.7–74.0
1  SoC FAF1C754…88FA  node2  h10-5.3.0  1    degraded     124.81    13     -3.57    81.60 @25  85.65   60.7–74.0
2  SoC FA8A31B4…A9CC  node3  h10-5.3.0  1    stable       124.85                    124.78 @6  124.84  60.7–74.0
3  SoC A82B2479…B110  node4  h8-4.23.0  1    stable       309.40                    309.26 @6  309.38
4  SoC A4EE0CA6…45AC  node2  h10-5.3.0  2    degraded     124.81    13     -3.57    81.60 @25  85.65   60.7–74.0
5  SoC FAF1C754…88FA  node1  h10-5.3.0  2    degraded     124.81    13     -3.57    81.60 @25  85.65   60.7–74.0
6  SoC FA8A31B4…A9CC  node3  h10-5.3.0  2    infra_error
7  SoC A82B2479…B110  node4  h8-4.23.0  2    stable       309.40                    309.26 @6  309.38
  #6 SoC FA8A31B4…A9CC: infra_error: soak: unreachable: reboot timeout after 600 s

telemetry per run (PCIe link current of max; host CMA free at its lowest; the Pi's SoC)
#  unit               node   PCIe link                             power  ASPM      host CMA (lowest)      Pi SoC   \
     ARM clock  Pi throttled
0  SoC A4EE0CA6…45AC  node1  x1 of x4, 8.0 of 8.0 GT/s  below max  D0     L1        50.2 of 64.0 MiB free  \
48.9–58.0 °C  2400 MHz   none
1  SoC FAF1C754…88FA  node2  x1 of x4, 8.0 of 8.0 GT/s  below max  D0     L1        50.2 of 64.0 MiB free  \
48.9–58.0 °C  2400 MHz   none
2  SoC FA8A31B4…A9CC  node3  x1 of x4, 5.0 of 8.0 GT/s  below max  D0     L1        50.2 of 64.0 MiB free  \
48.9–58.0 °C  2400 MHz   under-voltage now, throttled now, under-voltage has occurred, throttling has occurred
3  SoC A82B2479…B110  node4  x1 of x4, 8.0 of 8.0 GT/s  below max  D0     disabled  50.2 of 64.0 MiB free  \
48.9–58.0 °C  2400 MHz   none
4  SoC A4EE0CA6…45AC  node2  x1 of x4, 8.0 of 8.0 GT/s  below max  D0     L1        50.2 of 64.0 MiB free  \
48.9–58.0 °C  2400 MHz   none
5  SoC FAF1C754…88FA  node1  x1 of x4, 8.0 of 8.0 GT/s  below max  D0     L1        50.2 of 64.0 MiB free  \
48.9–58.0 °C  2400 MHz   none
7  SoC A82B2479…B110  node4  x1 of x4, 8.0 of 8.0 GT/s  below max  D0     disabled  50.2 of 64.0 MiB free  \
48.9–58.0 °C  2400 MHz   none

CMA alloc failures (chip runtime log) against the fall of fps, per run
  #0 SoC A4EE0CA6…45AC · h10-5.3.0 rep 1: CMA alloc failures from benchmark run 9 (57 in all); fps falls from run \
13 (4 runs after the first failure)
  #1 SoC FAF1C754…88FA · h10-5.3.0 rep 1: CMA alloc failures from benchmark run 9 (57 in all); fps falls from run \
13 (4 runs after the first failure)
  #2 SoC FA8A31B4…A9CC · h10-5.3.0 rep 1: no CMA alloc failures; fps does not fall
  #3 SoC A82B2479…B110 · h8-4.23.0 rep 1: no runtime log read per benchmark run; fps does not fall
  #4 SoC A4EE0CA6…45AC · h10-5.3.0 rep 2: CMA alloc failures from benchmark run 9 (57 in all); fps falls from run \
13 (4 runs after the first failure)
  #5 SoC FAF1C754…88FA · h10-5.3.0 rep 2: CMA alloc failures from benchmark run 9 (57 in all); fps falls from run \
13 (4 runs after the first failure)
  #7 SoC A82B2479…B110 · h8-4.23.0 rep 2: no runtime log read per benchmark run; fps does not fall

pre-flight
  #0 node1 (Pi 5 Model B Rev 1.0, serial …ca12f31b) soak: ready after 18.5 s; device 0001:01:00.0 [1e60:45c4]; \
device free; chip hailo10h matches inventory hailo10h
  #1 node2 (Pi 5 Model B Rev 1.0, serial …15b18a72) soak: ready after 20.0 s; device 0001:01:00.0 [1e60:45c4]; \
device free; chip hailo10h matches inventory hailo10h
  #2 node3 (Pi 5 Model B Rev 1.0, serial …3b5bb1c6) soak: ready after 21.5 s; device 0001:01:00.0 [1e60:45c4]; \
device free; chip hailo10h matches inventory hailo10h
  #3 node4 (Pi 5 Model B Rev 1.0, serial …d2b8f62a) soak: ready after 23.0 s; device 0001:01:00.0 [1e60:2864]; \
device free; chip hailo8 matches inventory hailo8
  #4 node2 (Pi 5 Model B Rev 1.0, serial …15b18a72) soak: ready after 24.5 s; device 0001:01:00.0 [1e60:45c4]; \
device free; chip hailo10h matches inventory hailo10h
  #5 node1 (Pi 5 Model B Rev 1.0, serial …ca12f31b) soak: ready after 26.0 s; device 0001:01:00.0 [1e60:45c4]; \
device free; chip hailo10h matches inventory hailo10h
  #7 node4 (Pi 5 Model B Rev 1.0, serial …d2b8f62a) soak: ready after 29.0 s; device 0001:01:00.0 [1e60:2864]; \
device free; chip hailo8 matches inventory hailo8

thermal:  not thermal (not thermal in 4 of 4 degraded runs; e.g. temperature plateaued from run 15 (73.96 °C) while \
fps kept falling (-3.23 fps/run))
trigger:  not tested (no run had both a configure-cycles phase and a continuous-inference phase)
recovery: not tested (no recovery action was measured after a degradation)
CMA:      alloc failures in 4 of 5 runs read after each benchmark run; of the 4 runs whose fps fell, failures began \
before the fall (by 4 runs) in 4
"""

MATRIX_MD = """\
| unit | chip | h10-5.3.0 | h8-4.23.0 | sat in (Pi, runs) |
| --- | --- | --- | --- | --- |
| SoC A4EE0CA6…45AC | hailo10h | 2/2 [34–100 %] | – | node1 (Pi …ca12f31b) #0; node2 (Pi …15b18a72) #4 |
| SoC FAF1C754…88FA | hailo10h | 2/2 [34–100 %] | – | node2 (Pi …15b18a72) #1; node1 (Pi …ca12f31b) #5 |
| SoC FA8A31B4…A9CC | hailo10h | 0/1 [0–79 %], 1 infra error not counted | – | node3 (Pi …3b5bb1c6) #2 #6 |
| SoC A82B2479…B110 | hailo8 | – | 0/2 [0–66 %] | node4 (Pi …d2b8f62a) #3 #7 |
"""


@pytest.fixture()
def planted(db_engine):
    """An engine whose database holds the planted campaign (2 units degrade, 2 do not, 1 infra error)."""
    with Session(db_engine) as session, session.begin():
        plant_campaign(session)
    return db_engine


def render(engine, fmt: str, ref: str = "planted") -> str:
    out = io.StringIO()
    write_report(engine, ref, fmt, out)
    return out.getvalue()


def test_text_shows_the_planted_truth(planted):
    assert render(planted, "text") == TEXT


def test_campaign_found_by_id_too(planted):
    assert render(planted, "text", "1") == TEXT


def test_unknown_campaign_is_bad_input(planted):
    with pytest.raises(ConfigError, match="no campaign 'nope' in this database"):
        render(planted, "text", "nope")


def test_markdown_is_ready_to_paste(planted):
    md = render(planted, "md")
    assert md.startswith("# cma_soak: planted\n")
    assert MATRIX_MD in md
    assert ("- **h10-5.3.0**: degraded in 4 of 5 runs (95 % interval 38–96 %), on 2 of 3 units; "
            "1 run with an infrastructure error not counted.\n") in md
    assert ("| 0 | SoC A4EE0CA6…45AC | node1 | h10-5.3.0 | 1 | degraded | 124.81 | 13 | -3.57 | 81.60 @25 | 85.65 |"
            in md)
    assert "| 6 | SoC FA8A31B4…A9CC | node3 | h10-5.3.0 | 2 | infra_error |" in md
    assert "| h10-5.3.0 | hailo10h | 5.3.0 | 5.3.0 | 5.3.0 | 4/5 | 38–96 % | 2/3 |" in md
    assert ("| SoC A82B2479…B110 | hailo8 |  | A82B2479E3952827A5A98BA5FE11DE497DAA287A85AE806CAD65A1ECC1A7B110 |  | "
            "ult_id A82B2479E395, lcs 3, boot_source PCIE | HailoRT 4.23.0, driver 4.23.0, firmware 4.23.0 (HAILO8) |"
            ) in md
    assert "```sh\nlab run scenarios/cma_soak.yaml --inventory pis\n```" in md
    assert "```yaml\nname: cma_soak\nmatrix:\n" in md
    assert "sqlite:///lab.db" not in md  # the reproduction command drops --db


def test_html_is_self_contained(planted):
    html = render(planted, "html")
    assert html.count("<svg") == 8  # per unit x stack: fps and temperature, then its telemetry
    assert html.count('class="onset"') == 2  # one per degraded unit (its two repeats agree on run 13)
    assert "onset run 13" in html
    assert '<table class="matrix">' in html and "background: #f3b8b2" in html
    assert re.findall(r'(?:src|href)\s*=\s*"(?!data:|#)', html) == []
    assert "default-src 'none'" in html
    assert "cma_alloc: linux,cma: alloc failed" in html  # the runtime log artifact is embedded
    assert 'download="soak-collect-2-runtime_log.txt" href="data:application/octet-stream;base64,' in html


def test_json_holds_verdicts_matrix_and_findings(planted):
    doc = json.loads(render(planted, "json"))
    assert [(r["node"], r["repeat"], r["verdict"]) for r in doc["runs"]] == [
        ("node1", 1, "degraded"), ("node2", 1, "degraded"), ("node3", 1, "stable"), ("node4", 1, "stable"),
        ("node2", 2, "degraded"), ("node1", 2, "degraded"), ("node3", 2, "infra_error"), ("node4", 2, "stable")]
    run0 = doc["runs"][0]["series"]
    assert (run0["onset_run"], round(run0["slope_fps_per_run"], 2), run0["floor_fps"]) == (13, -3.57, 81.6)
    cells = {(c["unit"], c["stack"]): (c["degraded"], c["counted"], c["infra_error"], round(c["interval"]["low"], 3),
                                       round(c["interval"]["high"], 3)) for c in doc["matrix"]}
    assert cells == {(f"soc:{soc_id(0)}", "h10-5.3.0"): (2, 2, 0, 0.342, 1.0),  # the HATs of units 0 and 1
                     (f"soc:{soc_id(1)}", "h10-5.3.0"): (2, 2, 0, 0.342, 1.0),  # traded Pis for repeat 2
                     (f"soc:{soc_id(2)}", "h10-5.3.0"): (0, 1, 1, 0.0, 0.793),
                     (f"soc:{soc_id(3)}", "h8-4.23.0"): (0, 2, 0, 0.0, 0.658)}
    assert doc["findings"]["thermal"]["verdict"] == "not_thermal"
    assert doc["findings"]["total"]["degraded"] == 4 and doc["findings"]["total"]["counted"] == 7
    assert doc["records"] == len(doc["samples"]) == 196
    assert doc["campaign"]["reproduce"] == "lab run scenarios/cma_soak.yaml --inventory pis"


def db_samples(engine) -> list[dict]:
    """Every sample row of the planted campaign, as the database returns it."""
    columns = [c for c in Sample.__table__.columns if c.name not in ("id", "run_id", "phase_id")]
    with Session(engine) as session:
        rows = session.execute(select(Run.index, *columns).join(Run, Run.id == Sample.run_id)
                               .order_by(Sample.run_id, Sample.seq)).all()
    return [dict(zip(["run"] + [c.name for c in columns], row)) for row in rows]


def same(want, got, column: str) -> bool:
    """Exact equality, with timestamps compared as instants."""
    if column == "ts":
        return datetime.fromisoformat(got) == want
    if isinstance(want, float):
        return got == want and not math.isnan(got)
    return got == want


def test_csv_round_trips_every_sample(planted):
    rows = list(csv.DictReader(io.StringIO(render(planted, "csv"))))
    want = db_samples(planted)
    assert tuple(rows[0]) == CSV_HEADER
    assert len(rows) == len(want) == 196
    casts = {"fps": float, "temp": float, "temp_min": float, "temp_max": float, "uptime": float, "nominal_s": float,
             "seq": int, "step_index": int, "run_index": int, "configure_count": int, "run": int,
             "extra": json.loads, "pcie_speed": float, "pcie_max_speed": float, "pcie_width": int,
             "pcie_max_width": int, "cma_free_kb": int, "cma_total_kb": int, "soc_temp": float,
             "arm_clock_mhz": float, "cma_errors": int}
    for row, expected in zip(rows, want):
        for column, value in expected.items():
            text = row[column]
            got = None if text == "" else casts.get(column, str)(text)
            assert same(value, got, column), (column, value, got)
    verdicts = {(r["node"], r["repeat"]): r["verdict"] for r in rows}
    assert verdicts[("node1", "1")] == "degraded" and verdicts[("node3", "1")] == "stable"


def test_json_round_trips_every_sample(planted):
    doc = json.loads(render(planted, "json"))
    samples = [dict(zip(doc["sample_columns"], row)) for row in doc["samples"]]
    want = db_samples(planted)
    assert len(samples) == len(want)
    for got, expected in zip(samples, want):
        for column, value in expected.items():
            assert same(value, got[column], column), (column, value, got[column])


def test_recovery_campaign_only_reboot_restores(db_engine):
    with Session(db_engine) as session, session.begin():
        plant_recovery_campaign(session)
    model = load_report(db_engine, "recovery")
    f = model.findings
    assert [model.findings.runs[r.index].verdict for r in model.runs] == ["degraded", "stable"]
    assert [r.recorded_verdict for r in model.runs] == ["device_error", "device_error"]  # the bricking chip reset
    assert [(a.action, a.tested, a.recovered, a.not_recovered, a.device_error, a.device_error_all, a.restores)
            for a in f.recovery] == [("cooldown", 1, 0, 1, 0, 0, False), ("driver_reload", 1, 0, 1, 0, 0, False),
                                     ("pcie_rescan", 1, 0, 1, 0, 0, False), ("chip_reset", 1, 0, 0, 1, 2, False),
                                     ("reboot", 1, 1, 0, 0, 0, True)]
    text = render(db_engine, "text", "recovery")
    assert "recovery: only reboot restores throughput; cooldown: restored throughput in 0 of 1 degraded runs" in text
    assert "  #0 H10-0001: recorded at run time as device_error\n" in text
    html = render(db_engine, "html", "recovery")
    assert html.count('class="mark"') == 10  # 4 actions and a reboot on each unit's chart


record_values = st.fixed_dictionaries({
    "fps": st.none() | st.floats(allow_nan=False, allow_infinity=False),
    "temp": st.none() | st.floats(-50, 160, allow_nan=False),
    "error": st.none() | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=20),
    "note": st.text(max_size=10),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(record_values, min_size=1, max_size=6))
def test_exports_round_trip_any_values(tmp_path, values):
    """Whatever a record holds (quotes, commas, newlines, unicode, extreme floats), CSV and JSON give it back."""
    engine = open_database(f"sqlite:///{tmp_path / 'rt.db'}")
    name = f"rt-{next(_names)}"
    with Session(engine) as session, session.begin():
        campaign = Campaign(name=name, scenario_name="s", scenario_text="name: s\n")
        session.add(campaign)
        session.flush()
        stack = get_or_create_stack(session, "st", "1", "1", "1")
        run = Run(campaign_id=campaign.id, index=0, node="n1", stack_id=stack.id, status="done")
        session.add(run)
        session.flush()
        ingest_samples(session, run.id, [{"seq": i + 1, "ts": 1_777_000_000.25 + i, "step": "benchmark",
                                          "boot_id": "b", **v} for i, v in enumerate(values)])
    # a value no device can report (lab/bounds.py) stays out of its column, kept verbatim in extra and flagged
    def kept(key, value, bound):
        return value if value is None or bound.problem(key, value) is None else None

    want = [{"fps": kept("fps", v["fps"], FPS), "temp": kept("temp", v["temp"], TEMP_C), "error": v["error"],
             "note": v["note"]} for v in values]
    raw = [{k: json.dumps(v[k]) for k in ("fps", "temp") if v[k] is not None and w[k] is None}
           for v, w in zip(values, want)]
    rows = list(csv.DictReader(io.StringIO(render(engine, "csv", name))))
    assert [{"fps": float(r["fps"]) if r["fps"] else None, "temp": float(r["temp"]) if r["temp"] else None,
             "error": r["error"] or None, "note": json.loads(r["extra"])["note"]} for r in rows] == [
        {**w, "error": w["error"] or None} for w in want]
    assert [json.loads(r["extra"]).get("raw", {}) for r in rows] == raw
    doc = json.loads(render(engine, "json", name))
    got = [dict(zip(doc["sample_columns"], s)) for s in doc["samples"]]
    assert [{"fps": g["fps"], "temp": g["temp"], "error": g["error"], "note": g["extra"]["note"]} for g in got] == want
    assert [len(g["extra"].get("flagged", [])) for g in got] == [len(r) for r in raw]
    for fmt in ("text", "md", "html"):  # flagged samples never crash a report
        assert name in render(engine, fmt, name)
    engine.dispose()
