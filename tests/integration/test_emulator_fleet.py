"""The emulated Hailo-10H on a real 2-node virtual fleet (issue 3's "done when"), through apt, SSH and the roles.

One module-scoped fleet at time scale 0.01: node1 is the seed's unit (susceptible to the chip-side CMA
leak), node2 is not (`cma_leak: 0.0`). The tests run in file order and build on each other:
install -> soak from a fresh boot -> runtime log of that soak -> recovery actions (ending in a reboot)
-> version mismatch and restore on node2 -> purge. A test whose prerequisite failed is skipped.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.agent.parsers import parse_dmesg, parse_runtime_log
from lab.ansible import run_playbook
from lab.inventory import load as load_inventory
from lab.sources import installs_for
from lab.stack import load_stack
from lab.virtual.emulator.packaging import build_hailo_files
from lab.virtual.fleet import Fleet
from tests.conftest import PROJECT, fleet_leftovers, require_fleet
from tests.integration.helpers_emulator import (
    RUN_SECONDS,
    SEED,
    bench_loop,
    bench_once,
    contains_in_order,
    driver_messages,
    fixture_block,
    fixture_lines,
    kernel_log,
    node_vars,
    ok,
    put_file,
    put_model,
    quote,
    sh,
)

pytestmark = pytest.mark.fleet

NET = "127.77.210"
TIME_SCALE = 0.01
SUSCEPTIBLE, IMMUNE = "node1", "node2"
PROFILE = """\
description: the seed's susceptible Hailo-10H and one that is not
nodes:
  node1: {chip: hailo10h}
  node2: {chip: hailo10h, cma_leak: 0.0}
"""
NOMINAL_FPS = 125.0
PLAYBOOK_TIMEOUT = 300
PURGE_PLAYBOOK = Path(__file__).resolve().parent / "purge_hailo.yml"
# h10-5.3.0 comes as Hailo's files (the emulated archive carries 5.1.1 only): these packages, held
PINS = {"hailort": "5.3.0", "hailort-pcie-driver": "5.3.0"}


@dataclass
class EmuFleet:
    """The module's fleet, its inventory, the 5.3.0 stack, and what earlier tests left for later ones."""

    fleet: Fleet
    inventory: Path
    stack: dict
    files: Path
    done: set = field(default_factory=set)
    soak: dict = field(default_factory=dict)

    def addr(self, node: str) -> str:
        return f"{NET}.{node.removeprefix('node')}"

    def needs(self, *steps: str) -> None:
        """Skip when an earlier test this one builds on did not pass."""
        missing = [s for s in steps if s not in self.done]
        if missing:
            pytest.skip(f"needs the earlier test(s): {', '.join(missing)}")

    def provision(self, limit: str | None = None):
        """`lab provision h10-5.3.0` through the real role (playbooks/provision.yml)."""
        inv = load_inventory(str(self.inventory))
        installs = installs_for(load_stack(PROJECT / "stacks" / "h10-5.3.0.yaml"), list(inv.hosts.values()),
                                str(self.inventory))
        return run_playbook("provision.yml", self.inventory,
                            extravars={"lab_stack": self.stack, "lab_installs": installs, "lab_clean": False},
                            limit=limit, timeout=PLAYBOOK_TIMEOUT)

    def loops(self, runs: int) -> dict:
        """`runs` back-to-back benchmarks on both nodes at once, each looping on its node (the seed's repro)."""
        nodes = (SUSCEPTIBLE, IMMUNE)
        with ThreadPoolExecutor(len(nodes)) as pool:
            loops = pool.map(lambda n: bench_loop(self.fleet, self.addr(n), runs, wait_boot=True), nodes)
            return dict(zip(nodes, loops))

    def reboot(self, limit: str | None = None) -> None:
        """Reboot through the stock ansible.builtin.reboot (playbooks/smoke.yml); checks the new boot_id."""
        result = run_playbook("smoke.yml", self.inventory, limit=limit, timeout=PLAYBOOK_TIMEOUT)
        assert result.status == "successful" and result.failed_hosts == [], result.hosts
        for host in result.hosts.values():
            before, after = host.facts["lab_boot_ids"]
            assert before != after


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    """A 2-node fleet (susceptible + immune Hailo-10H) at time scale 0.01; down and checked afterwards."""
    require_fleet()
    base = tmp_path_factory.mktemp("emufleet")
    profile = base / "profile.yaml"
    profile.write_text(PROFILE)
    fleet = Fleet(root=base / "fleet", net=NET)
    inventory = base / "inventory" / "inv.yml"
    build_hailo_files(base / "hailo-files")  # beside the inventory (lab_hailo_sources: ../hailo-files)
    stack = load_stack(PROJECT / "stacks" / "h10-5.3.0.yaml").model_dump(mode="json")
    prefix = None
    try:
        fleet.up(nodes=2, profile=profile, time_scale=TIME_SCALE, inventory=inventory)
        prefix = f"lab-{fleet.meta()['id']}-"
        yield EmuFleet(fleet, inventory, stack, base / "hailo-files")
    finally:
        fleet.down()
        if prefix:
            assert fleet_leftovers(fleet, prefix) == []
        assert not inventory.exists()


