"""Physical bounds: a file with an impossible number is a one-line error at its line; a node's record is flagged."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from lab.bounds import FPS, TEMP_C, line_of_number, out_of_bounds
from lab.cli import main
from lab.db.ingest import get_or_create_stack, ingest_samples
from lab.db.models import Campaign, Run
from lab.db.session import open_database
from lab.report.build import write_report

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SEED = (FIXTURES / "series" / "seed_000_25runs.csv").read_text()
BENCH = (FIXTURES / "parsers" / "benchmark" / "inputs" / "benchmark_h10_5.3.0_degraded.txt").read_text()


def test_bound_problems():
    assert FPS.problem("fps", 125.0) is None and FPS.problem("fps", 0) is None
    assert FPS.problem("fps", 2.01e154) == "fps 2.01e+154 is outside 0..100000 fps"
    assert FPS.problem("fps", float("nan")) == "fps nan is not a finite number"
    assert FPS.problem("fps", "fast") == "fps 'fast' is not a number"
    assert TEMP_C.problem("temp", -41) == "temp -41 is outside -40..150 °C"


def test_out_of_bounds_walks_a_parsed_result():
    parsed = {"fps": 99999999.0, "networks": {"yolo26s": 81.6}, "temperature": {"mean": 973.4, "min": 70.0},
              "power_avg_w": None, "device": "0001:01:00.0", "messages": []}
    assert [(p, why) for p, _, why in out_of_bounds(parsed)] == [
        (("fps",), "fps 99999999 is outside 0..100000 fps"),
        (("temperature", "mean"), "temperature.mean 973.4 is outside -40..150 °C")]


def test_line_of_number():
    assert line_of_number(BENCH, 81.6) == 7
    assert line_of_number(BENCH, 73.97) == 9
    assert line_of_number("a\nFPS: 2.01e154\n", 2.01e154) == 2
    assert line_of_number(BENCH, 1234.5) is None


@pytest.mark.parametrize("row, message", [
    ("13,2.01e154,74.0", "fps '2.01e154' is outside 0..100000 fps"),
    ("13,-3,74.0", "fps '-3' is outside 0..100000 fps"),
    ("13,inf,74.0", "fps 'inf' is not a finite number"),
    ("13,120.0,900", "temp '900' is outside -40..150 °C"),
    ("13,120.0,-273", "temp '-273' is outside -40..150 °C"),
])
def test_analyze_csv_with_an_impossible_value_is_one_line_at_its_line(tmp_path, capsys, row, message):
    lines = SEED.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("13,"))
    lines[at] = row
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    assert main(["analyze", "s.csv"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (f"lab: error: {message}, s.csv:{at + 1}, correct the cell or remove the row "
                       "(docs/analysis.md lists lab's physical bounds)\n")


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-2**80, 2**80))
def test_analyze_never_shows_a_traceback_for_any_number(value):
    """Whatever number a CSV holds, lab analyze answers with a verdict or a one-line error (exit 2)."""
    text = "run,fps,temp\n" + "".join(f"{i},{value if i == 7 else 125.0},{60 + i}\n" for i in range(1, 26))
    out, err = io.StringIO(), io.StringIO()
    import contextlib
    import tempfile
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        path = Path(tmp) / "v.csv"
        path.write_text(text)
        code = main(["analyze", str(path)])
    assert code in (0, 2)
    if code == 2:
        assert err.getvalue().count("\n") == 1 and err.getvalue().startswith("lab: error: ")
        assert f"{path}:8" in err.getvalue()
    else:
        assert out.getvalue().startswith(f"{path}: ")


@pytest.mark.parametrize("old, new, message, line", [
    ("FPS: 81.60", "FPS: 99999999.00", "fps 99999999 is outside 0..100000 fps", 7),
    ("mean=73.43", "mean=973.43", "temperature.mean 973.43 is outside -40..150 °C", 9),
])
def test_parse_with_an_impossible_value_is_one_line_at_its_line(tmp_path, capsys, old, new, message, line):
    (tmp_path / "b.txt").write_text(BENCH.replace(old, new))
    assert main(["parse", "benchmark", "b.txt"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (f"lab: error: {message}, b.txt:{line}, no Hailo tool reports that; check that the file is "
                       "`hailortcli benchmark HEF` output (docs/analysis.md lists lab's physical bounds)\n")


def test_flagged_record_is_kept_shown_and_left_out_of_the_analysis(tmp_path):
    """A node wrote fps 2.01e154 at run 7 of the seed soak: stored verbatim, listed, verdict still degraded at run 13."""
    rows = list(csv.DictReader(io.StringIO(SEED)))
    engine = open_database(f"sqlite:///{tmp_path / 'f.db'}")
    with Session(engine) as session, session.begin():
        campaign = Campaign(name="flag", scenario_name="cma_soak", scenario_text="name: cma_soak\n")
        session.add(campaign)
        session.flush()
        stack = get_or_create_stack(session, "h10-5.3.0", "5.3.0", "5.3.0", "5.3.0", "hailo10h")
        run = Run(campaign_id=campaign.id, index=0, node="node1", stack_id=stack.id, status="done")
        session.add(run)
        session.flush()
        records = [{"seq": i + 1, "ts": 1_777_000_000.0 + 16 * i, "step": "benchmark", "boot_id": "b",
                    "run": int(r["run"]), "fps": 2.01e154 if r["run"] == "7" else float(r["fps"]),
                    "temp_mean": float(r["temp"])} for i, r in enumerate(rows)]
        assert ingest_samples(session, run.id, records) == 25

    def render(fmt: str) -> str:
        out = io.StringIO()
        write_report(engine, "flag", fmt, out)
        return out.getvalue()

    text = render("text")
    assert "  #0 node1 benchmark 7: fps 2.01e+154 is outside 0..100000 fps" in text
    assert "degraded" in text and "device_error" not in text
    doc = json.loads(render("json"))
    (run_doc,) = doc["runs"]
    assert run_doc["flagged"] == [{"benchmark": 7, "reason": "fps 2.01e+154 is outside 0..100000 fps"}]
    assert (run_doc["verdict"], run_doc["series"]["onset_run"], run_doc["series"]["runs"]) == ("degraded", 13, 24)
    stored = [dict(zip(doc["sample_columns"], s)) for s in doc["samples"]]
    assert stored[6]["fps"] is None and stored[6]["extra"]["raw"] == {"fps": "2.01e+154"}
    assert "2.01e+154" in render("md") and "Flagged values" in render("html")
    engine.dispose()
