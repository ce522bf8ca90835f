"""The hailo_platform (pyhailort) API subset the lab uses, backed by the same chip model as hailortcli."""

from __future__ import annotations

import enum
import sys

from . import hef as hefmod
from . import status, tables
from .chip import reports_throttling
from .runtime import Runtime

_LIBRARY = {"version": "0.0.0"}
COMMIT_EVERY_S = 1.0
PIPELINE_SLACK_S = 0.005  # real seconds of caller turnaround that still count as back to back
ASYNC_QUEUE_SIZE = 16  # frames in flight per configured model (an assumption of the emulator)


def set_library_version(version: str) -> None:
    """Called by the installed hailo_platform package with the version it was built as."""
    _LIBRARY["version"] = version


class HailoRTException(Exception):
    """Base of the errors hailo_platform raises."""


class HailoRTStatusException(HailoRTException):
    """A HailoRT call that failed with a status (`.status`, `.code`)."""

    def __init__(self, error: status.HailoError, message: str = ""):
        super().__init__(message or str(error))
        self.status = error.status
        self.code = error.code


class HailoRTInvalidOperationException(HailoRTStatusException):
    """HAILO_INVALID_OPERATION, with pyhailort's message (ExceptionWrapper.create_exception_from_status)."""


class HailoRTNotFoundException(HailoRTStatusException):
    """HAILO_NOT_FOUND, with pyhailort's message (ExceptionWrapper.create_exception_from_status)."""


# pyhailort maps these statuses to exceptions of their own, with fixed messages (pyhailort.py, 4.20-5.2)
_INDICATIVE = {
    "HAILO_INVALID_OPERATION": (HailoRTInvalidOperationException,
                                "Invalid operation. See hailort.log for more information"),
    "HAILO_NOT_FOUND": (HailoRTNotFoundException, "Item not found. See hailort.log for more information"),
}


def _raise(exc: status.HailoError):
    """Log a failed call's `[HailoRT] [error]` lines to stderr and raise what pyhailort raises for its status."""
    for line in exc.lines:
        sys.stderr.write(line + "\n")
    cls, message = _INDICATIVE.get(exc.status, (HailoRTStatusException, ""))
    raise cls(exc, message) from None


def _call(fn, *args):
    """Run a library call; its `[HailoRT] [error]` lines go to stderr as pyhailort's logger does."""
    try:
        return fn(*args)
    except status.HailoError as exc:
        _raise(exc)


def _runtime() -> Runtime:
    """A runtime for this process (reads the unit and the fleet's time scale)."""
    return Runtime(_LIBRARY["version"])


class HailoSchedulingAlgorithm:
    """Scheduling algorithms of a VDevice."""

    NONE = 0
    ROUND_ROBIN = 1


class FormatType(enum.Enum):
    """Buffer element types (pybind11 enum `FormatType` in pyhailort: `.name`, `str()` is `FormatType.UINT8`)."""

    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


class FormatOrder(enum.Enum):
    """Element orders of a stream (the emulated networks use these two)."""

    NHWC = 1
    NC = 2


_ITEM_BYTES = {FormatType.UINT8: 1, FormatType.UINT16: 2, FormatType.FLOAT32: 4}


class StreamFormat:
    """A stream's hailo_format_t: `.type`, `.order`."""

    def __init__(self, format_type: FormatType, order: FormatOrder):
        self.type = format_type
        self.order = order


class VDeviceParams:
    """Parameters of a VDevice (accepted; the emulated node has one device)."""

    def __init__(self):
        self.device_count = 1
        self.scheduling_algorithm = HailoSchedulingAlgorithm.ROUND_ROBIN
        self.group_id = ""
        self.multi_process_service = False


class TemperatureInfo:
    """Readings of the chip's two temperature sensors."""

    def __init__(self, ts0: float, ts1: float):
        self.ts0_temperature = ts0
        self.ts1_temperature = ts1
        self.sample_count = 1


