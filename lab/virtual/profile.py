"""Fleet profiles: per node, the unit's "hardware" that is bind-mounted read-only into the node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.errors import ConfigError
from lab.virtual.emulator.unit import validate_unit  # the emulator owns the unit schema

NODE_PREFIX = "node"


def node_names(count: int) -> list[str]:
    """Names of the nodes of a fleet of `count` nodes: node1, node2, ..."""
    return [f"{NODE_PREFIX}{i}" for i in range(1, count + 1)]


def _line_of(node: yaml.Node | None, key: str) -> int | None:
    """Line (1-based) of `key` inside a YAML mapping node, for error messages."""
    if isinstance(node, yaml.MappingNode):
        for knode, _ in node.value:
            if getattr(knode, "value", None) == key:
                return knode.start_mark.line + 1
    return None


def load_profile(path: Path) -> dict[str, dict[str, Any]]:
    """Read a fleet profile and return {node name: unit fields}, defaults merged in.

    A profile is YAML: an optional `defaults:` mapping and a `nodes:` mapping of
    node name -> unit fields (chip, serial, soc_id, ...; see docs/emulator.md).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read fleet profile: {exc.strerror}", str(path), "give an existing YAML file") from None
    try:
        tree = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"invalid YAML ({getattr(exc, 'problem', exc)})", where, "fix the syntax") from None
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict) or not data["nodes"]:
        raise ConfigError(
            "a fleet profile needs a `nodes:` mapping of node name -> unit",
            f"{path}:1",
            "see profiles/mixed.yaml for an example",
        )
    unknown = set(data) - {"defaults", "nodes", "description"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"unknown key {key!r}", f"{path}:{_line_of(tree, key) or 1}", "use defaults, nodes, description")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError("`defaults` must be a mapping", f"{path}:{_line_of(tree, 'defaults')}", "give unit fields")
    nodes_node = None
    if isinstance(tree, yaml.MappingNode):
        nodes_node = next((v for k, v in tree.value if k.value == "nodes"), None)
    units: dict[str, dict[str, Any]] = {}
    for name, fields in data["nodes"].items():
        line = _line_of(nodes_node, str(name)) or 1
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"invalid node name {name!r}", f"{path}:{line}", "use letters, digits, - and _")
        if fields is not None and not isinstance(fields, dict):
            raise ConfigError(f"node {name} must map to unit fields", f"{path}:{line}", "e.g. `chip: hailo10h`")
        unit = {**defaults, **(fields or {})}
        _validate_unit(unit, f"{path}:{line}")
        units[name] = unit
    return units


def _validate_unit(unit: dict[str, Any], where: str) -> None:
    """Check a unit's fields with the emulator's model."""
    try:
        validate_unit(unit)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid unit: {str(exc).splitlines()[0]}", where, "see docs/emulator.md for unit fields") from None


def check_profile_nodes(units: dict[str, Any], names: list[str], path: Path) -> None:
    """Fail when the profile names a node the fleet does not have."""
    missing = [n for n in units if n not in names]
    if missing:
        raise ConfigError(
            f"profile names node {missing[0]!r}, which the fleet does not have (nodes: {names[0]}..{names[-1]})",
            str(path),
            f"raise --nodes to at least {len(units)} or rename the node",
        )
