"""The controller-agent contract (lab.contract): phase specs and records round-trip, unknown keys fail, defaults
live in one place, and what the controller writes is what phase.yml and the agent read."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab import contract
from lab.agent.records import RecordLog, read_records, write_artifact
from lab.contract import AgentSpec, ArtifactRef, ContractError, NodePhaseSpec, Record
from lab.resources import playbooks_dir

FULL = AgentSpec(phase="soak", campaign="c1", run_key="7", phase_index=0, time_scale=0.02, chip="hailo8",
                 driver_module="hailo_pci", hef_dirs=["/opt/hefs", "/usr/share/hailo-models"], node="pi-01",
                 inventory_chip=None, sysfs_root="/run/hailo-emu/sys", meminfo="/run/hailo-emu/proc/meminfo",
                 dev_node="/run/hailo-emu/dev/hailo0", ready_timeout=60.0, stop_services=["hailort.service"],
                 commands={"vcgencmd": ["hailo-emu-vcgencmd"]}, devicetree_dir="/lab/hw/devicetree",
                 steps=[{"kind": "benchmark", "hef": "/opt/hefs/a.hef", "runs": 3}, {"kind": "collect"}])


def _wire(data: dict) -> dict:
    """Through JSON text and back, as the playbook and the spec file carry it."""
    return json.loads(json.dumps(data))


def test_agent_spec_round_trips_through_json():
    assert AgentSpec.from_json(_wire(FULL.to_json())) == FULL


def test_node_phase_spec_round_trips_through_json():
    spec = NodePhaseSpec(reboot=True, reboot_timeout=600, purge=False, stack={"name": "h8-4.23.0", "install": {}},
                         models={"/var/lib/lab-agent/models/ab/a.hef": "ab"}, timeout=700, poll=2, agent=FULL)
    data = _wire(spec.to_json())
    assert data["agent"] == _wire(FULL.to_json())
    assert NodePhaseSpec.from_json(data) == spec


def test_defaults_are_the_contracts_constants():
    spec = AgentSpec.from_json({"phase": "soak"})
    assert (spec.sysfs_root, spec.meminfo, spec.dev_node, spec.devicetree_dir) == (
        "/sys", "/proc/meminfo", "/dev/hailo0", "/sys/firmware/devicetree/base")
    assert (spec.hef_dirs, spec.driver_module, spec.time_scale, spec.ready_timeout) == (
        ["/usr/share/hailo-models"], "hailo1x_pci", 1.0, contract.READY_TIMEOUT)
    assert (spec.steps, spec.stop_services, spec.commands, spec.run_key, spec.phase_index) == ([], [], {}, None, None)
    assert contract.AGENT_WORKDIR == "/var/lib/lab-agent"


def test_null_or_empty_values_take_the_default_but_zero_indexes_stay():
    spec = AgentSpec.from_json({"phase": "p", "phase_index": 0, "sysfs_root": None, "hef_dirs": [], "time_scale": 0})
    assert (spec.phase_index, spec.sysfs_root, spec.hef_dirs, spec.time_scale) == (
        0, "/sys", ["/usr/share/hailo-models"], 1.0)


def test_unknown_keys_are_refused_by_name():
    with pytest.raises(ContractError, match=r"^phase spec: unknown field\(s\) hef_dir, speed; known fields: boot_cause, campaign"):
        AgentSpec.from_json({"phase": "p", "speed": 2, "hef_dir": "/x"})
    with pytest.raises(ContractError, match=r"^node phase spec: unknown field\(s\) rebooot"):
        NodePhaseSpec.from_json({**_wire(NodePhaseSpec(False, 600, False, None, {}, 1, 2, FULL).to_json()),
                                 "rebooot": True})


def test_malformed_specs_are_refused():
    with pytest.raises(ContractError, match=r"missing field\(s\) phase"):
        AgentSpec.from_json({"run_key": "1"})
    with pytest.raises(ContractError, match="expected a JSON object, got list"):
        AgentSpec.from_json([])
    with pytest.raises(ContractError, match="each with a `kind`"):
        AgentSpec.from_json({"phase": "p", "steps": [{"hef": "a.hef"}]})
    with pytest.raises(ContractError, match="must be numbers"):
        AgentSpec.from_json({"phase": "p", "time_scale": "fast"})


def test_a_spec_without_inventory_chip_takes_the_chip_as_the_inventorys():
    """A hand-written spec; the controller always sends the key (None: the inventory names no chip)."""
    assert AgentSpec.from_json({"phase": "p", "chip": "hailo8"}).inventory_chip == "hailo8"
    assert AgentSpec.from_json({"phase": "p", "chip": "hailo8", "inventory_chip": None}).inventory_chip is None


def test_chip_to_driver_module():
    assert [contract.driver_module_for(c) for c in ("hailo10h", "hailo8", "hailo8l", None)] == [
        "hailo1x_pci", "hailo_pci", "hailo_pci", "hailo1x_pci"]


def test_phase_yml_reads_only_fields_of_the_node_phase_spec():
    """phase.yml reads lab_spec.X and lab_spec.agent.X: each must be a field the controller writes."""
    text = (playbooks_dir() / "phase.yml").read_text()
    spec = NodePhaseSpec(False, 600, False, None, {}, 1, 2, FULL).to_json()
    top = set(re.findall(r"lab_spec\.(\w+)", text)) - {"agent"}
    agent = set(re.findall(r"lab_spec\.agent\.(\w+)", text))
    assert top and agent and top <= set(spec) and agent <= set(spec["agent"]), (top, agent)


def test_the_controllers_phase_spec_is_a_valid_contract(tmp_path, monkeypatch):
    from lab.engine.plan import host_phase_spec, plan_campaign

    (tmp_path / "rack.yml").write_text("""all:
  hosts:
    pi-01: {ansible_host: 192.0.2.11, lab_chip: hailo8, lab_hef_dirs: [/opt/hefs]}
  vars:
    lab_hailo_sources: [archive]
