"""Helpers of the emulator's fleet tests: the seed's table, benchmark loops run on a node, log slicing."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.agent.parsers import BenchmarkResult, parse_benchmark
from lab.virtual.fleet import Fleet
from tests.conftest import FIXTURES, ssh_cmd

# Seed 000: 25 back-to-back 15 s benchmarks from a fresh boot, firmware 5.3.0 (fps, mean temperature).
SEED = [
    (124.78, 60.70), (124.76, 62.82), (124.90, 64.36), (124.81, 65.70), (124.89, 66.90),
    (124.81, 67.96), (124.80, 68.94), (124.89, 69.83), (124.99, 70.69), (124.81, 71.29),
    (124.89, 71.96), (124.87, 72.60), (122.80, 73.13), (121.38, 73.61), (118.53, 73.96),
    (108.49, 73.99), (101.51, 73.88), (98.34, 73.82), (96.64, 73.87), (94.04, 73.90),
    (91.14, 73.82), (88.55, 73.68), (85.65, 73.58), (83.99, 73.53), (81.60, 73.43),
]
HEF = "yolo26s_hailo10h.hef"
# The field report's model is in no package: the tests put it on each node here (as a campaign would
# from the controller, under /var/lib/lab-agent/models/<sha256>/).
MODELS_DIR = "/var/lib/lab-test-models"
RUN_SECONDS = 15

# Waits for the end of the node's boot (the coldplug unit loads the driver), as "wait for boot" in the seed.
WAIT_BOOT = "timeout 60 systemctl is-system-running --wait >/dev/null 2>&1; "
_RUN_MARK = re.compile(r"^=== run (\d+)$", re.MULTILINE)
_WALL = re.compile(r"^=== wall (\S+) (\S+)$", re.MULTILINE)
_KERNEL_LINE = re.compile(r" kernel(?:\[\d+\])?: (.*)$")


@dataclass
class Loop:
    """The outcome of one benchmark loop on a node: parsed runs, their raw text and the loop's wall time."""

    runs: list[BenchmarkResult]
    texts: list[str]
    wall_s: float


def node_vars(inventory: Path, node: str) -> dict:
    """A host's variables as `lab fleet up` wrote them into the inventory."""
    return yaml.safe_load(inventory.read_text())["virtual"]["hosts"][node]


def put_model(fleet: Fleet, address: str) -> None:
    """Copy the field report's (emulated) model to MODELS_DIR on a node."""
    import subprocess

    from lab.virtual.emulator.packages import model_bytes
    from tests.conftest import ssh_argv

    subprocess.run(ssh_argv(fleet, address, f"mkdir -p {MODELS_DIR} && cat > {MODELS_DIR}/{HEF}", timeout=30),
                   input=model_bytes(HEF), check=True, timeout=60)


def put_file(fleet: Fleet, address: str, local: Path, remote: str) -> None:
    """Copy one file from the controller to a node (as root, over the fleet's SSH)."""
    import subprocess

    from tests.conftest import ssh_argv

    subprocess.run(ssh_argv(fleet, address, f"cat > {shlex.quote(remote)}", timeout=30), input=local.read_bytes(),
                   check=True, timeout=60)


def sh(fleet: Fleet, address: str, script: str, timeout: int = 60):
    """Run a shell script on a node in one SSH session."""
    return ssh_cmd(fleet, address, script, timeout=timeout)


def ok(fleet: Fleet, address: str, script: str, timeout: int = 60) -> str:
    """Run a script that must succeed; returns its stdout."""
    out = sh(fleet, address, script, timeout)
    assert out.returncode == 0, f"{address}: {script!r} exited {out.returncode}: {out.stderr or out.stdout}"
    return out.stdout


def bench_loop(fleet: Fleet, address: str, runs: int, seconds: float = RUN_SECONDS, wait_boot: bool = False) -> Loop:
    """`runs` back-to-back `hailortcli benchmark` on the node, looped ON the node as in the seed's repro."""
    script = (
        (WAIT_BOOT if wait_boot else "")
        + f"cd {MODELS_DIR} && start=$(date +%s.%N); "
        + f"for i in $(seq 1 {runs}); do echo \"=== run $i\"; "
        + f"hailortcli benchmark {HEF} -t {seconds:g} 2>&1; done; "
        + "echo \"=== wall $start $(date +%s.%N)\""
    )
    out = ok(fleet, address, script, timeout=120)
    wall = _WALL.search(out)
    assert wall, out[-500:]
    parts = _RUN_MARK.split(out[: wall.start()])[1:]  # [n, text, n, text, ...]
    texts = [parts[i + 1] for i in range(0, len(parts), 2)]
    assert len(texts) == runs, out[-500:]
    return Loop([parse_benchmark(t) for t in texts], texts, float(wall[2]) - float(wall[1]))


def bench_once(fleet: Fleet, address: str, seconds: float = RUN_SECONDS):
    """One benchmark: (exit status, combined output, parsed result)."""
    out = sh(fleet, address, f"cd {MODELS_DIR} && hailortcli benchmark {HEF} -t {seconds:g} 2>&1")
    return out.returncode, out.stdout, parse_benchmark(out.stdout)


def kernel_log(fleet: Fleet, address: str, inventory: Path, node: str) -> list[str]:
    """The node's kernel-log view, read with the inventory's `lab_kernel_log_cmd` (what the agent reads)."""
    return ok(fleet, address, node_vars(inventory, node)["lab_kernel_log_cmd"]).splitlines()


def driver_messages(lines: list[str]) -> list[str]:
    """The driver's messages of kernel-log lines, without timestamp, host and `kernel:` prefix."""
    found = (_KERNEL_LINE.search(line) for line in lines)
    return [m[1] for m in found if m]


def contains_in_order(haystack: list[str], needles: list[str]) -> bool:
    """Whether `needles` appear in `haystack` as one contiguous block."""
    n = len(needles)
    return any(haystack[i:i + n] == needles for i in range(len(haystack) - n + 1))


def fixture_lines(name: str) -> list[str]:
    """The non-empty lines of a verbatim real-tool fixture."""
    return [line for line in (FIXTURES / "hailo" / name).read_text().splitlines() if line.strip()]


def fixture_block(name: str, title: str) -> list[str]:
    """The lines under `# title` in a fixture made of `#`-titled blocks."""
    block, inside = [], False
    for line in fixture_lines(name):
        if line.startswith("# "):
            inside = line[2:].strip() == title
        elif inside:
            block.append(line)
    assert block, f"no block {title!r} in {name}"
    return block


def quote(words) -> str:
    """Words as one shell-safe string."""
    return " ".join(shlex.quote(str(w)) for w in words)
