"""Vectorised sum tree for proportional prioritised replay (Schaul et al. 2016).

The tree is a flat float64 array in heap layout: node 1 is the root, node ``i`` has children ``2i`` and
``2i + 1``, and leaf ``j`` (the priority of replay slot ``j``) sits at node ``leaf_base + j``, where
``leaf_base`` is the smallest power of two >= capacity. Leaves past ``capacity`` stay 0 forever, which is how
a capacity that is not a power of two is handled. Every operation works on a whole batch of indices with one
numpy operation per tree level; there is no Python loop over elements.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Binary sum tree over ``capacity`` non-negative float64 values.

    :param capacity: number of leaves (replay slots), >= 1; need not be a power of two.
    """

    def __init__(self, capacity: int) -> None:
        capacity = int(capacity)
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._depth = (capacity - 1).bit_length()  # levels below the root
        self._leaf_base = 1 << self._depth
        self._tree = np.zeros(2 * self._leaf_base, dtype=np.float64)
        # Running maximum of every value ever written: new transitions enter with the largest priority seen
        # so far (Schaul et al., Algorithm 1). It never decreases, as in the reference implementations.
        self.max_value = 0.0

    @staticmethod
    def bytes_for(capacity: int) -> int:
        """Bytes of the tree array for ``capacity`` leaves (no allocation)."""
        return 2 * (1 << (int(capacity) - 1).bit_length()) * 8

    @property
    def nbytes(self) -> int:
        """Bytes held by the tree array."""
        return int(self._tree.nbytes)

    def total(self) -> float:
        """Sum of all leaves (the root)."""
        return float(self._tree[1])

    def values(self) -> np.ndarray:
        """Read-only view of the leaves: float64 [capacity]."""
        view = self._tree[self._leaf_base : self._leaf_base + self.capacity]
        view.flags.writeable = False
        return view

    def _check_indices(self, indices: np.ndarray) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"indices must be a 1-D integer array, got dtype {idx.dtype} shape {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity):
            raise IndexError(
                f"indices must lie in [0, {self.capacity}); got min {idx.min()}, max {idx.max()}"
            )
        return idx

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Leaf values at ``indices`` (int64 [K]) as float64 [K]."""
        return self._tree[self._leaf_base + self._check_indices(indices)]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` (int64 [K]) to ``values`` (float64 [K], finite, >= 0) and refresh sums.

        Duplicate indices: the last write wins. Parents are recomputed from their two children (not by adding
        deltas), so the sums never drift however many updates are made.
        """
        idx = self._check_indices(indices)
        vals = np.asarray(values, dtype=np.float64)
        if vals.shape != idx.shape:
            raise ValueError(f"values shape {vals.shape} does not match indices shape {idx.shape}")
        if idx.size == 0:
            return
        if not np.all(np.isfinite(vals)) or vals.min() < 0:
            raise ValueError("SumTree values must be finite and >= 0 (priorities); got NaN/inf or negative")
        # Last write wins: np.unique on the reversed array returns the first (= last original) occurrence,
        # and its output is sorted, which the level-by-level dedup below relies on.
        uniq, first_in_rev = np.unique(idx[::-1], return_index=True)
        vals = vals[::-1][first_in_rev]
        nodes = uniq + self._leaf_base
        tree = self._tree
        tree[nodes] = vals
        self.max_value = max(self.max_value, float(vals.max()))
        for _ in range(self._depth):
            nodes = nodes >> 1
            # nodes stays sorted, so duplicates (siblings sharing a parent) are adjacent.
            keep = np.empty(nodes.shape, dtype=bool)
            keep[0] = True
            np.not_equal(nodes[1:], nodes[:-1], out=keep[1:])
            nodes = nodes[keep]
            tree[nodes] = tree[2 * nodes] + tree[2 * nodes + 1]

    def find_prefix(self, targets: np.ndarray) -> np.ndarray:
        """For each target mass ``t`` in [0, total), the leaf ``j`` with cumsum[j-1] <= t < cumsum[j].

        :param targets: float64 [K]; values below 0 are treated as 0, values >= total() give the last
            leaf with a non-zero value.
        :returns: int64 [K] leaf indices. A leaf whose value is 0 is never returned (the descent only
            enters subtrees with positive mass), so evicted slots (priority 0) are never sampled.
        :raises ValueError: if the tree is empty (total() == 0).
        """
        if not self._tree[1] > 0:
            raise ValueError("SumTree.find_prefix on an empty tree (total() == 0): add positive values first")
        t = np.maximum(np.asarray(targets, dtype=np.float64), 0.0)
        if t.ndim != 1:
            raise ValueError(f"targets must be 1-D, got shape {t.shape}")
        tree = self._tree
        idx = np.ones(t.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = 2 * idx
            left_sum = tree[left]
            # Going right needs both "target past the left mass" and a right subtree with mass: this keeps
            # the walk out of zero subtrees when rounding puts t at or past the true total.
            go_right = (t >= left_sum) & (tree[left + 1] > 0)
            t = np.where(go_right, t - left_sum, t)
            idx = left + go_right
        return idx - self._leaf_base
