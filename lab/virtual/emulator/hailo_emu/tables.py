"""Data of the emulated devices: chips, unit defaults, the firmware leak table, calibration and models."""

# Runs on the virtual node: standard library only, Python >= 3.9, relative imports only
# (the package is copied under other names into the .deb packages).

CHIPS = {
    "hailo10h": {
        "arch": "HAILO10H",
        "pci_device": "45c4",
        "module": "hailo1x_pci",
        "driver": "hailo1x",
        "family": 5,  # HailoRT major version line that drives this chip
        "firmware_files": (
            "hailo/hailo10h/customer_certificate.bin",
            "hailo/hailo10h/scu_fw.bin",
            "hailo/hailo10h/u-boot-{sku}.dtb.signed",
            "hailo/hailo10h/u-boot-spl.bin",
            "hailo/hailo10h/u-boot-tfa.itb",
            "hailo/hailo10h/fitImage",
            "hailo/hailo10h/image-fs",
        ),
        "firmware_version_file": "hailo/hailo10h/scu_fw.bin",
    },
    "hailo8": {
        "arch": "HAILO8",
        "pci_device": "2864",
        "module": "hailo_pci",
        "driver": "hailo",
        "family": 4,
        "firmware_files": ("hailo/hailo8_fw.bin", "hailo/hailo8_board_cfg.bin", "hailo/hailo8_fw_cfg.bin"),
        "firmware_version_file": "hailo/hailo8_fw.bin",
    },
    "hailo8l": {
        "arch": "HAILO8L",
        "pci_device": "2864",
        "module": "hailo_pci",
        "driver": "hailo",
        "family": 4,
        "firmware_files": ("hailo/hailo8_fw.bin", "hailo/hailo8_board_cfg.bin", "hailo/hailo8_fw_cfg.bin"),
        "firmware_version_file": "hailo/hailo8_fw.bin",
    },
}

PCI_VENDOR = "1e60"

# Every unit field with its default per chip; None means "derived from the HAT's name" (see hw.py).
# Boards as Raspberry Pi sells them (AI HAT+ / AI HAT+ 2): no serial, part or product name programmed
# ("AI HAT+ devices may show <N/A> for Serial Number, Part Number and Product Name", Raspberry Pi's AI
# getting-started page), so 4.19-4.21 print `<N/A>` and 4.22+ / 5.x print no such line; an M.2 module
# (the AI Kit's) is a profile that sets serial, part_number and product_name.
# The Hailo-10H defaults are the seed's unit: susceptible to the chip-side CMA leak, thermally
# calibrated so 25 back-to-back 15 s benchmarks reproduce the seed's temperature column.
UNIT_DEFAULTS = {
    "hailo10h": {
        "serial": "",
        "soc_id": None,
        "ult_id": None,
        "board_sku": 6,
        "lcs": 5,
        "pci_address": "0001:01:00.0",
        "part_number": "",
        "product_name": "",
        "cma_leak": 1.0,
        "cma_pool_chunks": 12,
        "perf_factor": 1.0,
        "idle_temp_c": 59.75,
        "load_temp_rise_c": 18.0,
        "thermal_tau_s": 130.0,
        "throttle_temp_c": 85.0,
        "throttle_per_c": 0.02,
        "throttle_floor": 0.5,
    },
    "hailo8": {
        "serial": "",
        "soc_id": None,
        "ult_id": None,
        "board_sku": 0,
        "lcs": 3,
        "pci_address": "0001:01:00.0",
        "part_number": "",
        "product_name": "",
        "cma_leak": 0.0,
        "cma_pool_chunks": 12,
        "perf_factor": 1.0,
        "idle_temp_c": 45.0,
        "load_temp_rise_c": 14.0,
        "thermal_tau_s": 110.0,
        "throttle_temp_c": 104.0,
        "throttle_per_c": 0.0125,
        "throttle_floor": 0.5,
    },
    "hailo8l": {
        "serial": "",
        "soc_id": None,
        "ult_id": None,
        "board_sku": 0,
        "lcs": 3,
        "pci_address": "0001:01:00.0",
        "part_number": "",
        "product_name": "",
        "cma_leak": 0.0,
        "cma_pool_chunks": 12,
        "perf_factor": 1.0,
        "idle_temp_c": 42.0,
        "load_temp_rise_c": 10.0,
        "thermal_tau_s": 110.0,
        "throttle_temp_c": 104.0,
        "throttle_per_c": 0.0125,
        "throttle_floor": 0.5,
    },
}

