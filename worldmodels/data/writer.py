"""Writing a trajectory dataset: whole episodes in, atomically written shards and a manifest out.

See :mod:`worldmodels.data.format` for the layout. Splits are decided per whole episode, in the order
episodes are added, by a deterministic greedy rule: an episode goes to ``heldout`` while the held-out share
of frames so far (this episode included) would stay at most ``heldout_fraction``; the first episode is
held out whenever the fraction is positive, so even a tiny dataset has held-out data. Each shard is written
to a temp file and renamed (``os.replace``); the manifest is rewritten the same way after every shard, with
``"complete": false`` until :meth:`DatasetWriter.close`, and its counts are those of the shards it lists. So an
interrupted folder is a consistent dataset of the shards written so far, and :meth:`DatasetWriter.reopen`
continues it: the next shard, episode id and split decision follow on from what the manifest lists.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from worldmodels.common.atomic import atomic_write
from worldmodels.data.format import FIELDS, FORMAT, MANIFEST, SPLITS, DatasetError, read_manifest, sha256_bytes

log = logging.getLogger(__name__)

# Manifest keys the writer computes; every other key is the caller's metadata (game, preset, policy, ...).
_COMPUTED = ("format", "frame_shape", "heldout_fraction", "created", "complete", "counts", "fields", "shards")
_SHARD = re.compile(r"shard_(\d+)\.npz")


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
        from worldmodels.common.runlock import LOCK_NAME

        root = Path(out_dir)
        if root.exists() and any(p.name != LOCK_NAME for p in root.iterdir()):  # a writer's own lock file aside
            raise DatasetError(f"{root} is not empty: datasets are never overwritten; choose a new --out (or "
                               f"continue an interrupted collection with `reverie collect ... --resume`).")
        self._setup(root, meta, heldout_fraction, shard_frames, compress)
        self.root.mkdir(parents=True, exist_ok=True)

    def _setup(self, root: Path, meta: dict[str, Any], heldout_fraction: float, shard_frames: int,
               compress: bool) -> None:
        """Check the settings and start with nothing written (:meth:`reopen` then counts what is on disk)."""
        if not 0.0 <= heldout_fraction < 1.0:
            raise DatasetError(f"heldout_fraction={heldout_fraction} must lie in [0, 1).")
        if shard_frames < 1:
            raise DatasetError(f"shard_frames={shard_frames} must be positive.")
        self.root = root
        self.meta = dict(meta)
        self.heldout_fraction = heldout_fraction
        self.shard_frames = shard_frames
        self.compress = compress
        self.shards: list[dict[str, Any]] = []
        self._buffers: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in SPLITS}
        self._buffered = dict.fromkeys(SPLITS, 0)
        self._frames = dict.fromkeys(SPLITS, 0)  # added (written or buffered): what the split rule weighs
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
            "episode_ids": [int(e["episode_ids"][0]) for e in episodes],
            "complete_episodes": int(sum(bool(e["terminals"][-1]) for e in episodes)), "sha256": sha256_bytes(data),
            "bytes": len(data)})
        self._buffers[split] = []
        self._buffered[split] = 0
        self._write_manifest(complete=False)

    def flush(self) -> None:
        """Write every buffered episode now (shards smaller than ``shard_frames``) and a manifest listing them,
        still ``"complete": false``: what an interrupted collection keeps before it stops."""
        for split in SPLITS:
            self._flush(split)
        # Always, even with nothing buffered: an interrupt inside the last manifest write left the old one.
        self._write_manifest(complete=False)

    def update_meta(self, **meta: Any) -> None:
        """Set metadata fields (e.g. emulator frames so far); written with the next manifest."""
        self.meta.update(meta)

    def manifest(self, complete: bool) -> dict[str, Any]:
        """The manifest of the shards written so far (counts are theirs: buffered episodes are not on disk)."""
        counts = {s: {"frames": sum(int(e["frames"]) for e in self.shards if e["split"] == s),
                      "episodes": sum(int(e["episodes"]) for e in self.shards if e["split"] == s),
                      "complete_episodes": sum(int(e["complete_episodes"]) for e in self.shards if e["split"] == s)}
                  for s in SPLITS}
        return {
            "format": FORMAT, **self.meta, "frame_shape": list(self.frame_shape or ()),
            "heldout_fraction": self.heldout_fraction, "created": self._created, "complete": complete,
            "counts": {"frames": sum(c["frames"] for c in counts.values()),
                       "episodes": sum(c["episodes"] for c in counts.values()), **counts},
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

    @classmethod
    def reopen(cls, out_dir: str | Path, shard_frames: int = 10_000, compress: bool = True) -> DatasetWriter:
        """Continue an interrupted dataset: keep the shards its manifest lists and add episodes after them.

        Shard files the manifest does not list (written just before an interruption, before the manifest
        caught up) and leftover temp files are removed, with a warning: nothing refers to them. The split rule
        goes on from the frames on disk; episode ids continue after the largest one written, so they stay
        unique (episodes that were still buffered at the interruption were lost, leaving gaps in the ids).

        :param shard_frames: as for the constructor (need not be the first session's).
        :raises DatasetError: no manifest, a finished dataset (``"complete": true``), or a listed shard that is
            missing or changed size.
        """
        root = Path(out_dir)
        manifest = read_manifest(root)
        if manifest.get("complete", False):
            raise DatasetError(f"{root} is a finished dataset (manifest 'complete': true): it is never changed; "
                               f"collect more frames into a new --out.")
        for entry in manifest["shards"]:
            path = root / entry["file"]
            size = path.stat().st_size if path.is_file() else None
            if size != entry["bytes"]:
                found = "missing" if size is None else f"{size} bytes, the manifest says {entry['bytes']}"
                raise DatasetError(f"{path} is {found}: {root} was changed after its collection stopped; "
                                   f"collect again into a new --out.")
        writer = cls.__new__(cls)
        writer._setup(root, {k: v for k, v in manifest.items() if k not in _COMPUTED},
                      float(manifest["heldout_fraction"]), shard_frames, compress)
        writer.shards = [dict(e) for e in manifest["shards"]]
        for entry in writer.shards:
            if "complete_episodes" not in entry:  # a manifest written before shards counted them
                with np.load(root / entry["file"]) as npz:
                    entry["complete_episodes"] = int(npz["terminals"].sum())  # one flag per ended episode
        on_disk = {s: [e for e in writer.shards if e["split"] == s] for s in SPLITS}
        writer._frames = {s: sum(int(e["frames"]) for e in on_disk[s]) for s in SPLITS}
        writer._next_id = 1 + max((i for e in writer.shards for i in e["episode_ids"]), default=-1)
        writer._shard_index = {s: 1 + max((_shard_number(e["file"]) for e in on_disk[s]), default=-1)
                               for s in SPLITS}
        writer._created = str(manifest.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")))
        shape = manifest.get("frame_shape") or None
        writer.frame_shape = tuple(int(d) for d in shape) if shape else None
        writer._remove_strays()
        return writer

    def _remove_strays(self) -> None:
        """Delete shard files the manifest does not list and temp files of interrupted atomic writes."""
        listed = {self.root / e["file"] for e in self.shards}
        for folder in (self.root, *(self.root / s for s in SPLITS)):
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                stray_shard = folder != self.root and _SHARD.fullmatch(path.name) and path not in listed
                temp = path.name.startswith(".") and path.name.endswith(".tmp")
                if path.is_file() and (stray_shard or temp):
                    log.warning("%s: not listed in the manifest (written as the collection stopped); removed", path)
                    path.unlink()


def _shard_number(name: str) -> int:
    """``"train/shard_00012.npz"`` -> 12."""
    match = _SHARD.fullmatch(Path(name).name)
    if match is None:
        raise DatasetError(f"manifest entry {name!r} is not a shard file name (split/shard_NNNNN.npz).")
    return int(match.group(1))
