"""Scenario and stack models: the shipped files, loading, matrix expansion and the load/dump round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.errors import ConfigError
from lab.scenario import (HEF_RE, STEP_MODELS, BenchmarkStep, CollectStep, CooldownStep, IdentifyStep, Matrix, Phase,
                          ProvisionStep, RunSpec, Scenario, dump_scenario, expand_matrix, find_stacks_dir,
                          load_scenario, parse_scenario)
from lab.stack import NAME_RE, Stack, load_stack, parse_stack
from lab.yamlload import show

PROJECT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((PROJECT / "scenarios").glob("*.yaml"))
STACKS = sorted((PROJECT / "stacks").glob("*.yaml"))


@pytest.fixture
def in_project(monkeypatch):
    """Run from the project root, so paths in messages are the short relative ones."""
    monkeypatch.chdir(PROJECT)


def test_every_required_scenario_ships():
    names = {p.stem for p in SCENARIOS}
    assert {"cma_soak", "configure_vs_runtime", "recovery_matrix", "clean_reinstall", "stack_matrix"} <= names


def test_every_required_stack_ships():
    names = {p.stem for p in STACKS}
    assert {"h10-5.1.1", "h10-5.2.0", "h10-5.3.0", "h10-5.3.1", "h8-4.20.0", "h8-4.23.0"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenario_loads_with_its_stacks(path):
    loaded = load_scenario(path)
    assert loaded.scenario.name == path.stem
    assert set(loaded.stacks) == set(loaded.scenario.stack_names())
    assert loaded.text == path.read_text()
    assert parse_scenario(dump_scenario(loaded.scenario)) == loaded.scenario


@pytest.mark.parametrize("path", STACKS, ids=lambda p: p.name)
def test_shipped_stack_loads(path):
    stack = load_stack(path)
    assert stack.name == path.stem
    assert stack.hailort and stack.driver and stack.firmware


def test_cma_soak_is_the_seed_reproduction():
    scenario = load_scenario(PROJECT / "scenarios" / "cma_soak.yaml").scenario
    soak = next(p for p in scenario.phases if p.reboot)
    bench = [s for s in soak.steps if isinstance(s, BenchmarkStep)]
    assert [(b.hef_for("hailo10h"), b.runs, b.time_to_run, b.gap) for b in bench] == [
        ("yolo26s_hailo10h.hef", 25, 15, 0.0)]
    assert bench[0].hef_for("hailo8") == "/usr/share/hailo-models/yolov8s_h8.hef"  # a package's file
    collected = {item for s in soak.steps if isinstance(s, CollectStep) for item in s.items}
    assert {"runtime_log", "dmesg", "temps"} <= collected


def test_recovery_matrix_tries_every_action_then_reboots_then_cuts_power():
    scenario = load_scenario(PROJECT / "scenarios" / "recovery_matrix.yaml").scenario
    kinds = [s.kind for p in scenario.phases for s in p.steps]
    order = [kinds.index(k) for k in ("cooldown", "driver_reload", "pcie_rescan", "chip_reset")]
    assert order == sorted(order)
    assert scenario.phases[-2].reboot and not scenario.phases[-2].power_cycle  # warm, then cold
    assert scenario.phases[-1].power_cycle and not scenario.phases[-1].reboot
    assert scenario.cuts_power() and scenario.recoveries == 1
    for phase in scenario.phases[2:]:  # a measurement after every recovery action
        assert any(isinstance(s, BenchmarkStep) for s in phase.steps)


def test_step_shorthands():
    scenario = parse_scenario("""
name: s
matrix: {stacks: [a]}
phases:
  - name: p
    steps:
      - identify
      - identify: null
      - cooldown: 240
      - cooldown: {seconds: 30}
      - collect: [dmesg, temps]
      - provision
      - benchmark: {hef: models/yolo26s_hailo10h.hef}
