"""What each emulated Hailo .deb holds: real package names and versions, control fields, file trees."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lab.virtual.emulator.hailo_emu import hef, tables

EMU_SOURCE = Path(__file__).parent / "hailo_emu"
MAINTAINER = "lab virtual fleet <lab@localhost>"
MODELS_VERSION = "1.0.0"


@dataclass(frozen=True)
class Release:
    """One HailoRT release the lab can install: its version, chip line and where it comes from.

    `archive`: in the emulated Raspberry Pi archive (the repository every virtual node lists), with
    the archive's names and Debian revisions; one version line per chip, as in the real archive.
    Otherwise the release exists only as Hailo-style files (`hailort_<v>_..deb`,
    `hailort-pcie-driver_<v>_all.deb`, a `hailort-<v>-...whl` wheel) that a person hands to the
    controller (`lab fleet hailo-files DIR` builds them, as one would download them from Hailo).
    """

    version: str
    chip: str  # hailo10h or hailo8 (the 4.x line drives Hailo-8 and Hailo-8L)
    archive: bool

    @property
    def module(self) -> str:
        """The kernel module of this release's PCIe driver."""
        return tables.CHIPS[self.chip]["module"]

    def names(self) -> dict:
        """Package names: runtime, driver, python and metapackage (None when the release has none)."""
        if self.archive and self.chip == "hailo10h":
            return {"runtime": "h10-hailort", "driver": "h10-hailort-pcie-driver",
                    "python": "python3-h10-hailort", "meta": "hailo-h10-all"}
        if self.archive:
            return {"runtime": "hailort", "driver": "hailort-pcie-driver", "python": "python3-hailort",
                    "meta": "hailo-all"}
        return {"runtime": "hailort", "driver": "hailort-pcie-driver", "python": None, "meta": None}

    def deb_version(self, role: str) -> str:
        """The Debian version of one of its packages: the archive adds revisions to some (a model of
        what the real archive does: `python3-hailort 4.23.0-1` beside `hailort 4.23.0`)."""
        if self.archive and role in ("python", "meta"):
            return self.version + "-1"
        return self.version


RELEASES = (
    Release("5.1.1", "hailo10h", archive=True),
    Release("5.2.0", "hailo10h", archive=False),
    Release("5.3.0", "hailo10h", archive=False),
    Release("5.3.1", "hailo10h", archive=False),
    Release("4.20.0", "hailo8", archive=False),
    Release("4.23.0", "hailo8", archive=True),
)
MODELS_DEB_VERSION = MODELS_VERSION + "-2"

# The two families replace each other and cannot be installed together (as on a real Pi).
RIVALS = {
    "h10-hailort": "hailort",
    "hailort": "h10-hailort",
    "h10-hailort-pcie-driver": "hailort-pcie-driver",
    "hailort-pcie-driver": "h10-hailort-pcie-driver",
    "python3-h10-hailort": "python3-hailort",
    "python3-hailort": "python3-h10-hailort",
    "hailo-h10-all": "hailo-all",
    "hailo-all": "hailo-h10-all",
}


@dataclass
class PackageSpec:
    """One .deb: control fields, files (path -> (bytes, mode)), symlinks, conffiles, maintainer scripts."""

    name: str
    version: str
    summary: str
    depends: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    symlinks: dict = field(default_factory=dict)
    conffiles: list = field(default_factory=list)
    scripts: dict = field(default_factory=dict)

    @property
    def filename(self) -> str:
        """The .deb's file name in the repository."""
        return "%s_%s_all.deb" % (self.name, self.version)

    def control(self, installed_kib: int) -> str:
        """The DEBIAN/control text."""
        lines = [
            "Package: %s" % self.name,
            "Version: %s" % self.version,
            "Architecture: all",
            "Maintainer: %s" % MAINTAINER,
            "Installed-Size: %d" % installed_kib,
            "Section: misc",
            "Priority: optional",
        ]
        if self.depends:
            lines.append("Depends: %s" % ", ".join(self.depends))
        rival = RIVALS.get(self.name)
        if rival:
            lines += ["Conflicts: %s" % rival, "Replaces: %s" % rival]
        lines.append("Description: %s (emulated, lab virtual node)" % self.summary)
        lines.append(" Emulated for the lab's virtual Hailo devices: a model for testing the lab,")
        lines.append(" not Hailo software and not a claim about Hailo hardware.")
        return "\n".join(lines) + "\n"


