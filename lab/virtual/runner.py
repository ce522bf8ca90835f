"""The execution nodes' ansible-runner and ansible-core: the controller's exact versions, as wheels for the image's Python.

`lab fleet up --executors K` installs, once, the wheels of this controller's own ansible-runner and
ansible-core (and what they need) for the base image's Python into a cache directory with
`pip install --target` (PyPI is reached here, on the host, as for the base image's debootstrap; the
containers never reach anything beyond loopback). Each executor sees the tree read-only at
/opt/lab-runner; a `.pth` file puts it on the system Python's path and small wrappers in
/usr/local/bin start the console scripts (ansible-runner, ansible-playbook, ...).

Why not Debian's packages: trixie's python3-ansible-runner is 2.4.1 today, but the controller's venv
takes the newest ansible-runner >= 2.4 from PyPI; the worker must have the controller's major.minor
(lab.ansible.check_worker), which the controller's own versions give by construction.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lab.errors import FleetError, HostSetupError

DISTRIBUTIONS = ("ansible-runner", "ansible-core")  # pinned to the controller's versions
MOUNT = "/opt/lab-runner"  # where an executor sees the tree
PTH_NAME = "lab-runner.pth"
WRAPPER_DIR = "usr/local/bin"
# Bump when the layout of the cached tree changes, so old caches are not reused.
RECIPE_VERSION = 1


def image_python(rootfs: Path) -> str:
    """The base image's Python as MAJOR.MINOR (from /usr/bin/python3 -> python3.X)."""
    target = (rootfs / "usr/bin/python3").readlink().name if (rootfs / "usr/bin/python3").is_symlink() else ""
    found = re.fullmatch(r"python(\d+\.\d+)", target)
    if not found:
        raise FleetError(f"cannot tell the base image's Python version ({rootfs}/usr/bin/python3 -> {target or '?'})",
                         str(rootfs), "remove the image cache and run `lab fleet up` again")
    return found.group(1)


def image_glibc(rootfs: Path) -> tuple[int, int]:
    """The base image's glibc version (from its dpkg status), which bounds the manylinux wheels it can load."""
    status = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
    found = re.search(r"^Package: libc6\n(?:[^\n]+\n)*?Version: (\d+)\.(\d+)", status, re.MULTILINE)
    return (int(found.group(1)), int(found.group(2))) if found else (2, 17)


def controller_versions() -> dict[str, str]:
    """This controller's installed versions of DISTRIBUTIONS (what its check_worker compares against)."""
    return {name: importlib.metadata.version(name) for name in DISTRIBUTIONS}


def platforms(glibc: tuple[int, int], machine: str) -> list[str]:
    """pip's --platform values for an image with this glibc on this machine: every manylinux up to it, and any."""
    tags = [f"manylinux_{glibc[0]}_{minor}_{machine}" for minor in range(17, glibc[1] + 1)]
    return [*tags, f"manylinux2014_{machine}", "any"]


def pip_command(target: Path, python: str, versions: dict[str, str], glibc: tuple[int, int], machine: str,
                pip: str = sys.executable) -> list[str]:
    """The `pip install --target` that fetches the pinned wheels for the image's Python (binary wheels only)."""
    nodot = python.replace(".", "")
    cmd = [pip, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
           "--target", str(target), "--python-version", python, "--implementation", "cp",
           "--abi", f"cp{nodot}", "--abi", "abi3", "--abi", "none", "--only-binary=:all:"]
    for tag in platforms(glibc, machine):
        cmd += ["--platform", tag]
    return cmd + [f"{name}=={version}" for name, version in sorted(versions.items())]


def cache_key(python: str, versions: dict[str, str], glibc: tuple[int, int], machine: str) -> str:
    """Hash of every input of the tree, so another Python, version or machine gets its own."""
    recipe = {"python": python, "versions": versions, "glibc": list(glibc), "machine": machine, "recipe": RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def ensure_tree(cache: Path, rootfs: Path, log=lambda msg: None) -> Path:
    """The cached site-packages tree for executors booted from `rootfs` (installed with pip once)."""
    python, glibc, machine = image_python(rootfs), image_glibc(rootfs), platform.machine()
    versions = controller_versions()
    final = cache / "runner" / cache_key(python, versions, glibc, machine)
    if (final / "complete").exists():
        return final / "site"
    if not _has_pip():
        raise HostSetupError(f"pip is missing in {sys.prefix} (needed once, to fetch the executors' ansible-runner)",
                             hint="run `make setup` (it creates the venv with pip)")
    (cache / "runner").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".runner-", dir=cache / "runner"))
    try:
        log("fetching " + ", ".join(f"{n} {v}" for n, v in sorted(versions.items()))
            + f" for the executors' Python {python}; this is done once")
        proc = subprocess.run(pip_command(work / "site", python, versions, glibc, machine),
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            tail = [line for line in (proc.stdout + proc.stderr).strip().splitlines() if line.strip()][-2:]
            raise FleetError(f"pip could not fetch the executors' packages: {' / '.join(tail)}",
                             hint="check that PyPI is reachable (or PIP_INDEX_URL names a mirror)")
        shutil.rmtree(work / "site" / "bin", ignore_errors=True)  # scripts for the controller's Python; see wrappers()
        (work / "versions.json").write_text(json.dumps({"python": python, **versions}, indent=2) + "\n")
        (work / "complete").write_text("ok\n")
        if not (final / "complete").exists():  # another fleet may have finished first: its tree may be in use
            if final.exists():
                shutil.rmtree(final)  # an interrupted build's leftover
            try:
                work.rename(final)
            except OSError:
                if not (final / "complete").exists():
                    raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final / "site"


def _has_pip() -> bool:
    """Whether this Python (the controller's venv) has pip, which fetches the tree."""
    try:
        importlib.metadata.version("pip")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def console_scripts(site: Path) -> dict[str, str]:
    """Console scripts of DISTRIBUTIONS in the tree: name -> `module:function` (from their entry_points.txt)."""
    scripts: dict[str, str] = {}
    for info in sorted(site.glob("*.dist-info")):
        dist = info.name.split("-", 1)[0].replace("_", "-").lower()
        entry = info / "entry_points.txt"
        if dist not in DISTRIBUTIONS or not entry.exists():
            continue
        section = None
        for line in entry.read_text().splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif section == "console_scripts" and "=" in line:
                name, target = (part.strip() for part in line.split("=", 1))
                scripts[name] = target
    return scripts


def wrapper(name: str, target: str) -> str:
    """A console script for the executor's system Python, as pip would write it for an installed package."""
    module, func = target.split(":", 1)
    return (
        "#!/usr/bin/python3\n"
        f"# {name}: written by lab fleet up; the package is in {MOUNT} (the controller's cached wheels)\n"
        "import sys\n"
        f"from {module} import {func}\n"
        f"sys.exit({func}())\n"
    )


def files(site: Path, python: str) -> dict[str, str]:
    """What an executor's upper layer gets: the .pth that puts the tree on sys.path and one wrapper per script."""
    out = {f"usr/local/lib/python{python}/dist-packages/{PTH_NAME}": MOUNT + "\n"}
    for name, target in console_scripts(site).items():
        out[f"{WRAPPER_DIR}/{name}"] = wrapper(name, target)
    return out
