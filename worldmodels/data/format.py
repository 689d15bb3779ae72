"""The trajectory dataset format shared by every model trained on recorded play (binary VAE, video prediction).

A dataset is a folder::

    DIR/manifest.json            what the data is and where it lies (written atomically, last)
    DIR/train/shard_00000.npz    whole episodes used for training
    DIR/heldout/shard_00000.npz  whole episodes kept for evaluation, never for training

Each shard is an ``.npz`` of aligned arrays, one row per stored frame (each frame stored once, not four times
in stacks); rows of one episode are contiguous and an episode never spans two shards:

- ``frames``: uint8 ``[T, H, W]``, the newest frame of each observation (``obs[:, -1]``), luminance; or
  ``[T, H, W, 3]`` RGB for data collected with ``--rgb`` (``manifest["frame_shape"]`` says which);
- ``actions``: int64 ``[T]``, the action taken at that frame; ``-1`` at the last frame of an episode that
  ended (no action follows a game over);
- ``rewards``: float32 ``[T]``, the raw game-score change caused by that action (``info["raw_reward"]``,
  unclipped); 0 where the action is -1;
- ``terminals``: bool ``[T]``, True at the last frame of an episode that ended by game over or the
  emulator's frame cap; an episode cut short by the end of collection has no terminal;
- ``episode_ids``: int64 ``[T]``, the episode each frame belongs to (unique across the dataset).

So frame ``t + 1`` is the observation after taking ``actions[t]`` in frame ``t`` whenever both rows have the
same episode id. The manifest's ``shards`` list gives, per shard, its split, frame and episode counts, the
episode ids and the SHA-256 of the file: a reader checks it before using a shard, so a truncated or corrupt
shard is reported by name, never silently read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "reverie-trajectories-v1"
MANIFEST = "manifest.json"
SPLITS = ("train", "heldout")
FIELDS: dict[str, str] = {
    "frames": "uint8 [T, H, W]: newest frame of each observation (luminance), or [T, H, W, 3] (RGB)",
    "actions": "int64 [T]: action taken at the frame; -1 at the last frame of an ended episode",
    "rewards": "float32 [T]: raw (unclipped) score change caused by the action",
    "terminals": "bool [T]: last frame of an episode that ended (game over or frame cap)",
    "episode_ids": "int64 [T]: episode of the frame (unique in the dataset)",
}


class DatasetError(ValueError):
    """A dataset folder, manifest or shard that cannot be used; the message names the file and the fix."""


#: How to skip corrupt shards, for a caller that does not say (the library is shared by commands that spell it
#: differently: a flag on some, a config key on others).
SKIP_HINT = ("--skip-corrupt (evaluate-vae, imagine), data.skip_corrupt=true (fit-vae, fit-world-model) or "
             "on_corrupt='skip' (Python)")


def nothing_left(root: str | Path, split: str, skipped: list[str], fix: str = "") -> DatasetError:
    """The error for a split whose every shard was skipped as corrupt (one wording for every reader).

    :param skipped: the skipped shard files. :param fix: a further way out, appended (e.g. ", or set
        run.eval_frames=0 to train without held-out scores").
    """
    what = "held-out" if split == "heldout" else "training"
    names = ", ".join(f"{Path(f).parent.name}/{Path(f).name}" for f in skipped) or "none"
    return DatasetError(f"{root}: no {what} data is left after skipping corrupt shards ({len(skipped)} skipped: "
                        f"{names}); re-collect the dataset (`reverie collect GAME --out NEW_DIR`){fix}.")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Load and sanity-check ``DIR/manifest.json``.

    :raises DatasetError: no folder, no manifest, unparsable JSON or another format.
    """
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist: create one with `reverie collect GAME --out DIR`.")
    if not path.is_file():
        raise DatasetError(f"{path} is missing: {root} is not a Reverie dataset (or its collection never "
                           f"finished a shard); collect one with `reverie collect GAME --out DIR`.")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path} is unreadable ({err}); re-run `reverie collect`.") from err
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{path} has format {manifest.get('format')!r}, expected {FORMAT!r}.")
    return manifest


def validate_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """Check the shard invariants (fields present, aligned lengths, dtypes).

    :raises DatasetError: naming ``where`` and the broken field.
    """
    missing = [k for k in FIELDS if k not in arrays]
    if missing:
        raise DatasetError(f"{where}: missing field(s) {missing}; expected {list(FIELDS)}.")
    n = len(arrays["frames"])
    f = arrays["frames"]
    if f.dtype != np.uint8 or not (f.ndim == 3 or (f.ndim == 4 and f.shape[-1] == 3)):
        raise DatasetError(f"{where}: frames must be uint8 [T, H, W] or [T, H, W, 3], got {f.dtype} {f.shape}.")
    for key in FIELDS:
        if len(arrays[key]) != n:
            raise DatasetError(f"{where}: field {key} has {len(arrays[key])} rows, frames has {n}.")
