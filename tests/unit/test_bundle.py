"""The agent zipapp (lab.bundle): it carries the agent and the contract, and the agent takes both from it."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

from lab.bundle import build_bundle

PROJECT_FILES = ("lab/__init__.py", "lab/contract.py", "lab/agent/__main__.py", "lab/agent/steps.py",
                 "lab/agent/records.py")


def test_the_zipapp_carries_the_contract(tmp_path):
    path = build_bundle(tmp_path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert set(PROJECT_FILES) <= set(names)
    assert not [n for n in names if n.startswith("lab/") and not n.startswith("lab/agent/")
                and n not in ("lab/__init__.py", "lab/contract.py")]  # nothing else of the controller


def test_the_agent_imports_the_contract_from_the_zipapp(tmp_path):
    """-I -S: no current directory, no PYTHONPATH, no site-packages (so not the editable install of lab);
    lab.* can only come from the zipapp, as on a node."""
    path = build_bundle(tmp_path / "cache")
    probe = ("import json, sys; sys.path.insert(0, sys.argv[1]); import lab.agent.__main__, lab.agent.records, "
             "lab.contract; print(json.dumps({m: sys.modules[m].__file__ for m in "
             "('lab.contract', 'lab.agent.records', 'lab.agent.__main__')}))")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(path)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)
    assert files == {m: f"{path}/{m.replace('.', '/')}.py" for m in files}


def test_a_spec_the_contract_refuses_is_one_line_and_exit_2(tmp_path):
    path = build_bundle(tmp_path / "cache")
    spec = tmp_path / "phase-1-0.json"
    spec.write_text(json.dumps({"phase": "soak", "steps": [], "sysfs": "/sys"}))
    proc = subprocess.run([sys.executable, "-I", "-S", str(path), "run", str(spec)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (f"lab-agent: error: {spec}: phase spec: unknown field(s) sysfs; known fields: boot_cause, campaign, "
                           "chip, commands, dev_node, devicetree_dir, driver_module, hef_dirs, inventory_chip, "
                           "meminfo, node, phase, phase_index, ready_timeout, run_key, steps, stop_services, "
                           "sysfs_root, time_scale\n")
