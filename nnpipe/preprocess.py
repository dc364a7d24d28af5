"""Imputer, scaler, one-hot and label encoders fit on the train split only, their state as JSON.

Three small steps, frozen dataclasses whose fields are their JSON state, are the same objects at
fit and at load: :class:`Imputer`, :class:`Scaler` (numeric inputs), one-hot :class:`Encoder`.
scikit-learn fits them; each transforms with the NumPy operations scikit-learn's transform makes
(the same bytes: tests/test_preprocess.py). The D features: the numeric inputs, then one 0/1
column per category (``island_Biscoe``)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from nnpipe.core import files
from nnpipe.core.errors import PipelineError, short
from nnpipe.dataset import HANDLE_UNKNOWN, IMPUTE, MISSING

Cell = Callable[[int, str], str]  # (row index, column) -> the cell, as an error names it


class TrainData(NamedTuple):
    """Standardized ``X: (N, D)``, encoded ``y: (N,)``; class weights (C,) training sets."""
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    class_weights: np.ndarray | None = None


def _texts(values: Any, what: str) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values) \
            or len(set(values)) != len(values) or not values:
        raise ValueError(f"{what} must be a list of unique strings")
    return tuple(values)


@dataclass(frozen=True)
class Imputer:
    """SimpleImputer's ``statistics_``: input -> fill value (none unless data.missing imputes)."""
    fill: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: Any, numeric: Sequence[str], categorical: Sequence[str], missing: str,
            source: str) -> Imputer:
        """Refuses a gap if ``missing`` imputes nothing, else a column with no value."""
        from sklearn.impute import SimpleImputer

        if missing not in IMPUTE:
            check_complete(frame, missing, lambda row, col: f"{source}: column '{col}' row {row + 2}")
            return cls({})
        empty = frame.columns[frame.isna().to_numpy().all(axis=0)]  # (inputs,)
        if len(empty):
            raise PipelineError(f"{source}: column '{empty[0]}' has no value in the train split; "
                                f"data.missing={missing} has nothing to impute it from")
        fill: dict[str, Any] = {}
        for columns, strategy in ((numeric, missing), (categorical, "most_frequent")):
            if columns:
                imputer = SimpleImputer(strategy=strategy).fit(frame[list(columns)])
                fill.update(zip(columns, imputer.statistics_.tolist()))
        return cls(fill)

    def transform(self, frame: Any) -> Any:
        return frame.fillna(self.fill) if self.fill else frame


@dataclass(frozen=True)
class Scaler:
    """StandardScaler's ``mean_``, ``scale_``, ``var_`` and ``n_samples_seen_``."""
    mean: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    var: tuple[float, ...] = ()
    n_samples_seen: int = 0

    def __post_init__(self) -> None:
        for name in ("mean", "scale", "var"):  # numbers (float() refuses None, a list, ...)
            if any(isinstance(v, (bool, str)) for v in getattr(self, name)):
                raise ValueError(f"{name} must be a list of numbers")
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if type(self.n_samples_seen) is not int or \
                not len(self.mean) == len(self.scale) == len(self.var):
            raise ValueError("n_samples_seen must be a number, mean/scale/var one per input")

    @classmethod
    def fit(cls, X: np.ndarray) -> Scaler:
        from sklearn.preprocessing import StandardScaler

        if X.shape[1] == 0:
            return cls(n_samples_seen=len(X))
        s = StandardScaler().fit(X)
        return cls(s.mean_.tolist(), s.scale_.tolist(), s.var_.tolist(), int(s.n_samples_seen_))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(X - mean) / scale`` in place, as StandardScaler.transform computes it, on
        ``X: (N, numeric)`` float64 of any layout (each number on its own: the same bytes)."""
        X -= np.asarray(self.mean)
        X /= np.asarray(self.scale)
        return X


@dataclass(frozen=True)
class Encoder:
    """OneHotEncoder's ``categories_`` (column -> sorted levels); ``ignore``: unknown = 0s."""
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    handle_unknown: str = "error"

    def __post_init__(self) -> None:
        if self.handle_unknown not in HANDLE_UNKNOWN:
            raise ValueError(f"handle_unknown {self.handle_unknown!r}")
        object.__setattr__(self, "categories", {name: _texts(levels, f"categories of {name!r}")
                                                for name, levels in self.categories.items()})

    @classmethod
    def fit(cls, frame: Any, handle_unknown: str) -> Encoder:
        from sklearn.preprocessing import OneHotEncoder

        if frame.shape[1] == 0:
            return cls({}, handle_unknown)
        one_hot = OneHotEncoder(handle_unknown=handle_unknown).fit(frame)
        return cls({name: tuple(map(str, levels))
                    for name, levels in zip(frame.columns, one_hot.categories_)}, handle_unknown)

    def check(self, frame: Any, cell: Cell) -> None:
        """Refuse (handle_unknown=error) a level the train split did not have."""
        for name, levels in self.categories.items() if self.handle_unknown == "error" else ():
            unknown = ~frame[name].isin(levels).to_numpy() & frame[name].notna().to_numpy()
            if unknown.any():
                row = int(np.flatnonzero(unknown)[0])
                raise PipelineError(
                    f"{cell(row, name)}: category {short(repr(frame[name].iloc[row]))} was not "
                    f"in the train split ({short(', '.join(levels), 120)}); "
                    "data.handle_unknown=error refuses it (ignore: all zeros)")

    def names(self) -> list[str]:
        return [f"{name}_{level}" for name, levels in self.categories.items() for level in levels]

    def transform(self, frame: Any) -> np.ndarray:
        """One 0/1 column per level ``(N, levels)``; a level not known (or a gap) is all 0."""
        blocks = [frame[name].to_numpy(dtype=object)[:, None] == np.asarray(levels, dtype=object)
                  for name, levels in self.categories.items()]
        return np.hstack(blocks, dtype=np.float64) if blocks else np.zeros((len(frame), 0))