""")
    steps = scenario.phases[0].steps
    assert steps[:2] == [IdentifyStep(), IdentifyStep()]
    assert steps[2:4] == [CooldownStep(seconds=240), CooldownStep(seconds=30)]
    assert steps[4] == CollectStep(items=["dmesg", "temps"])
    assert steps[5] == ProvisionStep(stack=None, clean=False)
    assert steps[6] == BenchmarkStep(hef="models/yolo26s_hailo10h.hef", runs=1, time_to_run=15)
    assert scenario.reboot_timeout == 600 and scenario.matrix.repeats == 1


def test_defaults_and_programmatic_construction():
    scenario = Scenario(name="s", matrix=Matrix(stacks=["h10-5.3.0"]),
                        phases=[Phase(name="p", reboot=True)])
    assert parse_scenario(dump_scenario(scenario)) == scenario
    assert "reboot: true" in dump_scenario(scenario)


@pytest.mark.parametrize("hef", ["a.hef", "/usr/share/hailo-models/yolov8s_h8.hef", "m/x-1_2+3.hef"])
def test_plain_hef_paths_pass(hef):
    assert HEF_RE.fullmatch(hef)


@pytest.mark.parametrize("hef", ["a.hef; reboot", "$(id).hef", "`id`.hef", "a.hef|sh", "-x.hef", "../a.hef",
                                 "a b.hef", "a.hef\n", "a'.hef", 'a".hef', "a&.hef", "a>b.hef", "a", ".hef",
                                 "x/../../etc.hef", "a\\.hef", "~/a.hef", "a*.hef"])
def test_shell_metacharacters_in_hef_are_rejected(hef):
    text = yaml.safe_dump({"name": "s", "matrix": {"stacks": ["a"]},
                           "phases": [{"name": "p", "steps": [{"benchmark": {"hef": hef}}]}]})
    with pytest.raises(ConfigError) as info:
        parse_scenario(text, "t.yaml")
    assert info.value.what == f"hef {show(hef)} is not a plain .hef path"
    assert info.value.where == f"t.yaml:{text.splitlines().index('  - benchmark:') + 2}"


def test_find_stacks_dir(in_project):
    assert find_stacks_dir("scenarios/cma_soak.yaml") == Path("stacks")
    assert find_stacks_dir("tests/fixtures/bad/scenarios/unknown_stack.yaml") == Path("tests/fixtures/bad/stacks")


def test_explicit_stacks_dir(tmp_path):
    (tmp_path / "pins").mkdir()
    (tmp_path / "pins" / "mine.yaml").write_text((PROJECT / "stacks" / "h10-5.3.0.yaml").read_text()
                                                 .replace("name: h10-5.3.0", "name: mine"))
    (tmp_path / "s.yaml").write_text("name: s\nmatrix: {stacks: [mine]}\nphases: [{name: p, steps: [identify]}]\n")
    loaded = load_scenario(tmp_path / "s.yaml", stacks_dir=tmp_path / "pins")
    assert loaded.stacks["mine"].hailort == "5.3.0"


# --- matrix expansion ------------------------------------------------------------------------------

def _scenario(stacks=("a", "b"), repeats=2, group=None) -> Scenario:
    return Scenario(name="s", matrix=Matrix(stacks=list(stacks), repeats=repeats, group=group),
                    phases=[Phase(name="p", steps=[IdentifyStep()])])


def test_expand_matrix_is_stack_major_then_repeat_then_node():
    runs = expand_matrix(_scenario(), ["n1", "n2", "n1"])
    assert [(r.stack, r.repeat, r.node) for r in runs] == [
        ("a", 1, "n1"), ("a", 1, "n2"), ("a", 2, "n1"), ("a", 2, "n2"),
        ("b", 1, "n1"), ("b", 1, "n2"), ("b", 2, "n1"), ("b", 2, "n2")]
    assert [r.index for r in runs] == list(range(8))
    assert runs[0] == RunSpec(index=0, node="n1", stack="a", repeat=1)


def test_expand_matrix_narrows_to_the_group():
    runs = expand_matrix(_scenario(stacks=["a"], repeats=1, group="h10"), ["n1", "n2", "n3"],
                         groups={"h10": ["n3", "n1"], "h8": ["n2"]})
    assert [r.node for r in runs] == ["n1", "n3"]


def test_expand_matrix_unknown_group():
    with pytest.raises(ConfigError) as info:
        expand_matrix(_scenario(group="h10"), ["n1"], groups={"h8": ["n1"]})
    assert str(info.value) == ("scenario 's' runs on group 'h10', which the inventory does not have, "
                               "fix matrix.group or add the group to the inventory")


def test_expand_matrix_no_nodes():
    with pytest.raises(ConfigError) as info:
        expand_matrix(_scenario(), [])
    assert str(info.value) == ("scenario 's' has no node to run on, "
                               "the inventory (or matrix.group) names no host whose chip matches a matrix stack")


def _stack(name: str, chip: str) -> Stack:
    return Stack(name=name, chip=chip, hailort="1.0.0", driver="1.0.0", firmware="1.0.0")


def test_expand_matrix_pairs_nodes_with_the_stacks_of_their_chip():
    scenario = parse_scenario("""
name: s
matrix: {stacks: [h10, h8], repeats: 1}
phases:
  - name: p
    steps:
      - benchmark: {hef: {hailo10h: a.hef, hailo8: b.hef, hailo8l: c.hef}}
""")
    stacks = {"h10": _stack("h10", "hailo10h"), "h8": _stack("h8", "hailo8")}
    chips = {"n1": "hailo10h", "n2": "hailo8", "n3": "hailo8l"}
    runs = expand_matrix(scenario, ["n1", "n2", "n3", "n4"], node_chips=chips, stacks=stacks)
    assert [(r.node, r.stack, r.chip) for r in runs] == [
        ("n1", "h10", "hailo10h"), ("n4", "h10", "hailo10h"),
        ("n2", "h8", "hailo8"), ("n3", "h8", "hailo8l"), ("n4", "h8", "hailo8")]
    step = scenario.phases[0].steps[0]
    assert [step.hef_for(r.chip) for r in runs] == ["a.hef", "a.hef", "b.hef", "c.hef", "b.hef"]


def test_expand_matrix_needs_a_hef_for_every_chip():
    scenario = parse_scenario("""
