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


def oracle(y: np.ndarray, seed: int, sizes=SIZES) -> tuple[np.ndarray, ...]:
    """The lesson's two cuts by scikit-learn's own train_test_split."""
    from sklearn.model_selection import train_test_split

    train, rest = train_test_split(np.arange(len(y)), train_size=sizes[0], stratify=y,
                                   random_state=seed, shuffle=True)
    val, test = train_test_split(rest, train_size=sizes[1] / (sizes[1] + sizes[2]),
                                 stratify=y[rest], random_state=seed, shuffle=True)
    return train, val, test


@pytest.mark.parametrize("case", ["names", "codes", "codes with a gap", "uint16", "five classes",
                                  "odd sizes"])
@pytest.mark.parametrize("seed", [0, 1234, 2**31 - 1])
def test_indices_are_scikit_learns(case, seed):
    """Row for row the indices of scikit-learn's stratified train_test_split, on names and on
    codes (one absent code included), uneven classes, any seed and sizes."""
    rng = np.random.default_rng(seed)
    codes = rng.choice(5 if case == "five classes" else 3, size=1001, p=None).astype(np.uint8)
    y = {"names": np.array(["c3", "a", "b"])[codes % 3], "codes with a gap": codes * 2,
         "uint16": codes.astype(np.uint16) + 300}.get(case, codes)
    sizes = (0.55, 0.25, 0.2) if case == "odd sizes" else SIZES
    split = stratified_split(y, *sizes, seed=seed)
    for ours, theirs in zip(split, oracle(y, seed, sizes)):
        np.testing.assert_array_equal(ours, theirs)


def test_sizes_70_15_15_on_1500_rows(spiral_labels):
    split = stratified_split(spiral_labels, *SIZES, seed=1234)
    assert isinstance(split, SplitIndices)
    assert (len(split.train), len(split.val), len(split.test)) == (1050, 225, 225)
    for part, per_class in zip(split, (350, 75, 75)):
        assert np.unique(spiral_labels[part], return_counts=True)[1].tolist() == [per_class] * 3
    joined = np.concatenate(split)
    np.testing.assert_array_equal(np.sort(joined), np.arange(len(spiral_labels)))


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
