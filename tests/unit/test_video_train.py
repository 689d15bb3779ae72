"""The frame around `fit-world-model` (:class:`worldmodels.common.scaffold.RunScaffold`): a SIGTERM inside the loop
leaves a last checkpoint, closes the TensorBoard writer and restores the signal handler; an error leaves one too
without pushing out an older one; rates by wall clock and by CPU time under their own tags; ``run.device``."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from launch.config import load_config
from tests.algos.fakes import moving_dot_dataset
from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint
from worldmodels.common.scaffold import RunExistsError
from worldmodels.data import DatasetError, WindowSampler
from worldmodels.video import VideoFitConfig, VideoPredictor
from worldmodels.video.train import fit_world_model


def small_dots(root: Path) -> Path:
    return moving_dot_dataset(root, episodes=4, length=24, heldout_fraction=0.25, shard_frames=50)


def tiny(data: Path, *overrides: str) -> VideoFitConfig:
    """video_tiny (6 one-step then 4 three-step updates), no evaluation, on the CPU."""
    return load_config(VideoFitConfig, ["video_tiny"], [f"data.path={data}", "run.progress=false",
                                                        "run.eval_every_updates=0", "run.device=cpu", *overrides])


@pytest.fixture
def closed_writers(monkeypatch: pytest.MonkeyPatch) -> list[SummaryWriter]:
    """Every SummaryWriter closed during the test."""
    closed: list[SummaryWriter] = []
    close = SummaryWriter.close

    def spy(self: SummaryWriter) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(SummaryWriter, "close", spy)
    return closed


def fail_on_sample(monkeypatch: pytest.MonkeyPatch, call: int, action: object) -> None:
    """Make the ``call``-th ``WindowSampler.sample`` (the batch of update ``call``) run ``action`` first."""
    calls = {"n": 0}
    sample = WindowSampler.sample

    def patched(self: WindowSampler, batch_size: int) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == call:
            action()
        return sample(self, batch_size)

    monkeypatch.setattr(WindowSampler, "sample", patched)


def scalar_tags(run: Path) -> set[str]:
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_sigterm_in_the_loop_leaves_a_checkpoint_and_closes_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closed_writers: list[SummaryWriter]) -> None:
    data, run = small_dots(tmp_path / "data"), tmp_path / "run"
    cfg = tiny(data)
    handler = signal.getsignal(signal.SIGTERM)
    fail_on_sample(monkeypatch, 5, lambda: os.kill(os.getpid(), signal.SIGTERM))  # what a scheduler sends
    with pytest.raises(KeyboardInterrupt):
        fit_world_model(cfg, run_dir=run)
    assert signal.getsignal(signal.SIGTERM) is handler
    assert len(closed_writers) == 1
    ckpt = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    assert ckpt["curriculum"]["updates"] == 5  # the update the signal came in finished, no more
    assert (run / "config.yaml").read_text() == ckpt["config"] and "device: cpu" in ckpt["config"]
    # Both rates, each under its own tag (log_every_updates = 2).
    assert {"charts/frames_per_s", "charts/cpu_frames_per_s", "losses/mse"} <= scalar_tags(run)

    monkeypatch.undo()
    summary = fit_world_model(cfg, run_dir=run, resume=True)
    assert summary["updates"] == 10 and summary["frames"] == 6 * 4 + 4 * 2 * 3
    assert summary["frames_per_s"] > 0 and summary["cpu_frames_per_s"] > 0


def test_an_error_in_the_loop_keeps_a_checkpoint_and_every_older_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closed_writers: list[SummaryWriter]) -> None:
    data, run = small_dots(tmp_path / "data"), tmp_path / "run"

    def crash() -> None:
        raise RuntimeError("disk on fire")

    fail_on_sample(monkeypatch, 8, crash)  # checkpoint_every_updates = 5: one periodic checkpoint first
    with pytest.raises(RuntimeError, match="disk on fire"):
        fit_world_model(tiny(data, "run.keep_checkpoints=1"), run_dir=run)
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["ckpt_000000000005.pt", "ckpt_000000000007.pt"]
    assert len(closed_writers) == 1


def test_run_directory_refusal_and_device(tmp_path: Path) -> None:
    data = small_dots(tmp_path / "data")
    # A bad dataset leaves no folder, so the same command runs once the data is fixed.
    with pytest.raises(DatasetError):
        fit_world_model(tiny(tmp_path / "nothing"), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    cfg = tiny(data, "optim.phases.0.updates=1", "optim.phases.1.updates=1")
    assert fit_world_model(cfg, run_dir=tmp_path / "run")["updates"] == 2
    with pytest.raises(RunExistsError, match="--resume"):
        fit_world_model(cfg, run_dir=tmp_path / "run")
    with pytest.raises(FileExistsError):  # RunExistsError is one
        fit_world_model(cfg, run_dir=tmp_path / "run")
    # The checkpoint holds plain strings, not Enum members: it loads without this package's classes.
    saved = load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1])["world_model"]["model_config"]
    assert type(saved["architecture"]) is str and type(saved["body"]) is str
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="run.device=cuda, but torch sees no CUDA device"):
            fit_world_model(tiny(data, "run.device=cuda"), run_dir=tmp_path / "gpu")
        assert not (tmp_path / "gpu").exists()
    else:  # a GPU: the same tiny fit trains there, and its checkpoint loads on the CPU (the same weights as on the GPU)
        summary = fit_world_model(tiny(data, "run.device=cuda", "optim.phases.0.updates=2", "optim.phases.1.updates=2"),
                                  run_dir=tmp_path / "gpu")
        assert summary["updates"] == 4 and summary["frames"] > 0
        state = load_checkpoint(list_checkpoints(tmp_path / "gpu" / "checkpoints")[-1])["world_model"]
        model = VideoPredictor.from_state_dict_full(state)
        params = list(model.parameters())
        assert params and all(p.device.type == "cpu" and torch.isfinite(p).all() for p in params)
        on_gpu = VideoPredictor.from_state_dict_full(state).to("cuda")
        assert all(torch.equal(a.cpu(), b) for a, b in zip(on_gpu.parameters(), params, strict=True))