class BoardInformation:
    """What identify() returns."""

    def __init__(self, ident: dict):
        self.protocol_version = ident["protocol_version"]
        self.firmware_version = ident["firmware_version"]
        self.logger_version = ident["logger_version"]
        self.board_name = ident["board_name"]
        self.is_release = ident["is_release"]
        self.extended_context_switch_buffer = ident["extended_context_switch_buffer"]
        self.device_architecture = ident["arch"]
        self.serial_number = ident["serial"]
        self.part_number = ident["part_number"]
        self.product_name = ident["product_name"]

    def __str__(self):
        return (
            "Control Protocol Version: {}\nFirmware Version: {} (release,app)\nLogger Version: {}\n"
            "Device Architecture: {}\n"
        ).format(self.protocol_version, self.firmware_version, self.logger_version, self.device_architecture)


class Control:
    """Firmware control operations of a Device."""

    def __init__(self, runtime: Runtime):
        self._runtime = runtime

    def identify(self) -> BoardInformation:
        """The device's identity."""
        return BoardInformation(_call(self._runtime.identity))

    def get_chip_temperature(self) -> TemperatureInfo:
        """The chip's temperature sensors now."""
        return TemperatureInfo(*_call(self._runtime.temperatures))

    def reset(self, reset_type: str = "chip") -> None:
        """Reset the device (`chip`, `soft`, `nn_core`)."""
        _call(self._runtime.reset, reset_type)


class Device:
    """A physical device, for control operations."""

    def __init__(self, device_id=None, _runtime=None):
        self._runtime = _runtime or _runtime_checked()
        self.device_id = device_id or self._runtime.chip.unit["pci_address"]
        self.control = Control(self._runtime)

    @staticmethod
    def scan() -> list:
        """Ids of the devices on this host."""
        return _call(_runtime().scan)

    def get_chip_temperature(self) -> TemperatureInfo:
        """The chip's temperature sensors now."""
        return self.control.get_chip_temperature()

    def release(self) -> None:
        """Release the device (nothing to do for control access)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _runtime_checked() -> Runtime:
    """A runtime whose device exists (Device() fails like the real one when it does not)."""
    rt = _runtime()
    _call(rt.scan)
    return rt


class HEF:
    """A HEF file."""

    def __init__(self, path: str):
        self.path = str(path)
        self._model = _call(hefmod.load, self.path)

    def get_network_group_names(self) -> list:
        """Names of the network groups in the file."""
        return [self._model["network"]]


class InferStream:
    """One input or output of an InferModel: name, shape and format (type and order)."""

    def __init__(self, name: str, nbytes: int, is_input: bool):
        self.name = name
        side = int(round((nbytes / 3) ** 0.5))
        if is_input and side * side * 3 == nbytes:
            self.shape = (side, side, 3)  # an image, as the real HEFs' inputs (NHWC, UINT8)
            self.format = StreamFormat(FormatType.UINT8, FormatOrder.NHWC)
        else:
            self.shape = (nbytes,)
            self.format = StreamFormat(FormatType.UINT8, FormatOrder.NC)

    def set_format_type(self, format_type) -> None:
        """Choose the element type of user buffers (before configure)."""
        self.format = StreamFormat(FormatType(getattr(format_type, "value", format_type)), self.format.order)

    def frame_size(self) -> int:
        """Bytes of one frame in the user's format."""
        count = 1
        for dim in self.shape:
            count *= dim
        return count * _ITEM_BYTES.get(self.format.type, 1)


class BindingsStream:
    """The buffer bound to one stream of one Bindings (none until the user sets one, as in pyhailort)."""

    def __init__(self, name: str):
        self.name = name
        self._buffer = None

    def set_buffer(self, buffer) -> None:
        """Bind a user buffer: a C-contiguous numpy array (pyhailort reads `buffer.flags` and `nbytes`)."""
        if not buffer.flags.c_contiguous:
            raise HailoRTException("Buffer must be C_CONTIGUOUS")
        self._buffer = buffer

    def get_buffer(self, tf_format=False):
        """The bound buffer (None when none was set)."""
        return self._buffer


