"""HailoRT status codes and the errors the emulated library raises, with their verbatim log lines."""

from __future__ import annotations

CODES = {
    "HAILO_SUCCESS": 0,
    "HAILO_TIMEOUT": 4,
    "HAILO_INVALID_ARGUMENT": 2,
    "HAILO_INVALID_OPERATION": 6,
    "HAILO_INTERNAL_FAILURE": 8,
    "HAILO_OPEN_FILE_FAILURE": 13,
    "HAILO_INVALID_HEF": 26,
    "HAILO_NOT_FOUND": 61,
    "HAILO_PCIE_DRIVER_NOT_INSTALLED": 64,
    "HAILO_OUT_OF_PHYSICAL_DEVICES": 74,
    "HAILO_INVALID_DRIVER_VERSION": 76,
    "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE": 93,
}


class HailoError(Exception):
    """A failed HailoRT call: its status and the `[HailoRT] [error]` lines the library logged."""

    def __init__(self, status: str, lines=()):
        super().__init__("%s(%d)" % (status, CODES[status]))
        self.status = status
        self.code = CODES[status]
        self.lines = list(lines)

    def cli_line(self) -> str:
        """The line hailortcli adds when a library call it checked failed."""
        return "[HailoRT CLI] [error] CHECK_SUCCESS failed with status=%s(%d)" % (self.status, self.code)


def driver_not_installed() -> HailoError:
    """No /dev/hailo0: the driver is not loaded, not bound, or the device is gone."""
    status = "HAILO_PCIE_DRIVER_NOT_INSTALLED"
    return HailoError(
        status,
        [
            "[HailoRT] [error] Can't find hailo pcie class, this may happen if the driver is not installed "
            "(this may happen if the kernel was updated), or if there is no connected Hailo board",
            "[HailoRT] [error] CHECK_SUCCESS failed with status=%s(64) - Failed listing pcie devices" % status,
            "[HailoRT] [error] CHECK_SUCCESS failed with status=%s(64)" % status,
            "[HailoRT] [error] CHECK_SUCCESS failed with status=%s(64)" % status,
        ],
    )


def driver_version_mismatch(driver: str, library: str) -> HailoError:
    """The loaded driver's version differs from the library's."""
    return HailoError(
        "HAILO_INVALID_DRIVER_VERSION",
        [
            "[HailoRT] [error] CHECK failed - Driver version (%s) is different from library version (%s)"
            % (driver, library),
            "[HailoRT] [error] Driver version mismatch, status HAILO_INVALID_DRIVER_VERSION(76)",
        ],
    )


def out_of_devices() -> HailoError:
    """Another process holds the only device."""
    return HailoError(
        "HAILO_OUT_OF_PHYSICAL_DEVICES",
        [
            "[HailoRT] [error] Failed to create vdevice. there are not enough free devices. requested: 1, found: 0",
            "[HailoRT] [error] CHECK_SUCCESS failed with status=HAILO_OUT_OF_PHYSICAL_DEVICES(74)",
        ],
    )


def hef_not_compatible(device_arch: str, hef_arch: str) -> HailoError:
    """A HEF compiled for another architecture (wording of the emulator, not verbatim)."""
    return HailoError(
        "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE",
        [
            "[HailoRT] [error] CHECK failed - HEF file is not compatible with device. Device arch: %s, HEF arch: %s"
            % (device_arch, hef_arch),
            "[HailoRT] [error] CHECK_SUCCESS failed with status=HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE(93)",
        ],
    )


def invalid_hef(path: str, why: str) -> HailoError:
    """A file that is not an (emulated) HEF."""
    return HailoError(
        "HAILO_INVALID_HEF",
        [
            "[HailoRT] [error] Failed to parse HEF file %s: %s" % (path, why),
            "[HailoRT] [error] CHECK_SUCCESS failed with status=HAILO_INVALID_HEF(26)",
        ],
    )


def buffer_not_view(name: str) -> HailoError:
    """An output binding without a buffer: pyhailort's run_async asks libhailort for it before inferring
    (hailort infer_model_api.cpp ConfiguredInferModelWrapper::run_async; infer_model.cpp get_buffer)."""
    return HailoError(
        "HAILO_INVALID_OPERATION",
        ["[HailoRT] [error] CHECK failed - Trying to get buffer as view for '%s', while it is not configured as view"
         % name],
    )


def input_buffer_missing(name: str) -> HailoError:
    """An input binding without a buffer (hailort infer_model.cpp ConfiguredInferModelImpl::validate_bindings)."""
    return HailoError(
        "HAILO_NOT_FOUND",
        [
            "[HailoRT] [error] CHECK failed - Couldnt find input buffer for '%s'" % name,
            "[HailoRT] [error] CHECK_SUCCESS failed with status=HAILO_NOT_FOUND(61)",
        ],
    )


def buffer_size_mismatch(direction: str, size: int, expected: int, name: str) -> HailoError:
    """A bound buffer whose size is not the stream's frame size (validate_bindings)."""
    what = "Input" if direction == "input" else "Output"
    return HailoError(
        "HAILO_INVALID_OPERATION",
        [
            "[HailoRT] [error] CHECK failed - %s buffer size %d is different than expected %d for %s '%s'"
            % (what, size, expected, direction, name),
            "[HailoRT] [error] CHECK_SUCCESS failed with status=HAILO_INVALID_OPERATION(6)",
        ],
    )
