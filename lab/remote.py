"""Ad-hoc commands on many nodes at once through fabric, with per-host timeouts and verified host keys."""

from __future__ import annotations

import logging
import shlex
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.contract import PI_DEVICETREE_DIR
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


_PROBE = r"""
echo "boot_id=$(cat /proc/sys/kernel/random/boot_id)"
echo "uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "hostname=$(hostname)"
echo "hailort=$(hailortcli --version 2>/dev/null | sed -n 's/.*version //p')"
hailortcli fw-control identify --extended 2>/dev/null | sed 's/^/identify|/'
grep -E '^(Serial|Model|Revision)[[:space:]]*:' /proc/cpuinfo 2>/dev/null | sed 's/^/cpuinfo|/'
echo "dt_serial=$(tr -d '\000' < "$DT/serial-number" 2>/dev/null)"
echo "dt_model=$(tr -d '\000' < "$DT/model" 2>/dev/null)"
echo "device=$(test -e /dev/hailo0 && echo present || echo absent)"
echo "throttled=$("$VCG" get_throttled 2>/dev/null | cut -d= -f2)"
echo "lock=$(cat /var/lib/lab-agent/lock/campaign 2>/dev/null)"
echo "kernel=$(uname -r)"
echo "packages=$(dpkg-query -W -f '${db:Status-Abbrev} ${Package}=${Version}\n' '*hailo*' dkms 2>/dev/null | awk '$1 == "ii" {printf "%s ", $2}')"
echo "wheel=$(python3 -c 'import importlib.metadata as m; print(m.version("hailort"))' 2>/dev/null)"
echo "dkms=$(dkms status 2>/dev/null | grep -i hailo | tr '\n' ';')"
echo "held=$(apt-mark showhold 2>/dev/null | tr '\n' ' ')"
""".strip()


def node_probe(devicetree_dir: str = PI_DEVICETREE_DIR, vcgencmd: str = "vcgencmd") -> str:
    """The probe `lab nodes` runs: the node's health, its HAT's identify --extended and the Pi's own identity."""
    return f"DT={shlex.quote(devicetree_dir)}\nVCG={shlex.quote(vcgencmd)}\n{_PROBE}"


def host_probe(host: Host) -> str:
    """The probe for one host: its inventory's `lab_devicetree_dir` and `lab_vcgencmd`, a real Pi's by default."""
    return node_probe(str(host.vars.get("lab_devicetree_dir") or PI_DEVICETREE_DIR),
                      str(host.vars.get("lab_vcgencmd") or "vcgencmd"))


NODE_PROBE = node_probe()


def parse_probe(text: str) -> dict[str, str | None]:
    """The key=value lines of the probe as a dict (empty values become None); the raw identify output and
    the Pi's cpuinfo lines under `identify` and `cpuinfo`."""
    out: dict[str, str | None] = {}
    blocks: dict[str, list[str]] = {"identify": [], "cpuinfo": []}
    for line in text.splitlines():
        head, bar, rest = line.partition("|")
        if bar and head in blocks:
            blocks[head].append(rest)
        elif "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip() or None
    for name, lines in blocks.items():
        out[name] = "\n".join(lines) + "\n" if lines else None
    return out


def describe_node(info: dict[str, str | None]) -> dict:
    """A probed node as `lab nodes` shows it: health, the Pi (serial, model) and the HAT it holds (unit key,
    serial, SoC ID, as the chip reports them; `<N/A>` is no serial)."""
    from lab.agent.parsers import ToolOutputError, parse_identify
    from lab.agent.pi import pi_identity
    from lab.db.ingest import chip_id, unit_key

    row = {k: v for k, v in info.items() if k not in ("identify", "cpuinfo", "dt_serial", "dt_model")}
    try:
        ident = parse_identify(info["identify"]) if info.get("identify") else None
    except ToolOutputError:
        ident = None
    pi = pi_identity(info.get("cpuinfo") or "", _dt(info.get("dt_serial")), _dt(info.get("dt_model")))
    row["pi"] = {"serial": pi.serial, "model": pi.model}
    hat = None
    if ident is not None:
        soc, serial = chip_id(ident.soc_id), chip_id(ident.serial_number)
        key = unit_key(str(info.get("hostname") or ""), serial, soc) if soc or serial else None  # None: unidentified
        hat = {"unit": key, "serial": serial, "soc_id": soc, "ult_id": ident.ult_id,
               "architecture": ident.architecture, "firmware": ident.firmware_version, "lcs": ident.lcs}
        row.update(firmware=ident.firmware_version, architecture=ident.architecture, serial=serial)
    row["hat"] = hat
    return row


def _dt(value: str | None) -> bytes | None:
    return value.encode() if value else None
