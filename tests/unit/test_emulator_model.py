"""The emulated chip against the seed's measurements: calibration, configure count, recovery semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.agent.parsers import parse_benchmark
from lab.virtual.emulator.sandbox import Sandbox

# Seed 000: 25 back-to-back 15 s benchmarks from a fresh boot, firmware 5.3.0 (run, fps, temperature).
SEED = [
    (124.78, 60.70),
    (124.76, 62.82),
    (124.90, 64.36),
    (124.81, 65.70),
    (124.89, 66.90),
    (124.81, 67.96),
    (124.80, 68.94),
    (124.89, 69.83),
    (124.99, 70.69),
    (124.81, 71.29),
    (124.89, 71.96),
    (124.87, 72.60),
    (122.80, 73.13),
    (121.38, 73.61),
    (118.53, 73.96),
    (108.49, 73.99),
    (101.51, 73.88),
    (98.34, 73.82),
    (96.64, 73.87),
    (94.04, 73.90),
    (91.14, 73.82),
    (88.55, 73.68),
    (85.65, 73.58),
    (83.99, 73.53),
    (81.60, 73.43),
]


def bench(sb: Sandbox, filename: str = "yolo26s_hailo10h.hef", seconds: float = 15):
    """One benchmark, parsed with the agent's own parser: (fps, mean temperature)."""
    r = sb.benchmark(filename, seconds)
    assert r.rc == 0, r.err
    parsed = parse_benchmark(r.err + r.out)
    return parsed.fps, parsed.temperature.mean


def soak(sb: Sandbox, runs: int, seconds: float = 15):
    """`runs` back-to-back benchmarks."""
    return [bench(sb, seconds=seconds) for _ in range(runs)]


@pytest.fixture
def fixtures_dir():
    """The verbatim real-tool outputs."""
    return Path(__file__).resolve().parent.parent / "fixtures" / "hailo"


@pytest.fixture
def h10(tmp_path):
    """A default (susceptible) Hailo-10H unit on firmware 5.3.0, just booted."""
    sb = Sandbox(tmp_path)
    sb.reboot()
    return sb


def test_reproduces_the_seed_table(h10):
    got = soak(h10, 25)
    rows = []
    ok = True
    for run, ((fps, temp), (want_fps, want_temp)) in enumerate(zip(got, SEED), start=1):
        fps_ok = abs(fps - 124.8) <= 0.3 if run <= 12 else abs(fps - want_fps) <= 2.0
        temp_ok = abs(temp - want_temp) <= 1.5
        ok = ok and fps_ok and temp_ok
        rows.append(
            f"run {run:2}: GOT fps={fps:6.2f} temp={temp:5.2f}  WANT fps={want_fps:6.2f} temp={want_temp:5.2f}"
            f"{'' if fps_ok and temp_ok else '  <-- off'}"
        )
    assert ok, "\n".join(rows)
    temps = [t for _, t in got]
    assert 73.0 <= max(temps) <= 74.5 and temps[15] >= 73.0  # plateau reached by run 16


def test_extended_use_settles_near_41_fps(h10):
    fps = [f for f, _ in soak(h10, 110, seconds=1)]
    assert 40.0 <= fps[-1] <= 44.0
    assert min(fps) >= 40.0
    assert all(later <= earlier + 0.5 for earlier, later in zip(fps[12:], fps[13:]))  # monotonic after onset


def test_degradation_follows_configures_not_inference_time(h10):
    fps, temp = bench(h10, seconds=600)  # one configure, ten minutes of inference
    assert abs(fps - 124.8) <= 0.3
    assert temp < 80
    more = soak(h10, 11)  # configures 2..12 are still inside the pool
    assert all(abs(f - 124.8) <= 0.3 for f, _ in more)
    assert bench(h10)[0] < 123.5  # configure 13: the first that falls back


def test_cooldown_driver_reload_and_rescan_do_not_recover(h10):
    soak(h10, 25)
    h10.idle(240)
    fps, temp = bench(h10)
    assert fps < 82 and temp < 70  # cooler, still degraded
    assert h10.modprobe(remove=True).rc == 0 and not h10.dev_node_exists()
    assert h10.modprobe().rc == 0 and h10.dev_node_exists()
    assert "SOC Firmware batch was already loaded" in h10.kernel_log()
    assert h10.kernel_log().rstrip().splitlines()[-2].endswith("Firmware loaded in 0 ms")
    assert bench(h10)[0] < 80
    assert h10.pcie("remove").rc == 0 and not h10.dev_node_exists()
    assert h10.pcie("rescan").rc == 0 and h10.dev_node_exists()
    assert bench(h10)[0] < 79


