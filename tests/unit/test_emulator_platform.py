"""hailo_platform as python3-hailort installs it, backed by the same chip as hailortcli."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lab.agent.parsers import parse_benchmark
from lab.virtual.emulator import packages
from lab.virtual.emulator.hailo_emu import platform_api as hp
from lab.virtual.emulator.sandbox import Sandbox, release_for


@pytest.fixture
def sb(tmp_path, monkeypatch):
    """A booted default Hailo-10H on 5.3.0 whose environment this process uses."""
    box = Sandbox(tmp_path / "unit", time_scale=0.0, fake_clock=False)
    box.reboot()
    for key, value in box.env.items():
        monkeypatch.setenv(key, value)
    hp.set_library_version("5.3.0")
    return box


def configure_and_infer(hef: str, frames: int = 10) -> None:
    """One VDevice, one configure, some frames: the usual application cycle."""
    params = hp.VDevice.create_params()
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    with hp.VDevice(params) as vdevice:
        model = vdevice.create_infer_model(hef)
        model.set_batch_size(1)
        model.input().set_format_type(hp.FormatType.UINT8)
        with model.configure() as configured:
            bindings = configured.create_bindings()
            bindings.input().set_buffer(np.zeros(model.input().shape, np.uint8))
            bindings.output().set_buffer(np.empty(model.output().shape, np.uint8))
            for _ in range(frames):
                configured.run([bindings], 1000)
            configured.run_async([bindings]).wait(1000)


def test_configures_through_python_count_for_the_leak(sb):
    hef = sb.hef("yolo26s_hailo10h.hef")
    for _ in range(12):
        configure_and_infer(hef)
    r = sb.benchmark()
    assert abs(parse_benchmark(r.err + r.out).fps - 122.8) < 1.0  # the 13th configure falls back


def test_device_control(sb):
    assert hp.Device.scan() == ["0001:01:00.0"]
    device = hp.Device("0001:01:00.0")
    info = device.control.identify()
    assert (info.device_architecture, info.firmware_version) == ("HAILO10H", "5.3.0")
    temp = device.control.get_chip_temperature()
    assert 55 < temp.ts0_temperature < 65 and abs(temp.ts0_temperature - temp.ts1_temperature) < 1
    assert device.get_chip_temperature().ts1_temperature == pytest.approx(temp.ts1_temperature, abs=0.5)


def test_vdevice_is_exclusive_and_errors_carry_the_status(sb, capfd):
    with hp.VDevice() as vdevice:
        assert vdevice.get_physical_devices_ids() == ["0001:01:00.0"]
        with pytest.raises(hp.HailoRTStatusException) as info:
            hp.VDevice()  # the device lock is per open file: a second VDevice is refused like a second process
    assert info.value.code == 74
    assert "HAILO_OUT_OF_PHYSICAL_DEVICES(74)" in capfd.readouterr().err
    sb.modprobe(remove=True)
    with pytest.raises(hp.HailoRTStatusException) as info:
        hp.Device.scan()
    assert info.value.status == "HAILO_PCIE_DRIVER_NOT_INSTALLED"


def test_inference_heats_the_chip(sb):
    before = hp.Device().get_chip_temperature().ts0_temperature
    configure_and_infer(sb.hef("yolo26s_hailo10h.hef"), frames=125 * 120)
    after = hp.Device().get_chip_temperature().ts0_temperature
    assert after > before + 5


def test_installed_package_layout_imports_with_debian_python(tmp_path, sb):
    root = tmp_path / "root"
    for path, (data, _mode) in packages.python_package(release_for("5.3.0")).files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    code = textwrap.dedent(f"""
        import hailo_platform
        import numpy
        from hailo_platform import VDevice, Device, HEF
        assert hailo_platform.__version__ == "5.3.0", hailo_platform.__version__
        assert HEF({sb.hef("yolo26s_hailo10h.hef")!r}).get_network_group_names() == ["yolo26s"]
        with VDevice(VDevice.create_params()) as vd:
            model = vd.create_infer_model({sb.hef("yolo26s_hailo10h.hef")!r})
            with model.configure() as cm:
                cm.run([cm.create_bindings(input_buffers={{model.input().name: numpy.zeros(model.input().shape, "uint8")}},
                                           output_buffers={{model.output().name: numpy.empty(model.output().shape, "uint8")}})],
                       1000)
        print(Device().control.identify().firmware_version)
    """)
    env = {**os.environ, **sb.env, "PYTHONPATH": str(root / "usr/lib/python3/dist-packages")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "5.3.0\n"
    assert sb.state()["configures"] == 1


# --- bindings need buffers, as on real pyhailort (hailort 4.20-5.2: pyhailort.py ConfiguredInferModel.run_async,
# bindings/python/src/infer_model_api.cpp run_async, libhailort infer_model.cpp validate_bindings) ----------------

def _configured(sb):
    """An open VDevice, the field report's model on it and that model configured."""
    vdevice = hp.VDevice()
    model = vdevice.create_infer_model(sb.hef("yolo26s_hailo10h.hef"))
    return vdevice, model, model.configure()


def test_bindings_without_buffers_fail_at_run_as_on_real_pyhailort(sb, capfd):
    vdevice, model, configured = _configured(sb)
    with vdevice, configured:
        with pytest.raises(hp.HailoRTInvalidOperationException) as info:
            configured.run([configured.create_bindings()], 1000)  # what the agent did before
        assert str(info.value) == "Invalid operation. See hailort.log for more information"
        assert isinstance(info.value, hp.HailoRTException)
        assert ("[HailoRT] [error] CHECK failed - Trying to get buffer as view for 'yolo26s/output_layer1', "
                "while it is not configured as view") in capfd.readouterr().err
        only_output = configured.create_bindings(
            output_buffers={model.output().name: np.empty(model.output().shape, np.uint8)})
        with pytest.raises(hp.HailoRTNotFoundException, match="^Item not found. See hailort.log"):
            configured.run_async([only_output]).wait(1000)
        assert "CHECK failed - Couldnt find input buffer for 'yolo26s/input_layer1'" in capfd.readouterr().err
    assert sb.state()["configures"] == 1


def test_buffers_must_be_numpy_arrays_of_the_frame_size(sb, capfd):
    vdevice, model, configured = _configured(sb)
    with vdevice, configured:
        assert model.input().shape == (640, 640, 3) and model.input().format.type.name == "UINT8"
        bindings = configured.create_bindings()
        with pytest.raises(AttributeError):
            bindings.input().set_buffer(bytearray(640 * 640 * 3))  # pyhailort reads buffer.flags
        with pytest.raises(hp.HailoRTException, match="C_CONTIGUOUS"):
            bindings.input().set_buffer(np.zeros((640, 640, 6), np.uint8)[:, :, ::2])
        bindings.input().set_buffer(np.zeros(model.input().shape, np.float32))  # 4 bytes per element: too big
        bindings.output().set_buffer(np.empty(model.output().shape, np.uint8))
        with pytest.raises(hp.HailoRTInvalidOperationException):
            configured.run([bindings], 1000)
        assert ("Input buffer size 4915200 is different than expected 1228800 for input 'yolo26s/input_layer1'"
                in capfd.readouterr().err)
        bindings.input().set_buffer(np.zeros(model.input().shape, np.uint8))
        configured.run([bindings], 1000)
        assert bindings.output().get_buffer().shape == model.output().shape
