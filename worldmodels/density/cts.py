r"""Context Tree Switching (CTS) density model over quantised frames.

Bellemare et al. (2016, "Unifying Count-Based Exploration and Intrinsic Motivation", App. C.1) model a
frame as a product of independent per-pixel models, each a CTS model (Veness et al. 2012, "Context
Tree Switching") over the pixel's grey level given a context of neighbouring pixels:

.. math::  \rho(x) = \prod_{i,j} \rho_{ij}(x_{ij} \mid c_{ij}(x)), \qquad
           \log \rho(x) = \sum_{i,j} \log \rho_{ij}(x_{ij} \mid c_{ij}(x))  \text{ (nats)}.

Conventions, pinned (issue 3):

- **Context.** For the pixel at row ``i``, column ``j`` the context is the 4 neighbours
  ``(up-right (i-1, j+1), up-left (i-1, j-1), up (i-1, j), left (i, j-1))``. Neighbours outside the
  frame read as symbol 0. The tree splits on the *last* of these first: the root's children are
  indexed by ``left``, theirs by ``up``, then ``up-left``, then ``up-right``; depth-4 nodes are leaves.
  So ``left`` is the most important context variable.
- **Estimator.** Every node ``s`` holds a Dirichlet (Perks prior: ``1/K`` pseudo-count per symbol,
  ``K = num_levels``) estimator over the symbols seen in its context, which predicts *before* it counts
  the symbol:  ``p_s(x) = (n_s(x) + 1/K) / (n_s + 1)``  with ``n_s`` the node's number of updates.
- **Switching mixture.** A leaf predicts with its estimator. An internal node ``s`` mixes *stay* (its
  own estimator, probability ``p_s``) and *split* (the CTS prediction ``q_s`` of its child selected by
  the context) with weights ``w_s`` and ``1 - w_s`` (both 0.5 at the node's creation):

  .. math::  \rho_s(x) = w_s\, p_s(x) + (1 - w_s)\, q_s(x).

  After observing ``x`` the weights switch (Veness et al. 2012, Alg. 1), both computed from the old
  weights (simultaneous update):

  .. math::
     w_s^{stay}  \leftarrow (1-\alpha_t)\, w_s\, p_s(x) + \alpha_t (1 - w_s)\, q_s(x), \qquad
     w_s^{split} \leftarrow (1-\alpha_t)(1 - w_s)\, q_s(x) + \alpha_t\, w_s\, p_s(x),

  and ``w_s = w^{stay} / (w^{stay} + w^{split})``. The two unnormalised weights sum to ``rho_s(x)``,
  so we store the normalised stay weight only (this equals the log-space form of Bellemare's
  reference code, where the weights are kept unnormalised as running products).
- **Switching rate.** ``alpha_t = 1 / (t + 1)`` where ``t`` counts the updates the pixel's model has
  seen *including the current one* (every pixel is updated on every frame, so ``t`` is the number of
  frames learned; the first update uses ``alpha = 1/2``).
- **Update order.** A frame is scored (``log_p_before``), every pixel's path of 5 nodes is updated
  (estimators counted, weights switched), and the frame is re-scored (``log_p_after``, the recoding
  probability). Pixel models are independent, so the recoding probability of a pixel is computed on
  the way back up its path in the same pass.

Storage. A dense table for every possible context would need ``1764 * (1 + 8 + 8^2 + 8^3 + 8^4)``
nodes (about 730 MB). Here nodes live in one pool grown on demand: node ``p`` (``p < H*W``) is the
root of pixel ``p`` (raster order); a node is created the first time its context occurs in an update;
``children[node, symbol]`` indexes the child (``-1`` if absent). A missing node predicts ``1/K`` for
every symbol (a fresh subtree is uniform), so :meth:`CTS.log_prob` never allocates. Counts are exact
integers (uint32); probabilities are computed in float64.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

__all__ = ["CTS"]

_CONTEXT_DEPTH = 4  # up-right, up-left, up, left
_INIT_STAY = 0.5


@numba.njit(cache=True, nogil=True)
def _update_frames(
    frames: np.ndarray,
    counts: np.ndarray,
    totals: np.ndarray,
    w_stay: np.ndarray,
    children: np.ndarray,
    n_nodes: int,
    t0: int,
    num_levels: int,
    out_before: np.ndarray,
    out_after: np.ndarray,
) -> tuple[int, int]:
    """Learn frames in order until done or the pool could run out; return (frames done, n_nodes)."""
    batch, height, width = frames.shape
    capacity = counts.shape[0]
    prior = 1.0 / num_levels
    path = np.empty(_CONTEXT_DEPTH + 1, dtype=np.int64)
    ctx = np.empty(_CONTEXT_DEPTH, dtype=np.int64)
    for b in range(batch):
        # Each pixel creates at most one node per depth below its root.
        if n_nodes + _CONTEXT_DEPTH * height * width > capacity:
            return b, n_nodes
        t = t0 + b + 1
        alpha = 1.0 / (t + 1.0)
        log_before = 0.0
        log_after = 0.0
        frame = frames[b]
        for i in range(height):
            for j in range(width):
                sym = frame[i, j]
                # Split order: left first, then up, up-left, up-right; out of frame reads 0.
                ctx[0] = frame[i, j - 1] if j > 0 else 0
                ctx[1] = frame[i - 1, j] if i > 0 else 0
                ctx[2] = frame[i - 1, j - 1] if (i > 0 and j > 0) else 0
                ctx[3] = frame[i - 1, j + 1] if (i > 0 and j + 1 < width) else 0
                node = i * width + j
                path[0] = node
                for d in range(_CONTEXT_DEPTH):
                    child = children[node, ctx[d]]
                    if child < 0:
                        child = n_nodes
                        n_nodes += 1
                        children[node, ctx[d]] = child
                    node = child
                    path[d + 1] = node
                # Leaf: estimator only.
                count = counts[node, sym]
                total = totals[node]
                p = (count + prior) / (total + 1.0)
                p_after = (count + 1.0 + prior) / (total + 2.0)
                counts[node, sym] = count + 1
                totals[node] = total + 1
                for d in range(_CONTEXT_DEPTH - 1, -1, -1):
                    node = path[d]
                    count = counts[node, sym]
                    total = totals[node]
                    p_est = (count + prior) / (total + 1.0)
                    w = w_stay[node]
                    mix = w * p_est + (1.0 - w) * p
                    stay = (1.0 - alpha) * w * p_est + alpha * (1.0 - w) * p
                    w = stay / mix
                    w_stay[node] = w
                    counts[node, sym] = count + 1
                    totals[node] = total + 1
                    p_after = w * (count + 1.0 + prior) / (total + 2.0) + (1.0 - w) * p_after
                    p = mix
                log_before += math.log(p)
                log_after += math.log(p_after)
        out_before[b] = log_before
        out_after[b] = log_after
    return batch, n_nodes


@numba.njit(cache=True, nogil=True)
def _pixel_prob(
    frame: np.ndarray,
    i: int,
    j: int,
    sym: int,
    counts: np.ndarray,
    totals: np.ndarray,
    w_stay: np.ndarray,
    children: np.ndarray,
    num_levels: int,
    path: np.ndarray,
) -> float:
    """Predictive probability of ``sym`` at pixel (i, j) given the frame's context; no learning."""
    width = frame.shape[1]
    prior = 1.0 / num_levels
    node = i * width + j
    path[0] = node
    depth = 0
    for d in range(_CONTEXT_DEPTH):
        if d == 0:
            c = frame[i, j - 1] if j > 0 else 0
        elif d == 1:
            c = frame[i - 1, j] if i > 0 else 0
        elif d == 2:
            c = frame[i - 1, j - 1] if (i > 0 and j > 0) else 0
        else:
            c = frame[i - 1, j + 1] if (i > 0 and j + 1 < width) else 0
        child = children[node, c]
        if child < 0:
            break
        node = child
        depth = d + 1
        path[depth] = node
    if depth == _CONTEXT_DEPTH:
        leaf = path[depth]
        p = (counts[leaf, sym] + prior) / (totals[leaf] + 1.0)
        top = depth - 1
    else:
        p = prior  # a subtree never visited predicts uniformly
        top = depth
    for d in range(top, -1, -1):
        node = path[d]
        p_est = (counts[node, sym] + prior) / (totals[node] + 1.0)
        w = w_stay[node]
        p = w * p_est + (1.0 - w) * p
    return p


