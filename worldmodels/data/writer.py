"""Writing a trajectory dataset: whole episodes in, atomically written shards and a manifest out.

See :mod:`worldmodels.data.format` for the layout. Splits are decided per whole episode, in the order
episodes are added, by a deterministic greedy rule: an episode goes to ``heldout`` while the held-out share
of frames so far (this episode included) would stay at most ``heldout_fraction``; the first episode is
held out whenever the fraction is positive, so even a tiny dataset has held-out data. Each shard is written
to a temp file and renamed (``os.replace``); the manifest is rewritten the same way after every shard, with
``"complete": false`` until :meth:`DatasetWriter.close`.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from worldmodels.common.atomic import atomic_write
from worldmodels.data.format import FIELDS, FORMAT, MANIFEST, SPLITS, DatasetError, sha256_bytes


class DatasetWriter:
    """Accumulates episodes per split and writes a shard whenever a split holds ``shard_frames`` frames.

    :param out_dir: dataset folder; must not exist or be empty (a dataset is never overwritten).
    :param meta: what the data is (game, preset, policy, seed, ...), copied into the manifest.
    :param heldout_fraction: target share of frames in held-out episodes, in [0, 1).
    :param shard_frames: frames after which a split's buffered episodes are written as one shard.
    :param compress: zlib-compress shards (``np.savez_compressed``; Atari frames shrink about 20x).
    :raises DatasetError: if ``out_dir`` holds files already.
    """

    def __init__(self, out_dir: str | Path, meta: dict[str, Any], heldout_fraction: float = 0.1,
                 shard_frames: int = 10_000, compress: bool = True) -> None:
        self.root = Path(out_dir)
        if self.root.exists() and any(self.root.iterdir()):
            raise DatasetError(f"{self.root} is not empty: datasets are never overwritten; choose a new --out.")
        if not 0.0 <= heldout_fraction < 1.0:
            raise DatasetError(f"heldout_fraction={heldout_fraction} must lie in [0, 1).")
        if shard_frames < 1:
            raise DatasetError(f"shard_frames={shard_frames} must be positive.")
        self.root.mkdir(parents=True, exist_ok=True)
        self.meta = dict(meta)
        self.heldout_fraction = heldout_fraction
        self.shard_frames = shard_frames
        self.compress = compress
        self.shards: list[dict[str, Any]] = []
        self._buffers: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in SPLITS}
        self._buffered = dict.fromkeys(SPLITS, 0)
        self._frames = dict.fromkeys(SPLITS, 0)
        self._episodes = dict.fromkeys(SPLITS, 0)
        self._complete = dict.fromkeys(SPLITS, 0)
        self._next_id = 0
        self._shard_index = dict.fromkeys(SPLITS, 0)
        self._created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.frame_shape: tuple[int, ...] | None = None  # (H, W), or (H, W, 3) for RGB

    def add_episode(self, frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                    terminal: bool) -> tuple[int, str]:
        """Add one episode (or the part collected of it).

        :param frames: uint8 ``[T, H, W]``.
        :param actions: int ``[T]``; the last one must be -1 if ``terminal``.
        :param rewards: float ``[T]`` raw rewards.
        :param terminal: the episode ended by game over (its last frame is the terminal observation).
        :return: ``(episode_id, split)``.
        """
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        n = len(frames)
        if n == 0:
            raise ValueError("an episode needs at least one frame.")
        colour = frames.ndim == 4 and frames.shape[-1] == 3
        if not (frames.ndim == 3 or colour) or len(actions) != n or len(rewards) != n:
            raise ValueError(f"episode arrays disagree: frames {frames.shape}, actions {np.shape(actions)}, "
                             f"rewards {np.shape(rewards)}; expected [T, H, W] (or [T, H, W, 3]), [T], [T].")
        if self.frame_shape is None:
            self.frame_shape = tuple(int(d) for d in frames.shape[1:])
        elif frames.shape[1:] != self.frame_shape:
            raise ValueError(f"frame shape {frames.shape[1:]} differs from the dataset's {self.frame_shape}.")
        actions = np.asarray(actions, dtype=np.int64)
        if terminal and actions[-1] != -1:
            raise ValueError("a terminal episode's last frame has no action: its actions[-1] must be -1.")
        total = sum(self._frames.values()) + n
        split = "heldout" if self._frames["heldout"] + n <= self.heldout_fraction * total or (
            self.heldout_fraction > 0 and self._frames["heldout"] == 0) else "train"
        episode_id = self._next_id
        self._next_id += 1
        terminals = np.zeros(n, dtype=bool)
        terminals[-1] = bool(terminal)
        self._buffers[split].append({
            "frames": frames, "actions": actions, "rewards": np.asarray(rewards, dtype=np.float32),
            "terminals": terminals, "episode_ids": np.full(n, episode_id, dtype=np.int64)})
        self._buffered[split] += n
        self._frames[split] += n
        self._episodes[split] += 1
        self._complete[split] += int(terminal)
        if self._buffered[split] >= self.shard_frames:
            self._flush(split)
        return episode_id, split

    @property
    def frames(self) -> int:
        """Frames added so far (both splits)."""
        return sum(self._frames.values())

    def _flush(self, split: str) -> None:
        episodes = self._buffers[split]
        if not episodes:
            return
        # Values typed Any: mypy matches **arrays against savez's own `allow_pickle: bool` parameter too.
        arrays: dict[str, Any] = {k: np.concatenate([e[k] for e in episodes]) for k in FIELDS}
        buf = io.BytesIO()
        (np.savez_compressed if self.compress else np.savez)(buf, **arrays)
        data = buf.getvalue()
        name = f"{split}/shard_{self._shard_index[split]:05d}.npz"
        atomic_write(self.root / name, data)
        self._shard_index[split] += 1
        self.shards.append({
            "file": name, "split": split, "frames": int(len(arrays["frames"])), "episodes": len(episodes),
            "episode_ids": [int(e["episode_ids"][0]) for e in episodes], "sha256": sha256_bytes(data),
            "bytes": len(data)})
        self._buffers[split] = []
        self._buffered[split] = 0
        self._write_manifest(complete=False)

    def manifest(self, complete: bool) -> dict[str, Any]:
        counts = {s: {"frames": self._frames[s], "episodes": self._episodes[s],
                      "complete_episodes": self._complete[s]} for s in SPLITS}
        return {
            "format": FORMAT, **self.meta, "frame_shape": list(self.frame_shape or ()),
            "heldout_fraction": self.heldout_fraction, "created": self._created, "complete": complete,
            "counts": {"frames": self.frames, "episodes": self._next_id, **counts},
            "fields": FIELDS, "shards": self.shards,
        }

    def _write_manifest(self, complete: bool) -> None:
        atomic_write(self.root / MANIFEST, (json.dumps(self.manifest(complete), indent=1) + "\n").encode())

    def close(self, **extra_meta: Any) -> dict[str, Any]:
        """Write the remaining episodes and the final manifest (``"complete": true``); returns the manifest.

        :param extra_meta: fields known only at the end (e.g. emulator frames, wall time).
        """
        for split in SPLITS:
            self._flush(split)
        self.meta.update(extra_meta)
        self._write_manifest(complete=True)
        return self.manifest(complete=True)
