"""Shared fixtures: every write under tmp_path, and a real virtual fleet for integration tests."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from lab.virtual.fleet import Fleet
from lab.virtual.node import EXECUTOR_KNOWN_HOSTS, EXECUTOR_NODE_KEY

# Property tests: on a developer's machine they explore new examples at every run; in CI (CI set, as
# .ci/run is called) the same examples every time, so a submission's result never depends on luck.
# Neither keeps an example database: nothing is left behind in the project.
settings.register_profile("dev", database=None)
settings.register_profile("ci", database=None, derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("LAB_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

PROJECT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Tests use their own addresses, so they never touch a fleet a person has up on 127.77.0.N.
TEST_NET = "127.77.200"

try:  # database fixtures live beside this file
    from tests.db_fixtures import *  # noqa: F401,F403
except ImportError:
    pass


@pytest.fixture(autouse=True)
def _writes_under_tmp(tmp_path, monkeypatch):
    """Keep every relative write (lab.db, inventory/...) and the fleet state of a test under tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAB_FLEET_DIR", str(tmp_path / "fleet"))
    monkeypatch.setenv("LAB_FLEET_NET", "127.77.201")
    monkeypatch.delenv("LAB_DB", raising=False)


def fleet_available() -> str | None:
    """Why a real fleet cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("systemd-nspawn", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def require_fleet() -> None:
    """Skip where a fleet cannot run, except in CI, where that is a failure."""
    reason = fleet_available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the fleet tests, but: {reason}")
        pytest.skip(reason)


def ssh_argv(fleet: Fleet, address: str, *remote: str, timeout: int = 5, known_hosts: Path | None = None) -> list[str]:
    """`ssh` to a node as root with the fleet's key, host keys checked against `known_hosts` (the fleet's)."""
    return ["ssh", "-i", str(fleet.key_file), "-o", f"UserKnownHostsFile={known_hosts or fleet.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout}",
            "-o", "ControlMaster=no", f"root@{address}", *remote]


def ssh_cmd(fleet: Fleet, address: str, *remote: str, timeout: int = 5) -> subprocess.CompletedProcess:
    """Run a command on a node over real SSH with the fleet's key and known_hosts."""
    return subprocess.run(ssh_argv(fleet, address, *remote, timeout=timeout), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout + 10)


def ssh_via_argv(fleet: Fleet, node: str, *remote: str, user: str = "root", timeout: int = 5) -> list[str]:
    """`ssh` to a node THROUGH its execution node (a fleet up with --executors), as the lab reaches it then.

    The outer hop is the controller's ssh to the executor (the fleet's key and known_hosts, as ssh_argv);
    the inner one runs ON the executor with the key and known_hosts only the executors hold, host keys
    checked. `remote` means what it means to ssh_cmd (ssh joins it with spaces for the node's shell:
    give `shlex.join(argv)` for an exact argv); the inner ssh's own command line is quoted for the
    executor's shell, so the node's shell gets exactly that string.
    """
    executor = fleet.executor_of(node)
    if executor is None:
        raise ValueError(f"{node} has no execution node in this fleet")
    address = fleet.address(fleet.meta()["nodes"].index(node) + 1)
    inner = ["ssh", "-i", EXECUTOR_NODE_KEY, "-o", f"UserKnownHostsFile={EXECUTOR_KNOWN_HOSTS}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout}",
             f"{user}@{address}", "--", " ".join(remote)]
    return ssh_argv(fleet, fleet.executors()[executor], shlex.join(inner), timeout=timeout)


def ssh_via(fleet: Fleet, node: str, *remote: str, user: str = "root", timeout: int = 5) -> subprocess.CompletedProcess:
    """Run a command on a node through its execution node (see ssh_via_argv); the controller holds no key for it."""
    return subprocess.run(ssh_via_argv(fleet, node, *remote, user=user, timeout=timeout), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=2 * timeout + 10)


RUNNER_ON_EXECUTOR = "/usr/local/bin/ansible-runner"  # lab.virtual.runner's wrapper on an execution node's PATH


@contextlib.contextmanager
def without_ansible_runner(fleet: Fleet, executor: str = "exec1"):
    """An execution node whose ansible-runner is missing for the duration (its wrapper moved aside over SSH)."""
    address = fleet.executors()[executor]
    hidden = RUNNER_ON_EXECUTOR + ".hidden-by-test"
    moved = ssh_cmd(fleet, address, "mv", RUNNER_ON_EXECUTOR, hidden, timeout=10)
    assert moved.returncode == 0, moved.stderr
    try:
        yield
    finally:
        back = ssh_cmd(fleet, address, "mv", hidden, RUNNER_ON_EXECUTOR, timeout=10)
        assert back.returncode == 0, back.stderr


def fleet_leftovers(fleet: Fleet, machine_prefix: str) -> list[str]:
    """Mounts, processes and files of a fleet that still exist (empty when it is fully gone)."""
    left = [line for line in Path("/proc/self/mounts").read_text().splitlines() if str(fleet.root) in line]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if machine_prefix in cmd or (str(fleet.root) in cmd and ("supervisor" in cmd or "pdudaemon" in cmd)):
            left.append(f"process {pid}: {cmd}")
    if fleet.root.exists():
        left.append(f"directory {fleet.root}")
    return left


@pytest.fixture(scope="module")
def fleet3(tmp_path_factory):
    """A real 3-node virtual fleet (module scope), torn down and checked for leftovers afterwards."""
    require_fleet()
    base = tmp_path_factory.mktemp("fleet3")
    fleet = Fleet(root=base / "fleet", net=TEST_NET)
    inventory = base / "inventory" / "virtual.yml"
    fleet.up(nodes=3, inventory=inventory, time_scale=0.02)
    fleet.inventory = inventory
    prefix = f"lab-{fleet.meta()['id']}-"
    try:
        yield fleet
    finally:
        fleet.down()
        assert fleet_leftovers(fleet, prefix) == []
        assert not inventory.exists()


def port_free(address: str, port: int = 22) -> bool:
    """Whether nothing listens on address:port."""
    with socket.socket() as sock:
        return sock.connect_ex((address, port)) != 0
