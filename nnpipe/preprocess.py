"""Imputer, scaler, one-hot and label encoders fit on the train split only, their learned state
as JSON; the processed splits a model trains on.

scikit-learn does the work: a ColumnTransformer over the raw feature columns, numeric ones
through ``[SimpleImputer ->] StandardScaler``, categorical ones through
``[SimpleImputer(most_frequent) ->] OneHotEncoder`` (the imputers only when ``data.missing``
imputes), and a LabelEncoder for the target. Their learned attributes (``statistics_``,
``mean_``, ``scale_``, ``var_``, ``categories_``, ``classes_``) are kept as plain JSON and the
objects are rebuilt from it, never pickled: the fitted pieces, frozen
(``sklearn.frozen.FrozenEstimator``), in a ColumnTransformer laid out as at fit time. The
model's D inputs are the numeric columns, then one 0/1 column per category
(``island_Biscoe``: scikit-learn's ``get_feature_names_out``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

from nnpipe.core.errors import PipelineError, short
from nnpipe.dataset import HANDLE_UNKNOWN, IMPUTE, MISSING

Cell = Callable[[int, str], str]  # (row index, column) -> the cell, as an error names it


class TrainData(NamedTuple):
    """Standardized ``X: (N, D)`` and encoded ``y: (N,)`` of train and val, and class weights (C,)."""
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    class_weights: np.ndarray | None = None


@dataclass(frozen=True)
class Preprocessor:
    """Learned state: the D model ``features`` the raw ``inputs`` (data.features order) encode
    to; the scaler's mean/scale/var over the numeric inputs; each categorical input's levels;
    the imputer's ``fill`` value per input (none unless ``missing`` imputes); C class names,
    class weights 1/count, and the rows of the whole data set (all splits; ``hidden_dims:
    auto`` is 2 * rows + D)."""
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    var: tuple[float, ...]
    n_samples_seen: int
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]
    rows: int
    inputs: tuple[str, ...] = ()  # () = the features (all numeric)
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (column, levels) pairs
    missing: str = "error"
    fill: tuple[Any, ...] = ()  # one per input
    handle_unknown: str = "error"

    def __post_init__(self) -> None:
        if not self.inputs:
            object.__setattr__(self, "inputs", tuple(self.features))

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.categories)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(name for name in self.inputs if name not in self.categorical)

    @property
    def class_weights(self) -> np.ndarray:
        """(C,) weight 1/count per class, as in the lesson."""
        return 1.0 / np.asarray(self.class_counts, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": list(self.inputs), "missing": self.missing,
            "imputer": dict(zip(self.inputs, self.fill)),
            "scaler": {"mean": list(self.mean), "scale": list(self.scale),
                       "var": list(self.var), "n_samples_seen": self.n_samples_seen},
            "encoder": {"categories": {name: list(levels) for name, levels in self.categories},
                        "handle_unknown": self.handle_unknown},
            "features": list(self.features), "classes": list(self.classes),
            "class_counts": list(self.class_counts),
            "class_weights": self.class_weights.tolist(), "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], source: str = "preprocess state") -> "Preprocessor":
        try:
            result = _from_dict(cls, state)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PipelineError(f"{source}: malformed scaler/encoder state ({exc!r})") from None
        n = result.numeric
        width = len(n) + sum(len(levels) for _, levels in result.categories)
        if not (len(result.mean) == len(result.scale) == len(result.var) == len(n)) \
                or len(result.features) != width or len(set(result.inputs)) != len(result.inputs) \
                or len(result.class_counts) != len(result.classes) or not result.classes:
            raise PipelineError(f"{source}: scaler/encoder state has inconsistent lengths")
        return result

    def scaler(self) -> Any:
        """A fitted StandardScaler rebuilt from this state (over the numeric inputs)."""
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler()
        scaler.mean_ = np.asarray(self.mean)
        scaler.scale_ = np.asarray(self.scale)
        scaler.var_ = np.asarray(self.var)
        scaler.n_features_in_ = len(self.mean)
        scaler.n_samples_seen_ = self.n_samples_seen
        return scaler

    def encoder(self) -> Any:
        """A fitted LabelEncoder rebuilt from this state."""
        from sklearn.preprocessing import LabelEncoder

        encoder = LabelEncoder()
        encoder.classes_ = np.asarray(self.classes)
        return encoder

    def column_transformer(self) -> Any:
        """The fitted ColumnTransformer rebuilt from this state: its pieces frozen, so laying
        it out on one example row refits nothing."""
        from sklearn.compose import ColumnTransformer
        from sklearn.frozen import FrozenEstimator
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder

        levels = dict(self.categories)
        fill = dict(zip(self.inputs, self.fill)) or \
            {name: levels[name][0] if name in levels else 0.0 for name in self.inputs}
        example = self.table({name: [value] for name, value in fill.items()})  # one row
        parts = []
        for group, columns in (("numeric", self.numeric), ("categorical", self.categorical)):
            if not columns:
                continue
            given = example[list(columns)]
            # an imputer fit on one row of its fill values has them as statistics_
            steps = [SimpleImputer(strategy="most_frequent" if group == "categorical" else
                                   self.missing).fit(given)] if self.fill else []
            if group == "numeric":
                last = self.scaler()
                if not steps:  # at fit time it saw the DataFrame's columns
                    last.feature_names_in_ = np.asarray(columns, dtype=object)
            else:
                last = OneHotEncoder(categories=[np.asarray(levels[c], dtype=object)
                                                 for c in columns],
                                     handle_unknown=self.handle_unknown, sparse_output=False,
                                     dtype=np.float64).fit(given.to_numpy() if steps else given)
            parts.append((group, FrozenEstimator(make_pipeline(*steps, last)), list(columns)))
        return ColumnTransformer(parts, sparse_threshold=0.0,
                                 verbose_feature_names_out=False).fit(example)

    def table(self, X: Any) -> Any:
        """The raw inputs as the ColumnTransformer takes them (see :func:`table`)."""
        return table(X, self.inputs, self.categorical)

    def check(self, frame: Any, cell: Cell) -> None:
        """Refuse a missing cell if nothing imputes it, and (handle_unknown=error) a category
        the train split did not have; ``cell(row, column)`` names it."""
        if not self.fill:
            check_complete(frame, self.missing, cell)
        for name, levels in self.categories if self.handle_unknown == "error" else ():
            unknown = ~frame[name].isin(levels).to_numpy() & frame[name].notna().to_numpy()
            if unknown.any():
                row = int(np.flatnonzero(unknown)[0])
                raise PipelineError(
                    f"{cell(row, name)}: category {short(repr(frame[name].iloc[row]))} was not "
                    f"in the train split ({short(', '.join(levels), 120)}); "
                    "data.handle_unknown=error refuses it (ignore: all zeros)")

    def transform(self, X: Any, cell: Cell | None = None) -> np.ndarray:
        """Model inputs ``(N, D)`` from raw inputs (see :func:`table`), checked first."""
        frame = self.table(X)
        self.check(frame, cell or (lambda row, name: f"column '{name}' row {row + 2}"))
        return np.asarray(self.column_transformer().transform(frame), dtype=np.float64)

    def encode(self, labels: Sequence[str]) -> np.ndarray:
        """Class names -> ``(N,) int64`` indices."""
        return self.encoder().transform(np.asarray(labels, dtype=str)).astype(np.int64)

    def decode(self, indices: np.ndarray) -> np.ndarray:
        return self.encoder().inverse_transform(np.asarray(indices, dtype=np.int64))


def _from_dict(cls: type, state: Mapping[str, Any]) -> Preprocessor:
    scaler, encoder, fill = state["scaler"], state["encoder"], state["imputer"]
    inputs = tuple(str(f) for f in state["inputs"])
    levels = {str(k): tuple(v) for k, v in encoder["categories"].items()}
    missing, handle_unknown = state["missing"], encoder["handle_unknown"]
    if missing not in MISSING or handle_unknown not in HANDLE_UNKNOWN \
            or bool(fill) != (missing in IMPUTE) or (fill and set(fill) != set(inputs)) \
            or not set(levels) <= set(inputs):
        raise ValueError("missing/imputer/handle_unknown/categories do not fit the inputs")
    for name, values in levels.items():
        if not values or not all(isinstance(v, str) for v in values) \
                or len(set(values)) != len(values):
            raise ValueError(f"categories of {name!r} must be unique strings")
    for name, value in fill.items():
        if not isinstance(value, str) if name in levels else \
                (isinstance(value, (bool, str)) or not math.isfinite(float(value))):
            raise ValueError(f"imputer value {value!r} of {name!r}")
    return cls(features=tuple(str(f) for f in state["features"]),
               mean=tuple(float(v) for v in scaler["mean"]),
               scale=tuple(float(v) for v in scaler["scale"]),
               var=tuple(float(v) for v in scaler["var"]),
               n_samples_seen=int(scaler["n_samples_seen"]),
               classes=tuple(str(c) for c in state["classes"]),
               class_counts=tuple(int(c) for c in state["class_counts"]),
               rows=int(state["rows"]), inputs=inputs,
               categories=tuple((name, levels[name]) for name in inputs if name in levels),
               missing=missing, fill=tuple(fill[name] for name in inputs) if fill else (),
               handle_unknown=handle_unknown)


def table(X: Any, inputs: Sequence[str], categorical: Sequence[str]) -> Any:
    """Raw inputs as a DataFrame of the ``inputs`` columns, numeric ones float64, the
    ``categorical`` ones str, NaN where missing. ``X``: a DataFrame or a mapping of columns,
    or for all-numeric inputs an ``(N, inputs)`` array."""
    import pandas as pd

    if isinstance(X, np.ndarray):
        X = pd.DataFrame(np.asarray(X, dtype=np.float64), columns=list(inputs))
    X = pd.DataFrame(X)
    out = pd.DataFrame(index=range(len(X)))
    for name in inputs:
        values = X[name].reset_index(drop=True)
        out[name] = as_text(values) if name in categorical else values.astype(np.float64)
    return out


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


def _label_state(labels_train: Sequence[str]) -> dict[str, tuple]:
    from sklearn.preprocessing import LabelEncoder

    labels = np.asarray(labels_train, dtype=str)
    encoder = LabelEncoder().fit(labels)
    counts = np.bincount(encoder.transform(labels), minlength=len(encoder.classes_))
    return {"classes": tuple(str(c) for c in encoder.classes_),
            "class_counts": tuple(int(c) for c in counts)}


def _scaler_state(scaler: Any, rows: int) -> dict[str, Any]:
    """The StandardScaler's learned state (none: no numeric input, ``rows`` seen)."""
    if scaler is None:
        return {"mean": (), "scale": (), "var": (), "n_samples_seen": rows}
    return {"mean": tuple(scaler.mean_.tolist()), "scale": tuple(scaler.scale_.tolist()),
            "var": tuple(scaler.var_.tolist()), "n_samples_seen": int(scaler.n_samples_seen_)}


