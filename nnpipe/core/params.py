"""Load params.yaml and validate it with pydantic: one frozen model per section.

Every section is a pydantic model (``extra="forbid"``, constrained fields, no defaults:
params.yaml holds every value). A validation error becomes one line naming the key and its
value, e.g. ``params.yaml: split.val_size=1.2 must be in (0, 1)``. ``load(path, "split",
...)`` validates only the sections a stage reads, so a typo in one stage's section never
stops another. A model's section (``train_<model>``) is data: its ``backend`` names the
schema it is validated as, so ``train_wide_mlp`` can be a second torch MLP.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Mapping, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr,
                      ValidationError, field_validator, model_validator)

from nnpipe.core.errors import PipelineError, short
from nnpipe.core.yamlfile import read_yaml

# Upper bounds: refused with one line before anything is allocated.
MAX_WIDTH = 100_000          # hidden units per layer
MAX_LAYERS = 20              # hidden layers
MAX_WEIGHTS = 50_000_000     # hidden-to-hidden weights, sum of h[i] * h[i+1]
MAX_EPOCHS = 1_000_000
MAX_ROWS = 30_000_000        # synthetic spiral rows (samples_per_class * classes)
MAX_CELLS = 50_000_000       # overfit_random's random data (N * C * D values)
MAX_NAMES = 10_000           # features, classes
MAX_SCALE = 1e6              # lr, init_scale, noise: far past any use, far from overflow
MAX_TIMEOUT = 86_400         # seconds (a day): a socket timeout beyond ~1e9 overflows
MAX_MB = 1 << 20             # fetch.max_mb; at least MIN_MB, one byte
MIN_MB = 2.0 ** -20

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # no bools, strings, nan
Text = Annotated[StrictStr, Field(min_length=1)]
Width = Annotated[StrictInt, Field(gt=0, le=MAX_WIDTH)]
WIDTHS = (f"a list of 1 to {MAX_LAYERS} widths, each > 0 and at most {MAX_WIDTH}")


def param(what: str, **constraints: Any) -> Any:
    """A required field: ``what`` it must be (for type errors), pydantic ``constraints``, and
    per-error-type message overrides (``message_greater_than=...``)."""
    messages = {k[len("message_"):]: constraints.pop(k) for k in list(constraints)
                if k.startswith("message_")}
    return Field(..., json_schema_extra={"what": what, **messages}, **constraints)


def _unique(names: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(names)) != len(names):
        raise ValueError("must not repeat a name")
    return names


def _weights_check(widths: tuple[int, ...]) -> None:
    weights = sum(a * b for a, b in zip(widths, widths[1:]))
    if weights > MAX_WEIGHTS:
        raise ValueError(f"hidden_dims={list(widths)} has {weights} hidden-to-hidden weights, "
                         f"at most {MAX_WEIGHTS}")


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class MathParams(Section):
    portable: StrictBool = param("true or false")  # pinned kernels: same bytes on any x86-64


class FetchParams(Section):
    source: Text = param("a string")  # a CSV path or an http(s) URL: fetch's dependency
    sha256: Optional[Annotated[StrictStr, Field(pattern=r"^[0-9a-fA-F]{64}$")]] = param(
        "null or a 64-digit hex sha256", message_string_pattern_mismatch="must be null or a "
        "64-digit hex sha256")
    timeout: Number = param("a finite number", gt=0, le=MAX_TIMEOUT,
                            message_less_than_equal=f"must be at most {MAX_TIMEOUT} (a day)")
    max_mb: Number = param("a finite number", ge=MIN_MB, le=MAX_MB,  # largest CSV read
                           message_greater_than_equal="must be at least 2**-20 (one byte)")


class SpiralParams(Section):
    samples_per_class: StrictInt = param("an integer", gt=0, le=MAX_ROWS)
    classes: tuple[Text, ...] = param("a list of strings", min_length=1, max_length=MAX_NAMES,
                                      message_too_long=f"must name at most {MAX_NAMES}")
    noise: Number = param("a finite number", ge=0, le=MAX_SCALE)

    _classes = field_validator("classes")(_unique)

    @model_validator(mode="after")
    def _rows(self) -> "SpiralParams":
        rows = self.samples_per_class * len(self.classes)
        if rows > MAX_ROWS:
            raise ValueError(f"samples_per_class * len(classes)={rows} must be at most {MAX_ROWS}")
        return self


MISSING = ("error", "drop", "mean", "median", "most_frequent")
MISSING_LABEL = ("error", "drop")
HANDLE_UNKNOWN = ("error", "ignore")


class DataParams(Section):
    """The data set's columns and how its cells are read.

    ``categorical``: feature columns one-hot encoded even if they hold numbers (a column of
    text always is); ``missing``: what an empty, NA or NaN feature cell does: ``error``
    refuses it (fetch), ``drop`` removes its row (fetch), ``mean``, ``median`` or
    ``most_frequent`` impute it (SimpleImputer fit on the train split; a categorical column
    takes its most frequent category); ``missing_label``: a row with no label is refused
    (``error``) or dropped (``drop``) by fetch; ``handle_unknown``: a category the train split never
    had is refused (``error``) or encoded as all zeros (``ignore``), in the val/test splits
    and at predict time.
    """
    features: tuple[Text, ...] = param("a list of strings", min_length=1, max_length=MAX_NAMES,
                                       message_too_long=f"must name at most {MAX_NAMES}")
    target: Text = param("a string")
    categorical: tuple[Text, ...] = param("a list of strings", max_length=MAX_NAMES,
                                          message_too_long=f"must name at most {MAX_NAMES}")
    missing: Literal["error", "drop", "mean", "median", "most_frequent"] = param(
        f"one of {', '.join(MISSING)}")
    missing_label: Literal["error", "drop"] = param(f"one of {', '.join(MISSING_LABEL)}")
    handle_unknown: Literal["error", "ignore"] = param(f"one of {', '.join(HANDLE_UNKNOWN)}")

    _features = field_validator("features", "categorical")(_unique)

    @model_validator(mode="after")
    def _categorical_are_features(self) -> "DataParams":
        stray = [name for name in self.categorical if name not in self.features]
        if stray:
            raise ValueError(f"categorical={list(self.categorical)} names "
                             f"{short(repr(stray[0]))}, which is not in data.features")
        return self


class SplitParams(Section):
    train_size: Number = param("a finite number", gt=0, lt=1, message_greater_than="must be in "
                               "(0, 1)", message_less_than="must be in (0, 1)")
    val_size: Number = param("a finite number", gt=0, lt=1, message_greater_than="must be in "
                             "(0, 1)", message_less_than="must be in (0, 1)")
    test_size: Number = param("a finite number", gt=0, lt=1, message_greater_than="must be in "
                              "(0, 1)", message_less_than="must be in (0, 1)")

    @model_validator(mode="after")
    def _sum(self) -> "SplitParams":
        total = self.train_size + self.val_size + self.test_size
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train_size + val_size + test_size={total:g} must sum to 1")
        return self


BATCH = {"message_greater_than": "must be null or > 0"}
UNIT = {"message_greater_than_equal": "must be in [0, 1)", "message_less_than": "must be in [0, 1)"}
BACKENDS = ("numpy", "torch", "sklearn")
ACTIVATIONS = ("identity", "relu")
CLASS_WEIGHTS = ("balanced", "none")  # the loss's weight per class: 1/count, or none
KEEPS = ("best_val", "last")  # which epoch's weights a model keeps
MODEL_PREFIX = "train_"  # a model's section: train_<model>


class ModelParams(Section):
    """A model of the registry (section ``train_<model>``): its family and shape are data.

    ``backend`` picks the code that trains it (the NumPy MLP written by hand, or torch),
    ``activation`` the function between affine layers (``identity``: the lesson's linear
    model; ``relu``: its MLP), ``hidden_dims`` the width of each hidden layer, or ``auto``
    for one layer of 2*N*C + D units (N*C: the data set's rows, D: its features; the
    lesson's rule for a model that memorizes its data). ``class_weight``: ``balanced`` weights
    each class's loss by 1/count, as the lesson does (every class counts as much, whatever its
    rows); ``none`` weights every row alike. ``keep``: the weights of the epoch with the lowest
    validation loss (``best_val``) or of the last (``last``); ``patience``: stop after that many
    epochs without a lower validation loss (null: run every epoch).
    """
    backend: Literal["numpy", "torch"] = param(f"one of {', '.join(BACKENDS)}")
    activation: Literal["identity", "relu"] = param("one of identity, relu")
    hidden_dims: Union[Literal["auto"], tuple[Width, ...]] = param(
        "'auto' or a list of integers", min_length=1, max_length=MAX_LAYERS,
        message_constraint=f"'auto' or {WIDTHS}")
    lr: Number = param("a finite number", gt=0, le=MAX_SCALE)
    epochs: StrictInt = param("an integer", gt=0, le=MAX_EPOCHS)
    batch_size: Optional[StrictInt] = param("null or an integer", gt=0, **BATCH)
    log_every: StrictInt = param("an integer", gt=0)
    class_weight: Literal["balanced", "none"] = param(f"one of {', '.join(CLASS_WEIGHTS)}")
    keep: Literal["best_val", "last"] = param(f"one of {', '.join(KEEPS)}")
    patience: Optional[StrictInt] = param("null or an integer", gt=0, le=MAX_EPOCHS,
                                          message_greater_than="must be null or > 0")

    @model_validator(mode="after")
    def _weights(self) -> "ModelParams":
        if self.hidden_dims != "auto":
            _weights_check(self.hidden_dims)
        return self

    def widths(self, rows: int, features: int, section: str = "") -> tuple[int, ...]:
        """The hidden widths for a data set of ``rows`` rows and ``features`` input features:
        ``auto`` resolved to 2*rows + features (one layer), at most MAX_WIDTH."""
        if self.hidden_dims != "auto":
            return self.hidden_dims
        width = 2 * rows + features
        if width > MAX_WIDTH:
            key = f"{section}.hidden_dims" if section else "hidden_dims"
            raise PipelineError(f"{key}=auto gives 2*{rows}+{features}={width} hidden units "
                                f"for a data set of {rows} rows, at most {MAX_WIDTH}: give a "
                                "list of widths")
        return (width,)


class NumpyModelParams(ModelParams):
    """``backend: numpy``: the lesson's init (``init_scale * randn``) and gradient descent."""
    backend: Literal["numpy"] = param(f"one of {', '.join(BACKENDS)}")
    init_scale: Number = param("a finite number", gt=0, le=MAX_SCALE)  # weights = init_scale * randn


