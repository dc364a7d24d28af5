"""Seeded, shuffled, stratified train/val/test split (scikit-learn's train_test_split)."""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from nnpipe.core.errors import PipelineError

# A class needs a row in each of train, val and test, and train_test_split
# needs two rows of a class in every set it stratifies.
MIN_ROWS_PER_CLASS = 4


class SplitIndices(NamedTuple):
    """Row indices of each split into the original table, in shuffled order."""
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def check_class_sizes(y: np.ndarray, train_size: float, val_size: float,
                      test_size: float, source: str, classes: Sequence[str] = ()) -> None:
    """Every class must get at least one row in each split (and two in the first cut)."""
    labels, counts = np.unique(y, return_counts=True)
    smallest = min(train_size, val_size, test_size)
    needed = max(math.ceil(1.0 / smallest - 1e-9), MIN_ROWS_PER_CLASS)
    for label, count in zip(labels, counts):
        label = classes[label] if len(classes) else label
        if count < needed:
            raise PipelineError(
                f"{source}: class '{label}' has {count} row(s); split sizes "
                f"{train_size:g}/{val_size:g}/{test_size:g} need at least {needed} per class")


def stratified_split(y: np.ndarray, train_size: float, val_size: float, test_size: float,
                     seed: int, source: str = "data", classes: Sequence[str] = ()) -> SplitIndices:
    """Split row indices of labels ``y: (N,)`` into train/val/test, stratified on ``y``
    (class names, or codes into ``classes``).

    As in the lesson: first train vs the rest, then the rest into val and test.
    """
    from sklearn.model_selection import train_test_split

    check_class_sizes(y, train_size, val_size, test_size, source, classes)
    index = np.arange(len(y))
    try:
        train, rest = train_test_split(index, train_size=train_size, stratify=y,
                                       random_state=seed, shuffle=True)
        val, test = train_test_split(rest, train_size=val_size / (val_size + test_size),
                                     stratify=y[rest], random_state=seed, shuffle=True)
    except ValueError as exc:
        raise PipelineError(f"{source}: cannot split with sizes "
                            f"{train_size:g}/{val_size:g}/{test_size:g} ({exc})") from None
    return SplitIndices(train, val, test)
