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
from lab.virtual import image, inventory_file, paths, pdu
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


@dataclass
class NodeStatus:
    """What `lab fleet status` reports for one node."""

    name: str
    address: str
    state: str
    boot_id: str | None
    supervisor_pid: int | None
    note: str | None = None


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

    def meta(self) -> dict | None:
        """The fleet's recorded settings, or None when no fleet exists here."""
        text = read_text(self.meta_file)
        return json.loads(text) if text else None

    def node(self, name: str) -> NodeDir:
        return NodeDir(self.root / "nodes" / name, name)

    def address(self, index: int) -> str:
        return f"{self.net}.{index}"

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
           inventory: Path = Path("inventory/virtual.yml"), log=lambda msg: None) -> dict:
        """Build (once) and boot the fleet, write its inventory, wait until every node answers SSH."""
        self.check_host()
        if time_scale <= 0 or time_scale > 1:
            raise ConfigError(f"time scale {time_scale} is out of range", "--time-scale", "give a value in (0, 1]")
        units = load_profile(profile) if profile else {}
        count = nodes if nodes is not None else (len(units) or 4)
        if not 1 <= count <= 250:
            raise ConfigError(f"cannot run {count} nodes", "--nodes", "give 1 to 250")
        names = node_names(count)
        if profile:
            check_profile_nodes(units, names, profile)
        check_inotify(count)
        meta = self.meta()
        if meta and meta["nodes"] != names:
            raise ConfigError(
                f"a fleet of {len(meta['nodes'])} nodes is already up at {self.root}",
                hint="run `lab fleet down` first, or ask for the same --nodes",
            )
        pdu.check_installed()
        for i, name in enumerate(names, start=1):  # before anything is written or built
            if not self._supervisor(self.node(name)):
                self.check_address_free(self.address(i))
        pdu_pid = self._pdudaemon(meta)
        if pdu_pid is None:
            pdu.check_address_free(self.net)
        rootfs = image.ensure_image(self.cache, os.environ.get("LAB_DEBIAN_MIRROR", image.DEFAULT_MIRROR), log=log)
        repo = self._repository(log)
        self.root.mkdir(parents=True, exist_ok=True)
        fleet_id = meta["id"] if meta else uuid.uuid4().hex[:8]
        meta = {
            "id": fleet_id,
            "nodes": names,
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
            prepare(nd, address, pubkey, units.get(name, {}), fleet_info, config)
            to_boot.append(nd)
        self._write_known_hosts(names)
        self._write_inventory(Path(inventory), meta, units)
        for nd in to_boot:
            self._start_supervisor(nd)
        if pdu_pid is None:
            log(f"starting pdudaemon on {pdu.daemon_address(self.net)}")
            meta["pdudaemon"]["pid"] = pdu.start(self.root, self.net, sys.executable)
            write_atomic(self.meta_file, json.dumps(meta, indent=2) + "\n")
        log(f"booting {len(to_boot)} node(s), {len(names) - len(to_boot)} already running")
        self.wait_ssh(names, SSH_READY_TIMEOUT)
        elapsed = time.monotonic() - started
        return {"nodes": names, "booted": [nd.name for nd in to_boot], "seconds": round(elapsed, 1),
                "inventory": meta["inventory"]}

    def _write_inventory(self, path: Path, meta: dict, units: dict[str, dict]) -> None:
        """Write the fleet's Ansible inventory: one host per node at its address, with its unit's variables."""
        addresses = {name: self.address(i) for i, name in enumerate(meta["nodes"], start=1)}
        power = {name: pdu.lab_power_entry(self.net, i) for i, name in enumerate(meta["nodes"], start=1)}
        inventory_file.write(path, inventory_file.render(self.root, self.key_file, self.known_hosts, meta, addresses,
                                                         units, power))

    def _repository(self, log) -> Path:
        """The emulated Hailo packages' apt repository, built (once) by the emulator's packaging."""
        log("checking the emulated Hailo apt repository")
        return build_repository(self.cache / "apt")

    def _ssh_key(self) -> str:
        """The fleet's one SSH key pair (created once); returns the public key."""
        if not self.key_file.exists():
            self.key_file.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.key_file.parent, 0o700)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab-fleet", "-f", str(self.key_file)],
                           check=True)
        return self.key_file.with_suffix(".pub").read_text()

    def _write_known_hosts(self, names: list[str]) -> None:
        """Record every node's host key, so SSH verifies the nodes (no StrictHostKeyChecking=no)."""
        lines = []
        for i, name in enumerate(names, start=1):
            key = self.node(name).host_pubkey.read_text().split()
            lines.append(f"{self.address(i)} {key[0]} {key[1]}")
        write_atomic(self.known_hosts, "\n".join(lines) + "\n")

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
        addresses = {name: self.address(i) for i, name in enumerate(self.meta()["nodes"], start=1)}

        def ready(name: str) -> bool:
            return ssh_banner(addresses[name], deadline) and self._logins_allowed(self.node(name), deadline)

        with ThreadPoolExecutor(max_workers=min(32, len(names))) as pool:
            answered = dict(zip(names, pool.map(ready, names)))
        late = [n for n, ok in answered.items() if not ok]
        if late:
            raise FleetError(f"node(s) {', '.join(late)} did not let {LOGIN_USER} log in over SSH within {timeout:.0f} s",
                             str(self.root / "nodes" / late[0] / "console.log"), "read the node's console log")

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
        """State of every node: running, frozen, down (or hung in a reboot), with its boot_id."""
        meta = self.meta()
        if not meta:
            return []
        result = []
        for i, name in enumerate(meta["nodes"], start=1):
            nd = self.node(name)
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
            result.append(NodeStatus(name, self.address(i), state, boot_id(init) if state == "running" else None,
                                     sup, "reboot hangs until `fault up`" if hung else None))
        return result

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
        if name not in meta["nodes"]:
            raise ConfigError(f"no node {name!r} in the fleet", hint=f"nodes are {', '.join(meta['nodes'])}")
        if action not in FAULTS:
            raise ConfigError(f"unknown fault {action!r}", hint=f"use one of {', '.join(FAULTS)}")
        nd = self.node(name)
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
        `off` is a cold power-on (a new power epoch), unlike the node's own `reboot`.
        """
        meta = self.meta()
        if not meta:
            raise ConfigError("no virtual fleet is up", str(self.root), "run `lab fleet up` first")
        if name not in meta["nodes"]:
            raise ConfigError(f"no node {name!r} in the fleet", hint=f"nodes are {', '.join(meta['nodes'])}")
        if action not in POWER_ACTIONS:
            raise ConfigError(f"unknown power action {action!r}", hint=f"use one of {', '.join(POWER_ACTIONS)}")
        nd = self.node(name)
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
        """Stop every node, remove every mount, process and file of the fleet (the image cache stays)."""
        meta = self.meta()
        nodes_dir = self.root / "nodes"
        names = sorted(p.name for p in nodes_dir.iterdir()) if nodes_dir.is_dir() else []
        sups = {}
        for name in names:
            nd = self.node(name)
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
                init = container_init(read_pid(self.node(name).nspawn_pid))
                if init:
                    os.kill(init, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
        for name in names:
            self._cleanup_node(self.node(name))
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


def status_dicts(statuses: list[NodeStatus]) -> list[dict]:
    """Statuses as plain dicts for --json."""
    return [asdict(s) for s in statuses]
