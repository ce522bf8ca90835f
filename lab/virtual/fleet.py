"""The virtual fleet: bring nodes up in parallel, report their state, inject faults, tear everything down."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.errors import ConfigError, FleetError, HostSetupError
from lab.virtual import image, inventory_file, paths, pdu, runner
from lab.virtual.emulator.hailo_emu.hw import PI_FIELDS, hat_of
from lab.virtual.emulator.packaging import build_repository
from lab.virtual.node import (
    LOGIN_USER,
    NodeDir,
    boot_id,
    cmdline,
    container_init,
    pid_alive,
    prepare,
    prepare_executor,
    read_pid,
    read_text,
    write_atomic,
    write_hw,
)
from lab.virtual.profile import check_profile_nodes, load_profile, node_names

FREEZER_ROOT = Path("/sys/fs/cgroup/freezer")
FAULTS = ("freeze", "thaw", "down", "up", "hang-reboot")
POWER_ACTIONS = ("on", "off", "status")
POWER_OFF_TIMEOUT = 15.0
SSH_READY_TIMEOUT = 120.0
# Execution nodes (`--executors K`) are exec1..execK at <net>.201..<net>.(200+K): above every node's
# address when they are there (nodes are <net>.1..<net>.N, N <= 200 then), below the PDU's (.254).
EXECUTOR_BASE = 200
MAX_EXECUTORS = 50
MAX_NODES_WITH_EXECUTORS = EXECUTOR_BASE


def executor_names(count: int) -> list[str]:
    """exec1..execN."""
    return [f"exec{i}" for i in range(1, count + 1)]


@dataclass
class NodeStatus:
    """What `lab fleet status` reports for one node."""

    name: str
    address: str
    state: str
    boot_id: str | None
    supervisor_pid: int | None
    note: str | None = None
    role: str = "node"  # or "executor" (an execution node: never a node under test)


class Fleet:
    """A virtual fleet rooted at one state directory (default /var/lib/lab/fleet)."""

    def __init__(self, root: Path | None = None, cache: Path | None = None, net: str | None = None):
        self.root = Path(root) if root else paths.fleet_dir()
        self.cache = Path(cache) if cache else paths.cache_dir()
        self.net = net or paths.fleet_net()

    # ---- layout -------------------------------------------------------------------------
    @property
    def meta_file(self) -> Path:
        return self.root / "fleet.json"

    @property
    def key_file(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "ssh" / "known_hosts"

    @property
    def executor_key_file(self) -> Path:
        """The key only the execution nodes hold (as EXECUTOR_NODE_KEY): with executors, the nodes accept only it."""
        return self.root / "ssh" / "executors_ed25519"

    def meta(self) -> dict | None:
        """The fleet's recorded settings, or None when no fleet exists here."""
        text = read_text(self.meta_file)
        return json.loads(text) if text else None

    def node(self, name: str) -> NodeDir:
        return NodeDir(self.root / "nodes" / name, name)

    def address(self, index: int) -> str:
        return f"{self.net}.{index}"

    def executor(self, name: str) -> NodeDir:
        """An execution node's state directory (beside the nodes', never among them)."""
        return NodeDir(self.root / "executors" / name, name)

    def executor_address(self, index: int) -> str:
        """The address of exec<index> (1-based)."""
        return f"{self.net}.{EXECUTOR_BASE + index}"

    def executors(self) -> dict[str, str]:
        """The fleet's execution nodes: name -> address (empty without --executors, or without a fleet)."""
        names = (self.meta() or {}).get("executors") or []
        return {name: self.executor_address(i) for i, name in enumerate(names, start=1)}

    def executor_of(self, node: str) -> str | None:
        """The execution node that reaches `node` (the inventory's lab_executor), or None without executors."""
        meta = self.meta() or {}
        for name, nodes in inventory_file.spread(meta.get("nodes", []), meta.get("executors") or []).items():
            if node in nodes:
                return name
        return None

    def _member(self, name: str, meta: dict) -> NodeDir:
        """The node or execution node called `name`, or a one-line error naming the fleet's machines."""
        if name in meta["nodes"]:
            return self.node(name)
        if name in (meta.get("executors") or []):
            return self.executor(name)
        names = ", ".join(meta["nodes"] + (meta.get("executors") or []))
        raise ConfigError(f"no node {name!r} in the fleet", hint=f"nodes are {names}")

    # ---- checks -------------------------------------------------------------------------
    def check_host(self) -> None:
        """Fail early, with the fix, when this machine cannot run a fleet."""
        if os.geteuid() != 0:
            raise HostSetupError("the virtual fleet needs root (mounts, systemd-nspawn)", hint="run as root, e.g. sudo lab fleet up")
        for tool, pkg in (("systemd-nspawn", "systemd-container"), ("ssh-keygen", "openssh-client"), ("mount", "mount")):
            if shutil.which(tool) is None:
                raise HostSetupError(f"{tool} is not installed", hint=f"apt-get install {pkg}")
        try:
            net = ipaddress.ip_network(f"{self.net}.0/24")
        except ValueError:
            raise ConfigError(f"invalid fleet network {self.net!r}", "LAB_FLEET_NET", "give three octets like 127.77.0") from None
        if not net.subnet_of(ipaddress.ip_network("127.77.0.0/16")):
            raise ConfigError(f"fleet network {self.net}.0/24 is outside 127.77.0.0/16", "LAB_FLEET_NET", "use 127.77.X")

    def check_address_free(self, address: str) -> None:
        """Fail when something on this machine already listens on the node's SSH address."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # as sshd does: connections of a fleet that just went down (TIME_WAIT) must not count, a listener does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, 22))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise HostSetupError(
                        f"address {address}:22 is already in use",
                        hint="stop what listens there (a host sshd on 0.0.0.0:22?) or pick other addresses with LAB_FLEET_NET=127.77.X",
                    ) from None
                raise

    # ---- up -----------------------------------------------------------------------------
    def up(self, nodes: int | None = None, profile: Path | None = None, time_scale: float = 1.0,
           inventory: Path = Path("inventory/virtual.yml"), log=lambda msg: None, executors: int = 0) -> dict:
        """Build (once) and boot the fleet, write its inventory, wait until every node answers SSH.

        `executors` K > 0 also boots K execution nodes (exec1..execK, see EXECUTOR_BASE) with the
        controller's ansible-runner and ansible-core (lab.virtual.runner); then only they hold a key the
        nodes accept, and the inventory spreads the nodes over them (lab.virtual.inventory_file).
        """
        self.check_host()
        if time_scale <= 0 or time_scale > 1:
            raise ConfigError(f"time scale {time_scale} is out of range", "--time-scale", "give a value in (0, 1]")
        units = load_profile(profile) if profile else {}
        count = nodes if nodes is not None else (len(units) or 4)
        if not 1 <= count <= 250:
            raise ConfigError(f"cannot run {count} nodes", "--nodes", "give 1 to 250")
        if not 0 <= executors <= MAX_EXECUTORS:
            raise ConfigError(f"cannot run {executors} execution nodes", "--executors", f"give 0 to {MAX_EXECUTORS}")
        if executors and count > MAX_NODES_WITH_EXECUTORS:
            raise ConfigError(f"cannot run {count} nodes beside execution nodes", "--nodes",
                              f"give at most {MAX_NODES_WITH_EXECUTORS} (executors take "
                              f"{self.net}.{EXECUTOR_BASE + 1} and up)")
        names = node_names(count)
        exec_names = executor_names(executors)
        if profile:
            check_profile_nodes(units, names, profile)
        check_inotify(count + executors)
        meta = self.meta()
        if meta and (meta["nodes"] != names or (meta.get("executors") or []) != exec_names):
            raise ConfigError(
                f"a fleet of {len(meta['nodes'])} nodes and {len(meta.get('executors') or [])} executors "
                f"is already up at {self.root}",
                hint="run `lab fleet down` first, or ask for the same --nodes and --executors",
            )
        pdu.check_installed()
        for i, name in enumerate(names, start=1):  # before anything is written or built
            if not self._supervisor(self.node(name)):
                self.check_address_free(self.address(i))
        for i, name in enumerate(exec_names, start=1):
            if not self._supervisor(self.executor(name)):
                self.check_address_free(self.executor_address(i))
        pdu_pid = self._pdudaemon(meta)
        if pdu_pid is None:
            pdu.check_address_free(self.net)
        rootfs = image.ensure_image(self.cache, os.environ.get("LAB_DEBIAN_MIRROR", image.DEFAULT_MIRROR), log=log)
        repo = self._repository(log)
        runner_site = runner.ensure_tree(self.cache, rootfs, log=log) if exec_names else None
        self.root.mkdir(parents=True, exist_ok=True)
        fleet_id = meta["id"] if meta else uuid.uuid4().hex[:8]
        meta = {
            "id": fleet_id,
            "nodes": names,
            "executors": exec_names,
            "net": self.net,
            "time_scale": time_scale,
            "profile": str(Path(profile).resolve()) if profile else None,
            "inventory": str(Path(inventory).resolve()),
            "rootfs": str(rootfs),
            "repo": str(repo) if repo else None,
            "pdudaemon": {"address": pdu.daemon_address(self.net), "pid": pdu_pid},
        }
        write_atomic(self.meta_file, json.dumps(meta, indent=2) + "\n")
        pubkey = self._ssh_key()
        # With execution nodes, the nodes accept only the executors' key: the controller reaches them
        # through an executor (the fleet's own readiness checks and faults need no SSH login).
        node_pubkey = self._ssh_key(self.executor_key_file, "lab-executors") if exec_names else pubkey
        started = time.monotonic()
        fleet_info = {"fleet": fleet_id, "time_scale": time_scale}
        to_boot = []
        for i, name in enumerate(names, start=1):
            nd = self.node(name)
            address = self.address(i)
            config = {
                "name": name,
                "address": address,
                "machine": f"lab-{fleet_id}-{name}",
                "rootfs": str(rootfs),
                "repo": meta["repo"],
                "freezer": str(FREEZER_ROOT / "lab" / f"{fleet_id}-{name}") if FREEZER_ROOT.is_dir() else None,
            }
            if self._supervisor(nd):
                write_hw(nd, units.get(name, {}), fleet_info)  # a running node keeps booting; its hardware file is refreshed
                continue
            prepare(nd, address, node_pubkey, units.get(name, {}), fleet_info, config)
            to_boot.append(nd)
        to_boot += self._prepare_executors(meta, fleet_id, rootfs, runner_site, pubkey)
        self._write_known_hosts(names)
        self._write_inventory(Path(inventory), meta, units)
        for nd in to_boot:
            self._start_supervisor(nd)
        if pdu_pid is None:
            log(f"starting pdudaemon on {pdu.daemon_address(self.net)}")
            meta["pdudaemon"]["pid"] = pdu.start(self.root, self.net, sys.executable)
            write_atomic(self.meta_file, json.dumps(meta, indent=2) + "\n")
        log(f"booting {len(to_boot)} machine(s), {len(names) + len(exec_names) - len(to_boot)} already running")
        self.wait_ssh(names + exec_names, SSH_READY_TIMEOUT)
        elapsed = time.monotonic() - started
        return {"nodes": names, "executors": exec_names, "booted": [nd.name for nd in to_boot],
                "seconds": round(elapsed, 1), "inventory": meta["inventory"]}

    def _prepare_executors(self, meta: dict, fleet_id: str, rootfs: Path, runner_site: Path | None,
                           pubkey: str) -> list[NodeDir]:
        """Create the upper layer of every execution node not running yet; returns those to boot.

        Each gets the controller's key for root, the executors' key and the nodes' host keys (for its
        own Ansible and the collector's reads) and the controller's ansible-runner (read-only tree).
        """
        to_boot = []
        for i, name in enumerate(meta["executors"], start=1):
            nd = self.executor(name)
            if self._supervisor(nd):
                continue
            config = {
                "name": name,
                "address": self.executor_address(i),
                "machine": f"lab-{fleet_id}-{name}",
                "rootfs": str(rootfs),
                "repo": None,
                "hw": False,
                "bind_ro": [[str(runner_site), runner.MOUNT]],
                "freezer": str(FREEZER_ROOT / "lab" / f"{fleet_id}-{name}") if FREEZER_ROOT.is_dir() else None,
            }
            prepare_executor(nd, self.executor_address(i), pubkey, self.executor_key_file,
                             self._node_host_keys(meta["nodes"]),
                             runner.files(runner_site, runner.image_python(rootfs)), config)
            to_boot.append(nd)
        return to_boot

    def _write_inventory(self, path: Path, meta: dict, units: dict[str, dict]) -> None:
        """Write the fleet's Ansible inventory: one host per node at its address, with its unit's variables."""
        addresses = {name: self.address(i) for i, name in enumerate(meta["nodes"], start=1)}
        power = {name: pdu.lab_power_entry(self.net, i) for i, name in enumerate(meta["nodes"], start=1)}
        executors = {name: self.executor_address(i) for i, name in enumerate(meta.get("executors") or [], start=1)}
        inventory_file.write(path, inventory_file.render(self.root, self.key_file, self.known_hosts, meta, addresses,
                                                         units, power, executors))

    def _repository(self, log) -> Path:
        """The emulated Hailo packages' apt repository, built (once) by the emulator's packaging."""
        log("checking the emulated Hailo apt repository")
        return build_repository(self.cache / "apt")

    def _ssh_key(self, key_file: Path | None = None, comment: str = "lab-fleet") -> str:
        """One of the fleet's SSH key pairs (the controller's by default; created once); returns the public key."""
        key_file = key_file or self.key_file
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(key_file.parent, 0o700)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key_file)],
                           check=True)
        return key_file.with_suffix(".pub").read_text()

    def _node_host_keys(self, names: list[str]) -> str:
        """known_hosts lines of the nodes' host keys (at their addresses)."""
        lines = []
        for i, name in enumerate(names, start=1):
            key = self.node(name).host_pubkey.read_text().split()
            lines.append(f"{self.address(i)} {key[0]} {key[1]}")
        return "\n".join(lines) + "\n"

    def _write_known_hosts(self, names: list[str]) -> None:
        """Record every node's (and execution node's) host key, so SSH verifies them (no StrictHostKeyChecking=no).

        With executors the nodes' keys stay listed: they are public, and a login the nodes refuse is then
        refused for its key, not for an unknown host.
        """
        lines = [self._node_host_keys(names)]
        for i, name in enumerate((self.meta() or {}).get("executors") or [], start=1):
            key = self.executor(name).host_pubkey.read_text().split()
            lines.append(f"{self.executor_address(i)} {key[0]} {key[1]}\n")
        write_atomic(self.known_hosts, "".join(lines))

    def _start_supervisor(self, nd: NodeDir) -> None:
        """Start the node's supervisor detached from this process, so the node outlives `lab fleet up`."""
        nd.desired.write_text("up\n")
        nd.hang_flag.unlink(missing_ok=True)
        with open(nd.root / "supervisor.log", "ab") as out:
            subprocess.Popen(
                [sys.executable, "-m", "lab.virtual.supervisor", str(nd.root)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True,
            )

    def _supervisor(self, nd: NodeDir) -> int | None:
        """PID of the node's supervisor if it runs, checked by its command line (never a stranger's PID)."""
        pid = read_pid(nd.supervisor_pid)
        if pid_alive(pid) and "lab.virtual.supervisor" in cmdline(pid) and str(nd.root) in cmdline(pid):
            return pid
        return None

    def _pdudaemon(self, meta: dict | None = None) -> int | None:
        """PID of the fleet's pdudaemon if it runs (checked by its command line), else None."""
        meta = meta if meta is not None else self.meta()
        pid = ((meta or {}).get("pdudaemon") or {}).get("pid")
        return pid if pdu.is_ours(pid, self.root) else None

    def pdu_status(self) -> dict | None:
        """The PDU daemon's address and PID (None when it is not running), or None when no fleet is up."""
        meta = self.meta()
        if not meta:
            return None
        return {"address": pdu.daemon_address(self.net), "pid": self._pdudaemon(meta)}

    def wait_ssh(self, names: list[str], timeout: float) -> None:
        """Wait until every node's sshd answers and its users may log in; fail naming the nodes that never did.

        sshd answers early in a boot, but until systemd-user-sessions runs, pam_nologin refuses every
        user but root ("System is booting up": /run/nologin exists), as on a Pi: a node is up when
        `pi` can log in. /run/nologin is read through the node's PID 1, so no SSH login (and no host key
        policy) is involved in the wait.
        """
        deadline = time.monotonic() + timeout
        meta = self.meta()
        addresses = {name: self.address(i) for i, name in enumerate(meta["nodes"], start=1)}
        addresses.update(self.executors())

        def ready(name: str) -> bool:
            return ssh_banner(addresses[name], deadline) and self._logins_allowed(self._member(name, meta), deadline)

        with ThreadPoolExecutor(max_workers=min(32, len(names))) as pool:
            answered = dict(zip(names, pool.map(ready, names)))
        late = [n for n, ok in answered.items() if not ok]
        if late:
            raise FleetError(f"node(s) {', '.join(late)} did not let {LOGIN_USER} log in over SSH within {timeout:.0f} s",
                             str(self._member(late[0], meta).console_log), "read the node's console log")

    @staticmethod
    def _logins_allowed(nd: NodeDir, deadline: float) -> bool:
        """Whether the node's boot has removed /run/nologin (systemd-user-sessions) before the deadline."""
        while time.monotonic() < deadline:
            init = container_init(read_pid(nd.nspawn_pid))
            if init is not None and Path(f"/proc/{init}/root/run").is_dir() \
                    and not Path(f"/proc/{init}/root/run/nologin").exists():
                return True
            time.sleep(0.2)
        return False

    # ---- status -------------------------------------------------------------------------
    def status(self) -> list[NodeStatus]:
        """State of every node, then every execution node (role `executor`): running, frozen, down (or hung
        in a reboot), with its boot_id."""
        meta = self.meta()
        if not meta:
            return []
        result = []
        machines = [(name, self.node(name), self.address(i), "node") for i, name in enumerate(meta["nodes"], start=1)]
        machines += [(name, self.executor(name), address, "executor") for name, address in self.executors().items()]
        for name, nd, address, role in machines:
            sup = self._supervisor(nd)
            init = container_init(read_pid(nd.nspawn_pid)) if sup else None
            if not sup:
                state = "down"
            elif init is None:
                state = "down"
            elif self._frozen(nd):
                state = "frozen"
            else:
                state = "running"
            hung = bool(sup) and init is None and read_text(nd.state) == "hung"
            result.append(NodeStatus(name, address, state, boot_id(init) if state == "running" else None,
                                     sup, "reboot hangs until `fault up`" if hung else None, role))
        return result

    def cpu_seconds(self, name: str) -> float | None:
        """CPU time (user + system, s) used so far by every process of a node or execution node, reaped ones
        included (their parents inside it counted them); None where the host has no freezer cgroup to find
        them by. For benchmarks: an executor's share of a campaign is the difference over the campaign."""
        meta = self.meta()
        if not meta:
            raise ConfigError("no virtual fleet is up", str(self.root), "run `lab fleet up` first")
        nd = self._member(name, meta)
        fdir = self._freezer(nd)
        procs = read_text(fdir / "cgroup.procs") if fdir else None
        if procs is None:
            return None
        ticks = 0
        for pid in procs.split():
            ticks += cpu_ticks(read_text(Path(f"/proc/{pid}/stat")) or "")
        return ticks / os.sysconf("SC_CLK_TCK")

    def _freezer(self, nd: NodeDir) -> Path | None:
        cfg = json.loads(nd.config.read_text())
        return Path(cfg["freezer"]) if cfg.get("freezer") else None

    def _frozen(self, nd: NodeDir) -> bool:
        fdir = self._freezer(nd)
        return bool(fdir and read_text(fdir / "freezer.state") in ("FROZEN", "FREEZING"))

    # ---- faults -------------------------------------------------------------------------
    def fault(self, name: str, action: str) -> str:
        """Inject a fault into one node; returns a one-line description of what was done."""
        meta = self.meta()
        if not meta:
            raise ConfigError("no virtual fleet is up", str(self.root), "run `lab fleet up` first")
        nd = self._member(name, meta)
        if action not in FAULTS:
            raise ConfigError(f"unknown fault {action!r}", hint=f"use one of {', '.join(FAULTS)}")
        sup = self._supervisor(nd)
        if action == "up":
            nd.hang_flag.unlink(missing_ok=True)
            self._thaw(nd)
            if sup:
                write_atomic(nd.desired, "up\n")
            else:
                self._start_supervisor(nd)
            self.wait_ssh([name], SSH_READY_TIMEOUT)
            return f"{name} is up"
        if not sup:
            raise FleetError(f"node {name} is not running", hint=f"run `lab fleet fault {name} up`")
        if action == "hang-reboot":
            nd.hang_flag.write_text("1\n")
            return f"{name}: its next reboot will not come back until `lab fleet fault {name} up`"
        if action == "down":
            write_atomic(nd.desired, "down\n")
            self._wait(lambda: read_text(nd.state) == "down", 30, f"{name} did not power off")
            return f"{name} is powered off"
        fdir = self._freezer(nd)
        if fdir is None:
            raise HostSetupError("this host has no cgroup-v1 freezer", str(FREEZER_ROOT), "freeze needs the freezer hierarchy")
        (fdir / "freezer.state").write_text("FROZEN" if action == "freeze" else "THAWED")
        want = "FROZEN" if action == "freeze" else "THAWED"
        self._wait(lambda: read_text(fdir / "freezer.state") == want, 10, f"{name} did not reach {want}")
        return f"{name} is {'frozen' if action == 'freeze' else 'thawed'}"

    # ---- power ---------------------------------------------------------------------------
    def power(self, name: str, action: str) -> str:
        """What a PDU outlet does to a Pi: `off` cuts power at once, `on` restores it, `status` says which.

        Fast, for a PDU's command-line driver: `off` returns once the supervisor reports the node down
        (a frozen node is thawed first, so it really dies); `on` returns without waiting for SSH and
        drops a pending hang-reboot (the hung boot is gone once power was cut). The next boot after
        `off` is a cold power-on (a new power epoch), unlike the node's own `reboot`. An execution node
        (no PDU outlet of the fleet's pdudaemon) takes the same actions: `off` kills it abruptly, with
        every ansible-runner worker and ssh on it, as a machine losing power mid-phase.
        """
        meta = self.meta()
        if not meta:
            raise ConfigError("no virtual fleet is up", str(self.root), "run `lab fleet up` first")
        nd = self._member(name, meta)
        if action not in POWER_ACTIONS:
            raise ConfigError(f"unknown power action {action!r}", hint=f"use one of {', '.join(POWER_ACTIONS)}")
        sup = self._supervisor(nd)
        if action == "status":
            return "on" if sup and read_text(nd.desired) == "up" else "off"
        nd.hang_flag.unlink(missing_ok=True)
        if action == "on":
            if sup:
                write_atomic(nd.desired, "up\n")
            else:
                self._start_supervisor(nd)
            return f"{name} power on"
        if not sup:
            return f"{name} power off"
        write_atomic(nd.desired, "down\n")
        self._thaw(nd)  # frozen processes cannot be killed until thawed
        self._wait(lambda: read_text(nd.state) == "down", POWER_OFF_TIMEOUT, f"{name} did not power off")
        return f"{name} power off"

    # ---- moving HATs --------------------------------------------------------------------
    def swap_hats(self, a: str, b: str, log=lambda msg: None) -> str:
        """Move node a's HAT into node b's Pi and b's into a's, as a person does: both powered off, swapped, on.

        What moves is the HAT's part of each node's /lab/hw/unit.json (chip, its name `hat`, from which
        its SoC ID and ULT ID derive, serial, leak, thermal fields); the Pi's part stays (`pi_serial`,
        `pi_model`, `pci_address`). The inventory is rewritten (`lab_chip` follows the HAT). Running
        nodes are powered off first and on again after, so each chip starts fresh in its new Pi. The
        next `lab fleet up --profile` puts the profile's HATs back.
        """
        meta = self.meta()
        if not meta:
            raise ConfigError("no virtual fleet is up", str(self.root), "run `lab fleet up` first")
        for name in (a, b):
            if name not in meta["nodes"]:
                raise ConfigError(f"no node {name!r} in the fleet", hint=f"nodes are {', '.join(meta['nodes'])}")
        if a == b:
            raise ConfigError(f"cannot swap {a}'s HAT with itself", hint="name two different nodes")
        units = {n: json.loads(read_text(self.node(n).hw / "unit.json") or "{}") for n in meta["nodes"]}
        fleet_info = json.loads(read_text(self.node(a).hw / "fleet.json") or "{}")
        running = [n for n in (a, b) if self._supervisor(self.node(n))]
        for name in running:
            log(f"powering {name} off to move its HAT")
            self.fault(name, "down")
        pis = {n: {k: v for k, v in units[n].items() if k in PI_FIELDS} for n in (a, b)}
        units[a], units[b] = {**hat_of(units[b]), **pis[a]}, {**hat_of(units[a]), **pis[b]}
        for name in (a, b):
            write_hw(self.node(name), units[name], fleet_info)
        self._write_inventory(Path(meta["inventory"]), meta, units)
        for name in running:
            log(f"powering {name} on")
            self.fault(name, "up")
        return f"{a} now holds HAT {units[a]['hat']}, {b} holds HAT {units[b]['hat']}"

    def _thaw(self, nd: NodeDir) -> None:
        fdir = self._freezer(nd) if nd.config.exists() else None
        if fdir and (fdir / "freezer.state").exists():
            (fdir / "freezer.state").write_text("THAWED")

    @staticmethod
    def _wait(cond, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise FleetError(message)
            time.sleep(0.1)

    # ---- down ---------------------------------------------------------------------------
    def down(self, log=lambda msg: None) -> list[str]:
        """Stop every node and execution node, remove every mount, process and file of the fleet (caches stay).

        Returns the names of the machines it found (nodes, then execution nodes).
        """
        meta = self.meta()
        machines: dict[str, NodeDir] = {}
        for kind in ("nodes", "executors"):
            folder = self.root / kind
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                machines[path.name] = NodeDir(path, path.name)
        names = list(machines)
        sups = {}
        for name, nd in machines.items():
            sup = self._supervisor(nd)
            if sup:
                self._thaw(nd)
                write_atomic(nd.desired, "stop\n")
                os.kill(sup, signal.SIGTERM)
                sups[name] = sup
        deadline = time.monotonic() + 60
        for name, pid in sups.items():
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                log(f"{name}: supervisor {pid} did not stop in time; killing the node")
                init = container_init(read_pid(machines[name].nspawn_pid))
                if init:
                    os.kill(init, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
        for nd in machines.values():
            self._cleanup_node(nd)
        pdu_pid = ((meta or {}).get("pdudaemon") or {}).get("pid")
        if pdu_pid:
            log(f"stopping pdudaemon {pdu_pid}")
        pdu.stop(pdu_pid, self.root)
        if meta and meta.get("inventory"):
            Path(meta["inventory"]).unlink(missing_ok=True)
        if self.root.exists():
            shutil.rmtree(self.root)
        _rmdir_empty(FREEZER_ROOT / "lab")  # a cgroup directory is removable once it has no children
        for empty in (Path("/run/systemd/nspawn/propagate"), Path("/run/systemd/nspawn/locks"),
                      Path("/run/systemd/nspawn"), self.root.parent):
            _rmdir_empty(empty)
        return names

    def _cleanup_node(self, nd: NodeDir) -> None:
        """Remove what a killed supervisor may have left: the overlay mount and the freezer cgroup."""
        nspawn = read_pid(nd.nspawn_pid)
        if pid_alive(nspawn) and "systemd-nspawn" in " ".join(cmdline(nspawn)[:1]):
            os.kill(nspawn, signal.SIGKILL)
        if os.path.ismount(nd.merged):
            subprocess.run(["umount", "-l", str(nd.merged)], check=False)
        if nd.config.exists():
            fdir = self._freezer(nd)
            if fdir and fdir.is_dir():
                try:
                    fdir.rmdir()
                except OSError:
                    pass


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


def check_inotify(nodes: int, limit_file: Path = INOTIFY_INSTANCES) -> None:
    """Fail before booting when the nodes' systemd would run out of inotify instances.

    Each node's PID 1 takes about three; past the host's per-user limit (128 by default) it exits
    at boot ("Failed to create control group inotify object: Too many open files"), and the node
    never answers SSH. Other fleets on the host take their share, hence the margin.
    """
    try:
        limit = int(limit_file.read_text())
    except (OSError, ValueError):
        return
    if limit < 4 * nodes + 32:
        raise HostSetupError(f"fs.inotify.max_user_instances is {limit}, too few for {nodes} nodes",
                             str(limit_file), f"sysctl -w fs.inotify.max_user_instances={max(1024, 8 * nodes)}")


def _rmdir_empty(path: Path) -> None:
    """Remove a directory the fleet created if nothing is left in it (or in use by another fleet)."""
    try:
        path.rmdir()
    except OSError:
        pass


def ssh_banner(address: str, deadline: float) -> bool:
    """Whether an sshd at address:22 sends its SSH banner before the deadline."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, 22), timeout=2) as sock:
                sock.settimeout(2)
                if sock.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def cpu_ticks(stat: str) -> int:
    """utime + stime + cutime + cstime of a /proc/PID/stat line (0 for a process gone before it was read)."""
    fields = stat.rsplit(")", 1)[-1].split()
    return sum(int(f) for f in fields[11:15]) if len(fields) >= 15 else 0


def status_dicts(statuses: list[NodeStatus]) -> list[dict]:
    """Statuses as plain dicts for --json."""
    return [asdict(s) for s in statuses]