# What the host sees of a unit (the kernel side, lab/virtual/emulator/hailo_emu/kernel.py). A Pi 5's
# external slot is one lane at Gen 2 (5 GT/s) by default, Gen 3 with dtparam=pciex1_gen=3; the Hailo
# modules are x4 Gen 3 devices, so a healthy unit shows 5.0 GT/s x1 of 8.0 GT/s x4 (the field report's
# unit: x1 of x4). `pcie_speed_gts`/`pcie_width` below these give a unit a degraded link.
# `device_holder`: a systemd service that opens /dev/hailo0 at boot and keeps it open (hailort.service,
# hailo-ollama.service, the field report's tetherbox), None for none.
for _defaults in UNIT_DEFAULTS.values():
    _defaults.update({"pcie_speed_gts": 5.0, "pcie_width": 1, "pcie_max_speed_gts": 8.0, "pcie_max_width": 4,
                      "device_holder": None, "warm_reboot_keeps_power": False})
HOST_CMA_TOTAL_KB = 65536  # Raspberry Pi OS's default CMA on a Pi 5 (CmaTotal: 65536 kB)
HOST_CMA_BASE_USED_KB = 6144  # what the rest of the host (display, codecs) keeps allocated
HOST_CMA_DRIVER_KB = 4096  # descriptor lists the bound Hailo driver keeps in host CMA
SOC_IDLE_TEMP_C = 48.0  # the Pi's SoC (vcgencmd measure_temp) at idle in a case with a fan
SOC_SOFT_LIMIT_C = 80.0  # firmware soft temperature limit: the ARM clock is capped above it
ARM_CLOCK_HZ = 2400000000
ARM_CAPPED_HZ = 1500000000

# THE leak table: which firmware leaks chip-side CMA chunks per configure, and what a chip reset does.
#   leak        chunks of the chip's contiguous pool lost per configure (times the unit's cma_leak)
#   chip_reset  "recovers": the chip-side OS reboots with a fresh pool; "bricks": firmware re-upload
#               times out and the device is gone until the host reboots (a power cycle).
FIRMWARE = {
    "5.1.1": {"leak": 0.0, "chip_reset": "recovers"},
    "5.2.0": {"leak": 0.5, "chip_reset": "recovers"},
    "5.3.0": {"leak": 1.0, "chip_reset": "bricks"},
    "5.3.1": {"leak": 0.0, "chip_reset": "recovers"},
    "4.20.0": {"leak": 0.0, "chip_reset": "recovers"},
    "4.23.0": {"leak": 0.0, "chip_reset": "recovers"},
}
UNKNOWN_FIRMWARE = {"leak": 0.0, "chip_reset": "recovers"}

# Throughput left after n configures fell back to non-contiguous buffers (n = "fallback", the sum of
# leak * cma_leak over failed configures). Knots 0..13 are the seed's runs 12..25 divided by its
# stable 124.85 fps; beyond the last knot an exponential tail settles on the seed's 41 fps floor.
SEED_STABLE_FPS = 124.85
# fmt: off
LEAK_CURVE = (
    1.0,                                              # fallback 0 (seed runs 1-12)
    0.98358, 0.97221, 0.94938, 0.86896, 0.81306,      # fallback 1-5 (seed runs 13-17)
    0.78767, 0.77405, 0.75322, 0.73000, 0.70925,      # fallback 6-10 (seed runs 18-22)
    0.68602, 0.67273, 0.65358,                        # fallback 11-13 (seed runs 23-25)
)
# fmt: on
LEAK_FLOOR = 41.0 / SEED_STABLE_FPS
LEAK_TAIL_CONFIGURES = 17.5