def emulator_sources() -> dict:
    """The node-side emulator package: relative file name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted(EMU_SOURCE.glob("*.py"))}


def _tree(prefix: str) -> dict:
    """The emulator sources placed under `prefix` (a private directory of one package)."""
    return {"%s/%s" % (prefix, name): (data, 0o644) for name, data in emulator_sources().items()}


def _wrapper(doc: str, libdir: str, call: str) -> bytes:
    """A Python launcher that finds the package's private emulator copy relative to itself."""
    return (
        "#!/usr/bin/python3 -IB\n"
        '"""%s"""\n'
        "import os\nimport sys\n\n"
        "sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(os.path.realpath(__file__)), %r)))\n"
        "%s\n" % (doc, libdir, call)
    ).encode()


def _readme(what: str) -> tuple:
    """/usr/share/doc/PKG/README.emulator."""
    text = (
        "%s\n\nEmulated by the lab's virtual fleet (docs/emulator.md in the lab repository).\n"
        "A model for testing the lab, not Hailo software.\n" % what
    )
    return text.encode(), 0o644


def _clean_pycache(*dirs: str) -> str:
    """A prerm that removes byte-code caches Python wrote, so a purge leaves no file behind."""
    body = "".join(
        "  find %s -depth -type d -name __pycache__ -exec rm -rf {} + 2>/dev/null || true\n" % d for d in dirs
    )
    return (
        '#!/bin/sh\nset -e\nif [ "$1" = remove ] || [ "$1" = upgrade ] || [ "$1" = purge ]; then\n%sfi\nexit 0\n' % body
    )


def runtime_package(rel: Release) -> PackageSpec:
    """libhailort + hailortcli: the emulated CLI."""
    name = rel.names()["runtime"]
    lib = "/usr/lib/hailort/emulator"
    spec = PackageSpec(
        name, rel.deb_version("runtime"), "HailoRT runtime library and hailortcli %s" % rel.version,
        ["python3 (>= 3.9)"]
    )
    spec.files.update(_tree(lib + "/hailo_emu"))
    spec.files["/usr/bin/hailortcli"] = (
        _wrapper(
            "hailortcli: HailoRT-CLI %s, emulated for the lab's virtual nodes." % rel.version,
            "../lib/hailort/emulator",
            "from hailo_emu.cli import main\n\nsys.exit(main(sys.argv[1:], library_version=%r))" % rel.version,
        ),
        0o755,
    )
    spec.files["/usr/share/doc/%s/README.emulator" % name] = _readme("HailoRT %s runtime" % rel.version)
    spec.scripts["prerm"] = _clean_pycache(lib)
    return spec


