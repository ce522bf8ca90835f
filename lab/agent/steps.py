"""The agent's steps: each runs the real tools locally, back to back, and records what it saw."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from typing import Any, Dict, List, Optional

from lab.contract import (ARTIFACT, EVENT, IDENTITY, PHASE_END, PHASE_RESUME, PHASE_START, PREFLIGHT, SAMPLE, SYSTEM,
                          AgentSpec)

from . import kernel
from .parsers import ToolOutputError, parse_benchmark, parse_errors, parse_identify, parse_version, run_throttling
from .pi import read_pi_identity
from .records import RecordLog, node_facts, write_artifact

DEVICE_STEPS = ("identify", "benchmark", "configure_cycles", "infer_continuous", "cooldown",
                "driver_reload", "pcie_rescan", "chip_reset")
TOOL_TIMEOUT_MARGIN = 120.0
PROBE_GRACE = 30.0  # seconds a booted node's installed driver may take to bind the device before its probe counts as failed
READY_STATES = ("running", "degraded")  # `systemctl is-system-running`: boot finished (degraded: a unit failed)


def installed_wheels() -> Dict[str, str]:
    """`hailort` wheels importable by this Python: dist-info directory -> version (pip's or lab's)."""
    import sys

    found: Dict[str, str] = {}
    for entry in sys.path:
        for info in sorted(glob.glob(os.path.join(entry or ".", "hailort-*.dist-info"))):
            found[info] = os.path.basename(info)[len("hailort-"):-len(".dist-info")]
    return found


class DeviceFailure(Exception):
    """The device stopped answering: the phase's remaining device steps are skipped."""


class NodeFailure(Exception):
    """The node cannot run a step (no Python binding, an unexpected error in the agent): not the device's fault.

    The phase ends `infra_error`, which the controller turns into an infra_error run (it says nothing
    about the device); the remaining device steps are skipped, `collect` still runs.
    """


# element types of HailoRT's formats as numpy names (pyhailort's HailoRTTransformUtils does the same)
NUMPY_TYPES = {"UINT8": "uint8", "UINT16": "uint16", "FLOAT32": "float32"}
BINDINGS_PER_CALL = 16  # frames handed to one run() call, at most the model's async queue size


def format_name(format_type) -> str:
    """`UINT8` for pyhailort's FormatType.UINT8 (a pybind11 enum: `.name`, or `str()` `FormatType.UINT8`)."""
    name = getattr(format_type, "name", None)
    return str(name if isinstance(name, str) else str(format_type).rsplit(".", 1)[-1]).upper()


class Buffers:
    """Input and output buffers for a network, as real pyhailort wants them: one numpy array per stream.

    Chosen before configure: a stream left at FormatType.AUTO is set to UINT8 (inputs) or FLOAT32
    (outputs), so each array's shape and dtype match the frame size libhailort checks at run time.
    """

    def __init__(self, hp, np, infer_model):
        self.np = np
        self.streams = {"input": [], "output": []}
        for direction, streams, default in (("input", infer_model.inputs, "UINT8"),
                                             ("output", infer_model.outputs, "FLOAT32")):
            for stream in streams:
                name = format_name(stream.format.type)
                if name not in NUMPY_TYPES:
                    stream.set_format_type(getattr(hp.FormatType, default))
                    name = default
                self.streams[direction].append((stream.name, tuple(stream.shape), np.dtype(NUMPY_TYPES[name])))

    def bindings(self, configured, count: int) -> list:
        """`count` Bindings, each with its own zeroed input and empty output arrays."""
        np = self.np
        return [configured.create_bindings(
            input_buffers={n: np.zeros(shape, dtype) for n, shape, dtype in self.streams["input"]},
            output_buffers={n: np.empty(shape, dtype) for n, shape, dtype in self.streams["output"]})
            for _ in range(count)]


def failed(record: Dict[str, Any]) -> bool:
    """Whether a record is a failure: an error without a figure (a run that printed its fps stands)."""
    return bool(record.get("error")) and record.get("fps") is None


def per_call(configured) -> int:
    """How many bindings one run() call may take: the model's async queue size, at most BINDINGS_PER_CALL."""
    queue_size = getattr(configured, "get_async_queue_size", None)
    if queue_size is None:  # a binding older than the call: one frame per run() is always accepted
        return 1
    return max(1, min(int(queue_size()), BINDINGS_PER_CALL))


