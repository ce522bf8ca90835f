"""Scenario models (matrix, phases, steps), loading with `file:line` errors, dumping and matrix expansion."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from lab.errors import ConfigError
from lab.resources import shipped
from lab.stack import Stack, StrictModel, check_name, known_stacks, load_stack, stack_path
from lab.steps import (HEF_HINT, HEF_RE, SHORTHAND, STEP_MODELS, BenchmarkStep,  # noqa: F401 - re-exported
                       ChipResetStep, CollectStep, ConfigureCyclesStep, CooldownStep, DriverReloadStep, HefStep,
                       IdentifyStep, InferContinuousStep, PcieRescanStep, ProvisionStep, Step, step_to_data)
from lab.yamlload import Document, custom_error, did_you_mean, dotted, load_yaml, parse_yaml, validate

SERVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,80}\.service")


class Matrix(StrictModel):
    """What to run on: stacks x repeats, on the inventory's nodes (optionally one group)."""

    stacks: list[str] = Field(min_length=1, description="stack names, files in stacks/, e.g. [h10-5.3.0]")
    repeats: int = Field(1, ge=1, le=1000, description="how many times each node runs each stack")
    group: str | None = Field(None, description="inventory group to run on; default: every node")

    @field_validator("stacks")
    @classmethod
    def _stacks(cls, value: list[str]) -> list[str]:
        for i, name in enumerate(value):
            check_name(name, "stack", at=(i,))
            if name in value[:i]:
                raise custom_error(f"stack '{name}' is listed twice", "use 'repeats' to run a stack more than once",
                                   at=(i,))
        return value

    @field_validator("group")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        return value if value is None else check_name(value, "group")


class Phase(StrictModel):
    """One step of a campaign that every node runs: an optional reboot or power cycle, then steps back to back."""

    name: str = Field(description="a unique name for the phase, e.g. soak")
    description: str = ""
    reboot: bool = Field(False, description="true to reboot the node before the steps")
    power_cycle: bool = Field(False, description="true to cut and restore the node's power before the steps (a cold "
                                                 "cycle through its lab_power driver); also written as a first step "
                                                 "`- power_cycle`")
    steps: list[Step] = Field(default_factory=list, description="the steps to run, in order")
    stop_services: list[str] = Field(
        default_factory=list,
        description="systemd services that hold the device, stopped before the pre-flight and started again "
                    "after the phase, e.g. [hailort.service]")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_name(value, "phase name")

    @field_validator("stop_services")
    @classmethod
    def _check_services(cls, value: list[str]) -> list[str]:
        for i, name in enumerate(value):
            if not SERVICE_RE.fullmatch(name):
                raise custom_error(f"'{name}' is not a systemd service name",
                                   "name a unit such as hailort.service (letters, digits, '-', '_', '.', '@')",
                                   at=(i,))
        return value

    @model_validator(mode="before")
    @classmethod
    def _power_cycle_step(cls, data: Any) -> Any:
        """`- power_cycle` as a phase's first step is the phase option: the controller cuts the power, not the agent."""
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            return data
        steps = data["steps"]
        found = [i for i, step in enumerate(steps) if step == "power_cycle" or
                 (isinstance(step, dict) and list(step) == ["power_cycle"])]
        if not found:
            return data
        if found != [0]:
            raise custom_error("power_cycle must be the phase's first step",
                               "the node cannot cut its own power mid-phase: start a new phase with it",
                               at=("steps", found[-1] if found[0] == 0 else found[0]))
        return {**data, "steps": steps[1:], "power_cycle": True}

    @model_validator(mode="after")
    def _does_something(self) -> Phase:
        if not self.steps and not self.reboot and not self.power_cycle:
            raise custom_error(f"phase '{self.name}' has no steps and does not reboot",
                               "add 'steps:', 'reboot: true' or 'power_cycle: true'")
        if self.reboot and self.power_cycle:
            raise custom_error(f"phase '{self.name}' both reboots and power-cycles",
                               "choose one: 'reboot: true' (warm) or 'power_cycle: true' (cold)")
        return self