# Throttling-state notifications. HailoRT 5.2.0 added a throttling-state change notification of the
# Hailo-10H's system controller (hailo_hw_throttling_state_t in hailort.h: NONE, 0_LIGHT, 1_MEDIUM, 2_HEAVY,
# 3_SEVERE, 4_STREAMS_OFF, OVERHEAT); libhailort's default callback (device.cpp) logs each change as
# `[HailoRT] [warning] Device <id> throttling state is now: THROTTLING_<STATE>` in the process that holds the
# device. A change while no process holds it reaches nobody. Which throttle factor gives which state is
# this model's choice, not Hailo's thresholds: (lowest throttle factor of the state, state), mildest first.
THROTTLING_REPORTED_SINCE = (5, 2, 0)  # library versions from this one on log the changes (Hailo-10H only)
THROTTLING_STATES = (
    (1.0, "THROTTLING_NONE"),
    (0.9, "THROTTLING_LIGHT"),
    (0.75, "THROTTLING_MEDIUM"),
    (0.6, "THROTTLING_HEAVY"),
    (0.0, "THROTTLING_SEVERE"),
)
THROTTLING_NOTICE = "[HailoRT] [warning] Device %s throttling state is now: %s"

# Share of the chip's load power that does not scale with throughput (fitted on the seed's temperatures).
FIXED_POWER_SHARE = 0.25

# Nominal seconds a tool spends opening the device and configuring before inference starts.
OPEN_OVERHEAD_S = 1.0
CONFIGURE_MS = 45.79

# Real seconds of a gap between two device operations that count 1:1 before time scaling applies
# (process start-up does not run faster at a small time scale; see docs/emulator.md).
IDLE_GRACE_S = 0.25
# Real seconds at most of a process's own start-up (interpreter, imports) that count 1:1 when its first
# device operation follows another process's: a busy host must not turn a slow start-up into idle time.
STARTUP_MAX_S = 2.0

# The chip-side OS of the Hailo-10H (verbatim from the seed's runtime log).
CHIP_OS_VERSION = (
    "Linux 5.15.325.15.32-yocto-standard-01685-g4cd9cfd0e6e7 #1 SMP PREEMPT Wed Feb 18 10:02:32 UTC 2026 aarch64"
)

# Emulated HEF files shipped by the hailo-models package: file -> network, arch and nominal figures.
MODELS = {
    "yolo26s_hailo10h.hef": {
        "network": "yolo26s",
        "arch": "HAILO10H",
        "fps": 124.85,
        "latency_ms": 13.9,
        "input_bytes": 640 * 640 * 3,
        "output_bytes": 160320,
    },
    "resnet_v1_50_h10.hef": {
        "network": "resnet_v1_50",
        "arch": "HAILO10H",
        "fps": 307.47,
        "latency_ms": 5.2,
        "input_bytes": 224 * 224 * 3,
        "output_bytes": 1000,
    },
    "yolov8s_h8.hef": {
        "network": "yolov8s",
        "arch": "HAILO8",
        "fps": 309.58,
        "latency_ms": 6.66,
        "input_bytes": 640 * 640 * 3,
        "output_bytes": 160320,
    },
    "yolov8s_h8l.hef": {
        "network": "yolov8s",
        "arch": "HAILO8L",
        "fps": 121.37,
        "latency_ms": 14.71,
        "input_bytes": 640 * 640 * 3,
        "output_bytes": 160320,
    },
}
MODELS_DIR = "/usr/share/hailo-models"

# Which HEF architectures run on which device architecture.
HEF_COMPATIBLE = {
    "HAILO10H": ("HAILO10H",),
    "HAILO8": ("HAILO8", "HAILO8L"),
    "HAILO8L": ("HAILO8L",),
}
