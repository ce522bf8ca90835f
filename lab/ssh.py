"""The one way lab reaches a node outside Ansible: OpenSSH argument lists and fabric, one host-key policy.

Ansible (lab/ansible.py) reaches nodes for playbooks; everything else (reading the agent's records and
artifacts, `lab nodes`) goes through here, with the options Ansible uses (same user, key, port,
known_hosts), batch mode and strict host keys: an unknown or changed host key is refused, never added.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
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


def ssh_argv(host: Host, *remote: str, connect_timeout: int = 10) -> list[str]:
    """An OpenSSH command reaching this host exactly as Ansible does (same key, known_hosts, options)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"]
    if host.vars.get("ansible_port"):
        argv += ["-p", str(host.vars["ansible_port"])]
    if host.vars.get("ansible_ssh_private_key_file"):
        argv += ["-i", str(host.vars["ansible_ssh_private_key_file"])]
    argv += shlex.split(str(host.vars.get("ansible_ssh_common_args") or ""))
    argv += shlex.split(str(host.vars.get("ansible_ssh_extra_args") or ""))
    user = host.vars.get("ansible_user")
    argv.append(f"{user}@{host.address}" if user else host.address)
    return argv + list(remote)


class Masters:
    """One OpenSSH master connection per node, kept in a private directory while a campaign reads its nodes.

    A command through a master costs about 0.05 s instead of 0.4 s, and no sshd handshake on the node
    every poll. `close()` asks every master to exit and removes the directory.
    """

    def __init__(self, hosts: list[Host]):
        self.hosts = list(hosts)
        self.directory = tempfile.mkdtemp(prefix="lab-ssh-")  # short: a socket path must fit 108 bytes

    def argv(self, host: Host, argv: list[str]) -> list[str]:
        """`ssh ... -- argv` through this node's master; every argument is quoted for the remote shell."""
        base = ssh_argv(host, shlex.join(argv))
        return [base[0], "-o", "ControlMaster=auto", "-o", f"ControlPath={self.directory}/%C",
                "-o", "ControlPersist=60", *base[1:]]  # a master left behind by a crash exits after 60 s idle

    def run(self, host: Host, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Run a command on a node; nothing is left to the remote shell. Raises TimeoutExpired."""
        # stdin is never ssh's: it would read a person's terminal, and OpenSSH leaves the stdin it was given
        # non-blocking (its ControlPersist master keeps it), which breaks the shell and later Ansible runs.
        return subprocess.run(self.argv(host, argv), capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)

    def close(self) -> None:
        """Stop every node's master connection (`-O exit`: quick even for a dead node), remove the directory."""
        if os.path.isdir(self.directory) and os.listdir(self.directory):
            for host in self.hosts:
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
