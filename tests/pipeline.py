"""The pipeline as dvc.yaml defines it, for tests: every stage's command from DVC's own
resolver (vars, foreach), params.yaml shrunk to a tiny run, and that run in a directory.

Nothing here knows a stage, a model or a path by name: adding a model to dvc.yaml's registry
and a section to params.yaml adds it to every test built on this module.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deps import ROOT, resolve_stages

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
REGISTRY: dict[str, str] = DVC["vars"][0]["models"]  # model -> the data set it trains on
MODELS = tuple(REGISTRY)
SPLITS = ("train", "val", "test")
MODEL_PREFIX = "train_"
TINY_EPOCHS = 12


def entries(items: Any) -> list[str]:
    """The paths of a deps/outs list (an entry may be ``{path: {cache: false}}``)."""
    return [item if isinstance(item, str) else next(iter(item)) for item in items or []]


@dataclass(frozen=True)
class Stage:
    """One resolved stage of dvc.yaml: ``train@linear``, its module and argv, its data deps
    (code deps left out) and everything it writes (outs, metrics, plots)."""
    name: str
    module: str
    argv: tuple[str, ...]
    deps: tuple[str, ...]
    outs: tuple[str, ...]

    @property
    def prefix(self) -> str:
        """What the stage's log and error lines start with."""
        if self.name.startswith("train@"):
            return MODEL_PREFIX + self.name.split("@")[1]
        return self.name.replace("@", " ")

    def main(self, argv: list[str] | None = None) -> None:
        """The stage in this process, through the runner (``python -m stages``'s ``run``)."""
        importlib.import_module("stages.__main__").run(self.module.split(".")[1],
                                                       list(self.argv if argv is None else argv))

    def command(self, argv: list[str] | None = None) -> list[str]:
        """The stage as dvc.yaml runs it, through the launcher (``python -m stages NAME``)."""
        return [sys.executable, "-m", "stages", self.module.split(".")[1],
                *(self.argv if argv is None else argv)]

    def with_args(self, **flags: str) -> list[str]:
        """argv with ``--flag`` values replaced: ``with_args(params="p.yaml")``."""
        argv = list(self.argv)
        for flag, value in flags.items():
            argv[argv.index("--" + flag.replace("_", "-")) + 1] = value
        return argv


def stages(document: dict | None = None) -> dict[str, Stage]:
    """Every stage in dvc.yaml's order (a topological order)."""
    found = {}
    for name, body in resolve_stages(document or DVC).items():
        words = shlex.split(body["cmd"])
        assert words[:3] == ["python", "-m", "stages"], body["cmd"]
        data = tuple(d for d in entries(body.get("deps")) if not d.endswith(".py")
                     and not d.startswith("nnpipe/"))
        outs = tuple(p for kind in ("outs", "metrics", "plots") for p in entries(body.get(kind)))
        found[name] = Stage(name, f"stages.{words[3]}", tuple(words[4:]), data, outs)
    return found


STAGES = stages()


def model_sections(p: dict | None = None) -> list[str]:
    return [name for name in (p or PARAMS) if name.startswith(MODEL_PREFIX)]


def with_changes(p: dict, changes: dict | None) -> dict:
    """A deep copy of params ``p`` with ``{"section.key": value}`` set (or added)."""
    p = copy.deepcopy(p)
    for dotted, value in (changes or {}).items():
        *sections, key = dotted.split(".")
        node = p
        for name in sections:
            node = node[name]
        node[key] = value
    return p


def tiny_params(changes: dict | None = None) -> dict:
    """params.yaml shrunk so the whole pipeline runs in a few seconds, then ``changes``."""
    p = copy.deepcopy(PARAMS)
    p["spiral"]["samples_per_class"] = 60
    p["random_data"]["samples_per_class"] = 10
    for name in model_sections(p):
        section = p[name]
        section["epochs"] = min(section["epochs"], TINY_EPOCHS)
        section["log_every"] = section["epochs"]
        if section["hidden_dims"] != "auto":
            section["hidden_dims"] = [16] * len(section["hidden_dims"])
    p["plot"].update(grid_size=15, max_points=50)
    return with_changes(p, changes)


def write_params(path: Path, p: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


class Run:
    """A directory holding a params.yaml and the outputs of the stages run in it, with the
    relative paths of dvc.yaml: ``Run(root, tiny_params()).run()``."""

    def __init__(self, root: Path, params: dict | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.params = write_params(self.root / "params.yaml", params or tiny_params())

    def run(self, names: list[str] | None = None) -> "Run":
        """Each named stage (default: all, in dvc.yaml's order) in this process, as DVC would."""
        with contextlib.chdir(self.root):
            for name in names or STAGES:
                STAGES[name].main()
        return self

    def __truediv__(self, relative: str) -> Path:
        return self.root / relative

    def model_dir(self, model: str) -> Path:
        return self.root / "models" / model

    def data_dir(self, model: str) -> Path:
        return self.root / REGISTRY[model]

    def outputs(self, name: str) -> list[Path]:
        return [self.root / p for p in STAGES[name].outs]


def tree_bytes(path: Path) -> dict[str, bytes]:
    """Relative file name -> bytes, for a file or every file under a directory."""
    path = Path(path)
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*"))
            if f.is_file()}
