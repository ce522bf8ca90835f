"""The chip's state under /run/hailo-emu: one JSON document updated under an exclusive fcntl lock.

/run is new at every boot of the node, so the chip starts fresh at every boot. A unit whose profile
says `warm_reboot_keeps_power` also keeps a copy in the node's persistent storage, stamped with the
host's power epoch (/lab/hw/power-epoch, which the fleet's supervisor increments at every cold
power-on): a warm reboot then finds the chip as it was (`boot_state`), a power cycle does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid

SCHEMA = 1
STATE_FILE = "chip.json"
CARRY_FILE = "chip-powered.json"  # in the persistent directory: the chip's state while the HAT keeps power
# What the host's boot resets even when the HAT keeps power: the kernel's side of the device.
HOST_FIELDS = ("modules", "bound", "active", "enabled_once", "probes", "pcie_present")
LOCK_FILE = "chip.lock"
DEVICE_LOCK_FILE = "device.lock"


def shared_dir(path: str) -> None:
    """Create a state directory every user may use (the real device node is mode 0666 by udev rule)."""
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        try:
            os.chmod(path, 0o777)
        except PermissionError:
            pass


def shared_file(path: str) -> None:
    """Make a state file readable and writable by every user (best effort)."""
    try:
        os.chmod(path, 0o666)
    except (PermissionError, FileNotFoundError):
        pass


def power_on_state(now: float) -> dict:
    """The state of a chip that has just been powered on (first access after a host boot)."""
    return {
        "schema": SCHEMA,
        "boot_id": uuid.uuid4().hex,
        "v": 0.0,  # virtual (nominal) seconds since power-on
        "r": now,  # real monotonic time of the last update
        "temp": None,  # die temperature, set from the unit's idle temperature on first use
        "pcie_present": True,
        "enabled_once": False,
        "modules": {},  # loaded driver modules: name -> version
        "bound": None,  # module bound to the chip (the device node exists)
        "firmware": None,  # firmware version running on the chip
        "bricked": False,
        "configures": 0,
        "cma_used": 0.0,
        "fallback": 0.0,
        "active": None,  # pid of a process streaming inference (its steps advance time)
        "probes": 0,
    }


def boot_state(carried, keeps_power: bool, epoch, now: float) -> dict:
    """The chip's state at the first access of a boot of the host.

    Fresh (`power_on_state`) unless the unit keeps the HAT powered through a warm reboot and the
    carried state was written in this same power epoch (no cold power-on since): then the chip's own
    state (firmware, bricked, CMA pool, degradation, temperature, its boot_id) survives and only the
    host's side (loaded modules, binding, PCI enable) starts over.
    """
    if keeps_power and epoch is not None and isinstance(carried, dict) and carried.get("schema") == SCHEMA \
            and carried.get("power_epoch") == epoch:
        state = dict(carried)
        fresh = power_on_state(now)
        for key in HOST_FIELDS:
            state[key] = fresh[key]
        return state
    state = power_on_state(now)
    state["power_epoch"] = epoch
    return state


class Store:
    """Reads and writes the state document; every change happens inside `transaction()`."""

    def __init__(self, state_dir: str, carry_dir=None, epoch=None):
        self.state_dir = state_dir
        self.carry_dir = carry_dir  # set when the unit keeps power through a warm reboot
        self.epoch = epoch  # the host's power epoch, None where nothing records it

    def _path(self, name: str) -> str:
        """A file inside the state directory."""
        return os.path.join(self.state_dir, name)

    def _open_shared(self, name: str) -> int:
        """Open (creating it for every user on first use) a lock file of the state directory."""
        path = self._path(name)
        if os.path.exists(path):
            return os.open(path, os.O_RDWR)
        shared_dir(self.state_dir)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        shared_file(path)
        return fd

    def _load(self):
        """The stored document, or None before the first write of this boot."""
        try:
            with open(self._path(STATE_FILE), encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        return data if data.get("schema") == SCHEMA else None

    def _save(self, state: dict) -> None:
        """Write the document atomically (temporary file, then rename)."""
        tmp = self._path(STATE_FILE + ".tmp.%d" % os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f, sort_keys=True)
        shared_file(tmp)
        os.replace(tmp, self._path(STATE_FILE))
        if self.carry_dir:
            shared_dir(self.carry_dir)
            carry = os.path.join(self.carry_dir, CARRY_FILE)
            tmp = carry + ".tmp.%d" % os.getpid()
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(state, f, sort_keys=True)
            shared_file(tmp)
            os.replace(tmp, carry)

    def _carried(self):
        """The state a previous boot of this power epoch left, or None."""
        if not self.carry_dir:
            return None
        try:
            with open(os.path.join(self.carry_dir, CARRY_FILE), encoding="utf-8") as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    @contextlib.contextmanager
    def transaction(self, now: float):
        """Yield the state locked for writing; it is saved when the block ends without an exception."""
        fd = self._open_shared(LOCK_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = self._load() or boot_state(self._carried(), bool(self.carry_dir), self.epoch, now)
            yield state
            self._save(state)
        finally:
            os.close(fd)

    def peek(self):
        """The current document without locking for write (None before the first write)."""
        return self._load()

    def claim_device(self):
        """Take the exclusive use of the device; returns a handle to close, or None when it is busy."""
        fd = self._open_shared(DEVICE_LOCK_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def device_busy(self) -> bool:
        """Whether some process holds the device (used by the driver shim's unload)."""
        fd = self.claim_device()
        if fd is None:
            return True
        os.close(fd)
        return False


def pid_alive(pid) -> bool:
    """Whether a process with this pid exists."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
