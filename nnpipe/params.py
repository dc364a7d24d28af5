"""params.yaml, loaded once and validated by the sections that live beside their code.

Each section is a pydantic model defined with the code that reads it (nnpipe.dataset,
nnpipe.source, nnpipe.architecture, nnpipe.core.params); this module composes them.
``load(path, "split", ...)`` validates only the sections a stage reads, so a typo in one
stage's section never stops another. A model's section (``train_<model>``) is data: its
``backend`` names the type it is validated as, so ``train_wide_mlp`` can be a second torch
MLP. A bad value is one line naming the file, key and value (nnpipe.core.params.error_line).
"""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import ValidationError

from nnpipe.architecture import BACKENDS, MODEL_SECTIONS, ModelParams
from nnpipe.core.errors import PipelineError, short
from nnpipe.core.params import MathParams, Section, error_line
from nnpipe.core.yamlfile import read_yaml
from nnpipe.dataset import DataParams, PlotParams, RandomDataParams, SpiralParams, SplitParams
from nnpipe.source import FetchParams

MODEL_PREFIX = "train_"  # a model's section: train_<model>
SECTIONS: dict[str, type[Section]] = {
    "math": MathParams, "spiral": SpiralParams, "fetch": FetchParams, "data": DataParams,
    "split": SplitParams, "random_data": RandomDataParams, "plot": PlotParams,
}


def section_class(name: str, raw: Any, origin: str = "params.yaml") -> type[Section]:
    """The type a section is validated as: a fixed section's own, or for a model's section
    (``train_<model>``) the one of its ``backend``."""
    if not name.startswith(MODEL_PREFIX):
        return SECTIONS[name]
    if not isinstance(raw, dict):
        return ModelParams
    if "backend" not in raw:
        raise PipelineError(f"{origin}: missing key {name}.backend (one of {', '.join(BACKENDS)})")
    backend = raw["backend"]
    if not isinstance(backend, str) or backend not in MODEL_SECTIONS:
        raise PipelineError(f"{origin}: {name}.backend={short(repr(backend))} must be one of "
                            f"{', '.join(BACKENDS)}")
    return MODEL_SECTIONS[backend]


def build_section(name: str, raw: Any, origin: str = "params.yaml") -> Section:
    """Validate one section's mapping into its frozen model."""
    cls = section_class(name, raw, origin)
    if not isinstance(raw, dict):
        raise PipelineError(f"{origin}: section '{name}' must be a mapping, got {short(repr(raw))}")
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise PipelineError(error_line(origin, name, cls, raw, exc)) from None


def check_seed(value: Any, origin: str = "params.yaml") -> int:
    """Validate the shared top-level ``seed`` (what np.random.RandomState accepts)."""
    if type(value) is not int or not 0 <= value < 2**32:
        raise PipelineError(f"{origin}: seed={short(repr(value))} must be an integer in [0, 2**32)")
    return value


class Params:
    """The validated sections a stage asked for: ``p.seed``, ``p.split``, ``p[name]``."""

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"section {name!r} was not loaded") from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Params is frozen")


def _known(name: Any) -> bool:
    return name == "seed" or name in SECTIONS or str(name).startswith(MODEL_PREFIX)


def load(path: str, *names: str, raw: Mapping[str, Any] | None = None) -> Params:
    """Load and validate ``seed`` and/or the named sections of params.yaml (``raw``: the file
    as already read). A name that is neither ``seed``, a fixed section nor a model's section
    is a bug."""
    for name in names:
        if not _known(name):
            raise KeyError(f"no schema for params section {name!r}")
    raw = read_yaml(path) if raw is None else raw
    values: dict[str, Any] = {}
    for name in names:
        if name not in raw:
            raise PipelineError(f"{path}: missing key {name}")
        if name == "seed":
            values["seed"] = check_seed(raw["seed"], origin=path)
        else:
            values[name] = build_section(name, raw[name], origin=path)
    return Params(values)


def load_all(path: str) -> Params:
    """Validate every section of params.yaml: ``seed``, each fixed section and each model's
    section; a top-level key that is none of them is refused."""
    raw = read_yaml(path)
    for name in raw:
        if not _known(name):
            known = ", ".join(["seed", *SECTIONS, f"{MODEL_PREFIX}<model>"])
            raise PipelineError(f"{path}: unknown section {short(str(name))} (known: {known})")
    return load(path, *raw, raw=raw)
