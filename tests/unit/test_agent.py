"""The node agent on this machine, with a stand-in `hailortcli` that prints the real tool's verbatim output."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.agent.records import RecordLog, read_records
from lab.bundle import build_bundle
from tests.conftest import FIXTURES
from tests.unit.fake_node import fake_boot_tools, fake_kernel

BENCH = (FIXTURES / "hailo" / "benchmark_h10_5.1.1_resnet.txt").read_text()
FAKE = """#!/bin/sh
# stand-in for hailortcli: counts its calls, prints the verbatim 5.x benchmark summary
if [ "$1" = logs ]; then cat "$LAB_FAKE_DIR/runtime.txt" 2>/dev/null; exit 0; fi
n=$(cat "$LAB_FAKE_DIR/calls" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$LAB_FAKE_DIR/calls"
if [ -e "$LAB_FAKE_DIR/broken" ]; then
  echo '[HailoRT] [error] CHECK_SUCCESS failed with status=HAILO_OUT_OF_PHYSICAL_DEVICES(74)'; exit 74
fi
cat "$LAB_FAKE_DIR/bench.txt"
"""
@pytest.fixture
def node(tmp_path, monkeypatch):
    """A work directory and a PATH whose hailortcli is the stand-in."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "hailortcli").write_text(FAKE)
    (bindir / "hailortcli").chmod(0o755)
    fake_boot_tools(bindir)
    (tmp_path / "bench.txt").write_text(BENCH)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("LAB_FAKE_DIR", str(tmp_path))
    work = tmp_path / "campaign"
    work.mkdir()
    return work


def run_agent(work: Path, steps: list[dict], phase_index: int = 1, run_key: str = "7") -> dict:
    spec = {"campaign": "c1", "run_key": run_key, "phase": "soak", "phase_index": phase_index, "time_scale": 0.001,
            "chip": "hailo10h", "steps": steps, "hef_dirs": [str(work)], **kernel_spec(work)}
    path = work / f"phase-{phase_index}.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(build_bundle(work.parent / "cache")), "run", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def kernel_spec(work: Path) -> dict:
    """The fake kernel view of this test's node (made once)."""
    root = work.parent / "kernel"
    return fake_kernel(root) if not root.exists() else {
        "sysfs_root": str(root / "sys"), "meminfo": str(root / "meminfo"), "dev_node": str(root / "hailo0"),
        "ready_timeout": 2}


def records(work: Path) -> list[dict]:
    return list(read_records(str(work / "records.jsonl")))


def test_benchmark_records_every_run_with_artifacts(node):
    out = run_agent(node, [{"kind": "benchmark", "hef": "resnet.hef", "runs": 5, "time_to_run": 15}])
    assert out["status"] == "ok"
    recs = records(node)
    assert [r["kind"] for r in recs] == ["phase_start", "system", "preflight"] + ["sample"] * 5 + ["phase_end"]
    assert [r["seq"] for r in recs] == list(range(1, 10))
    samples = recs[3:8]
    assert [(r["run"], r["fps"], r["temp_mean"]) for r in samples] == [(k, 307.48, 33.74) for k in range(1, 6)]
    assert all(r["run_key"] == "7" and r["boot_id"] for r in samples)
    art = samples[0]["artifact"]
    data = (node / "artifacts" / art["artifact"]).read_bytes()
    assert data.decode() == BENCH and hashlib.sha256(data).hexdigest() == art["sha256"]
    assert oct((node / "artifacts" / art["artifact"]).stat().st_mode & 0o777) == "0o600"


def test_spec_on_stdin_is_kept_beside_the_records_and_the_last_line_names_the_boot(node):
    """phase.yml starts the agent with its spec on stdin (one task, not a copy and a start): the agent writes
    it where a copied spec was (root's only), runs it, and ends with the boot the phase ended in."""
    spec = {"campaign": "c1", "run_key": "7", "phase": "soak", "phase_index": 1, "time_scale": 0.001,
            "chip": "hailo10h", "steps": [{"kind": "benchmark", "hef": "resnet.hef", "runs": 2, "time_to_run": 15}],
            "hef_dirs": [str(node)], **kernel_spec(node)}
    path = node / "phase-7-1.json"
    proc = subprocess.run([sys.executable, str(build_bundle(node.parent / "cache")), "run", str(path), "--spec-stdin"],
                          input=json.dumps(spec) + "\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "ok" and out["last_seq"] == 6
    assert out["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert json.loads(path.read_text()) == spec and oct(path.stat().st_mode & 0o777) == "0o600"
    assert [r["run"] for r in records(node) if r["kind"] == "sample"] == [1, 2]


def test_two_runs_on_one_node_keep_their_own_artifacts(node):
    """A node that runs two stacks runs phases of the same name twice; the second must not overwrite the first."""
    run_agent(node, [{"kind": "benchmark", "hef": "resnet.hef", "runs": 1, "time_to_run": 15}], run_key="7")
    run_agent(node, [{"kind": "benchmark", "hef": "resnet.hef", "runs": 1, "time_to_run": 15}], run_key="8")
    names = {r["run_key"]: r["artifact"]["artifact"] for r in records(node) if r["kind"] == "sample"}
    assert set(names) == {"7", "8"} and names["7"] != names["8"]
    assert all((node / "artifacts" / name).exists() for name in names.values())


def test_interrupted_phase_resumes_without_measuring_twice(node):
    run_agent(node, [{"kind": "benchmark", "hef": "resnet.hef", "runs": 5, "time_to_run": 15}])
    kept = (node / "records.jsonl").read_text().splitlines()[:5]  # start, system, preflight, runs 1-2: the controller died
    (node / "records.jsonl").write_text("\n".join(kept) + '\n{"seq": 6, "kind": "sam')  # and a torn last line
    (node.parent / "calls").write_text("0")
    run_agent(node, [{"kind": "benchmark", "hef": "resnet.hef", "runs": 5, "time_to_run": 15}])
    recs = records(node)
    assert [r.get("run") for r in recs if r["kind"] == "sample"] == [1, 2, 3, 4, 5]
    assert [r["kind"] for r in recs].count("phase_start") == 1 and recs[5]["kind"] == "phase_resume"
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert (node.parent / "calls").read_text().strip() == "3"  # only runs 3, 4 and 5 were measured again
    run_agent(node, [{"kind": "benchmark", "hef": "resnet.hef", "runs": 5, "time_to_run": 15}])
    assert records(node) == recs  # a finished phase is never run again


def test_device_failure_skips_device_steps_but_collects(node):
    (node.parent / "broken").write_text("1")
    out = run_agent(node, [{"kind": "benchmark", "hef": "resnet.hef", "runs": 3, "time_to_run": 15},
                           {"kind": "chip_reset"}, {"kind": "collect", "items": ["cma"]}])
    assert out["status"] == "device_error"
    recs = records(node)[2:]  # after the system and preflight records
    assert recs[1]["error"] == "HAILO_OUT_OF_PHYSICAL_DEVICES(74)" and recs[1]["run"] == 1
    assert recs[2]["step"] == "chip_reset" and recs[2]["skipped"] is True
    assert recs[3]["kind"] == "artifact" and recs[3]["item"] == "cma"
    assert recs[-1]["kind"] == "phase_end" and recs[-1]["status"] == "device_error"


def test_each_phase_start_records_what_is_installed(node, monkeypatch):
    """Versions as installed (not as pinned), the kernel, DKMS, holds, firmware: a change mid-campaign shows."""
    site = node.parent / "site" / "hailort-5.3.0.dist-info"
    site.mkdir(parents=True)
    bindir = node.parent / "bin"
    (bindir / "fwver").write_text("#!/bin/sh\necho '2025/05/08 15:13:17'\necho 'version 69471177 (release)'\n")
    (bindir / "fwver").chmod(0o755)
    monkeypatch.setenv("PYTHONPATH", str(site.parent))
    spec_commands = {"firmware_version": [str(bindir / "fwver")]}
    spec = {"campaign": "c1", "run_key": "7", "phase": "soak", "phase_index": 1, "time_scale": 0.001,
            "chip": "hailo10h", "steps": [{"kind": "benchmark", "hef": "resnet.hef", "runs": 1, "time_to_run": 15}],
            "hef_dirs": [str(node)], "commands": spec_commands, **kernel_spec(node)}
    path = node / "phase-1.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(build_bundle(node.parent / "cache")), "run", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    system = records(node)[1]
    assert system["kind"] == "system" and system["kernel"] == os.uname().release
    assert system["wheels"] == {str(site): "5.3.0"}
    assert system["firmware_version"] == "2025/05/08 15:13:17 version 69471177 (release)"
    assert system.get("bootloader_version") is None  # no command for it: recorded as unknown, never guessed
    assert isinstance(system["packages"], dict)


def test_record_log_is_append_only_and_durable(tmp_path):
    log = RecordLog(str(tmp_path / "r.jsonl"))
    log.append("sample", fps=1.0)
    log.close()
    log = RecordLog(str(tmp_path / "r.jsonl"))
    assert log.append("sample", fps=2.0)["seq"] == 2
    log.close()
    assert [r["fps"] for r in read_records(str(tmp_path / "r.jsonl"))] == [1.0, 2.0]
