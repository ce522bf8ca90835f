"""The one way lab reaches a node outside Ansible: OpenSSH argument lists and fabric, one host-key policy.

Ansible (lab/ansible.py) reaches nodes for playbooks; everything else (reading the agent's records and
artifacts, `lab nodes`) goes through here, with the options Ansible uses (same user, key, port,
known_hosts), batch mode and strict host keys: an unknown or changed host key is refused, never added.

A node behind an execution node (`Host.via`, its `lab_executor`) is reached by a nested command: ssh to the
executor, which runs ssh to the node with the node's own options (paths on the executor, its keys and
known_hosts), each hop quoted for its shell with shlex.join. The controller needs no route to such a node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

import paramiko
from fabric import Connection

from lab.inventory import Host

# paramiko logs a traceback from its transport thread for every unanswered banner; the result says it once.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").setLevel(logging.CRITICAL)
logging.getLogger("paramiko").propagate = False


# On an execution node: one master connection per node it reaches for lab's reads (the folder is made when the
# executor is checked before a campaign, lab.remote_executor.check_executor).
EXECUTOR_CONTROL_DIR = "~/.cache/lab/cp"
VIA_SESSIONS = 8  # commands at once through one executor's master connection
NODE_MASTER = ("-o", "ControlMaster=auto", "-o", f"ControlPath={EXECUTOR_CONTROL_DIR}/%C", "-o", "ControlPersist=60")


def ssh_argv(host: Host, *remote: str, connect_timeout: int = 10, node_master: bool = False) -> list[str]:
    """An OpenSSH command reaching this host exactly as Ansible does (same key, known_hosts, options).

    A node behind an execution node is reached through it (`via_argv`); `node_master` then keeps a master
    connection to the node on the executor."""
    if host.via is not None:
        return via_argv(host.via, host, list(remote), connect_timeout, node_master)
    return _direct_argv(host, remote, connect_timeout)


def via_argv(executor: Host, node: Host, remote: list[str], connect_timeout: int = 10,
             node_master: bool = False) -> list[str]:
    """`ssh EXECUTOR -- ssh NODE -- REMOTE`: the inner ssh runs on the executor with the node's options (as the
    executor sees them); the executor's shell gets the inner command quoted by shlex.join, and the node's
    shell gets REMOTE as ssh hands it on (its words joined by spaces, as a direct ssh would)."""
    inner = _direct_argv(node, remote, connect_timeout, NODE_MASTER if node_master else ())
    return _direct_argv(executor, [shlex.join(inner)], connect_timeout)


def _direct_argv(host: Host, remote, connect_timeout: int, options=()) -> list[str]:
    """ssh straight to the host: batch mode, keepalives, the inventory's key, port, user and arguments."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2", *options]
    if host.vars.get("ansible_port"):
        argv += ["-p", str(host.vars["ansible_port"])]
    if host.vars.get("ansible_ssh_private_key_file"):
        argv += ["-i", str(host.vars["ansible_ssh_private_key_file"])]
    argv += shlex.split(str(host.vars.get("ansible_ssh_common_args") or ""))
    argv += shlex.split(str(host.vars.get("ansible_ssh_extra_args") or ""))
    user = host.vars.get("ansible_user")
    argv.append(f"{user}@{host.address}" if user else host.address)
    return argv + list(remote)


