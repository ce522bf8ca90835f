"""bench/dispatch.py on one real virtual node: every method completes every run, and the table says so."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROJECT, require_fleet

# The benchmarks' own range, apart from the other fleet tests' (127.77.200-201).
BENCH_NET = "127.77.62"


def test_dispatch_runs_every_method_to_the_end(tmp_path, monkeypatch):
    require_fleet()
    monkeypatch.setenv("LAB_FLEET_NET", BENCH_NET)
    monkeypatch.setenv("LAB_FLEET_DIR", str(tmp_path / "fleet"))
    argv = [sys.executable, str(PROJECT / "bench" / "dispatch.py"), "--time-scale", "0.02", "--runs", "2",
            "--repeats", "1", "--no-warmup", "--workdir", str(tmp_path / "work"), "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    rows = {row["method"]: row for row in doc["summary"]}
    assert set(rows) == {"shell", "playbook", "lab"}
    assert all(row["runs_ok"] == "2/2" for row in rows.values()), rows
    assert rows["shell"]["vs_shell"] == 1.0
    assert all(r["rc"] == 0 for r in doc["results"])
    assert not (tmp_path / "fleet").exists()  # the benchmark took its fleet down