class TorchModelParams(ModelParams):
    """``backend: torch``: dropout after each hidden activation, an init, torch.optim.Adam."""
    backend: Literal["torch"] = param(f"one of {', '.join(BACKENDS)}")
    dropout_p: Number = param("a finite number", ge=0, lt=1, **UNIT)
    init: Literal["default", "xavier_normal"] = param("one of default, xavier_normal")


class SklearnModelParams(Section):
    """``backend: sklearn``: scikit-learn's LogisticRegression (lbfgs), the reference model.

    It reads ``epochs`` (lbfgs's ``max_iter``) and ``class_weight``. The other keys of a model
    section (the architecture, the optimizer, keep and patience) do not apply to it and are
    ignored, so ``-S train_linear.backend=sklearn`` switches a section in one step; any other
    key is refused as in every section.
    """
    backend: Literal["sklearn"] = param(f"one of {', '.join(BACKENDS)}")
    epochs: StrictInt = param("an integer", gt=0, le=MAX_EPOCHS)  # lbfgs's max_iter
    class_weight: Literal["balanced", "none"] = param(f"one of {', '.join(CLASS_WEIGHTS)}")
    activation: ClassVar[str] = "identity"  # softmax(X @ W1 + b1): no hidden layer

    @model_validator(mode="before")
    @classmethod
    def _ignore_other_backends_keys(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        return {k: v for k, v in raw.items() if k in cls.model_fields or k not in IGNORED}

    def widths(self, rows: int, features: int, section: str = "") -> tuple[int, ...]:
        return ()


# The keys of the other backends a sklearn section ignores.
IGNORED = frozenset(NumpyModelParams.model_fields) | frozenset(TorchModelParams.model_fields)
MODEL_SECTIONS: dict[str, type[Section]] = {"numpy": NumpyModelParams,
                                            "torch": TorchModelParams,
                                            "sklearn": SklearnModelParams}


class RandomDataParams(Section):
    """random_data: the lesson's uniform random data for overfit_random (N, C, D)."""
    samples_per_class: StrictInt = param("an integer", gt=0, le=MAX_CELLS)
    num_classes: StrictInt = param("an integer", gt=0, le=MAX_NAMES)
    num_features: StrictInt = param("an integer", gt=0, le=MAX_NAMES)

    @model_validator(mode="after")
    def _sizes(self) -> "RandomDataParams":
        cells = self.samples_per_class * self.num_classes * self.num_features
        if cells > MAX_CELLS:
            raise ValueError(f"samples_per_class * num_classes * num_features={cells} "
                             f"must be at most {MAX_CELLS}")
        return self


class PlotParams(Section):
    max_points: StrictInt = param("an integer", gt=0, le=10_000_000)
    grid_size: StrictInt = param("an integer", gt=0, le=2001)


SECTIONS: dict[str, type[Section]] = {
    "math": MathParams, "spiral": SpiralParams, "fetch": FetchParams, "data": DataParams,
    "split": SplitParams,
    "random_data": RandomDataParams, "plot": PlotParams,
}

# pydantic error types that say "not of the accepted type": reported as "must be <what>".
_TYPE_ERRORS = {"int_type", "float_type", "string_type", "bool_type", "tuple_type",
                "finite_number", "literal_error", "string_too_short", "int_from_float",
                "dict_type", "model_type"}
_BOUNDS = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}",
           "less_than_equal": "at most {le}"}


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _problem(cls: type[Section], error: dict) -> str:
    """The words after ``key=value`` for one pydantic error of field ``error["loc"][0]``."""
    extra = cls.model_fields[error["loc"][0]].json_schema_extra or {}
    kind, nested = error["type"], len(error["loc"]) > 1
    if kind in _TYPE_ERRORS:
        return f"must be {extra['what']}"
    if kind in extra:
        return extra[kind]
    if nested and "constraint" in extra:
        return f"must be {extra['constraint']}"
    if kind in _BOUNDS:
        ctx = {k: _number(v) for k, v in error["ctx"].items()}
        return "must be " + _BOUNDS[kind].format(**ctx)
    if kind == "too_short":
        return "must not be empty"
    if kind == "too_long":
        return f"must hold at most {error['ctx']['max_length']}"
    return str(error.get("ctx", {}).get("error", error["msg"]))