@dataclass(frozen=True)
class Preprocessor:
    """The state (its fields are the JSON keys): the raw ``inputs`` and the D ``features`` they
    encode to, data.missing and the steps, C classes with their train counts, and the rows of
    the whole data set (all splits; ``hidden_dims: auto`` is 2 * rows + D)."""
    inputs: tuple[str, ...]
    features: tuple[str, ...]
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]
    rows: int
    missing: str = "error"
    imputer: Imputer = Imputer()
    scaler: Scaler = Scaler()
    encoder: Encoder = Encoder()

    def __post_init__(self) -> None:
        for name in ("inputs", "features", "classes"):
            object.__setattr__(self, name, _texts(getattr(self, name), name))
        if not all(type(v) is int for v in (self.rows, *self.class_counts)):
            raise ValueError("rows and class_counts must be whole numbers")
        object.__setattr__(self, "class_counts", tuple(self.class_counts))
        levels = self.encoder.categories
        if self.missing not in MISSING or not set(levels) <= set(self.inputs):
            raise ValueError("data.missing or the categorical columns do not fit the inputs")
        object.__setattr__(self, "encoder", Encoder(  # in inputs order, as the features
            {n: levels[n] for n in self.inputs if n in levels}, self.encoder.handle_unknown))
        fill = self.imputer.fill  # a text per categorical input, a finite number per other
        if bool(fill) != (self.missing in IMPUTE) or (fill and set(fill) != set(self.inputs)) \
                or not all(isinstance(v, str) if n in levels else not isinstance(v, (bool, str))
                           and math.isfinite(float(v)) for n, v in fill.items()):
            raise ValueError("the imputer's values do not fit data.missing and the inputs")
        if len(self.scaler.mean) != len(self.numeric) \
                or self.features != (*self.numeric, *self.encoder.names()) \
                or len(self.class_counts) != len(self.classes):
            raise ValueError("scaler, features and classes have inconsistent lengths")

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(self.encoder.categories)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(name for name in self.inputs if name not in self.encoder.categories)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps({**asdict(self), "imputer": dict(self.imputer.fill)}))

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], source: str = "preprocess state") -> Preprocessor:
        try:
            steps = {"imputer": Imputer(dict(state["imputer"])),
                     "scaler": Scaler(**state["scaler"]), "encoder": Encoder(**state["encoder"])}
            return cls(**{name: state[name] for name in cls.__dataclass_fields__
                          if name not in steps}, **steps)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PipelineError(f"{source}: malformed scaler/encoder state ({exc!r})") from None

    def table(self, X: Any) -> Any:
        """The raw inputs as the steps take them (see :func:`table`)."""
        return table(X, self.inputs, self.categorical)

    def transform(self, X: Any, cell: Cell | None = None) -> np.ndarray:
        """Model inputs ``(N, D)`` from raw inputs (see :func:`table`), each row on its own (the
        same bytes in a batch of any size). Refused first: a gap nothing imputes and
        (handle_unknown=error) a category the train split did not have, ``cell`` naming it."""
        frame, cell = self.table(X), cell or (lambda row, name: f"column '{name}' row {row + 2}")
        if not self.imputer.fill:
            check_complete(frame, self.missing, cell)
        self.encoder.check(frame, cell)
        frame = self.imputer.transform(frame)
        out = np.empty((len(frame), len(self.features)))  # (N, D): numeric, then one-hot
        for i, name in enumerate(self.numeric):
            out[:, i] = frame[name].to_numpy(np.float64)
        self.scaler.transform(out[:, :len(self.numeric)])
        out[:, len(self.numeric):] = self.encoder.transform(frame)
        return out

    def encode(self, labels: Sequence[str]) -> np.ndarray:
        """Class names -> ``(N,) int64`` indices."""
        names = np.asarray(labels, dtype=str)
        if not np.isin(names, self.classes).all():
            raise PipelineError(f"a label is not one of the classes ({', '.join(self.classes)})")
        return np.searchsorted(np.asarray(self.classes), names).astype(np.int64)


