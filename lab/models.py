"""Models from the controller: the HEF files a scenario names, found on the controller, checksummed,
and placed on each node at a path named by their checksum (so a node copies each file once)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from lab.contract import AGENT_WORKDIR
from lab.errors import ConfigError
from lab.scenario import LoadedScenario
from lab.steps import HefStep
from lab.yamlload import Document, dotted, parse_yaml

NODE_MODELS_DIR = f"{AGENT_WORKDIR}/models"


@dataclass(frozen=True)
class ModelFile:
    """One model file on the controller: where it is, and what it must be on every node."""

    name: str
    path: Path
    sha256: str
    md5: str
    size: int

    @property
    def node_path(self) -> str:
        """Where the node keeps it: one directory per content, so a changed file is a new path."""
        return f"{NODE_MODELS_DIR}/{self.sha256}/{self.name}"

    def as_setting(self) -> dict:
        """What the campaign stores about it (campaign.settings["models"])."""
        return {"path": str(self.path), "sha256": self.sha256, "md5": self.md5, "size": self.size,
                "node_path": self.node_path}


def is_controller_model(hef: str) -> bool:
    """A bare file name is a model on the controller; an absolute path is a file of an installed package."""
    return not hef.startswith("/")


def model_refs(doc: Document, loaded: LoadedScenario) -> dict[str, tuple]:
    """Each controller model the scenario names -> the document path of its first mention."""
    refs: dict[str, tuple] = {}
    for p, phase in enumerate(loaded.scenario.phases):
        for s, step in enumerate(phase.steps):
            if not isinstance(step, HefStep):
                continue
            choices = {None: step.hef} if isinstance(step.hef, str) else dict(step.hef)
            for chip, hef in choices.items():
                if is_controller_model(hef) and hef not in refs:
                    at = ("phases", p, "steps", s, step.kind, "hef") + (() if chip is None else (chip,))
                    refs[hef] = doc.data_path(at)
    return refs


def model_dirs(scenario_path: Path) -> list[Path]:
    """Where models are looked up: `models/` folders from the scenario's folder upwards, then `./models`."""
    dirs = [folder / "models" for folder in [scenario_path.resolve().parent, *scenario_path.resolve().parents]]
    own = Path.cwd() / "models"
    return [*dirs, own] if own not in dirs else dirs


def checksum(path: Path) -> ModelFile:
    """A model file's sha256, md5 (the field report gives one) and size."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return ModelFile(path.name, path.resolve(), sha.hexdigest(), md5.hexdigest(), size)


def resolve_models(loaded: LoadedScenario) -> dict[str, ModelFile]:
    """Every controller model of a scenario, checksummed; a missing one is a ConfigError at its line."""
    doc = parse_yaml(loaded.text, str(loaded.path))
    dirs = model_dirs(Path(loaded.path))
    out: dict[str, ModelFile] = {}
    for name, at in model_refs(doc, loaded).items():
        candidates = [d / name for d in dirs] + [Path(loaded.path).parent / name, Path.cwd() / name]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            shown = Path.cwd() / "models"
            raise ConfigError(f"model {name} is not on the controller (at {dotted(at)})", where=doc.where(at),
                              hint=f"put the file in {shown}/ (or a models/ folder beside the scenario), "
                                   "or name a file of an installed package by its absolute path")
        out[name] = checksum(found)
    return out
