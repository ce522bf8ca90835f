"""hailortcli as the emulator ships it: the real commands' arguments and their verbatim output."""

from __future__ import annotations

import argparse
import os
import sys

from . import bench, hef, status
from .cli_output import CLI_ERROR
from .runtime import Runtime, family


class UsageError(Exception):
    """A command line that CLI11 would reject (exit 105 for a bad value, 109 for extras)."""

    def __init__(self, message: str, code: int = 109):
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """argparse that reports errors the way CLI11 does instead of exiting."""

    def error(self, message):
        """Raise instead of printing argparse's usage and exiting."""
        if "invalid choice: '" in message and message.startswith(("argument command", "argument action")):
            word = message.split("invalid choice: '", 1)[1].split("'", 1)[0]
            raise UsageError("The following argument was not expected: %s" % word)
        if message.startswith("the following arguments are required: "):
            raise UsageError("%s is required" % message.split(": ", 1)[1].split(",")[0], 106)
        raise UsageError(message, 105 if "invalid" in message else 109)


def build_parser(library_version: str) -> Parser:
    """The command line of hailortcli for one library version."""
    p = Parser(prog="hailortcli", add_help=True, description="HailoRT CLI")
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    sub.add_parser("scan")
    fw = sub.add_parser("fw-control").add_subparsers(dest="action", parser_class=Parser)
    ident = fw.add_parser("identify")
    ident.add_argument("--extended", action="store_true")
    reset = fw.add_parser("reset")
    reset.add_argument("--reset-type", required=True, choices=("chip", "nn_core", "soft", "forced_soft"))
    bench = sub.add_parser("benchmark")
    bench.add_argument("hef")
    bench.add_argument("-t", "--time-to-run", type=float, default=15.0)
    bench.add_argument("--batch-size", type=int, default=1)
    bench.add_argument("--power-mode", choices=("performance", "ultra_performance"), default="performance")
    bench.add_argument("--csv")
    run = sub.add_parser("run")
    run.add_argument("hef")
    run.add_argument("-t", "--time-to-run", type=float, default=5.0)
    run.add_argument("--batch-size", type=int, default=1)
    run.add_argument("--measure-temp", action="store_true")
    run.add_argument("--measure-latency", action="store_true")
    run2 = sub.add_parser("run2")
    run2.add_argument("-t", "--time-to-run", type=float, default=5.0)
    run2.add_argument("-m", "--mode", default="full_async")
    net = run2.add_subparsers(dest="net", parser_class=Parser).add_parser("set-net")
    net.add_argument("hef")
    net.add_argument("--batch-size", type=int, default=0)
    net.add_argument("--framerate", type=float, default=0)
    if family(library_version) >= 5:
        logs = sub.add_parser("logs")
        logs.add_argument("log_type", nargs="?", default="runtime", choices=("runtime", "system_control", "nnc"))
        logs.add_argument("-f", "--follow", action="store_true")
    for sp in (ident, reset, bench, run):
        sp.add_argument("-s", "--device-id", action="append")
        sp.add_argument("--bdf", action="append")
    return p