def run_remote(host: Host, argv: list[str], timeout: float, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """Run an argument list on a host over OpenSSH (quoted for the remote shell); stdin a file or nothing.

    Raises subprocess.TimeoutExpired."""
    return subprocess.run(ssh_argv(host, shlex.join(argv)), capture_output=True, stdin=stdin, timeout=timeout,
                          check=False)


def runner_bindir(executor: Host) -> str:
    """The folder of the executor's ansible-runner when `lab_runner` is a path (a venv's): its ansible-playbook
    is found there first; "" when it is a plain name found on the executor's PATH."""
    runner = str(executor.vars.get("lab_runner") or "ansible-runner")
    return runner.rsplit("/", 1)[0] if "/" in runner else ""


def _runner_command(executor: Host, args: list[str], wrapper: list[str] | None = None) -> str:
    """The executor's ansible-runner with `args` (started by `wrapper`, if any), as one command line for its
    shell (the runner's folder first on PATH, so a venv's runner starts that venv's ansible-playbook)."""
    runner = str(executor.vars.get("lab_runner") or "ansible-runner")
    bindir = runner_bindir(executor)
    prefix = f'PATH={shlex.quote(bindir)}:"$PATH" ' if bindir else ""
    return prefix + shlex.join([*(wrapper or []), runner, *args])


def worker_argv(executor: Host, private_data_dir: str, keepalive_seconds: int) -> list[str]:
    """`ssh -T EXECUTOR -- ansible-runner worker ...`: an ansible-runner worker on an execution node, reading its
    job on stdin, removing its private data dir before and after, sending a keepalive when idle. Its own
    connection (no master): a master that died would take the phase with it.

    The worker runs under `flock` on PRIVATE_DATA_DIR.lock, removed when it ends: a worker that never ended
    (its executor lost power, its sshd was killed) leaves a lock nobody holds, which is how
    `stale_workers_cleanup` tells its directory from a running one of another controller's."""
    lock = private_data_dir + ".lock"
    worker = _runner_command(executor, ["worker", "--private-data-dir", private_data_dir, "--delete",
                                        "--keepalive-seconds", str(keepalive_seconds)], wrapper=["flock", "-o", lock])
    line = (f"mkdir -p {shlex.quote(str(Path(private_data_dir).parent))} && {{ {worker}; rc=$?; "
            f"rm -f -- {shlex.quote(lock)}; exit $rc; }}")
    argv = ssh_argv(executor, line)
    return [argv[0], "-T", *argv[1:]]


def stale_workers_cleanup(folder: str) -> str:
    """A shell line removing every worker directory under `folder` whose lock nobody holds (its worker died
    without `--delete`), and that lock. A running worker holds its lock, whichever controller started it.
    `ansible-runner worker cleanup` is not used: it tells a running job only by a `pid` file a worker never
    writes, and by a grace period a phase longer than it outlives."""
    q = shlex.quote(folder)
    return (f'for l in {q}/*.lock; do [ -e "$l" ] || continue; '
            f'flock -n "$l" rm -rf -- "${{l%.lock}}" "$l" || true; done')


def runner_argv(executor: Host) -> list[str]:
    """ssh to an execution node, then its ansible-runner (`lab_runner`); plain-word arguments may follow."""
    return ssh_argv(executor, _runner_command(executor, []))


class Masters:
    """One OpenSSH master connection per node, kept in a private directory while a campaign reads its nodes.

    A command through a master costs about 0.05 s instead of 0.4 s, and no sshd handshake on the node
    every poll. `close()` asks every master to exit and removes the directory.
    """

    def __init__(self, hosts: list[Host]):
        self.hosts = list(hosts)
        self.directory = tempfile.mkdtemp(prefix="lab-ssh-")  # short: a socket path must fit 108 bytes
        self._gates: dict[str, threading.BoundedSemaphore] = {}
        self._gates_lock = threading.Lock()

    def argv(self, host: Host, argv: list[str]) -> list[str]:
        """`ssh ... -- argv` through this node's master; every argument is quoted for the remote shell.

        Behind an execution node: the master is the executor's (shared by its nodes), and the executor keeps
        one to the node."""
        base = ssh_argv(host, shlex.join(argv), node_master=True)
        return [base[0], "-o", "ControlMaster=auto", "-o", f"ControlPath={self.directory}/%C",
                "-o", "ControlPersist=60", *base[1:]]  # a master left behind by a crash exits after 60 s idle

    def run(self, host: Host, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Run a command on a node; nothing is left to the remote shell. Raises TimeoutExpired."""
        # stdin is never ssh's: it would read a person's terminal, and OpenSSH leaves the stdin it was given
        # non-blocking (its ControlPersist master keeps it), which breaks the shell and later Ansible runs.
        with self._gate(host):
            return subprocess.run(self.argv(host, argv), capture_output=True, stdin=subprocess.DEVNULL,
                                  timeout=timeout)

    def _gate(self, host: Host):
        """Nodes behind one executor share its master: at most VIA_SESSIONS commands at once through it (sshd
        refuses sessions beyond its MaxSessions, 10 by default, on one connection)."""
        if host.via is None:
            return contextlib.nullcontext()
        with self._gates_lock:
            return self._gates.setdefault(host.via.name, threading.BoundedSemaphore(VIA_SESSIONS))

    def close(self) -> None:
        """Stop every node's master connection (`-O exit`: quick even for a dead node), remove the directory."""
        if os.path.isdir(self.directory) and os.listdir(self.directory):
            # a node behind an execution node shares its executor's master: each executor once
            first = {(h.via or h).name: (h.via or h) for h in self.hosts}
            for host in first.values():
                base = ssh_argv(host)
                subprocess.run([base[0], "-o", f"ControlPath={self.directory}/%C", "-O", "exit", *base[1:]],
                               capture_output=True, stdin=subprocess.DEVNULL, timeout=10, check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


# ---- fabric: ad-hoc commands on many nodes at once ----------------------------------------------

@dataclass
class ExecResult:
    """What one host answered (or why it did not)."""

    host: str
    rc: int | None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def known_hosts_file(host: Host) -> Path | None:
    """The UserKnownHostsFile named in the host's SSH arguments (the virtual fleet sets one)."""
    args = shlex.split(str(host.vars.get("ansible_ssh_common_args") or ""))
    for i, arg in enumerate(args):
        value = arg[2:] if arg.startswith("-o") and len(arg) > 2 else (args[i + 1] if arg == "-o" and i + 1 < len(args) else "")
        if value.startswith("UserKnownHostsFile="):
            return Path(value.split("=", 1)[1])
    return None


def connection(host: Host, timeout: float) -> Connection:
    """A fabric Connection that refuses unknown or changed host keys (never auto-adds them)."""
    kwargs = {"banner_timeout": timeout, "auth_timeout": timeout}
    if host.vars.get("ansible_ssh_private_key_file"):
        kwargs["key_filename"] = str(host.vars["ansible_ssh_private_key_file"])
    conn = Connection(host.address, user=host.vars.get("ansible_user"), port=int(host.vars.get("ansible_port", 22)),
                      connect_timeout=timeout, connect_kwargs=kwargs)
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    known = known_hosts_file(host)
    if known is not None:
        conn.client.load_host_keys(str(known))
    else:
        conn.client.load_system_host_keys()
    return conn


def run_one(host: Host, command: str, timeout: float) -> ExecResult:
    """Run one command on one host; unreachable or slow hosts become an error, never an exception."""
    if host.via is not None:
        return _run_via(host, command, timeout)
    try:
        with connection(host, timeout) as conn:
            res = conn.run(command, hide=True, warn=True, timeout=timeout, in_stream=False)
            return ExecResult(host.name, res.exited, res.stdout, res.stderr)
    except paramiko.BadHostKeyException:
        return ExecResult(host.name, None, error="host key changed: the node's key does not match known_hosts")
    except paramiko.SSHException as exc:
        if "banner" in str(exc) or "No existing session" in str(exc):
            return ExecResult(host.name, None, error=f"unreachable: no SSH answer within {timeout:.0f} s")
        return ExecResult(host.name, None, error=f"ssh: {exc}")
    except (OSError, socket.timeout) as exc:
        return ExecResult(host.name, None, error=f"unreachable: {exc}")
    except Exception as exc:  # invoke's CommandTimedOut and friends
        name = type(exc).__name__
        return ExecResult(host.name, None, error=f"timed out after {timeout:.0f} s" if "Timed" in name else f"{name}: {exc}")


def _run_via(host: Host, command: str, timeout: float) -> ExecResult:
    """run_one for a node behind an execution node: OpenSSH through it (fabric cannot run the inner hop there)."""
    try:
        done = subprocess.run(ssh_argv(host, command, connect_timeout=max(1, int(timeout))), capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return ExecResult(host.name, None, error=f"timed out after {timeout:.0f} s")
    stdout, stderr = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    if done.returncode == 255:  # ssh's own failure, on either hop
        said = " / ".join(line.strip() for line in stderr.splitlines()[-2:] if line.strip())
        if "host key" in said.lower() or "IDENTIFICATION HAS CHANGED" in said:
            return ExecResult(host.name, None, error="host key changed: the node's key does not match known_hosts")
        return ExecResult(host.name, None, error=f"unreachable through executor {host.via.name}: {said[:300]}")
    return ExecResult(host.name, done.returncode, stdout, stderr)


def run_on_hosts(hosts: list[Host], command: str | Callable[[Host], str], timeout: float = 30.0) -> list[ExecResult]:
    """Run a command (or each host's own, from a function of the host) on every host in parallel.

    A host that does not answer in time is reported, not waited on."""
    pool = ThreadPoolExecutor(max_workers=max(1, min(64, len(hosts))))
    futures = {h.name: pool.submit(run_one, h, command(h) if callable(command) else command, timeout) for h in hosts}
    wait(futures.values(), timeout=timeout * 2 + 10)
    results = []
    for h in hosts:
        fut = futures[h.name]
        results.append(fut.result() if fut.done() else ExecResult(h.name, None, error=f"no answer within {timeout * 2 + 10:.0f} s"))
    pool.shutdown(wait=False, cancel_futures=True)
    return results
