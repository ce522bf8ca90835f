"""Builds the emulated Hailo .debs (dpkg-deb) into a flat apt repository, cached by a hash of the inputs."""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab.errors import FleetError, HostSetupError
from lab.virtual.emulator import packages

RECIPE_VERSION = 1
SOURCE_DATE_EPOCH = 1767225600  # 2026-01-01: fixed mtimes and Release date, so builds are reproducible
REPO_LINE = "deb [trusted=yes] file:/srv/lab-apt ./"


def inputs_key() -> str:
    """Hash of everything a build depends on: emulator sources, package specs, this builder."""
    h = hashlib.sha256(b"recipe:%d\n" % RECIPE_VERSION)
    sources = [Path(packages.__file__), Path(__file__), *sorted(packages.EMU_SOURCE.glob("*.py"))]
    for path in sources:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _write_tree(spec: packages.PackageSpec, root: Path) -> int:
    """Lay out one package's files under `root`; returns the installed size in KiB."""
    total = 0
    for path, (data, mode) in sorted(spec.files.items()):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(mode)
        total += len(data)
    for path, dest in sorted(spec.symlinks.items()):
        link = root / path.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(dest)
    debian = root / "DEBIAN"
    debian.mkdir()
    kib = max(1, (total + 1023) // 1024)
    (debian / "control").write_text(spec.control(kib))
    if spec.conffiles:
        (debian / "conffiles").write_text("".join(c + "\n" for c in spec.conffiles))
    for name, text in spec.scripts.items():
        (debian / name).write_text(text)
        (debian / name).chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames + ["."]:
            os.utime(os.path.join(dirpath, name), (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH), follow_symlinks=False)
        os.chmod(dirpath, 0o755)
    return kib


def build_deb(spec: packages.PackageSpec, out_dir: Path) -> Path:
    """Build one .deb with dpkg-deb (root-owned files, reproducible mtimes)."""
    if shutil.which("dpkg-deb") is None:
        raise HostSetupError("dpkg-deb is not installed", "lab virtual fleet", "apt-get install dpkg")
    deb = out_dir / spec.filename
    with tempfile.TemporaryDirectory(prefix="lab-deb-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        _write_tree(spec, root)
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
        proc = subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)],
            capture_output=True,
            text=True,
            env=env,
        )
    if proc.returncode != 0:
        raise FleetError(
            "dpkg-deb failed for %s: %s" % (spec.name, proc.stderr.strip()),
            str(deb),
            "check the package spec in lab/virtual/emulator/packages.py",
        )
    return deb


def _stanza(deb: Path) -> str:
    """The Packages stanza of one .deb: its control fields plus file name, size and hashes."""
    control = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True).stdout
    data = deb.read_bytes()
    extra = [
        "Filename: ./%s" % deb.name,
        "Size: %d" % len(data),
        "MD5sum: %s" % hashlib.md5(data).hexdigest(),
        "SHA1: %s" % hashlib.sha1(data).hexdigest(),
        "SHA256: %s" % hashlib.sha256(data).hexdigest(),
    ]
    lines = control.rstrip("\n").split("\n")
    desc = next(i for i, line in enumerate(lines) if line.startswith("Description:"))
    return "\n".join(lines[:desc] + extra + lines[desc:]) + "\n"


def write_index(repo: Path) -> None:
    """Packages, Packages.gz and Release for a flat repository (`deb [trusted=yes] file:DIR ./`)."""
    text = "\n".join(_stanza(deb) for deb in sorted(repo.glob("*.deb")))
    (repo / "Packages").write_text(text)
    with (
        open(repo / "Packages.gz", "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=SOURCE_DATE_EPOCH, filename="") as gz,
    ):
        gz.write(text.encode())
    sums = {"MD5Sum": hashlib.md5, "SHA256": hashlib.sha256}
    lines = [
        "Origin: lab",
        "Label: lab emulated Hailo packages",
        "Date: %s" % email.utils.formatdate(SOURCE_DATE_EPOCH, usegmt=True),
        "Description: emulated Hailo packages for the lab's virtual nodes (a model, not Hailo software)",
    ]
    for field, algo in sums.items():
        lines.append("%s:" % field)
        for name in ("Packages", "Packages.gz"):
            data = (repo / name).read_bytes()
            lines.append(" %s %d %s" % (algo(data).hexdigest(), len(data), name))
    (repo / "Release").write_text("\n".join(lines) + "\n")


def build_repository(dest: Path) -> Path:
    """Build (or reuse) the repository under `dest`; returns its directory, ready to bind-mount.

    The directory is `dest/repo-<hash of the inputs>`: built in a temporary sibling and renamed into
    place, so it is never seen half-written; a second call with unchanged sources builds nothing.
    """
    dest = Path(dest)
    final = dest / ("repo-" + inputs_key())
    if (final / "Release").is_file():
        return final
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=dest))
    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(pool.map(lambda spec: build_deb(spec, tmp), packages.all_packages()))
        write_index(tmp)
        tmp.chmod(0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "Release").is_file():  # lost a race only if the winner finished
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    # Older repositories are kept: a running fleet may still bind-mount one (remove the cache by hand).
    return final


def build_wheel(rel: packages.Release, out_dir: Path) -> Path:
    """The emulated Python binding as a wheel (reproducible: fixed member dates, sorted members)."""
    import base64
    import zipfile

    name, members = packages.wheel_files(rel)
    info = "hailort-%s.dist-info" % rel.version
    record = []
    for member, data in sorted(members.items()):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (member, digest, len(data)))
    record.append(info + "/RECORD,,")
    members[info + "/RECORD"] = ("\n".join(record) + "\n").encode()
    path = out_dir / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for member, data in sorted(members.items()):
            entry = zipfile.ZipInfo(member, date_time=(2026, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(entry, data)
    return path


def build_hailo_files(dest: Path) -> list[Path]:
    """Write the releases that are not in the emulated archive as Hailo ships them, into `dest`.

    What a person downloads from Hailo's developer zone for one version: the runtime .deb, the PCIe
    driver .deb and the Python wheel (see docs/emulator.md for how the emulated names differ). Each
    file is written beside its final name and renamed, so the folder never holds half a file; files
    already there with the same content are left alone.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    with tempfile.TemporaryDirectory(prefix=".hailo-files-", dir=dest) as tmp:
        built = []
        for rel in packages.hailo_file_releases():
            built += [build_deb(packages.runtime_package(rel), Path(tmp)),
                      build_deb(packages.driver_package(rel), Path(tmp)), build_wheel(rel, Path(tmp))]
        for path in built:
            final = dest / path.name
            if not (final.is_file() and final.read_bytes() == path.read_bytes()):
                path.chmod(0o644)
                os.replace(path, final)
            out.append(final)
    return out


def build_models(dest: Path) -> list[Path]:
    """Write the emulated models that no package ships (the field report's HEF) into `dest`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name in packages.CONTROLLER_MODELS:
        final = dest / name
        data = packages.model_bytes(name)
        if not (final.is_file() and final.read_bytes() == data):
            tmp = dest / (".%s.tmp" % name)
            tmp.write_bytes(data)
            tmp.chmod(0o644)
            os.replace(tmp, final)
        out.append(final)
    return out
