"""The inference commands of hailortcli: benchmark (5.x short / 4.x long format), run and run2."""

from __future__ import annotations

from . import status, tables
from .chip import reports_throttling
from .cli_output import CLI_ERROR, g6
from .runtime import family

PROGRESS_DONE = "100% | {frames} | {what} | ETA: 00:00:00"


def _measure(cli, model: dict, seconds: float, overhead: float = tables.OPEN_OVERHEAD_S, opened=None):
    """Open the device, configure the network once, stream for `seconds`; returns (network, stats)."""
    with cli.runtime.open_vdevice() as vdevice:
        if opened:
            opened()
        network = vdevice.configure(model)
        stats = network.run_for(seconds, overhead=overhead)
    report_throttling(cli)
    jitter = cli.runtime.chip.jitter("fps:%d" % network.configured["configures"], 0.12)
    stats.fps = max(0.0, stats.fps + jitter * stats.fps / tables.SEED_STABLE_FPS)
    return network, stats


def report_throttling(cli) -> None:
    """Log the throttling-state changes the chip notified while this process held it (HailoRT >= 5.2.0)."""
    chip = cli.runtime.chip
    notices = chip.take_notices()
    if reports_throttling(cli.version, chip.is_soc):
        for state in notices:
            cli.warn(tables.THROTTLING_NOTICE % (cli.chip_address(), state))


def benchmark(cli, args) -> int:
    """`hailortcli benchmark HEF`: the run2-based short Summary on 5.x, the three-mode report on 4.x."""
    model = cli.load_hef(args.hef)
    if family(cli.version) >= 5:
        return _benchmark_v5(cli, model, args.time_to_run)
    return _benchmark_v4(cli, model, args.time_to_run)


def _benchmark_v5(cli, model: dict, seconds: float) -> int:
    """HailoRT 5.x: one configure, `seconds` of streaming, FPS and temperature summary."""

    def unsupported():
        """What 5.x prints once the device is open: the module has no power or current sensor."""
        cli.warn("Measurement power is not supported")
        cli.warn("Measurement current is not supported")

    network, stats = _measure(cli, model, seconds, opened=unsupported)
    temps = stats.temps
    cli.say()
    cli.say("=======")
    cli.say("Summary")
    cli.say("=======")
    cli.say("%s: FPS: %.2f" % (network.name, stats.fps))
    cli.say("%s:" % cli.chip_address())
    cli.say("  temperature: mean=%.2f min=%.2f max=%.2f" % (sum(temps) / len(temps), min(temps), max(temps)))
    return 0


def _progress(cli, name: str, frames: int, what: str) -> None:
    """The final state of a 4.x progress bar."""
    cli.say("Network %s/%s: %s" % (name, name, PROGRESS_DONE.format(frames=frames, what=what)))


def _benchmark_v4(cli, model: dict, seconds: float) -> int:
    """HailoRT 4.x: hw-only, streaming and latency measurements, each a configure of its own."""
    name = model["network"]
    cli.say("Starting Measurements...")
    cli.say("Measuring FPS in HW-only mode")
    _, hw = _measure(cli, model, seconds)
    _progress(cli, name, hw.frames, "FPS: %.2f" % (hw.fps * 1.0006))
    cli.say("Measuring FPS (and Power on supported platforms) in streaming mode")
    _, streaming = _measure(cli, model, seconds, overhead=0.2)
    streaming.fps *= 0.9995
    _progress(cli, name, streaming.frames, "FPS: %.2f" % streaming.fps)
    cli.say("Measuring HW Latency")
    _measure(cli, model, seconds, overhead=0.2)
    if cli.runtime.chip.unit.get("benchmark_latency_timeout"):
        # the unit's profile makes the latency measurement time out: benchmark_command.cpp's
        # `TRY(auto latency_info, latency(), "Measuring Latency failed")` returns the status, which is
        # hailortcli's exit code; both FPS figures are on the progress bars above, no Summary follows
        cli.warn("[HailoRT] [error] CHECK_SUCCESS failed with status=HAILO_TIMEOUT(4)")
        cli.warn(CLI_ERROR + "CHECK_SUCCESS failed with status=HAILO_TIMEOUT(4) - Measuring Latency failed")
        return status.CODES["HAILO_TIMEOUT"]
    ratio = hw.fps / (model["fps"] * float(cli.runtime.chip.unit["perf_factor"]))
    latency = model["latency_ms"] / max(ratio, 0.05)
    latency_frames = int(seconds * 1000.0 / latency * 0.7)
    _progress(cli, name, latency_frames, "HW Latency: %.2f ms" % latency)
    cli.say()
    cli.say("=======")
    cli.say("Summary")
    cli.say("=======")
    cli.say("FPS     (hw_only)                 = %s" % g6(hw.fps))
    cli.say("        (streaming)               = %s" % g6(streaming.fps))
    cli.say("Latency (hw)                      = %s ms" % g6(latency))
    return 0


def run(cli, args) -> int:
    """`hailortcli run HEF`: refused on a Hailo-10H (use run2); the 4.x streaming report otherwise."""
    model = cli.load_hef(args.hef)
    if cli.runtime.chip.is_soc:
        cli.runtime.scan()
        cli.warn(
            CLI_ERROR + 'CHECK failed - The "run" command is not supported for this device type! ' 'Use "run2" instead.'
        )
        return status.CODES["HAILO_INVALID_OPERATION"]
    name = model["network"]
    cli.runtime.scan()
    cli.say("Running streaming inference (%s):" % args.hef)
    cli.say("  Transform data: true")
    cli.say("    Type:      auto")
    cli.say("    Quantized: true")
    _, stats = _measure(cli, model, args.time_to_run, overhead=0.5)
    _progress(cli, name, stats.frames, "FPS: %.2f" % stats.fps)
    cli.say("> Inference result:")
    cli.say(" Network group: %s" % name)
    cli.say("    Frames count: %d" % stats.frames)
    cli.say("    FPS: %.2f" % (stats.fps * 1.00005))
    cli.say("    Send Rate: %.2f Mbit/s" % (stats.fps * model["input_bytes"] * 8 / 1e6))
    cli.say("    Recv Rate: %.2f Mbit/s" % (stats.fps * model["output_bytes"] * 8 / 1e6))
    if args.measure_temp:
        temps = stats.temps
        cli.say()
        cli.say("  Device: %s" % cli.chip_address())
        cli.say("    Minimum chip temperature: %sC" % g6(min(temps)))
        cli.say("    Average chip temperature: %sC" % g6(sum(temps) / len(temps)))
        cli.say("    Maximum chip temperature: %sC" % g6(max(temps)))
    return 0


def run2(cli, args) -> int:
    """`hailortcli run2 [-t N] set-net HEF`: one configure, the live bar's final state, fps per network."""
    model = cli.load_hef(args.hef)
    network, stats = _measure(cli, model, args.time_to_run, overhead=0.5)
    cli.say("[===================>] 100% 00:00:00")
    cli.say("%s: fps: %.2f" % (network.name, stats.fps))
    return 0
