"""Parsers against tables of real tool output (one generated test per JSON case) plus round-trip properties."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.agent import parsers
from lab.agent.parsers import ToolOutputError

# Hypothesis resolves its example database before the autouse chdir; keep it out of the tree
_NO_DATABASE = settings(database=None)
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
HAILO = FIXTURES / "hailo"
CASES = sorted((FIXTURES / "parsers").glob("*/*.json"))
AGENT = Path(parsers.__file__).resolve().parent


def _input(case: Path, name: str) -> str:
    """A case's input: its own inputs/ directory first, else the verbatim fixtures."""
    own = case.parent / "inputs" / name
    return (own if own.exists() else HAILO / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_parser_case(case: Path) -> None:
    spec = json.loads(case.read_text(encoding="utf-8"))
    got = parsers.parse(spec["kind"], _input(case, spec["input"])).to_dict()
    if got != spec["expected"]:
        pytest.fail(f"GOT:\n{json.dumps(got, indent=2)}\nWANT:\n{json.dumps(spec['expected'], indent=2)}")


def test_every_verbatim_fixture_has_a_case() -> None:
    covered = {json.loads(c.read_text())["input"] for c in CASES}
    verbatim = {p.name for p in HAILO.glob("*.txt")}
    assert verbatim - covered == set()


def test_every_kind_has_a_case() -> None:
    assert {c.parent.name for c in CASES} == set(parsers.PARSERS)


WRONG_TOOL = [
    ("benchmark", "identify_h10_5.1.1.txt"),
    ("benchmark", "run2_h10_5.1.1.txt"),
    ("benchmark", "run_h8_measure_temp.txt"),
    ("benchmark", "dmesg_h10_5.1.1_probe.txt"),
    ("identify", "benchmark_h10_5.1.1_resnet.txt"),
    ("identify", "benchmark_h8_4.x_power.txt"),
    ("identify", "scan_5.1.1.txt"),
    ("run2", "benchmark_h10_5.1.1_resnet.txt"),
    ("run", "benchmark_h8_4.23_yolov8s.txt"),
    ("scan", "identify_h10_5.1.1.txt"),
    ("version", "identify_h8l_4.17.txt"),
    ("runtime-log", "dmesg_h10_5.1.1_probe.txt"),
    ("runtime-log", "benchmark_h8_4.x_power.txt"),
    ("dmesg", "errors_verbatim.txt"),
    ("dmesg", "identify_h10_5.1.1.txt"),
    ("errors", "benchmark_h10_5.1.1_resnet.txt"),
]


@pytest.mark.parametrize(("kind", "name"), WRONG_TOOL, ids=[f"{k}<-{n}" for k, n in WRONG_TOOL])
def test_wrong_tool_output_is_refused(kind: str, name: str) -> None:
    with pytest.raises(ToolOutputError) as caught:
        parsers.parse(kind, (HAILO / name).read_text())
    assert caught.value.kind == kind


NOT_HAILO = ["", "\n\n", "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nVERSION_ID=\"13\"\n", "run,fps\n1,124.78\n"]


@pytest.mark.parametrize("kind", sorted(parsers.PARSERS))
@pytest.mark.parametrize("text", NOT_HAILO, ids=["empty", "blank", "os-release", "csv"])
def test_text_of_no_hailo_tool_is_refused(kind: str, text: str) -> None:
    with pytest.raises(ToolOutputError):
        parsers.parse(kind, text)


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown kind 'lspci'"):
        parsers.parse("lspci", "")


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("benchmark_h8_4.x_power.txt", ["benchmark", "errors"]),
        ("identify_h10_5.1.1.txt", ["identify"]),
        ("errors_verbatim.txt", ["runtime-log", "errors"]),
        ("dmesg_h10_5.3.0_chip_reset_failure.txt", ["dmesg"]),
    ],
)
def test_detect_kinds(name: str, kinds: list) -> None:
    assert parsers.detect_kinds((HAILO / name).read_text()) == kinds


def test_lines_with_crlf_endings_parse_the_same() -> None:
    text = (HAILO / "benchmark_h10_5.1.1_resnet.txt").read_text()
    assert parsers.parse_benchmark(text.replace("\n", "\r\n")) == parsers.parse_benchmark(text)


# --- the chip's throttling state, per benchmark run (HailoRT >= 5.2.0 logs its changes) -------------

LIGHT, MEDIUM, NONE = "THROTTLING_LIGHT", "THROTTLING_MEDIUM", "THROTTLING_NONE"


