"""Shipped scenarios, stacks and profiles are found by name; a person's own folders come first."""

from __future__ import annotations

from pathlib import Path

import yaml

from lab import resources
from lab.cli import main
from lab.scenario import load_scenario

OWN_SCENARIO = """
name: own_soak
matrix: {stacks: [own-5.3.0, h10-5.1.1]}
phases:
  - name: soak
    steps:
      - benchmark: {hef: yolo26s_hailo10h.hef, runs: 3, time_to_run: 15}
"""


def _own_stack(folder: Path, name: str, hailort: str) -> None:
    data = yaml.safe_load((resources.shipped("stack") / "h10-5.3.0.yaml").read_text())
    data.update(name=name, hailort=hailort) if "hailort" in data else data.update(name=name)
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def test_shipped_data_is_in_the_package():
    data = resources.data_dir()
    assert data == Path(__file__).resolve().parents[2] / "lab" / "data"
    assert (data / "playbooks" / "phase.yml").is_file() and (data / "roles" / "hailo_stack" / "tasks" / "main.yml").is_file()
    assert "cma_soak" in resources.shipped_names("scenario") and "mixed" in resources.shipped_names("profile")


def test_a_name_finds_the_own_folder_first_then_the_shipped_file(tmp_path):
    assert resources.find_input("cma_soak", "scenario") == resources.shipped("scenario") / "cma_soak.yaml"
    assert resources.find_input("cma_soak.yaml", "scenario") == resources.shipped("scenario") / "cma_soak.yaml"
    assert resources.find_input("scenarios/cma_soak.yaml", "scenario") == resources.shipped("scenario") / "cma_soak.yaml"
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "cma_soak.yaml").write_text("x")
    assert resources.find_input("cma_soak", "scenario") == Path("scenarios/cma_soak.yaml")
    assert resources.find_input("nothing", "scenario") == Path("nothing")
    assert resources.find_input("other/dir/cma_soak.yaml", "scenario") == Path("other/dir/cma_soak.yaml")


def test_own_scenario_uses_own_stacks_and_the_shipped_ones(tmp_path):
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "own_soak.yaml").write_text(OWN_SCENARIO)
    _own_stack(tmp_path / "stacks", "own-5.3.0", "5.3.0")
    loaded = load_scenario("scenarios/own_soak.yaml")
    assert loaded.stacks["own-5.3.0"].name == "own-5.3.0"
    assert loaded.stacks["h10-5.1.1"].name == "h10-5.1.1"  # not in ./stacks: lab's own


def test_own_stack_of_the_same_name_wins(tmp_path):
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "s.yaml").write_text(OWN_SCENARIO.replace("own-5.3.0", "h10-5.3.0"))
    shipped = yaml.safe_load((resources.shipped("stack") / "h10-5.3.0.yaml").read_text())
    mine = dict(shipped, description="my own copy")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "h10-5.3.0.yaml").write_text(yaml.safe_dump(mine, sort_keys=False))
    loaded = load_scenario("scenarios/s.yaml")
    assert loaded.stacks["h10-5.3.0"].description == "my own copy"


def test_check_by_name_from_any_directory(tmp_path, capsys):
    assert main(["check", "cma_soak", "h10-5.3.0", "mixed"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "OK cma_soak (scenario: cma_soak)", "OK h10-5.3.0 (stack: h10-5.3.0)", "OK mixed (profile: mixed)"]


def test_unknown_stack_lists_own_and_shipped_stacks(tmp_path, capsys):
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "s.yaml").write_text(OWN_SCENARIO.replace("own-5.3.0", "zz-9"))
    _own_stack(tmp_path / "stacks", "own-5.3.0", "5.3.0")
    assert main(["check", "scenarios/s.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lab: error: unknown stack 'zz-9' at matrix.stacks[0], scenarios/s.yaml:3")
    assert "stacks/ or lab's own stacks" in err