""")
    (tmp_path / "s.yaml").write_text("""name: s
matrix: {stacks: [h8-4.23.0]}
phases:
  - name: soak
    reboot: true
    steps: [provision, identify, {benchmark: {hef: a.hef, runs: 2}}]
""")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "a.hef").write_bytes(b"HEF")  # a controller model: the node gets a checksummed copy
    monkeypatch.chdir(tmp_path)
    plan = plan_campaign(tmp_path / "s.yaml", str(tmp_path / "rack.yml"))
    data = host_phase_spec("c", plan, 0, 3, plan.inventory.hosts["pi-01"], plan.loaded.stacks["h8-4.23.0"])
    spec = NodePhaseSpec.from_json(_wire(data))
    assert spec.to_json() == data
    assert (spec.reboot, spec.stack["name"], spec.agent.run_key, spec.agent.driver_module, spec.agent.hef_dirs) == (
        True, "h8-4.23.0", "3", "hailo_pci", ["/opt/hefs"])
    assert [s["kind"] for s in spec.agent.steps] == ["identify", "benchmark"]  # provisioning is the playbook's
    assert spec.models == {spec.agent.steps[1]["hef"]: hashlib.sha256(b"HEF").hexdigest()}


def test_record_round_trips_and_leaves_out_nulls():
    art = ArtifactRef("run7-soak-benchmark-0.txt", "ab" * 32, 812)
    log = ArtifactRef("run7-soak-benchmark-0-run001-runtime_log.txt", "cd" * 32, 40)
    rec = Record(3, 1700000000.5, contract.SAMPLE, "7", "soak", 0,
                 {"fps": 307.48, "artifact": art.to_json(), "runtime_log": log.to_json(), "error": None})
    data = _wire(rec.to_json())
    assert "error" not in data and data["phase_index"] == 0 and data["fps"] == 307.48
    back = Record.from_json(data)
    assert (back.seq, back.kind, back.run_key, back.body["fps"]) == (3, "sample", "7", 307.48)
    assert back.artifacts() == [art, log]
    assert Record.from_json({"seq": 1, "ts": 0.0, "kind": "phase_start", "steps": 2}).artifacts() == []


def test_malformed_records_are_refused():
    with pytest.raises(ContractError, match=r"record: missing field\(s\) seq, ts"):
        Record.from_json({"kind": "sample"})
    with pytest.raises(ContractError, match="record body fields seq are header fields"):
        Record(1, 0.0, "event", body={"seq": 2})


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                     max_leaves=8)


@given(seq=st.integers(min_value=1), ts=st.floats(min_value=0, max_value=4e9), kind=st.sampled_from(contract.RECORD_KINDS),
       run_key=st.none() | st.text(), phase_index=st.none() | st.integers(min_value=0),
       body=st.dictionaries(st.text().filter(lambda k: k not in contract.HEADER), _json.filter(lambda v: v is not None),
                            max_size=5))
def test_any_record_survives_the_wire(seq, ts, kind, run_key, phase_index, body):
    rec = Record(seq, ts, kind, run_key, "soak", phase_index, body)
    assert Record.from_json(_wire(rec.to_json())) == rec


def test_the_record_log_writes_contract_records(tmp_path):
    log = RecordLog(str(tmp_path / "records.jsonl"))
    art = write_artifact(str(tmp_path / "artifacts"), "a.txt", b"hello")
    log.append(contract.SAMPLE, run_key="7", phase="soak", phase_index=1, fps=1.5, artifact=art, error=None)
    with pytest.raises(ContractError, match="record kind 'measurement' is not one of phase_start"):
        log.append("measurement", fps=1.0)
    log.close()
    [line] = (tmp_path / "records.jsonl").read_text().splitlines()
    rec = Record.from_json(json.loads(line))
    assert (rec.seq, rec.kind, rec.run_key, rec.phase, rec.phase_index, rec.body) == (
        1, "sample", "7", "soak", 1, {"fps": 1.5, "artifact": art})
    assert rec.artifacts() == [ArtifactRef("a.txt", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", 5)]
    assert list(read_records(str(tmp_path / "records.jsonl"))) == [json.loads(line)]
