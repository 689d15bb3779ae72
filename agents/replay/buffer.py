"""Ape-X style prioritised replay that stores every frame once.

Actors send :class:`~agents.replay.nstep.Chunk` s: new frames plus n-step transitions that refer to frames by
actor-local ids. The replay keeps

* per shard (shard = actor_id % num_shards) a FIFO ring of ``capacity // num_shards`` transition slots and a
  FIFO ring of ``F = slots + frame_margin`` frames; one extra always-zero frame (the last row of the frame
  array, shared by all shards) stands for the -1 padding at episode starts;
* per transition the *resolved* frame-array rows of its two stacks (int32 [S] each), so sampling is two fancy
  indexing gathers and no id arithmetic;
* one sum tree over all slots for proportional sampling (Schaul et al. 2016), stratified over B segments.

Actor-local ids are turned into rows when a chunk arrives, with a per-actor mapping (a list of contiguous
segments, id -> absolute frame position in the shard, usually a single offset). Absolute positions count every
frame ever written to the shard; a position p lives in row ``p % F`` while ``p >= written - F``. A new
``incarnation`` of an actor (restart) starts a new mapping; transitions added before keep their resolved rows.

Invariant: a live transition never refers to an overwritten frame. Before frames are written over, every live
transition whose oldest referenced position would be overwritten is evicted (priority 0, marked invalid, its
generation bumped). Finding them is cheap and exact: a transition's oldest reference lags the shard's frame
count at its insertion by at most ``max_lag`` (tracked), and insertion counts grow along the FIFO, so only a
prefix of the ring can hold victims.

Frame margin (default ``slots // 16 + 256``): each agent step adds one frame and one transition, and each
episode adds one more frame (its reset frame), so ``slots`` transitions of episodes of length L span about
``slots * (1 + 1/L)`` frames, plus the frames of chunks in flight and of transitions still pending at the
actors (a few hundred per actor). A margin of 1/16 keeps the transition ring, not the frame ring, the binding
limit for episodes of 16 or more agent steps (every Atari game in practice, also with life loss as terminal)
and keeps 1M transitions of 84x84 frames near 7.6 GB. Shorter episodes still work: the frame ring then evicts
the oldest transitions a little earlier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.replay.nstep import Chunk
from agents.replay.sum_tree import SumTree

_GONE = np.iinfo(np.int64).min // 4  # absolute position of a frame whose mapping was pruned (overwritten)
_PAD = np.iinfo(np.int64).max // 4  # absolute position used for -1 padding (never overwritten)

# Per-transition arrays: name -> (columns or None for 1-D, dtype). Frame refs are rows of the frame array.
_TRANSITION_ARRAYS: dict[str, tuple[str | None, type]] = {
    "obs_ref": ("stack", np.int32),
    "next_ref": ("stack", np.int32),
    "actions": (None, np.int64),
    "returns": (None, np.float32),
    "discounts": (None, np.float32),
    "mc_returns": (None, np.float32),  # Monte Carlo return to the episode end (mixed MC target), NaN = unknown
    "valid": (None, np.bool_),
    "generation": (None, np.int64),  # bumped whenever the slot is overwritten or evicted
    "insert_w": (None, np.int64),  # shard frame count right after the chunk that inserted it
    "min_ref": (None, np.int64),  # oldest absolute frame position it refers to
}


def stacked_shape(stack: int, frame_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of one stacked observation, the environment's observation shape: ``(S, H, W)`` for frames ``(H, W)``
    (Atari luminance), ``(S * C, H, W)`` for channels-first frames ``(C, H, W)`` (MinAtar: S = 1 gives ``(C, H, W)``),
    the frames' channels concatenated oldest first."""
    if len(frame_shape) == 2:
        return (stack, *frame_shape)
    return (stack * frame_shape[0], *frame_shape[1:])


