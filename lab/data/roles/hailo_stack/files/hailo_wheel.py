#!/usr/bin/python3
"""Install, remove or report Hailo's `hailort` Python wheel on a node, as `pip install` would (stdlib only).

Hailo ships the 5.x and 4.x Python binding (`hailo_platform`) as a wheel, not a .deb. A node may have
no pip, so this installs the wheel itself: the first file compatible with this Python and machine is
unpacked into the local site directory (`/usr/local/lib/python3.X/dist-packages`, where
`pip install --break-system-packages` puts it) with a RECORD, and removal reads every RECORD of a
`hailort` distribution on the path, whoever installed it (a pip-installed wheel shadows the packaged
binding, so a purge must remove it too).

    hailo_wheel.py install VERSION WHEEL...   prints `changed` or `unchanged`
    hailo_wheel.py remove                      prints `changed` or `unchanged`
    hailo_wheel.py version                     prints the installed version, or nothing
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import platform
import re
import shutil
import sys
import sysconfig
import zipfile

DIST = "hailort"


def site_dir() -> str:
    """Where a system-wide wheel goes (Debian: /usr/local/lib/python3.X/dist-packages)."""
    return sysconfig.get_paths()["purelib"]


def compatible(filename: str, python: tuple = sys.version_info[:2], machine: str = platform.machine()) -> bool:
    """Whether a wheel file name's tags fit this interpreter and machine."""
    m = re.fullmatch(r"[^-]+-[^-]+(-\d[^-]*)?-([^-]+)-([^-]+)-([^-]+)\.whl", filename)
    if not m:
        return False
    pythons, platforms = m.group(2).split("."), m.group(4).split(".")
    here = "cp%d%d" % python
    py_ok = any(p in (here, "py3", "py%d%d" % python) for p in pythons)
    plat_ok = any(p == "any" or p.endswith("_" + machine) for p in platforms)
    return py_ok and plat_ok


def installed() -> list:
    """(dist-info directory, version) of every `hailort` distribution on sys.path."""
    out = []
    for entry in dict.fromkeys(p for p in sys.path + [site_dir()] if p and os.path.isdir(p)):
        for name in sorted(os.listdir(entry)):
            m = re.fullmatch(r"hailort-([^-]+)\.dist-info", name)
            if m:
                out.append((os.path.join(entry, name), m.group(1)))
    return out


def remove() -> bool:
    """Remove every installed `hailort` distribution, file by file from its RECORD."""
    found = installed()
    for info, _ in found:
        base = os.path.dirname(info)
        record = os.path.join(info, "RECORD")
        paths = []
        if os.path.exists(record):
            with open(record, newline="") as f:
                paths = [row[0] for row in csv.reader(f) if row]
        dirs = set()
        for rel in paths:
            path = os.path.normpath(os.path.join(base, rel))
            if os.path.isfile(path) or os.path.islink(path):
                os.unlink(path)
            dirs.add(os.path.dirname(path))
        for d in sorted(dirs, key=len, reverse=True):  # empty package directories, deepest first
            while d.startswith(base + os.sep) and os.path.isdir(d):
                shutil.rmtree(os.path.join(d, "__pycache__"), ignore_errors=True)
                if os.listdir(d):
                    break
                os.rmdir(d)
                d = os.path.dirname(d)
        shutil.rmtree(info, ignore_errors=True)
    return bool(found)


def install(version: str, wheels: list) -> bool:
    """Install the first compatible wheel of `version`; False when exactly that version is already there."""
    if [v for _, v in installed()] == [version]:
        return False
    fitting = [w for w in wheels if compatible(os.path.basename(w))]
    if not fitting:
        raise SystemExit("no hailort %s wheel fits Python %d.%d on %s among: %s"
                         % ((version,) + sys.version_info[:2] + (platform.machine(), ", ".join(map(os.path.basename, wheels)))))
    remove()
    target = site_dir()
    os.makedirs(target, exist_ok=True)
    rows = []
    with zipfile.ZipFile(fitting[0]) as whl:
        for item in whl.infolist():
            name = item.filename
            if name.endswith("/") or os.path.isabs(name) or ".." in name.split("/"):
                continue
            data = whl.read(item)
            if re.fullmatch(r"[^/]+\.dist-info/RECORD", name):
                continue
            dest = os.path.join(target, name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append([name, "sha256=" + digest, str(len(data))])
    info = next(n for n in os.listdir(target) if re.fullmatch(r"hailort-[^-]+\.dist-info", n))
    with open(os.path.join(target, info, "INSTALLER"), "w") as f:
        f.write("lab\n")
    rows += [[info + "/INSTALLER", "", ""], [info + "/RECORD", "", ""]]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    with open(os.path.join(target, info, "RECORD"), "w") as f:
        f.write(buf.getvalue())
    return True


def main(argv: list) -> int:
    """Command line: install VERSION WHEEL... | remove | version."""
    if argv[:1] == ["install"] and len(argv) >= 3:
        print("changed" if install(argv[1], argv[2:]) else "unchanged")
    elif argv == ["remove"]:
        print("changed" if remove() else "unchanged")
    elif argv == ["version"]:
        print(" ".join(v for _, v in installed()))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
