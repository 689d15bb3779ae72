"""The episodic memory of Model-Free Episodic Control (Blundell et al. 2016, arXiv 1606.04460, Sec. 2-3).

``Q^EC(s, a)`` is one buffer per action ``a`` of (key, value) pairs: a key is a state's embedding (float32
``[D]``, from a :class:`worldmodels.protocols.Representation`), its value the best discounted return seen after
taking ``a`` there.

- **Update** (eq. 1, at the end of an episode, Algorithm 1): for each step, ``Q(s_t, a_t) <- max(Q(s_t, a_t), R_t)``
  if ``s_t`` is stored in ``a_t``'s buffer, else ``(s_t, R_t)`` is inserted, evicting an entry when the buffer is
  full. ``R_t`` is the discounted return from step t (:func:`discounted_returns`; the paper's gamma is 1).
- **Estimate** (eq. 2): the stored value if the key is stored, else the mean of the values of the ``k`` nearest
  stored keys (Euclidean; k = 11 in the paper), for every action.

Choices the paper leaves open, and ours:

- **Exact match** means a bitwise-identical float32 key (so 0.0 and -0.0 differ). It is looked up through a dict
  from a 64-bit hash of the key's bytes to its slot, verified against the stored row, so a hash collision never
  makes a false match (at worst an older colliding key loses its exact look-up and is found as its own nearest
  neighbour instead; a new key collides with one of 1M stored ones with probability ~5e-14). The dict holds
  ints, not the key bytes: 1M keys of 64 floats as bytes would cost another ~300 MB per action.
- **Fewer than k stored**: the mean over all stored keys of that action.
- **Empty buffer**: ``empty_value``, default ``+inf``. The paper defines no estimate for an action without data;
  its agent acts epsilon-greedily on the estimates, so such an action is reached by exploration. With a small
  epsilon, an untried action among A waits about A / epsilon steps for its first try (thousands of steps);
  ``+inf`` makes the greedy choice try every action once in the first steps of a run (as the public MFEC code
  does, which returns inf while fewer than k are stored), and it only matters until every buffer holds one key.
  Set it to 0 (or any float) to leave first tries to exploration. ``Estimate.values`` then holds infinities:
  average only finite ones when logging.
- **Eviction**: least recently used, ``eviction="lru_updated"`` (default; only writes count: an insert or a visit
  in :meth:`EpisodicMemory.update`, whether or not the max changed the value) or ``"lru_used"`` (queries count
  too: the exact match, or each of the k nearest neighbours an estimate averaged). The paper mentions both the
  least recently *updated* and *used* entries. We default to updated because it keeps queries read-only, so
  actors that query a local copy of the memory (the design notes, Sec. 3b) leave it in the same state as the
  learner's copy, and a memory's contents never depend on how often or from where it was queried; and the
  entries it keeps are the states the agent keeps visiting, which is what MFEC's update rewards anyway.
  Ties are impossible: every touch gets its own stamp from a per-buffer counter.
- **k-NN index**: ``index="flat"`` (exact, default), ``"ivf"`` (approximate, for large memories) or ``"numpy"``
  (the tests' reference); see :mod:`agents.episodic.knn`. Slots never move and evicted keys are overwritten in
  place, so an update costs the index only the written slots, batched per :meth:`EpisodicMemory.update` call.

Memory: ``capacity * (4 D + 4 + 8 + 8)`` bytes per action in preallocated arrays (keys, values, last-use stamps,
key hashes) plus ~180 bytes per stored key in the hash dict, and for ``"ivf"`` a second copy of the keys with
their ids. Measured at the paper's 1M keys of D = 64 per action: 0.46 GB per action (0.83 GB with ``"ivf"``),
so 8 GB (15 GB) for Atari's 18 actions: choose the capacity with that in mind.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from agents.episodic.knn import INDEX_KINDS, SlotIndex, make_index

EVICTIONS = ("lru_updated", "lru_used")
#: The paper's buffer size per action (Sec. 4).
PAPER_CAPACITY = 1_000_000


def discounted_returns(rewards: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``R_t = sum_{i >= t} gamma^(i - t) r_i``, computed backwards from the end of the episode.

    :param rewards: ``[T]`` rewards of one episode, ``rewards[t]`` received after the action at step t.
    :param gamma: discount in [0, 1]; the paper's MFEC uses 1 (undiscounted returns to the episode's end).
    :return: float32 ``[T]`` (accumulated in float64).
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be one episode [T], got shape {rewards.shape}")
    out = np.empty(len(rewards), dtype=np.float64)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        out[t] = acc
    return out.astype(np.float32)


class Estimate(NamedTuple):
    """What :meth:`EpisodicMemory.estimate` returns for B keys and A actions."""

    values: np.ndarray  # float32 [B, A]: Q^EC(s, a) by eq. 2 (empty_value where a's buffer is empty)
    exact: np.ndarray  # bool [B, A]: the key is stored in a's buffer (value read, not averaged)


class ActionBuffer:
    """The (key, value) pairs of one action, in preallocated arrays; slots ``[0, size)`` are filled.

    :param capacity: most keys held; when full, each insert evicts the least recently used entry.
    :param key_dim: D.
    :param index: k-NN index kind, see :mod:`agents.episodic.knn`.
    """

    def __init__(self, capacity: int, key_dim: int, index: str = "flat", *, nprobe: int = 32, seed: int = 0) -> None:
        self.capacity = capacity
        self.keys = np.zeros((capacity, key_dim), dtype=np.float32)  # [capacity, D]
        self.values = np.zeros(capacity, dtype=np.float32)  # [capacity] best return seen
        self.last_use = np.zeros(capacity, dtype=np.int64)  # [capacity] stamp of the last touch (LRU)
        self.key_hash = np.zeros(capacity, dtype=np.int64)  # [capacity] hash of each stored key's bytes
        self.size = 0
        self.clock = 0  # last stamp handed out; stamps are unique, so the LRU order has no ties
        self.index: SlotIndex = make_index(index, self.keys, nprobe=nprobe, seed=seed)
        self._slot_of: dict[int, int] = {}  # key hash -> slot
        self._victims = _LRUQueue(self)

    def lookup(self, key_bytes: list[bytes], hashes: list[int]) -> np.ndarray:
        """Slots of keys stored exactly (bitwise), -1 elsewhere: int64 ``[B]``."""
        out = np.full(len(hashes), -1, dtype=np.int64)
        for b, (kb, h) in enumerate(zip(key_bytes, hashes)):
            slot = self._slot_of.get(h)
            if slot is not None and self.keys[slot].tobytes() == kb:
                out[b] = slot
        return out

    def touch(self, slots: np.ndarray) -> None:
        """Mark slots (int64, any shape, repeats allowed) as just used, in the given order: a slot touched twice
        gets the stamp of its last touch (explicitly: numpy does not promise which of repeated writes wins)."""
        slots = slots.ravel()
        unique, first_from_end = np.unique(slots[::-1], return_index=True)
        self.last_use[unique] = self.clock + len(slots) - first_from_end  # = clock + 1 + last position
        self.clock += len(slots)

    def estimate(self, keys: np.ndarray, key_bytes: list[bytes], hashes: list[int], k: int, empty_value: float,
                 touch: bool) -> tuple[np.ndarray, np.ndarray]:
        """Eq. 2 for B keys: ``(values float32 [B], exact bool [B])``; with ``touch`` the slots read are touched."""
        values = np.full(len(keys), empty_value, dtype=np.float32)
        if self.size == 0:
            return values, np.zeros(len(keys), dtype=bool)
        slots = self.lookup(key_bytes, hashes)
        exact = slots >= 0
        values[exact] = self.values[slots[exact]]
        rows = np.flatnonzero(~exact)
        neighbours = np.zeros((0, 0), dtype=np.int64)
        if len(rows):
            neighbours = self.index.search(keys[rows], min(k, self.size))  # [R, k'] nearest first
            # Sorted slots: the mean adds the same numbers in the same order whatever the index's order of ties.
            nearest = self.values[np.sort(neighbours, axis=1)]
            values[rows] = nearest.mean(axis=1, dtype=np.float64).astype(np.float32)
        if touch:
            self.touch(np.concatenate([slots[exact], neighbours.ravel()]))
        return values, exact

    def write(self, keys: np.ndarray, returns: np.ndarray, key_bytes: list[bytes], hashes: list[int]) -> None:
        """Eq. 1 for the steps of one action, in the given order: max-update a stored key, else insert it (evicting
        the least recently used entry when full). The index learns of the written slots once, at the end."""
        written: list[int] = []
        for t, (kb, h, ret) in enumerate(zip(key_bytes, hashes, returns.tolist())):
            slot = self._slot_of.get(h)
            if slot is not None and self.keys[slot].tobytes() == kb:
                if ret > self.values[slot]:
                    self.values[slot] = ret
            else:
                if self.size < self.capacity:
                    slot = self.size
                    self.size += 1
                else:
                    slot = self._victims.pop(len(keys) - t)
                    old = int(self.key_hash[slot])
                    if self._slot_of.get(old) == slot:  # else a colliding newer key owns that hash
                        del self._slot_of[old]
                self.keys[slot] = keys[t]
                self.values[slot] = ret
                self.key_hash[slot] = h
                self._slot_of[h] = slot
                written.append(slot)
            self.clock += 1
            self.last_use[slot] = self.clock
        if written:
            self.index.written(np.unique(np.asarray(written, dtype=np.int64)), self.size)

    def rehash(self) -> None:
        """Recompute the hash dict from ``keys[:size]`` (after a load); the index is rebuilt by its own load."""
        self._victims.clear()
        self._slot_of = {}
        for slot in range(self.size):
            h = hash(self.keys[slot].tobytes())
            self.key_hash[slot] = h
            self._slot_of[h] = slot


class _LRUQueue:
    """Eviction victims of a full buffer, least recently used first.

    Refilled with the ``max(wanted, capacity // 64)`` oldest stamps by one ``argpartition`` (O(capacity)), so that
    finding victims costs O(1) amortised per insert, not O(capacity). A candidate touched since it was picked (its
    stamp changed) is skipped: it is no longer old. The rest stay valid across calls: stamps only grow, so every
    slot not picked is newer than every picked slot whose stamp is unchanged, and the next valid candidate is the
    true least recently used entry.
    """

    def __init__(self, buffer: ActionBuffer) -> None:
        self.buffer = buffer
        self.clear()

    def clear(self) -> None:
        """Forget the candidates (after a load replaced the stamps)."""
        self.slots = np.zeros(0, dtype=np.int64)
        self.stamps = np.zeros(0, dtype=np.int64)
        self.pos = 0

    def pop(self, wanted: int) -> int:
        """The least recently used slot; ``wanted`` (>= 1) is how many victims the caller may still need."""
        last_use = self.buffer.last_use[: self.buffer.size]
        while True:
            if self.pos >= len(self.slots):
                m = min(max(wanted, self.buffer.capacity // 64), len(last_use))
                picked = np.argpartition(last_use, m - 1)[:m] if m < len(last_use) else np.arange(len(last_use))
                self.slots = picked[np.argsort(last_use[picked])]
                self.stamps = last_use[self.slots].copy()
                self.pos = 0
            slot, stamp = int(self.slots[self.pos]), int(self.stamps[self.pos])
            self.pos += 1
            if last_use[slot] == stamp:
                return slot


class EpisodicMemory:
    """MFEC's ``Q^EC``: one :class:`ActionBuffer` per action (see the module docstring for the choices).

    :param num_actions: A, one buffer each.
    :param key_dim: D, length of a key (the representation's ``dim``).
    :param capacity: keys per action (the paper: 1M, ``PAPER_CAPACITY``); memory is preallocated, see above.
    :param k: neighbours averaged for a key not stored exactly (the paper: 11).
    :param index: k-NN index: ``"flat"`` (exact), ``"ivf"`` (approximate), ``"numpy"`` (reference).
    :param eviction: ``"lru_updated"`` (default) or ``"lru_used"``.
    :param seed: seeds what is random (the IVF index's k-means), action a's buffer with ``seed + a``.
    :param empty_value: estimate of an action whose buffer is empty (default +inf: try it first).
    :param nprobe: cells an ``"ivf"`` query scans (ignored by the exact kinds).
    """

    def __init__(self, num_actions: int, key_dim: int, capacity: int, k: int = 11, index: str = "flat",
                 eviction: str = "lru_updated", seed: int = 0, empty_value: float = math.inf,
                 nprobe: int = 32) -> None:
        if num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        if key_dim < 1:
            raise ValueError(f"key_dim must be >= 1 (the representation's dim), got {key_dim}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 keys per action (the paper uses {PAPER_CAPACITY:,}), "
                             f"got {capacity}")
        if k < 1:
            raise ValueError(f"k must be >= 1 nearest neighbours (the paper uses 11), got {k}")
        if index not in INDEX_KINDS:
            raise ValueError(f"unknown index {index!r}: use one of {', '.join(INDEX_KINDS)}")
        if eviction not in EVICTIONS:
            raise ValueError(f"unknown eviction {eviction!r}: use one of {', '.join(EVICTIONS)}")
        if nprobe < 1:
            raise ValueError(f"nprobe must be >= 1 (cells an IVF query scans), got {nprobe}")
        if math.isnan(empty_value):
            raise ValueError("empty_value must not be NaN: use +inf (try unexplored actions first) or a number")
        self.num_actions, self.key_dim, self.capacity, self.k = num_actions, key_dim, capacity, k
        self.index, self.eviction, self.empty_value = index, eviction, float(empty_value)
        self.buffers = [ActionBuffer(capacity, key_dim, index, nprobe=nprobe, seed=seed + a)
                        for a in range(num_actions)]

    @property
    def sizes(self) -> list[int]:
        """Keys stored per action."""
        return [buf.size for buf in self.buffers]

    @property
    def size(self) -> int:
        """Keys stored over all actions."""
        return sum(self.sizes)

    def _check_keys(self, keys: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        if keys.ndim != 2 or keys.shape[1] != self.key_dim:
            raise ValueError(f"keys must be [B, key_dim={self.key_dim}], got shape {keys.shape}: check that the "
                             f"representation's dim matches the memory's key_dim")
        if not np.isfinite(keys).all():
            raise ValueError("keys contain NaN or inf: the representation produced non-finite embeddings")
        return keys

    def estimate(self, keys: np.ndarray) -> Estimate:
        """Eq. 2 for every action.

        :param keys: float32 ``[B, key_dim]`` (other float dtypes are converted).
        :return: :class:`Estimate` with ``values`` float32 ``[B, A]`` and ``exact`` bool ``[B, A]``.
        """
        keys = self._check_keys(keys)
        key_bytes = [row.tobytes() for row in keys]
        hashes = [hash(kb) for kb in key_bytes]  # once for all actions
        values = np.empty((len(keys), self.num_actions), dtype=np.float32)
        exact = np.empty((len(keys), self.num_actions), dtype=bool)
        touch = self.eviction == "lru_used"
        for a, buf in enumerate(self.buffers):
            values[:, a], exact[:, a] = buf.estimate(keys, key_bytes, hashes, self.k, self.empty_value, touch)
        return Estimate(values, exact)

    def update(self, keys: np.ndarray, actions: np.ndarray, returns: np.ndarray) -> None:
        """Eq. 1 for the steps of an episode (or several): max-update stored keys, insert new ones.

        :param keys: float32 ``[T, key_dim]``, the states' keys.
        :param actions: int ``[T]`` in ``[0, num_actions)``, the actions taken.
        :param returns: float ``[T]``, the returns that followed (:func:`discounted_returns`).
        Steps of the same action are applied in the given order (it decides which entries an overflowing
        batch evicts); each buffer's index is told of its written slots once per call.
        """
        keys = self._check_keys(keys)
        actions = np.asarray(actions)
        returns = np.asarray(returns, dtype=np.float32)
        if actions.shape != (len(keys),) or returns.shape != (len(keys),):
            raise ValueError(f"actions and returns must be [T] with T = {len(keys)} keys, got shapes "
                             f"{actions.shape} and {returns.shape}")
        if len(keys) == 0:
            return
        if not np.issubdtype(actions.dtype, np.integer) or actions.min() < 0 or actions.max() >= self.num_actions:
            raise ValueError(f"actions must be integers in [0, {self.num_actions}), got {actions.dtype} in "
                             f"[{actions.min()}, {actions.max()}]")
        if not np.isfinite(returns).all():
            raise ValueError("returns contain NaN or inf: check the rewards (and gamma) they were computed from")
        key_bytes = [row.tobytes() for row in keys]
        hashes = [hash(kb) for kb in key_bytes]
        for a in np.unique(actions).tolist():
            rows = np.flatnonzero(actions == a).tolist()
            self.buffers[a].write(keys[rows], returns[rows], [key_bytes[t] for t in rows], [hashes[t] for t in rows])

    def state_dict(self) -> dict[str, Any]:
        """Everything stored, as numpy arrays and ints (buffers concatenated in action order, ``sizes`` splits
        them); the k-NN indexes are rebuilt on load (an IVF index from its saved cells)."""
        sizes = self.sizes
        state: dict[str, Any] = {
            "num_actions": self.num_actions, "key_dim": self.key_dim, "capacity": self.capacity,
            "sizes": np.asarray(sizes, dtype=np.int64),
            "clocks": np.asarray([buf.clock for buf in self.buffers], dtype=np.int64),
            "keys": np.concatenate([buf.keys[:n] for buf, n in zip(self.buffers, sizes)]),  # float32 [N, D]
            "values": np.concatenate([buf.values[:n] for buf, n in zip(self.buffers, sizes)]),  # float32 [N]
            "last_use": np.concatenate([buf.last_use[:n] for buf, n in zip(self.buffers, sizes)]),  # int64 [N]
        }
        for a, buf in enumerate(self.buffers):
            for name, value in buf.index.state_dict().items():
                state[f"index.{a}.{name}"] = value
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; later estimates are identical. The settings ``k``, ``index``,
        ``eviction`` are this object's and may differ from the saved memory's (a saved IVF memory loads into a
        flat one and back)."""
        if int(state["key_dim"]) != self.key_dim:
            raise ValueError(f"the saved memory's keys have {int(state['key_dim'])} entries, this memory's "
                             f"representation gives {self.key_dim}: its keys cannot be compared with the saved "
                             f"ones. Use the representation the memory was built with (representation.kind, .dim "
                             f"and .path in its run's config.yaml).")
        for name in ("num_actions", "capacity"):
            if int(state[name]) != getattr(self, name):
                raise ValueError(f"the saved memory has {name}={int(state[name])}, this one {getattr(self, name)}: "
                                 f"build the memory with the saved settings")
        sizes = np.asarray(state["sizes"], dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        for a, buf in enumerate(self.buffers):
            lo, hi = int(bounds[a]), int(bounds[a + 1])
            buf.size, buf.clock = hi - lo, int(state["clocks"][a])
            buf.keys[: buf.size] = state["keys"][lo:hi]
            buf.values[: buf.size] = state["values"][lo:hi]
            buf.last_use[: buf.size] = state["last_use"][lo:hi]
            buf.rehash()
            prefix = f"index.{a}."
            buf.index.load_state_dict({n[len(prefix):]: v for n, v in state.items() if n.startswith(prefix)},
                                      buf.size)
