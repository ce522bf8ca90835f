"""`lab parse` and `lab analyze`: exact output, exact error lines, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import lab.cli
from lab.cli import analyze as analyze_module
from lab.cli import parse as parse_module

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture()
def lab_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run `lab ARGS` through main()'s error boundary; returns (exit code, stdout, stderr)."""
    # importing the two modules registered their commands; skip the other groups so that these
    # tests do not depend on modules other engineers are still writing
    monkeypatch.setattr(lab.cli, "_register", lambda: None)

    def run(*args: str):
        code = lab.cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture()
def copy(tmp_path: Path):
    """Copy a fixture into tmp_path (outputs then name a path the test controls)."""
    def make(relative: str) -> Path:
        target = tmp_path / Path(relative).name
        shutil.copy(FIXTURES / relative, target)
        return target
    return make


def test_parse_benchmark_text(lab_cli, copy) -> None:
    f = copy("hailo/benchmark_h10_5.1.1_resnet.txt")
    assert lab_cli("parse", "benchmark", str(f)) == (0, (
        f"{f}: benchmark\n"
        "  format: hailort-5\n"
        "  network: resnet_v1_50\n"
        "  fps: 307.48\n"
        "  networks: resnet_v1_50=307.48\n"
        "  device: 0001:01:00.0\n"
        "  temperature: mean=33.74 min=31.85 max=34.69\n"
        "  power_supported: no\n"
    ), "")


def test_parse_dmesg_text(lab_cli, copy) -> None:
    f = copy("hailo/dmesg_h10_5.3.0_chip_reset_failure.txt")
    assert lab_cli("parse", "dmesg", str(f)) == (0, (
        f"{f}: dmesg\n"
        "  events: 8 (--json lists them)\n"
        "  driver: hailo1x\n"
        "  module: hailo1x_pci\n"
        "  devices: 0001:01:00.0\n"
        "  firmware_already_loaded: no\n"
        "  error_codes: -110\n"
        "  probe_failed: yes\n"
        "  outcome: failed\n"
    ), "")


