"""Where a stack's packages come from: per inventory group, the Raspberry Pi archive, a local apt
repository, or a folder of Hailo's downloaded files on the controller (pure, except listing that folder)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, InventoryError
from lab.stack import APT_LINE_RE, Stack

SOURCES_VAR = "lab_hailo_sources"
DEFAULT_SOURCES: tuple = ("archive",)

# The Raspberry Pi archive's package names: one HailoRT line per chip family
# (raspberrypi/documentation, documentation/asciidoc/computers/ai/getting-started.adoc).
ARCHIVE_PACKAGES = {
    "hailo10h": {"runtime": "h10-hailort", "driver": "h10-hailort-pcie-driver",
                 "python": "python3-h10-hailort", "meta": "hailo-h10-all"},
    "hailo8": {"runtime": "hailort", "driver": "hailort-pcie-driver", "python": "python3-hailort", "meta": "hailo-all"},
}
ARCHIVE_PACKAGES["hailo8l"] = ARCHIVE_PACKAGES["hailo8"]

# The packages in Hailo's downloaded .deb files (the same names for Hailo-8 and Hailo-10H).
HAILO_FILE_PACKAGES = ("hailort", "hailort-pcie-driver")

_PLAIN = r"[A-Za-z0-9_][A-Za-z0-9_.+~-]*"


@dataclass(frozen=True)
class HailoFiles:
    """The files of one HailoRT version in a folder of Hailo's downloads (as Hailo names them)."""

    runtime: list[Path]
    driver: list[Path]
    wheels: list[Path] = field(default_factory=list)


def version_matches(pin: str, version: str) -> bool:
    """Whether an archive version satisfies a pin: `5.1.1` matches `5.1.1`, `5.1.1-1`, `5.1.1-1+rpt1`,
    `1:5.1.1-2` and `5.1.1+rpt1`, never `5.1.10` or `5.1.1.1`; a pin with a revision must match exactly
    (up to an epoch)."""
    bare = re.sub(r"^[0-9]+:", "", version.strip())
    if bare == pin:
        return True
    if "-" in pin:
        return False
    return bare.startswith(pin) and bare[len(pin):len(pin) + 1] in ("-", "+", "~")


def pick_version(pin: str, candidates: Sequence[str]) -> str | None:
    """The first candidate (apt-cache madison lists the newest first) that satisfies the pin."""
    return next((v.strip() for v in candidates if version_matches(pin, v)), None)


def archive_pins(stack: Stack) -> dict[str, str]:
    """Package -> pinned upstream version for the Raspberry Pi archive's packages of this stack."""
    names = ARCHIVE_PACKAGES[stack.chip]
    return {names["meta"]: stack.hailort, names["runtime"]: stack.hailort,
            names["driver"]: stack.driver, names["python"]: stack.hailort}


def hailo_files(folder: Path, stack: Stack) -> HailoFiles | None:
    """The stack's files in a folder of Hailo's downloads, or None when one is missing.

    Hailo names them `hailort_<v>_<arch>.deb`, `hailort-pcie-driver_<v>_all.deb` and
    `hailort-<v>-<python>-<abi>-<platform>.whl` (the Python binding, not a .deb); the HailoRT version
    names the runtime and the wheel, the driver version the driver.
    """
    if not folder.is_dir():
        return None
    names = sorted(p.name for p in folder.iterdir() if p.is_file())

    def find(pattern: str) -> list[Path]:
        return [folder / n for n in names if re.fullmatch(pattern, n)]

    runtime = find(rf"hailort_{re.escape(stack.hailort)}(-{_PLAIN})?_[a-z0-9]+\.deb")
    driver = find(rf"hailort-pcie-driver_{re.escape(stack.driver)}(-{_PLAIN})?_[a-z0-9]+\.deb")
    wheels = find(rf"hailort-{re.escape(stack.hailort)}-{_PLAIN}\.whl")
    if not runtime or not driver or not wheels:
        return None
    return HailoFiles(runtime[-1:], driver[-1:], wheels)


def parse_sources(value: Any, where: str) -> list[dict]:
    """Validate `lab_hailo_sources` (a list of `archive`, `{apt: LINE}` or `{files: FOLDER}`)."""
    if value is None:
        return [{"archive": True}]
    if not isinstance(value, list) or not value:
        raise InventoryError(f"{SOURCES_VAR} must be a non-empty list, got {value!r}", where,
                             "e.g. [{files: hailo-files}, archive]")
    out: list[dict] = []
    for item in value:
        if item == "archive":
            out.append({"archive": True})
        elif isinstance(item, Mapping) and set(item) == {"apt"} and isinstance(item["apt"], str) \
                and APT_LINE_RE.fullmatch(item["apt"]):
            out.append({"apt": item["apt"]})
        elif isinstance(item, Mapping) and set(item) == {"files"} and isinstance(item["files"], str) and item["files"]:
            out.append({"files": item["files"]})
        else:
            raise InventoryError(f"{SOURCES_VAR} entry {item!r} is not a source", where,
                                 "use 'archive', {apt: 'deb [options] URL SUITE COMPONENT'} or {files: FOLDER}")
    return out


def resolve_install(stack: Stack, sources_value: Any, where: str, base: Path | None = None) -> dict:
    """How one node gets `stack`: the first source that can provide it, as data for the hailo_stack role.

    A files folder (relative to `base`, the inventory's directory) provides a stack when it holds its
    runtime, driver and wheel (checked here, on the controller); the archive and an apt repository are asked on the node (`apt-cache madison`), so
    list a files folder before them. A stack no source provides is an error before any node is touched.
    """
    sources = parse_sources(sources_value, where)
    for source in sources:
        if "files" in source:
            folder = Path(source["files"]).expanduser()
            if not folder.is_absolute():
                folder = ((base or Path.cwd()) / folder).resolve()
            found = hailo_files(folder, stack)
            if found is not None:
                return {"kind": "files", "folder": str(folder),
                        "debs": [str(p) for p in found.runtime + found.driver],
                        "wheels": [str(p) for p in found.wheels], "wheel_version": stack.hailort,
                        "hold": list(HAILO_FILE_PACKAGES),
                        "remove": sorted(set(ARCHIVE_PACKAGES[stack.chip].values()) - set(HAILO_FILE_PACKAGES))}
            continue
        return {"kind": "apt", "repository": source.get("apt", ""), "packages": archive_pins(stack)}
    folders = ", ".join(s["files"] for s in sources if "files" in s)
    raise ConfigError(f"no source of {where} provides stack {stack.name} (HailoRT {stack.hailort}, driver {stack.driver})",
                      where, f"put Hailo's hailort_{stack.hailort}_arm64.deb, hailort-pcie-driver_{stack.driver}_all.deb "
                      f"and hailort-{stack.hailort}-*.whl in {folders}" if folders
                      else f"add a files folder to {SOURCES_VAR}, or pick a version the archive carries")


def installs_for(stack: Stack, hosts: Sequence, where: str) -> dict[str, dict]:
    """Host name -> install data for every host (each host's own `lab_hailo_sources`).

    `where` is the inventory file: a relative files folder is taken from its directory (as Ansible takes
    group_vars), so `../hailo-files` is the same folder whatever directory lab runs in."""
    cache: dict[str, dict] = {}
    out = {}
    for host in hosts:
        value = host.vars.get(SOURCES_VAR)
        key = repr(value)
        if key not in cache:
            cache[key] = resolve_install(stack, value, where, Path(where).resolve().parent)
        out[host.name] = cache[key]
    return out