class Bindings:
    """Input and output buffers for one inference (one frame)."""

    def __init__(self, model: "InferModel"):
        self._model = model
        self._inputs = {s.name: BindingsStream(s.name) for s in model.inputs}
        self._outputs = {s.name: BindingsStream(s.name) for s in model.outputs}

    @staticmethod
    def _pick(streams: dict, name: str) -> BindingsStream:
        if name == "" and len(streams) == 1:
            name = next(iter(streams))
        if name not in streams:
            _raise(status.HailoError("HAILO_NOT_FOUND", [
                "[HailoRT] [error] CHECK failed - Stream %s not found" % name]))
        return streams[name]

    def input(self, name: str = "") -> BindingsStream:
        """An input's binding (the name may be left out when there is one input)."""
        return self._pick(self._inputs, name or "")

    def output(self, name: str = "") -> BindingsStream:
        """An output's binding (the name may be left out when there is one output)."""
        return self._pick(self._outputs, name or "")

    def check(self) -> None:
        """What libhailort checks before inferring: every output, then every input, then sizes."""
        for stream in self._outputs.values():  # pyhailort's run_async re-maps every output buffer first
            if stream._buffer is None:
                _raise(status.buffer_not_view(stream.name))
        for direction, streams in (("input", self._inputs), ("output", self._outputs)):
            for stream in streams.values():
                if stream._buffer is None:
                    _raise(status.input_buffer_missing(stream.name))
                size = int(stream._buffer.nbytes)
                expected = self._model._stream(stream.name).frame_size()
                if size != expected:
                    _raise(status.buffer_size_mismatch(direction, size, expected, stream.name))


class AsyncInferJob:
    """A finished-on-return asynchronous inference (the emulator runs it synchronously)."""

    def wait(self, timeout_ms: int = 10000) -> None:
        """Wait for completion."""


class ConfiguredInferModel:
    """A network configured on the device; every configure() counts for the chip-side leak."""

    def __init__(self, infer_model: "InferModel", network):
        self._infer_model = infer_model
        self._network = network
        self._pending = 0.0
        self._fps = network.current_fps()  # refreshed at every commit (throttling changes it)
        self._busy_until = 0.0  # real time at which the frames queued so far are done

    def create_bindings(self, input_buffers=None, output_buffers=None) -> Bindings:
        """A Bindings for one frame; `input_buffers`/`output_buffers` map stream names to numpy arrays.

        Without buffers the bindings are empty: run() then fails as libhailort does.
        """
        bindings = Bindings(self._infer_model)
        for name, buffer in (input_buffers or {}).items():
            bindings.input(name).set_buffer(buffer)
        for name, buffer in (output_buffers or {}).items():
            bindings.output(name).set_buffer(buffer)
        return bindings

    def run(self, bindings, timeout: int) -> None:
        """Infer the given bindings (a list of Bindings, one frame each times the batch size)."""
        bindings = list(bindings) if isinstance(bindings, (list, tuple)) else [bindings]
        for one in bindings:
            one.check()
        count = len(bindings)
        frames = count * max(1, self._infer_model.batch_size)
        seconds = frames / max(self._fps, 1e-6)
        clock = self._network.chip.clock
        # A deadline rather than a sleep: a caller that comes straight back keeps the device's timeline
        # (frames are queued back to back), and the bookkeeping below runs inside the frames' time.
        now = clock.now()
        start = self._busy_until if now - self._busy_until < PIPELINE_SLACK_S else now
        self._busy_until = start + seconds * clock.time_scale
        self._pending += seconds
        if self._pending >= COMMIT_EVERY_S:
            self._commit()
        clock.sleep_until(self._busy_until)

    def run_async(self, bindings, callback=None) -> AsyncInferJob:
        """Infer asynchronously; `callback(completion_info)` is called once done."""
        self.run(bindings, 10000)
        if callback is not None:
            callback(None)
        return AsyncInferJob()

    def get_async_queue_size(self) -> int:
        """How many frames may be in flight at once (the emulator's assumption: ASYNC_QUEUE_SIZE)."""
        return ASYNC_QUEUE_SIZE

    def wait_for_async_ready(self, timeout_ms: int = 10000, frames_count: int = 1) -> None:
        """Wait until the model can take more frames (always ready)."""

    def _commit(self) -> None:
        """Book the inference time done so far on the chip (heats it)."""
        if self._pending > 0:
            chip = self._network.chip
            chip.account(self._network.configured["fallback"], self._pending)
            self._pending = 0.0
            self._fps = self._network.current_fps()
            notices = chip.take_notices()
            if reports_throttling(_LIBRARY["version"], chip.is_soc):  # libhailort's default callback logs them
                for state in notices:
                    sys.stderr.write(tables.THROTTLING_NOTICE % (chip.unit["pci_address"], state) + "\n")

    def shutdown(self) -> None:
        """Stop using the configured network."""
        self._commit()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