@pytest.mark.parametrize(("states", "before", "throttled", "after"), [
    ([], None, None, None),  # nothing reported yet: unknown, not "not throttling"
    ([LIGHT], None, True, LIGHT),
    ([LIGHT, MEDIUM], NONE, True, MEDIUM),
    ([], MEDIUM, True, MEDIUM),  # no change during a back-to-back run: still throttling
    ([NONE], None, True, NONE),  # it left a throttling state during the run: throttled before that
    ([], NONE, False, NONE),
], ids=["unknown", "entered", "deeper", "stayed", "left", "stayed-none"])
def test_run_throttling(states: list, before, throttled, after) -> None:
    assert parsers.run_throttling(states, before) == (throttled, after)


def test_benchmark_collects_the_throttling_states_it_logged() -> None:
    text = (FIXTURES / "parsers" / "benchmark" / "inputs" / "benchmark_h10_5.3.0_throttling.txt").read_text()
    r = parsers.parse_benchmark(text)
    assert (r.fps, r.throttling_states) == (104.21, [LIGHT, MEDIUM])
    assert [m.event for m in r.messages] == ["throttling_state", "throttling_state"]
    assert parsers.parse_errors(text).messages[0].throttling_state == LIGHT
    assert parsers.parse_benchmark((HAILO / "benchmark_h10_5.1.1_resnet.txt").read_text()).throttling_states == []


# --- the agent runs on nodes: stdlib only, Python 3.9 grammar, of lab only the contract ------------

# the agent's modules and the contract it shares with the controller (lab.bundle ships both)
AGENT_SOURCES = sorted(AGENT.glob("*.py")) + [AGENT.parent / "contract.py"]


@pytest.mark.parametrize("path", AGENT_SOURCES, ids=[p.name for p in AGENT_SOURCES])
def test_agent_module_is_stdlib_only_and_python39(path: Path) -> None:
    tree = ast.parse(path.read_text(), feature_version=(3, 9))  # a match statement would fail here
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots = {"lab.contract" if node.module == "lab.contract" else (node.module or "").split(".")[0]}
        else:
            roots = set()
        # hailo_platform is the node's own Hailo library (python3-hailort), imported only where a step needs it,
        # with numpy, which python3-hailort depends on (pyhailort's buffers are numpy arrays)
        assert roots <= set(sys.stdlib_module_names) | {"__future__", "hailo_platform", "numpy", "lab.contract"}, \
            f"{path.name} imports {roots}"
        annotation = getattr(node, "annotation", None) or getattr(node, "returns", None)
        if annotation is not None:
            # `X | Y` in an annotation breaks typing.get_type_hints on 3.9
            assert not any(isinstance(n, ast.BinOp) for n in ast.walk(annotation)), f"{path.name}:{node.lineno}"


def test_agent_package_works_when_copied_alone(tmp_path: Path) -> None:
    # -S: no site-packages, so nothing of lab (or any dependency) can be imported by accident
    shutil.copytree(AGENT, tmp_path / "nodeagent", ignore=shutil.ignore_patterns("__pycache__"))
    code = "import nodeagent.parsers as p; print(p.parse_version('HailoRT-CLI version 5.3.0').version)"
    done = subprocess.run([sys.executable, "-S", "-E", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "5.3.0\n", "")


# --- round trips: outputs in the verbatim formats, built from random values -------------------

hundredths = st.integers(min_value=1, max_value=999_999).map(lambda v: f"{v / 100:.2f}")
celsius = st.integers(min_value=-2000, max_value=12_000).map(lambda v: f"{v / 100:.2f}")
names = st.from_regex(r"[a-z][a-z0-9_]{0,24}", fullmatch=True)
pci = st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.integers(0, 0x1F), st.integers(0, 7)).map(
    lambda t: f"{t[0]:04x}:{t[1]:02x}:{t[2]:02x}.{t[3]}"
)


@_NO_DATABASE
@given(net=names, fps=hundredths, device=pci, temps=st.lists(celsius, min_size=3, max_size=3), power=st.booleans())
def test_benchmark_5x_round_trip(net: str, fps: str, device: str, temps: list, power: bool) -> None:
    mean, low, high = temps
    head = "" if power else "Measurement power is not supported\nMeasurement current is not supported\n"
    text = (f"{head}\n=======\nSummary\n=======\n{net}: FPS: {fps}\n{device}:\n"
            f"  temperature: mean={mean} min={low} max={high}\n")
    r = parsers.parse_benchmark(text)
    assert (r.format, r.network, r.fps, r.device) == ("hailort-5", net, float(fps), device)
    assert (r.temperature.mean, r.temperature.min, r.temperature.max) == (float(mean), float(low), float(high))
    assert r.power_supported is (None if power else False)


