"""SumTree: hand-computed cases and brute force (np.cumsum / np.searchsorted) on random data."""

from __future__ import annotations

import numpy as np
import pytest

from agents.replay.sum_tree import SumTree


def test_hand_computed_five_leaves() -> None:
    tree = SumTree(5)  # not a power of two: 8 leaves, 3 of them always 0
    tree.update(np.array([0, 1, 2, 3, 4]), np.array([1.0, 2.0, 3.0, 0.0, 4.0]))
    assert tree.total() == 10.0
    # cumsum = [1, 3, 6, 6, 10]: [0,1) -> 0, [1,3) -> 1, [3,6) -> 2, leaf 3 has no mass, [6,10) -> 4
    got = tree.find_prefix(np.array([0.0, 0.99, 1.0, 2.5, 3.0, 5.99, 6.0, 9.99]))
    np.testing.assert_array_equal(got, [0, 0, 1, 1, 2, 2, 4, 4])
    # At or past the total (rounding), the last leaf with mass; never a padding leaf.
    np.testing.assert_array_equal(tree.find_prefix(np.array([10.0, 11.0, -1.0])), [4, 4, 0])
    np.testing.assert_array_equal(tree.get(np.array([4, 2])), [4.0, 3.0])
    assert tree.max_value == 4.0


def test_zero_leaves_are_never_found() -> None:
    tree = SumTree(6)
    tree.update(np.arange(6), np.array([0.0, 5.0, 0.0, 0.0, 2.0, 0.0]))
    targets = np.linspace(0, 7.5, 1001)
    found = tree.find_prefix(targets)
    assert set(found.tolist()) == {1, 4}
    np.testing.assert_array_equal(found, np.where(targets < 5.0, 1, 4))


def test_duplicate_indices_last_write_wins() -> None:
    tree = SumTree(4)
    tree.update(np.array([2, 1, 2, 2]), np.array([7.0, 1.0, 9.0, 3.0]))
    np.testing.assert_array_equal(tree.values(), [0.0, 1.0, 3.0, 0.0])
    assert tree.total() == 4.0
    assert tree.max_value == 3.0  # the overwritten 7 and 9 were never stored


def test_capacity_one() -> None:
    tree = SumTree(1)
    tree.update(np.array([0]), np.array([2.5]))
    assert tree.total() == 2.5
    np.testing.assert_array_equal(tree.find_prefix(np.array([0.0, 2.4, 3.0])), [0, 0, 0])


@pytest.mark.parametrize("capacity", [1, 2, 3, 7, 64, 1000, 4097])
def test_random_against_brute_force(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    tree = SumTree(capacity)
    ref = np.zeros(capacity)
    for _ in range(20):
        k = int(rng.integers(1, 2 * capacity + 2))
        idx = rng.integers(0, capacity, k)
        vals = rng.random(k) * (rng.random(k) < 0.8)  # some zeros
        tree.update(idx, vals)
        for i, v in zip(idx, vals, strict=True):  # sequential semantics: last write wins
            ref[i] = v
        np.testing.assert_array_equal(tree.values(), ref)
        np.testing.assert_allclose(tree.total(), ref.sum(), rtol=1e-12)
        if ref.sum() == 0:
            continue
        cum = np.cumsum(ref)
        targets = rng.random(500) * cum[-1]
        expected = np.searchsorted(cum, targets, side="right")
        # Summation order differs from cumsum; skip targets within rounding distance of a boundary.
        safe = np.min(np.abs(targets[:, None] - cum[None, :]), axis=1) > 1e-9 * cum[-1]
        got = tree.find_prefix(targets)
        np.testing.assert_array_equal(got[safe], expected[safe])
        assert np.all(ref[got] > 0)


def test_errors_name_the_problem() -> None:
    tree = SumTree(3)
    with pytest.raises(ValueError, match="empty tree"):
        tree.find_prefix(np.array([0.0]))
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        tree.update(np.array([3]), np.array([1.0]))
    with pytest.raises(ValueError, match="finite and >= 0"):
        tree.update(np.array([0]), np.array([np.nan]))
    with pytest.raises(ValueError, match=">= 1"):
        SumTree(0)


def test_bytes_for_matches_allocation() -> None:
    for cap in (1, 5, 8, 1000):
        assert SumTree.bytes_for(cap) == SumTree(cap).nbytes