def table(X: Any, inputs: Sequence[str], categorical: Sequence[str]) -> Any:
    """``X`` (a DataFrame, a mapping of columns or an all-numeric ``(N, inputs)`` array) as a
    DataFrame of the ``inputs``: numeric ones float64, ``categorical`` ones str, NaN if missing."""
    import pandas as pd

    if isinstance(X, np.ndarray):
        X = pd.DataFrame(np.asarray(X, dtype=np.float64), columns=list(inputs))
    X = pd.DataFrame(X).reset_index(drop=True)
    return pd.DataFrame({name: as_text(X[name]) if name in categorical else
                         X[name].astype(np.float64) for name in inputs}, index=range(len(X)),
                        copy=False)  # columns as they are: no copy into one block


def check_complete(frame: Any, missing: str, cell: Cell) -> None:
    """Refuse the first missing cell of ``frame`` (data.missing=``missing`` imputes nothing)."""
    absent = frame.isna().to_numpy()  # (N, inputs)
    if absent.any():
        row, col = (int(i[0]) for i in np.nonzero(absent))
        raise PipelineError(f"{cell(row, frame.columns[col])} is missing; "
                            "a missing value needs a model trained with data.missing=mean, median "
                            f"or most_frequent (this one: data.missing={missing})")


def as_text(values: Any) -> Any:
    """A column as categories: str cells (``True``, ``2007``), NaN where missing (object)."""
    return values.astype(object).where(values.isna(), values.astype(str))


def fit(train: Any, labels: Sequence[str] | np.ndarray, inputs: Sequence[str], rows: int,
        categorical: Sequence[str] = (), missing: str = "error", handle_unknown: str = "error",
        classes: Sequence[str] | None = None, source: str = "train split") -> Preprocessor:
    """Fit the steps on the train split only (``train``: see :func:`table`) and its class names
    ``labels: (N,)`` (sorted ``classes``, default those it holds; or, with ``classes``, integer
    codes into them), of ``rows`` rows in all."""
    categorical = [name for name in inputs if name in categorical]
    numeric = [name for name in inputs if name not in categorical]
    frame = table(train, inputs, categorical)
    imputer = Imputer.fit(frame, numeric, categorical, missing, source)
    frame = imputer.transform(frame)
    encoder = Encoder.fit(frame[categorical], handle_unknown)
    features = (*numeric, *encoder.names())
    if len(set(features)) != len(features):
        clash = sorted({name for name in features if features.count(name) > 1})
        raise PipelineError(f"{source}: encoded feature names clash ({short(', '.join(clash))})")
    codes = np.asarray(labels)
    if classes is None or codes.dtype.kind not in "iu":  # class names
        classes = tuple(np.unique(codes.astype(str)).tolist() if classes is None else classes)
        codes = np.searchsorted(np.asarray(classes), codes.astype(str))
    counts = np.bincount(codes, minlength=len(classes))
    numbers = frame[numeric].to_numpy(np.float64)  # (N, numeric); the scaler's sums follow the
    if isinstance(train, np.ndarray):  # layout: column-major as pandas has it, an array's own
        numbers = np.ascontiguousarray(numbers)
    return Preprocessor(tuple(inputs), features, classes, tuple(counts.tolist()), int(rows),
                        missing, imputer, Scaler.fit(numbers), encoder)


def load(path: str) -> Preprocessor:
    return Preprocessor.from_dict(files.read_json(path), source=path)


def save(path: str, state: Preprocessor) -> None:
    files.write_json(path, state.to_dict())

