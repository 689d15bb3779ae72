"""MFEC through the runtime: local and Ray, TensorBoard, checkpoints with the memory, resume, evaluate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.episodic.config import MFECConfig
from agents.registry import get_builder
from agents.runtime.loop import run_training
from launch.cli import main
from launch.config import load_config

TINY = ["env.num_envs=4", "run.progress=false", "run.eval_episodes=0", "run.log_every_frames=400",
        "run.checkpoint_every_frames=1000", "episodic.capacity=5000"]


def _cfg(tmp_path: Path, *overrides: str) -> MFECConfig:
    return load_config(MFECConfig, ["mfec_minatar"], [*TINY, f"run.runs_dir={tmp_path}", *overrides])


def test_mfec_trains_locally_with_tensorboard_checkpoints_resume_and_evaluate(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "run.name=local", "run.total_frames=3000")
    builder = get_builder("mfec")
    state = run_training(builder, cfg)
    assert state.frames >= 3000 and state.episodes > 0 and state.updates > 0
    tags = EventAccumulator(str(tmp_path / "local")).Reload().Tags()["scalars"]
    assert {"episodic/memory_size", "episodic/exact_match_rate", "charts/episodic_return"} <= set(tags)
    ckpt = torch.load(sorted((tmp_path / "local" / "checkpoints").glob("*.pt"))[-1], weights_only=False)
    memory = ckpt["learner"]["memory"]
    # Every step of every finished episode was written: the memory holds at most one key per step.
    assert 0 < int(memory["sizes"].sum()) <= state.steps and memory["keys"].shape[1] == 64
    cfg.run.total_frames = 5000
    resumed = run_training(builder, cfg, run_dir=tmp_path / "local", resume=True)
    assert resumed.frames >= 5000 and resumed.updates > state.updates
    again = torch.load(sorted((tmp_path / "local" / "checkpoints").glob("*.pt"))[-1], weights_only=False)
    assert int(again["learner"]["memory"]["sizes"].sum()) >= int(memory["sizes"].sum())  # the memory carried on
    assert main(["evaluate", str(tmp_path / "local"), "--episodes", "2"]) == 0


@pytest.mark.usefixtures("ray_local")
def test_mfec_trains_with_ray_actors_on_replicas(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "run.name=ray", "runtime.num_actors=2", "run.total_frames=3000")
    state = run_training(get_builder("mfec"), cfg)
    assert state.frames >= 3000 and state.updates > 0
    tags = EventAccumulator(str(tmp_path / "ray")).Reload().Tags()["scalars"]
    assert "episodic/memory_size" in tags and "charts/policy_lag" in tags


def test_the_same_seed_gives_the_same_run(tmp_path: Path) -> None:
    returns = []
    for name in ("a", "b"):
        state = run_training(get_builder("mfec"), _cfg(tmp_path, f"run.name={name}", "run.total_frames=2000"))
        returns.append(np.asarray(state.returns))
    assert len(returns[0]) > 0 and np.array_equal(returns[0], returns[1])


def test_mfec_with_gaussian_vae_keys_from_a_run_directory(tmp_path: Path) -> None:
    from worldmodels.common.checkpoint import save_checkpoint
    from worldmodels.representations.gaussian_vae import GaussianVAE

    ckpt = save_checkpoint(tmp_path / "gvae" / "checkpoints", 5, {"gvae": GaussianVAE().export()})
    cfg = load_config(MFECConfig, ["mfec_atari"], [
        "env.num_envs=2", "run.progress=false", "run.eval_episodes=0", "run.total_frames=400",
        "episodic.capacity=1000", "representation.kind=gaussian_vae", f"representation.path={tmp_path / 'gvae'}",
        f"run.runs_dir={tmp_path}", "run.name=vae"])
    state = run_training(get_builder("mfec"), cfg)
    assert state.frames >= 400 and cfg.representation.path == str(tmp_path / "gvae")  # the caller's config as it was
    assert state.run_dir is not None  # the run used, and saved, the run directory's checkpoint
    assert f"path: {ckpt.resolve()}" in (state.run_dir / "config.yaml").read_text()
    bad = load_config(MFECConfig, ["mfec_atari"], ["representation.kind=gaussian_vae",
                                                   f"representation.path={tmp_path / 'nothing'}"])
    with pytest.raises(FileNotFoundError, match="no such file or run directory"):
        get_builder("mfec").prepare(bad)
