"""The emulated unit's kernel side (hailo_emu/kernel.py): the sysfs subset, meminfo and vcgencmd the agent
reads on a virtual node, kept by the emulated driver as Linux and the Pi firmware format them; the second
client a unit profile can give a node."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

from lab.agent import kernel as agent_kernel
from lab.virtual.emulator import nodevars
from lab.virtual.emulator.hailo_emu import kernel, shims
from lab.virtual.emulator.sandbox import Sandbox
from lab.virtual.emulator.unit import validate_unit
from tests.conftest import PROJECT


def _dev(sb: Sandbox) -> str:
    return os.path.join(sb.paths.state_dir, "sys/bus/pci/devices/0001:01:00.0")


def test_sysfs_follows_the_driver_and_the_bus(tmp_path):
    sb = Sandbox(tmp_path, unit={"chip": "hailo10h"})
    sb.modprobe()
    root = os.path.join(sb.paths.state_dir, "sys")
    dev = _dev(sb)
    files = {name: open(os.path.join(dev, name)).read() for name in
             ("vendor", "device", "current_link_speed", "current_link_width", "max_link_speed", "max_link_width",
              "power_state", "link/l0s_aspm", "link/l1_aspm")}
    assert files == {"vendor": "0x1e60\n", "device": "0x45c4\n", "current_link_speed": "5.0 GT/s PCIe\n",
                     "current_link_width": "1\n", "max_link_speed": "8.0 GT/s PCIe\n", "max_link_width": "4\n",
                     "power_state": "D0\n", "link/l0s_aspm": "0\n", "link/l1_aspm": "1\n"}
    assert open(os.path.join(root, "module/pcie_aspm/parameters/policy")).read() == (
        "[default] performance powersave powersupersave\n")
    assert os.path.islink(os.path.join(root, "bus/pci/drivers/hailo1x_pci/0001:01:00.0"))
    assert agent_kernel.bound_driver(dev) == "hailo1x_pci"
    sb.modprobe(remove=True)
    assert agent_kernel.bound_driver(dev) is None and open(os.path.join(dev, "power_state")).read() == "D3hot\n"
    assert not os.path.exists(os.path.join(root, "bus/pci/drivers/hailo1x_pci"))
    sb.modprobe()
    sb.pcie("remove")
    assert agent_kernel.find_devices(root) == []
    sb.pcie("rescan")
    assert [d["device"] for d in agent_kernel.find_devices(root)] == ["0x45c4"]


def test_a_profile_degrades_the_link(tmp_path):
    sb = Sandbox(tmp_path, unit=validate_unit({"chip": "hailo8", "pcie_speed_gts": 2.5}).model_dump(exclude_none=True),
                 version="4.23.0")
    sb.modprobe()
    root = os.path.join(sb.paths.state_dir, "sys")
    (found,) = agent_kernel.find_devices(root)
    assert found["device"] == "0x2864"
    assert agent_kernel.read_link(root, found["path"]) == {
        "pcie_speed": 2.5, "pcie_width": 1, "pcie_max_speed": 8.0, "pcie_max_width": 4, "power_state": "D0",
        "aspm": "default L1"}


def test_meminfo_has_the_pis_cma_lines_in_the_kernels_format(tmp_path):
    sb = Sandbox(tmp_path)
    sb.modprobe()
    text = open(os.path.join(sb.paths.state_dir, "proc/meminfo")).read()
    assert "CmaTotal:          65536 kB\nCmaFree:           55296 kB\n" in text
    assert text.count("CmaTotal:") == 1
    assert kernel.meminfo_text("MemTotal:        8245360 kB\nCmaTotal:              0 kB\nHugePages_Total:       0\n",
                               1000) == ("MemTotal:        8245360 kB\nCmaTotal:          65536 kB\n"
                                         "CmaFree:            1000 kB\nHugePages_Total:       0\n")


def test_vcgencmd_prints_as_the_firmware_does(tmp_path):
    sb = Sandbox(tmp_path)
    out = {}
    for args in (["measure_temp"], ["measure_clock", "arm"], ["get_throttled"], ["get_config", "int"]):
        buf = io.StringIO()
        out[" ".join(args)] = (shims.vcgencmd_main(args, chip=sb.chip, out=buf), buf.getvalue())
    assert agent_kernel.parse_measure_temp(out["measure_temp"][1]) == 48.0
    assert out["measure_clock arm"] == (0, "frequency(0)=2400000000\n")
    assert out["get_throttled"] == (0, "throttled=0x0\n")
    assert out["get_config int"][0] != 0


def test_unit_profile_fields_for_the_kernel_side():
    unit = validate_unit({"pcie_speed_gts": 5.0, "pcie_width": 1, "device_holder": "hailo-ollama.service"}).resolved()
    assert (unit["pcie_speed_gts"], unit["pcie_max_width"], unit["device_holder"]) == (5.0, 4, "hailo-ollama.service")
    for bad in ({"pcie_width": 3}, {"pcie_speed_gts": 7.0}, {"device_holder": "x; rm -rf /"},
                {"device_holder": "hailort"}):
        try:
            validate_unit(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_the_holder_generator_writes_a_service_wanted_at_boot(tmp_path):
    (tmp_path / "hw").mkdir()
    (tmp_path / "hw/unit.json").write_text(json.dumps({"chip": "hailo10h"}))
    assert shims.holder_generator_main([str(tmp_path / "gen")], hw_dir=str(tmp_path / "hw")) == 0
    assert not (tmp_path / "gen").exists()  # no holder: nothing generated
    (tmp_path / "hw/unit.json").write_text(json.dumps({"device_holder": "hailort.service"}))
    assert shims.holder_generator_main([str(tmp_path / "gen")], hw_dir=str(tmp_path / "hw")) == 0
    unit = (tmp_path / "gen/hailort.service").read_text()
    assert "ExecStart=/usr/lib/hailort-pcie-driver/emulator/hailo-emu-holder hailort\n" in unit
    assert os.readlink(tmp_path / "gen/multi-user.target.wants/hailort.service") == "../hailort.service"


def test_a_second_client_holds_the_device_and_is_seen_in_proc(tmp_path):
    sb = Sandbox(tmp_path, version="5.1.1", fake_clock=False, time_scale=0.001)
    sb.modprobe()
    env = {**os.environ, **sb.env, "PYTHONPATH": str(PROJECT)}
    holder = subprocess.Popen([sys.executable, "-c", "import sys\nfrom lab.virtual.emulator.hailo_emu.shims import "
                               "holder_main\nsys.exit(holder_main(['tetherbox']))"], env=env)
    try:
        for _ in range(100):
            found = agent_kernel.device_holders(sb.paths.dev_node)
            if found:
                break
            time.sleep(0.05)
        assert [(h["pid"], h["comm"]) for h in found] == [(holder.pid, "tetherbox")]
        busy = sb.benchmark("yolo26s_hailo10h.hef", 1)
        assert busy.rc != 0 and "HAILO_OUT_OF_PHYSICAL_DEVICES" in busy.err
    finally:
        holder.terminate()
        holder.wait(10)
    assert agent_kernel.device_holders(sb.paths.dev_node) == []


def test_virtual_and_real_nodes_name_the_kernel_interfaces():
    virtual, real = nodevars.virtual_node_vars(), nodevars.real_pi_vars()
    assert (virtual["lab_sysfs_root"], virtual["lab_meminfo"], virtual["lab_vcgencmd"]) == (
        "/run/hailo-emu/sys", "/run/hailo-emu/proc/meminfo", "hailo-emu-vcgencmd")
    assert (real["lab_sysfs_root"], real["lab_meminfo"], real["lab_vcgencmd"]) == ("/sys", "/proc/meminfo", "vcgencmd")
    assert {"lab_sysfs_root", "lab_meminfo", "lab_vcgencmd"} <= set(nodevars.KERNEL_INTERFACE_VARS)
    example = (PROJECT / "inventory/pis.example.yml").read_text()
    assert "lab_sysfs_root: /sys" in example and "0001:01:00.0" not in example  # no fixed PCI address
