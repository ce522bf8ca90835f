"""Validate any lab input file (scenario, stack, virtual fleet profile), telling its kind from location or content."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.errors import ConfigError
from lab.inventory import POWER_VAR
from lab.inventory import load as load_inventory
from lab.power.config import parse_power
from lab.resources import find_input
from lab.scenario import LoadedScenario, load_scenario
from lab.stack import load_stack
from lab.virtual import profile as fleet_profile
from lab.yamlload import Document, load_yaml, show

KINDS = ("scenario", "stack", "profile")
_FOLDERS = {"scenarios": "scenario", "stacks": "stack", "profiles": "profile"}
_KEYS = {
    "scenario": {"phases", "matrix", "reboot_timeout", "recover"},
    "stack": {"chip", "hailort", "driver", "firmware", "source", "hold"},
    "profile": {"nodes", "defaults"},
}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of checking one file: its kind and name."""

    path: Path
    kind: str
    name: str


def detect_kind(path: Path, doc: Document) -> str | None:
    """`scenario`, `stack` or `profile` from the file's folder, else its keys, else its name; None if unknown."""
    by_folder = _FOLDERS.get(path.parent.name)
    if by_folder:
        return by_folder
    if isinstance(doc.data, dict):
        keys = set(doc.data)
        for kind in KINDS:
            if keys & _KEYS[kind]:
                return kind
    if "profile" in path.name:
        return "profile"
    return None


def locate(ref: str | Path) -> Path:
    """A file by path, or a bare name of a scenario, stack or profile (own folders first, then lab's)."""
    for kind in KINDS:
        path = find_input(ref, kind)
        if path.exists():
            return path
    return Path(ref)


def check_file(path: str | Path) -> CheckResult:
    """Validate one scenario, stack or profile file (or a name, see `locate`) without touching any node."""
    path = locate(path)
    _, doc = load_yaml(path)
    kind = detect_kind(path, doc)
    if kind is None:
        if not isinstance(doc.data, dict):
            what = f"the file must be a mapping of keys, got {show(doc.data)}"
        else:
            what = "cannot tell whether this is a scenario, a stack or a fleet profile"
        raise ConfigError(what, where=doc.where(),
                          hint="a scenario has 'matrix' and 'phases', a stack has 'chip' and 'hailort', "
                               "a fleet profile has 'nodes'")
    if kind == "scenario":
        return CheckResult(path, kind, load_scenario(path).scenario.name)
    if kind == "stack":
        return CheckResult(path, kind, load_stack(path).name)
    fleet_profile.load_profile(path)
    return CheckResult(path, kind, path.stem)  # a fleet profile has no name field: its file's stem names it


def check_inventory(name_or_path: str | Path) -> CheckResult:
    """Load an inventory as Ansible does (vaulted values opened) and validate every host's lab_power."""
    inv = load_inventory(str(name_or_path))
    for host in inv.hosts.values():
        parse_power(host, str(inv.source))
    powered = sum(1 for h in inv.hosts.values() if h.vars.get(POWER_VAR) is not None)
    hosts = f"{len(inv.hosts)} host{'s' if len(inv.hosts) != 1 else ''}"
    return CheckResult(inv.source, "inventory", f"{hosts}, {powered} with {POWER_VAR}")


def load_scenario_file(path: str | Path) -> LoadedScenario:
    """Load a file given as a scenario (`lab run`); a file of another kind gets what `lab check` says of it."""
    path = find_input(path, "scenario")
    _, doc = load_yaml(path)
    kind = detect_kind(path, doc)
    if kind != "scenario":
        result = check_file(path)  # a bad stack, profile or unknown file: the same one-line error as `lab check`
        raise ConfigError(f"this is a {result.kind} file, not a scenario", where=doc.where(),
                          hint="give a scenario file, e.g. scenarios/cma_soak.yaml")
    return load_scenario(path)
