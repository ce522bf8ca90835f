"""Shared by the fleet benchmarks: an own virtual fleet, measured commands (wall, CPU, memory), the results DB."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from lab.errors import LabError
from lab.virtual.fleet import check_inotify

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
LAB = str(VENV_BIN / "lab")
# The benchmarks' own fleet, apart from a person's (127.77.0) and the tests' (127.77.200-240).
DEFAULT_FLEET_DIR = "/var/tmp/bench-fleet"
DEFAULT_FLEET_NET = "127.77.60"
PR_SET_CHILD_SUBREAPER = 36
CLK_TCK = os.sysconf("SC_CLK_TCK")


def add_common_args(ap) -> None:
    """Options every fleet benchmark takes: where to work, other copies to compare, JSON output."""
    ap.add_argument("--workdir", type=Path, help="where inventory, databases and outputs go (default: a new temp dir)")
    ap.add_argument("--variant", action="append", metavar="NAME=DIR",
                    help="also run `lab` from another copy of the project (e.g. a baseline), interleaved")
    ap.add_argument("--no-current", action="store_true", help="run only the --variant copies, not the current tree")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")


def fleet_env(fleet_dir: str | None = None, fleet_net: str | None = None) -> dict[str, str]:
    """Environment for `lab`: the benchmark's own fleet directory and addresses (env overrides the defaults)."""
    env = dict(os.environ)
    env["LAB_FLEET_DIR"] = fleet_dir or os.environ.get("LAB_FLEET_DIR") or DEFAULT_FLEET_DIR
    env["LAB_FLEET_NET"] = fleet_net or os.environ.get("LAB_FLEET_NET") or DEFAULT_FLEET_NET
    env.pop("LAB_DB", None)
    return env


def stop_cleanly() -> None:
    """SIGTERM and SIGINT (even when a background shell ignored it) unwind, so the fleet still goes down."""
    def _exit(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)


def parse_variants(specs: list[str] | None, current: bool = True) -> dict[str, Path | None]:
    """`NAME=DIR` options: another copy of the project (lab/, playbooks/, roles/, ansible.cfg) to run side by side.

    The current tree is there as `lab` unless `current` is false; a variant runs its own code with this venv's
    packages (frozen copies keep a comparison honest while someone edits the working tree).
    """
    variants: dict[str, Path | None] = {"lab": None} if current or not specs else {}
    for spec in specs or ():
        name, _, folder = spec.partition("=")
        if not folder or not (Path(folder) / "lab" / "__init__.py").exists():
            raise SystemExit(f"--variant wants NAME=DIR with DIR/lab/__init__.py, got {spec!r}")
        variants[name] = Path(folder).resolve()
    return variants