def check_frame_shape(frame_shape: tuple[int, ...]) -> tuple[int, ...]:
    """``frame_shape`` as a tuple of ints, checked: ``(H, W)`` or channels-first ``(C, H, W)``, all positive."""
    shape = tuple(int(x) for x in frame_shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(
            f"frame_shape must be (H, W) or channels-first (C, H, W) with positive sizes, got {tuple(frame_shape)}"
        )
    return shape


@dataclass
class ReplayBatch:
    """A sampled batch of B transitions (S = stack; a frame is (H, W), or (C, H, W) channels first).

    ``obs`` and ``next_obs`` have the environment's observation shape: ``[B, S, H, W]`` for 2-D frames,
    ``[B, S * C, H, W]`` for 3-D frames (MinAtar, S = 1: ``[B, C, 10, 10]``); see :func:`stacked_shape`.
    """

    obs: np.ndarray  # uint8 [B, S, H, W] (or [B, S * C, H, W]) stacked s_t, oldest frame first
    actions: np.ndarray  # int64 [B]
    returns: np.ndarray  # float32 [B] n-step discounted return
    discounts: np.ndarray  # float32 [B] gamma^k, or 0 after termination
    next_obs: np.ndarray  # uint8 [B, S, H, W] (or [B, S * C, H, W]) stacked s_{t+k}
    weights: np.ndarray  # float32 [B] importance weights (N P(i))^-beta / max over the batch; ones if uniform
    indices: np.ndarray  # int64 [B] replay slots, for update_priorities
    generations: np.ndarray  # int64 [B] slot generations at sampling time, for update_priorities
    mc_returns: np.ndarray | None  # float32 [B] Monte Carlo returns (NaN where unknown); None if not asked for


@dataclass
class _Stream:
    """Id -> absolute frame position mapping of one actor incarnation (segments sorted by first id)."""

    incarnation: int
    base_id: int  # first frame id this incarnation sent
    next_id: int  # first_frame_id the next chunk must have
    seg_first: np.ndarray  # int64 [G] first frame id of each contiguous segment
    seg_abs: np.ndarray  # int64 [G] absolute shard position of that frame
    seg_count: np.ndarray  # int64 [G] frames in the segment


def _rng_state_to_array(rng: np.random.Generator) -> np.ndarray:
    st = rng.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise ValueError(f"only PCG64 generators can be saved, got {st['bit_generator']}")
    mask = (1 << 64) - 1
    s, inc = st["state"]["state"], st["state"]["inc"]
    return np.array(
        [s >> 64, s & mask, inc >> 64, inc & mask, st["has_uint32"], st["uinteger"]], dtype=np.uint64
    )


def _rng_from_array(arr: np.ndarray) -> np.random.Generator:
    a = [int(x) for x in np.asarray(arr, dtype=np.uint64)]
    rng = np.random.default_rng()
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (a[0] << 64) | a[1], "inc": (a[2] << 64) | a[3]},
        "has_uint32": a[4],
        "uinteger": a[5],
    }
    return rng


