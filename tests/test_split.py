"""nnpipe.split: seeded, stratified 70/15/15 split of row indices."""
from __future__ import annotations

import re

import numpy as np
import pytest

from nnpipe.core.errors import PipelineError
from nnpipe.split import SplitIndices, check_class_sizes, stratified_split

SIZES = (0.7, 0.15, 0.15)


@pytest.fixture(scope="module")
def spiral_labels() -> np.ndarray:
    return np.repeat(np.array(["c1", "c3", "c2"]), 500)


@pytest.fixture(scope="module")
def uneven_labels() -> np.ndarray:
    return np.array(["a"] * 300 + ["b"] * 140 + ["c"] * 60)


def test_sizes_70_15_15_on_1500_rows(spiral_labels):
    split = stratified_split(spiral_labels, *SIZES, seed=1234)
    assert isinstance(split, SplitIndices)
    assert (len(split.train), len(split.val), len(split.test)) == (1050, 225, 225)


def test_disjoint_and_covering(uneven_labels):
    split = stratified_split(uneven_labels, *SIZES, seed=0)
    joined = np.concatenate([split.train, split.val, split.test])
    assert len(joined) == len(uneven_labels)
    np.testing.assert_array_equal(np.sort(joined), np.arange(len(uneven_labels)))
    assert not set(split.train) & set(split.val)
    assert not set(split.train) & set(split.test)
    assert not set(split.val) & set(split.test)


@pytest.mark.parametrize("labels_fixture", ["spiral_labels", "uneven_labels"])
def test_stratified_class_proportions(request, labels_fixture):
    y = request.getfixturevalue(labels_fixture)
    split = stratified_split(y, *SIZES, seed=7)
    classes, totals = np.unique(y, return_counts=True)
    for part in split:
        counts = np.array([(y[part] == c).sum() for c in classes])
        expected = totals / len(y) * len(part)
        assert np.all(np.abs(counts - expected) <= 1.0), (counts, expected)


def test_stratified_per_class_counts_on_spiral(spiral_labels):
    split = stratified_split(spiral_labels, *SIZES, seed=1234)
    for part, per_class in zip(split, (350, 75, 75)):
        _, counts = np.unique(spiral_labels[part], return_counts=True)
        assert counts.tolist() == [per_class] * 3


def test_indices_are_shuffled(spiral_labels):
    split = stratified_split(spiral_labels, *SIZES, seed=1234)
    assert not np.all(np.diff(split.train) > 0)


def test_deterministic_per_seed(uneven_labels):
    a = stratified_split(uneven_labels, *SIZES, seed=42)
    b = stratified_split(uneven_labels, *SIZES, seed=42)
    c = stratified_split(uneven_labels, *SIZES, seed=43)
    for first, second in zip(a, b):
        np.testing.assert_array_equal(first, second)
    assert not np.array_equal(a.train, c.train)
    assert set(a.test) != set(c.test)


def test_does_not_mutate_labels(uneven_labels):
    y = uneven_labels.copy()
    stratified_split(y, *SIZES, seed=0)
    np.testing.assert_array_equal(y, uneven_labels)


def test_smallest_allowed_class_appears_in_every_split():
    y = np.array(["big"] * 50 + ["rare"] * 7)  # 7 = ceil(1 / 0.15)
    split = stratified_split(y, *SIZES, seed=3)
    for part in split:
        assert "rare" in set(y[part])


def test_too_few_rows_names_the_class():
    y = np.array(["big"] * 50 + ["rare"] * 6)
    message = ("labels.csv: class 'rare' has 6 row(s); split sizes 0.7/0.15/0.15 need at least "
               "7 per class")
    with pytest.raises(PipelineError, match=re.escape(message)):
        stratified_split(y, *SIZES, seed=0, source="labels.csv")


def test_minimum_is_at_least_four_per_class():
    y = np.array(["a"] * 10 + ["b"] * 3)
    with pytest.raises(PipelineError, match=re.escape(
            "data: class 'b' has 3 row(s); split sizes 0.34/0.33/0.33 need at least 4 per class")):
        check_class_sizes(y, 0.34, 0.33, 0.33, "data")


def test_check_class_sizes_passes_enough_rows():
    check_class_sizes(np.array(["a"] * 7 + ["b"] * 8), *SIZES, "data")
