"""The probe `lab nodes` runs on each node (through lab.ssh) and what its answer says about the Pi and its HAT."""

from __future__ import annotations

import shlex

from lab.contract import AGENT_WORKDIR, DEV_NODE, PI_DEVICETREE_DIR
from lab.inventory import Host

_PROBE = r"""
echo "boot_id=$(cat /proc/sys/kernel/random/boot_id)"
echo "uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "hostname=$(hostname)"
echo "hailort=$(hailortcli --version 2>/dev/null | sed -n 's/.*version //p')"
hailortcli fw-control identify --extended 2>/dev/null | sed 's/^/identify|/'
grep -E '^(Serial|Model|Revision)[[:space:]]*:' /proc/cpuinfo 2>/dev/null | sed 's/^/cpuinfo|/'
echo "dt_serial=$(tr -d '\000' < "$DT/serial-number" 2>/dev/null)"
echo "dt_model=$(tr -d '\000' < "$DT/model" 2>/dev/null)"
echo "device=$(test -e "$DEV" && echo present || echo absent)"
echo "throttled=$("$VCG" get_throttled 2>/dev/null | cut -d= -f2)"
echo "lock=$(head -n 1 "$WORK/lock/campaign" 2>/dev/null)"
echo "lock_controller=$(sed -n 2p "$WORK/lock/campaign" 2>/dev/null)"
echo "kernel=$(uname -r)"
echo "packages=$(dpkg-query -W -f '${db:Status-Abbrev} ${Package}=${Version}\n' '*hailo*' dkms 2>/dev/null | awk '$1 == "ii" {printf "%s ", $2}')"
echo "wheel=$(python3 -c 'import importlib.metadata as m; print(m.version("hailort"))' 2>/dev/null)"
echo "dkms=$(dkms status 2>/dev/null | grep -i hailo | tr '\n' ';')"
echo "held=$(apt-mark showhold 2>/dev/null | tr '\n' ' ')"
""".strip()


def node_probe(devicetree_dir: str = PI_DEVICETREE_DIR, vcgencmd: str = "vcgencmd") -> str:
    """The probe `lab nodes` runs: the node's health, its HAT's identify --extended and the Pi's own identity."""
    return (f"DT={shlex.quote(devicetree_dir)}\nVCG={shlex.quote(vcgencmd)}\nDEV={shlex.quote(DEV_NODE)}\n"
            f"WORK={shlex.quote(AGENT_WORKDIR)}\n{_PROBE}")


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
