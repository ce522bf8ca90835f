"""The `pdudaemon` power driver against the real pdudaemon program (Debian's /usr/sbin/pdudaemon) on loopback.

Each daemon gets a config of its own (HTTP listener on 127.0.0.1 and a free port; one PDU with the localcmdline
driver whose commands append `PORT on|off` to a file in tmp_path), is started as a subprocess and stopped by PID.
The tests drive it only through its HTTP API, as lab does, and read what reached the PDU's commands."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lab.cli import main
from lab.inventory import Host
from lab.power.base import power_nodes

PDUDAEMON = shutil.which("pdudaemon") or "/usr/sbin/pdudaemon"


def require_pdudaemon() -> None:
    """Skip where pdudaemon is not installed, except in CI, which installs it (Makefile APT_PACKAGES)."""
    if not os.access(PDUDAEMON, os.X_OK):
        reason = "needs the pdudaemon program (apt-get install pdudaemon)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the pdudaemon tests, but: {reason}")
        pytest.skip(reason)


pytestmark = pytest.mark.pdudaemon


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Pdudaemon:
    """A real pdudaemon with one localcmdline PDU named `rack`, whose outlets write to `switched`."""

    def __init__(self, base: Path):
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.switched = base / "switched"
        self.output = base / "pdudaemon.out"
        record = f"echo '%s {{}}' >> {shlex.quote(str(self.switched))}"
        config = {"daemon": {"hostname": "127.0.0.1", "port": self.port, "logging_level": "DEBUG", "listener": "http"},
                  "pdus": {"rack": {"driver": "localcmdline", "cmd_on": record.format("on"),
                                    "cmd_off": record.format("off")}}}
        conf = base / "pdudaemon.conf"
        conf.write_text(json.dumps(config))
        with self.output.open("w") as out:
            self.proc = subprocess.Popen([PDUDAEMON, "--conf", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pdudaemon exited {self.proc.returncode}: {self.output.read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("pdudaemon did not listen within 20 s") from None
                time.sleep(0.1)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def lines(self) -> list[str]:
        return self.switched.read_text().splitlines() if self.switched.exists() else []

    def wait_lines(self, count: int, timeout: float = 15) -> list[str]:
        """The PDU's command lines once there are `count` of them (requests may be queued), else those there are."""
        deadline = time.monotonic() + timeout
        while len(self.lines()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.lines()

    def stop(self) -> None:
        """SIGTERM by PID (pdudaemon shuts down its listener and runners), SIGKILL after 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture()
def start_pdudaemon(tmp_path):
    """Start real pdudaemons under tmp_path; every one is stopped by PID at the end of the test."""
    require_pdudaemon()
    started: list[Pdudaemon] = []

    def start(name: str = "pdu") -> Pdudaemon:
        daemon = Pdudaemon(tmp_path / name)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
    assert all(d.proc.poll() is not None for d in started)


def pdu_host(name: str, daemon: str, port: int, **extra) -> Host:
    return Host(name, "127.77.9.1", {"lab_power": {"driver": "pdudaemon", "daemon": daemon, "pdu": "rack",
                                                   "port": port, **extra}})


def test_on_off_cycle_reach_the_pdu_through_the_http_api(start_pdudaemon):
    pdu = start_pdudaemon()
    hosts = [pdu_host("node1", pdu.address, 1, delay=1), pdu_host("node2", pdu.address, 2, delay=1)]
    results = power_nodes(hosts, "off")
    assert [(r.node, r.ok, r.state, r.detail) for r in results] == [
        ("node1", True, "off", f"pdudaemon {pdu.address} rack port 1: request queued"),
        ("node2", True, "off", f"pdudaemon {pdu.address} rack port 2: request queued"),
    ]
    assert sorted(pdu.wait_lines(2)) == ["1 off", "2 off"]
    assert all(r.ok for r in power_nodes(hosts[:1], "on"))
    assert pdu.wait_lines(3)[2:] == ["1 on"]
    start = time.monotonic()
    [cycled] = power_nodes(hosts[1:], "cycle")
    assert (cycled.ok, cycled.state, cycled.detail) == (True, "on", f"pdudaemon {pdu.address} rack port 2: request queued")
    # a reboot is off, the delay, on, for that outlet only; pdudaemon waited the delay itself
    assert pdu.wait_lines(5)[3:] == ["2 off", "2 on"]
    assert time.monotonic() - start >= 1


def test_status_is_unknown_and_touches_no_outlet(start_pdudaemon):
    pdu = start_pdudaemon()
    [result] = power_nodes([pdu_host("node1", pdu.address, 1)], "status")
    assert (result.ok, result.state, result.detail) == (
        True, "unknown", f"pdudaemon {pdu.address} rack port 1: pdudaemon has no status request")
    assert pdu.lines() == []


def test_a_pdu_the_daemon_does_not_know_is_refused(start_pdudaemon):
    pdu = start_pdudaemon()
    host = Host("node1", "x", {"lab_power": {"driver": "pdudaemon", "daemon": pdu.address, "pdu": "other", "port": 1}})
    [result] = power_nodes([host], "off")
    assert (result.ok, result.detail) == (
        False, f"pdudaemon {pdu.address} refused off of other port 1: HTTP 500 Invalid request")


def test_a_stopped_daemon_fails_its_nodes_only(start_pdudaemon):
    up, down = start_pdudaemon("up"), start_pdudaemon("down")
    down.stop()
    hosts = [pdu_host("node1", up.address, 1), pdu_host("node2", down.address, 2), pdu_host("node3", up.address, 3)]
    results = power_nodes(hosts, "off")
    assert [(r.node, r.ok, r.state, r.detail) for r in results] == [
        ("node1", True, "off", f"pdudaemon {up.address} rack port 1: request queued"),
        ("node2", False, None, f"pdudaemon {down.address} does not answer (connection refused)"),
        ("node3", True, "off", f"pdudaemon {up.address} rack port 3: request queued"),
    ]
    assert sorted(up.wait_lines(2)) == ["1 off", "3 off"]


def test_lab_power_through_a_real_pdudaemon(start_pdudaemon, tmp_path, capsys):
    up, down = start_pdudaemon("up"), start_pdudaemon("down")
    down.stop()
    inventory = tmp_path / "inv.yml"
    inventory.write_text(
        "all:\n  hosts:\n"
        f"    node1: {{ansible_host: 127.77.9.1, lab_power: {{driver: pdudaemon, daemon: '{up.address}', pdu: rack,"
        " port: 1, delay: 1}}\n"
        f"    node2: {{ansible_host: 127.77.9.2, lab_power: {{driver: pdudaemon, daemon: '{up.address}', pdu: rack,"
        " port: 2, delay: 1}}\n"
        f"    node3: {{ansible_host: 127.77.9.3, lab_power: {{driver: pdudaemon, daemon: '{down.address}', pdu: rack,"
        " port: 3}}\n")
    assert main(["power", "node2", "node1", "cycle", "--inventory", str(inventory)]) == 0
    assert capsys.readouterr() == (f"node2: on (pdudaemon {up.address} rack port 2: request queued)\n"
                                   f"node1: on (pdudaemon {up.address} rack port 1: request queued)\n", "")
    assert sorted(up.wait_lines(4)) == ["1 off", "1 on", "2 off", "2 on"]
    assert main(["power", "node1", "node3", "off", "--inventory", str(inventory)]) == 1
    assert capsys.readouterr() == (f"node1: off (pdudaemon {up.address} rack port 1: request queued)\n"
                                   f"node3: error: pdudaemon {down.address} does not answer (connection refused)\n", "")
    assert main(["power", "node1", "node2", "status", "--inventory", str(inventory), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [
        {"node": n, "action": "status", "ok": True, "state": "unknown",
         "detail": f"pdudaemon {up.address} rack port {i}: pdudaemon has no status request"}
        for n, i in (("node1", 1), ("node2", 2))]
