"""An emulated `dkms` for virtual nodes (the `dkms` package of the emulated archive): a model for testing the lab.

It keeps DKMS's own file layout so that what lab records (`dkms status`) and what a purge must remove
(`/usr/src/<module>-<version>`, `/var/lib/dkms/<module>`, `/lib/modules/<kernel>/updates/dkms/<module>.ko`)
look as on a Pi, but it compiles nothing: a "built" module is a small stub file. Commands:
`status`, `add`, `build`, `install`, `remove` with `-m MODULE -v VERSION` (or `MODULE/VERSION`),
`-k KERNEL` and `--all`. Stdlib only, Python >= 3.9; every path has a root override (DKMS_EMU_ROOT) for tests.
"""

from __future__ import annotations

import os
import shutil
import sys


def root() -> str:
    """The file system root the emulated DKMS works under ('' on a node)."""
    return os.environ.get("DKMS_EMU_ROOT", "")


def tree() -> str:
    """DKMS's tree of added modules."""
    return root() + "/var/lib/dkms"


def kernel() -> str:
    """The kernel modules are built for by default (the running one)."""
    return os.environ.get("DKMS_EMU_KERNEL") or os.uname().release


def arch() -> str:
    """The machine architecture dkms status prints."""
    return os.uname().machine


def built_ko(module: str, version: str, kern: str) -> str:
    """Where a built module lies in the DKMS tree."""
    return os.path.join(tree(), module, version, kern, arch(), "module", module + ".ko")


def installed_ko(module: str, kern: str) -> str:
    """Where an installed module lies under the kernel's modules (DEST_MODULE_LOCATION /updates/dkms)."""
    return root() + "/lib/modules/%s/updates/dkms/%s.ko" % (kern, module)


def status() -> list:
    """`dkms status` lines: `module/version, kernel, arch: added|built|installed`."""
    lines = []
    if not os.path.isdir(tree()):
        return lines
    for module in sorted(os.listdir(tree())):
        for version in sorted(os.listdir(os.path.join(tree(), module))):
            base = os.path.join(tree(), module, version)
            kernels = [k for k in sorted(os.listdir(base)) if k != "source"]
            if not kernels:
                lines.append("%s/%s: added" % (module, version))
            for kern in kernels:
                ko = installed_ko(module, kern)
                state = "installed" if os.path.exists(ko) and open(ko).read() == open(built_ko(module, version, kern)).read() \
                    else "built"
                lines.append("%s/%s, %s, %s: %s" % (module, version, kern, arch(), state))
    return lines


def add(module: str, version: str) -> int:
    """`dkms add`: register /usr/src/MODULE-VERSION."""
    src = root() + "/usr/src/%s-%s" % (module, version)
    if not os.path.exists(os.path.join(src, "dkms.conf")):
        print("Error! Could not find module source directory.\nDirectory: %s does not exist." % src, file=sys.stderr)
        return 2
    base = os.path.join(tree(), module, version)
    os.makedirs(base, exist_ok=True)
    link = os.path.join(base, "source")
    if not os.path.islink(link):
        os.symlink("/usr/src/%s-%s" % (module, version), link)
    print("Creating symlink %s -> /usr/src/%s-%s" % (link[len(root()):], module, version))
    return 0


def build(module: str, version: str, kern: str) -> int:
    """`dkms build`: a stub module in the DKMS tree (nothing is compiled)."""
    if not os.path.isdir(os.path.join(tree(), module, version)) and add(module, version):
        return 2
    ko = built_ko(module, version, kern)
    os.makedirs(os.path.dirname(ko), exist_ok=True)
    with open(ko, "w") as f:
        f.write("HAILO-EMU-MODULE %s %s %s\n" % (module, version, kern))
    print("Building module(s)... done.")
    return 0


def install(module: str, version: str, kern: str) -> int:
    """`dkms install`: build if needed, then copy the module under /lib/modules/KERNEL/updates/dkms."""
    if not os.path.exists(built_ko(module, version, kern)) and build(module, version, kern):
        return 2
    dest = installed_ko(module, kern)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(built_ko(module, version, kern), dest)
    print("Installing %s\nRunning depmod... done." % dest[len(root()):])
    return 0


def remove(module: str, version: str, kern: str, every: bool) -> int:
    """`dkms remove`: the installed module and the tree of one kernel, or of all (--all)."""
    base = os.path.join(tree(), module, version)
    if not os.path.isdir(base):
        print("Error! The module/version combo: %s-%s is not located in the DKMS tree." % (module, version),
              file=sys.stderr)
        return 3
    kernels = [k for k in os.listdir(base) if k != "source"] if every else [kern]
    for k in kernels:
        ko = installed_ko(module, k)
        if os.path.exists(ko):
            os.unlink(ko)
        shutil.rmtree(os.path.join(base, k), ignore_errors=True)
    if every or not [k for k in os.listdir(base) if k != "source"]:
        shutil.rmtree(base, ignore_errors=True)
        parent = os.path.join(tree(), module)
        if os.path.isdir(parent) and not os.listdir(parent):
            os.rmdir(parent)
    print("Module %s/%s for kernel %s was removed." % (module, version, ", ".join(kernels) or kern))
    return 0


def main(argv: list) -> int:
    """The command line."""
    if not argv or argv[0] not in ("status", "add", "build", "install", "remove"):
        print("Usage: dkms {status|add|build|install|remove} [-m module] [-v version] [-k kernel] [--all]",
              file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    module = version = None
    kern, every = kernel(), False
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in ("-m", "-v", "-k") and i + 1 < len(rest):
            value = rest[i + 1]
            if arg == "-m":
                module = value
            elif arg == "-v":
                version = value
            else:
                kern = value
            i += 2
            continue
        if arg == "--all":
            every = True
        elif "/" in arg and not arg.startswith("-"):
            module, version = arg.split("/", 1)
        i += 1
    if command == "status":
        print("\n".join(status()))
        return 0
    if not module or not version:
        print("Error! Arguments <module> and <module-version> are not specified.", file=sys.stderr)
        return 2
    if command == "add":
        return add(module, version)
    if command == "build":
        return build(module, version, kern)
    if command == "install":
        return install(module, version, kern)
    return remove(module, version, kern, every)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
