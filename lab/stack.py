"""Software-stack pins: chip and HailoRT / driver / firmware versions (where packages come from is the inventory's)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lab.errors import ConfigError
from lab.yamlload import Document, custom_error, load_yaml, parse_yaml, show, validate

# Values below may reach apt, dpkg or a command line on a node: they are checked as data here.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
VERSION_RE = re.compile(r"[0-9][A-Za-z0-9.+~-]{0,63}")
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]{1,63}")
APT_LINE_RE = re.compile(r"deb (\[[A-Za-z0-9=_./:, -]+\] )?[a-z+]+:[A-Za-z0-9_./:~%-]+( [A-Za-z0-9_./~-]+)+")

Chip = Literal["hailo10h", "hailo8", "hailo8l"]


class StrictModel(BaseModel):
    """Base of every input model (stacks, scenarios, steps): typed, strict, and no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True)


def check_name(value: str, what: str = "name", at: tuple = ()) -> str:
    """Validate a lab name (scenario, phase, stack, group): a word safe anywhere, even a shell."""
    if not NAME_RE.fullmatch(value):
        raise custom_error(f"{what} {show(value)} is not a plain name",
                           "use letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)", at=at)
    return value


def check_version(value: str, what: str = "version") -> str:
    """Validate a Debian-style version string such as `5.3.0` or `4.23.0-1`."""
    if not VERSION_RE.fullmatch(value):
        raise custom_error(f"{what} {show(value)} is not a version", "write it like 5.3.0 or 4.23.0-1")
    return value


class Stack(StrictModel):
    """One pinned software stack that a node can be provisioned with."""

    name: str = Field(description="the stack's name, the same as its file name without .yaml")
    description: str = ""
    chip: Chip = Field(description="hailo10h, hailo8 or hailo8l")
    hailort: str = Field(description="HailoRT library and CLI version, e.g. 5.3.0")
    driver: str = Field(description="PCIe driver version, e.g. 5.3.0")
    firmware: str = Field(description="device firmware version reported by 'fw-control identify', e.g. 5.3.0")
    hold: bool = Field(True, description="true to apt-mark hold the packages after installing them")

    @model_validator(mode="before")
    @classmethod
    def _no_source(cls, data: object) -> object:
        if isinstance(data, dict) and "source" in data:
            raise custom_error("a stack names versions only, not where packages come from",
                               "remove 'source:'; set lab_hailo_sources per inventory group (archive, "
                               "{apt: LINE} or {files: FOLDER})", at=("source",))
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "stack name")

    @field_validator("hailort", "driver", "firmware")
    @classmethod
    def _version(cls, value: str, info) -> str:  # noqa: ANN001 - pydantic's ValidationInfo
        return check_version(value, info.field_name)


def parse_stack(text: str, source: str = "<stack>") -> Stack:
    """Validate stack YAML text (pure: no file access)."""
    return stack_from_document(parse_yaml(text, source))


def stack_from_document(doc: Document) -> Stack:
    """Validate a parsed document as a stack."""
    return validate(Stack, doc, "stack")


def load_stack(path: str | Path) -> Stack:
    """Load a stack file; its `name` must equal the file name without `.yaml`."""
    _, doc = load_yaml(path)
    stack = stack_from_document(doc)
    stem = Path(path).name.rsplit(".", 1)[0]
    if stack.name != stem:
        raise ConfigError(f"stack name '{stack.name}' does not match the file name '{Path(path).name}'",
                          where=doc.where(("name",)),
                          hint="scenarios refer to a stack by its file name; make them equal")
    return stack


def stack_path(stacks_dir: Path, name: str) -> Path:
    """The file that defines stack `name` in `stacks_dir` (.yaml, else .yml)."""
    path = stacks_dir / f"{name}.yaml"
    alt = stacks_dir / f"{name}.yml"
    return alt if not path.exists() and alt.exists() else path


def known_stacks(stacks_dir: Path) -> list[str]:
    """Names of the stack files in `stacks_dir`, sorted."""
    if not stacks_dir.is_dir():
        return []
    return sorted({p.name.rsplit(".", 1)[0] for p in stacks_dir.iterdir() if p.suffix in (".yaml", ".yml")})