class Cli:
    """One invocation: parsed arguments, the runtime, and where to print."""

    def __init__(self, library_version: str, chip=None, out=None, err=None):
        self.version = library_version
        self.chip = chip
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._runtime = None

    @property
    def runtime(self) -> Runtime:
        """The emulated libhailort (created on first use, so --version needs no hardware)."""
        if self._runtime is None:
            self._runtime = Runtime(self.version, self.chip)
        return self._runtime

    def say(self, text: str = "") -> None:
        """Print a line on stdout."""
        self.out.write(text + "\n")

    def warn(self, text: str) -> None:
        """Print a line on stderr."""
        self.err.write(text + "\n")
        self.err.flush()

    def load_hef(self, path: str) -> dict:
        """The HEF argument, checked like CLI11's ExistingFile validator."""
        if not os.path.isfile(path):
            raise UsageError("hef: File does not exist: %s" % path, 105)
        return hef.load(path)

    def run(self, argv) -> int:
        """Parse and execute; returns the exit status (the hailo_status value on failure)."""
        try:
            args = build_parser(self.version).parse_args(argv)
        except UsageError as exc:
            self.warn(str(exc))
            self.warn("Run with --help for more information.")
            return exc.code
        if args.version:
            self.say("HailoRT-CLI version %s" % self.version)
            return 0
        if not args.command or (args.command == "fw-control" and not args.action):
            self.warn("A subcommand is required")
            self.warn("Run with --help for more information.")
            return 106
        try:
            return self.dispatch(args)
        except UsageError as exc:
            self.warn(str(exc))
            self.warn("Run with --help for more information.")
            return exc.code
        except status.HailoError as exc:
            for line in exc.lines:
                self.warn(line)
            self.warn(exc.cli_line())
            return exc.code
        except (ValueError, OSError) as exc:  # the emulated hardware description itself is unusable
            self.warn(CLI_ERROR + "emulated device unusable: %s" % exc)
            return status.CODES["HAILO_INTERNAL_FAILURE"]

    def dispatch(self, args) -> int:
        """Run the parsed command."""
        if args.command == "scan":
            ids = self.runtime.scan()
            self.say("Hailo Devices:")
            for device_id in ids:
                self.say("[-] Device: %s" % device_id)
            return 0
        if args.command == "fw-control" and args.action == "identify":
            return self.identify(args.extended)
        if args.command == "fw-control" and args.action == "reset":
            self.runtime.scan()
            self.say("Executing on device: %s" % self.chip_address())
            self.runtime.reset(args.reset_type)
            self.say("Board has been reset successfully")
            return 0
        if args.command == "logs":
            self.out.write(self.runtime.runtime_log())
            return 0
        if args.command == "benchmark":
            return bench.benchmark(self, args)
        if args.command == "run":
            return bench.run(self, args)
        if args.command == "run2":
            if not getattr(args, "net", None):
                self.warn(CLI_ERROR + "CHECK failed - Nothing to run")
                return status.CODES["HAILO_INVALID_OPERATION"]
            return bench.run2(self, args)
        raise UsageError("The following argument was not expected: %s" % args.command)

    def chip_address(self) -> str:
        """The PCIe address of the unit."""
        return self.runtime.chip.unit["pci_address"]

    def identify(self, extended: bool) -> int:
        """`fw-control identify [--extended]` as hailortcli's fw_control_command.cpp prints it per version.

        4.19-4.21 print `<N/A>` for an empty serial, part or product name; 4.22 and later print no such
        line (and 5.x no empty Board Name). See docs/emulator.md for the per-version table.
        """
        ident = self.runtime.identity()
        v = version_tuple(self.version)
        lines = ["Executing on device: %s" % ident["device_id"], "Identifying board",
                 "Control Protocol Version: %d" % ident["protocol_version"]]
        extra = ",extended context switch buffer" if ident["extended_context_switch_buffer"] else ""
        lines.append("Firmware Version: %s (release,app%s)" % (ident["firmware_version"], extra))
        lines.append("Logger Version: %d" % ident["logger_version"])
        if ident["board_name"] or v < (5,):
            lines.append("Board Name: %s" % ident["board_name"])
        lines.append("Device Architecture: %s" % ident["arch"])
        for key, name in (("serial", "Serial Number"), ("part_number", "Part Number"), ("product_name", "Product Name")):
            if ident[key]:
                lines.append("%s: %s" % (name, ident[key]))
            elif v < (4, 22):
                lines.append("%s: <N/A>" % name)
        text = "\n".join(lines) + "\n"
        if extended:
            text += extended_lines(ident, v)
        self.out.write(text + "\n")
        return 0


def version_tuple(version: str) -> tuple:
    """(major, minor, patch) of a HailoRT version string."""
    return tuple(int(p) for p in version.split(".")[:3] if p.isdigit())


def extended_lines(ident: dict, v: tuple) -> str:
    """What `identify --extended` adds, per version (fw_control_command.cpp, print_extended_device_information).

    LCS 0 is "not configured": 4.20 prints `LCS: 0`, 4.21 `LCS: <N/A>`, 4.22+ nothing; 4.22 and 4.23
    print a set LCS without its newline (`LCS: 3SoC ID: ...`), as their valid_attr_str does. SoC ID and
    ULT ID are printed only when not all zero; the board SKU line is the Hailo-10H's (5.1 and later).
    """
    out = "Boot source: %s\n" % ident["boot_source"]
    out += "Neural Network Core Clock Rate: %dMHz\n" % ident["nn_clock_mhz"]
    out += "Device supported features: PCIE\n"
    lcs = int(ident["lcs"])
    if v < (4, 21):
        out += "LCS: %d\n" % lcs
    elif v < (4, 22):
        out += "LCS: %s\n" % (lcs if lcs else "<N/A>")
    elif lcs:
        out += "LCS: %d" % lcs + ("" if v < (5,) else "\n")
    if ident["soc_id"]:
        out += "SoC ID: %s\n" % ident["soc_id"].upper()
    if ident["ult_id"]:
        out += "ULT ID: %s\n" % ident["ult_id"].upper()
    if ident["arch"] == "HAILO10H" and v >= (5, 1):
        label = "SKU-ID" if v < (5, 1, 1) else "board SKU-ID" if v < (5, 2) else "Board SKU-ID"
        out += "%s: %d\n" % (label, int(ident["board_sku"]))
    return out


def main(argv=None, library_version: str = "5.3.0", chip=None, out=None, err=None) -> int:
    """Entry point of the emulated hailortcli."""
    argv = sys.argv[1:] if argv is None else argv
    return Cli(library_version, chip, out, err).run(argv)
