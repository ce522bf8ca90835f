"""Ad-hoc commands on many nodes at once through fabric, with per-host timeouts and verified host keys."""

from __future__ import annotations

import logging
import shlex
import socket
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.inventory import Host

# paramiko logs a traceback from its transport thread for every unanswered banner; the result says it once.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").setLevel(logging.CRITICAL)
logging.getLogger("paramiko").propagate = False


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


def connection(host: Host, timeout: float):
    """A fabric Connection that refuses unknown or changed host keys (never auto-adds them)."""
    import paramiko
    from fabric import Connection

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
    import paramiko

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


def run_on_hosts(hosts: list[Host], command: str, timeout: float = 30.0) -> list[ExecResult]:
    """Run a command on every host in parallel; a host that does not answer in time is reported, not waited on."""
    pool = ThreadPoolExecutor(max_workers=max(1, min(64, len(hosts))))
    futures = {h.name: pool.submit(run_one, h, command, timeout) for h in hosts}
    wait(futures.values(), timeout=timeout * 2 + 10)
    results = []
    for h in hosts:
        fut = futures[h.name]
        results.append(fut.result() if fut.done() else ExecResult(h.name, None, error=f"no answer within {timeout * 2 + 10:.0f} s"))
    pool.shutdown(wait=False, cancel_futures=True)
    return results


NODE_PROBE = r"""
echo "boot_id=$(cat /proc/sys/kernel/random/boot_id)"
echo "uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "hostname=$(hostname)"
echo "hailort=$(hailortcli --version 2>/dev/null | sed -n 's/.*version //p')"
echo "firmware=$(hailortcli fw-control identify 2>/dev/null | sed -n 's/^Firmware Version: //p')"
echo "architecture=$(hailortcli fw-control identify 2>/dev/null | sed -n 's/^Device Architecture: //p')"
echo "serial=$(hailortcli fw-control identify 2>/dev/null | sed -n 's/^Serial Number: //p')"
echo "device=$(test -e /dev/hailo0 && echo present || echo absent)"
echo "throttled=$(vcgencmd get_throttled 2>/dev/null | cut -d= -f2)"
echo "lock=$(cat /var/lib/lab-agent/lock/campaign 2>/dev/null)"
echo "kernel=$(uname -r)"
echo "packages=$(dpkg-query -W -f '${db:Status-Abbrev} ${Package}=${Version}\n' '*hailo*' dkms 2>/dev/null | awk '$1 == "ii" {printf "%s ", $2}')"
echo "wheel=$(python3 -c 'import importlib.metadata as m; print(m.version("hailort"))' 2>/dev/null)"
echo "dkms=$(dkms status 2>/dev/null | grep -i hailo | tr '\n' ';')"
echo "held=$(apt-mark showhold 2>/dev/null | tr '\n' ' ')"
""".strip()


def parse_probe(text: str) -> dict[str, str | None]:
    """The key=value lines of NODE_PROBE as a dict (empty values become None)."""
    out: dict[str, str | None] = {}
    for line in text.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip() or None
    return out
