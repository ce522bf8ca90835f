"""The virtual fleet's PDU: Debian's real pdudaemon, whose command-line driver cuts and restores node power.

`lab fleet up` starts it on the fleet's own address (`<net>.254`, port 16521: not pdudaemon's
default 16421, so a system pdudaemon.service never collides) with one PDU, `virtual-fleet`, whose
outlet N is node N: the `localcmdline` driver runs `<this python> -m lab fleet power nodeN on|off`.
The rendering is pure (`render_config`, `lab_power_entry`); `start` and `stop` do the I/O.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from lab.errors import FleetError, HostSetupError
from lab.virtual.node import cmdline, pid_alive, write_atomic

PDUDAEMON = Path("/usr/sbin/pdudaemon")
# The packaged program is a script for Debian's python3 (its modules are in /usr/lib/python3/dist-packages).
SYSTEM_PYTHON = Path("/usr/bin/python3")
PDU_NAME = "virtual-fleet"
PDU_PORT = 16521
PDU_HOST = 254  # last octet of the PDU's address in the fleet's network (nodes are 1..250)
CONF_FILE = "pdudaemon.conf"
LOG_FILE = "pdudaemon.log"
START_TIMEOUT = 60.0  # Python with aiohttp: a few seconds idle, past 20 s on a 2-core host under a 64-node load
STOP_TIMEOUT = 10.0


def pdu_address(net: str) -> str:
    """The PDU daemon's listening address in a fleet's network."""
    return f"{net}.{PDU_HOST}"


def daemon_address(net: str) -> str:
    """HOST:PORT of the fleet's PDU daemon, as the inventory's lab_power names it."""
    return f"{pdu_address(net)}:{PDU_PORT}"


def lab_power_entry(net: str, index: int) -> dict:
    """A node's `lab_power` (the shared design's pdudaemon mapping): outlet `index` of the fleet's PDU."""
    return {"driver": "pdudaemon", "daemon": daemon_address(net), "pdu": PDU_NAME, "port": index}


def _shell_word(word: str) -> str:
    """A word for pdudaemon's command template: shell-quoted, and `%` doubled (the template is %-formatted)."""
    return shlex.quote(word).replace("%", "%%")


def outlet_command(python: str, action: str) -> str:
    """The localcmdline driver's command for one action; pdudaemon puts the outlet number at %s."""
    return " ".join(_shell_word(w) for w in (python, "-m", "lab", "fleet", "power")) + f" node%s {action}"


def render_config(net: str, python: str) -> dict:
    """pdudaemon's configuration for a fleet: an HTTP listener on the fleet's address, one localcmdline PDU."""
    return {
        "daemon": {"hostname": pdu_address(net), "port": PDU_PORT, "logging_level": "INFO", "listener": "http"},
        "pdus": {PDU_NAME: {"driver": "localcmdline", "cmd_on": outlet_command(python, "on"),
                            "cmd_off": outlet_command(python, "off")}},
    }


def daemon_command(conf: Path, log: Path) -> list[str]:
    """The command line that runs Debian's pdudaemon with this configuration, logging to a file."""
    return [str(SYSTEM_PYTHON), str(PDUDAEMON), "--conf", str(conf), "--logfile", str(log), "--loglevel", "INFO"]


def check_installed() -> None:
    """Fail, with the fix, when Debian's pdudaemon is not installed."""
    if not PDUDAEMON.exists() or not SYSTEM_PYTHON.exists():
        raise HostSetupError(f"pdudaemon is not installed ({PDUDAEMON} is missing)",
                             hint="apt-get install pdudaemon (or run `make setup`)")


def check_address_free(net: str) -> None:
    """Fail when something already listens on the PDU daemon's address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((pdu_address(net), PDU_PORT))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise HostSetupError(f"address {daemon_address(net)} is already in use",
                                     hint="stop what listens there (another fleet's pdudaemon?) or pick other "
                                          "addresses with LAB_FLEET_NET=127.77.X") from None
            raise


def answers(net: str) -> bool:
    """Whether the PDU daemon's HTTP listener answers (any HTTP response counts)."""
    conn = http.client.HTTPConnection(pdu_address(net), PDU_PORT, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def start(root: Path, net: str, python: str) -> int:
    """Start the fleet's pdudaemon detached (it outlives `lab fleet up`); wait until it answers; return its PID.

    Its outlet commands reach this fleet through LAB_FLEET_DIR and LAB_FLEET_NET in its environment.
    """
    conf, log = root / CONF_FILE, root / LOG_FILE
    write_atomic(conf, json.dumps(render_config(net, python), indent=2) + "\n")
    env = {**os.environ, "LAB_FLEET_DIR": str(root), "LAB_FLEET_NET": net}
    with open(log, "ab") as out:
        proc = subprocess.Popen(daemon_command(conf, log), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=env, cwd=str(root), start_new_session=True, close_fds=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not answers(net):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc.pid, root)
            raise FleetError(f"pdudaemon did not answer on {daemon_address(net)}", str(log), "read its log")
        time.sleep(0.1)
    return proc.pid


def is_ours(pid: int | None, root: Path) -> bool:
    """Whether `pid` is this fleet's pdudaemon (checked by its command line, never a stranger's PID)."""
    if not pid_alive(pid):
        return False
    cmd = cmdline(pid)
    return any(str(PDUDAEMON) == w for w in cmd) and str(root / CONF_FILE) in cmd


def stop(pid: int | None, root: Path) -> None:
    """Stop the fleet's pdudaemon: SIGTERM, then SIGKILL after a timeout; remove its files."""
    ours = is_ours(pid, root)
    if ours:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        _reap(pid)
    for name in (CONF_FILE, LOG_FILE):
        (root / name).unlink(missing_ok=True)


def _reap(pid: int | None) -> None:
    """Collect the exit status when the daemon is this process's child (a test's fleet), so it leaves no zombie."""
    if not pid:
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
