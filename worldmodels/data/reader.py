"""Reading a trajectory dataset as a stream of k-step windows (see :mod:`worldmodels.data.format`).

Shards are read one at a time (memory holds one shard, not the dataset). Before a shard is used its bytes
are hashed and compared with the manifest's SHA-256: a truncated or corrupt shard raises
:class:`DatasetError` naming the file (``on_corrupt="error"``, the default), or, with ``on_corrupt="skip"``,
is skipped with a warning and listed in :attr:`TrajectoryDataset.skipped`. It is never silently read.

    ds = TrajectoryDataset("data/pong", split="train", window=4)
    for w in ds:                       # dicts of arrays with a leading window axis of length 4
        w["frames"]                    # uint8 [4, 84, 84], consecutive frames of one episode
    torch.utils.data.DataLoader(ds, batch_size=32)   # an IterableDataset; workers split the shards
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch.utils.data

from worldmodels.data.format import (
    SKIP_HINT,
    SPLITS,
    DatasetError,
    nothing_left,
    read_manifest,
    sha256_bytes,
    validate_arrays,
)

log = logging.getLogger(__name__)

OnCorrupt = Literal["error", "skip"]


class TrajectoryDataset(torch.utils.data.IterableDataset):
    """k-step windows of one split, streamed shard by shard.

    :param root: dataset folder (holds ``manifest.json``).
    :param split: ``"train"`` or ``"heldout"``.
    :param window: frames per window ``k``; a window never crosses an episode boundary.
    :param shuffle: visit shards in random order and windows within a shard in random order.
    :param seed: seeds the shuffling; epoch ``e`` uses ``seed + e``.
    :param epochs: passes over the split (``None``: forever).
    :param on_corrupt: ``"error"`` raises on a bad shard, ``"skip"`` skips it with a warning.
    :param stride: distance between window starts when not shuffling (1: every window).
    :param skip_hint: how the user of the calling command asks to skip bad shards (``"--skip-corrupt"``,
        ``"data.skip_corrupt=true"``), named in the corrupt-shard error; default: every command's spelling.
    :raises DatasetError: bad folder or manifest, unknown split, or a split with no shards.
    """

    def __init__(self, root: str | Path, split: str = "train", window: int = 1, *, shuffle: bool = False,
                 seed: int = 0, epochs: int | None = 1, on_corrupt: OnCorrupt = "error", stride: int = 1,
                 skip_hint: str = SKIP_HINT) -> None:
        super().__init__()
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}: choose one of {SPLITS}.")
        if on_corrupt not in ("error", "skip"):
            raise DatasetError(f"on_corrupt={on_corrupt!r}: choose 'error' or 'skip'.")
        if window < 1 or stride < 1:
            raise DatasetError(f"window={window} and stride={stride} must be positive.")
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if not self.manifest.get("complete", False):
            log.warning("%s: collection did not finish (manifest 'complete': false); using the shards written",
                        self.root)
        self.split = split
        self.shards = [s for s in self.manifest["shards"] if s["split"] == split]
        if not self.shards:
            raise DatasetError(f"{self.root} has no {split!r} shards (counts: {self.manifest.get('counts')}); "
                               f"collect more frames or use --heldout-fraction > 0.")
        self.window, self.shuffle, self.seed, self.epochs = window, shuffle, seed, epochs
        self.on_corrupt: OnCorrupt = on_corrupt
        self.stride = stride
        self.skip_hint = skip_hint
        self.skipped: list[str] = []

    @property
    def num_frames(self) -> int:
        """Frames in this split according to the manifest."""
        return sum(int(s["frames"]) for s in self.shards)

    def load_shard(self, entry: dict[str, Any]) -> dict[str, np.ndarray] | None:
        """Read, verify and return one shard's arrays; ``None`` if it is bad and ``on_corrupt="skip"``.

        :raises DatasetError: bad shard with ``on_corrupt="error"``, naming the file and the problem.
        """
        path = self.root / entry["file"]
        try:
            problem = None
            data = path.read_bytes()
            if sha256_bytes(data) != entry["sha256"]:
                problem = (f"checksum mismatch ({len(data)} bytes on disk, {entry.get('bytes')} written): "
                           f"truncated or corrupt")
            else:
                with np.load(io.BytesIO(data)) as npz:
                    arrays = {k: npz[k] for k in npz.files}
                validate_arrays(arrays, str(path))
                if len(arrays["frames"]) != entry["frames"]:
                    problem = f"holds {len(arrays['frames'])} frames, the manifest says {entry['frames']}"
        except (OSError, ValueError, zipfile.BadZipFile, DatasetError) as err:
            problem = f"unreadable ({type(err).__name__}: {err})"
        if problem is None:
            return arrays
        message = f"shard {path} is {problem}" if "unreadable" in problem else f"shard {path}: {problem}"
        if self.on_corrupt == "skip":
            log.warning("%s; skipping it (on_corrupt='skip')", message)
            if str(path) not in self.skipped:
                self.skipped.append(str(path))
            return None
        raise DatasetError(f"{message}. Re-collect the data, delete the shard and its manifest entry, or skip bad "
                           f"shards explicitly with {self.skip_hint} (each skipped shard is then named in a warning).")

    def verify(self) -> list[str]:
        """Check every shard of the split; returns the names of bad ones (raises with ``on_corrupt="error"``)."""
        for entry in self.shards:
            self.load_shard(entry)
        return list(self.skipped)

    def iter_shards(self, epoch: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Verified shard arrays in (shuffled) order, this DataLoader worker's share only.

        :raises DatasetError: every shard of the split was skipped as corrupt (an endless stream would otherwise
            spin without yielding, and a single pass would look like an empty split).
        """
        order = np.arange(len(self.shards))
        if self.shuffle:
            np.random.default_rng(self.seed + epoch).shuffle(order)
        info = torch.utils.data.get_worker_info()
        if info is not None:
            order = order[info.id::info.num_workers]
        yielded = False
        for i in order:
            arrays = self.load_shard(self.shards[int(i)])
            if arrays is not None:
                yielded = True
                yield arrays
        # `skipped` lists this process's skips only, so a DataLoader worker raises only if it saw every shard.
        if not yielded and len(self.skipped) == len(self.shards):
            raise nothing_left(self.root, self.split, self.skipped)

    def window_starts(self, episode_ids: np.ndarray) -> np.ndarray:
        """Rows ``t`` where a window ``t .. t + k - 1`` lies inside one episode (int64 ``[W]``)."""
        k = self.window
        if len(episode_ids) < k:
            return np.zeros(0, dtype=np.int64)
        starts = np.flatnonzero(episode_ids[: len(episode_ids) - k + 1] == episode_ids[k - 1:])
        return starts.astype(np.int64)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield windows: dicts of every field with a leading axis of length ``k`` (``frames`` uint8
        ``[k, H, W]``, ``actions`` int64 ``[k]``, ``rewards`` float32 ``[k]``, ``terminals`` bool ``[k]``,
        ``episode_ids`` int64 ``[k]``)."""
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            rng = np.random.default_rng(self.seed + 7919 * (epoch + 1))
            for arrays in self.iter_shards(epoch):
                starts = self.window_starts(arrays["episode_ids"])
                if self.shuffle:
                    rng.shuffle(starts)
                else:
                    starts = starts[:: self.stride]
                span = np.arange(self.window)
                for t in starts:
                    yield {k: v[t + span] for k, v in arrays.items()}
            epoch += 1

    def frame_batches(self, batch_size: int, drop_last: bool = False) -> Iterator[np.ndarray]:
        """Batches of single frames (uint8 ``[B, H, W]``), faster than collating 1-frame windows.

        Respects ``shuffle``, ``seed``, ``epochs`` and ``stride``; ignores ``window``.
        """
        epoch = 0
        carry = np.zeros((0, 0, 0), dtype=np.uint8)
        while self.epochs is None or epoch < self.epochs:
            rng = np.random.default_rng(self.seed + 7919 * (epoch + 1))
            for arrays in self.iter_shards(epoch):
                frames = arrays["frames"]
                idx = rng.permutation(len(frames)) if self.shuffle else np.arange(0, len(frames), self.stride)
                frames = frames[idx] if not len(carry) else np.concatenate([carry, frames[idx]])
                whole = len(frames) - len(frames) % batch_size
                for b in range(0, whole, batch_size):
                    yield frames[b: b + batch_size]
                carry = frames[whole:]
            epoch += 1
        if len(carry) and not drop_last:
            yield carry