def fit(X_train: np.ndarray, labels_train: Sequence[str], features: Sequence[str],
        rows: int) -> Preprocessor:
    """Fit StandardScaler and LabelEncoder on an all-numeric train split only (of a data set
    of ``rows`` rows in all): no missing values, no categories."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.asarray(X_train, dtype=np.float64))
    return Preprocessor(features=tuple(features), rows=int(rows), **_scaler_state(scaler, 0),
                        **_label_state(labels_train))


def _fit_transformer(frame: Any, categorical: Sequence[str], missing: str,
                     handle_unknown: str) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    impute = missing in IMPUTE
    numeric = [name for name in frame.columns if name not in categorical]
    one_hot = OneHotEncoder(handle_unknown=handle_unknown, sparse_output=False, dtype=np.float64)
    parts = [("numeric", make_pipeline(*[SimpleImputer(strategy=missing)] * impute,
                                       StandardScaler()), numeric),
             ("categorical", make_pipeline(*[SimpleImputer(strategy="most_frequent")] * impute,
                                           one_hot), list(categorical))]
    return ColumnTransformer([part for part in parts if part[2]], sparse_threshold=0.0,
                             verbose_feature_names_out=False).fit(frame)


def fit_frame(train: Any, features: Sequence[str], categorical: Sequence[str],
              y_train: np.ndarray, classes: Sequence[str], missing: str, handle_unknown: str,
              rows: int, source: str = "train split") -> Preprocessor:
    """Fit the ColumnTransformer on the train split only (``train``: a DataFrame holding the
    ``features`` columns, the ``categorical`` ones one-hot encoded; ``y_train: (N,)`` its
    labels as indices into the sorted ``classes``, all of which it holds)."""
    frame = table(train, features, categorical)
    empty = frame.isna().to_numpy().all(axis=0)  # (inputs,)
    if missing in IMPUTE and empty.any():
        raise PipelineError(f"{source}: column '{frame.columns[int(np.flatnonzero(empty)[0])]}' "
                            f"has no value in the train split; data.missing={missing} has "
                            "nothing to impute it from")
    if missing not in IMPUTE:
        check_complete(frame, missing, lambda row, name: f"{source}: column '{name}' row {row + 2}")
    transformer = _fit_transformer(frame, categorical, missing, handle_unknown)
    try:
        names = tuple(str(n) for n in transformer.get_feature_names_out())
    except ValueError as exc:
        raise PipelineError(f"{source}: encoded feature names clash ({short(str(exc))})") from None
    fitted = {name: pipeline for name, pipeline in transformer.named_transformers_.items()
              if name != "remainder"}
    fill = {}
    for group, pipeline in fitted.items() if missing in IMPUTE else ():
        columns = [n for n in features if (n in categorical) == (group == "categorical")]
        fill.update(zip(columns, pipeline[0].statistics_.tolist()))
    levels = fitted["categorical"][-1].categories_ if categorical else ()
    return Preprocessor(
        features=names, rows=int(rows), inputs=tuple(features),
        **_scaler_state(fitted["numeric"][-1] if "numeric" in fitted else None, len(frame)),
        classes=tuple(classes), missing=missing, handle_unknown=handle_unknown,
        class_counts=tuple(np.bincount(y_train, minlength=len(classes)).tolist()),
        categories=tuple((name, tuple(map(str, values)))
                         for name, values in zip(categorical, levels)),
        fill=tuple(fill[name] for name in features) if fill else ())


def load(path: str) -> Preprocessor:
    """Read the state JSON written by scale_encode."""
    from nnpipe.core import files

    return Preprocessor.from_dict(files.read_json(path), source=path)


def save(path: str, state: Preprocessor) -> None:
    from nnpipe.core import files

    files.write_json(path, state.to_dict())


def load_train_data(train_path: str, val_path: str, state: Preprocessor) -> TrainData:
    """The processed train and val splits, checked against the state's D features."""
    from nnpipe.core import files

    X_train, y_train = files.read_xy(train_path)
    X_val, y_val = files.read_xy(val_path)
    for path, X in ((train_path, X_train), (val_path, X_val)):
        if X.shape[1] != len(state.features):
            raise PipelineError(f"{path}: has {X.shape[1]} features, the scaler state "
                                f"has {len(state.features)}; re-run the data stages")
    return TrainData(X_train, y_train, X_val, y_val, state.class_weights)
