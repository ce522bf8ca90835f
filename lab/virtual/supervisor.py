"""Per-node supervisor: boots a node with systemd-nspawn, boots it again when it reboots, obeys faults.

Run detached by `lab fleet up` as `python -m lab.virtual.supervisor NODE_DIR`. It owns the node's
overlay mount and freezer cgroup and removes both when it stops. Control is through small files in
NODE_DIR (`desired`: up, down or stop; `hang-reboot`), so `lab fleet` commands never need a socket.

Every cold power-on (the first boot, a boot after the node was down) increments the node's power
epoch in its hardware directory (/lab/hw/power-epoch inside the node); a warm reboot (the node's own
`reboot`, or a hung reboot let go) does not. The emulator tells the two apart by it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.virtual.emulator.hailo_emu.hw import POWER_EPOCH_FILE
from lab.virtual.node import HW_MOUNT, REPO_MOUNT, NodeDir, container_init, read_text, write_atomic


def next_power_epoch(current: str | None) -> int:
    """The epoch after `current` (1 when nothing, or nothing readable, was recorded)."""
    return int(current) + 1 if current and current.isdigit() else 1


def bump_power_epoch(hw_dir: Path) -> int:
    """Record one more cold power-on of the node; returns the new epoch."""
    epoch = next_power_epoch(read_text(hw_dir / POWER_EPOCH_FILE))
    write_atomic(hw_dir / POWER_EPOCH_FILE, f"{epoch}\n")
    return epoch

REBOOT_EXIT = 133  # systemd-nspawn's status when the container asked for a reboot
POLL = 0.1
STOP_GRACE = 20.0


def freezer_dir(config: dict) -> Path | None:
    """The node's cgroup-v1 freezer directory, or None where the host has no freezer hierarchy."""
    path = config.get("freezer")
    return Path(path) if path else None


def nspawn_command(nd: NodeDir, config: dict) -> list[str]:
    """The systemd-nspawn command line that boots this node (shared host network, own everything else)."""
    cmd = [
        "systemd-nspawn",
        "--boot",
        "--register=no",
        "--keep-unit",
        "--quiet",
        f"--directory={nd.merged}",
        f"--machine={config['machine']}",
        f"--hostname={nd.name}",
        "--console=read-only",
        "--link-journal=no",
        "--resolv-conf=off",
        "--timezone=off",
    ]
    if config.get("hw", True):  # an execution node has no hardware of its own to describe
        cmd.append(f"--bind-ro={nd.hw}:{HW_MOUNT}")
    if config.get("repo"):
        cmd.append(f"--bind-ro={config['repo']}:{REPO_MOUNT}")
    for source, target in config.get("bind_ro", []):  # e.g. an execution node's ansible-runner tree
        cmd.append(f"--bind-ro={source}:{target}")
    return cmd


