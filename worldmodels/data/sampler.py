"""Uniform random k-step windows from a whole split held in memory (for models that train on many passes).

:class:`worldmodels.data.TrajectoryDataset` streams shard by shard, so its shuffled windows come from one
shard at a time: fine for one pass over frames, but a batch of video-prediction windows drawn from one
shard comes from a handful of episodes, and consecutive batches are correlated. :class:`WindowSampler`
instead loads every (checksum-verified) shard of a split once and draws each window uniformly from all of
them, like a replay buffer. 100k 84x84 frames take 0.7 GB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worldmodels.data.format import FIELDS, SKIP_HINT, DatasetError, nothing_left
from worldmodels.data.reader import OnCorrupt, TrajectoryDataset


class WindowSampler:
    """Random windows of ``length`` consecutive frames of one episode, drawn uniformly from a split.

    :param root: dataset folder.
    :param split: ``"train"`` or ``"heldout"``.
    :param length: frames per window.
    :param seed: seeds the draws.
    :param on_corrupt: as for :class:`TrajectoryDataset`: a bad shard raises, or is skipped with a warning.
    :param skip_hint: as for :class:`TrajectoryDataset`: the calling command's way to skip bad shards.
    :raises DatasetError: bad dataset, every shard of the split skipped as corrupt, or no episode of the split is
        ``length`` frames long.
    """

    def __init__(self, root: str | Path, split: str = "train", length: int = 2, *, seed: int = 0,
                 on_corrupt: OnCorrupt = "error", skip_hint: str = SKIP_HINT) -> None:
        ds = TrajectoryDataset(root, split, on_corrupt=on_corrupt, skip_hint=skip_hint)
        self.root, self.split = Path(root), split
        self.manifest = ds.manifest
        parts = [a for a in (ds.load_shard(e) for e in ds.shards) if a is not None]
        if not parts:
            raise nothing_left(root, split, ds.skipped)
        self.arrays: dict[str, np.ndarray] = {k: np.concatenate([p[k] for p in parts]) for k in FIELDS}
        self.skipped = list(ds.skipped)
        self.rng = np.random.default_rng(seed)
        self.length = 0
        self.starts = np.zeros(0, dtype=np.int64)
        self.set_length(length)

    @property
    def num_frames(self) -> int:
        return len(self.arrays["frames"])

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return tuple(self.arrays["frames"].shape[1:])

    def set_length(self, length: int) -> None:
        """Change the window length (a curriculum lengthens it); recomputes the valid starts.

        :raises DatasetError: no episode has ``length`` frames.
        """
        if length < 1:
            raise DatasetError(f"window length {length} must be positive.")
        ids = self.arrays["episode_ids"]
        # Episodes are contiguous, so a window lies in one episode iff its first and last rows agree.
        starts = (np.flatnonzero(ids[: len(ids) - length + 1] == ids[length - 1:]) if len(ids) >= length
                  else np.zeros(0, np.int64))
        if not len(starts):
            raise DatasetError(f"no episode in this split has {length} frames ({self.split!r} split of {self.root}); "
                               f"collect longer episodes or use a shorter horizon.")
        self.length, self.starts = length, np.asarray(starts, dtype=np.int64)

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """``batch_size`` windows: every field with shape ``[B, length, ...]`` (frames uint8 ``[B, L, H, W]``)."""
        t = self.starts[self.rng.integers(0, len(self.starts), batch_size)]
        idx = t[:, None] + np.arange(self.length)[None]
        return {k: v[idx] for k, v in self.arrays.items()}

    def mean_frame(self) -> np.ndarray:
        """float32 ``[H, W]`` (or ``[H, W, C]``): the mean frame of the split on the [0, 1] scale."""
        total = np.zeros(self.frame_shape, dtype=np.float64)
        frames = self.arrays["frames"]
        for b in range(0, len(frames), 4096):  # chunks: a float64 copy of the whole split would be 8x its size
            total += frames[b: b + 4096].sum(0, dtype=np.float64)
        return (total / (255.0 * len(frames))).astype(np.float32)
