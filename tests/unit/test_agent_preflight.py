"""The agent's pre-flight and per-run telemetry on this machine: a fake kernel view (sysfs subset, meminfo,
/dev/hailo0), stand-in systemctl/timedatectl/hailortcli, and real processes holding the device node."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lab.db.ingest import sample_row
from tests.unit.test_agent import fake_kernel, node, records, run_agent  # noqa: F401 - `node` is a fixture

BENCH = [{"kind": "benchmark", "hef": "resnet.hef", "runs": 3, "time_to_run": 15}]
# Verbatim line of a Hailo-10H's runtime log (hailortcli logs runtime, HailoRT 5.3.0)
ALLOC_FAILED = "hailo10 kern.err kernel: cma: cma_alloc: linux,cma: alloc failed, req-size: 256 pages, ret: -16\n"


def test_every_run_carries_link_cma_and_its_own_runtime_log(node):
    (node.parent / "alloc.txt").write_text(ALLOC_FAILED * 2)
    fake = node.parent / "bin" / "hailortcli"  # each benchmark logs two failures; a read drains the log
    fake.write_text(fake.read_text().replace(
        'if [ "$1" = logs ]; then cat "$LAB_FAKE_DIR/runtime.txt" 2>/dev/null; exit 0; fi',
        'if [ "$1" = logs ]; then cat "$LAB_FAKE_DIR/runtime.txt"; rm "$LAB_FAKE_DIR/runtime.txt"; exit 0; fi\n'
        'cat "$LAB_FAKE_DIR/alloc.txt" >> "$LAB_FAKE_DIR/runtime.txt"'))
    out = run_agent(node, BENCH)
    assert out["status"] == "ok"
    samples = [r for r in records(node) if r["kind"] == "sample"]
    assert [(r["pcie_speed"], r["pcie_width"], r["pcie_max_speed"], r["pcie_max_width"]) for r in samples] == [
        (5.0, 1, 8.0, 4)] * 3
    assert all(r["power_state"] == "D0" and r["aspm"] == "default L1" for r in samples)
    assert all((r["cma_free_kb"], r["cma_total_kb"]) == (58580, 65536) for r in samples)
    assert [r["cma_errors"] for r in samples] == [2, 2, 2]  # each read drains the log: each run its own
    names = [r["runtime_log"]["artifact"] for r in samples]
    assert names == [f"run7-soak-benchmark-0-run00{k}-runtime_log.txt" for k in (1, 2, 3)]
    assert (node / "artifacts" / names[0]).read_text() == ALLOC_FAILED * 2
    row = sample_row(samples[0], run_id=1)
    assert (row["pcie_speed"], row["pcie_width"], row["pcie_max_width"], row["power_state"], row["aspm"],
            row["cma_free_kb"], row["cma_total_kb"], row["cma_errors"]) == (5.0, 1, 4, "D0", "default L1", 58580,
                                                                           65536, 2)


def test_a_held_device_ends_the_phase_naming_the_holder(node):
    spec = fake_kernel(node.parent / "kernel")
    with open(spec["dev_node"]) as fh:
        holder = subprocess.Popen(["sleep", "60"], stdin=fh)
    try:
        out = run_agent(node, BENCH)
    finally:
        holder.kill()
        holder.wait()
    assert out["status"] == "infra_error"
    recs = records(node)
    preflight = next(r for r in recs if r["kind"] == "preflight")
    assert preflight["holders"] == [{"pid": holder.pid, "comm": "sleep", "unit": preflight["holders"][0]["unit"]}]
    end = recs[-1]
    assert end["kind"] == "phase_end" and end["status"] == "infra_error"
    assert end["error"].startswith(f"{_host()}: {spec['dev_node']} is held by sleep (pid {holder.pid}")
    assert end["error"].endswith("; stop it before measuring, or name its service in the phase's stop_services")
    assert not [r for r in recs if r["kind"] == "sample"]  # nothing was measured


def test_stop_services_frees_the_device_then_starts_it_again(node):
    spec = fake_kernel(node.parent / "kernel")
    with open(spec["dev_node"]) as fh:
        holder = subprocess.Popen(["sleep", "60"], stdin=fh)
    (node.parent / "holder.pid").write_text(str(holder.pid))
    (node.parent / "bin" / "systemctl").write_text(
        '#!/bin/sh\necho "$*" >> "$LAB_FAKE_DIR/systemctl.log"\n'
        'case "$1" in is-system-running) echo running;; is-active) echo inactive; exit 3;;\n'
        '  stop) kill "$(cat "$LAB_FAKE_DIR/holder.pid")";; esac\n')
    try:
        out = _run(node, BENCH, stop_services=["hailort.service"])
    finally:
        holder.kill()
        holder.wait()
    assert out["status"] == "ok"
    recs = records(node)
    preflight = next(r for r in recs if r["kind"] == "preflight")
    assert preflight["stopped_services"] == [{"service": "hailort.service", "rc": 0}] and preflight["holders"] == []
    assert len([r for r in recs if r["kind"] == "sample"]) == 3
    log = (node.parent / "systemctl.log").read_text().splitlines()
    assert "stop -- hailort.service" in log and log[-1] == "start -- hailort.service"  # argument lists, no shell
    assert [r for r in recs if r.get("step") == "restart_services"][0]["rc"] == 0


def test_a_chip_that_does_not_match_the_inventory_is_one_line(node):
    fake_kernel(node.parent / "kernel", device="0x2864")
    out = _run(node, BENCH, chip="hailo10h")
    assert out["status"] == "infra_error"
    assert records(node)[-1]["error"] == (
        f"{_host()}: the inventory says lab_chip hailo10h but the PCI device is 1e60:2864 (Hailo-8/8L); "
        f"fix lab_chip for {_host()} in the inventory")


def test_without_a_chip_in_the_inventory_the_stacks_chip_is_checked(node):
    spec = fake_kernel(node.parent / "kernel", device="0x2864")
    Path(spec["sysfs_root"], "bus/pci/devices/0001:01:00.0/driver").unlink()  # hailo1x_pci never binds a Hailo-8
    out = _run(node, BENCH, chip="hailo10h", inventory_chip=None, ready_timeout=60)
    assert out["status"] == "infra_error"
    end = records(node)[-1]
    assert end["error"] == (f"{_host()}: the stack is for hailo10h but the PCI device is 1e60:2864 (Hailo-8/8L); "
                            f"fix lab_chip for {_host()} in the inventory")
    assert next(r for r in records(node) if r["kind"] == "preflight")["waited_s"] < 5  # not the ready timeout


def test_a_node_that_never_gets_ready_says_what_is_missing(node):
    spec = fake_kernel(node.parent / "kernel")
    Path(spec["sysfs_root"], "bus/pci/devices/0001:01:00.0/driver").unlink()  # the driver never bound
    Path(spec["dev_node"]).unlink()
    out = run_agent(node, BENCH)
    assert out["status"] == "infra_error"
    assert records(node)[-1]["error"] == f"{_host()}: not ready after 2s: driver not bound, {spec['dev_node']} missing"
    preflight = next(r for r in records(node) if r["kind"] == "preflight")
    assert preflight["ready"] is False and "ready_s" not in preflight and preflight["waited_s"] >= 2


def test_a_device_whose_installed_driver_does_not_bind_is_the_devices_failure(node, tmp_path):
    """A bricked chip after a warm reboot: the boot finished, the driver is installed, the device is there but
    unbound. That is the device's outcome (device_error: the run goes on to a power cycle), not the node's."""
    spec = fake_kernel(node.parent / "kernel")
    Path(spec["sysfs_root"], "bus/pci/devices/0001:01:00.0/driver").unlink()  # the probe failed
    Path(spec["dev_node"]).unlink()
    modinfo = tmp_path / "modinfo"
    modinfo.write_text("#!/bin/sh\necho 5.3.0\n")  # the stack's driver is installed
    modinfo.chmod(0o755)
    out = _run(node, BENCH, ready_timeout=4, commands={"driver_version": [str(modinfo)]})
    assert out["status"] == "device_error"
    end = records(node)[-1]
    assert end["error"] == (f"{_host()}: the driver (hailo1x_pci) is installed but did not bind the Hailo device "
                            "after boot finished: its probe failed (see dmesg)")
    preflight = next(r for r in records(node) if r["kind"] == "preflight")
    assert preflight["device_failure"] is True and preflight["waited_s"] < 4  # not the whole ready timeout
    assert [r.get("skipped") for r in records(node) if r.get("step") == "benchmark"] == [True]


def test_no_hailo_device_at_all(node):
    spec = fake_kernel(node.parent / "kernel")
    Path(spec["sysfs_root"], "bus/pci/devices/0001:01:00.0/vendor").write_text("0x1de4\n")
    run_agent(node, BENCH)
    assert records(node)[-1]["error"] == (
        f"{_host()}: no Hailo PCI device (vendor 1e60) under {spec['sysfs_root']}/bus/pci/devices")


def test_a_ready_node_records_how_long_after_boot(node):
    run_agent(node, BENCH)
    preflight = next(r for r in records(node) if r["kind"] == "preflight")
    assert preflight["ready"] is True and preflight["ready_s"] > 0 and preflight["ntp_synchronized"] is True
    assert preflight["devices"] == [{"address": "0001:01:00.0", "device": "0x45c4"}]
    assert preflight["driver"] == "hailo1x_pci" and preflight["dev_node"] is True


def _host() -> str:
    import socket

    return socket.gethostname()


def _run(work: Path, steps: list[dict], **extra) -> dict:
    """run_agent with extra spec fields (stop_services, another chip)."""
    import sys

    from lab.bundle import build_bundle
    from tests.unit.test_agent import kernel_spec

    spec = {"campaign": "c1", "run_key": "7", "phase": "soak", "phase_index": 1, "time_scale": 0.001,
            "chip": "hailo10h", "steps": steps, "hef_dirs": [str(work)], **kernel_spec(work), **extra}
    path = work / "phase-1.json"
    path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(build_bundle(work.parent / "cache")), "run", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
