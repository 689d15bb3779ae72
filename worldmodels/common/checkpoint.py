"""Atomic checkpoints and run directories.

A checkpoint is written to a temporary file in the same folder, flushed to disk, and renamed over its final
name (``os.replace`` is atomic on POSIX), so a crash or Ctrl-C mid-write never leaves a truncated file where a
good one was. Loading errors name the file and say what to do instead of surfacing torch's internals.
"""

from __future__ import annotations

import logging
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodels.common.atomic import atomic_write

log = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^ckpt_(\d{12})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or not ours."""


def rng_state() -> dict[str, Any]:
    """Python, numpy (global) and torch RNG states."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


#: What a checkpoint that rotation found damaged is renamed to (beside the others, out of every listing).
CORRUPT_SUFFIX = ".corrupt"


def save_checkpoint(ckpt_dir: Path, frames: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write ``state`` as ``ckpt_<frames>.pt`` atomically and keep only the ``keep`` newest *valid* checkpoints:
    a damaged one (truncated by a full disk or a copy cut short) never counts among them and is never kept instead
    of a valid one; it is moved aside as ``ckpt_<frames>.pt.corrupt``, with a warning, for inspection."""
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / f"ckpt_{frames:012d}.pt"
    atomic_write(path, lambda f: torch.save({"format": "reverie-checkpoint-v1", **state}, f))
    rotate_checkpoints(list_checkpoints(ckpt_dir), keep, written=path)
    return path


def _intact(path: Path) -> bool:
    """A cheap check that ``path`` is a whole checkpoint: a zip archive (torch's and SB3's format) whose directory,
    at the end of the file, reads and lists files (a truncated file has none). The data is checked when loaded."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def rotate_checkpoints(ckpts: list[Path], keep: int, written: Path | None = None) -> None:
    """Of a run's checkpoints (oldest first), keep the ``keep`` newest valid ones, delete older valid ones, and move
    damaged ones aside (``.corrupt``) instead of counting them. ``written`` (just saved) is known to be valid."""
    valid: list[Path] = []
    for ckpt in reversed(ckpts):
        if ckpt == written or _intact(ckpt):
            valid.append(ckpt)
            continue
        aside = ckpt.with_name(ckpt.name + CORRUPT_SUFFIX)
        try:
            ckpt.replace(aside)
            log.warning("checkpoint %s is damaged (truncated or not a checkpoint): moved aside as %s; it no longer "
                        "counts among run.keep_checkpoints", ckpt, aside.name)
        except OSError as err:
            log.warning("checkpoint %s is damaged and could not be moved aside (%s)", ckpt, err)
    for old in valid[keep:]:
        old.unlink(missing_ok=True)


#: What a checkpoint of an abandoned branch is renamed to: newer than the one a run resumed from (named explicitly).
ABANDONED_SUFFIX = ".abandoned"
_ANY_CHECKPOINT = re.compile(r"^ckpt_(\d{12})\.(pt|zip)$")


def set_aside_newer(resumed_from: Path) -> list[Path]:
    """Rename the checkpoints of ``resumed_from``'s folder that are newer than it (a branch the resumed run abandons)
    to ``<name>.abandoned``, with a warning: a later ``--resume RUN`` must never pick them over the new branch's.

    :returns: the new names."""
    match = _ANY_CHECKPOINT.match(resumed_from.name)
    if match is None or not resumed_from.parent.is_dir():
        return []
    frames = int(match.group(1))
    moved = []
    for p in sorted(resumed_from.parent.iterdir()):
        m = _ANY_CHECKPOINT.match(p.name)
        if m is not None and int(m.group(1)) > frames:
            aside = p.with_name(p.name + ABANDONED_SUFFIX)
            p.replace(aside)
            moved.append(aside)
    if moved:
        log.warning("resuming from %s: the %d newer checkpoint(s) of the branch it abandons are set aside as %s",
                    resumed_from.name, len(moved), ", ".join(p.name for p in moved))
    return moved


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoints in a folder, oldest first."""
    if not Path(ckpt_dir).is_dir():
        return []
    return sorted(p for p in Path(ckpt_dir).iterdir() if CHECKPOINT_RE.match(p.name))


def find_checkpoint(run_or_ckpt: str | Path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run directory.

    :raises CheckpointError: if there is none, saying where it looked.
    """
    path = Path(run_or_ckpt)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: give a run directory or a checkpoint file (.pt).")
    ckpts = list_checkpoints(path / "checkpoints") or list_checkpoints(path)
    if not ckpts:
        raise CheckpointError(f"no checkpoint in {path}/checkpoints: the run saved none yet "
                              f"(see run.checkpoint_every_frames) or this is not a run directory.")
    return ckpts[-1]


def load_latest(run_or_ckpt: str | Path) -> tuple[Path, dict[str, Any]]:
    """A checkpoint file given by name, or the newest *valid* checkpoint of a run directory, loaded.

    A corrupt or truncated newer checkpoint (a disk filled up, a copy cut short) is skipped with a warning naming
    it, so one bad file never blocks a run that has good older ones; a file named explicitly is never replaced.

    :returns: (the checkpoint's path, its contents).
    :raises CheckpointError: no checkpoint there, or every one is corrupt (naming them).
    """
    path = Path(run_or_ckpt)
    if path.is_file():
        return path, load_checkpoint(path)
    find_checkpoint(path)  # raises the "no checkpoint here" error
    ckpts = list_checkpoints(path / "checkpoints") or list_checkpoints(path)
    bad: list[str] = []
    for ckpt in reversed(ckpts):
        try:
            state = load_checkpoint(ckpt)
        except CheckpointError as err:
            log.warning("skipping checkpoint %s: %s", ckpt, err)
            bad.append(ckpt.name)
            continue
        if bad:
            log.warning("using %s, the newest valid checkpoint of %s (skipped: %s)", ckpt.name, path, ", ".join(bad))
        return ckpt, state
    raise CheckpointError(f"every checkpoint in {ckpts[0].parent} is corrupt or truncated ({', '.join(bad)}): "
                          f"start a new run (a different --run-dir), or restore a copy of the folder.")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    :raises CheckpointError: for a missing, truncated, corrupt or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}); name an older one from "
            f"{path.parent} instead, give the run directory (its newest valid checkpoint is used), or start a new "
            f"run.") from err
    if not isinstance(state, dict) or state.get("format") != "reverie-checkpoint-v1":
        raise CheckpointError(f"{path} is not a Reverie checkpoint (no 'format: reverie-checkpoint-v1').")
    return state
