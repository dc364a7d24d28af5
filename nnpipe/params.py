"""Load params.yaml into typed, frozen dataclasses and validate every key.

Each section is a dataclass; each field carries its kind (the YAML types it
accepts) and a range check. ``load(path, "split", ...)`` validates only the
sections a stage reads, so a typo in one stage's section never stops another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from nnpipe.errors import PipelineError, short

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


# Upper bounds: refused with one line before anything is allocated.
MAX_WIDTH = 100_000          # hidden units per layer
MAX_EPOCHS = 1_000_000
MAX_ROWS = 30_000_000        # synthetic spiral rows (samples_per_class * classes)
MAX_CELLS = 50_000_000       # overfit_random's random data (N * C * D values)
MAX_NAMES = 10_000           # features, classes


def up_to(limit: int) -> Check:
    """> 0 and at most ``limit``."""
    def check(value: Any) -> str | None:
        if value <= 0:
            return "must be > 0"
        return None if value <= limit else f"must be at most {limit}"
    return check


def widths(value: Any) -> str | None:
    if value == "auto":
        return None
    if not value:
        return "must not be empty"
    if not all(0 < v <= MAX_WIDTH for v in value):
        return f"must hold widths > 0 and at most {MAX_WIDTH}"
    return None


def names(value: Any) -> str | None:
    return f"must name at most {MAX_NAMES}" if len(value) > MAX_NAMES else non_empty(value)


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
    "widths": ("a list of integers", lambda v: isinstance(v, list) and all(_is_int(x) for x in v)),
    "widths|auto": ("'auto' or a list of integers",
                    lambda v: v == "auto" or (isinstance(v, list) and all(_is_int(x) for x in v))),
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
    samples_per_class: int = _param(500, "int", up_to(MAX_ROWS))
    classes: tuple[str, ...] = _param(["c1", "c3", "c2"], "str_list", names)
    noise: float = _param(0.2, "number", non_negative)
    max_mb: float = _param(1024, "number", up_to(1 << 20))  # largest CSV read, path or URL


@dataclass(frozen=True)
class DataParams:
    features: tuple[str, ...] = _param(["X1", "X2"], "str_list", names)
    target: str = _param("color", "str")


@dataclass(frozen=True)
class SplitParams:
    train_size: float = _param(0.7, "number", open_unit)
    val_size: float = _param(0.15, "number", open_unit)
    test_size: float = _param(0.15, "number", open_unit)


@dataclass(frozen=True)
class LinearParams:
    hidden_dims: tuple = _param([100], "widths", widths)
    lr: float = _param(0.01, "number", positive)
    epochs: int = _param(10, "int", up_to(MAX_EPOCHS))
    batch_size: int | None = _param(None, "int?", positive_or_none)
    log_every: int = _param(1, "int", positive)


@dataclass(frozen=True)
class TorchMLPParams:
    hidden_dims: tuple = _param([100], "widths", widths)
    lr: float = _param(0.01, "number", positive)
    epochs: int = _param(100, "int", up_to(MAX_EPOCHS))
    batch_size: int | None = _param(None, "int?", positive_or_none)
    dropout_p: float = _param(0.0, "number", half_open_unit)
    init: str = _param("default", "str", one_of("default", "xavier_normal"))
    log_every: int = _param(10, "int", positive)


@dataclass(frozen=True)
class NumpyMLPParams:
    hidden_dims: tuple = _param([100], "widths", widths)
    lr: float = _param(1.0, "number", positive)
    epochs: int = _param(1000, "int", up_to(MAX_EPOCHS))
    batch_size: int | None = _param(None, "int?", positive_or_none)
    init_scale: float = _param(0.01, "number", positive)
    log_every: int = _param(100, "int", positive)


@dataclass(frozen=True)
class OverfitParams:
    samples_per_class: int = _param(50, "int", up_to(MAX_CELLS))
    num_classes: int = _param(3, "int", up_to(MAX_NAMES))
    num_features: int = _param(2, "int", up_to(MAX_NAMES))
    hidden_dims: Any = _param("auto", "widths|auto", widths)
    lr: float = _param(0.1, "number", positive)
    epochs: int = _param(500, "int", up_to(MAX_EPOCHS))
    batch_size: int | None = _param(None, "int?", positive_or_none)
    dropout_p: float = _param(0.0, "number", half_open_unit)
    init: str = _param("default", "str", one_of("default", "xavier_normal"))
    log_every: int = _param(20, "int", positive)


@dataclass(frozen=True)
class PlotParams:
    max_points: int = _param(2000, "int", up_to(10_000_000))
    grid_size: int = _param(101, "int", up_to(2001))


SECTIONS: dict[str, type] = {
    "math": MathParams,
    "fetch": FetchParams,
    "data": DataParams,
    "split": SplitParams,
    "overfit_random": OverfitParams,
    "plot": PlotParams,
}


def _check_split(section: SplitParams) -> tuple[str, str] | None:
    total = section.train_size + section.val_size + section.test_size
    if abs(total - 1.0) > 1e-9:
        return ("train_size + val_size + test_size",
                f"={total:g} must sum to 1")
    return None


def _check_fetch(section: FetchParams) -> tuple[str, str] | None:
    rows = section.samples_per_class * len(section.classes)
    if rows > MAX_ROWS:
        return ("samples_per_class * len(classes)", f"={rows} must be at most {MAX_ROWS}")
    return None


def _check_overfit(section: OverfitParams) -> tuple[str, str] | None:
    s = section
    cells = s.samples_per_class * s.num_classes * s.num_features
    if cells > MAX_CELLS:
        return ("samples_per_class * num_classes * num_features",
                f"={cells} must be at most {MAX_CELLS}")
    width = 2 * s.samples_per_class * s.num_classes + s.num_features
    if s.hidden_dims == "auto" and width > MAX_WIDTH:
        return ("hidden_dims", f"=auto gives {width} hidden units, at most {MAX_WIDTH}")
    return None


TRAINERS: dict[str, type] = {"linear": LinearParams, "numpy_mlp": NumpyMLPParams,
                             "torch_mlp": TorchMLPParams}

_CROSS_CHECKS: dict[str, Callable[[Any], "tuple[str, str] | None"]] = {
    "split": _check_split, "fetch": _check_fetch, "overfit_random": _check_overfit}


def check_seed(value: Any, origin: str = "params.yaml") -> int:
    """Validate the shared top-level ``seed`` (what np.random.RandomState accepts)."""
    if not _is_int(value) or not 0 <= value < 2**32:
        raise PipelineError(f"{origin}: seed={short(repr(value))} must be an integer in [0, 2**32)")
    return value


def build_section(name: str, raw: Any, origin: str = "params.yaml", kind: str | None = None) -> Any:
    """Validate one section's mapping and return its frozen dataclass."""
    cls = TRAINERS[kind] if kind else SECTIONS[name]
    if not isinstance(raw, dict):
        raise PipelineError(f"{origin}: section '{name}' must be a mapping, got {short(repr(raw))}")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise PipelineError(f"{origin}: unknown key {name}.{short(key)} "
                                f"(known: {', '.join(known)})")
    values = {}
    for key, spec in known.items():
        if key not in raw:
            raise PipelineError(f"{origin}: missing key {name}.{key}")
        value = raw[key]
        what, accepts = _KINDS[spec.metadata["kind"]]
        if not accepts(value):
            raise PipelineError(f"{origin}: {name}.{key}={short(repr(value))} must be {what}")
        check = spec.metadata["check"]
        problem = check(value) if check else None
        if problem:
            raise PipelineError(f"{origin}: {name}.{key}={short(repr(value))} {problem}")
        values[key] = tuple(value) if isinstance(value, list) else value
    section = cls(**values)
    cross = _CROSS_CHECKS.get(name)
    problem = cross(section) if cross else None
    if problem:
        raise PipelineError(f"{origin}: {name}.{problem[0]}{problem[1]}")
    return section


