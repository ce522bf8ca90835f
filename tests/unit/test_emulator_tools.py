"""Emulated hailortcli output against the verbatim real outputs, and through the agent's parsers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.agent import parsers
from lab.virtual.emulator.sandbox import Sandbox

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hailo"
NUM = re.compile(r"\b[0-9a-f]{16}\b|\d+\.\d+|\b\d+\b")


def fixture(name: str) -> str:
    """A verbatim real-tool output."""
    return (FIXTURES / name).read_text()


def shape(text: str) -> list:
    """Lines with every number replaced: the layout two outputs must share."""
    return [NUM.sub("N", line) for line in text.strip("\n").splitlines()]


def verbatim_errors(marker: str) -> list:
    """The lines of errors_verbatim.txt under the comment that contains `marker`."""
    lines, taking = [], False
    for line in fixture("errors_verbatim.txt").splitlines():
        if line.startswith("#"):
            taking = marker in line
        elif taking:
            lines.append(line)
    return lines


@pytest.fixture
def h10(tmp_path):
    """A booted default Hailo-10H on HailoRT 5.1.1 (the version of most fixtures)."""
    sb = Sandbox(tmp_path, version="5.1.1")
    sb.reboot()
    return sb


@pytest.fixture
def h8(tmp_path):
    """A booted Hailo-8 on HailoRT 4.23.0."""
    sb = Sandbox(tmp_path, unit={"chip": "hailo8"}, version="4.23.0")
    sb.reboot()
    return sb


def test_version(h10):
    r = h10.hailortcli("--version")
    assert r.out == "HailoRT-CLI version 5.1.1\n"
    assert parsers.parse_version(r.out).version == "5.1.1"


def test_scan_is_verbatim(h10):
    assert h10.hailortcli("scan").out == fixture("scan_5.1.1.txt")
    assert parsers.parse_scan(h10.hailortcli("scan").out).devices == ["0001:01:00.0"]


def test_identify_is_verbatim(h10):
    r = h10.hailortcli("fw-control", "identify")
    assert r.rc == 0 and r.out.rstrip("\n") == fixture("identify_h10_5.1.1.txt").rstrip("\n")
    parsed = parsers.parse_identify(r.out)
    assert (parsed.firmware_version, parsed.architecture) == ("5.1.1", "HAILO10H")


def test_identify_extended_names_the_unit(tmp_path):
    sb = Sandbox(
        tmp_path,
        unit={
            "ult_id": "FBFBBDDFC4DEF768D6CEF1F9",
            "soc_id": "8CD33CE2AA4ABFFE8EAD7E1FCF27CEC6D8" "19C55DADEFEB9FF8C9184DAE93ECCB",
            "board_sku": 7,
        },
        version="5.2.0",
    )
    sb.reboot()
    out = sb.hailortcli("fw-control", "identify", "--extended", version="5.2.0").out
    assert "LCS: 5\n" in out and "SoC ID: 8CD33CE2AA4ABFFE8EAD7E1FCF27CEC6D819C55DADEFEB9FF8C9184DAE93ECCB\n" in out
    assert "ULT ID: FBFBBDDFC4DEF768D6CEF1F9\n" in out and "Board SKU-ID: 7\n" in out
    assert "Serial Number" not in out and "Board Name" not in out  # 5.x: an AI HAT+ 2 has neither
    assert "Board SKU-ID is: 7" in sb.kernel_log()
    parsed = parsers.parse_identify(out)
    assert (parsed.soc_id, parsed.ult_id, parsed.lcs, parsed.serial_number) == (
        "8CD33CE2AA4ABFFE8EAD7E1FCF27CEC6D819C55DADEFEB9FF8C9184DAE93ECCB", "FBFBBDDFC4DEF768D6CEF1F9", 5, None)
    plain = sb.hailortcli("fw-control", "identify", version="5.2.0").out
    assert "SoC ID" not in plain and parsers.parse_identify(plain).extended is False


def test_identify_on_hailo8_by_version(h8):
    """4.23 prints no serial line for an AI HAT+ and LCS without its newline; 4.20 prints `<N/A>` (fw_control_command.cpp)."""
    out = h8.hailortcli("fw-control", "identify").out
    assert "Board Name: Hailo-8\n" in out and "Serial Number" not in out  # 4.22+: no line for an unset serial
    extended = h8.hailortcli("fw-control", "identify", "--extended").out
    assert "\nLCS: 3SoC ID: " in extended and parsers.parse_identify(extended).lcs == 3
    h8.install_driver("4.20.0")
    h8.modprobe(remove=True)
    h8.modprobe()
    out = h8.hailortcli("fw-control", "identify", version="4.20.0").out
    assert "Firmware Version: 4.20.0 (release,app,extended context switch buffer)" in out
    assert "Serial Number: <N/A>\nPart Number: <N/A>\nProduct Name: <N/A>\n" in out
    parsed = parsers.parse_identify(out)
    assert (parsed.architecture, parsed.serial_number, parsed.part_number) == ("HAILO8", None, None)
    extended = h8.hailortcli("fw-control", "identify", "--extended", version="4.20.0").out
    assert "\nLCS: 3\nSoC ID: " in extended


def test_identify_serial_of_an_m2_module(tmp_path):
    """A board with a programmed serial (the AI Kit's M.2 module) prints it on every version."""
    sb = Sandbox(tmp_path, unit={"chip": "hailo8l", "serial": "HLDDLBB234500054", "part_number": "HM21LB1C2LAE",
                                 "product_name": "HAILO-8L AI ACC M.2 B+M KEY MODULE EXT TMP"}, version="4.23.0")
    sb.reboot()
    out = sb.hailortcli("fw-control", "identify", version="4.23.0").out
    assert "Serial Number: HLDDLBB234500054\nPart Number: HM21LB1C2LAE\n" in out
    assert parsers.parse_identify(out).serial_number == "HLDDLBB234500054"


def test_benchmark_5x_has_the_short_summary(h10):
    r = h10.benchmark("resnet_v1_50_h10.hef")
    assert shape(r.err + r.out) == shape(fixture("benchmark_h10_5.1.1_resnet.txt"))
    parsed = parsers.parse_benchmark(r.err + r.out)
    assert parsed.network == "resnet_v1_50" and abs(parsed.fps - 307.47) < 1.0
    assert parsed.device == "0001:01:00.0" and parsed.temperature.max >= parsed.temperature.mean


def test_benchmark_4x_has_the_long_summary(h8):
    r = h8.benchmark("yolov8s_h8.hef", 5)
    assert shape(r.out) == shape(fixture("benchmark_h8_4.23_yolov8s.txt"))
    parsed = parsers.parse_benchmark(r.out)
    assert abs(parsed.fps_hw_only - 309.58) < 1.0 and parsed.latency_hw_ms == pytest.approx(6.66, abs=0.05)


def test_benchmark_4x_can_fail_after_printing_its_fps(tmp_path):
    """A unit whose latency measurement times out: both FPS bars, then the error and exit 4 (no Summary)."""
    sb = Sandbox(tmp_path, unit={"chip": "hailo8", "benchmark_latency_timeout": True}, version="4.23.0")
    sb.reboot()
    r = sb.benchmark("yolov8s_h8.hef", 5)
    case = Path(__file__).parents[1] / "fixtures/parsers/benchmark/inputs/benchmark_h8_4.23_latency_timeout.txt"
    assert r.rc == 4 and "Summary" not in r.out
    assert shape(r.out + r.err) == shape(case.read_text())
    parsed = parsers.parse_benchmark(r.out + r.err)
    assert abs(parsed.fps - 309.4) < 1.0 and parsed.statuses == {"HAILO_TIMEOUT": 4}


def test_benchmark_accepts_the_real_options(h10):
    r = h10.hailortcli(
        "benchmark",
        "--batch-size",
        "8",
        "--power-mode",
        "ultra_performance",
        "--time-to-run",
        "60",
        h10.hef("yolo26s_hailo10h.hef"),
    )
    assert r.rc == 0 and abs(parsers.parse_benchmark(r.err + r.out).fps - 124.8) <= 0.3


def test_run2_is_verbatim_in_shape(h10):
    r = h10.hailortcli("run2", "-t", "5", "set-net", h10.hef("resnet_v1_50_h10.hef"))
    assert shape(r.out) == shape(fixture("run2_h10_5.1.1.txt"))
    assert parsers.parse_run2(r.out).network == "resnet_v1_50"


def test_run_is_refused_on_hailo10h(h10):
    r = h10.hailortcli("run", h10.hef("yolo26s_hailo10h.hef"))
    assert r.rc != 0 and r.err.splitlines() == verbatim_errors("`hailortcli run`")
    assert parsers.parse_errors(r.err).messages[0].event == "unsupported_command"


def test_run_on_hailo8_measures_temperature(h8):
    r = h8.hailortcli("run", "--measure-temp", h8.hef("yolov8s_h8.hef"))
    want = fixture("run_h8_measure_temp.txt").replace("/home/ubuntu/workspace/project/hailo/model/yolov8n.hef", "HEF")
    got = r.out.replace(h8.hef("yolov8s_h8.hef"), "HEF").replace("yolov8s", "yolov8n")
    assert shape(got) == shape(want)
    parsed = parsers.parse_run(r.out)
    assert parsed.temperature.min <= parsed.temperature.mean <= parsed.temperature.max


def test_version_mismatch_fails_verbatim(h10):
    h10.install_driver("5.2.0")
    h10.modprobe(remove=True)
    h10.modprobe()
    r = h10.hailortcli("benchmark", h10.hef("yolo26s_hailo10h.hef"), version="5.3.0")
    want = [line.replace("4.18.0", "5.2.0").replace("4.19.0", "5.3.0") for line in verbatim_errors("version mismatch")]
    assert r.rc == 76 and r.err.splitlines() == want and r.out == ""
    msg = parsers.parse_errors(r.err).messages[0]
    assert (msg.driver_version, msg.library_version) == ("5.2.0", "5.3.0")


def test_an_upgraded_but_not_reloaded_driver_mismatches(h10):
    h10.install_driver("5.3.0")  # apt upgraded the driver package; the 5.1.1 module is still loaded
    assert h10.hailortcli("scan", version="5.3.0").rc == 76
    h10.modprobe(remove=True)
    h10.modprobe()
    assert h10.hailortcli("scan", version="5.3.0").rc == 0
    assert h10.hailortcli("fw-control", "identify", version="5.3.0").out.count("Firmware Version: 5.1.1") == 1


def test_no_driver_fails_like_the_real_library(h10):
    h10.modprobe(remove=True)
    r = h10.hailortcli("fw-control", "identify")
    assert r.rc == 64 and "Can't find hailo pcie class" in r.err
    assert parsers.parse_errors(r.err).statuses == {"HAILO_PCIE_DRIVER_NOT_INSTALLED": 64}


def test_hailo8_driver_does_not_bind_a_hailo10h(h10):
    h10.modprobe(remove=True)
    h10.install_driver("4.23.0")
    h10.modprobe()
    assert "hailo: Init module. driver version 4.23.0" in h10.kernel_log()
    assert not h10.dev_node_exists()


def test_runtime_log_matches_the_seed(tmp_path):
    sb = Sandbox(tmp_path)
    sb.reboot()
    for _ in range(13):
        sb.benchmark(seconds=1)
    text = sb.hailortcli("logs", "runtime").out
    want = verbatim_errors("runtime log")
    assert shape("\n".join(text.splitlines()[-4:])) == shape("\n".join(want))
    parsed = parsers.parse_runtime_log(text)
    assert parsed.configure_count == 13 and parsed.cma_failure_count == 1 and parsed.firmware_version == "5.3.0"
    assert sb.hailortcli("logs", "runtime").out == ""  # drained


def test_probe_lines_match_the_real_driver(h10):
    log = [line.split("] ", 1)[1] for line in h10.kernel_log().splitlines()]
    want = fixture("dmesg_h10_5.1.1_probe.txt").splitlines()
    start = log.index(want[0])
    assert shape("\n".join(log[start : start + len(want)])) == shape("\n".join(want))
    parsed = parsers.parse_dmesg(h10.kernel_log())
    assert (parsed.driver_version, parsed.sku_id, parsed.outcome) == ("5.1.1", 6, "ready")
    assert parsed.boards[0].dev_node == "/dev/hailo0"


def test_dmesg_parser_reads_a_reload_and_a_bricked_chip(tmp_path):
    sb = Sandbox(tmp_path)
    sb.reboot()
    sb.modprobe(remove=True)
    sb.modprobe()
    assert parsers.parse_dmesg(sb.kernel_log()).firmware_already_loaded
    sb.hailortcli("fw-control", "reset", "--reset-type", "chip")
    parsed = parsers.parse_dmesg(sb.kernel_log())
    assert parsed.outcome == "failed" and -110 in parsed.error_codes
