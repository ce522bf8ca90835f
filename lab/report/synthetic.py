"""A synthetic campaign with a planted truth, as pure data (`lab.db.planted` stores it; tests, demos, scale checks).

Unit i of `units` is a Hailo-8 control when i % 4 == 3, else a Hailo-10H on firmware 5.3.0 that is
susceptible when i % 4 is 0 or 1: susceptible units follow the seed report's 25 runs (then a tail to
41 fps), the others hold their fps with a little fixed noise. Runs listed in `infra_errors` ((unit, repeat)
pairs) failed at the reboot before the soak and have no samples.

Units are keyed as the chip reports itself (HailoRT 4.22+ and 5.x print no serial: the SoC ID of
`identify --extended`); from repeat `swap_from` on, the HATs of units 0 and 1 trade Pis (node1 and node2).
Every benchmark run reads the field report's telemetry: the PCIe link (x1 of x4 on a Pi 5; 8.0 GT/s where the
Pi enables Gen 3, node3 runs the default 5.0), D0, ASPM, host CMA, the Pi's SoC temperature and clock and
get_throttled (node3's supply sags: under-voltage at runs 5-6), and on 5.x the chip's runtime log: a
susceptible unit's CMA `alloc failed` lines begin at benchmark run 9, four runs before its fps falls (13).
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta

SEED_FPS = (124.78, 124.76, 124.90, 124.81, 124.89, 124.81, 124.80, 124.89, 124.99, 124.81, 124.89, 124.87,
            122.80, 121.38, 118.53, 108.49, 101.51, 98.34, 96.64, 94.04, 91.14, 88.55, 85.65, 83.99, 81.60)
SEED_TEMP = (60.70, 62.82, 64.36, 65.70, 66.90, 67.96, 68.94, 69.83, 70.69, 71.29, 71.96, 72.60, 73.13, 73.61,
             73.96, 73.99, 73.88, 73.82, 73.87, 73.90, 73.82, 73.68, 73.58, 73.53, 73.43)
NOISE = (0.03, -0.05, 0.08, -0.02, 0.0, 0.06, -0.07, 0.01, -0.04, 0.05, -0.01, 0.02, -0.06)
T0 = datetime(2026, 4, 30, 5, 8, 1, tzinfo=UTC)
SCENARIO = """name: cma_soak
matrix:
  stacks: [h10-5.3.0, h8-4.23.0]
  repeats: 2
phases:
  - name: install
    steps: [provision]
  - name: soak
    reboot: true
    steps:
      - identify
      - benchmark: {hef: {hailo10h: yolo26s_hailo10h.hef, hailo8: yolov8s_h8.hef}, runs: 25, time_to_run: 15}
      - collect: [runtime_log]
"""
CMA_LINE = "hailo10 kern.err kernel: cma: cma_alloc: linux,cma: alloc failed, req-size: 256 pages, ret: -16\n"


def fps_at(k: int, hailo8: bool, susceptible: bool) -> float:
    """Benchmark k (1-based) of a unit: the seed's curve, or a flat line with fixed noise."""
    if hailo8:
        return round(309.4 + 2 * NOISE[k % len(NOISE)], 2)
    if not susceptible:
        return round(124.85 + NOISE[k % len(NOISE)], 2)
    if k <= len(SEED_FPS):
        return SEED_FPS[k - 1]
    return round(41 + (SEED_FPS[-1] - 41) * math.exp(-(k - len(SEED_FPS)) / 17.5), 2)


def temp_at(k: int) -> float:
    """Chip temperature of benchmark k: the seed's column, then its plateau."""
    return SEED_TEMP[k - 1] if k <= len(SEED_TEMP) else SEED_TEMP[-1]


CMA_FROM = 9  # a susceptible unit's first benchmark run with CMA alloc failures in the chip's runtime log
HOST_MODEL = "Raspberry Pi 5 Model B Rev 1.0"
PCI_IDS = {"hailo8": "2864", "hailo10h": "45c4"}  # device ids under Hailo's vendor id 1e60