@numba.njit(cache=True, nogil=True)
def _log_prob_frames(
    frames: np.ndarray,
    counts: np.ndarray,
    totals: np.ndarray,
    w_stay: np.ndarray,
    children: np.ndarray,
    num_levels: int,
    out: np.ndarray,
) -> None:
    batch, height, width = frames.shape
    path = np.empty(_CONTEXT_DEPTH + 1, dtype=np.int64)
    for b in range(batch):
        frame = frames[b]
        total_log = 0.0
        for i in range(height):
            for j in range(width):
                p = _pixel_prob(frame, i, j, frame[i, j], counts, totals, w_stay, children, num_levels, path)
                total_log += math.log(p)
        out[b] = total_log


@numba.njit(cache=True, nogil=True)
def _symbol_probs(
    frame: np.ndarray,
    counts: np.ndarray,
    totals: np.ndarray,
    w_stay: np.ndarray,
    children: np.ndarray,
    num_levels: int,
    out: np.ndarray,
) -> None:
    height, width = frame.shape
    path = np.empty(_CONTEXT_DEPTH + 1, dtype=np.int64)
    for i in range(height):
        for j in range(width):
            for s in range(num_levels):
                out[i, j, s] = _pixel_prob(frame, i, j, s, counts, totals, w_stay, children, num_levels, path)