@_NO_DATABASE
@given(net=names, hw=hundredths, stream=hundredths, latency=hundredths, power=st.none() | st.tuples(hundredths, hundredths))
def test_benchmark_4x_round_trip(net: str, hw: str, stream: str, latency: str, power) -> None:
    lines = [
        "Starting Measurements...", "Measuring FPS in hw_only mode",
        f"Network {net}/{net}: 100% | 3271 | FPS: {hw} | ETA: 00:00:00", "", "=======", "Summary", "=======",
        f"FPS     (hw_only)                 = {hw}", f"        (streaming)               = {stream}",
        f"Latency (hw)                      = {latency} ms",
    ]
    if power:
        lines += ["Device 0000:01:00.0:", f"  Power in streaming mode (average) = {power[0]} W",
                  f"                          (max)     = {power[1]} W"]
    r = parsers.parse_benchmark("\n".join(lines) + "\n")
    assert (r.format, r.network, r.fps, r.fps_hw_only, r.latency_hw_ms) == (
        "hailort-4", f"{net}/{net}", float(stream), float(hw), float(latency))
    assert (r.power_avg_w, r.power_max_w) == ((float(power[0]), float(power[1])) if power else (None, None))


identify_fields = st.fixed_dictionaries({}, optional={
    "Board Name": st.sampled_from(["Hailo-8", "Hailo-10H"]),
    "Serial Number": st.from_regex(r"[A-Z0-9]{8,24}", fullmatch=True),
    "Part Number": st.from_regex(r"[A-Z0-9]{6,14}", fullmatch=True),
    "Product Name": st.from_regex(r"HAILO-[0-9A-Z]{1,3}( [A-Z0-9.+]{1,8}){0,5}", fullmatch=True),
})
flags = st.lists(st.sampled_from(["release", "app", "extended context switch buffer", "debug"]), unique=True)


@_NO_DATABASE
@given(device=pci, version=st.tuples(st.integers(0, 9), st.integers(0, 30), st.integers(0, 9)), flags=flags,
       arch=st.sampled_from(["HAILO8", "HAILO8L", "HAILO10H"]), extra=identify_fields)
def test_identify_round_trip(device: str, version: tuple, flags: list, arch: str, extra: dict) -> None:
    fw = ".".join(map(str, version)) + (f" ({','.join(flags)})" if flags else "")
    lines = [f"Executing on device: {device}", "Identifying board", "Control Protocol Version: 2",
             f"Firmware Version: {fw}", "Logger Version: 0"]
    lines += [f"Board Name: {extra['Board Name']}"] if "Board Name" in extra else []
    lines += [f"Device Architecture: {arch}"]
    lines += [f"{k}: {v}" for k, v in extra.items() if k != "Board Name"]
    r = parsers.parse_identify("\n".join(lines) + "\n")
    assert (r.device, r.firmware_version, r.firmware_flags, r.architecture) == (
        device, ".".join(map(str, version)), flags, arch)
    assert (r.board_name, r.serial_number, r.part_number, r.product_name) == tuple(
        extra.get(k) for k in ("Board Name", "Serial Number", "Part Number", "Product Name"))


@_NO_DATABASE
@given(nets=st.dictionaries(names, hundredths, min_size=1, max_size=4))
def test_run2_round_trip(nets: dict) -> None:
    text = "[===================>] 100% 00:00:00\n" + "".join(f"{n}: fps: {v}\n" for n, v in nets.items())
    r = parsers.parse_run2(text)
    assert r.networks == {n: float(v) for n, v in nets.items()}
    assert (r.network, r.fps) == next(iter(r.networks.items()))


def test_dmesg_from_a_virtual_nodes_journal() -> None:
    """The virtual node's kernel-log view: journalctl short-monotonic with the `kernel[pid]:` identifier."""
    text = (
        "[ 1992.995642] node1 kernel[45]: hailo1x: Init module. driver version 5.3.0\n"
        "[ 1992.995741] node1 kernel[45]: hailo1x 0001:01:00.0: Probing on: 1e60:45c4...\n"
        "[ 1995.583000] node1 kernel[45]: hailo1x 0001:01:00.0: Firmware loaded in 2587 ms\n"
        "[ 1995.583100] node1 kernel[45]: hailo1x 0001:01:00.0: Probing: Added board 1e60-45c4, /dev/hailo0\n"
    )
    result = parsers.parse_dmesg(text)
    assert (result.driver, result.driver_version, result.firmware_load_ms) == ("hailo1x", "5.3.0", 2587)
    assert [e.host for e in result.events] == ["node1"] * 4
    assert result.events[0].time == 1992.995642