def _installed(emu: EmuFleet, node: str) -> dict[str, str]:
    """Installed Hailo packages of a node: name -> version (dpkg's view)."""
    names = quote(PINS)
    fmt = "'${Package} ${Version} ${db:Status-Status}\\n'"
    out = sh(emu.fleet, emu.addr(node), f"dpkg-query -W -f={fmt} {names}")
    return {p: v for p, v, status in (line.split() for line in out.stdout.splitlines()) if status == "installed"}


def _holds(emu: EmuFleet, node: str) -> list[str]:
    return sorted(ok(emu.fleet, emu.addr(node), "apt-mark showhold").split())


def test_install_stack_with_apt_pinned_held_idempotent(emu):
    """The real hailo_stack role installs 5.3.0 from Hailo-style files (debs and the wheel), holds them, idempotently."""
    pins = PINS
    first = emu.provision()
    assert first.status == "successful" and first.failed_hosts == [], first.hosts
    assert sorted(first.hosts) == [SUSCEPTIBLE, IMMUNE]
    assert all(h.changed > 0 for h in first.hosts.values())
    for node in (SUSCEPTIBLE, IMMUNE):
        assert _installed(emu, node) == pins
        assert _holds(emu, node) == sorted(pins)
        assert ok(emu.fleet, emu.addr(node), "hailortcli --version").strip() == "HailoRT-CLI version 5.3.0"
        identify = ok(emu.fleet, emu.addr(node), "hailortcli fw-control identify")
        assert "Firmware Version: 5.3.0 (release,app)" in identify
        put_model(emu.fleet, emu.addr(node))
    second = emu.provision()
    assert second.status == "successful" and second.failed_hosts == [], second.hosts
    assert {name: h.changed for name, h in second.hosts.items()} == {SUSCEPTIBLE: 0, IMMUNE: 0}
    emu.done.add("install")


def test_soak_from_fresh_boot_follows_seed(emu):
    """25 back-to-back 15 s benchmarks from a fresh boot: node1 follows the seed's table, node2 stays at 125."""
    emu.needs("install")
    emu.reboot()
    loops = emu.loops(25)
    for node, loop in loops.items():
        assert all(r.format == "hailort-5" and r.network == "yolo26s" and r.device == "0001:01:00.0"
                   for r in loop.runs), (node, loop.texts[0])
        assert all(r.fps is not None and r.temperature is not None for r in loop.runs), node
    sus = loops[SUSCEPTIBLE].runs
    fps_dev = [r.fps - want for r, (want, _) in zip(sus, SEED)]
    temp_dev = [r.temperature.mean - want for r, (_, want) in zip(sus, SEED)]
    table = "\n".join(f"run {i:2}: fps {r.fps:7.2f} (seed {f:6.2f}) temp {r.temperature.mean:6.2f} (seed {t:5.2f})"
                      for i, (r, (f, t)) in enumerate(zip(sus, SEED), start=1))
    assert max(map(abs, fps_dev)) <= 2.0, table
    assert max(map(abs, temp_dev)) <= 1.5, table
    imm = [r.fps for r in loops[IMMUNE].runs]
    assert all(abs(fps - NOMINAL_FPS) <= 1.0 for fps in imm), imm
    # Time compression: 25 x 15 s nominal ran in a small fraction of that, yet not faster than the scaled sleeps.
    nominal = 25 * RUN_SECONDS
    for node, loop in loops.items():
        assert nominal * TIME_SCALE <= loop.wall_s < 0.2 * nominal, (node, loop.wall_s)
    emu.soak = {"last_fps": sus[-1].fps, "last_temp": sus[-1].temperature.mean,
                "wall_s": {n: round(loop.wall_s, 2) for n, loop in loops.items()}}
    print(f"\nsoak: max |fps - seed| {max(map(abs, fps_dev)):.2f}, max |temp - seed| {max(map(abs, temp_dev)):.2f}, "
          f"immune {min(imm):.2f}..{max(imm):.2f} fps, wall {emu.soak['wall_s']} s for {nominal} s nominal")
    emu.done.add("soak")


