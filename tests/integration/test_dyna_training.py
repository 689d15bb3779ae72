"""The Dyna agent through the runtime on MinAtar Breakout: local and Ray mode, TensorBoard's worldmodel/ tags,
imagined transitions made and trained on, checkpoints that hold the world model and the imagined buffer, resume,
and `reverie evaluate` of the run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.dyna.config import DynaConfig
from agents.registry import get_builder
from agents.runtime.loop import run_training
from launch.cli import main
from launch.config import load_config
from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint
from worldmodels.grid import load_grid_world_model

#: A tiny agent: imagination starts after 4 world-model updates (128 real frames of learning starts first).
TINY = ["network.hidden=16", "agent.batch_size=8", "agent.learning_starts_frames=128", "agent.update_period=2",
        "world_model.hidden_channels=8", "world_model.res_blocks=1", "world_model.head_hidden=16",
        "dyna.model_batch_size=16", "dyna.model_warmup_transitions=64", "dyna.rollouts_per_update=4",
        "dyna.imagined_capacity=512", "dyna.holdout_size=64", "replay.capacity=4096", "run.progress=false",
        "run.eval_episodes=0", "run.log_every_frames=200", "run.checkpoint_every_frames=400"]

TAGS = {"worldmodel/imagined_transitions", "worldmodel/obs_nats", "worldmodel/reward_loss",
        "worldmodel/terminal_loss", "worldmodel/one_step_cell_error", "worldmodel/copy_last_cell_error",
        "losses/td_loss", "losses/q_values", "charts/frames_per_s", "charts/replay_size"}


def _cfg(tmp_path: Path, *overrides: str) -> DynaConfig:
    return load_config(DynaConfig, ["dyna_minatar"], [*TINY, f"run.runs_dir={tmp_path}", *overrides])


def _scalars(run: Path) -> dict[str, list[float]]:
    acc = EventAccumulator(str(run)).Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_dyna_trains_locally_checkpoints_resumes_and_evaluates(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "run.name=local", "run.total_frames=800", "env.num_envs=2")
    state = run_training(get_builder("dyna"), cfg)
    assert state.frames >= 800 and state.updates > 0 and state.learner.num_imagined > 0
    logged = _scalars(tmp_path / "local")
    assert TAGS <= set(logged), TAGS - set(logged)
    assert logged["worldmodel/imagined_transitions"][-1] > 0
    for tag in TAGS:
        assert all(math.isfinite(v) for v in logged[tag]), tag
    ckpt = load_checkpoint(list_checkpoints(tmp_path / "local" / "checkpoints")[-1])
    assert ckpt["algo"] == "dyna" and len(ckpt["dyna"]["imagined"]["actions"]) > 0
    model = load_grid_world_model(ckpt["world_model"]["model"], obs_shape=(4, 10, 10), num_actions=6)
    weights = state.learner.model.state_dict()
    assert all(torch.equal(model.state_dict()[k], weights[k]) for k in weights)  # the final model, exactly
    cfg.run.total_frames = 1200
    resumed = run_training(get_builder("dyna"), cfg, run_dir=tmp_path / "local", resume=True)
    assert resumed.frames >= 1200 and resumed.updates > state.updates
    assert resumed.learner.num_imagined > state.learner.num_imagined
    assert resumed.learner.model_transitions > state.learner.model_transitions
    assert main(["evaluate", str(tmp_path / "local"), "--episodes", "1"]) == 0


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("ray_local")
def test_dyna_trains_with_ray_actors(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "run.name=ray", "runtime.num_actors=2", "env.num_envs=2", "run.total_frames=800",
               "runtime.publish_every_updates=10")
    state = run_training(get_builder("dyna"), cfg)
    assert state.frames >= 800 and state.updates > 0 and state.learner.num_imagined > 0
    logged = _scalars(tmp_path / "ray")
    assert TAGS <= set(logged) and "charts/policy_lag" in logged
    assert logged["worldmodel/imagined_transitions"][-1] > 0
    assert all(math.isfinite(v) for v in logged["losses/td_loss"])


def test_dyna_trains_locally_with_the_simple_scheme(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "run.name=simple", "run.total_frames=600", "env.num_envs=2", "dyna.scheme=simple",
               "dyna.imagined_episode_steps=5")
    state = run_training(get_builder("dyna"), cfg)
    assert state.learner.num_imagined > 0 and state.learner._env is not None
    logged = _scalars(tmp_path / "simple")
    assert TAGS <= set(logged) and logged["worldmodel/imagined_transitions"][-1] > 0
    assert all(math.isfinite(v) for v in logged["losses/td_loss"])