def lab_argv(variant: Path | None, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """How to start `lab` from the current tree (None) or from another copy of the project."""
    if variant is None:
        return [LAB], env
    return [sys.executable, "-m", "lab"], dict(env, PYTHONPATH=str(variant))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchFleet:
    """A virtual fleet for one benchmark, brought up through `lab fleet up` and always taken down."""

    def __init__(self, workdir: Path, nodes: int, time_scale: float, env: dict[str, str], executors: int = 0):
        self.workdir = workdir
        self.nodes = nodes
        self.executors = executors
        self.time_scale = time_scale
        self.env = env
        self.inventory = workdir / "inventory" / "virtual.yml"  # ../hailo-files is workdir/hailo-files
        self.root = Path(env["LAB_FLEET_DIR"])

    def __enter__(self) -> BenchFleet:
        try:  # the same check as `lab fleet up`, before anything is started
            check_inotify(self.nodes + self.executors)
        except LabError as exc:
            raise SystemExit(f"bench: {exc}") from None
        if (self.root / "fleet.json").exists():
            raise SystemExit(f"a fleet is already up at {self.root}; `LAB_FLEET_DIR={self.root} lab fleet down` first")
        t0 = time.monotonic()
        argv = [LAB, "fleet", "up", "--nodes", str(self.nodes), "--time-scale", str(self.time_scale),
                "--inventory-file", str(self.inventory), "--executors", str(self.executors)]
        try:
            # On a loaded 2-core host 64 nodes may take longer than `fleet up` waits (120 s); asking again
            # for the same fleet keeps the booting nodes and waits once more.
            for attempt in range(3):
                if subprocess.run(argv, env=self.env, cwd=self.workdir, stdout=subprocess.DEVNULL).returncode == 0:
                    break
                log(f"fleet up attempt {attempt + 1} failed; waiting again")
            else:
                raise SystemExit("the fleet did not come up")
        except BaseException:
            self.down()
            raise
        through = f" behind {self.executors} execution node(s)" if self.executors else ""
        log(f"fleet of {self.nodes} node(s){through} up at time scale {self.time_scale} in {time.monotonic() - t0:.1f} s")
        # Hailo's files beside the inventory (h10-5.3.0 is not in the archive) and the model on the controller
        subprocess.run([LAB, "fleet", "hailo-files", "hailo-files", "--models", "models"], env=self.env,
                       cwd=self.workdir, stdout=subprocess.DEVNULL, check=True)
        return self

    def put_model(self, node_index: int, dest: str) -> None:
        """Copy the controller's model to a node, for the loops that run hailortcli without lab."""
        data = (self.workdir / "models" / Path(dest).name).read_bytes()
        subprocess.run([*self.ssh_argv(node_index), f"mkdir -p {Path(dest).parent} && cat > {dest}"], input=data,
                       check=True, env=self.env)

    def __exit__(self, *exc) -> None:
        self.down()

    def down(self) -> None:
        subprocess.run([LAB, "fleet", "down"], env=self.env, cwd=self.workdir, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log("fleet down")

    def node_names(self, n: int | None = None) -> list[str]:
        return [f"node{i}" for i in range(1, (n or self.nodes) + 1)]

    def ssh_argv(self, node_index: int = 1) -> list[str]:
        """ssh to one node with the fleet's key and verified host key (no connection sharing)."""
        net = self.env["LAB_FLEET_NET"]
        return ["ssh", "-i", str(self.root / "ssh" / "id_ed25519"),
                "-o", f"UserKnownHostsFile={self.root / 'ssh' / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ControlMaster=no", f"root@{net}.{node_index}"]


@dataclass
class Measured:
    """One measured command: wall time, CPU of it and all its descendants, peak memory of its process tree."""

    argv: list[str]
    rc: int
    wall_s: float
    user_s: float
    sys_s: float
    peak_pss_mib: float
    peak_rss_mib: float
    peak_procs: int
    fleet_pss_mib: float | None = None  # peak PSS of every node (its cgroup, nspawn and supervisor)
    fleet_cpu_s: float | None = None  # CPU the nodes used meanwhile
    executor_pss_mib: float | None = None  # peak PSS of the execution nodes (with --executors)
    executor_cpu_s: float | None = None  # CPU the execution nodes used meanwhile
    stdout: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def measure(argv: list[str], *, env: dict[str, str], cwd: Path, stdout: Path, fleet_dir: Path | None = None,
            every: float = 1.0) -> Measured:
    """Run argv under this file's `measure` wrapper (a subreaper, so daemonised ssh masters are counted too)."""
    result = cwd / f".measure-{os.getpid()}-{time.monotonic_ns()}.json"
    wrapper = [sys.executable, str(Path(__file__).resolve()), "measure", "--out", str(result), "--stdout", str(stdout),
               "--every", str(every)]
    if fleet_dir is not None:
        wrapper += ["--fleet-dir", str(fleet_dir)]
    subprocess.run([*wrapper, "--", *argv], env=env, cwd=cwd, check=True, stdin=subprocess.DEVNULL)  # never a terminal for ssh
    data = json.loads(result.read_text())
    result.unlink()
    data["stdout"] = stdout.read_text(errors="replace")
    return Measured(**data)


# ---- the wrapper (runs in its own process) -------------------------------------------------
def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    out[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return out


def descendants(root: int, ppids: dict[int, int] | None = None) -> list[int]:
    ppids = ppids if ppids is not None else _ppids()
    children: dict[int, list[int]] = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def pss_rss_kib(pid: int) -> tuple[int, int]:
    """A process's proportional and resident set size in KiB (0, 0 when it is gone)."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return pss, rss


def cpu_ticks(pid: int, children: bool = True) -> int:
    """utime+stime (and, with children, the waited-for descendants' cutime+cstime) of a process, in ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0
    ticks = int(fields[11]) + int(fields[12])
    return ticks + (int(fields[13]) + int(fields[14]) if children else 0)


def fleet_pids(fleet_dir: Path, kind: str = "nodes") -> list[int]:
    """Every process of every node (kind "nodes") or execution node ("executors"): what its freezer cgroup
    holds, plus its nspawn and supervisor."""
    pids: list[int] = []
    for nd in sorted((fleet_dir / kind).glob("*")):
        try:
            cfg = json.loads((nd / "node.json").read_text())
            if cfg.get("freezer"):
                pids += [int(p) for p in Path(cfg["freezer"], "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pass
        for pidfile in ("supervisor.pid", "nspawn.pid"):  # an execution node has no supervisor
            try:
                pids.append(int((nd / pidfile).read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
    return sorted(set(pids))


def fleet_cpu_s(fleet_dir: Path, kind: str = "nodes") -> float:
    """CPU seconds the nodes (or the execution nodes) have used so far (living processes plus what they
    reaped); only differences matter."""
    return sum(cpu_ticks(p) for p in fleet_pids(fleet_dir, kind)) / CLK_TCK


def _wrapper(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--stdout", required=True)
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--fleet-dir")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    # Orphans of the measured command (ssh ControlPersist masters) become our children: their CPU counts.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    me = os.getpid()
    peak = {"pss": 0, "rss": 0, "procs": 0, "fleet": 0, "executors": 0}
    fleet_dir = Path(args.fleet_dir) if args.fleet_dir else None
    fleet_cpu0 = fleet_cpu_s(fleet_dir) if fleet_dir else None
    exec_cpu0 = fleet_cpu_s(fleet_dir, "executors") if fleet_dir else None
    stop = threading.Event()

    def sample() -> None:
        n = 0
        while not stop.wait(args.every):
            pids = descendants(me)
            sizes = [pss_rss_kib(p) for p in pids]
            peak["pss"] = max(peak["pss"], sum(s[0] for s in sizes))
            peak["rss"] = max(peak["rss"], sum(s[1] for s in sizes))
            peak["procs"] = max(peak["procs"], len(pids))
            n += 1
            if fleet_dir and n % 10 == 1:  # the fleet is big and changes slowly: every 10th sample
                peak["fleet"] = max(peak["fleet"], sum(pss_rss_kib(p)[0] for p in fleet_pids(fleet_dir)))
            if fleet_dir and n % 5 == 1:  # the few execution nodes grow while a phase runs through them
                peak["executors"] = max(peak["executors"],
                                        sum(pss_rss_kib(p)[0] for p in fleet_pids(fleet_dir, "executors")))

    with open(args.stdout, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    sampler.join()
    user, sys_ = ru.ru_utime, ru.ru_stime
    # What the command left running (ssh masters kept for ControlPersist) is ours now: stop it, count it.
    left = descendants(me)
    for pid in left:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while True:
        try:
            pid, _, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                for p in descendants(me):
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.05)
            continue
        user += ru.ru_utime
        sys_ += ru.ru_stime
    result = {"argv": cmd, "rc": proc.returncode, "wall_s": round(wall, 3), "user_s": round(user, 3),
              "sys_s": round(sys_, 3), "peak_pss_mib": round(peak["pss"] / 1024, 1),
              "peak_rss_mib": round(peak["rss"] / 1024, 1), "peak_procs": peak["procs"],
              "fleet_pss_mib": round(peak["fleet"] / 1024, 1) if fleet_dir else None,
              "fleet_cpu_s": round(fleet_cpu_s(fleet_dir) - fleet_cpu0, 2) if fleet_dir else None,
              "executor_pss_mib": round(peak["executors"] / 1024, 1) if fleet_dir else None,
              "executor_cpu_s": round(fleet_cpu_s(fleet_dir, "executors") - exec_cpu0, 2) if fleet_dir else None}
    Path(args.out).write_text(json.dumps(result))
    return 0


# ---- the results database -------------------------------------------------------------------
def _ts(value) -> datetime:
    return datetime.fromisoformat(str(value))


def phase_walls(db: Path, campaign: str) -> dict[str, float]:
    """Each node's phase wall time (started_at to finished_at of its Phase rows, summed over phases)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT r.node, p.started_at, p.finished_at FROM phase p JOIN run r ON p.run_id = r.id "
                           "JOIN campaign c ON r.campaign_id = c.id WHERE c.name = ?", (campaign,)).fetchall()
    finally:
        con.close()
    walls: dict[str, float] = {}
    for node, start, end in rows:
        if start and end:
            walls[node] = walls.get(node, 0.0) + (_ts(end) - _ts(start)).total_seconds()
    return walls


def benchmark_samples(db: Path, campaign: str) -> dict[str, int]:
    """Each node's count of benchmark samples with an fps (runs that completed)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT r.node, count(s.id) FROM sample s JOIN run r ON s.run_id = r.id "
                           "JOIN campaign c ON r.campaign_id = c.id WHERE c.name = ? AND s.step = 'benchmark' "
                           "AND s.fps IS NOT NULL GROUP BY r.node", (campaign,)).fetchall()
    finally:
        con.close()
    return dict(rows)


# ---- reporting ------------------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: list[str], rows: list[list]) -> str:
    """A plain fixed-width table (what the benchmark prints and RESULTS-fleet.md quotes)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def machine() -> dict:
    """Where a benchmark ran: cores, memory, load average at the time."""
    mem = next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal:"))
    return {"cores": os.cpu_count(), "mem_gib": round(int(mem) / 2**20, 1),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3], "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def to_json(obj) -> str:
    return json.dumps(obj, indent=2, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o))


if __name__ == "__main__" and sys.argv[1:2] == ["measure"]:
    sys.exit(_wrapper(sys.argv[2:]))