def test_runtime_log_shows_cma_failures_once_fragmented(emu):
    """`hailortcli logs runtime` after the soak: from configure 13 on, each configure logs the cma_alloc failure."""
    emu.needs("soak")
    title = "chip-side runtime log (hailortcli logs runtime) on a degrading Hailo-10H, 5.3.0"
    seed_line = next(line for line in fixture_block("errors_verbatim.txt", title) if "cma_alloc" in line)
    text = ok(emu.fleet, emu.addr(SUSCEPTIBLE), "hailortcli logs runtime")
    assert seed_line in text.splitlines()
    log = parse_runtime_log(text)
    assert log.host == "hailo10" and log.firmware_version == "5.3.0"
    assert log.os_version.startswith("Linux 5.15.325.15.32-yocto-standard-01685-g4cd9cfd0e6e7")
    assert log.configure_count == 25 and log.cma_failure_count == 13
    assert {(f.region, f.pages, f.ret) for f in log.cma_failures} == {("linux,cma", 256, -16)}
    events = [e.event for e in log.entries if e.event in ("configure", "cma_alloc_failed")]
    assert events[:12] == ["configure"] * 12  # the pool holds 12 chunks: the first failure is at configure 13
    assert events[12:] == ["cma_alloc_failed", "configure"] * 13
    assert all(44 < ms < 47 for ms in log.configure_ms)
    assert ok(emu.fleet, emu.addr(SUSCEPTIBLE), "hailortcli logs runtime") == ""  # the log drains
    immune = parse_runtime_log(ok(emu.fleet, emu.addr(IMMUNE), "hailortcli logs runtime"))
    assert immune.configure_count == 25 and immune.cma_failure_count == 0


def _dev_node(emu: EmuFleet, node: str) -> bool:
    return sh(emu.fleet, emu.addr(node), "test -e /dev/hailo0").returncode == 0


def _still_degraded(emu: EmuFleet, before: float, what: str) -> float:
    """One benchmark after a recovery action: it must not have come back (at most 1 fps above `before`)."""
    rc, text, result = bench_once(emu.fleet, emu.addr(SUSCEPTIBLE))
    assert rc == 0, text
    assert result.fps <= before + 1.0 and result.fps < 0.7 * NOMINAL_FPS, f"{what} recovered: {before} -> {result.fps}"
    return result.fps


