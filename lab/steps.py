"""Scenario steps: one model per step kind, the `- step: settings` YAML forms, and per-chip HEF files."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, BeforeValidator, Field, field_validator

from lab.stack import Chip, StrictModel, check_name
from lab.yamlload import custom_error, did_you_mean, show

# A HEF reaches the node's command line: a plain relative or absolute path, no shell characters,
# no component starting with '-' or '.', so it can be neither an option nor a '..'.
HEF_RE = re.compile(r"/?[A-Za-z0-9_][A-Za-z0-9_.+-]*(/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*\.hef")
HEF_HINT = "use letters, digits, '.', '_', '-', '+' and '/', ending in .hef; nothing from a scenario reaches a shell"
Collectable = Literal["dmesg", "runtime_log", "journal", "throttled", "lspci", "cma", "temps"]
PowerMode = Literal["performance", "ultra_performance"]
CHIPS: tuple[str, ...] = get_args(Chip)


def check_hef(value: Any, at: tuple = ()) -> str:
    """Validate one HEF path as data: it will be an argument of hailortcli on the node."""
    if not isinstance(value, str) or not HEF_RE.fullmatch(value):
        raise custom_error(f"hef {show(value)} is not a plain .hef path", HEF_HINT, at=at)
    return value


def check_hef_choice(value: Any) -> str | dict[str, str]:
    """A HEF for every chip (`yolo.hef`) or one per chip (`{hailo10h: a.hef, hailo8: b.hef}`)."""
    if isinstance(value, dict):
        if not value:
            raise custom_error("hef is an empty mapping", "map each chip to its .hef file, e.g. {hailo10h: a.hef}")
        for chip, path in value.items():
            if chip not in CHIPS:
                raise custom_error(f"unknown chip {show(chip)} in hef", f"chips: {', '.join(CHIPS)}", at=(chip,))
            check_hef(path, at=(chip,))
        return value
    if isinstance(value, str):
        return check_hef(value)
    raise custom_error(f"hef must be a .hef path or a mapping of chip to .hef path, got {show(value)}",
                       "e.g. 'hef: yolo26s_hailo10h.hef' or "
                       "'hef: {hailo10h: yolo26s_hailo10h.hef, hailo8: yolov8s_h8.hef}'")


class HefStep(StrictModel):
    """A step that loads a model: `hef` is one file, or one file per chip for mixed fleets."""

    hef: Annotated[str | dict[str, str], BeforeValidator(check_hef_choice)] = Field(
        description="the .hef model file on the node, e.g. yolo26s_hailo10h.hef, or a mapping chip -> file")

    def hef_for(self, chip: str) -> str | None:
        """The HEF to use on a node with this chip (None when the scenario names none for it)."""
        return self.hef if isinstance(self.hef, str) else self.hef.get(chip)


class ProvisionStep(StrictModel):
    """Install a pinned stack (optionally purging every Hailo package first)."""

    kind: Literal["provision"] = "provision"
    stack: str | None = Field(None, description="stack to install; by default the run's stack from the matrix")
    clean: bool = Field(False, description="true to purge every Hailo package and leftover first")

    @field_validator("stack")
    @classmethod
    def _check_stack(cls, value: str | None) -> str | None:
        return value if value is None else check_name(value, "stack")


class IdentifyStep(StrictModel):
    """Record the device identity and versions (`fw-control identify`)."""

    kind: Literal["identify"] = "identify"


class BenchmarkStep(HefStep):
    """Back-to-back `hailortcli benchmark` runs, one open/configure/run/close cycle each."""

    kind: Literal["benchmark"] = "benchmark"
    runs: int = Field(1, ge=1, le=100_000, description="how many benchmark invocations, back to back")
    time_to_run: int = Field(15, ge=1, le=86_400, description="seconds per invocation (--time-to-run)")
    batch_size: int | None = Field(None, ge=1, le=1024, description="--batch-size; default: the tool's")
    gap: float = Field(0.0, ge=0, le=86_400, description="seconds to wait between invocations")
    power_mode: PowerMode | None = Field(None, description="performance or ultra_performance")

class ConfigureCyclesStep(HefStep):
    """Open, configure, infer a few frames and close, `count` times (through hailo_platform)."""

    kind: Literal["configure_cycles"] = "configure_cycles"
    count: int = Field(ge=1, le=100_000, description="how many configure cycles")
    frames: int = Field(30, ge=0, le=1_000_000, description="frames inferred per cycle")

class InferContinuousStep(HefStep):
    """Configure once, then infer without stopping for `duration` seconds."""

    kind: Literal["infer_continuous"] = "infer_continuous"
    duration: int = Field(ge=1, le=604_800, description="seconds of continuous inference")

class CooldownStep(StrictModel):
    """Leave the device idle for a while (write `cooldown: 240`)."""

    kind: Literal["cooldown"] = "cooldown"
    seconds: int = Field(ge=1, le=86_400, description="idle seconds, e.g. 'cooldown: 240'")


class DriverReloadStep(StrictModel):
    """Unload and reload the Hailo PCIe kernel module."""

    kind: Literal["driver_reload"] = "driver_reload"


class PcieRescanStep(StrictModel):
    """Remove the device from the PCIe bus and rescan."""

    kind: Literal["pcie_rescan"] = "pcie_rescan"


class ChipResetStep(StrictModel):
    """`hailortcli fw-control reset --reset-type chip`."""

    kind: Literal["chip_reset"] = "chip_reset"


class CollectStep(StrictModel):
    """Gather logs and state from the node as artifacts (write `collect: [dmesg, temps]`)."""

    kind: Literal["collect"] = "collect"
    items: list[Collectable] = Field(
        min_length=1, description="any of dmesg, runtime_log, journal, throttled, lspci, cma, temps")

    @field_validator("items")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        for i, item in enumerate(value):
            if item in value[:i]:
                raise custom_error(f"'{item}' is collected twice", "list each item once", at=(i,))
        return value


STEP_MODELS: dict[str, type[BaseModel]] = {
    m.model_fields["kind"].default: m
    for m in (ProvisionStep, IdentifyStep, BenchmarkStep, ConfigureCyclesStep, InferContinuousStep,
              CooldownStep, DriverReloadStep, PcieRescanStep, ChipResetStep, CollectStep)
}
SHORTHAND = {"cooldown": "seconds", "collect": "items"}  # `cooldown: 240`, `collect: [dmesg]`


def _normalise_step(value: Any) -> Any:
    """`identify` / `{benchmark: {...}}` / `{cooldown: 240}` -> a mapping with `kind` (the union's tag)."""
    if isinstance(value, BaseModel):
        return value
    example = "e.g. '- identify' or '- benchmark: {hef: yolo26s_hailo10h.hef, runs: 25}'"
    if isinstance(value, str):
        name, params = value, None
    elif isinstance(value, dict) and len(value) == 1:
        name, params = next(iter(value.items()))
    elif value == {}:
        raise custom_error("empty step", example)
    elif isinstance(value, dict):
        keys = ", ".join(str(k) for k in value) or "none"
        raise custom_error(f"a step must have exactly one key, its name; got {keys}",
                           "indent a step's settings under its name: 'benchmark:' then 'hef: ...' below it")
    else:
        raise custom_error(f"a step must be a step name or a mapping with one key, got {show(value)}", example)
    if name not in STEP_MODELS:
        raise custom_error(f"unknown step {show(name)}",
                           did_you_mean(str(name), list(STEP_MODELS), "steps are"), at=(name,))
    model = STEP_MODELS[name]
    settings = [f for f in model.model_fields if f != "kind"]
    if params is None:
        return {"kind": name}
    if isinstance(params, dict):
        if params and not settings:
            raise custom_error(f"step '{name}' takes no settings, got {show(params)}", f"write '- {name}'", at=(name,))
        if "kind" in params:
            raise custom_error(f"unknown key 'kind' in step '{name}'",
                               f"expected one of: {', '.join(settings)}" if settings else "it takes no settings",
                               at=(name, "kind"))
        return {"kind": name, **params}
    if name in SHORTHAND:
        return {"kind": name, SHORTHAND[name]: params}
    if not settings:
        raise custom_error(f"step '{name}' takes no settings, got {show(params)}", f"write '- {name}'", at=(name,))
    raise custom_error(f"step '{name}' takes a mapping of settings, got {show(params)}",
                       f"settings: {', '.join(settings)}", at=(name,))


Step = Annotated[
    Union[ProvisionStep, IdentifyStep, BenchmarkStep, ConfigureCyclesStep, InferContinuousStep,  # noqa: UP007
          CooldownStep, DriverReloadStep, PcieRescanStep, ChipResetStep, CollectStep],
    Field(discriminator="kind"),
    BeforeValidator(_normalise_step),
]


def step_to_data(step: BaseModel) -> Any:
    """A step in its shortest YAML form: `identify`, `cooldown: 240`, `benchmark: {...}`."""
    kind = step.kind  # type: ignore[attr-defined]
    params = step.model_dump(exclude={"kind"}, exclude_defaults=True)
    if not params:
        return kind
    if kind in SHORTHAND:
        return {kind: params[SHORTHAND[kind]]}
    return {kind: params}
