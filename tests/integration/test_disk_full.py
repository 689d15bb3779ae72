"""A full disk is one clear line (the file, the free space, the size needed), exit 2, and nothing partial: on a
size-limited tmpfs where this machine allows mounting one (root), else skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint

ROOT = Path(__file__).parents[2]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted at ``tmp_path / "small"``."""
    mount = tmp_path / "small"
    mount.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to mount a size-limited tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_train_on_a_full_disk_stops_with_one_line_and_keeps_its_checkpoints(small_disk: Path) -> None:
    run = small_disk / "run"
    cmd = [sys.executable, "-m", "launch.cli", "train", "a2c_tiny", "run.checkpoint_every_frames=4096",
           "run.total_frames=100000", "run.eval_episodes=0", "run.progress=false", "--run-dir", str(run)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "no space left" in lines[0] and "needs 0.8 MB" in lines[0] and "MB free" in lines[0]
    assert str(run / "checkpoints") in lines[0]
    assert not _leftovers(small_disk)
    ckpts = list_checkpoints(run / "checkpoints")
    assert ckpts and all(load_checkpoint(p)["steps"] > 0 for p in ckpts)  # the older ones are intact


def test_dataset_writer_on_a_full_disk_raises_one_clear_error(small_disk: Path) -> None:
    from worldmodels.common.atomic import DiskFullError
    from worldmodels.data import DatasetWriter, read_manifest

    writer = DatasetWriter(small_disk / "data", {"game": "toy/catch"}, heldout_fraction=0.0, shard_frames=100,
                           compress=False)
    rng = np.random.default_rng(0)

    def episode(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        return rng.integers(0, 255, (n, 84, 84), dtype=np.uint8), np.zeros(n, np.int64), np.zeros(n, np.float32), \
            False

    with pytest.raises(DiskFullError, match=r"writing shard_\d+\.npz needs 0\.7 MB, 0\.\d MB free"):
        for _ in range(3):  # 0.7 MB a shard: the third does not fit
            writer.add_episode(*episode(100))
    assert not _leftovers(small_disk)
    manifest = read_manifest(small_disk / "data")  # still the consistent dataset of the shards written
    files = sorted(p.relative_to(small_disk / "data").as_posix() for p in (small_disk / "data").rglob("*.npz"))
    assert [s["file"] for s in manifest["shards"]] == files and len(files) == 2