def soc_id(i: int) -> str:
    """Unit i's SoC ID as `identify --extended` prints it: 32 bytes in upper-case hex."""
    return hashlib.sha256(f"planted unit {i}".encode()).hexdigest().upper()


def host_serial(node: str) -> str:
    """The Pi's own serial (/proc/cpuinfo `Serial`) of a node."""
    return "10000000" + hashlib.sha256(node.encode()).hexdigest()[:8]


def cma_errors_at(k: int, susceptible: bool) -> int:
    """New CMA alloc failures in the chip's runtime log after benchmark k: from CMA_FROM on a susceptible unit."""
    return 1 + (k - CMA_FROM) // 3 if susceptible and k >= CMA_FROM else 0


def telemetry_at(k: int, node: str, hailo8: bool, susceptible: bool) -> dict:
    """The sample columns read with benchmark k on `node` (cma_errors only on 5.x, which has a runtime log)."""
    gen3 = node != "node3"  # node3's config.txt leaves the external PCIe at the default Gen 2
    noise = NOISE[k % len(NOISE)]
    return {"pcie_speed": 8.0 if gen3 else 5.0, "pcie_width": 1, "pcie_max_speed": 8.0, "pcie_max_width": 4,
            "power_state": "D0", "aspm": "disabled" if hailo8 else "L1", "cma_total_kb": 65536,
            "cma_free_kb": 52000 - 40 * min(k, 12) + int(1000 * noise), "soc_temp": round(min(48.5 + 0.4 * k, 58.0)
                                                                                         + noise, 1),
            "arm_clock_mhz": 2400.0, "cma_errors": None if hailo8 else cma_errors_at(k, susceptible)}


def preflight_for(node: str, chip: str, index: int) -> dict:
    """What a pre-flight found on `node` before the soak: ready after boot, the device by PCI id, free, chip checked."""
    return {"ready": True, "ready_s": round(18.5 + 1.5 * index, 1),
            "device": {"bdf": "0001:01:00.0", "vendor": "1e60", "device": PCI_IDS[chip]}, "holder": None,
            "chip": {"expected": chip, "found": chip, "ok": True}}


def soak_records(run_index: int, run_key: str, boot: str | None, node: str, hailo8: bool, susceptible: bool,
                 benches: int) -> list[dict]:
    """The soak phase's records of run `run_index` on `node`, as the agent writes them."""
    version = "4.23.0" if hailo8 else "5.3.0"
    t = T0 + timedelta(minutes=run_index)
    base = {"boot_id": boot, "phase_index": 1, "run_key": run_key}
    records = [{**base, "seq": 1, "ts": t, "kind": "phase_start", "nominal_s": 0.0, "steps": 3},
               {**base, "seq": 2, "ts": t, "kind": "identity", "step": "identify", "step_index": 0, "nominal_s": 0.0,
                "hailort_version": version, "driver_version": version,
                "identity": {"architecture": "HAILO8" if hailo8 else "HAILO10H", "firmware_version": version}}]
    for k in range(1, benches + 1):
        record = {**base, "seq": k + 2, "ts": t + timedelta(seconds=15 * k), "kind": "sample", "step": "benchmark",
                  "step_index": 1, "run": k, "runs": benches, "fps": fps_at(k, hailo8, susceptible),
                  "nominal_s": 15.0 * k, "throttled": throttled_at(k, node)}
        if not hailo8:  # HailoRT 4.x on Hailo-8 prints no temperature
            record["temp_mean"] = temp_at(k)
        records.append(record)
    records.append({**base, "seq": benches + 3, "ts": t + timedelta(seconds=15 * benches + 1), "kind": "phase_end",
                    "nominal_s": 15.0 * benches, "status": "ok"})
    return records


def soak_telemetry(node: str, hailo8: bool, susceptible: bool, benches: int) -> list[dict]:
    """The telemetry columns of each benchmark record, keyed by its seq under `at` (seq k + 2 is benchmark k)."""
    return [{"at": k + 2, **telemetry_at(k, node, hailo8, susceptible)} for k in range(1, benches + 1)]


