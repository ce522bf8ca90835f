"""What `lab` ships inside its package (ansible.cfg, playbooks, roles, scenarios, stacks, fleet profiles).

Found through importlib.resources, so an installed wheel works from any directory. A person's own
`scenarios/`, `stacks/` and `profiles/` folders come first wherever a name is looked up.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from lab.errors import ConfigError

SUFFIXES = (".yaml", ".yml")
KIND_FOLDERS = {"scenario": "scenarios", "stack": "stacks", "profile": "profiles"}


def data_dir() -> Path:
    """The package's data folder as a real directory (Ansible needs files on disk)."""
    data = files("lab").joinpath("data")
    path = Path(str(data))
    if not (path / "ansible.cfg").is_file():
        raise ConfigError("lab's package data is missing (no ansible.cfg beside the playbooks)", str(path),
                          "reinstall lab from a wheel or a checkout; zipped installs are not supported")
    return path


def ansible_cfg() -> Path:
    """The ansible.cfg every playbook run uses."""
    return data_dir() / "ansible.cfg"


def playbooks_dir() -> Path:
    """The shipped playbooks."""
    return data_dir() / "playbooks"


def roles_dir() -> Path:
    """The shipped roles (hailo_stack, hailo_purge, lab_agent)."""
    return data_dir() / "roles"


def shipped(kind: str) -> Path:
    """The shipped folder of scenarios, stacks or profiles."""
    return data_dir() / KIND_FOLDERS[kind]


def shipped_names(kind: str) -> list[str]:
    """Names of the shipped files of one kind, sorted."""
    folder = shipped(kind)
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.suffix in SUFFIXES)


def find_input(ref: str | Path, kind: str) -> Path:
    """A file given by path, or by name: ./scenarios/NAME.yaml first, then the shipped one.

    `cma_soak`, `cma_soak.yaml` and `scenarios/cma_soak.yaml` all work; a path that does not exist
    and is no known name is returned as it is, so the caller's error names what the person typed.
    """
    path = Path(ref)
    if path.exists() or len(path.parts) > 2 or path.is_absolute():
        return path
    folder = KIND_FOLDERS[kind]
    if len(path.parts) == 2 and path.parts[0] != folder:
        return path
    name = path.name
    stems = [name] if name.endswith(SUFFIXES) else [name + s for s in SUFFIXES]
    for base in (Path(folder), shipped(kind)):
        for stem in stems:
            if (base / stem).is_file():
                return base / stem
    return path
