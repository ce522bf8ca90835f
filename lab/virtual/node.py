"""One virtual node on disk: its overlay layers, identity, SSH host keys and control files."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from lab.errors import FleetError
from lab.virtual.emulator.hailo_emu.hw import pi_identity

HW_MOUNT = "/lab/hw"  # where the unit's hardware description appears inside the node
# The emulated wall clock (a Pi 5 without an RTC battery is stepped by timesyncd shortly after boot):
# a start-up hook of the node's Python, see lab/virtual/emulator/hailo_emu/wallclock.py.
WALLCLOCK_SOURCE = Path(__file__).parent / "emulator" / "hailo_emu" / "wallclock.py"
WALLCLOCK_DIR = "usr/lib/python3/dist-packages"
WALLCLOCK_PTH = "import lab_emu_wallclock; lab_emu_wallclock.install()\n"
REPO_MOUNT = "/srv/lab-apt"  # where the lab's apt repository appears inside the node
ARCHIVE_LINE = f"deb [trusted=yes] file:{REPO_MOUNT} ./"  # the emulated Raspberry Pi archive, listed by every node


@dataclass(frozen=True)
class NodeDir:
    """Paths of one node's state under the fleet directory (data only, no I/O)."""

    root: Path
    name: str

    @property
    def upper(self) -> Path:
        return self.root / "upper"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def hw(self) -> Path:
        return self.root / "hw"

    @property
    def config(self) -> Path:
        return self.root / "node.json"

    @property
    def supervisor_pid(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def nspawn_pid(self) -> Path:
        return self.root / "nspawn.pid"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def desired(self) -> Path:
        return self.root / "desired"

    @property
    def hang_flag(self) -> Path:
        return self.root / "hang-reboot"

    @property
    def console_log(self) -> Path:
        return self.root / "console.log"

    @property
    def host_pubkey(self) -> Path:
        return self.upper / "etc/ssh/ssh_host_ed25519_key.pub"


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file through a temporary name and rename, so readers never see half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def prepare(nd: NodeDir, address: str, authorized_key: str, unit: dict, fleet_info: dict, config: dict) -> None:
    """Create the node's upper layer once: hostname, machine-id, host keys, sshd address, root's key."""
    nd.hw.mkdir(parents=True, exist_ok=True)
    prepare_machine(nd, address, authorized_key)
    if config.get("rootfs"):
        add_login_user(nd, Path(config["rootfs"]), authorized_key)
    if config.get("repo"):
        # The node lists the emulated archive as Raspberry Pi OS lists archive.raspberrypi.com.
        (nd.upper / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
        write_atomic(nd.upper / "etc/apt/sources.list.d/raspi.list", ARCHIVE_LINE + "\n")
    install_wallclock(nd)
    write_hw(nd, unit, fleet_info)
    write_atomic(nd.config, json.dumps(config, indent=2, sort_keys=True) + "\n")


# On an execution node (lab.virtual.fleet): the key its Ansible and the collector's reads use for the
# nodes, and the nodes' host keys. The fleet's inventory names these paths for the nodes it assigns to it.
EXECUTOR_NODE_KEY = "/root/.ssh/lab_nodes"
EXECUTOR_KNOWN_HOSTS = "/root/.ssh/lab_known_hosts"


def prepare_executor(nd: NodeDir, address: str, authorized_key: str, node_key: Path, known_hosts: str,
                     runner_files: dict[str, str], config: dict) -> None:
    """Create an execution node's upper layer: the machine (as a node's), the nodes' key and host keys, the runner.

    No login user, no Hailo device, no archive: root logs in with the controller's key; `node_key` (a
    private key file on the controller) and `known_hosts` (the nodes' host keys) go to EXECUTOR_NODE_KEY
    and EXECUTOR_KNOWN_HOSTS; `runner_files` (lab.virtual.runner.files) put ansible-runner on its PATH.
    """
    prepare_machine(nd, address, authorized_key)
    ssh_dir = nd.upper / "root/.ssh"
    write_atomic(nd.upper / EXECUTOR_NODE_KEY.lstrip("/"), node_key.read_text(), 0o600)
    write_atomic(ssh_dir / Path(EXECUTOR_NODE_KEY).with_suffix(".pub").name,
                 node_key.with_suffix(".pub").read_text(), 0o644)
    write_atomic(nd.upper / EXECUTOR_KNOWN_HOSTS.lstrip("/"), known_hosts, 0o644)
    for rel, text in runner_files.items():
        path = nd.upper / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text, 0o755 if rel.startswith("usr/local/bin/") else 0o644)
    write_atomic(nd.config, json.dumps(config, indent=2, sort_keys=True) + "\n")


def prepare_machine(nd: NodeDir, address: str, authorized_key: str) -> None:
    """What every fleet machine gets once: hostname, machine-id, host key, sshd on its own address, root's key."""
    for d in (nd.upper, nd.work, nd.merged):
        d.mkdir(parents=True, exist_ok=True)
    etc = nd.upper / "etc"
    (etc / "ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    if not (etc / "machine-id").exists():
        write_atomic(etc / "machine-id", uuid.uuid4().hex + "\n", 0o444)
    write_atomic(etc / "hostname", nd.name + "\n")
    write_atomic(
        etc / "hosts",
        f"127.0.0.1\tlocalhost\n{address}\t{nd.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )
    key = etc / "ssh/ssh_host_ed25519_key"
    if not key.exists():
        proc = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{nd.name}", "-f", str(key)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise FleetError(f"ssh-keygen failed for {nd.name}: {proc.stderr.strip()}", hint="apt-get install openssh-client")
    write_atomic(
        etc / "ssh/sshd_config.d/lab.conf",
        "# written by lab fleet up: this node listens on its own loopback address only\n"
        f"ListenAddress {address}\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "UseDNS no\n"
        "MaxStartups 100:30:200\n"
        "MaxSessions 64\n"
        # Every controller connection comes from 127.0.0.1: without this, the connections that piled
        # up while the node was frozen count as penalties and sshd then drops the controller for minutes.
        "PerSourcePenaltyExemptList 127.0.0.0/8\n",
    )
    # Seen on nspawn nodes right after a reboot: PID 1 fails to spawn systemd-user-sessions ("Failed to
    # spawn executor: No such file or directory", result 'resources'); /run/nologin then stays and only
    # root may log in, so the node never lets `pi` back. Retry it, as a unit that failed for resources.
    dropin = etc / "systemd/system/systemd-user-sessions.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    write_atomic(dropin / "lab-retry.conf",
                 "# written by lab fleet up (virtual nodes only): retry a start the executor failed\n"
                 "[Unit]\nStartLimitIntervalSec=0\n\n[Service]\nRestart=on-failure\nRestartSec=1\n")
    ssh_dir = nd.upper / "root/.ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    write_atomic(ssh_dir / "authorized_keys", authorized_key.strip() + "\n", 0o600)


def install_wallclock(nd: NodeDir) -> None:
    """Put the emulated wall clock's start-up hook into the node's Python (every interpreter imports it)."""
    site = nd.upper / WALLCLOCK_DIR
    site.mkdir(parents=True, exist_ok=True)
    write_atomic(site / "lab_emu_wallclock.py", WALLCLOCK_SOURCE.read_text())
    write_atomic(site / "lab-emu-wallclock.pth", WALLCLOCK_PTH)


LOGIN_USER = "pi"
LOGIN_UID = 1000


def add_login_user(nd: NodeDir, rootfs: Path, authorized_key: str) -> None:
    """The node's login user, as on a Pi: `pi` (uid 1000, key login only) with passwordless sudo.

    Inventories log in as this user with become, as on a rack; root's key stays for the fleet's own
    tooling (readiness checks, fault injection). The account files are the base image's plus one line,
    written to the node's upper layer.
    """
    etc = nd.upper / "etc"
    lines = {
        "passwd": f"{LOGIN_USER}:x:{LOGIN_UID}:{LOGIN_UID}:,,,:/home/{LOGIN_USER}:/bin/bash",
        "group": f"{LOGIN_USER}:x:{LOGIN_UID}:",
        "shadow": f"{LOGIN_USER}:*:20000:0:99999:7:::",
    }
    for name, line in lines.items():
        base = etc / name if (etc / name).exists() else rootfs / "etc" / name
        text = base.read_text()
        if not any(row.split(":", 1)[0] == LOGIN_USER for row in text.splitlines()):
            text = text.rstrip("\n") + "\n" + line + "\n"
        if name == "group":  # the sudo group, as on Raspberry Pi OS
            text = "".join(
                (row + ("," if row.split(":")[3] else "") + LOGIN_USER if row.startswith("sudo:")
                 and LOGIN_USER not in row.split(":")[3].split(",") else row) + "\n" for row in text.splitlines())
        stat = base.stat()
        write_atomic(etc / name, text, stat.st_mode & 0o777)
        os.chown(etc / name, stat.st_uid, stat.st_gid)
    (etc / "sudoers.d").mkdir(parents=True, exist_ok=True)
    write_atomic(etc / "sudoers.d/010_pi-nopasswd", f"{LOGIN_USER} ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    home = nd.upper / "home" / LOGIN_USER
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    write_atomic(home / ".ssh/authorized_keys", authorized_key.strip() + "\n", 0o600)
    for path in (home, home / ".ssh", home / ".ssh/authorized_keys"):
        os.chown(path, LOGIN_UID, LOGIN_UID)
    os.chmod(home, 0o755)
    os.chmod(home / ".ssh", 0o700)


DEVICETREE_DIR = "devicetree"  # under /lab/hw: the Pi's serial-number and model, as /sys/firmware/devicetree/base has them


def write_hw(nd: NodeDir, unit: dict, fleet_info: dict) -> None:
    """Write the unit's hardware and the fleet's settings, which the node sees read-only at /lab/hw.

    Also the Pi's own identity as a Pi's devicetree gives it (`serial-number`, `model`, NUL-terminated)
    in /lab/hw/devicetree, which the virtual inventory's `lab_devicetree_dir` names.
    """
    nd.hw.mkdir(parents=True, exist_ok=True)
    entry = {**unit, "node": nd.name}
    write_atomic(nd.hw / "unit.json", json.dumps(entry, indent=2, sort_keys=True) + "\n")
    write_atomic(nd.hw / "fleet.json", json.dumps(fleet_info, indent=2, sort_keys=True) + "\n")
    pi = pi_identity(entry)
    dt = nd.hw / DEVICETREE_DIR
    dt.mkdir(exist_ok=True)
    write_atomic(dt / "serial-number", pi["pi_serial"] + "\0")
    write_atomic(dt / "model", pi["pi_model"] + "\0")


def read_text(path: Path) -> str | None:
    """Content of a small control file, or None when it does not exist."""
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_pid(path: Path) -> int | None:
    """PID stored in a pid file, or None."""
    text = read_text(path)
    return int(text) if text and text.isdigit() else None


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this PID exists (zombies count as gone)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def cmdline(pid: int) -> list[str]:
    """Command line of a process, [] if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [p.decode(errors="replace") for p in fh.read().split(b"\0") if p]
    except OSError:
        return []


def container_init(nspawn_pid: int | None) -> int | None:
    """PID (on the host) of the node's PID 1, the child of systemd-nspawn."""
    if not pid_alive(nspawn_pid):
        return None
    try:
        children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def boot_id(init_pid: int | None) -> str | None:
    """The node's own boot_id, read through its PID 1's view of /proc."""
    if not init_pid:
        return None
    return read_text(Path(f"/proc/{init_pid}/root/proc/sys/kernel/random/boot_id"))
