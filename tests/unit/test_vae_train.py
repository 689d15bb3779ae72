"""The frame around `fit-vae` (:class:`worldmodels.common.scaffold.RunScaffold`): a SIGTERM inside the loop leaves a
last checkpoint, closes the TensorBoard writer and restores the signal handler; rates by wall clock and by CPU time
under their own tags; ``run.device``; checkpoints with plain-string configs."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from launch.config import ConfigError, load_config
from tests.algos.fakes import sprite_dataset
from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint
from worldmodels.common.scaffold import RunExistsError
from worldmodels.vae import BinaryVAE, VAEFitConfig
from worldmodels.vae.evaluate import evaluate_vae
from worldmodels.vae.train import fit_vae


def tiny(data: Path, *overrides: str) -> VAEFitConfig:
    """vae_tiny for 128 frames (8 updates of 16), logging every 2 updates, on the CPU."""
    return load_config(VAEFitConfig, ["vae_tiny"], [f"data.path={data}", "run.progress=false", "run.device=cpu",
                                                    "run.total_frames=128", "run.log_every_frames=32",
                                                    "run.eval_frames=8", *overrides])


def test_sigterm_in_the_loop_leaves_a_checkpoint_and_closes_the_run(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data, run = sprite_dataset(tmp_path / "data"), tmp_path / "run"
    cfg = tiny(data)
    closed: list[SummaryWriter] = []
    close = SummaryWriter.close
    monkeypatch.setattr(SummaryWriter, "close", lambda self: (closed.append(self), close(self))[1])
    calls = {"n": 0}
    train_step = BinaryVAE.train_step

    def step(self: BinaryVAE, frames: np.ndarray) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # what a cluster scheduler sends
        return train_step(self, frames)

    monkeypatch.setattr(BinaryVAE, "train_step", step)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        fit_vae(cfg, run_dir=run)
    assert signal.getsignal(signal.SIGTERM) is handler
    assert len(closed) == 1
    ckpt = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    assert ckpt["frames"] == 80 and ckpt["vae"]["steps"] == 5  # the update the signal came in finished, no more
    assert (run / "config.yaml").read_text() == ckpt["config"]
    config = ckpt["vae"]["model_config"]  # plain strings, not Enum members: loads without this package's classes
    assert type(config["decoder"]) is str and type(ckpt["vae"]["estimator_config"]["name"]) is str
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    assert {"charts/frames_per_s", "charts/cpu_frames_per_s", "worldmodel/elbo_nats"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("charts/cpu_frames_per_s")] == [32, 64]

    monkeypatch.undo()
    summary = fit_vae(cfg, run_dir=run, resume=True)
    assert summary["frames"] == 128 and summary["updates"] == 8 and summary["estimator"] == "nvil"
    assert summary["frames_per_s"] > 0 and summary["cpu_frames_per_s"] > 0 and summary["elbo_nats"] > 0
    with pytest.raises(RunExistsError, match="--resume"):
        fit_vae(cfg, run_dir=run)
    report = evaluate_vae(run, data, ks=(1, 10), frames=4, samples=8)
    assert report["frames_trained"] == 128 and report["decoder"] == "pixelcnn"
    assert report["iwae_nats"]["1"] >= report["iwae_nats"]["10"] > 0


def test_choices_and_device(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"estimator\.name.*'vimc', expected one of \[nvil, vimco, reinforce, "
                                          r"relaxed\]"):
        load_config(VAEFitConfig, ["vae_tiny"], ["estimator.name=vimc"])
    with pytest.raises(ConfigError, match=r"model\.decoder.*expected one of \[pixelcnn, factorised\]"):
        load_config(VAEFitConfig, ["vae_tiny"], ["model.decoder=pixel"])
    cfg = load_config(VAEFitConfig, ["vae_tiny"], ["estimator.name=relaxed", "estimator.relaxed_kl=analytic"])
    assert cfg.estimator.name == "relaxed" and cfg.estimator.relaxed_kl == "analytic"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="run.device=cuda, but torch sees no CUDA device"):
            fit_vae(tiny(tmp_path / "nothing", "run.device=cuda"), run_dir=tmp_path / "gpu")
        assert not (tmp_path / "gpu").exists()
    else:  # a GPU: the same tiny fit trains there, and its checkpoint evaluates on the CPU
        data = sprite_dataset(tmp_path / "data")
        summary = fit_vae(tiny(data, "run.device=cuda"), run_dir=tmp_path / "gpu")
        assert summary["frames"] == 128 and summary["updates"] == 8
        assert np.isfinite(summary["elbo_nats"]) and summary["elbo_nats"] > 0
        report = evaluate_vae(tmp_path / "gpu", data, ks=(1,), frames=4, samples=8)
        assert report["frames_trained"] == 128 and report["iwae_nats"]["1"] > 0