class Scenario(StrictModel):
    """A scripted experiment: a matrix of runs, each going through the same ordered phases."""

    name: str = Field(description="the scenario's name, e.g. cma_soak")
    description: str = ""
    matrix: Matrix = Field(description="'stacks: [...]' and optionally 'repeats' and 'group'")
    reboot_timeout: int = Field(600, ge=1, le=86_400,
                                description="seconds to wait for a node to come back from a reboot")
    recover: int | Literal["none"] = Field(
        1, description="how many times lab may cycle a node's power to bring it back when it stops answering or "
                       "hangs in a reboot (nodes with lab_power only); 'none' never does")

    @field_validator("recover")
    @classmethod
    def _check_recover(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= 100:
            raise custom_error(f"recover {value} is out of range", "use a count from 0 to 100, or 'none'")
        return value

    @property
    def recoveries(self) -> int:
        """How many power cycles a run may use to recover its node (`recover: none` is 0)."""
        return 0 if self.recover == "none" else int(self.recover)

    def cuts_power(self) -> bool:
        """Whether a phase power-cycles its nodes (each then needs a lab_power driver)."""
        return any(p.power_cycle for p in self.phases)
    phases: list[Phase] = Field(min_length=1, description="the ordered phases, each with a name and steps")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_name(value, "scenario name")

    @field_validator("phases")
    @classmethod
    def _unique_phases(cls, value: list[Phase]) -> list[Phase]:
        seen: dict[str, int] = {}
        for i, phase in enumerate(value):
            if phase.name in seen:
                raise custom_error(f"duplicate phase name '{phase.name}'",
                                   f"phase names must be unique; phases[{seen[phase.name]}] has it too", at=(i, "name"))
            seen[phase.name] = i
        return value

    def stack_names(self) -> list[str]:
        """Every stack the scenario refers to: the matrix's, then explicit `provision` stacks."""
        names = list(self.matrix.stacks)
        for phase in self.phases:
            for step in phase.steps:
                if isinstance(step, ProvisionStep) and step.stack and step.stack not in names:
                    names.append(step.stack)
        return names


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario file with its exact text and the stacks it refers to."""

    path: Path
    text: str
    scenario: Scenario
    stacks: dict[str, Stack]
    stacks_dir: Path


@dataclass(frozen=True)
class RunSpec:
    """One run of the matrix: a node running the scenario's phases with one stack, for one repeat."""

    index: int
    node: str
    stack: str
    repeat: int
    chip: str | None = None  # the node's chip when known, else the stack's


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Validate scenario YAML text (pure: stacks are not resolved)."""
    return scenario_from_document(parse_yaml(text, source))


def scenario_from_document(doc: Document) -> Scenario:
    """Validate a parsed document as a scenario."""
    return validate(Scenario, doc, "scenario")


def find_stacks_dir(scenario_path: str | Path) -> Path:
    """The `stacks/` directory nearest above a scenario file, else `./stacks`."""
    start = Path(scenario_path).absolute().parent
    for folder in (start, *start.parents):
        candidate = folder / "stacks"
        if candidate.is_dir():
            try:
                return Path(os.path.relpath(candidate))
            except ValueError:  # pragma: no cover - another drive on Windows
                return candidate
    return Path("stacks")


def stack_search_path(scenario_path: str | Path) -> list[Path]:
    """Where a scenario's stacks are looked up: the nearest `stacks/` above it, then the stacks lab ships."""
    own, ours = find_stacks_dir(scenario_path), shipped("stack")
    if own.is_dir() and own.resolve() == ours.resolve():
        return [own]
    return [own, ours] if own.is_dir() else [ours]


def load_scenario(path: str | Path, stacks_dir: str | Path | None = None) -> LoadedScenario:
    """Load and validate a scenario file and every stack it names; any mistake raises ConfigError.

    Without `stacks_dir`, a stack is taken from the nearest `stacks/` folder above the scenario,
    else from the stacks lab ships; with it, only from that folder.
    """
    text, doc = load_yaml(path)
    scenario = scenario_from_document(doc)
    folders = [Path(stacks_dir)] if stacks_dir is not None else stack_search_path(path)
    stacks = resolve_stacks(scenario, doc, folders)
    return LoadedScenario(path=Path(path), text=text, scenario=scenario, stacks=stacks, stacks_dir=folders[0])


def resolve_stacks(scenario: Scenario, doc: Document, stacks_dirs: Sequence[Path]) -> dict[str, Stack]:
    """Load each stack the scenario names from the first folder that has it; an unknown one is an error at its line."""
    refs: list[tuple[str, tuple]] = [(n, ("matrix", "stacks", i)) for i, n in enumerate(scenario.matrix.stacks)]
    for p, phase in enumerate(scenario.phases):
        for s, step in enumerate(phase.steps):
            if isinstance(step, ProvisionStep) and step.stack:
                refs.append((step.stack, doc.data_path(("phases", p, "steps", s, "provision", "stack"))))
    stacks: dict[str, Stack] = {}
    for name, path in refs:
        if name in stacks:
            continue
        file = next((f for f in (stack_path(d, name) for d in stacks_dirs) if f.is_file()), None)
        if file is None:
            known = sorted({k for d in stacks_dirs for k in known_stacks(d)})
            where = " or ".join("lab's own stacks" if d == shipped("stack") else f"{d}/" for d in stacks_dirs)
            hint = (did_you_mean(name, known, f"stacks are the files in {where}") if known
                    else f"there is no stack directory {where}")
            raise ConfigError(f"unknown stack '{name}' at {dotted(path)}", where=doc.where(path), hint=hint)
        stacks[name] = load_stack(file)
    return stacks


def scenario_to_data(scenario: Scenario) -> dict[str, Any]:
    """Plain data for a scenario, in the same shape as a scenario file."""
    data = scenario.model_dump(exclude_none=True, exclude={"phases"})
    data["phases"] = []
    for phase in scenario.phases:
        item = phase.model_dump(exclude={"steps"}, exclude_defaults=True)
        item["steps"] = [step_to_data(s) for s in phase.steps]
        data["phases"].append(item)
    return data


class _Dumper(yaml.SafeDumper):
    """Safe dumper that double-quotes strings holding U+0085 (PyYAML single-quotes them into a line break)."""


_Dumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style='"' if "\x85" in value else None))