def driver_package(rel: Release) -> PackageSpec:
    """The PCIe driver: modprobe hooks, the driver shim, firmware files, boot-time coldplug."""
    name = rel.names()["driver"]
    module = rel.module
    lib = "/usr/lib/hailort-pcie-driver/emulator"
    spec = PackageSpec(
        name,
        rel.deb_version("driver"),
        "Hailo PCIe driver %s (%s) and firmware" % (rel.version, module),
        ["python3 (>= 3.9)", "kmod", "dkms"],
    )
    spec.files.update(_tree(lib + "/hailo_emu"))
    # A DKMS source package, as the real driver's: the module is registered with DKMS at install and
    # removed at removal, so it would be rebuilt for a new kernel (hailort-drivers linux/pcie/dkms.conf.in).
    src = "/usr/src/%s-%s" % (module, rel.version)
    spec.files[src + "/dkms.conf"] = (
        (
            'PACKAGE_NAME="%s"\nPACKAGE_VERSION="%s"\nBUILT_MODULE_NAME[0]="%s"\n'
            'DEST_MODULE_LOCATION[0]="/updates/dkms"\nAUTOINSTALL="yes"\n'
            "# Emulated for the lab's virtual nodes: nothing is compiled (a model, not Hailo software).\n"
            % (module, rel.version, module)
        ).encode(),
        0o644,
    )
    spec.files[src + "/README.emulator"] = _readme("Hailo PCIe driver %s sources (DKMS)" % rel.version)
    spec.scripts["postinst"] = (
        '#!/bin/sh\nset -e\nif [ "$1" = configure ]; then\n'
        "  dkms status | grep -q '^%s/%s' || dkms add -m %s -v %s\n"
        "  dkms install -m %s -v %s\nfi\nexit 0\n" % (module, rel.version, module, rel.version, module, rel.version)
    )
    spec.files[lib + "/hailo-emu-driver"] = (
        _wrapper(
            "modprobe hook of the emulated %s %s driver." % (module, rel.version),
            ".",
            "from hailo_emu.shims import driver_main\n\nsys.exit(driver_main(sys.argv[1:], %r, %r))"
            % (module, rel.version),
        ),
        0o755,
    )
    spec.files["/usr/sbin/hailo-emu-pcie"] = (
        _wrapper(
            "PCIe remove/rescan of the emulated Hailo device.",
            "../lib/hailort-pcie-driver/emulator",
            "from hailo_emu.shims import pcie_main\n\nsys.exit(pcie_main(sys.argv[1:]))",
        ),
        0o755,
    )
    spec.files["/usr/sbin/hailo-emu-modinfo"] = (
        _wrapper(
            "modinfo for the emulated %s module." % module,
            "../lib/hailort-pcie-driver/emulator",
            "from hailo_emu.shims import modinfo_main\n\nsys.exit(modinfo_main(sys.argv[1:], %r, %r))"
            % (module, rel.version),
        ),
        0o755,
    )
    spec.files["/usr/sbin/hailo-emu-vcgencmd"] = (
        _wrapper(
            "vcgencmd of the lab's virtual node: the Pi firmware's measure_temp, measure_clock, get_throttled.",
            "../lib/hailort-pcie-driver/emulator",
            "from hailo_emu.shims import vcgencmd_main\n\nsys.exit(vcgencmd_main(sys.argv[1:]))",
        ),
        0o755,
    )
    spec.files[lib + "/hailo-emu-holder"] = (
        _wrapper(
            "A second client holding the emulated device (the unit profile's device_holder).",
            ".",
            "from hailo_emu.shims import holder_main\n\nsys.exit(holder_main(sys.argv[1:]))",
        ),
        0o755,
    )
    spec.files["/usr/lib/systemd/system-generators/hailo-emu-holder-generator"] = (
        _wrapper(
            "systemd generator: the unit profile's device_holder service, started at boot.",
            "../../hailort-pcie-driver/emulator",
            "from hailo_emu.shims import holder_generator_main\n\nsys.exit(holder_generator_main(sys.argv[1:]))",
        ),
        0o755,
    )
    spec.files["/usr/lib/modprobe.d/%s-emulator.conf" % module] = (
        (
            "# Emulated Hailo driver (lab virtual node): modprobe runs the emulator's shim, no kernel module.\n"
            "install %s %s/hailo-emu-driver load $CMDLINE_OPTS\n"
            "remove %s %s/hailo-emu-driver unload\n" % (module, lib, module, lib)
        ).encode(),
        0o644,
    )
    spec.files["/etc/modprobe.d/%s.conf" % module] = (
        (
            "# Modprobe information used for Hailo PCIe driver, edit this file when needed.\n\n"
            "# Determines the maximum DMA descriptor page size (must be a power of 2), needs to be\n"
            "# set on platforms that does not support large pcie transactions.\n"
            "#options %s force_desc_page_size=4096\n" % module
        ).encode(),
        0o644,
    )
    spec.conffiles.append("/etc/modprobe.d/%s.conf" % module)
    for fw in tables.CHIPS[rel.chip]["firmware_files"]:
        for sku in ((6, 7) if "{sku}" in fw else (None,)):
            path = "/lib/firmware/" + fw.format(sku=sku)
            spec.files[path] = (("HAILO-EMU-FIRMWARE %s %s\n" % (rel.chip, rel.version)).encode(), 0o644)
    unit = "hailo-emu-coldplug.service"
    spec.files["/usr/lib/systemd/system/" + unit] = (
        (
            "[Unit]\nDescription=Load the emulated Hailo PCIe driver %s at boot, as udev does for the real device\n"
            "ConditionPathExists=/lab/hw\nAfter=local-fs.target\n\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=modprobe %s\n\n"
            "[Install]\nWantedBy=multi-user.target\n" % (module, module)
        ).encode(),
        0o644,
    )
    spec.symlinks["/usr/lib/systemd/system/multi-user.target.wants/" + unit] = "../" + unit
    spec.files["/usr/share/doc/%s/README.emulator" % name] = _readme(
        "Hailo PCIe driver %s (%s)" % (rel.version, module)
    )
    spec.scripts["prerm"] = _clean_pycache(lib).replace(
        "fi\nexit 0\n",
        "  dkms remove -m %s -v %s --all >/dev/null 2>&1 || true\nfi\nexit 0\n" % (module, rel.version))
    return spec


DKMS_VERSION = "3.2.0-1"


def dkms_package() -> PackageSpec:
    """dkms, emulated: DKMS's file layout and `dkms status`, no compiler (Debian's, on a real Pi)."""
    spec = PackageSpec("dkms", DKMS_VERSION, "Dynamic Kernel Module System", ["python3 (>= 3.9)", "kmod"])
    spec.files["/usr/sbin/dkms"] = (
        b"#!/usr/bin/python3 -IB\n" + (EMU_SOURCE / "dkms.py").read_bytes(), 0o755)
    spec.files["/usr/share/doc/dkms/README.emulator"] = _readme("DKMS (the file layout and status only)")
    return spec


