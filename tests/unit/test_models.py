"""Models from the controller: found before any node is touched, checksummed, and given to each node by checksum."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.models import NODE_MODELS_DIR, is_controller_model, resolve_models
from lab.resources import shipped
from lab.scenario import load_scenario

HEF = b"HAILO-EMU-HEF\n{}\n"


def _rack(tmp_path: Path) -> Path:
    inv = tmp_path / "rack.yml"
    inv.write_text("all:\n  hosts:\n    pi-01: {ansible_host: 192.0.2.11, lab_chip: hailo10h}\n"
                   "    pi-02: {ansible_host: 192.0.2.12, lab_chip: hailo8}\n")
    return inv


def test_bare_names_are_controller_models_and_absolute_paths_package_files():
    assert is_controller_model("yolo26s_hailo10h.hef") and is_controller_model("models/a.hef")
    assert not is_controller_model("/usr/share/hailo-models/yolov8s_h8.hef")


def test_a_model_in_models_is_checksummed(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo26s_hailo10h.hef").write_bytes(HEF)
    monkeypatch.chdir(tmp_path)
    models = resolve_models(load_scenario(shipped("scenario") / "cma_soak.yaml"))
    assert list(models) == ["yolo26s_hailo10h.hef"]  # the Hailo-8 HEFs are package files
    model = models["yolo26s_hailo10h.hef"]
    assert (model.sha256, model.md5, model.size) == (hashlib.sha256(HEF).hexdigest(), hashlib.md5(HEF).hexdigest(),
                                                     len(HEF))
    assert model.node_path == f"{NODE_MODELS_DIR}/{model.sha256}/yolo26s_hailo10h.hef"


def test_a_models_folder_beside_the_scenario_comes_first(tmp_path, monkeypatch):
    own = tmp_path / "rack"
    (own / "scenarios").mkdir(parents=True)
    (own / "models").mkdir()
    (own / "models" / "mine.hef").write_bytes(b"own")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.hef").write_bytes(b"cwd")
    (own / "scenarios" / "s.yaml").write_text(
        "name: s\nmatrix: {stacks: [h10-5.3.0]}\nphases: [{name: p, steps: [{benchmark: {hef: mine.hef}}]}]\n")
    monkeypatch.chdir(tmp_path)
    models = resolve_models(load_scenario(own / "scenarios" / "s.yaml"))
    assert models["mine.hef"].path == own / "models" / "mine.hef"


def test_a_missing_model_is_one_line_at_its_line_before_any_node(tmp_path, monkeypatch):
    from lab.engine.plan import plan_campaign

    monkeypatch.chdir(tmp_path)
    scenario = shipped("scenario") / "cma_soak.yaml"
    line = next(i for i, text in enumerate(scenario.read_text().splitlines(), 1)
                if "hailo10h: yolo26s_hailo10h.hef" in text)
    with pytest.raises(ConfigError) as info:
        plan_campaign(scenario, str(_rack(tmp_path)))
    assert str(info.value) == (
        "model yolo26s_hailo10h.hef is not on the controller (at phases[1].steps[2].benchmark.hef.hailo10h), "
        f"{scenario}:{line}, put the file in {tmp_path}/models/ (or a models/ folder beside the scenario), "
        "or name a file of an installed package by its absolute path")


def test_each_node_gets_the_checksummed_copy(tmp_path, monkeypatch):
    from lab.engine.plan import host_phase_spec, plan_campaign

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo26s_hailo10h.hef").write_bytes(HEF)
    monkeypatch.chdir(tmp_path)
    plan = plan_campaign(shipped("scenario") / "cma_soak.yaml", str(_rack(tmp_path)))
    model = plan.models["yolo26s_hailo10h.hef"]
    h10 = host_phase_spec("c", plan, 1, 1, plan.inventory.hosts["pi-01"], plan.loaded.stacks["h10-5.3.0"])
    bench = next(s for s in h10["agent"]["steps"] if s["kind"] == "benchmark")
    assert bench["hef"] == model.node_path
    assert h10["models"] == {model.node_path: model.sha256}
    h8 = host_phase_spec("c", plan, 1, 2, plan.inventory.hosts["pi-02"], plan.loaded.stacks["h8-4.23.0"])
    assert next(s for s in h8["agent"]["steps"] if s["kind"] == "benchmark")["hef"] == \
        "/usr/share/hailo-models/yolov8s_h8.hef"
    assert h8["models"] == {}
    assert model.as_setting() == {"path": str(tmp_path / "models/yolo26s_hailo10h.hef"), "sha256": model.sha256,
                                  "md5": model.md5, "size": len(HEF), "node_path": model.node_path}


def test_the_emulated_models_folder_holds_the_field_reports_hef(tmp_path):
    from lab.virtual.emulator.hailo_emu import hef
    from lab.virtual.emulator.packaging import build_models

    [path] = build_models(tmp_path / "models")
    assert path.name == "yolo26s_hailo10h.hef"
    assert hef.load(str(path))["network"] == "yolo26s"
    stamp = path.stat().st_mtime_ns
    build_models(tmp_path / "models")
    assert path.stat().st_mtime_ns == stamp
