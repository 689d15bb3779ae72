"""Checkpoints: atomic writes, rotation, and clear errors for missing or corrupt files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from worldmodels.common.checkpoint import (
    CheckpointError,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def test_save_load_and_keep_newest(tmp_path: Path) -> None:
    for frames in (100, 200, 300, 400):
        save_checkpoint(tmp_path / "checkpoints", frames, {"x": torch.tensor([frames])}, keep=2)
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["ckpt_000000000300.pt", "ckpt_000000000400.pt"]
    newest = find_checkpoint(tmp_path)
    assert load_checkpoint(newest)["x"].item() == 400
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))  # no temp files left behind


def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path, 1, {"x": torch.zeros(1000)})
    data = good.read_bytes()
    bad = tmp_path / "ckpt_000000000002.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(bad)


def test_foreign_and_missing_files(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(CheckpointError, match="not a Reverie checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="does not exist"):
        find_checkpoint(tmp_path / "nope")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        find_checkpoint(tmp_path / "empty_run")


def test_failed_write_keeps_previous_checkpoint(tmp_path: Path) -> None:
    first = save_checkpoint(tmp_path, 5, {"x": 1})

    class Boom:
        def __reduce__(self):  # pickling fails half-way through the write
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(tmp_path, 5, {"x": Boom()})
    assert load_checkpoint(first)["x"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_load_latest_skips_a_corrupt_newest_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from worldmodels.common.checkpoint import CheckpointError, load_latest, save_checkpoint

    ckpt_dir = tmp_path / "run" / "checkpoints"
    for frames in (100, 200, 300):
        save_checkpoint(ckpt_dir, frames, {"frames": frames})
    newest = ckpt_dir / "ckpt_000000000300.pt"
    newest.write_bytes(newest.read_bytes()[:50])
    path, state = load_latest(tmp_path / "run")
    assert state["frames"] == 200 and path.name == "ckpt_000000000200.pt"
    assert newest.name in caplog.text
    with pytest.raises(CheckpointError, match="corrupt"):  # a file named explicitly is never replaced
        load_latest(newest)
    for p in ckpt_dir.iterdir():
        p.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="every checkpoint"):
        load_latest(tmp_path / "run")


def test_rotation_keeps_valid_checkpoints_and_moves_a_corrupt_one_aside(tmp_path: Path) -> None:
    """Resuming past a truncated newest checkpoint: rotation never deletes a valid checkpoint to keep it."""
    from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint

    ckpt_dir = tmp_path / "run" / "checkpoints"
    for frames in (100, 200, 300):
        save_checkpoint(ckpt_dir, frames, {"frames": frames}, keep=3)
    newest = ckpt_dir / "ckpt_000000000300.pt"
    newest.write_bytes(newest.read_bytes()[:200])  # a full disk cut it short; the run resumes from 200
    save_checkpoint(ckpt_dir, 250, {"frames": 250}, keep=3)
    save_checkpoint(ckpt_dir, 280, {"frames": 280}, keep=3)
    assert [p.name for p in list_checkpoints(ckpt_dir)] == [f"ckpt_{f:012d}.pt" for f in (200, 250, 280)]
    assert all(load_checkpoint(p)["frames"] > 0 for p in list_checkpoints(ckpt_dir))
    assert (ckpt_dir / "ckpt_000000000300.pt.corrupt").stat().st_size == 200  # named, kept for inspection
