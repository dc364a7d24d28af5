"""Load params.yaml into typed, frozen dataclasses and validate every key.

Each section is a dataclass; each field carries its kind (the YAML types it
accepts) and a range check. ``load(path, "split", ...)`` validates only the
sections a stage reads, so a typo in one stage's section never stops another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from nnpipe.errors import PipelineError

Check = Callable[[Any], "str | None"]


def _param(default: Any, kind: str, check: Check | None = None) -> Any:
    """A dataclass field with its accepted YAML kind and an optional range check."""
    if isinstance(default, list):
        return field(default_factory=lambda: tuple(default), metadata={"kind": kind, "check": check})
    return field(default=default, metadata={"kind": kind, "check": check})


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def open_unit(value: Any) -> str | None:
    return None if 0 < value < 1 else "must be in (0, 1)"


def half_open_unit(value: Any) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


def positive_or_auto(value: Any) -> str | None:
    return None if value == "auto" or value > 0 else "must be 'auto' or > 0"


def positive_or_none(value: Any) -> str | None:
    return None if value is None or value > 0 else "must be null or > 0"


def one_of(*choices: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"
    return check


def non_empty(value: Any) -> str | None:
    if len(value) == 0:
        return "must not be empty"
    if len(set(value)) != len(value):
        return "must not repeat a name"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "int": ("an integer", _is_int),
    "number": ("a finite number", _is_number),
    "str": ("a string", lambda v: isinstance(v, str) and v != ""),
    "sha256?": ("null or a 64-digit hex sha256",
                lambda v: v is None or (isinstance(v, str) and len(v) == 64
                                        and all(c in "0123456789abcdefABCDEF" for c in v))),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "int?": ("null or an integer", lambda v: v is None or _is_int(v)),
    "int|auto": ("an integer or 'auto'", lambda v: v == "auto" or _is_int(v)),
    "str_list": ("a list of strings",
                 lambda v: isinstance(v, list) and all(isinstance(s, str) and s for s in v)),
}


@dataclass(frozen=True)
class MathParams:
    portable: bool = _param(True, "bool")  # pinned kernels: same bytes on any x86-64 AVX2 CPU


@dataclass(frozen=True)
class FetchParams:
    source: str = _param("synthetic", "str")
    sha256: str | None = _param(None, "sha256?")
    timeout: float = _param(30, "number", positive)
    samples_per_class: int = _param(500, "int", positive)
    classes: tuple[str, ...] = _param(["c1", "c3", "c2"], "str_list", non_empty)
    noise: float = _param(0.2, "number", non_negative)


@dataclass(frozen=True)
class DataParams:
    features: tuple[str, ...] = _param(["X1", "X2"], "str_list", non_empty)
    target: str = _param("color", "str")


@dataclass(frozen=True)
class SplitParams:
    train_size: float = _param(0.7, "number", open_unit)
    val_size: float = _param(0.15, "number", open_unit)
    test_size: float = _param(0.15, "number", open_unit)


@dataclass(frozen=True)
class LinearParams:
    hidden_dim: int = _param(100, "int", positive)
    lr: float = _param(0.01, "number", positive)
    epochs: int = _param(10, "int", positive)
    batch_size: int | None = _param(None, "int?", positive_or_none)
    log_every: int = _param(1, "int", positive)


@dataclass(frozen=True)
class TorchMLPParams:
    hidden_dim: int = _param(100, "int", positive)
    lr: float = _param(0.01, "number", positive)
    epochs: int = _param(100, "int", positive)
    batch_size: int | None = _param(None, "int?", positive_or_none)
    dropout_p: float = _param(0.0, "number", half_open_unit)
    init: str = _param("default", "str", one_of("default", "xavier_normal"))
    log_every: int = _param(10, "int", positive)


@dataclass(frozen=True)
class NumpyMLPParams:
    hidden_dim: int = _param(100, "int", positive)
    lr: float = _param(1.0, "number", positive)
    epochs: int = _param(1000, "int", positive)
    batch_size: int | None = _param(None, "int?", positive_or_none)
    init_scale: float = _param(0.01, "number", positive)
    log_every: int = _param(100, "int", positive)


@dataclass(frozen=True)
class OverfitParams:
    samples_per_class: int = _param(50, "int", positive)
    num_classes: int = _param(3, "int", positive)
    num_features: int = _param(2, "int", positive)
    hidden_dim: int | str = _param("auto", "int|auto", positive_or_auto)
    lr: float = _param(0.1, "number", positive)
    epochs: int = _param(500, "int", positive)
    batch_size: int | None = _param(None, "int?", positive_or_none)
    dropout_p: float = _param(0.0, "number", half_open_unit)
    init: str = _param("default", "str", one_of("default", "xavier_normal"))
    log_every: int = _param(20, "int", positive)


@dataclass(frozen=True)
class PlotParams:
    max_points: int = _param(2000, "int", positive)
    grid_size: int = _param(101, "int", positive)


SECTIONS: dict[str, type] = {
    "math": MathParams,
    "fetch": FetchParams,
    "data": DataParams,
    "split": SplitParams,
    "train_linear": LinearParams,
    "train_numpy_mlp": NumpyMLPParams,
    "train_torch_mlp": TorchMLPParams,
    "overfit_random": OverfitParams,
    "plot": PlotParams,
}


def _check_split(section: SplitParams) -> tuple[str, str] | None:
    total = section.train_size + section.val_size + section.test_size
    if abs(total - 1.0) > 1e-9:
        return ("train_size + val_size + test_size",
                f"={total:g} must sum to 1")
    return None


_CROSS_CHECKS: dict[str, Callable[[Any], "tuple[str, str] | None"]] = {"split": _check_split}


def check_seed(value: Any, origin: str = "params.yaml") -> int:
    """Validate the shared top-level ``seed`` (what np.random.RandomState accepts)."""
    if not _is_int(value) or not 0 <= value < 2**32:
        raise PipelineError(f"{origin}: seed={value!r} must be an integer in [0, 2**32)")
    return value


def build_section(name: str, raw: Any, origin: str = "params.yaml") -> Any:
    """Validate one section's mapping and return its frozen dataclass."""
    cls = SECTIONS[name]
    if not isinstance(raw, dict):
        raise PipelineError(f"{origin}: section '{name}' must be a mapping, got {raw!r}")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise PipelineError(f"{origin}: unknown key {name}.{key} "
                                f"(known: {', '.join(known)})")
    values = {}
    for key, spec in known.items():
        if key not in raw:
            raise PipelineError(f"{origin}: missing key {name}.{key}")
        value = raw[key]
        what, accepts = _KINDS[spec.metadata["kind"]]
        if not accepts(value):
            raise PipelineError(f"{origin}: {name}.{key}={value!r} must be {what}")
        check = spec.metadata["check"]
        problem = check(value) if check else None
        if problem:
            raise PipelineError(f"{origin}: {name}.{key}={value!r} {problem}")
        values[key] = tuple(value) if isinstance(value, list) else value
    section = cls(**values)
    cross = _CROSS_CHECKS.get(name)
    problem = cross(section) if cross else None
    if problem:
        raise PipelineError(f"{origin}: {name}.{problem[0]}{problem[1]}")
    return section