class Supervisor:
    """Keeps one node in the state its control files ask for."""

    def __init__(self, root: Path):
        self.nd = NodeDir(root, root.name)
        self.config = json.loads(self.nd.config.read_text())
        self.stopping = False
        self.proc: subprocess.Popen | None = None

    def log(self, msg: str) -> None:
        """One timestamped line in the supervisor's log (its stdout)."""
        print(f"{time.strftime('%H:%M:%S')} {self.nd.name}: {msg}", flush=True)

    def set_state(self, state: str) -> None:
        write_atomic(self.nd.state, state + "\n")

    def desired(self) -> str:
        return "stop" if self.stopping else (read_text(self.nd.desired) or "up")

    def _on_term(self, signum, frame) -> None:
        self.stopping = True

    def mount(self) -> None:
        """Mount the node's overlay: the shared base image below, the node's own upper layer above."""
        if os.path.ismount(self.nd.merged):
            return
        opts = f"lowerdir={self.config['rootfs']},upperdir={self.nd.upper},workdir={self.nd.work}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.nd.merged)], check=True)

    def unmount(self) -> None:
        if os.path.ismount(self.nd.merged):
            subprocess.run(["umount", str(self.nd.merged)], check=False)

    def _join_freezer(self) -> None:
        """Runs in the child before exec: every process of the node lives in the node's freezer cgroup."""
        fdir = freezer_dir(self.config)
        if fdir is not None:
            (fdir / "cgroup.procs").write_text(str(os.getpid()))

    def thaw(self) -> None:
        fdir = freezer_dir(self.config)
        if fdir is not None and (fdir / "freezer.state").exists():
            (fdir / "freezer.state").write_text("THAWED")

    def power_cut(self) -> None:
        """Kill the node's PID 1: every process of the node dies at once, like pulling the plug."""
        init = container_init(self.proc.pid) if self.proc else None
        if init:
            os.kill(init, signal.SIGKILL)

    def boot(self) -> tuple[int, bool]:
        """Boot the node once and wait until systemd-nspawn exits; return its status and whether we asked."""
        self.set_state("running")
        with open(self.nd.console_log, "ab") as console:
            self.proc = subprocess.Popen(
                nspawn_command(self.nd, self.config),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=console,
                preexec_fn=self._join_freezer,
            )
        write_atomic(self.nd.nspawn_pid, f"{self.proc.pid}\n")
        self.log(f"booting (nspawn pid {self.proc.pid})")
        asked_down = False
        while self.proc.poll() is None:
            want = self.desired()
            if want == "down" and not asked_down:
                asked_down = True
                self.thaw()  # frozen processes cannot act on a signal
                self.power_cut()
                deadline = time.monotonic() + STOP_GRACE
            elif want == "stop" and not asked_down:
                asked_down = True
                self.thaw()
                self.proc.send_signal(signal.SIGTERM)  # nspawn asks the node's systemd to halt
                deadline = time.monotonic() + STOP_GRACE
            if asked_down and time.monotonic() > deadline:
                init = container_init(self.proc.pid)
                if init:
                    os.kill(init, signal.SIGKILL)
                deadline = time.monotonic() + STOP_GRACE
            time.sleep(POLL)
        self.nd.nspawn_pid.unlink(missing_ok=True)
        return self.proc.returncode, asked_down

    def run(self) -> None:
        """Main loop: boot, reboot on request, wait while down or hung, stop when asked."""
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        write_atomic(self.nd.supervisor_pid, f"{os.getpid()}\n")
        Path("/run/systemd/nspawn").mkdir(parents=True, exist_ok=True)
        fdir = freezer_dir(self.config)
        if fdir is not None:
            fdir.mkdir(parents=True, exist_ok=True)
        try:
            self.mount()
            hung = False
            cold = True  # the node's first boot under this supervisor comes from power off
            while True:
                want = self.desired()
                if want == "stop":
                    break
                if hung and not self.nd.hang_flag.exists():
                    hung = False
                if want == "down" or hung:
                    self.set_state("hung" if hung else "down")
                    cold = cold or want == "down"  # a hung reboot let go is still a warm one
                    time.sleep(POLL)
                    continue
                if cold:
                    if self.config.get("hw", True):
                        self.log(f"cold power-on (power epoch {bump_power_epoch(self.nd.hw)})")
                    else:
                        self.log("cold power-on")
                    cold = False
                status, asked = self.boot()
                self.log(f"systemd-nspawn exited with {status}")
                if self.desired() == "stop":
                    break
                if status == REBOOT_EXIT:
                    if self.nd.hang_flag.exists():
                        self.log("reboot hangs (fault injected) until `lab fleet fault NODE up`")
                        hung = True
                    continue
                if not asked:  # the node powered itself off, or its PID 1 died
                    write_atomic(self.nd.desired, "down\n")
                self.set_state("down")
        finally:
            self.set_state("stopped")
            self.unmount()
            if fdir is not None:
                try:
                    fdir.rmdir()
                except OSError as exc:
                    self.log(f"freezer cgroup not removed: {exc}")
            self.nd.supervisor_pid.unlink(missing_ok=True)
            self.log("stopped")


def main(argv: list[str]) -> int:
    """Entry point: supervise the node whose directory is argv[0]."""
    if len(argv) != 1:
        print("usage: python -m lab.virtual.supervisor NODE_DIR", file=sys.stderr)
        return 2
    Supervisor(Path(argv[0])).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