def _pick(cls: type[Section], errors: list[dict]) -> dict:
    """One error to report: an unknown key, else a missing one, else the first field's, its
    type error before its range error (a union's other branches and a list's length follow
    from its items, so they go last)."""
    order = list(cls.model_fields)

    def rank(error: dict) -> tuple:
        loc, kind = error["loc"], error["type"]
        field = order.index(loc[0]) if loc and loc[0] in order else len(order)
        derived = kind == "literal_error" and len(loc) > 1 or kind == "too_short" and \
            any(e["loc"][:1] == loc[:1] and len(e["loc"]) > 1 for e in errors)
        return ({"extra_forbidden": 0, "missing": 1}.get(kind, 2), field, derived,
                kind not in _TYPE_ERRORS)
    return min(errors, key=rank)


def section_class(name: str, raw: Any, origin: str = "params.yaml") -> type[Section]:
    """The model a section is validated as: a fixed section's own, or for a model's section
    (``train_<model>``) the one of its ``backend``."""
    if not name.startswith(MODEL_PREFIX):
        return SECTIONS[name]
    backend = raw.get("backend") if isinstance(raw, dict) else None
    if isinstance(raw, dict) and "backend" not in raw:
        raise PipelineError(f"{origin}: missing key {name}.backend (one of {', '.join(BACKENDS)})")
    if isinstance(raw, dict) and (not isinstance(backend, str) or backend not in MODEL_SECTIONS):
        raise PipelineError(f"{origin}: {name}.backend={short(repr(backend))} must be one of "
                            f"{', '.join(BACKENDS)}")
    return MODEL_SECTIONS.get(backend, ModelParams)