def test_reboot_recovers(h10):
    soak(h10, 20)
    h10.reboot()
    assert all(abs(f - 124.8) <= 0.3 for f, _ in soak(h10, 12))


def test_chip_reset_on_530_bricks_until_reboot(h10, fixtures_dir):
    soak(h10, 14)
    r = h10.hailortcli("fw-control", "reset", "--reset-type", "chip")
    assert r.rc == 0 and r.out.splitlines()[-1] == "Board has been reset successfully"
    expected = (fixtures_dir / "dmesg_h10_5.3.0_chip_reset_failure.txt").read_text().splitlines()
    log = [line.split("] ", 1)[1] for line in h10.kernel_log().splitlines()]
    start = log.index(expected[0])
    assert log[start : start + len(expected)] == expected
    assert not h10.dev_node_exists()
    assert h10.benchmark().rc == 64
    h10.modprobe(remove=True)
    h10.modprobe()
    assert not h10.dev_node_exists() and "Failed activating board -110" in h10.kernel_log().splitlines()[-2]
    h10.reboot()
    assert h10.dev_node_exists() and abs(bench(h10)[0] - 124.8) <= 0.3


@pytest.mark.parametrize("reset_type", ["soft", "nn_core"])
def test_soft_and_nn_core_resets_do_not_recover(h10, reset_type):
    soak(h10, 16)
    assert h10.hailortcli("fw-control", "reset", "--reset-type", reset_type).rc == 0
    assert bench(h10)[0] < 105


def test_chip_reset_recovers_on_a_firmware_that_boots(tmp_path):
    sb = Sandbox(tmp_path, unit={"cma_leak": 2.0}, version="5.2.0")  # 5.2.0 leaks 0.5 x 2 per configure
    sb.reboot()
    assert soak(sb, 16)[-1][0] < 110
    assert sb.hailortcli("fw-control", "reset", "--reset-type", "chip").rc == 0
    assert sb.dev_node_exists()
    assert abs(bench(sb)[0] - 124.8) <= 0.3


@pytest.mark.parametrize("unit,version", [({"cma_leak": 0}, "5.3.0"), ({}, "5.3.1"), ({}, "5.1.1")])
def test_units_or_firmware_without_the_leak_stay_at_full_speed(tmp_path, unit, version):
    sb = Sandbox(tmp_path, unit=unit, version=version)
    sb.reboot()
    assert all(abs(f - 124.8) <= 0.3 for f, _ in soak(sb, 25))
    assert sb.hailortcli("logs", "runtime", version=version).out.count("cma_alloc") == 0


def test_firmware_520_degrades_later_and_slower(tmp_path):
    sb = Sandbox(tmp_path, version="5.2.0")
    sb.reboot()
    fps = [f for f, _ in soak(sb, 30, seconds=2)]
    assert all(abs(f - 124.8) <= 0.3 for f in fps[:23])
    assert fps[23] < 124.6 and 105 < fps[-1] < 120  # onset at configure 24, half the seed's rate (5.3.0: 96.6)


def test_thermal_throttling_is_reversible_and_follows_temperature(tmp_path):
    sb = Sandbox(tmp_path, unit={"load_temp_rise_c": 40, "cma_leak": 0})  # a unit with poor cooling
    sb.reboot()
    hot = soak(sb, 25)
    assert hot[0][0] > 124 and hot[-1][1] > 85
    assert hot[-1][0] < 115  # throttled while hot
    sb.idle(900)
    fps, temp = bench(sb)
    assert abs(fps - 124.8) <= 0.5 and temp < 80  # back to full speed once cool


def test_temperature_falls_when_idle(h10):
    soak(h10, 10)
    hot = h10.chip.temperatures()[0]
    h10.idle(120)
    warm = h10.chip.temperatures()[0]
    h10.idle(1200)
    cold = h10.chip.temperatures()[0]
    assert hot > warm > cold and abs(cold - 59.9) < 0.5