@pytest.mark.parametrize("case", sorted((FIXTURES / "parsers").glob("*/*.json")), ids=lambda p: p.stem)
def test_parse_json_is_one_document(lab_cli, case: Path, tmp_path: Path) -> None:
    spec = json.loads(case.read_text())
    source = case.parent / "inputs" / spec["input"]
    f = tmp_path / spec["input"]
    shutil.copy(source if source.exists() else FIXTURES / "hailo" / spec["input"], f)
    code, out, err = lab_cli("parse", spec["kind"], str(f), "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"kind": spec["kind"], "source": str(f), "result": spec["expected"]}


def test_parse_wrong_kind_suggests_the_right_one(lab_cli, copy) -> None:
    f = copy("hailo/benchmark_h10_5.1.1_resnet.txt")
    assert lab_cli("parse", "identify", str(f)) == (2, "", (
        "lab: error: not hailortcli fw-control identify output (no identify field or HailoRT error), "
        f"{f}, it parses as benchmark: try lab parse benchmark {f}\n"
    ))


def test_parse_non_hailo_file(lab_cli, tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("shopping list\neggs\n")
    assert lab_cli("parse", "dmesg", str(f)) == (2, "", (
        f"lab: error: no hailo1x or hailo_pci driver line in this kernel log, {f}, "
        "save the output of `dmesg (or journalctl -k)`\n"
    ))
    code, out, err = lab_cli("parse", "benchmark", str(f))
    assert (code, out) == (2, "")
    assert err == (f"lab: error: not hailortcli benchmark output (no FPS summary, measurement or HailoRT error), "
                   f"{f}, save the output of `hailortcli benchmark HEF`\n")


def test_parse_missing_file(lab_cli, tmp_path: Path) -> None:
    f = tmp_path / "absent.txt"
    assert lab_cli("parse", "benchmark", str(f)) == (2, "", f"lab: error: file not found, {f}, check the path\n")


def test_parse_unknown_kind_is_a_usage_error(lab_cli, copy) -> None:
    code, out, err = lab_cli("parse", "lspci", str(copy("hailo/scan_5.1.1.txt")))
    assert (code, out) == (2, "")
    assert "Invalid value for 'kind'" in err and "'lspci' is not one of 'benchmark'" in err


def test_analyze_seed_text(lab_cli, copy) -> None:
    f = copy("series/seed_000_25runs.csv")
    assert lab_cli("analyze", str(f)) == (0, (
        f"{f}: degraded (25 runs)\n"
        "  baseline: 124.81 fps (noise 0.07)\n"
        "  end: 85.65 fps (31.4% below baseline)\n"
        "  onset: run 13\n"
        "  slope: -3.57 fps/run over runs 13-25\n"
        "  floor: 81.60 fps at run 25, still falling\n"
        "  thermal: no (temperature plateaued from run 15 (73.96 °C) while fps kept falling (-3.23 fps/run))\n"
    ), "")


def test_analyze_fresh_boot_text(lab_cli, tmp_path: Path) -> None:
    f = tmp_path / "fresh.csv"
    f.write_text("run,fps,temp,configures\n1,124.90,59.73,1\n2,125.01,61.34,2\n3,124.79,62.38,3\n"
                 "4,124.30,63.26,4\n5,124.64,64.16,5\n6,124.90,64.93,6\n")
    assert lab_cli("analyze", str(f)) == (0, (
        f"{f}: stable (6 runs)\n"
        "  baseline: 124.90 fps (noise 0.16)\n"
        "  end: 124.64 fps (0.2% below baseline)\n"
        "  floor: 124.30 fps at run 4\n"
        "  thermal: nothing to explain (fps never fell below the degradation threshold)\n"
    ), "")


def test_analyze_json(lab_cli, copy) -> None:
    f = copy("series/seed_000_25runs.csv")
    code, out, err = lab_cli("analyze", str(f), "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["source"] == str(f)
    assert (data["series"]["verdict"], data["series"]["onset_run"]) == ("degraded", 13)
    assert (data["thermal"]["verdict"], data["thermal"]["thermal"]) == ("not_thermal", False)


def test_analyze_without_temperatures_has_no_thermal_line(lab_cli, tmp_path: Path) -> None:
    f = tmp_path / "plain.csv"
    f.write_text("run,fps\n" + "".join(f"{r},124.8\n" for r in range(1, 9)))
    code, out, _ = lab_cli("analyze", str(f))
    assert code == 0 and "thermal" not in out
    code, out, _ = lab_cli("analyze", str(f), "--json")
    assert json.loads(out)["thermal"] is None


@pytest.mark.parametrize(("text", "error"), [
    ("run,fps\n1,124.8\n2,oops\n", "fps 'oops' is not a number, {f}:3, "
                                   "expected a header run,fps[,temp[,configures[,inference_s]]] and one row per run"),
    ("run,fps,temperature\n", "unknown column 'temperature', {f}:1, columns are run, fps, temp, configures, inference_s"),
    ("", "no runs in this CSV, {f}:1, expected a header run,fps[,temp[,configures[,inference_s]]] and one row per run"),
])
def test_analyze_bad_csv_is_one_line(lab_cli, tmp_path: Path, text: str, error: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    assert lab_cli("analyze", str(f)) == (2, "", "lab: error: " + error.format(f=f) + "\n")


def test_analyze_missing_file(lab_cli, tmp_path: Path) -> None:
    f = tmp_path / "absent.csv"
    assert lab_cli("analyze", str(f)) == (2, "", f"lab: error: file not found, {f}, check the path\n")


@pytest.mark.parametrize("command", [parse_module.parse_command, analyze_module.analyze_command])
def test_commands_have_a_docstring_with_an_example(command) -> None:
    summary, _, example = command.__doc__.partition("Example:")
    assert summary.splitlines()[0].strip().endswith(".")
    assert any(line.strip().startswith("lab ") for line in example.splitlines())


@pytest.mark.parametrize("command", ["parse", "analyze"])
def test_help(lab_cli, command: str) -> None:
    code, out, _ = lab_cli(command, "--help")
    assert code == 0 and "Example:" in out and f"lab {command}" in out
