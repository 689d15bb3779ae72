"""k-nearest-neighbour search over the keys of one MFEC action buffer (Blundell et al. 2016, eq. 2).

Every index here searches the rows ``keys[:size]`` of the buffer's own preallocated array ``keys`` (float32
``[capacity, D]``, owned by :class:`agents.episodic.memory.ActionBuffer`), and answers with *slots*: row numbers
of that array. Slots never move: a new key fills the next free row, and once the buffer is full an evicted key is
overwritten in place by the new one. So an index never needs a general "remove": it is told which slots were
written and keeps itself in step, in time proportional to the number of written slots, never rebuilding the
whole index per insert.

Kinds (``INDEX_KINDS``):

- ``"flat"``: exact. faiss's brute-force L2 k-NN kernel (``faiss.knn``, i.e. ``knn_L2sqr``, the same routine
  ``IndexFlatL2.search`` runs) applied straight to the buffer's array. This is the equivalent of an
  ``IndexIDMap2(IndexFlatL2)`` with removal, without its cost: an ``IndexFlatL2`` keeps a second copy of every key
  (256 MB per action at the paper's 1M x 64 floats, 4.6 GB over 18 actions), and its ``remove_ids`` compacts the
  whole array (O(size) per call). Here a replaced slot is one row write the next search sees, and nothing is
  copied. Tests check it returns the same slots as ``IndexFlatL2.search``.
- ``"ivf"``: approximate. faiss ``IndexIVFFlat`` (inverted lists over k-means cells; a query scans the ``nprobe``
  nearest cells), ids = slots, with a hash-table direct map so that ``update_vectors`` replaces a slot in O(1) list
  operations plus one assignment to the nearest of ``nlist`` centroids (O(nlist * D)). It needs training: until
  the buffer holds ``min_train`` keys it answers exactly (cheap at that size); then it is trained with
  ``nlist = round(sqrt(size))`` cells and filled, and retrained from the current keys whenever the writes since
  the last training reach ``retrain_factor`` times the size it was trained at. While the buffer fills this
  retrains at sizes growing about 4x (4096, 16k, 64k, 256k, 1M, give or take an update call), and once full
  every 3 * capacity writes (so the cells follow the drift of the visited states): every key is re-added O(1)
  times amortised, never per insert.
  Costs a second copy of the keys (in the inverted lists). Recall depends on how clustered keys are: the
  Gaussian keys of ``launch/bench/episodic.py`` (which reports recall@k) have no clusters at all and are its
  worst case; embeddings of game frames (consecutive frames lie close together) should do better, unmeasured.
  HNSW was the other candidate, but faiss's HNSW cannot remove or replace a vector (``remove_ids`` is not
  implemented): the graph would have to keep tombstones and be rebuilt once they pile up. Measured here on one
  core with 100k Gaussian 64-d keys, ``IndexHNSWFlat(M=32)`` costs ~165 us per insert and 11 s per build (so
  minutes at 1M), for a recall@11 (0.39 at the default efSearch 16, 2.4 ms per batch of 16) no better than
  IVF's at nprobe 32 (0.54, 2.6 ms) whose inserts cost a few us.
- ``"numpy"``: exact brute force in float64 with ties broken by the lower slot; the reference the tests compare
  the faiss kinds against. O(size * D) memory and time per query: for tests and small memories.

Neighbours come back nearest first; distances are squared Euclidean (L2) but not returned, MFEC only averages
the neighbours' values.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import faiss
import numpy as np

INDEX_KINDS = ("flat", "ivf", "numpy")
_FAISS_UNTYPED: Any = faiss  # for names faiss's type stubs (1.15) leave out, such as the DirectMap enum


class SlotIndex(Protocol):
    """k-NN over ``keys[:size]`` of a buffer's key array; see the module docstring."""

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` nearest slots of each query, nearest first.

        :param queries: float32 ``[B, D]``, C-contiguous.
        :param k: 1 <= k <= size.
        :return: int64 ``[B, k]`` slots in ``[0, size)``.
        """
        ...

    def written(self, slots: np.ndarray, size: int) -> None:
        """Rows ``keys[slots]`` were just written (new slots at the end and/or replaced ones); ``size`` is the
        buffer's new size. ``slots`` is int64 ``[n]`` without repeats."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What the index needs besides the keys to answer identically after :meth:`load_state_dict`."""
        ...

    def load_state_dict(self, state: dict[str, Any], size: int) -> None:
        """Rebuild from ``keys[:size]`` (already restored) and :meth:`state_dict`'s output (may be ``{}``)."""
        ...


class NumpyIndex:
    """Exact brute force in float64 (the tests' reference)."""

    def __init__(self, keys: np.ndarray) -> None:
        self.keys = keys
        self.size = 0

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        stored = self.keys[: self.size].astype(np.float64)
        out = np.empty((len(queries), k), dtype=np.int64)
        for b, query in enumerate(queries.astype(np.float64)):
            dist = np.square(stored - query).sum(axis=1)
            out[b] = np.argsort(dist, kind="stable")[:k]  # stable: equal distances -> lower slot first
        return out

    def written(self, slots: np.ndarray, size: int) -> None:
        self.size = size  # searches read the buffer's array directly

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any], size: int) -> None:
        self.size = size


class FlatIndex:
    """Exact: faiss's L2 brute-force kernel on the buffer's own array (no copy, nothing to maintain)."""

    def __init__(self, keys: np.ndarray) -> None:
        self.keys = keys
        self.size = 0

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        # keys[:size] is a C-contiguous view, so faiss.knn reads the buffer in place.
        _, slots = faiss.knn(queries, self.keys[: self.size], k)
        return np.asarray(slots, dtype=np.int64)

    def written(self, slots: np.ndarray, size: int) -> None:
        self.size = size

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any], size: int) -> None:
        self.size = size


class IVFIndex:
    """Approximate: faiss ``IndexIVFFlat`` with a hash-table direct map, kept in step slot by slot.

    :param keys: the buffer's key array, float32 ``[capacity, D]``.
    :param nprobe: cells scanned per query (capped at the number of cells); more is slower and more exact.
    :param min_train: the first training happens when the buffer holds this many keys; exact search before.
    :param retrain_factor: retrain when the slots written since the last training reach this many times the
        size trained at (3: the index is retrained at sizes growing 4x while the buffer fills).
    :param seed: seeds k-means.
    """

    def __init__(self, keys: np.ndarray, nprobe: int = 32, min_train: int = 4096, retrain_factor: float = 3.0,
                 seed: int = 0) -> None:
        if nprobe < 1:
            raise ValueError(f"nprobe must be >= 1 (cells an IVF query scans), got {nprobe}")
        if min_train < 1 or retrain_factor <= 0:
            raise ValueError(f"min_train must be >= 1 and retrain_factor > 0, got {min_train}, {retrain_factor}")
        self.keys = keys
        self.nprobe = nprobe
        self.min_train = min_train
        self.retrain_factor = retrain_factor
        self.seed = seed
        self.size = 0
        self.trained_size = 0  # size at the last training; 0 = untrained (exact search)
        self.written_since_train = 0
        self.trainings = 0  # how often the index was (re)built, for tests and benchmarks
        self._ivf: Any = None
        self._quantizer: Any = None  # referenced here too so that it outlives the IVF index's use of it

    @property
    def nlist(self) -> int:
        """Number of k-means cells (0 while untrained)."""
        return 0 if self._ivf is None else int(self._ivf.nlist)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        if self._ivf is None:
            _, slots = faiss.knn(queries, self.keys[: self.size], k)
            return np.asarray(slots, dtype=np.int64)
        _, slots = self._ivf.search(queries, k)
        slots = np.asarray(slots, dtype=np.int64)
        short = (slots < 0).any(axis=1)  # the probed cells held fewer than k keys: answer those rows exactly
        if short.any():
            slots[short] = faiss.knn(queries[short], self.keys[: self.size], k)[1]
        return slots

    def written(self, slots: np.ndarray, size: int) -> None:
        in_index = self.size
        self.size = size
        if self._ivf is None:
            if size >= self.min_train:
                self._build()
            return
        self.written_since_train += len(slots)
        if self.written_since_train >= self.retrain_factor * self.trained_size:
            self._build()
            return
        replaced, new = slots[slots < in_index], slots[slots >= in_index]
        if len(replaced):  # hash-table direct map: remove + re-add, O(1) list operations per slot
            self._ivf.update_vectors(replaced, self.keys[replaced])
        if len(new):
            self._ivf.add_with_ids(self.keys[new], new)

    def rebuild(self) -> None:
        """Retrain the cells on the current keys and refill (what :meth:`written` does every so often)."""
        if self.size:
            self._build()

    def _build(self, centroids: np.ndarray | None = None) -> None:
        """(Re)build from ``keys[:size]``: train k-means (or take the given centroids) and add every key."""
        dim = self.keys.shape[1]
        stored = self.keys[: self.size]
        nlist = len(centroids) if centroids is not None else max(1, round(math.sqrt(self.size)))
        quantizer = faiss.IndexFlatL2(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist)
        if centroids is not None:
            quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
            ivf.is_trained = True
        else:
            # 64 points per cell and 10 iterations: centroids good enough for routing queries, and a training
            # at 1M keys (1000 cells) that takes seconds on one core, not a minute.
            ivf.cp.niter = 10
            ivf.cp.max_points_per_centroid = 64
            ivf.cp.seed = self.seed + self.trainings
            ivf.train(stored)
        ivf.set_direct_map_type(_FAISS_UNTYPED.DirectMap.Hashtable)
        ivf.add_with_ids(stored, np.arange(self.size, dtype=np.int64))
        ivf.nprobe = min(self.nprobe, nlist)
        self._ivf, self._quantizer = ivf, quantizer
        self.trained_size, self.written_since_train = self.size, 0
        self.trainings += 1

    def state_dict(self) -> dict[str, Any]:
        dim = self.keys.shape[1]
        centroids = (np.zeros((0, dim), np.float32) if self._quantizer is None
                     else np.asarray(self._quantizer.reconstruct_n(0, self.nlist), dtype=np.float32))
        return {"centroids": centroids, "trained_size": self.trained_size,
                "written_since_train": self.written_since_train, "trainings": self.trainings}

    def load_state_dict(self, state: dict[str, Any], size: int) -> None:
        self.size = size
        self._ivf = self._quantizer = None
        self.trained_size = self.written_since_train = 0
        self.trainings = int(state.get("trainings", 0))
        centroids = state.get("centroids")
        if centroids is not None and len(centroids) and size:
            # The saved cells: the same cells hold the same keys, so searches answer as before the save.
            self._build(np.asarray(centroids, dtype=np.float32))
            self.trainings -= 1  # a reload is not a training
            self.trained_size = int(state["trained_size"])
            self.written_since_train = int(state["written_since_train"])
        elif size >= self.min_train:  # saved by an exact index (or before training): train now
            self._build()


def make_index(kind: str, keys: np.ndarray, *, nprobe: int = 32, seed: int = 0) -> SlotIndex:
    """The index of the given kind over a buffer's key array (float32 ``[capacity, D]``)."""
    if kind == "flat":
        return FlatIndex(keys)
    if kind == "ivf":
        return IVFIndex(keys, nprobe=nprobe, seed=seed)
    if kind == "numpy":
        return NumpyIndex(keys)
    raise ValueError(f"unknown index kind {kind!r}: use one of {', '.join(INDEX_KINDS)}")
