"""bench/db.py at a tiny size: the table has its rows, and every planted sample is in the database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "db.py"
UNITS, RUNS = 4, 30


def table_rows(stdout: str) -> list[dict[str, str]]:
    """The Markdown table's body rows as dicts keyed by its header."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def test_bench_db_tiny_sqlite(tmp_path):
    result = subprocess.run([sys.executable, str(BENCH), "--units", str(UNITS), "--runs", str(RUNS), "--db", "sqlite"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert [(r["database"], r["step"]) for r in rows] == [
        ("sqlite", "ingest"), ("sqlite", "report html"), ("sqlite", "report json")]
    ingest = rows[0]
    # counted in the database after the commit: every benchmark, plus each run's phase_start, identity, phase_end
    assert int(ingest["samples"]) == UNITS * RUNS
    assert int(ingest["records"]) == UNITS * (RUNS + 3)
    assert ingest["figure"].endswith(")") and "records/s" in ingest["figure"]
    for report in rows[1:]:
        assert report["wall s"] and report["CPU s"] and int(report["peak MiB"]) > 0
        assert "sha256" in report["figure"]
    assert list(tmp_path.iterdir()) == []  # the work directory is gone