class Params:
    """The validated sections a stage asked for."""

    def __init__(self, values: dict):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Params is frozen")


MAX_DEPTH = 20    # nesting levels in params.yaml
MAX_DIGITS = 30   # digits of an integer in params.yaml


class _Refused(Exception):
    """params.yaml holds something refused before it expands or allocates."""

    def __init__(self, what: str, mark: Any):
        super().__init__(what)
        self.mark = mark


def _yaml() -> Any:
    """ruamel.yaml as DVC reads params (YAML 1.2, so ``1e-3`` is a float and ``yes`` a string),
    refusing aliases, deep nesting and huge integers before they expand or allocate."""
    from ruamel.yaml import YAML
    from ruamel.yaml.composer import Composer
    from ruamel.yaml.constructor import SafeConstructor
    from ruamel.yaml.events import AliasEvent

    class GuardedComposer(Composer):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.parser.peek_event()
            if isinstance(event, AliasEvent):
                raise _Refused("YAML aliases (*name) are not accepted", event.start_mark)
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    class GuardedConstructor(SafeConstructor):
        def construct_yaml_int(self, node: Any) -> Any:
            if len(node.value) > MAX_DIGITS:
                raise _Refused(f"an integer of {len(node.value)} digits (at most {MAX_DIGITS})",
                               node.start_mark)
            return super().construct_yaml_int(node)

    GuardedConstructor.add_constructor("tag:yaml.org,2002:int",
                                       GuardedConstructor.construct_yaml_int)
    yaml = YAML(typ="safe", pure=True)
    yaml.Composer = GuardedComposer
    yaml.Constructor = GuardedConstructor
    return yaml


def read_yaml(path: str) -> dict:
    """Read params.yaml as a mapping, with a one-line error for a missing or broken file."""
    from ruamel.yaml.error import YAMLError

    try:
        with open(path, encoding="utf-8") as handle:
            raw = _yaml().load(handle)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise PipelineError(f"{path}: not a UTF-8 YAML file") from None
    except IsADirectoryError:
        raise PipelineError(f"{path}: is a directory, not a YAML file") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read ({exc.strerror})") from None
    except _Refused as exc:
        raise PipelineError(f"{path}: {exc} (line {exc.mark.line + 1})") from None
    except (YAMLError, RecursionError, ValueError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise PipelineError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: must be a mapping of sections")
    return raw


def load(path: str, *names: str, kinds: dict | None = None) -> Params:
    """Load and validate ``seed`` and/or the named sections of params.yaml."""
    raw = read_yaml(path)
    values: dict[str, Any] = {}
    for name in names:
        if name not in raw:
            raise PipelineError(f"{path}: missing key {name}")
        if name == "seed":
            values["seed"] = check_seed(raw["seed"], origin=path)
        else:
            values[name] = build_section(name, raw[name], origin=path,
                                         kind=(kinds or {}).get(name))
    return Params(values)
