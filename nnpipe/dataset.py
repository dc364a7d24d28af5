"""What a data set is: the policies for its cells (written here once, read by fetch's row
policies in nnpipe.data, nnpipe.preprocess and the schema) and the params sections that
describe it: ``spiral`` and ``random_data`` (the lesson's generated data, nnpipe.data and
nnpipe.overfit), ``data`` (a CSV's columns), ``split`` (nnpipe.split) and ``plot``
(nnpipe.plots: how much of it a figure draws).

This module imports neither numpy nor torch: params load before the math is pinned.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from nnpipe.core.errors import short
from nnpipe.core.params import MAX_SCALE, Number, Section, Text

ROW_POLICIES = ("error", "drop")  # a missing label, or cell: refused, or its row dropped (fetch)
IMPUTE = ("mean", "median", "most_frequent")  # a missing feature cell imputed (SimpleImputer)
MISSING = ROW_POLICIES + IMPUTE
HANDLE_UNKNOWN = ("error", "ignore")  # a category the train split never had: refused, or zeros

MAX_ROWS = 30_000_000        # synthetic spiral rows (samples_per_class * classes)
MAX_CELLS = 50_000_000       # overfit_random's random data (N * C * D values)
MAX_NAMES = 10_000           # features, classes
Names = Annotated[tuple[Text, ...], Field(max_length=MAX_NAMES)]
Fraction = Annotated[Number, Field(gt=0, lt=1)]


def _unique(names: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(names)) != len(names):
        raise ValueError("must not repeat a name")
    return names


class SpiralParams(Section):
    samples_per_class: StrictInt = Field(gt=0, le=MAX_ROWS)
    classes: Names = Field(min_length=1)
    noise: Number = Field(ge=0, le=MAX_SCALE)

    _classes = field_validator("classes")(_unique)

    @model_validator(mode="after")
    def _rows(self) -> "SpiralParams":
        rows = self.samples_per_class * len(self.classes)
        if rows > MAX_ROWS:
            raise ValueError(f"samples_per_class * len(classes)={rows} must be at most {MAX_ROWS}")
        return self


class DataParams(Section):
    """The data set's columns and how its cells are read.

    ``categorical``: feature columns one-hot encoded even if they hold numbers (a column of
    text always is); ``missing``: what an empty, NA or NaN feature cell does: ``error``
    refuses it (fetch), ``drop`` removes its row (fetch), ``mean``, ``median`` or
    ``most_frequent`` impute it (SimpleImputer fit on the train split; a categorical column
    takes its most frequent category); ``missing_label``: a row with no label is refused
    (``error``) or dropped (``drop``) by fetch; ``handle_unknown``: a category the train split
    never had is refused (``error``) or encoded as all zeros (``ignore``), in the val/test
    splits and at predict time.
    """
    features: Names = Field(min_length=1)
    target: Text
    categorical: Names
    missing: Literal[MISSING]
    missing_label: Literal[ROW_POLICIES]
    handle_unknown: Literal[HANDLE_UNKNOWN]

    _features = field_validator("features", "categorical")(_unique)

    @model_validator(mode="after")
    def _categorical_are_features(self) -> "DataParams":
        stray = [name for name in self.categorical if name not in self.features]
        if stray:
            raise ValueError(f"categorical={list(self.categorical)} names "
                             f"{short(repr(stray[0]))}, which is not in data.features")
        return self


class SplitParams(Section):
    train_size: Fraction
    val_size: Fraction
    test_size: Fraction

    @model_validator(mode="after")
    def _sum(self) -> "SplitParams":
        total = self.train_size + self.val_size + self.test_size
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train_size + val_size + test_size={total:g} must sum to 1")
        return self


class RandomDataParams(Section):
    """random_data: the lesson's uniform random data for overfit_random (N, C, D)."""
    samples_per_class: StrictInt = Field(gt=0, le=MAX_CELLS)
    num_classes: StrictInt = Field(gt=0, le=MAX_NAMES)
    num_features: StrictInt = Field(gt=0, le=MAX_NAMES)

    @model_validator(mode="after")
    def _sizes(self) -> "RandomDataParams":
        cells = self.samples_per_class * self.num_classes * self.num_features
        if cells > MAX_CELLS:
            raise ValueError(f"samples_per_class * num_classes * num_features={cells} "
                             f"must be at most {MAX_CELLS}")
        return self


class PlotParams(Section):
    max_points: StrictInt = Field(gt=0, le=10_000_000)  # a data figure's points at most
    grid_size: StrictInt = Field(gt=0, le=2001)  # a decision boundary's grid, per axis
