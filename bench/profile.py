"""Where a campaign's CPU goes: every process that ran, by machine (the controller, each node) and program.

Runs `lab run SCENARIO --inventory INV ...` (any command after `--`) under the kernel's process accounting
(acct(2): one record per process that exits, with its CPU time, command name and parent), then adds the
CPU that long-lived processes (sshd, the emulator's supervisor, systemd) used meanwhile from /proc. Each
process is attributed by ancestry: to the measured command (the controller), to a node of the fleet at
LAB_FLEET_DIR (under its systemd-nspawn), or to the rest of the host. Root only (acct needs
CAP_SYS_PACCT); a process that never exits within the window counts only through /proc.

    .venv/bin/python bench/profile.py -- .venv/bin/lab run s.yaml --inventory inventory/virtual.yml --limit node1

Prints, per owner (controller, nodes, executors, host; each node apart with --per-node), the CPU seconds and,
per (owner, program), CPU seconds and how many processes ran.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchlib import CLK_TCK, fleet_env, table

ACCT_V3 = struct.Struct("<BBHIIIIIIfHHHHHHHH16s")  # linux/acct.h struct acct_v3, 64 bytes
AHZ = 100  # acct's comp_t ticks per second


def comp_t(value: int) -> int:
    """acct's 16-bit float: 13-bit mantissa, 3-bit base-8 exponent."""
    return (value & 0x1FFF) << (3 * (value >> 13))


def read_acct(path: Path) -> list[tuple[int, int, str, float]]:
    """(pid, ppid, command, cpu seconds) of every record in an acct_v3 file."""
    data = path.read_bytes()
    out = []
    for off in range(0, len(data) - ACCT_V3.size + 1, ACCT_V3.size):
        rec = ACCT_V3.unpack_from(data, off)
        if rec[1] != 3:  # ac_version
            continue
        pid, ppid, utime, stime, comm = rec[6], rec[7], rec[10], rec[11], rec[18]
        out.append((pid, ppid, comm.split(b"\0")[0].decode(errors="replace"), (comp_t(utime) + comp_t(stime)) / AHZ))
    return out


def processes() -> dict[int, tuple[str, int, float, int]]:
    """pid -> (command, ppid, own cpu seconds, start time in ticks) of every living process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        close = raw.rfind(")")
        fields = raw[close + 2:].split()
        out[int(entry)] = (raw[raw.find("(") + 1:close], int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK,
                           int(fields[19]))
    return out


def node_roots(fleet_dir: Path, per_node: bool) -> dict[int, str]:
    """The systemd-nspawn pid of every node and execution node of the fleet -> its name (or, unless per_node,
    "nodes" and "executors")."""
    roots = {}
    for kind in ("nodes", "executors"):
        for nd in sorted((fleet_dir / kind).glob("*")):
            try:
                roots[int((nd / "nspawn.pid").read_text().split()[0])] = nd.name if per_node else kind
            except (OSError, ValueError, IndexError):
                continue
    return roots


def attribute(records, before, after, roots: dict[int, str]) -> dict[tuple[str, str], list]:
    """(owner, program) -> [cpu seconds, processes]: exited processes from acct, living ones' /proc deltas."""
    parent = {pid: v[1] for pid, v in {**before, **after}.items()}
    for pid, ppid, _, _ in records:
        parent.setdefault(pid, ppid)

    def owner(pid: int) -> str:
        for _ in range(256):
            if pid in roots:
                return roots[pid]
            pid = parent.get(pid, 0)
            if not pid:
                break
        return "host (other)"

    usage: dict[tuple[str, str], list] = defaultdict(lambda: [0.0, 0])
    for pid, _, comm, cpu in records:
        usage[(owner(pid), comm)][0] += cpu
        usage[(owner(pid), comm)][1] += 1
    for pid, (comm, _, cpu, start) in after.items():
        old = before.get(pid)
        if old is not None and old[3] == start and cpu - old[2] > 0:  # the same process, alive throughout
            usage[(owner(pid), comm + " (running)")][0] += cpu - old[2]
            usage[(owner(pid), comm + " (running)")][1] += 1
    return usage


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=30, help="how many (owner, program) rows to print")
    ap.add_argument("--per-node", action="store_true", help="each node apart (default: all nodes as one owner)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command to measure")
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("give the command to measure after --")
    fleet_dir = Path(fleet_env()["LAB_FLEET_DIR"])
    libc = ctypes.CDLL(None, use_errno=True)
    with tempfile.TemporaryDirectory(prefix="lab-acct-") as folder:
        acct = Path(folder) / "acct"
        acct.touch()
        before = processes()
        if libc.acct(str(acct).encode()) != 0:
            raise SystemExit(f"bench/profile.py: acct(2) refused: {os.strerror(ctypes.get_errno())} (run as root)")
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
            rc = proc.wait()
        finally:
            wall = time.monotonic() - t0
            after = processes()
            libc.acct(None)
        records = read_acct(acct)
    roots = {**node_roots(fleet_dir, args.per_node), proc.pid: "controller"}
    usage = attribute(records, before, after, roots)
    owners: dict[str, float] = defaultdict(float)
    for (who, _), (cpu, _) in usage.items():
        owners[who] += cpu
    if args.json:
        print(json.dumps({"rc": rc, "wall_s": round(wall, 2), "owners": {k: round(v, 2) for k, v in owners.items()},
                          "programs": [{"owner": o, "program": p, "cpu_s": round(c, 2), "processes": n}
                                       for (o, p), (c, n) in sorted(usage.items(), key=lambda x: -x[1][0])]}, indent=2))
        return rc
    print(f"# {' '.join(cmd)}: exit {rc}, wall {wall:.1f} s, {len(records)} processes exited")
    print(table(["owner", "cpu_s"], [[o, round(c, 2)] for o, c in sorted(owners.items(), key=lambda x: -x[1])]))
    print()
    rows = sorted(usage.items(), key=lambda x: -x[1][0])[:args.top]
    print(table(["owner", "program", "cpu_s", "processes"], [[o, p, round(c, 2), n] for (o, p), (c, n) in rows]))
    return rc


if __name__ == "__main__":
    sys.exit(main())
