"""`lab check FILE...`: exact output, one line per file, exit 2 on any bad file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.cli import main
from tests.unit.test_scenario_errors import BAD, CASES, _expected

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def in_project(monkeypatch):
    """Run from the project root, so output names the short relative paths."""
    monkeypatch.chdir(PROJECT)


def run_lab(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit status, stdout, stderr)."""
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_good_files(capsys):
    status, out, err = run_lab(capsys, "check", "scenarios/cma_soak.yaml", "stacks/h10-5.3.0.yaml",
                           "scenarios/recovery_matrix.yaml")
    assert (status, err) == (0, "")
    assert out == ("OK scenarios/cma_soak.yaml (scenario: cma_soak)\n"
                   "OK stacks/h10-5.3.0.yaml (stack: h10-5.3.0)\n"
                   "OK scenarios/recovery_matrix.yaml (scenario: recovery_matrix)\n")


def test_every_shipped_file_is_ok(capsys):
    files = sorted(str(p.relative_to(PROJECT)) for d in ("scenarios", "stacks") for p in (PROJECT / d).glob("*.yaml"))
    status, out, err = run_lab(capsys, "check", *files)
    assert (status, err) == (0, "")
    assert [line.split()[1] for line in out.splitlines()] == files


def test_one_bad_file(capsys):
    status, out, err = run_lab(capsys, "check", "tests/fixtures/bad/scenarios/negative_runs.yaml")
    assert (status, out) == (2, "")
    assert err == ("lab: error: phases[0].steps[1].benchmark.runs must be at least 1, got -3, "
                   "tests/fixtures/bad/scenarios/negative_runs.yaml:9, runs: how many benchmark invocations, "
                   "back to back\n")


def test_good_and_bad_files(capsys):
    status, out, err = run_lab(capsys, "check", "scenarios/cma_soak.yaml", "tests/fixtures/bad/scenarios/unknown_step.yaml",
                           "stacks/h8-4.23.0.yaml", "tests/fixtures/bad/stacks/has-source.yaml")
    assert status == 2
    assert out == ("OK scenarios/cma_soak.yaml (scenario: cma_soak)\n"
                   "OK stacks/h8-4.23.0.yaml (stack: h8-4.23.0)\n")
    assert err == ("lab: error: unknown step 'benchmrk', tests/fixtures/bad/scenarios/unknown_step.yaml:9, "
                   "did you mean 'benchmark'?\n"
                   "lab: error: a stack names versions only, not where packages come from, "
                   "tests/fixtures/bad/stacks/has-source.yaml:7, remove 'source:'; set lab_hailo_sources per "
                   "inventory group (archive, {apt: LINE} or {files: FOLDER})\n")


def test_every_bad_fixture_one_line_each(capsys):
    status, out, err = run_lab(capsys, "check", *(str(BAD / c[0]) for c in CASES))
    assert (status, out) == (2, "")
    want = []
    for case in CASES:
        where, what, hint = _expected(case)
        want.append("lab: error: " + ", ".join(p for p in (what, where, hint) if p))
    assert err.splitlines() == want


def test_missing_file(capsys):
    status, out, err = run_lab(capsys, "check", "scenarios/nope.yaml")
    assert (status, out, err) == (2, "", "lab: error: no such file, scenarios/nope.yaml, check the path\n")


def test_profile_goes_to_the_profile_validator(capsys, monkeypatch, tmp_path):
    import lab.virtual.profile

    seen = []
    monkeypatch.setattr(lab.virtual.profile, "load_profile", lambda path: seen.append(Path(path)) or {})
    (tmp_path / "fleet-profile.yaml").write_text("nodes: {node1: {chip: hailo10h}}\n")
    monkeypatch.chdir(tmp_path)
    status, out, err = run_lab(capsys, "check", "fleet-profile.yaml")
    assert (status, out, err) == (0, "OK fleet-profile.yaml (profile: fleet-profile)\n", "")
    assert seen == [Path("fleet-profile.yaml")]


def test_no_files_is_a_usage_error(capsys):
    """Files are optional now that --inventory alone is something to check; neither is one line, exit 2."""
    status, out, err = run_lab(capsys, "check")
    assert (status, out, err) == (2, "", "lab: error: nothing to check, give scenario, stack or profile files, "
                                         "or --inventory INV\n")


def test_help_has_an_example(capsys):
    status, out, _ = run_lab(capsys, "check", "--help")
    assert status == 0
    assert "Example:" in out and "lab check scenarios/*.yaml" in out


def test_real_process_prints_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "lab", "check", "tests/fixtures/bad/scenarios/yaml_tab_indent.yaml"],
                          capture_output=True, text=True, cwd=PROJECT, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == ("lab: error: YAML syntax error: found character '\\t' that cannot start any token "
                           "(while scanning for the next token), tests/fixtures/bad/scenarios/yaml_tab_indent.yaml:3, "
                           "indent with spaces, not tabs\n")
