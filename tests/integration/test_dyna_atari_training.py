"""The Dyna agent on Atari through the runtime (the dyna_atari preset, tiny networks, local mode): a few learner
updates that train the video world model and imagine, TensorBoard's worldmodel/ tags, a checkpoint holding the video
model with its optimiser, and a resume that continues from it."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.dyna.config import DynaConfig
from agents.registry import get_builder
from agents.runtime.loop import run_training
from launch.config import load_config
from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint
from worldmodels.video import VideoPredictor

#: Imagination starts after 2 video-model updates (64 real frames of learning starts first).
TINY = ["network.hidden=16", "agent.batch_size=4", "agent.learning_starts_frames=64", "agent.update_period=2",
        "video_model.stem_channels=4", "video_model.res_channels=8", "video_model.res_blocks=1",
        "video_model.res_factors=4", "dyna.model_batch_size=4", "dyna.model_warmup_transitions=8",
        "dyna.rollouts_per_update=2", "dyna.imagined_capacity=64", "dyna.holdout_size=16", "replay.capacity=2048",
        "run.progress=false", "run.eval_episodes=0", "run.log_every_frames=160", "run.checkpoint_every_frames=320"]
TAGS = {"worldmodel/imagined_transitions", "worldmodel/mse", "worldmodel/reward_loss", "worldmodel/one_step_mse",
        "worldmodel/copy_last_mse", "losses/td_loss", "charts/frames_per_s"}


def test_dyna_trains_on_atari_with_the_video_model_and_resumes(tmp_path: Path) -> None:
    cfg = load_config(DynaConfig, ["dyna_atari"], [*TINY, f"run.runs_dir={tmp_path}", "run.name=atari",
                                                   "run.total_frames=320"])
    state = run_training(get_builder("dyna"), cfg)
    assert state.frames >= 320 and state.updates > 2 and state.learner.num_imagined > 0
    acc = EventAccumulator(str(tmp_path / "atari")).Reload()
    logged = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert TAGS <= set(logged), TAGS - set(logged)
    assert all(math.isfinite(v) for tag in TAGS for v in logged[tag])
    ckpt = load_checkpoint(list_checkpoints(tmp_path / "atari" / "checkpoints")[-1])
    model = VideoPredictor.from_state_dict_full(ckpt["world_model"]["model"])
    weights = state.learner.model.state_dict()
    assert all(torch.equal(model.state_dict()[k], weights[k]) for k in weights)  # the final model, exactly
    assert ckpt["world_model"]["updates"] == state.learner.trainer.updates
    cfg.run.total_frames = 480
    resumed = run_training(get_builder("dyna"), cfg, run_dir=tmp_path / "atari", resume=True)
    assert resumed.frames >= 480 and resumed.updates > state.updates
    assert resumed.learner.trainer.updates > state.learner.trainer.updates
    assert resumed.learner.num_imagined > state.learner.num_imagined