class CTS:
    """Per-pixel Context Tree Switching density model (Bellemare et al. 2016, App. C.1).

    Satisfies :class:`worldmodels.protocols.DensityModel`. See the module docstring for the exact
    recursion and conventions.

    :param shape: ``(height, width)`` of the quantised frames (42x42 in the paper).
    :param num_levels: alphabet size ``K`` (8 grey levels in the paper), at most 256.
    :param initial_capacity: nodes allocated up front (default: ``16 * height * width``); the pool
        grows by half its size whenever a frame could overflow it.
    """

    def __init__(
        self,
        shape: tuple[int, int] = (42, 42),
        num_levels: int = 8,
        initial_capacity: int | None = None,
    ) -> None:
        if len(shape) != 2 or int(shape[0]) < 1 or int(shape[1]) < 1:
            raise ValueError(f"shape must be (height, width) with both >= 1, got {shape!r}")
        if not 2 <= int(num_levels) <= 256:
            raise ValueError(f"num_levels must be in [2, 256] (frames are uint8), got {num_levels}")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.num_levels: int = int(num_levels)
        num_pixels = self.shape[0] * self.shape[1]
        capacity = max(int(initial_capacity or 16 * num_pixels), num_pixels * (_CONTEXT_DEPTH + 1))
        self._counts = np.zeros((capacity, self.num_levels), dtype=np.uint32)
        self._totals = np.zeros(capacity, dtype=np.uint32)
        self._w_stay = np.full(capacity, _INIT_STAY, dtype=np.float64)
        self._children = np.full((capacity, self.num_levels), -1, dtype=np.int32)
        self._num_nodes = num_pixels  # the roots
        self._t = 0  # frames learned

    # ------------------------------------------------------------------ DensityModel
    def update(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score, learn and re-score each frame in order.

        :param frames: uint8 ``[B, H, W]`` with values in ``[0, num_levels)``.
        :return: ``(log_p_before, log_p_after)``, float64 ``[B]`` each, in nats.
        """
        frames = self._check_frames(frames)
        batch = frames.shape[0]
        before = np.empty(batch, dtype=np.float64)
        after = np.empty(batch, dtype=np.float64)
        done = 0
        while done < batch:
            n_done, self._num_nodes = _update_frames(
                frames[done:], self._counts, self._totals, self._w_stay, self._children,
                self._num_nodes, self._t, self.num_levels, before[done:], after[done:],
            )  # fmt: skip
            done += n_done
            self._t += n_done
            if done < batch:
                self._grow()
        return before, after

    def log_prob(self, frames: np.ndarray) -> np.ndarray:
        """Log probability in nats of each frame, float64 ``[B]``, without learning."""
        frames = self._check_frames(frames)
        out = np.empty(frames.shape[0], dtype=np.float64)
        _log_prob_frames(
            frames, self._counts, self._totals, self._w_stay, self._children, self.num_levels, out
        )
        return out

    def symbol_probs(self, frame: np.ndarray) -> np.ndarray:
        """Predictive distribution of every pixel given the frame's context of neighbours.

        :param frame: uint8 ``[H, W]`` (only the neighbours of each pixel are read).
        :return: float64 ``[H, W, num_levels]``; each pixel's row sums to 1.
        """
        frames = self._check_frames(np.asarray(frame)[None])
        out = np.empty((*self.shape, self.num_levels), dtype=np.float64)
        _symbol_probs(
            frames[0], self._counts, self._totals, self._w_stay, self._children, self.num_levels, out
        )
        return out

    def state_dict(self) -> dict[str, Any]:
        """Model state as numpy arrays (node pool trimmed to the nodes in use)."""
        n = self._num_nodes
        return {
            "shape": np.array(self.shape, dtype=np.int64),
            "num_levels": np.array(self.num_levels, dtype=np.int64),
            "t": np.array(self._t, dtype=np.int64),
            "counts": self._counts[:n].copy(),
            "totals": self._totals[:n].copy(),
            "w_stay": self._w_stay[:n].copy(),
            "children": self._children[:n].copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the shape and number of levels must match this model."""
        shape = tuple(int(v) for v in np.asarray(state["shape"]))
        levels = int(np.asarray(state["num_levels"]))
        if shape != self.shape or levels != self.num_levels:
            raise ValueError(
                f"state is for CTS(shape={shape}, num_levels={levels}) but this model is "
                f"CTS(shape={self.shape}, num_levels={self.num_levels}); build a matching CTS first"
            )
        n = int(np.asarray(state["counts"]).shape[0])
        capacity = max(n + _CONTEXT_DEPTH * self.shape[0] * self.shape[1], self._counts.shape[0])
        self._num_nodes = 0  # keep nothing of the current pool
        self._allocate(capacity)
        self._counts[:n] = state["counts"]
        self._totals[:n] = state["totals"]
        self._w_stay[:n] = state["w_stay"]
        self._children[:n] = state["children"]
        self._num_nodes = n
        self._t = int(np.asarray(state["t"]))

    # ------------------------------------------------------------------ introspection
    @property
    def num_frames(self) -> int:
        """Frames learned so far (the switching clock ``t``)."""
        return self._t

    @property
    def num_nodes(self) -> int:
        """Tree nodes in use, over all pixels (roots included)."""
        return self._num_nodes

    @property
    def nbytes(self) -> int:
        """Bytes held by the node pool, including its spare capacity."""
        return self._counts.nbytes + self._totals.nbytes + self._w_stay.nbytes + self._children.nbytes

    @property
    def bytes_per_node(self) -> int:
        return int(self.nbytes // self._counts.shape[0])

    # ------------------------------------------------------------------ helpers
    def _check_frames(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[1:] != self.shape:
            hint = " (add a batch axis: frames[None])" if frames.shape == self.shape else ""
            raise ValueError(
                f"CTS expects frames of shape [B, {self.shape[0]}, {self.shape[1]}], "
                f"got {frames.shape}{hint}; "
                "quantise raw frames with worldmodels.density.preprocess_frames"
            )
        if not np.issubdtype(frames.dtype, np.integer):
            raise ValueError(
                f"CTS expects integer grey levels (uint8), got dtype {frames.dtype}; "
                "quantise with worldmodels.density.preprocess_frames"
            )
        if frames.size and (int(frames.min()) < 0 or int(frames.max()) >= self.num_levels):
            raise ValueError(
                f"frame values must lie in [0, {self.num_levels}), got range "
                f"[{int(frames.min())}, {int(frames.max())}]; quantise with preprocess_frames "
                f"(num_levels={self.num_levels})"
            )
        return np.ascontiguousarray(frames, dtype=np.uint8)

    def _grow(self) -> None:
        capacity = self._counts.shape[0]
        self._allocate(capacity + max(capacity // 2, 2 * _CONTEXT_DEPTH * self.shape[0] * self.shape[1]))

    def _allocate(self, capacity: int) -> None:
        """Resize the pool to ``capacity`` nodes, keeping the nodes in use; new nodes are fresh."""
        n = self._num_nodes
        counts = np.zeros((capacity, self.num_levels), dtype=np.uint32)
        totals = np.zeros(capacity, dtype=np.uint32)
        w_stay = np.full(capacity, _INIT_STAY, dtype=np.float64)
        children = np.full((capacity, self.num_levels), -1, dtype=np.int32)
        counts[:n] = self._counts[:n]
        totals[:n] = self._totals[:n]
        w_stay[:n] = self._w_stay[:n]
        children[:n] = self._children[:n]
        self._counts, self._totals, self._w_stay, self._children = counts, totals, w_stay, children