name: s
matrix: {stacks: [h10, h8]}
phases:
  - name: p
    steps:
      - identify
      - configure_cycles: {hef: {hailo10h: a.hef}, count: 3}
""")
    stacks = {"h10": _stack("h10", "hailo10h"), "h8": _stack("h8", "hailo8")}
    with pytest.raises(ConfigError) as info:
        expand_matrix(scenario, ["n1", "n2"], node_chips={"n1": "hailo10h", "n2": "hailo8"}, stacks=stacks)
    assert str(info.value) == ("scenario 's' has no hef for hailo8 in phase 'p', step 2 (configure_cycles), "
                               "add 'hailo8: FILE.hef' to that step's hef mapping, or narrow the matrix")
    runs = expand_matrix(scenario, ["n1", "n2"], node_chips={"n1": "hailo10h"}, stacks={"h10": stacks["h10"]})
    assert [(r.node, r.stack, r.chip) for r in runs] == [  # unknown chips: no filter, no hef check
        ("n1", "h10", "hailo10h"), ("n2", "h10", "hailo10h"), ("n1", "h8", "hailo10h"), ("n2", "h8", None)]


def test_shipped_scenarios_cover_a_mixed_fleet():
    chips = {"node1": "hailo10h", "node2": "hailo10h", "node3": "hailo10h", "node4": "hailo8"}
    for path in SCENARIOS:
        loaded = load_scenario(path)
        runs = expand_matrix(loaded.scenario, list(chips), node_chips=chips, stacks=loaded.stacks)
        assert {r.node for r in runs} == set(chips), path.name
        assert all(loaded.stacks[r.stack].chip == chips[r.node] for r in runs)


@given(stacks=st.lists(st.from_regex(NAME_RE, fullmatch=True), min_size=1, max_size=4, unique=True),
       repeats=st.integers(1, 4), nodes=st.lists(st.sampled_from(["n1", "n2", "n3", "n4"]), min_size=1))
def test_expand_matrix_counts(stacks, repeats, nodes):
    runs = expand_matrix(_scenario(stacks=stacks, repeats=repeats), nodes)
    assert len(runs) == len(stacks) * repeats * len(set(nodes))
    assert len({(r.node, r.stack, r.repeat) for r in runs}) == len(runs)


# --- load / dump round trip (property) --------------------------------------------------------------

names = st.from_regex(NAME_RE, fullmatch=True)
hefs = st.from_regex(HEF_RE, fullmatch=True).filter(lambda h: len(h) < 80)
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
chips = st.sampled_from(["hailo10h", "hailo8", "hailo8l"])
hef_choices = hefs | st.dictionaries(chips, hefs, min_size=1)
steps = st.one_of(
    st.builds(ProvisionStep, stack=st.none() | names, clean=st.booleans()),
    st.just(IdentifyStep()),
    st.builds(BenchmarkStep, hef=hef_choices, runs=st.integers(1, 100_000), time_to_run=st.integers(1, 86_400),
              batch_size=st.none() | st.integers(1, 1024),
              gap=st.floats(0, 86_400, allow_nan=False, allow_infinity=False),
              power_mode=st.sampled_from([None, "performance", "ultra_performance"])),
    st.builds(STEP_MODELS["configure_cycles"], hef=hef_choices, count=st.integers(1, 100_000), frames=st.integers(0, 1000)),
    st.builds(STEP_MODELS["infer_continuous"], hef=hef_choices, duration=st.integers(1, 604_800)),
    st.builds(CooldownStep, seconds=st.integers(1, 86_400)),
    st.sampled_from([STEP_MODELS[k]() for k in ("driver_reload", "pcie_rescan", "chip_reset")]),
    st.builds(CollectStep, items=st.lists(st.sampled_from(["dmesg", "runtime_log", "journal", "throttled", "lspci",
                                                            "cma", "temps"]), min_size=1, unique=True)),
)
phases = st.builds(Phase, name=names, description=texts, reboot=st.booleans(),
                   steps=st.lists(steps, min_size=1, max_size=5))
scenarios = st.builds(
    Scenario, name=names, description=texts,
    matrix=st.builds(Matrix, stacks=st.lists(names, min_size=1, max_size=3, unique=True),
                     repeats=st.integers(1, 1000), group=st.none() | names),
    reboot_timeout=st.integers(1, 86_400),
    phases=st.lists(phases, min_size=1, max_size=4, unique_by=lambda p: p.name),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios)
def test_scenario_dump_load_round_trip(scenario):
    text = dump_scenario(scenario)
    again = parse_scenario(text, "dumped.yaml")
    assert again == scenario
    assert dump_scenario(again) == text
