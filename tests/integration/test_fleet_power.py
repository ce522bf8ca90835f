"""The virtual fleet behind Debian's real pdudaemon (issue 14): power cut, restore and cycle through its
HTTP API, a hung reboot recovered by a cycle, and the emulator telling a cold power cycle from a warm
reboot on a unit whose HAT keeps power through a warm reboot."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import yaml

from lab.virtual.emulator.packaging import build_hailo_files
from lab.virtual.fleet import Fleet
from lab.virtual.pdu import PDU_NAME, PDU_PORT
from tests.conftest import fleet_leftovers, require_fleet, ssh_cmd

pytestmark = pytest.mark.fleet
NET = "127.77.172"
PDU = f"http://{NET}.254:{PDU_PORT}"
PROFILE = """
nodes:
  node1: {chip: hailo10h, warm_reboot_keeps_power: true}
  node2: {chip: hailo10h}
"""
DEBS = ("hailort_5.3.0_all.deb", "hailort-pcie-driver_5.3.0_all.deb")  # 5.3.0's chip reset bricks a Hailo-10H
BOOT_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def power_fleet(tmp_path_factory):
    """A 2-node fleet (time scale 0.02) with its pdudaemon; down and checked for leftovers afterwards."""
    require_fleet()
    base = tmp_path_factory.mktemp("power")
    (base / "profile.yaml").write_text(PROFILE)
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "virtual.yml"
    prefix = None
    try:
        fleet.up(profile=base / "profile.yaml", inventory=inventory, time_scale=0.02)
        prefix = f"lab-{fleet.meta()['id']}-"
        fleet.inventory = inventory
        fleet.base = base
        yield fleet
    finally:
        fleet.down()
        if prefix:
            assert fleet_leftovers(fleet, prefix) == []
        assert not inventory.exists()


def addr(node: str) -> str:
    return f"{NET}.{node.removeprefix('node')}"


def sh(fleet: Fleet, node: str, command: str, timeout: int = 30):
    return ssh_cmd(fleet, addr(node), command, timeout=timeout)


def boot_id(fleet: Fleet, node: str) -> str | None:
    """The node's boot_id over SSH, None when it does not answer."""
    try:
        result = sh(fleet, node, "cat /proc/sys/kernel/random/boot_id", timeout=5)
    except Exception:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def pdu(action: str, node: str, **params) -> None:
    """One request to the fleet's pdudaemon over its HTTP API; it is queued (200), not yet done."""
    r = httpx.get(f"{PDU}/power/control/{action}",
                  params={"hostname": PDU_NAME, "port": node.removeprefix("node"), **params}, timeout=10)
    assert r.status_code == 200 and "OK" in r.text, (r.status_code, r.text)


def wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def new_boot(fleet: Fleet, node: str, old: str) -> str:
    """Wait until the node answers SSH with a boot_id other than `old`."""
    return wait(lambda: (b := boot_id(fleet, node)) and b != old and b, BOOT_TIMEOUT, f"{node} to boot again")


def test_inventory_has_lab_power_and_status_shows_pdu(power_fleet):
    inv = yaml.safe_load(power_fleet.inventory.read_text())
    hosts = inv["virtual"]["hosts"]
    for i, node in enumerate(("node1", "node2"), start=1):
        assert hosts[node]["lab_power"] == {"driver": "pdudaemon", "daemon": f"{NET}.254:{PDU_PORT}",
                                            "pdu": PDU_NAME, "port": i}
    status = power_fleet.pdu_status()
    assert status["address"] == f"{NET}.254:{PDU_PORT}" and status["pid"]


def test_off_then_on_through_pdudaemon(power_fleet):
    fleet = power_fleet
    before1, before2 = boot_id(fleet, "node1"), boot_id(fleet, "node2")
    assert before1 and before2
    pdu("off", "node1")
    wait(lambda: boot_id(fleet, "node1") is None and fleet.power("node1", "status") == "off", 30, "node1 off")
    assert {s.name: s.state for s in fleet.status()}["node1"] == "down"
    pdu("on", "node1")
    new_boot(fleet, "node1", before1)
    assert fleet.power("node1", "status") == "on"
    assert boot_id(fleet, "node2") == before2  # the other outlet was never touched


def test_reboot_request_cycles_the_node(power_fleet):
    fleet = power_fleet
    before = boot_id(fleet, "node2")
    pdu("reboot", "node2", delay=1)
    new_boot(fleet, "node2", before)


def test_hung_reboot_recovered_by_a_cycle(power_fleet):
    fleet = power_fleet
    before = boot_id(fleet, "node2")
    fleet.fault("node2", "hang-reboot")
    sh(fleet, "node2", "systemctl reboot --no-block")
    wait(lambda: {s.name: s for s in fleet.status()}["node2"].note, 60, "node2 hung in its reboot")
    time.sleep(2)
    assert boot_id(fleet, "node2") is None  # it stays hung
    pdu("reboot", "node2", delay=1)
    new_boot(fleet, "node2", before)
    assert not fleet.node("node2").hang_flag.exists()


def _install_530(fleet: Fleet, node: str) -> None:
    """HailoRT 5.3.0 from Hailo-style files (a shortcut around the provision role, which other tests cover)."""
    for name in DEBS:
        shutil.copy(fleet.base / "hailo-files" / name, fleet.node(node).merged / "root" / name)
    debs = " ".join(f"/root/{name}" for name in DEBS)
    result = sh(fleet, node, "apt-get update -q && " f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {debs}"
                             " && modprobe hailo1x_pci && hailortcli fw-control identify", timeout=240)
    assert result.returncode == 0, (node, result.stdout[-2000:], result.stderr[-2000:])


def identify(fleet: Fleet, node: str):
    return sh(fleet, node, "modprobe hailo1x_pci; hailortcli fw-control identify")


def brick(fleet: Fleet, node: str) -> None:
    reset = sh(fleet, node, "hailortcli fw-control reset --reset-type chip")
    assert reset.returncode == 0, reset
    assert identify(fleet, node).returncode != 0  # the 5.3.0 firmware re-upload failed: the chip is gone


def warm_reboot(fleet: Fleet, node: str) -> None:
    before = boot_id(fleet, node)
    sh(fleet, node, "systemctl reboot --no-block")
    new_boot(fleet, node, before)


def test_cold_vs_warm(power_fleet):
    fleet = power_fleet
    build_hailo_files(fleet.base / "hailo-files")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda n: _install_530(fleet, n), ("node1", "node2")))
    epoch = (fleet.node("node1").hw / "power-epoch").read_text()

    # The default unit: a warm reboot restores a bricked chip.
    brick(fleet, "node2")
    warm_reboot(fleet, "node2")
    ok = identify(fleet, "node2")
    assert ok.returncode == 0 and "Executing on device" in ok.stdout, ok

    # The unit whose HAT keeps power: a warm reboot leaves it bricked, and keeps the power epoch...
    brick(fleet, "node1")
    warm_reboot(fleet, "node1")
    assert (fleet.node("node1").hw / "power-epoch").read_text() == epoch
    still = identify(fleet, "node1")
    assert still.returncode != 0, still
    # ... and a power cycle through pdudaemon restores it (a new power epoch).
    before = boot_id(fleet, "node1")
    pdu("reboot", "node1", delay=1)
    new_boot(fleet, "node1", before)
    assert int((fleet.node("node1").hw / "power-epoch").read_text()) > int(epoch)
    back = identify(fleet, "node1")
    assert back.returncode == 0, back