class PrioritizedReplay:
    """Sharded, frame-deduplicated, proportional prioritised replay of n-step transitions.

    :param capacity: total transition slots (each of ``num_shards`` shards gets ``capacity // num_shards``).
    :param num_shards: shards; actor ``a`` writes to shard ``a % num_shards``. Several actors may share one.
    :param stack: S, frames per stacked observation.
    :param frame_shape: (H, W) of a uint8 frame, or (C, H, W) for channels-first frames (MinAtar); sampled
        observations then come out as [B, S * C, H, W] (see :class:`ReplayBatch`).
    :param alpha: priority exponent: P(i) = p_i^alpha / sum_k p_k^alpha.
    :param beta: default importance-sampling exponent (``sample(beta=...)`` overrides it, e.g. annealed).
    :param eps: added to |TD error| so that no transition gets probability 0.
    :param prioritized: False samples uniformly among live transitions and returns unit weights.
    :param seed: seeds the sampling generator.
    :param frame_margin: frames per shard beyond ``slots`` (None: ``slots // 16 + 256``, see module doc).
    """

    def __init__(
        self,
        capacity: int,
        num_shards: int = 1,
        stack: int = 4,
        frame_shape: tuple[int, ...] = (84, 84),
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        prioritized: bool = True,
        seed: int = 0,
        frame_margin: int | None = None,
    ) -> None:
        slots, frames_per_shard = self._sizes(capacity, num_shards, frame_margin)
        if stack < 1:
            raise ValueError(f"stack must be >= 1, got {stack}")
        if alpha < 0 or beta < 0 or eps < 0:
            raise ValueError(f"alpha, beta, eps must be >= 0, got {alpha}, {beta}, {eps}")
        self.num_shards = int(num_shards)
        self.slots_per_shard = slots
        self.capacity = slots * self.num_shards
        self.frames_per_shard = frames_per_shard
        self.stack = int(stack)
        self.frame_shape = check_frame_shape(frame_shape)
        self.obs_shape = stacked_shape(self.stack, self.frame_shape)  # one sampled observation
        self.alpha, self.beta, self.eps = float(alpha), float(beta), float(eps)
        self.prioritized = bool(prioritized)
        self._rng = np.random.default_rng(seed)

        # np.zeros maps untouched pages lazily: a 1M replay does not commit its ~7.5 GB of frames up front.
        self._frames = np.zeros((self.num_shards * frames_per_shard + 1, *self.frame_shape), np.uint8)
        self._zero_row = self.num_shards * frames_per_shard
        self._t: dict[str, np.ndarray] = {}
        for name, (cols, dtype) in _TRANSITION_ARRAYS.items():
            shape = (self.capacity, self.stack) if cols else (self.capacity,)
            self._t[name] = np.zeros(shape, dtype)
        self._tree = SumTree(self.capacity)

        self._frames_written = np.zeros(self.num_shards, np.int64)  # absolute frame count per shard
        self._trans_written = np.zeros(self.num_shards, np.int64)  # transitions ever inserted per shard
        self._evict_start = np.zeros(self.num_shards, np.int64)  # FIFO index before which all are dead
        self._max_lag = np.zeros(self.num_shards, np.int64)  # max of insert_w - min_ref ever inserted
        self._streams: dict[int, _Stream] = {}
        self._num_valid = 0
        self.num_added = 0  # transitions ever inserted
        self.num_dropped = 0  # transitions refused because a frame they need was already overwritten
        self.num_evicted = 0  # live transitions evicted to free frames

    # ------------------------------------------------------------------------------------------- sizing
    @staticmethod
    def _sizes(capacity: int, num_shards: int, frame_margin: int | None) -> tuple[int, int]:
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        slots = int(capacity) // int(num_shards)
        if slots < 1:
            raise ValueError(f"capacity {capacity} gives no slot to each of {num_shards} shards: raise it")
        margin = slots // 16 + 256 if frame_margin is None else int(frame_margin)
        if margin < 0:
            raise ValueError(f"frame_margin must be >= 0, got {frame_margin}")
        return slots, slots + margin

    @staticmethod
    def bytes_for(
        capacity: int,
        num_shards: int = 1,
        stack: int = 4,
        frame_shape: tuple[int, ...] = (84, 84),
        frame_margin: int | None = None,
    ) -> int:
        """Bytes of all arrays a replay with these settings allocates (without allocating them)."""
        slots, fps = PrioritizedReplay._sizes(capacity, num_shards, frame_margin)
        cap = slots * num_shards
        total = (num_shards * fps + 1) * int(np.prod(check_frame_shape(frame_shape)))
        for cols, dtype in _TRANSITION_ARRAYS.values():
            total += cap * (stack if cols else 1) * np.dtype(dtype).itemsize
        return int(total + SumTree.bytes_for(cap))

    def memory_bytes(self) -> int:
        """Planned bytes of the replay's arrays (pages are committed only as they are written)."""
        return int(self._frames.nbytes + sum(a.nbytes for a in self._t.values()) + self._tree.nbytes)

    def __len__(self) -> int:
        """Live (sampleable) transitions."""
        return self._num_valid

    # --------------------------------------------------------------------------------------------- adding
    def _check_chunk(self, c: Chunk) -> None:
        S = self.stack
        if c.frames.dtype != np.uint8 or c.frames.shape[1:] != self.frame_shape:
            raise ValueError(
                f"chunk.frames must be uint8 [M, {', '.join(map(str, self.frame_shape))}], got {c.frames.dtype} "
                f"{c.frames.shape}"
            )
        T = len(c.actions)
        for name, shape in (("obs_ids", (T, S)), ("next_ids", (T, S)), ("actions", (T,)), ("returns", (T,)),
                            ("discounts", (T,)), ("priorities", (T,)), ("mc_returns", (T,))):
            arr = getattr(c, name)
            if arr is None and name == "mc_returns":
                continue
            if arr.shape != shape:
                raise ValueError(
                    f"chunk.{name} has shape {arr.shape}, expected {shape} (T={T} transitions, stack={S}; "
                    "the builder's stack must equal the replay's)"
                )
        for name in ("obs_ids", "next_ids", "actions"):
            if not np.issubdtype(getattr(c, name).dtype, np.integer):
                raise ValueError(f"chunk.{name} must be an integer array, got {getattr(c, name).dtype}")
        if T and (c.obs_ids[:, -1].min() < 0 or c.next_ids[:, -1].min() < 0):
            raise ValueError(
                "the newest frame of every stack (last column of obs_ids/next_ids) must be a real id, not -1"
            )
        pr = c.priorities
        if np.any(pr[~np.isnan(pr)] < 0) or np.any(np.isinf(pr)):
            raise ValueError("chunk.priorities must be >= 0 and finite (NaN = unknown)")

    def add(self, chunk: Chunk) -> None:
        """Copy the chunk's frames in and insert its transitions (priority ``(p + eps)^alpha``; NaN p gets the
        current max priority, which starts at 1).

        :raises ValueError: if ``first_frame_id`` does not continue this actor incarnation's previous chunk (a
            lost chunk), or a transition refers to a frame id the actor never sent.
        """
        self._check_chunk(chunk)
        actor = int(chunk.actor_id)
        shard = actor % self.num_shards
        M = int(chunk.frames.shape[0])
        first = int(chunk.first_frame_id)
        stream = self._streams.get(actor)
        if stream is None or stream.incarnation != int(chunk.incarnation):
            empty = np.empty(0, np.int64)
            stream = _Stream(int(chunk.incarnation), first, first, empty, empty, empty)
        elif first != stream.next_id:
            if first > stream.next_id:
                what = f"a gap of frame ids [{stream.next_id}, {first}) (a chunk was lost)"
            else:
                what = (
                    f"an overlap of frame ids [{first}, {stream.next_id}) (a chunk sent twice, or a restarted"
                    " actor whose builder drew the same incarnation: build NStepBuilder with seed=None where "
                    "actors can restart or a run can resume)"
                )
            raise ValueError(
                f"actor {actor} (incarnation {chunk.incarnation}): chunk starts at frame id {first} but the "
                f"next expected id is {stream.next_id}: {what}; add each chunk of a builder once, in order"
            )
        end_id = first + M
        ids = np.concatenate([chunk.obs_ids, chunk.next_ids], axis=1).astype(np.int64)
        bad = (ids < -1) | ((ids != -1) & ((ids < stream.base_id) | (ids >= end_id)))
        if bad.any():
            raise ValueError(
                f"actor {actor}: a transition refers to frame id {int(ids[bad][0])}, which this incarnation "
                f"never sent (sent ids [{stream.base_id}, {end_id})); send frames before or with their "
                "transitions"
            )

        # Commit the mapping: this chunk's frames occupy absolute positions [W, W + M) of the shard.
        F = self.frames_per_shard
        W = int(self._frames_written[shard])
        W_new = W + M
        if M:
            if len(stream.seg_first) and stream.seg_first[-1] + stream.seg_count[-1] == first and (
                stream.seg_abs[-1] + stream.seg_count[-1] == W
            ):
                stream.seg_count = stream.seg_count.copy()
                stream.seg_count[-1] += M
            else:
                stream.seg_first = np.append(stream.seg_first, first)
                stream.seg_abs = np.append(stream.seg_abs, W)
                stream.seg_count = np.append(stream.seg_count, M)
        stream.next_id = end_id
        self._streams[actor] = stream

        gone_below = W_new - F  # after this write, positions < gone_below are overwritten
        self._evict(shard, gone_below)
        self._write_frames(shard, W, chunk.frames)
        self._frames_written[shard] = W_new
        live_seg = stream.seg_abs + stream.seg_count > gone_below
        if not live_seg.all():
            stream.seg_first, stream.seg_abs, stream.seg_count = (
                stream.seg_first[live_seg], stream.seg_abs[live_seg], stream.seg_count[live_seg])

        T = len(chunk.actions)
        if T == 0:
            return
        pos = self._to_abs(stream, ids)
        min_ref = pos.min(axis=1)
        sel = np.flatnonzero(min_ref >= gone_below)  # a frame of the others is already overwritten
        self.num_dropped += T - len(sel)
        sel = sel[-self.slots_per_shard :]  # a chunk larger than the ring keeps its newest transitions
        if len(sel) == 0:
            return
        pos, min_ref = pos[sel], min_ref[sel]
        rows = np.where(pos == _PAD, self._zero_row, shard * F + pos % F).astype(np.int32)
        S = self.stack
        if self.prioritized:
            p = chunk.priorities[sel].astype(np.float64)
            unknown = np.isnan(p)
            known = (np.where(unknown, 0.0, p) + self.eps) ** self.alpha
            prio = np.where(unknown, self._max_priority(), known)
        else:
            prio = np.ones(len(sel))
        self._insert(
            shard,
            {
                "obs_ref": rows[:, :S],
                "next_ref": rows[:, S:],
                "actions": chunk.actions[sel],
                "returns": chunk.returns[sel],
                "discounts": chunk.discounts[sel],
                "mc_returns": np.nan if chunk.mc_returns is None else chunk.mc_returns[sel],
                "insert_w": np.full(len(sel), W_new, np.int64),
                "min_ref": min_ref,
            },
            prio,
        )
        self._max_lag[shard] = max(int(self._max_lag[shard]), int((W_new - min_ref).max()))

    def _to_abs(self, stream: _Stream, ids: np.ndarray) -> np.ndarray:
        """Actor-local ids (int64 [T, 2S], -1 = padding) -> absolute shard positions int64 [T, 2S].

        Padding maps to _PAD; ids whose segment was pruned (frames overwritten) map to _GONE.
        """
        out = np.full(ids.shape, _PAD, np.int64)
        real = ids >= 0
        x = ids[real]
        res = np.full(len(x), _GONE, np.int64)
        if len(stream.seg_first):
            k = np.searchsorted(stream.seg_first, x, side="right") - 1
            kc = np.maximum(k, 0)
            off = x - stream.seg_first[kc]
            inside = (k >= 0) & (off < stream.seg_count[kc])
            res = np.where(inside, stream.seg_abs[kc] + off, _GONE)
        out[real] = res
        return out

    def _write_frames(self, shard: int, W: int, frames: np.ndarray) -> None:
        F = self.frames_per_shard
        M = len(frames)
        if M > F:  # only the newest F survive anyway
            frames, W = frames[M - F :], W + M - F
            M = F
        start = W % F
        base = shard * F
        first = min(M, F - start)
        self._frames[base + start : base + start + first] = frames[:first]
        if first < M:
            self._frames[base : base + M - first] = frames[first:]

    def _insert(self, shard: int, cols: dict[str, np.ndarray | float], prio: np.ndarray) -> None:
        """Write ``cols`` (arrays of ``len(prio)`` rows, or a scalar for every row) into the next slots."""
        K = len(prio)
        slots = self.slots_per_shard
        j0 = int(self._trans_written[shard])
        idx = shard * slots + (j0 + np.arange(K)) % slots
        t = self._t
        self._num_valid -= int(t["valid"][idx].sum())
        for name, v in cols.items():
            t[name][idx] = v
        t["valid"][idx] = True
        t["generation"][idx] += 1
        self._tree.update(idx, prio)
        self._trans_written[shard] = j0 + K
        self._num_valid += K
        self.num_added += K

    def _evict(self, shard: int, gone_below: int) -> None:
        """Evict live transitions of ``shard`` that refer to absolute frame positions < ``gone_below``."""
        if gone_below <= 0:
            return
        slots = self.slots_per_shard
        base = shard * slots
        lo = max(int(self._evict_start[shard]), int(self._trans_written[shard]) - slots)
        hi = int(self._trans_written[shard])
        if lo >= hi:
            return
        insert_w = self._t["insert_w"]
        # Transitions inserted when the shard held >= gone_below + max_lag frames refer only to positions
        # >= gone_below; insert_w grows along the FIFO, so the candidates are the prefix before that point.
        limit = gone_below + int(self._max_lag[shard])
        a, b = lo, hi
        while a < b:
            mid = (a + b) // 2
            if insert_w[base + mid % slots] < limit:
                a = mid + 1
            else:
                b = mid
        if a == lo:
            return
        cand = base + np.arange(lo, a) % slots
        valid = self._t["valid"]
        victims = cand[valid[cand] & (self._t["min_ref"][cand] < gone_below)]
        if len(victims):
            valid[victims] = False
            self._t["generation"][victims] += 1
            self._tree.update(victims, np.zeros(len(victims)))
            self._num_valid -= len(victims)
            self.num_evicted += len(victims)
        still = np.flatnonzero(valid[cand])
        self._evict_start[shard] = lo + (int(still[0]) if len(still) else len(cand))

    def _max_priority(self) -> float:
        """Priority (already raised to alpha) given to transitions whose TD error is unknown."""
        return max(1.0, self._tree.max_value)

    # ------------------------------------------------------------------------------------------- sampling
    def sample(self, batch_size: int, beta: float | None = None, out: dict[str, np.ndarray] | None = None,
               mc_returns: bool = True) -> ReplayBatch:
        """Sample ``batch_size`` transitions: proportional to priority^alpha by stratified segments (one
        uniform draw in each of B equal slices of the total mass), or uniformly if not prioritized.

        :param beta: importance-sampling exponent for this batch (default: the constructor's beta).
        :param out: preallocated arrays to gather into (``obs``, ``next_obs``, ``actions``, ``returns``,
            ``discounts``, ``weights`` and, with ``mc_returns``, ``mc_returns``; shapes and dtypes as in
            :class:`ReplayBatch`, e.g. views of a pinned :class:`~worldmodels.common.device.StagingBuffer`); the
            returned batch then holds those arrays. Default: new arrays.
        :param mc_returns: gather the Monte Carlo returns (False: ``mc_returns`` is None, e.g. ``agent.mc_mix = 0``).
        :raises ValueError: if the replay holds no live transition.
        """
        if self._num_valid == 0:
            raise ValueError("cannot sample from an empty replay: add chunks first")
        B = int(batch_size)
        if B < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        total = self._tree.total()
        targets = (np.arange(B) + self._rng.random(B)) * (total / B)
        idx = self._tree.find_prefix(targets)
        if self.prioritized:
            b = self.beta if beta is None else float(beta)
            probs = self._tree.get(idx) / total
            w = (self._num_valid * probs) ** (-b)
            weights = (w / w.max()).astype(np.float32)
        else:
            weights = np.ones(B, np.float32)
        t = self._t
        shape = (B, *self.obs_shape)  # a free reshape of the freshly gathered [B, S, *frame_shape]
        if out is None:
            return ReplayBatch(
                obs=self._frames[t["obs_ref"][idx]].reshape(shape),
                actions=t["actions"][idx],
                returns=t["returns"][idx],
                discounts=t["discounts"][idx],
                next_obs=self._frames[t["next_ref"][idx]].reshape(shape),
                weights=weights,
                indices=idx,
                generations=t["generation"][idx],
                mc_returns=t["mc_returns"][idx] if mc_returns else None,
            )
        # The same gathers straight into the caller's arrays (mode="clip": no bounds-check buffering; rows are valid).
        frames_out = (B * self.stack, *self.frame_shape)
        np.take(self._frames, t["obs_ref"][idx].ravel(), axis=0, out=out["obs"].reshape(frames_out), mode="clip")
        np.take(self._frames, t["next_ref"][idx].ravel(), axis=0, out=out["next_obs"].reshape(frames_out),
                mode="clip")
        for name in ("actions", "returns", "discounts", *(("mc_returns",) if mc_returns else ())):
            np.take(t[name], idx, out=out[name], mode="clip")
        out["weights"][...] = weights
        return ReplayBatch(obs=out["obs"], actions=out["actions"], returns=out["returns"],
                           discounts=out["discounts"], next_obs=out["next_obs"], weights=out["weights"],
                           indices=idx, generations=t["generation"][idx],
                           mc_returns=out["mc_returns"] if mc_returns else None)

    def update_priorities(
        self, indices: np.ndarray, td_errors: np.ndarray, generations: np.ndarray | None = None
    ) -> None:
        """Set priority ``(|td| + eps)^alpha`` for sampled slots.

        :param indices: int64 [B] from ``ReplayBatch.indices``.
        :param td_errors: float [B] TD errors of those transitions.
        :param generations: int64 [B] from ``ReplayBatch.generations``; slots evicted or overwritten since
            sampling are skipped (slots no longer live are skipped in any case).
        """
        idx = np.asarray(indices)
        td = np.asarray(td_errors, dtype=np.float64)
        if idx.ndim != 1 or td.shape != idx.shape:
            raise ValueError(
                f"indices and td_errors must be 1-D of equal length, got {idx.shape}, {td.shape}"
            )
        if not np.all(np.isfinite(td)):
            raise ValueError("td_errors contain NaN/inf: check the loss (a diverged network?)")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity):
            raise IndexError(f"indices must lie in [0, {self.capacity})")
        if not self.prioritized:
            return
        keep = self._t["valid"][idx]
        if generations is not None:
            gen = np.asarray(generations, dtype=np.int64)
            if gen.shape != idx.shape:
                raise ValueError(f"generations shape {gen.shape} does not match indices {idx.shape}")
            keep &= self._t["generation"][idx] == gen
        self._tree.update(idx[keep], (np.abs(td[keep]) + self.eps) ** self.alpha)

    # ------------------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        """Replay contents as numpy arrays and Python numbers: only the filled part of each shard's rings
        (everything once they have wrapped), the actor id mappings and the sampling generator's state."""
        slots, F = self.slots_per_shard, self.frames_per_shard
        n_t = np.minimum(self._trans_written, slots)
        n_f = np.minimum(self._frames_written, F)
        d: dict = {
            "capacity": self.capacity,
            "num_shards": self.num_shards,
            "stack": self.stack,
            "frame_shape": list(self.frame_shape),
            "frames_per_shard": F,
            "alpha": self.alpha,
            "prioritized": int(self.prioritized),
            "frames_written": self._frames_written.copy(),
            "trans_written": self._trans_written.copy(),
            "evict_start": self._evict_start.copy(),
            "max_lag": self._max_lag.copy(),
            "tree_max": self._tree.max_value,
            "num_added": self.num_added,
            "num_dropped": self.num_dropped,
            "num_evicted": self.num_evicted,
            "rng": _rng_state_to_array(self._rng),
        }
        # Frames as views (no copy of up to ~7.5 GB) in blocks of <= 1 GiB: pickle protocols < 4, torch.save's
        # default among them, cannot write a single object larger than 4 GiB.
        for s in range(self.num_shards):
            for k, start in enumerate(range(0, int(n_f[s]), self._frames_per_block())):
                stop = min(int(n_f[s]), start + self._frames_per_block())
                d[f"frames.{s}.{k}"] = self._frames[s * F + start : s * F + stop]
        t_rows = np.concatenate([s * slots + np.arange(n_t[s]) for s in range(self.num_shards)])
        for name, arr in self._t.items():
            d[f"t_{name}"] = arr[t_rows]
        d["t_priority"] = self._tree.get(t_rows)
        actors = sorted(self._streams)
        st = [self._streams[a] for a in actors]
        d["stream_actor"] = np.array(actors, np.int64)
        d["stream_incarnation"] = np.array([s.incarnation for s in st], np.int64)
        d["stream_base_id"] = np.array([s.base_id for s in st], np.int64)
        d["stream_next_id"] = np.array([s.next_id for s in st], np.int64)
        d["seg_actor"] = np.concatenate(
            [np.full(len(s.seg_first), a, np.int64) for a, s in zip(actors, st, strict=True)]
            + [np.empty(0, np.int64)]
        )
        for key in ("seg_first", "seg_abs", "seg_count"):
            d[key] = np.concatenate([getattr(s, key) for s in st] + [np.empty(0, np.int64)])
        return d

    def _frames_per_block(self) -> int:
        return max(1, 2**30 // int(np.prod(self.frame_shape)))

    def load_state_dict(self, d: dict) -> None:
        """Restore contents saved by :meth:`state_dict` into a replay built with the same settings."""
        if "frame_shape" in d:
            saved_shape = tuple(int(x) for x in d["frame_shape"])
        elif "frame_height" in d and "frame_width" in d:  # checkpoints from before 3-D frames: (H, W) frames
            saved_shape = (int(d["frame_height"]), int(d["frame_width"]))
        else:
            raise ValueError(
                "replay state_dict lacks 'frame_shape': it was not written by PrioritizedReplay.state_dict"
            )
        if saved_shape != self.frame_shape:
            raise ValueError(
                f"replay state_dict has frame_shape={saved_shape} but this replay has frame_shape="
                f"{self.frame_shape}: build the replay with the settings it was saved with"
            )
        mine = {"capacity": self.capacity, "num_shards": self.num_shards, "stack": self.stack,
                "frames_per_shard": self.frames_per_shard, "alpha": self.alpha,
                "prioritized": int(self.prioritized)}
        for key, val in mine.items():
            if key not in d:
                raise ValueError(
                    f"replay state_dict lacks '{key}': it was not written by PrioritizedReplay.state_dict"
                )
            if (float(d[key]) if key == "alpha" else int(d[key])) != val:
                raise ValueError(
                    f"replay state_dict has {key}={d[key]} but this replay has {key}={val}: build the replay "
                    "with the settings it was saved with"
                )
        slots, F = self.slots_per_shard, self.frames_per_shard
        fw = np.asarray(d["frames_written"], np.int64)
        tw = np.asarray(d["trans_written"], np.int64)
        n_t, n_f = np.minimum(tw, slots), np.minimum(fw, F)
        # Fresh np.zeros, not an in-place fill, so pages past the saved part stay uncommitted.
        self._frames = np.zeros(self._frames.shape, np.uint8)
        for s in range(self.num_shards):
            for k, start in enumerate(range(0, int(n_f[s]), self._frames_per_block())):
                block = np.asarray(d[f"frames.{s}.{k}"], np.uint8)
                self._frames[s * F + start : s * F + start + len(block)] = block
        t_rows = np.concatenate([s * slots + np.arange(n_t[s]) for s in range(self.num_shards)])
        for name, arr in list(self._t.items()):
            self._t[name] = np.zeros(arr.shape, arr.dtype)
            # Checkpoints written before the mc_returns column existed: those returns are unknown (NaN).
            self._t[name][t_rows] = d[f"t_{name}"] if f"t_{name}" in d or name != "mc_returns" else np.nan
        self._tree = SumTree(self.capacity)
        self._tree.update(t_rows, np.asarray(d["t_priority"], np.float64))
        self._tree.max_value = float(d["tree_max"])
        self._frames_written = fw.copy()
        self._trans_written = tw.copy()
        self._evict_start = np.asarray(d["evict_start"], np.int64).copy()
        self._max_lag = np.asarray(d["max_lag"], np.int64).copy()
        self._num_valid = int(self._t["valid"].sum())
        self.num_added = int(d["num_added"])
        self.num_dropped = int(d["num_dropped"])
        self.num_evicted = int(d["num_evicted"])
        self._rng = _rng_from_array(d["rng"])
        self._streams = {}
        seg_actor = np.asarray(d["seg_actor"], np.int64)
        for i, a in enumerate(np.asarray(d["stream_actor"], np.int64)):
            m = seg_actor == a
            self._streams[int(a)] = _Stream(
                incarnation=int(d["stream_incarnation"][i]),
                base_id=int(d["stream_base_id"][i]),
                next_id=int(d["stream_next_id"][i]),
                seg_first=np.asarray(d["seg_first"], np.int64)[m].copy(),
                seg_abs=np.asarray(d["seg_abs"], np.int64)[m].copy(),
                seg_count=np.asarray(d["seg_count"], np.int64)[m].copy(),
            )
