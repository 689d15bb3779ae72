"""A2C learns toy/catch (random play scores about -3.6 per game, perfect play +5). About a minute on a quiet
2-core machine, several on a busy one: marked slow.

The settings are a2c_tiny's with overrides that make A2C learn Catch: 16 envs, Adam at a constant 5e-4, gradient-norm
clip 5, entropy 0.02 and gamma 0.9. With PyTorch's default initialisation, Adam at 2.5e-4 reached 4.4-4.5 (greedy and
sampled, seeds 0, 1 and 2) after 400k frames; the orthogonal initialisation (a near-uniform first policy) learns
more slowly at that rate (greedy 2.0 at 400k frames), hence 5e-4. With the Atari settings (clip 0.5, gamma 0.99)
Catch, whose envs all end their games on the same step, teaches the value from one batch in six, which the clip
cannot follow: values drift to about -10 (returns lie in [-5, 5]) and the policy stays near random play."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.actor_critic.config import ActorCriticConfig
from agents.actor_critic.evaluate import evaluate_policy
from agents.actor_critic.train import train
from launch.config import load_config
from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint

RANDOM_RETURN = -3.6

LEARNS = [
    "env.num_envs=16", "agent.unroll_length=5", "runtime.chunk_steps=5",
    "agent.optimizer=adam", "agent.lr=5e-4", "agent.anneal_lr=false", "agent.max_grad_norm=5",
    "agent.entropy_coef=0.02", "agent.gamma=0.9",
    "run.total_frames=400000", "run.checkpoint_every_frames=200000", "run.log_every_frames=20000",
    "run.eval_episodes=0",
]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a2c_learns_catch(tmp_path: Path) -> None:
    cfg = load_config(ActorCriticConfig, ["a2c_tiny"],
                      [*LEARNS, f"run.runs_dir={tmp_path}", "run.progress=false"])
    assert str(cfg.agent.loss) == "a2c" and str(cfg.network.core) == "ff"
    state = train(cfg)
    weights = load_checkpoint(find_checkpoint(tmp_path / cfg.run.name))["learner"]["network"]
    sampled = evaluate_policy(cfg, weights, episodes=20, seed=7)
    cfg.agent.eval_greedy = True
    greedy = evaluate_policy(cfg, weights, episodes=20, seed=7)
    assert greedy.mean > 2.0, f"greedy return {greedy.mean} (returns {greedy.returns})"
    assert sampled.mean > 2.0, f"sampled return {sampled.mean} (returns {sampled.returns})"
    assert np.mean(state.returns[:50]) < RANDOM_RETURN + 1.0
    assert np.mean(state.returns[-50:]) > np.mean(state.returns[:50]) + 4.0