def build_section(name: str, raw: Any, origin: str = "params.yaml") -> Section:
    """Validate one section's mapping into its frozen model."""
    cls = section_class(name, raw, origin)
    if not isinstance(raw, dict):
        raise PipelineError(f"{origin}: section '{name}' must be a mapping, got {short(repr(raw))}")
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        error = _pick(cls, exc.errors())
    loc, kind = error["loc"], error["type"]
    if kind == "extra_forbidden":
        raise PipelineError(f"{origin}: unknown key {name}.{short(str(loc[0]))} "
                            f"(known: {', '.join(cls.model_fields)})") from None
    if kind == "missing":
        raise PipelineError(f"{origin}: missing key {name}.{loc[0]}") from None
    if not loc:  # a model validator: a rule across keys
        raise PipelineError(f"{origin}: {name}.{error['ctx']['error']}") from None
    value = short(repr(raw[loc[0]]))
    raise PipelineError(f"{origin}: {name}.{loc[0]}={value} {_problem(cls, error)}") from None


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


def load(path: str, *names: str) -> Params:
    """Load and validate ``seed`` and/or the named sections of params.yaml.

    A model's section (``train_<model>``) is validated as its ``backend`` says. A name that
    is neither ``seed``, a fixed section nor a model's section is a bug.
    """
    for name in names:
        if name != "seed" and name not in SECTIONS and not name.startswith(MODEL_PREFIX):
            raise KeyError(f"no schema for params section {name!r}")
    raw = read_yaml(path)
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
        if name != "seed" and name not in SECTIONS and not str(name).startswith(MODEL_PREFIX):
            known = ", ".join(["seed", *SECTIONS, f"{MODEL_PREFIX}<model>"])
            raise PipelineError(f"{path}: unknown section {short(str(name))} (known: {known})")
    return load(path, *raw)