def recorded_verdict(hailo8: bool, susceptible: bool, benches: int) -> str:
    """The verdict `lab run` records for a soak: degraded when the last fps is 3 % under the first."""
    series = [fps_at(k, hailo8, susceptible) for k in range(1, benches + 1)]
    return "degraded" if series[-1] < 0.97 * series[0] else "stable"


def soak_artifacts(hailo8: bool, susceptible: bool, benches: int) -> dict[str, bytes]:
    """The soak's collected files by name: the chip's runtime log (empty on 4.x) and the identify output."""
    version = "4.23.0" if hailo8 else "5.3.0"
    log = CMA_LINE * sum(cma_errors_at(k, susceptible) for k in range(1, benches + 1)) if not hailo8 else ""
    return {"soak-collect-2-runtime_log.txt": log.encode(),
            "soak-identify-0.txt": f"$ hailortcli --version\nHailoRT-CLI version {version}\n".encode()}


TELEMETRY_COLUMNS = ("pcie_speed", "pcie_width", "pcie_max_speed", "pcie_max_width", "power_state", "aspm",
                     "cma_free_kb", "cma_total_kb", "soc_temp", "arm_clock_mhz", "cma_errors")


def throttled_at(k: int, node: str) -> str:
    """The Pi's get_throttled at benchmark k: node3's supply sags at runs 5-6, sticky bits stay set after."""
    if node != "node3" or k < 5:
        return "0x0"
    return "0x50005" if k <= 6 else "0x50000"


RECOVERY_PHASES = ("cooldown", "driver_reload", "pcie_rescan", "chip_reset")


RECOVERY_NAMES = ("degrade",) + RECOVERY_PHASES + ("reboot",)


def recovery_phases(i: int) -> list[dict]:
    """Unit i's phases in the recovery matrix: index, name, boot id, status and error (the chip reset fails)."""
    return [{"index": n, "name": p, "boot_id": f"r{i}-{'2' if p == 'reboot' else '1'}",
             "status": "device_error" if p == "chip_reset" else "ok",
             "error": "benchmark run 1 failed: HAILO_TIMEOUT(4)" if p == "chip_reset" else None}
            for n, p in enumerate(RECOVERY_NAMES)]


def recovery_records(i: int, run_key: str) -> list[dict]:
    """Unit i's records in the recovery matrix (even units susceptible): degrade, each action, then a reboot.

    After 30 benchmarks, cooldown, driver reload and PCIe rescan leave a degraded unit where it was, the chip
    reset leaves every unit on firmware 5.3.0 without a device (its benchmark fails), the reboot restores.
    """
    susceptible = i % 2 == 0
    phases = recovery_phases(i)
    seq, t = 0, T0
    records = []

    def rec(phase: dict, kind: str, **fields) -> None:
        """Append one agent record of this run, 15 s after the previous one."""
        nonlocal seq, t
        seq, t = seq + 1, t + timedelta(seconds=15)
        records.append({"seq": seq, "ts": t, "kind": kind, "boot_id": phase["boot_id"], "phase_index": phase["index"],
                        "run_key": run_key, **fields})

    degraded = fps_at(30, False, susceptible)
    for k in range(1, 31):
        rec(phases[0], "sample", step="benchmark", run=k, fps=fps_at(k, False, susceptible), temp_mean=temp_at(k))
    for phase in phases[1:5]:
        rec(phase, "event", step=phase["name"], step_index=0)
        if phase["name"] == "chip_reset":
            rec(phase, "sample", step="benchmark", run=1, error="HAILO_TIMEOUT(4)")
            rec(phase, "event", step="benchmark", skipped=True, error="skipped after device failure")
        else:
            for k in (1, 2):
                rec(phase, "sample", step="benchmark", run=k, fps=round(degraded - 0.1 * k, 2))
    for k in (1, 2, 3):
        rec(phases[5], "sample", step="benchmark", run=k, fps=fps_at(k, False, False), temp_mean=temp_at(k))
    return [{**r, "phase": RECOVERY_NAMES[r["phase_index"]]} for r in records]
