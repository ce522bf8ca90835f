#!/usr/bin/python3
"""Find, or remove, what a Hailo install leaves outside its packages (stdlib only, Python >= 3.9).

    hailo_leftovers.py list      print the leftovers as JSON: {"left": [...]}
    hailo_leftovers.py remove    remove them; print {"removed": [...], "left": [...]}

Leftovers: DKMS trees (/var/lib/dkms/hailo*, /usr/src/hailo*), module files of any kernel
(/lib/modules/*/.../hailo*.ko, e.g. updates/dkms/ or kernel/drivers/misc/ from a `make install`),
`hailort` wheels installed with pip (or by lab) and a `hailo_platform` left in a site directory (both
shadow a packaged binding), firmware and configuration files. Paths are taken under HAILO_CLEAN_ROOT
(default /) and the site directories from sys.path (HAILO_CLEAN_SITE overrides, ':'-separated), so
tests can use a tree of their own.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import subprocess
import sys

PATTERNS = (
    "/var/lib/dkms/hailo*",
    "/usr/src/hailo*",
    "/lib/modules/*/**/hailo*.ko*",
    "/usr/lib/modules/*/**/hailo*.ko*",
    "/lib/firmware/hailo",
    "/usr/lib/firmware/hailo",
    "/etc/hailo",
    "/etc/modprobe.d/hailo_pci.conf",
    "/etc/modprobe.d/hailo1x_pci.conf",
    "/etc/udev/rules.d/51-hailo-udev.rules",
    "/usr/share/hailo-models",
    "/var/cache/lab-debs",
)


def root() -> str:
    return os.environ.get("HAILO_CLEAN_ROOT", "").rstrip("/")


def site_dirs() -> list:
    """Directories Python imports from, where a wheel or a stray hailo_platform can sit."""
    if os.environ.get("HAILO_CLEAN_SITE"):
        return [d for d in os.environ["HAILO_CLEAN_SITE"].split(":") if d]
    return [d for d in sys.path if d.endswith(("site-packages", "dist-packages")) and os.path.isdir(d)]


def leftovers() -> list:
    """Every leftover path, sorted, none inside another."""
    found = set()
    for pattern in PATTERNS:
        found.update(glob.glob(root() + pattern, recursive=True))
    for site in site_dirs():
        found.update(glob.glob(os.path.join(site, "hailort-*.dist-info")))
        found.update(glob.glob(os.path.join(site, "hailo_platform")))
    if os.path.lexists(root() + "/dev/hailo0"):
        found.add(root() + "/dev/hailo0")
    ordered = sorted(found)
    return [p for p in ordered if not any(p.startswith(q + "/") for q in ordered if q != p)]


def record_files(info: str) -> list:
    """The files a wheel's RECORD lists (its whole installation, e.g. hailo_platform/...)."""
    record = os.path.join(info, "RECORD")
    if not os.path.exists(record):
        return []
    base = os.path.dirname(info)
    with open(record, newline="") as f:
        return [os.path.normpath(os.path.join(base, row[0])) for row in csv.reader(f) if row]


def remove() -> list:
    """Remove every leftover (a wheel with all its files); refresh the module index of touched kernels."""
    removed, kernels = [], set()
    for path in leftovers():
        targets = [path]
        if path.endswith(".dist-info"):
            targets = record_files(path) + [path]
        for target in targets:
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            elif os.path.lexists(target):
                os.unlink(target)
        if "/modules/" in path and path.endswith((".ko", ".ko.xz", ".ko.zst", ".ko.gz")):
            kernels.add(path.split("/modules/", 1)[1].split("/", 1)[0])
        removed.append(path)
    for kernel in sorted(kernels):  # the module index must not point at a removed file
        if not root() and os.path.exists("/lib/modules/%s/modules.dep" % kernel) and shutil.which("depmod"):
            subprocess.run(["depmod", kernel], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return removed


def main(argv: list) -> int:
    """Command line: list | remove."""
    if argv == ["list"]:
        print(json.dumps({"left": leftovers()}))
    elif argv == ["remove"]:
        removed = remove()
        print(json.dumps({"removed": removed, "left": leftovers()}))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
