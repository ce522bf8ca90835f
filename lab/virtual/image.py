"""The base root file system of every virtual node: debootstrapped Debian Trixie, built once and cached."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from lab.errors import FleetError, HostSetupError

SUITE = "trixie"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What the roles and the emulator need on a node; changing this list changes the cache key.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    # python3-hailort / python3-h10-hailort depend on it (pyhailort's buffers are numpy arrays); the
    # nodes have no Debian source to fetch it from when the emulated Hailo package is installed
    "python3-numpy",
    "apt",
    "kmod",
    "iproute2",
    "procps",
    "pciutils",
    "sudo",
)
# Units that only slow a lab node down or reach the network.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "console-getty.service",
    "getty@tty1.service",
    "systemd-tmpfiles-clean.timer",
)
# Bump when customize() changes, so old caches are not reused.
RECIPE_VERSION = 1


def cache_key(mirror: str = DEFAULT_MIRROR, packages: tuple[str, ...] = PACKAGES) -> str:
    """Hash of every input of the image, so a changed input builds a new image."""
    recipe = {
        "suite": SUITE,
        "mirror": mirror,
        "packages": sorted(packages),
        "masked": sorted(MASKED_UNITS),
        "recipe": RECIPE_VERSION,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def customize(root: Path) -> None:
    """Turn a fresh debootstrap tree into a node template: no host keys, no identity, no network apt."""
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.is_symlink() or dbus_id.exists():
        dbus_id.unlink()
    (root / "etc/hostname").write_text("node\n")
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    # Nodes only ever see the lab's own repository: no traffic leaves loopback.
    for src in ("etc/apt/sources.list", "etc/apt/sources.list.d/debian.sources"):
        (root / src).unlink(missing_ok=True)
    for cached in (root / "var/cache/apt/archives").glob("*.deb"):
        cached.unlink()
    lists = root / "var/lib/apt/lists"
    for entry in lists.glob("*"):
        if entry.is_file():
            entry.unlink()
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)


def ensure_image(cache: Path, mirror: str = DEFAULT_MIRROR, log=None) -> Path:
    """Return the cached root file system, building it with debootstrap if it is missing."""
    key = cache_key(mirror)
    final = cache / "images" / f"{SUITE}-{key}"
    rootfs = final / "rootfs"
    if (final / "complete").exists():
        return rootfs
    if shutil.which("debootstrap") is None:
        raise HostSetupError("debootstrap is not installed (needed once, to build the base image)", hint="apt-get install debootstrap")
    (cache / "images").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{SUITE}-{key}-", dir=cache / "images"))
    try:
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(work / "rootfs"),
            mirror,
        ]
        if log:
            log(f"building the base image ({SUITE}, {len(PACKAGES)} packages); this is done once")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            raise FleetError(
                f"debootstrap of {SUITE} failed: {' / '.join(tail)}",
                hint=f"check that {mirror} is reachable",
            )
        customize(work / "rootfs")
        (work / "recipe.json").write_text(json.dumps({"key": key, "mirror": mirror, "packages": PACKAGES}))
        (work / "complete").write_text("ok\n")
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return rootfs