@dataclass(frozen=True)
class Params:
    """The validated sections a stage asked for (others stay None)."""
    seed: int | None = None
    math: MathParams | None = None
    fetch: FetchParams | None = None
    data: DataParams | None = None
    split: SplitParams | None = None
    train_linear: LinearParams | None = None
    train_numpy_mlp: NumpyMLPParams | None = None
    train_torch_mlp: TorchMLPParams | None = None
    overfit_random: OverfitParams | None = None
    plot: PlotParams | None = None


def read_yaml(path: str) -> dict:
    """Read params.yaml as a mapping, with a one-line error for a missing or broken file."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise PipelineError(f"{path}: not a UTF-8 YAML file") from None
    except IsADirectoryError:
        raise PipelineError(f"{path}: is a directory, not a YAML file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise PipelineError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: must be a mapping of sections")
    return raw


def load(path: str, *names: str) -> Params:
    """Load and validate ``seed`` and/or the named sections of params.yaml."""
    raw = read_yaml(path)
    values: dict[str, Any] = {}
    for name in names:
        if name not in raw:
            raise PipelineError(f"{path}: missing key {name}")
        if name == "seed":
            values["seed"] = check_seed(raw["seed"], origin=path)
        else:
            values[name] = build_section(name, raw[name], origin=path)
    return Params(**values)