def python_package(rel: Release) -> PackageSpec:
    """hailo_platform for Debian's python3, backed by the same chip model."""
    names = rel.names()
    pkg = "/usr/lib/python3/dist-packages/hailo_platform"
    spec = PackageSpec(
        names["python"],
        rel.deb_version("python"),
        "HailoRT Python API (hailo_platform) %s" % rel.version,
        # python3-numpy as the real one: pyhailort imports numpy and its buffers are numpy arrays
        ["python3 (>= 3.9)", "python3-numpy", "%s (= %s)" % (names["runtime"], rel.deb_version("runtime"))],
    )
    spec.files.update(_tree(pkg + "/_emu"))
    spec.files[pkg + "/__init__.py"] = (platform_init(rel.version), 0o644)
    spec.files["/usr/share/doc/%s/README.emulator" % names["python"]] = _readme("hailo_platform %s" % rel.version)
    spec.scripts["prerm"] = _clean_pycache(pkg)
    return spec


def platform_init(version: str) -> bytes:
    """hailo_platform/__init__.py of the emulated binding (the .deb's and the wheel's)."""
    return (
        '"""hailo_platform %s, emulated for the lab\'s virtual nodes (a model, not Hailo software)."""\n\n'
        "from ._emu import platform_api as _api\n\n_api.set_library_version(%r)\n\n"
        "from ._emu.platform_api import *  # noqa: E402,F401,F403\n\n__version__ = %r\n"
        % (version, version, version)
    ).encode()


def wheel_files(rel: Release) -> tuple[str, dict]:
    """The Python binding as Hailo ships it, a wheel: its file name and its members (name -> bytes).

    Hailo's are `hailort-<v>-cp3XX-cp3XX-linux_aarch64.whl` (a compiled module); the emulated binding
    is pure Python, so its wheel is `hailort-<v>-py3-none-any.whl` and installs on any virtual node.
    """
    info = "hailort-%s.dist-info" % rel.version
    members = {"hailo_platform/_emu/%s" % name: data for name, data in emulator_sources().items()}
    members["hailo_platform/__init__.py"] = platform_init(rel.version)
    members[info + "/METADATA"] = (
        "Metadata-Version: 2.1\nName: hailort\nVersion: %s\nRequires-Dist: numpy\n"
        "Summary: HailoRT Python API (hailo_platform), emulated for the lab's virtual nodes "
        "(a model, not Hailo software)\n" % rel.version
    ).encode()
    members[info + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: lab\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    return "hailort-%s-py3-none-any.whl" % rel.version, members


def meta_package(rel: Release) -> PackageSpec:
    """The metapackage that pulls one whole stack (hailo-h10-all or hailo-all)."""
    names = rel.names()
    deps = ["%s (= %s)" % (names[k], rel.deb_version(k)) for k in ("runtime", "driver", "python")]
    spec = PackageSpec(
        names["meta"], rel.deb_version("meta"), "Hailo support %s (metapackage)" % rel.version,
        deps + ["hailo-models"]
    )
    spec.files["/usr/share/doc/%s/README.emulator" % names["meta"]] = _readme("Hailo %s metapackage" % rel.version)
    return spec


# The field report's own model: in no package, it reaches nodes from the controller (`lab fleet hailo-files`
# writes it into a models folder, as a person keeps the HEF they compiled or downloaded).
CONTROLLER_MODELS = ("yolo26s_hailo10h.hef",)


def model_bytes(filename: str) -> bytes:
    """The emulated HEF file of one model."""
    return hef.dumps(tables.MODELS[filename]).encode()


def models_package() -> PackageSpec:
    """hailo-models: the emulated HEF files where the real model package puts them (not the field report's)."""
    spec = PackageSpec("hailo-models", MODELS_DEB_VERSION, "Hailo model files (HEF) for the examples")
    for filename in sorted(tables.MODELS):
        if filename not in CONTROLLER_MODELS:
            spec.files["%s/%s" % (tables.MODELS_DIR, filename)] = (model_bytes(filename), 0o644)
    spec.files["/usr/share/doc/hailo-models/README.emulator"] = _readme("Emulated HEF files")
    return spec


def all_packages() -> list:
    """Every package of the emulated Raspberry Pi archive: one release line per chip, and the models."""
    specs = [models_package(), dkms_package()]
    for rel in RELEASES:
        if rel.archive:
            specs += [runtime_package(rel), driver_package(rel), python_package(rel), meta_package(rel)]
    return specs


def hailo_file_releases() -> list:
    """The releases that exist only as Hailo-style files."""
    return [rel for rel in RELEASES if not rel.archive]
