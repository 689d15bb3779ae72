"""The Dyna agent on Atari (the dyna_atari preset: the video world model behind agents/dyna/models.py): its settings
are checked naming the key, the learner trains the video model on the replay's stacks, imagines with both schemes
and mixes Q-network observations into DQN's batch, and a restored learner (the video model, its optimiser, the
counts) continues exactly; a checkpoint of another game's model is refused before anything is restored."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from agents.dyna.config import DynaConfig, validate, world_model_family
from agents.dyna.models import VideoDyna
from agents.runtime.algorithm import Counters
from launch.config import load_config
from tests.dyna_parts import fill, make_learner, roundtrip, run_updates, same

torch.set_num_threads(1)

#: A learner on Pong that imagines after 2 video-model updates, with tiny networks.
TINY = ["network.hidden=16", "agent.batch_size=4", "agent.learning_starts_frames=64",
        "video_model.stem_channels=4", "video_model.res_channels=8", "video_model.res_blocks=1",
        "video_model.res_factors=4", "dyna.model_batch_size=4", "dyna.model_warmup_transitions=8",
        "dyna.rollouts_per_update=2", "dyna.imagined_capacity=64", "dyna.holdout_size=16", "replay.capacity=2048",
        "run.progress=false", "run.eval_episodes=0"]


def _cfg(*overrides: str) -> DynaConfig:
    return load_config(DynaConfig, ["dyna_atari"], [*TINY, *overrides])






def test_the_preset_loads_and_validates_with_the_video_model() -> None:
    cfg = load_config(DynaConfig, ["dyna_atari"])
    validate(cfg)
    assert world_model_family(cfg.env.game) == "video" and cfg.video_model.context == 4
    assert cfg.agent.clip_rewards and cfg.dyna.scheme == "simple"
    assert [world_model_family(g) for g in ("minatar/breakout", "ALE/Breakout-v5", "maze/10", "toy/catch",
                                            "NoSuchGame")] == ["grid", "video", None, None, None]


@pytest.mark.parametrize(("override", "match"), [
    ("agent.clip_rewards=false", r"agent\.clip_rewards=false: on Atari.*set agent\.clip_rewards=true"),
    ("video_model.context=3", r"video_model\.context=3: .*stack of 4 frames; set video_model\.context=4"),
    ("video_model.reward_head=false", r"video_model\.reward_head=false"),
    ("video_model.architecture=recurrent", r"video_model\.architecture=recurrent.*feedforward"),
    ("video_model.lr=0", r"video_model\.lr=0"),
    ("video_model.res_channels=0", r"video_model\.res_channels=0 must be positive"),
    ("dyna.gif_every_frames=1000", r"dyna\.gif_every_frames=1000: .*MinAtar's grids only"),
    ("env.colour=true", r"env\.colour=True.*env\.colour=false"),
])
def test_bad_atari_settings_are_refused_naming_the_key(override: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate(_cfg(override))


@pytest.mark.parametrize("scheme", ["simple", "mbpo"])
def test_the_learner_trains_the_video_model_imagines_and_mixes_stacks(scheme: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(f"dyna.scheme={scheme}")
    learner = make_learner(cfg)
    assert isinstance(learner.world, VideoDyna) and learner.history is None
    counters = fill(learner, cfg, 64, frame_skip=4)
    assert learner.holdout.contents()["obs"].shape[1:] == (4, 84, 84)
    assert learner.holdout.contents()["next_obs"].shape[1:] == (84, 84)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    step = learner.dqn.core.step

    def spy(obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor,
            next_obs: torch.Tensor, *rest: Any) -> Any:
        seen.append((obs, next_obs))
        return step(obs, actions, returns, discounts, next_obs, *rest)

    monkeypatch.setattr(learner.dqn.core, "step", spy)
    first = run_updates(learner, counters, 1)[0]
    assert learner.num_imagined == 0 and {"worldmodel/mse", "worldmodel/reward_loss", "losses/td_loss"} <= set(first)
    scalars = run_updates(learner, counters, 3)
    assert learner.warmed_up and learner.num_imagined > 0 and learner.trainer.updates == 4
    assert all(math.isfinite(v) for s in scalars for v in s.values())
    kept = learner.imagined.contents()
    assert kept["obs"].shape[1:] == (4, 84, 84) and kept["next_obs"].shape[1:] == (84, 84)
    # The mixed batch: 4 real + 4 imagined stacks; an imagined next observation is its stack shifted by one frame.
    obs, next_obs = seen[-1]
    assert obs.shape == (8, 4, 84, 84) and next_obs.shape == (8, 4, 84, 84)
    assert torch.equal(next_obs[4:, :3], obs[4:, 1:])
    logged = learner.scalars()
    for tag in ("worldmodel/one_step_mse", "worldmodel/copy_last_mse", "worldmodel/reward_accuracy",
                "worldmodel/terminal_accuracy"):
        assert math.isfinite(logged[tag]) and logged[tag] >= 0, tag


def test_a_restored_atari_learner_continues_exactly() -> None:
    cfg = _cfg("replay.save_in_checkpoint=true", "dyna.scheme=mbpo")
    learner = make_learner(cfg)
    counters = fill(learner, cfg, 64, frame_skip=4)
    run_updates(learner, counters, 4)
    assert learner.num_imagined > 0
    state = roundtrip(learner.state_dict())
    assert state["world_model"]["model"]["format"] == "reverie-video-predictor-v1"
    assert state["world_model"]["optimizer"]["state"]  # Adam's moments travel with it
    restored = make_learner(cfg)
    restored.load_state_dict(state)
    assert same(restored.state_dict(), learner.state_dict())
    assert torch.equal(restored.model.mean, learner.model.mean) and float(learner.model.mean.max()) > 0
    twin = Counters(**{k: getattr(counters, k) for k in ("steps", "updates", "episodes", "frame_skip",
                                                         "total_steps")})
    a, b = run_updates(learner, counters, 3), run_updates(restored, twin, 3)
    assert a == b
    assert same(restored.state_dict(), learner.state_dict())


def test_a_video_model_of_another_game_is_refused_before_anything_is_restored() -> None:
    pong = make_learner(_cfg())
    before = copy.deepcopy(pong.dqn.core.online.state_dict())
    state = make_learner(_cfg("env.game=Breakout", "run.seed=3")).state_dict()  # 4 actions, Pong has 6
    with pytest.raises(ValueError, match=r"world model was trained on Breakout: frames \(84, 84\), context 4 and 4 "
                                         r"actions, but this env has frames \(84, 84\), context 4 and 6 actions"):
        pong.load_state_dict(state)
    after = pong.dqn.core.online.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