class InferModel:
    """A network to configure on a VDevice."""

    def __init__(self, vdevice: "VDevice", model: dict):
        self._vdevice = vdevice
        self._model = model
        self.batch_size = 1
        self.hef = model["path"]
        self._input = InferStream(model["network"] + "/input_layer1", model["input_bytes"], True)
        self._output = InferStream(model["network"] + "/output_layer1", model["output_bytes"], False)

    def set_batch_size(self, batch_size: int) -> None:
        """Frames per inference."""
        self.batch_size = int(batch_size)

    def _stream(self, name: str) -> InferStream:
        for stream in (self._input, self._output):
            if stream.name == name:
                return stream
        raise KeyError(name)

    def input(self, name: str = "") -> InferStream:
        """The (single) input stream."""
        if name and name != self._input.name:
            _raise(status.HailoError("HAILO_NOT_FOUND", ["[HailoRT] [error] CHECK failed - Input %s not found" % name]))
        return self._input

    def output(self, name: str = "") -> InferStream:
        """The (single) output stream."""
        if name and name != self._output.name:
            _raise(status.HailoError("HAILO_NOT_FOUND", ["[HailoRT] [error] CHECK failed - Output %s not found" % name]))
        return self._output

    @property
    def inputs(self) -> list:
        """All input streams."""
        return [self._input]

    @property
    def outputs(self) -> list:
        """All output streams."""
        return [self._output]

    @property
    def input_names(self) -> list:
        """Names of the inputs."""
        return [self._input.name]

    @property
    def output_names(self) -> list:
        """Names of the outputs."""
        return [self._output.name]

    def configure(self) -> ConfiguredInferModel:
        """Configure the network on the device (one configure cycle)."""
        network = _call(self._vdevice._handle.configure, self._model)
        return ConfiguredInferModel(self, network)


class VDevice:
    """The virtual device: exclusive use of the Hailo device while open."""

    def __init__(self, params=None):
        self._runtime = _runtime()
        self._handle = _call(self._runtime.open_vdevice)

    @staticmethod
    def create_params() -> VDeviceParams:
        """Default parameters."""
        return VDeviceParams()

    def create_infer_model(self, hef_source, name: str = "") -> InferModel:
        """An InferModel for a HEF path (or HEF object)."""
        path = hef_source.path if isinstance(hef_source, HEF) else str(hef_source)
        return InferModel(self, _call(hefmod.load, path))

    def get_physical_devices(self) -> list:
        """The physical devices under this VDevice."""
        return [Device(_runtime=self._runtime)]

    def get_physical_devices_ids(self) -> list:
        """Ids of the physical devices under this VDevice."""
        return [self._runtime.chip.unit["pci_address"]]

    def release(self) -> None:
        """Close the VDevice."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


__all__ = [
    "BoardInformation",
    "Control",
    "Device",
    "FormatOrder",
    "FormatType",
    "HEF",
    "HailoRTException",
    "HailoRTInvalidOperationException",
    "HailoRTNotFoundException",
    "HailoRTStatusException",
    "HailoSchedulingAlgorithm",
    "InferModel",
    "ConfiguredInferModel",
    "TemperatureInfo",
    "VDevice",
    "VDeviceParams",
]