class Agent:
    """Runs one phase's steps on this node and appends one record per sample to the record log.

    Every duration and rate comes from `clock`, the monotonic clock: a Pi 5 without an RTC battery has
    its wall clock stepped by systemd-timesyncd shortly after boot. Wall time is for timestamps only.
    """

    clock = time.monotonic  # a builtin: not bound to the instance

    def __init__(self, spec: AgentSpec, log: RecordLog, workdir: str):
        self.spec = spec
        self.log = log
        self.scale = spec.time_scale
        self.commands = spec.commands
        self.artifacts = os.path.join(workdir, "artifacts")
        self.phase = spec.phase
        self.base = {"run_key": spec.run_key, "phase": self.phase, "phase_index": spec.phase_index}
        self.nominal = 0.0  # nominal seconds elapsed in this phase (time-scale independent)
        self.sysfs = spec.sysfs_root
        self.meminfo = spec.meminfo
        self.dev_node = spec.dev_node
        self.prior: List[Dict[str, Any]] = []  # this phase's records from an earlier, interrupted attempt
        self.device_failure = False  # the pre-flight found the device's probe failed (not the node's fault)

    def resume_from(self, records: List[Dict[str, Any]]) -> None:
        """Remember what an interrupted attempt of this phase already recorded, so nothing is measured twice."""
        key = (self.spec.run_key, self.spec.phase_index)
        self.prior = [r for r in records if (r.get("run_key"), r.get("phase_index")) == key]

    def _done_runs(self, index: int) -> int:
        """How many runs of step `index` an earlier attempt completed."""
        return max([int(r.get("run") or 0) for r in self.prior
                    if r.get("step_index") == index and r.get("kind") == SAMPLE and not failed(r)] or [0])

    # ---- helpers ---------------------------------------------------------------------
    def record(self, kind: str, **fields: Any) -> Dict[str, Any]:
        merged = dict(self.base)
        merged.update(node_facts())
        merged["nominal_s"] = round(self.nominal, 3)
        merged.update(fields)
        return self.log.append(kind, **merged)

    def tool(self, argv: List[str], timeout: float = 600.0) -> subprocess.CompletedProcess:
        """Run a tool with an argument list (never a shell) and capture its output."""
        try:
            return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                                  universal_newlines=True, errors="replace")
        except FileNotFoundError:
            return subprocess.CompletedProcess(argv, 127, "%s: command not found\n" % argv[0])
        except subprocess.TimeoutExpired as exc:
            out = exc.output or ""
            if isinstance(out, bytes):
                out = out.decode(errors="replace")
            return subprocess.CompletedProcess(argv, 124, out + "\n%s: timed out after %ss\n" % (argv[0], timeout))

    def save(self, name: str, text: str) -> Dict[str, Any]:
        """Keep a file under a name unique per run and phase: a node that runs two stacks keeps both."""
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        run = "".join(c if c.isalnum() else "_" for c in str(self.spec.run_key or "0"))
        return write_artifact(self.artifacts, "run%s-%s-%s" % (run, self.phase, safe), text.encode())

    def sleep(self, nominal_seconds: float) -> None:
        """Wait a nominal duration, compressed by the fleet's time scale."""
        if nominal_seconds > 0:
            time.sleep(nominal_seconds * self.scale)
            self.nominal += nominal_seconds

    def hef(self, step: Dict[str, Any]) -> str:
        """The HEF path on this node: as given, or found in the model directories."""
        hef = step["hef"]
        if isinstance(hef, dict):
            hef = hef.get(self.spec.chip or "", "")
        if os.path.isabs(hef) or os.path.exists(hef):
            return hef
        for directory in self.spec.hef_dirs:
            candidate = os.path.join(directory, hef)
            if os.path.exists(candidate):
                return candidate
        return hef

    @staticmethod
    def failure(output: str) -> str:
        """The most telling line of a failed tool's output."""
        try:
            statuses = parse_errors(output).statuses
        except ToolOutputError:
            statuses = {}
        if statuses:
            name = list(statuses)[-1]
            return "%s(%s)" % (name, statuses[name])
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        return lines[-1][:300] if lines else "no output"

    # ---- steps -----------------------------------------------------------------------
    def identify(self, index: int, step: Dict[str, Any]) -> None:
        """Record the chip's identity (`identify --extended`, plain identify if that fails) and the Pi it sits in."""
        version = self.tool(["hailortcli", "--version"], 60)
        argv = ["hailortcli", "fw-control", "identify", "--extended"]
        ident = self.tool(argv, 60)
        transcript = "$ %s\n%s\n" % (" ".join(argv), ident.stdout)
        extended_error = None
        if ident.returncode != 0:  # the extended query can fail where the plain one works: keep what the chip says
            extended_error = "identify --extended failed: %s" % self.failure(ident.stdout)
            argv = argv[:-1]
            ident = self.tool(argv, 60)
            transcript += "$ %s\n%s\n" % (" ".join(argv), ident.stdout)
        driver_cmd = self._driver_version_argv()
        driver = self.tool(driver_cmd, 60)
        pi = read_pi_identity(self.spec.devicetree_dir)
        fields: Dict[str, Any] = {"step": "identify", "step_index": index}
        art = self.save("identify-%d.txt" % index, "$ hailortcli --version\n%s\n%s$ %s\n%s"
                        % (version.stdout, transcript, " ".join(driver_cmd), driver.stdout))
        try:
            fields["hailort_version"] = parse_version(version.stdout).to_dict().get("version")
        except ToolOutputError:
            pass
        if ident.returncode == 0:
            info = parse_identify(ident.stdout).to_dict()
            fields["identity"] = info
            if extended_error:
                fields["identity_note"] = extended_error
        else:
            fields["error"] = "identify failed: %s" % self.failure(ident.stdout)
        fields["driver_version"] = driver.stdout.strip().splitlines()[-1] if driver.returncode == 0 and driver.stdout.strip() else None
        # the Pi this HAT sits in (a HAT moves between Pis; the unit is keyed by the chip, the run records both)
        fields["host_serial"], fields["host_model"] = pi.serial, pi.model
        fields["host_identity"] = pi.to_dict()
        self.record(IDENTITY, artifact=art, **fields)
        if ident.returncode != 0:
            raise DeviceFailure(fields["error"])

    def benchmark(self, index: int, step: Dict[str, Any]) -> None:
        hef = self.hef(step)
        t = int(step.get("time_to_run") or 15)
        argv = ["hailortcli", "benchmark", hef, "--time-to-run", str(t), "--batch-size", str(int(step.get("batch_size") or 1))]
        if step.get("power_mode"):
            argv += ["--power-mode", str(step["power_mode"])]
        runs = int(step.get("runs") or 1)
        chip_state: Optional[str] = None  # the chip's last reported throttling state, while it can carry over
        for k in range(self._done_runs(index) + 1, runs + 1):
            started = self.clock()
            proc = self.tool(argv, t * self.scale * 4 + TOOL_TIMEOUT_MARGIN)
            self.nominal += t
            art = self.save("benchmark-%d-run%03d.txt" % (index, k), proc.stdout)
            fields: Dict[str, Any] = {"step": "benchmark", "step_index": index, "run": k, "runs": runs,
                                      "wall_s": round(self.clock() - started, 3), "artifact": art}
            # The output is read whatever the exit code: HailoRT 4.x prints each mode's FPS as it goes and
            # can still exit non-zero afterwards (a failed latency measurement); a figure printed is kept.
            try:
                result = parse_benchmark(proc.stdout).to_dict()
            except ToolOutputError as exc:
                result = {}
                if proc.returncode == 0:
                    fields["error"] = "unreadable benchmark output: %s" % exc
            if proc.returncode != 0:
                fields["rc"] = proc.returncode
            if result.get("fps") is not None or proc.returncode == 0:
                if proc.returncode != 0:  # the figure stands; what failed after it is kept beside it
                    fields["error"] = "exit %d after the FPS was printed: %s" % (proc.returncode, self.failure(proc.stdout))
                fields["fps"] = result.get("fps")
                temp = result.get("temperature") or {}
                fields.update(temp_mean=temp.get("mean"), temp_min=temp.get("min"), temp_max=temp.get("max"))
                if not temp:  # HailoRT 4.x prints no temperature: ask the chip, right after the run
                    fields.update(self._temperature())
                # the chip's own throttling state (HailoRT >= 5.2.0 logs its changes): kept in `extra`
                states = result.get("throttling_states")  # None: the output was unreadable
                throttling, chip_state = run_throttling(states, chip_state) if states is not None else (None, None)
                if throttling is not None:
                    fields.update(hailo_throttling=throttling, hailo_throttling_state=chip_state)
                fields["throttled"] = self.throttled()
                fields.update(self.telemetry())
                log = self.runtime_log_after_run(index, k)
                fields.update(cma_errors=log.get("cma_errors"), runtime_log=log.get("artifact"))
                self.record(SAMPLE, **fields)
            else:
                fields["error"] = self.failure(proc.stdout)
                self.record(SAMPLE, **fields)
                raise DeviceFailure("benchmark run %d failed: %s" % (k, fields["error"]))
            if step.get("gap"):
                self.sleep(float(step["gap"]))
                chip_state = None  # a change while nobody holds the device is notified to no one

    def _platform(self):
        """HailoRT's Python binding and numpy (python3-hailort depends on it), imported on the node only."""
        try:
            import hailo_platform  # python3-hailort / python3-h10-hailort, or Hailo's hailort wheel
        except ImportError as exc:
            raise NodeFailure("HailoRT's Python binding is not installed (no hailo_platform: python3-hailort, "
                              "python3-h10-hailort or Hailo's hailort wheel): %s" % exc) from None
        try:
            import numpy
        except ImportError as exc:
            raise NodeFailure("numpy is not installed (python3-numpy, which python3-hailort depends on): %s"
                              % exc) from None
        return hailo_platform, numpy

    def configure_cycles(self, index: int, step: Dict[str, Any]) -> None:
        """`count` cycles of open, configure, infer `frames` frames, close: fps of each cycle's inference."""
        hef, frames = self.hef(step), int(step.get("frames") or 100)
        count = int(step.get("count") or 1)
        try:
            hp, np = self._platform()
        except NodeFailure as exc:
            self.record(SAMPLE, step="configure_cycles", step_index=index, run=self._done_runs(index) + 1,
                        runs=count, error=str(exc), infra=True)
            raise
        for k in range(self._done_runs(index) + 1, count + 1):
            try:
                with hp.VDevice(hp.VDevice.create_params()) as vdevice:
                    model = vdevice.create_infer_model(hef)
                    buffers = Buffers(hp, np, model)
                    with model.configure() as configured:
                        batch = buffers.bindings(configured, min(frames, per_call(configured)))
                        done = 0
                        t0 = self.clock()
                        while done < frames:
                            chunk = batch[:frames - done]
                            configured.run(chunk, 10000 + 100 * len(chunk))
                            done += len(chunk)
                        elapsed = max(self.clock() - t0, 1e-9) / self.scale
                    temp = self._temperature(vdevice)
            except Exception as exc:  # the device library raises its own exception tree
                error = "%s: %s" % (type(exc).__name__, exc)
                self.record(SAMPLE, step="configure_cycles", step_index=index, run=k, runs=count, error=error[:300])
                raise DeviceFailure("configure cycle %d failed: %s" % (k, error))
            self.nominal += elapsed
            self.record(SAMPLE, step="configure_cycles", step_index=index, run=k, runs=count,
                        fps=round(frames / elapsed, 2), configures=k, **temp)

    def infer_continuous(self, index: int, step: Dict[str, Any]) -> None:
        """One configure, then inference for `duration` nominal seconds: fps per `sample_every` window."""
        duration, every = float(step.get("duration") or 60), float(step.get("sample_every") or 15)
        k = 0
        try:
            hp, np = self._platform()
        except NodeFailure as exc:
            self.record(SAMPLE, step="infer_continuous", step_index=index, run=1, error=str(exc), infra=True)
            raise
        try:
            with hp.VDevice(hp.VDevice.create_params()) as vdevice:
                model = vdevice.create_infer_model(self.hef(step))
                buffers = Buffers(hp, np, model)
                with model.configure() as configured:
                    batch = buffers.bindings(configured, per_call(configured))
                    done = 0.0
                    while done < duration - 1e-6:
                        window, counted = min(every, duration - done), 0
                        t0 = self.clock()
                        while (self.clock() - t0) / self.scale < window:
                            configured.run(batch, 10000)
                            counted += len(batch)
                        elapsed = (self.clock() - t0) / self.scale
                        done += elapsed
                        self.nominal += elapsed
                        k += 1
                        self.record(SAMPLE, step="infer_continuous", step_index=index, run=k,
                                    fps=round(counted / elapsed, 2), inference_s=round(done, 1),
                                    **self._temperature(vdevice))
        except DeviceFailure:
            raise
        except Exception as exc:
            error = "%s: %s" % (type(exc).__name__, exc)
            self.record(SAMPLE, step="infer_continuous", step_index=index, run=k + 1, error=error[:300])
            raise DeviceFailure("continuous inference failed: %s" % error)

    def _temperature(self, vdevice=None) -> Dict[str, Any]:
        try:
            hp, _ = self._platform()
            device = vdevice.get_physical_devices()[0] if vdevice is not None else hp.Device()
            info = device.control.get_chip_temperature()
            return {"temp_ts0": round(info.ts0_temperature, 2), "temp_ts1": round(info.ts1_temperature, 2),
                    "temp_mean": round((info.ts0_temperature + info.ts1_temperature) / 2, 2)}
        except Exception:
            return {}

    def cooldown(self, index: int, step: Dict[str, Any]) -> None:
        before = self._temperature()
        self.sleep(float(step.get("seconds") or 0))
        after = self._temperature()
        self.record(EVENT, step="cooldown", step_index=index, seconds=step.get("seconds"),
                    temp_before=before.get("temp_mean"), temp_after=after.get("temp_mean"))

    def _commands(self, step_name: str, index: int, commands: List[List[str]]) -> None:
        outputs, rcs = [], []
        for argv in commands:
            proc = self.tool(list(argv), 120)
            outputs.append("$ %s\n%s" % (" ".join(argv), proc.stdout))
            rcs.append(proc.returncode)
        art = self.save("%s-%d.txt" % (step_name, index), "\n".join(outputs))
        error = None if all(rc == 0 for rc in rcs) else "%s failed (exit %s)" % (step_name, rcs)
        self.record(EVENT, step=step_name, step_index=index, rc=max(rcs) if rcs else 0, error=error, artifact=art)

    def driver_reload(self, index: int, step: Dict[str, Any]) -> None:
        module = self.spec.driver_module
        self._commands("driver_reload", index, [["modprobe", "-r", module], ["modprobe", module]])

    def pcie_rescan(self, index: int, step: Dict[str, Any]) -> None:
        remove, rescan = self.commands.get("pcie_remove"), self.commands.get("pcie_rescan")
        if remove and rescan:
            self._commands("pcie_rescan", index, [list(remove), list(rescan)])
            return
        # A real Pi: remove the device from the PCI bus and rescan, through sysfs.
        hailo = [d["path"] for d in kernel.find_devices(self.sysfs)]  # by vendor ID, at whatever address
        error = None
        try:
            for dev in hailo:
                with open(os.path.join(dev, "remove"), "w") as fh:
                    fh.write("1")
            with open(os.path.join(self.sysfs, "bus", "pci", "rescan"), "w") as fh:
                fh.write("1")
        except OSError as exc:
            error = "pcie rescan failed: %s" % exc
        self.record(EVENT, step="pcie_rescan", step_index=index, devices=[os.path.basename(d) for d in hailo], error=error)

    def chip_reset(self, index: int, step: Dict[str, Any]) -> None:
        self._commands("chip_reset", index, [["hailortcli", "fw-control", "reset", "--reset-type", "chip"]])

    def collect(self, index: int, step: Dict[str, Any]) -> None:
        sources = {
            "dmesg": self.commands.get("kernel_log") or ["dmesg"],
            "runtime_log": ["hailortcli", "logs", "runtime"],
            "journal": ["journalctl", "-b", "--no-pager", "-o", "short-iso"],
            "throttled": self.throttled_cmd(),
            "lspci": ["lspci", "-vv"],
        }
        for item in step.get("items") or []:
            if item in sources:
                proc = self.tool(list(sources[item]), 120)
                text, rc = proc.stdout, proc.returncode
            elif item == "cma":
                with open(self.meminfo) as fh:  # lab_meminfo: /proc/meminfo on a Pi
                    text, rc = "".join(line for line in fh if line.startswith("Cma")), 0
            elif item == "temps":
                zones = sorted(glob.glob("/sys/class/thermal/thermal_zone*/temp"))
                text = "".join("%s %s" % (z, open(z).read()) for z in zones)
                text += "hailo %s\n" % self._temperature()
                rc = 0
            else:
                continue
            art = self.save("collect-%d-%s.txt" % (index, item), text)
            self.record(ARTIFACT, step="collect", step_index=index, item=item, rc=rc, artifact=art)

    def throttled_cmd(self) -> List[str]:
        """lab_throttled_cmd, else `<lab_vcgencmd> get_throttled`."""
        vcgencmd = list(self.commands.get("vcgencmd") or ["vcgencmd"])
        return list(self.commands.get("throttled") or vcgencmd + ["get_throttled"])

    def throttled(self) -> Optional[str]:
        """The Pi's throttle state (`vcgencmd get_throttled`), None where there is no such tool."""
        cmd = self.throttled_cmd()
        if shutil.which(cmd[0]) is None:
            return None
        proc = self.tool(list(cmd), 10)
        return proc.stdout.strip().split("=")[-1] if proc.returncode == 0 else None

    def telemetry(self) -> Dict[str, Any]:
        """What the field report read beside each run's fps: the PCIe link (current and max), power state,
        ASPM, host CMA, the Pi's SoC temperature and ARM clock. A figure the node cannot give is left out."""
        out: Dict[str, Any] = {}
        device = self._device()
        if device is not None:
            out.update(kernel.read_link(self.sysfs, device["path"]))
        out.update(kernel.read_cma(self.meminfo))
        vcgencmd = list(self.commands.get("vcgencmd") or ["vcgencmd"])
        if shutil.which(vcgencmd[0]) is not None:
            temp = self.tool(vcgencmd + ["measure_temp"], 10)
            clock = self.tool(vcgencmd + ["measure_clock", "arm"], 10)
            out["soc_temp"] = kernel.parse_measure_temp(temp.stdout) if temp.returncode == 0 else None
            hz = kernel.parse_measure_clock(clock.stdout) if clock.returncode == 0 else None
            out["arm_clock_mhz"] = round(hz / 1e6, 1) if hz is not None else None
        return {k: v for k, v in out.items() if v is not None}

    def _device(self) -> Optional[Dict[str, str]]:
        """The Hailo PCI device of this node's chip (by vendor and device ID), else the first Hailo one."""
        devices = kernel.find_devices(self.sysfs)
        want = kernel.CHIP_DEVICE_IDS.get(self.spec.chip or "")
        return next((d for d in devices if d["device"] == want), devices[0] if devices else None)

    def runtime_log_after_run(self, index: int, k: int) -> Dict[str, Any]:
        """HailoRT 5.x (the Hailo-10H line): the chip-side runtime log right after run k, kept as that run's
        artifact, and how many CMA `alloc failed` lines are new in it (cma_errors)."""
        if self.spec.chip != "hailo10h":
            return {}
        proc = self.tool(["hailortcli", "logs", "runtime"], 60)
        art = self.save("benchmark-%d-run%03d-runtime_log.txt" % (index, k), proc.stdout)
        if proc.returncode != 0:
            return {"artifact": art}
        # each read returns the chip's log lines since the previous read (the CLI drains the device's buffer)
        count = sum(1 for line in proc.stdout.splitlines() if "cma_alloc" in line and "alloc failed" in line)
        return {"artifact": art, "cma_errors": count}

    # ---- pre-flight ----------------------------------------------------------------------
    def readiness(self) -> Dict[str, Any]:
        """One look at what a measurement needs: boot finished, the device found and bound, /dev/hailo0,
        the clock synchronised (or known not to be: no systemd-timesyncd running)."""
        def out(argv: List[str]) -> Optional[str]:
            if shutil.which(argv[0]) is None:
                return None
            return self.tool(argv, 30).stdout.strip() or None

        found = kernel.find_devices(self.sysfs)
        device = self._device()
        ntp = out(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
        syncing = out(["systemctl", "is-active", "systemd-timesyncd.service"]) == "active"
        state: Dict[str, Any] = {
            "system": out(["systemctl", "is-system-running"]),
            "devices": [{"address": d["address"], "device": d["device"]} for d in found],
            "driver": kernel.bound_driver(device["path"]) if device else None,
            "dev_node": os.path.exists(self.dev_node),
            "ntp_synchronized": None if ntp is None else ntp == "yes",
            "timesyncd": syncing,
        }
        clock_ok = state["ntp_synchronized"] is not False or not syncing
        state["ready"] = bool(state["system"] in READY_STATES + (None,) and device and state["driver"]
                              and state["dev_node"] and clock_ok)
        return state

    def preflight(self) -> Optional[str]:
        """Before a measuring phase: stop the services the scenario names, wait until the node is ready,
        find the device by PCI vendor and device ID, check the inventory's chip, check nobody holds the
        device. Records what it found (a `preflight` record); returns the one-line reason to stop, or None."""
        node = self.spec.node or socket.gethostname()
        stopped = []
        for service in self.spec.stop_services:
            proc = self.tool(["systemctl", "stop", "--", str(service)], 120)
            stopped.append({"service": service, "rc": proc.returncode})
        started = time.monotonic()
        timeout = self.spec.ready_timeout
        state, mismatch = self.readiness(), None
        unbound_since = None  # boot finished, device present, its driver installed, yet not bound: a failed probe
        installed = False  # asked only while the device is unbound, and no more once modinfo knows the driver
        self.device_failure = False
        while True:
            device = self._device()
            mismatch = self._chip_mismatch(node, device)
            if state["ready"] or mismatch or time.monotonic() - started >= timeout:
                break  # a wrong chip never gets ready with this stack's driver: say so at once
            unbound = state["system"] in READY_STATES and device and not state["driver"]
            installed = installed or bool(unbound and self._driver_installed())
            if unbound and installed:
                unbound_since = unbound_since or time.monotonic()
                if time.monotonic() - unbound_since >= min(PROBE_GRACE, timeout / 2):
                    self.device_failure = True  # the device's own failure (a bricked chip), not the node's
                    break
            else:
                unbound_since = None
            time.sleep(1.0)
            state = self.readiness()
        holders = kernel.device_holders(self.dev_node) if state["dev_node"] else []
        error = None
        if not state["devices"]:
            error = "%s: no Hailo PCI device (vendor %s) under %s/bus/pci/devices" % (
                node, kernel.HAILO_VENDOR[2:], self.sysfs)
        elif mismatch:
            error = mismatch
        elif self.device_failure:
            error = ("%s: the driver (%s) is installed but did not bind the Hailo device after boot finished: "
                     "its probe failed (see dmesg)" % (node, self.spec.driver_module))
        elif not state["ready"]:
            error = "%s: not ready after %ds: %s" % (node, timeout, ", ".join(self._missing(state)))
        elif holders:
            error = ("%s: %s is held by %s; stop it before measuring, or name its service in the phase's stop_services"
                     % (node, self.dev_node, kernel.describe_holders(holders)))
        self.record(PREFLIGHT, ready=state["ready"], ready_s=kernel.seconds_since_boot() if state["ready"] else None,
                    waited_s=round(time.monotonic() - started, 3), system_state=state["system"],
                    devices=state["devices"], driver=state["driver"], dev_node=state["dev_node"],
                    ntp_synchronized=state["ntp_synchronized"], holders=holders, stopped_services=stopped,
                    chip=self.spec.chip, error=error, device_failure=self.device_failure or None)
        return error

    def _driver_version_argv(self) -> List[str]:
        """The command that prints the installed PCIe driver's version (modinfo; a test's stand-in)."""
        return list(self.commands.get("driver_version") or ["modinfo", "-F", "version", self.spec.driver_module])

    def _driver_installed(self) -> bool:
        """Whether the stack's PCIe driver module is installed (modinfo knows it)."""
        return self.tool(self._driver_version_argv(), 30).returncode == 0

    def _chip_mismatch(self, node: str, device: Optional[Dict[str, str]]) -> Optional[str]:
        """The one-line error when the chip the inventory (else the stack) names is not the PCI device found."""
        inventory = self.spec.inventory_chip
        mismatch = kernel.chip_mismatch(node, inventory or self.spec.chip, device["device"] if device else None)
        if mismatch and not inventory:
            mismatch = mismatch.replace("the inventory says lab_chip", "the stack is for", 1)
        return mismatch

    def _missing(self, state: Dict[str, Any]) -> List[str]:
        """What keeps a node from being ready, in words."""
        checks = ((state["system"] in READY_STATES + (None,), "boot not finished (%s)" % state["system"]),
                  (state["driver"], "driver not bound"),
                  (state["dev_node"], "%s missing" % self.dev_node),
                  (state["ntp_synchronized"] is not False or not state["timesyncd"], "clock not synchronised"))
        return [what for ok, what in checks if not ok]

    def restart_services(self) -> None:
        """Start again the services the pre-flight stopped: the node is left as its owner had it."""
        services = [str(s) for s in self.spec.stop_services]
        if not services:
            return
        rcs = [self.tool(["systemctl", "start", "--", s], 120).returncode for s in services]
        self.record(EVENT, step="restart_services", services=services, rc=max(rcs),
                    error=None if max(rcs) == 0 else "restarting %s failed (exit %s)" % (services, rcs))

    def system(self) -> Dict[str, Any]:
        """What the node runs, as installed (not as pinned): kernel, DKMS, Hailo packages, the wheel, holds,
        firmware and bootloader versions. Recorded at every phase start, so a change mid-campaign shows."""
        def lines(argv: List[str], timeout: float = 30, ok: tuple = (0,)) -> Optional[List[str]]:
            if shutil.which(argv[0]) is None:
                return None
            proc = self.tool(argv, timeout)
            return [line.rstrip() for line in proc.stdout.splitlines() if line.strip()] if proc.returncode in ok else None

        packages: Dict[str, str] = {}
        fmt = "${Package} ${Version} ${db:Status-Status}\n"
        # dpkg-query exits 1 when a pattern matches nothing (no dkms yet), and still lists the others
        for line in lines(["dpkg-query", "-W", "-f", fmt, "*hailo*", "dkms"], ok=(0, 1)) or []:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "installed":
                packages[parts[0]] = parts[1]
        holds = [h for h in lines(["apt-mark", "showhold"]) or []]
        info: Dict[str, Any] = {
            "kernel": os.uname().release,
            "packages": packages,
            "wheels": installed_wheels(),
            "dkms": lines(["dkms", "status"]),
            "holds": holds,
        }
        for key in ("firmware_version", "bootloader_version"):
            cmd = self.commands.get(key)
            out = lines(list(cmd)) if cmd else None
            info[key] = " ".join(out)[:300] if out else None
        return info

    # ---- the phase -------------------------------------------------------------------
    def run_phase(self) -> str:
        """Run every step; after a device failure skip the remaining device steps but still collect.

        A phase interrupted earlier (controller killed, agent restarted) continues where its records
        end: finished steps and benchmark runs are not repeated, and a finished phase is not rerun.
        """
        ended = [r for r in self.prior if r.get("kind") == PHASE_END]
        if ended:
            return str(ended[-1].get("status") or "ok")
        status, error = "ok", None
        if self.prior:
            self.record(PHASE_RESUME, after_seq=max(int(r.get("seq", 0)) for r in self.prior),
                        boot_cause=self.spec.boot_cause)
            failures = [r for r in self.prior if failed(r) and r.get("step") in DEVICE_STEPS and not r.get("skipped")]
            if failures:
                status = "infra_error" if failures[-1].get("infra") else "device_error"
                error = str(failures[-1]["error"])
        else:
            self.record(PHASE_START, steps=len(self.spec.steps), boot_cause=self.spec.boot_cause)
            self.record(SYSTEM, **self.system())
            if any(s.get("kind") in DEVICE_STEPS for s in self.spec.steps):
                refused = self.preflight()
                if refused is not None and self.device_failure:  # the chip's failure: the phase's outcome
                    status, error = "device_error", refused
                elif refused is not None:  # not the device's fault: the run ends as an infrastructure error
                    self.restart_services()
                    self.record(PHASE_END, status="infra_error", error=refused)
                    return "infra_error"
        started = {r.get("step_index") for r in self.prior}
        for index, step in enumerate(self.spec.steps):
            kind = step.get("kind")
            if index in started and kind not in ("benchmark", "configure_cycles"):
                continue  # done (or begun) by the interrupted attempt
            if kind in DEVICE_STEPS and status != "ok":
                why = "device failure" if status == "device_error" else "node failure"
                self.record(EVENT, step=kind, step_index=index, skipped=True, error="skipped after %s" % why)
                continue
            handler = getattr(self, kind, None) if kind in DEVICE_STEPS + ("collect",) else None
            if handler is None:
                continue  # provisioning steps run through Ansible roles, not here
            try:
                handler(index, step)
            except DeviceFailure as exc:
                status, error = "device_error", str(exc)
            except NodeFailure as exc:
                if status == "ok":  # a device failure found earlier stays the phase's outcome
                    status, error = "infra_error", "%s: %s" % (kind, exc)
            except Exception as exc:  # a bug or a broken node: the phase still ends, saying what failed
                why = "%s step failed: %s: %s" % (kind, type(exc).__name__, exc)
                self.record(EVENT, step=kind, step_index=index, error=why[:300], infra=True)
                if status == "ok":
                    status, error = "infra_error", why
        self.restart_services()
        self.record(PHASE_END, status=status, error=error)
        return status