def test_recovery_semantics_only_reboot_recovers(emu):
    """Cooldown, driver reload and PCIe remove/rescan keep the degradation; chip reset bricks; reboot recovers."""
    emu.needs("soak")
    node, addr, fleet = SUSCEPTIBLE, emu.addr(SUSCEPTIBLE), emu.fleet
    hv = node_vars(emu.inventory, node)
    module = hv["lab_driver_module"]
    assert module == "hailo1x_pci"
    fps = emu.soak["last_fps"]

    # Cooldown: ~4 nominal minutes of idle; the chip cools but keeps its throughput loss.
    ok(fleet, addr, f"sleep {240 * TIME_SCALE + 0.25:.2f}")
    rc, text, cooled = bench_once(fleet, addr)
    assert rc == 0, text
    assert cooled.temperature.mean < emu.soak["last_temp"] - 5, (cooled.temperature, emu.soak["last_temp"])
    assert cooled.fps <= fps + 1.0 and cooled.fps < 0.7 * NOMINAL_FPS, cooled.fps
    fps = cooled.fps

    # Driver reload: /dev/hailo0 goes and comes back; the chip keeps its firmware (and its state).
    seen = len(kernel_log(fleet, addr, emu.inventory, node))
    ok(fleet, addr, f"modprobe -r {module}")
    assert not _dev_node(emu, node)
    ok(fleet, addr, f"modprobe {module}")
    assert _dev_node(emu, node)
    new = kernel_log(fleet, addr, emu.inventory, node)[seen:]
    messages = driver_messages(new)
    assert "hailo1x 0001:01:00.0: Remove: Releasing board" in messages
    assert "hailo1x: Init module. driver version 5.3.0" in messages
    reload = parse_dmesg("\n".join(new))
    assert reload.outcome == "ready" and reload.firmware_already_loaded and reload.firmware_load_ms == 0
    assert reload.driver_version == "5.3.0" and reload.module == module
    fps = reloaded = _still_degraded(emu, fps, "driver reload")

    # PCIe remove + rescan through the inventory's commands.
    seen = len(kernel_log(fleet, addr, emu.inventory, node))
    ok(fleet, addr, hv["lab_pcie_remove_cmd"])
    assert not _dev_node(emu, node)
    ok(fleet, addr, hv["lab_pcie_rescan_cmd"])
    assert _dev_node(emu, node)
    rescan = parse_dmesg("\n".join(kernel_log(fleet, addr, emu.inventory, node)[seen:]))
    assert rescan.outcome == "ready" and rescan.firmware_already_loaded and rescan.firmware_load_ms == 0
    rescanned = _still_degraded(emu, fps, "PCIe rescan")
    print(f"\nrecovery: after soak {emu.soak['last_fps']:.2f} fps / {emu.soak['last_temp']:.2f} C; "
          f"cooldown {cooled.fps:.2f} fps / {cooled.temperature.mean:.2f} C; "
          f"driver reload {reloaded:.2f}; PCIe rescan {rescanned:.2f}")

    # Chip reset on 5.3.0: "successful", then the firmware re-upload times out and the device is gone.
    seen = len(kernel_log(fleet, addr, emu.inventory, node))
    reset = ok(fleet, addr, "hailortcli fw-control reset --reset-type chip")
    assert reset.splitlines() == ["Executing on device: 0001:01:00.0", "Board has been reset successfully"]
    assert not _dev_node(emu, node)
    rc, text, bricked = bench_once(fleet, addr)
    assert rc == 64 and bricked.fps is None, text
    assert bricked.statuses == {"HAILO_PCIE_DRIVER_NOT_INSTALLED": 64}, text
    new = kernel_log(fleet, addr, emu.inventory, node)[seen:]
    assert contains_in_order(driver_messages(new), fixture_lines("dmesg_h10_5.3.0_chip_reset_failure.txt")), new
    failure = parse_dmesg("\n".join(new))
    assert failure.outcome == "failed" and failure.probe_failed and -110 in failure.error_codes
    # ... and reloading the driver does not bring it back.
    ok(fleet, addr, f"modprobe -r {module}; modprobe {module}")
    assert not _dev_node(emu, node)

    # Reboot (both nodes): each starts at 125 again; node1 follows the seed's first runs.
    emu.reboot()
    loops = emu.loops(3)
    for n, loop in loops.items():
        assert all(abs(r.fps - NOMINAL_FPS) <= 1.0 for r in loop.runs), (n, [r.fps for r in loop.runs])
    for r, (want_fps, want_temp) in zip(loops[SUSCEPTIBLE].runs, SEED):
        assert abs(r.fps - want_fps) <= 2.0 and abs(r.temperature.mean - want_temp) <= 1.5, (r.fps, r.temperature)
    print("after reboot: " + "; ".join(f"{n} {[round(r.fps, 2) for r in loop.runs]}" for n, loop in loops.items()))