def dump_scenario(scenario: Scenario) -> str:
    """Scenario as YAML text that `parse_scenario` reads back to an equal scenario."""
    return yaml.dump(scenario_to_data(scenario), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def same_family(a: str, b: str) -> bool:
    """Whether two chips take the same software stacks (Hailo-8 and Hailo-8L do)."""
    family = {"hailo8l": "hailo8"}
    return family.get(a, a) == family.get(b, b)


def expand_matrix(scenario: Scenario, nodes: Sequence[str], groups: Mapping[str, Sequence[str]] | None = None,
                  node_chips: Mapping[str, str] | None = None,
                  stacks: Mapping[str, Stack] | None = None) -> list[RunSpec]:
    """Pure: nodes (narrowed to matrix.group) x stacks x repeats -> runs, stack-major, then repeat, then node.

    With `node_chips` (node -> chip, from the inventory or discovery) and `stacks` (name -> Stack),
    a node only gets the stacks made for its chip, so one scenario can cover a mixed fleet; a node
    whose chip is not known gets every stack. Every HEF step must name a file for each run's chip.
    """
    chosen = list(dict.fromkeys(nodes))
    group = scenario.matrix.group
    if group is not None:
        if groups is None or group not in groups:
            raise ConfigError(f"scenario '{scenario.name}' runs on group '{group}', which the inventory does not have",
                              hint="fix matrix.group or add the group to the inventory")
        members = set(groups[group])
        chosen = [n for n in chosen if n in members]
    chips, pins = node_chips or {}, stacks or {}
    runs: list[RunSpec] = []
    for stack in scenario.matrix.stacks:
        stack_chip = pins[stack].chip if stack in pins else None
        for repeat in range(1, scenario.matrix.repeats + 1):
            for node in chosen:
                chip = chips.get(node)
                if chip and stack_chip and not same_family(chip, stack_chip):
                    continue
                runs.append(RunSpec(index=len(runs), node=node, stack=stack, repeat=repeat, chip=chip or stack_chip))
    if not runs:
        raise ConfigError(f"scenario '{scenario.name}' has no node to run on",
                          hint="the inventory (or matrix.group) names no host whose chip matches a matrix stack")
    for chip in dict.fromkeys(r.chip for r in runs if r.chip):
        _check_hefs(scenario, chip)
    return runs


def _check_hefs(scenario: Scenario, chip: str) -> None:
    """Every step that loads a model must name a HEF for `chip`."""
    for phase in scenario.phases:
        for i, step in enumerate(phase.steps):
            if isinstance(step, HefStep) and step.hef_for(chip) is None:
                raise ConfigError(f"scenario '{scenario.name}' has no hef for {chip} in phase '{phase.name}', "
                                  f"step {i + 1} ({step.kind})",  # type: ignore[attr-defined]
                                  hint=f"add '{chip}: FILE.hef' to that step's hef mapping, or narrow the matrix")