def test_version_mismatch_then_restore(emu):
    """hailort 5.3.0 with hailort-pcie-driver 5.2.0 fails with the verbatim HAILO_INVALID_DRIVER_VERSION(76) lines."""
    emu.needs("install")
    node, addr, fleet = IMMUNE, emu.addr(IMMUNE), emu.fleet
    hv = node_vars(emu.inventory, node)
    ok(fleet, addr, "apt-mark unhold hailort hailort-pcie-driver")
    put_file(fleet, addr, emu.files / "hailort-pcie-driver_5.2.0_all.deb", "/tmp/hailort-pcie-driver_5.2.0_all.deb")
    ok(fleet, addr, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades --no-install-recommends "
                    "/tmp/hailort-pcie-driver_5.2.0_all.deb", timeout=120)
    assert _installed(emu, node)["hailort-pcie-driver"] == "5.2.0"
    assert ok(fleet, addr, hv["lab_driver_version_cmd"]).strip() == "5.2.0"
    # A package change does not replace the loaded module: the mismatch shows from the next driver load.
    assert ok(fleet, addr, hv["lab_loaded_driver_version_cmd"]).strip() == "5.3.0"
    ok(fleet, addr, f"modprobe -r {hv['lab_driver_module']}; modprobe {hv['lab_driver_module']}")
    assert ok(fleet, addr, hv["lab_loaded_driver_version_cmd"]).strip() == "5.2.0"
    want = [line.replace("4.18.0", "5.2.0").replace("4.19.0", "5.3.0")
            for line in fixture_block("errors_verbatim.txt", "HailoRT library/driver version mismatch")]
    rc, text, result = bench_once(fleet, addr)
    assert rc == 76 and text.splitlines() == want, text
    assert result.fps is None and result.statuses == {"HAILO_INVALID_DRIVER_VERSION": 76}
    scan = sh(fleet, addr, "hailortcli scan 2>&1")
    assert scan.returncode == 76 and scan.stdout.splitlines() == want, scan.stdout

    restored = emu.provision(limit=node)
    assert restored.status == "successful" and restored.failed_hosts == [], restored.hosts
    assert _installed(emu, node) == PINS
    assert _holds(emu, node) == sorted(PINS)
    assert ok(fleet, addr, hv["lab_loaded_driver_version_cmd"]).strip() == "5.3.0"
    rc, text, result = bench_once(fleet, addr)
    assert rc == 0 and abs(result.fps - NOMINAL_FPS) <= 1.0, text


def test_purge_removes_every_hailo_file(emu):
    """roles/hailo_purge: every file the packages installed is gone and the holds are released."""
    emu.needs("install")
    names = quote(PINS)
    before = {n: ok(emu.fleet, emu.addr(n), f"dpkg -L {names}").splitlines() for n in (SUSCEPTIBLE, IMMUNE)}
    assert all("/lib/firmware/hailo/hailo10h/scu_fw.bin" in paths for paths in before.values())
    result = run_playbook(PURGE_PLAYBOOK, emu.inventory, timeout=PLAYBOOK_TIMEOUT)
    assert result.status == "successful" and result.failed_hosts == [], result.hosts
    assert all(h.changed > 0 for h in result.hosts.values())
    # What still exists must be a directory another installed package owns (/usr/bin, /etc/modprobe.d, ...).
    for node, paths in before.items():
        addr = emu.addr(node)
        kinds = ok(emu.fleet, addr, "for p in " + quote(paths) + '; do if [ -e "$p" ] || [ -L "$p" ]; then '
                   'if [ -d "$p" ]; then echo "D $p"; else echo "F $p"; fi; fi; done; true')
        owned = set(ok(emu.fleet, addr, "cat /var/lib/dpkg/info/*.list").splitlines())
        left = (line.split(" ", 1) for line in kinds.splitlines())
        kept = [p for kind, p in left if p != "/." and not (kind == "D" and p in owned)]
        assert kept == [], f"{node} kept: {kept}"
        assert _holds(emu, node) == []
        assert _installed(emu, node) == {}
        assert ok(emu.fleet, addr, "command -v hailortcli || true") == ""
        assert not _dev_node(emu, node)

