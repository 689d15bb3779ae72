"""The Gymnasium bonus wrappers with RND and on grid observations (issue 24 items 2-3): ``model="rnd"``, the old and
new names, MinAtar / maze observations scored whole, RND's input statistics from random play, and Stable-Baselines3's
PPO training unmodified through the wrapper."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs import MazeEnv, MinAtarEnv, make_env
from envs.wrappers import NoveltyBonus, PseudoCountBonus, VectorNoveltyBonus, VectorPseudoCountBonus
from worldmodels.density import CTS, PseudoCount
from worldmodels.density.rnd import RND

torch.set_num_threads(1)


class _Record(gym.Wrapper):
    """Keeps the intrinsic rewards the bonus wrapper reports."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.intrinsic: list[float] = []

    def step(self, action: Any) -> tuple:
        out = self.env.step(action)
        self.intrinsic.append(out[4]["intrinsic_reward"])
        return out


def test_old_and_new_names_are_the_same_wrappers() -> None:
    assert NoveltyBonus is PseudoCountBonus and VectorNoveltyBonus is VectorPseudoCountBonus


def test_rnd_on_a_maze_reports_its_error_as_the_bonus_and_nan_counts() -> None:
    env = PseudoCountBonus(MazeEnv("maze/7", seed=0), model="rnd", beta=2.0)
    assert isinstance(env.novelty, RND) and env.novelty.config.input_shape == (3, 7, 7)
    env.init_normalizer(50, seed=0)
    assert env.novelty.normalizer.count >= 51  # the reset, 50 steps and any resets between episodes
    obs, info = env.reset(seed=1)
    obs, reward, _, _, info = env.step(1)
    assert np.isnan(info["pseudo_count"]) and info["intrinsic_reward"] > 0
    assert reward == pytest.approx(info["extrinsic_reward"] + info["intrinsic_reward"])


def test_a_pseudo_count_on_minatar_scores_the_whole_grid() -> None:
    env = PseudoCountBonus(MinAtarEnv("breakout", seed=0), model="cts")
    source = env.novelty
    assert isinstance(source, PseudoCount) and isinstance(source.model, CTS)
    assert source.model.shape == (10, 10) and source.model.num_levels == 16  # 4 channels: 2**4 symbols
    env.reset(seed=0)
    _, _, _, _, info = env.step(0)
    assert info["intrinsic_reward"] > 0 and np.isfinite(info["pseudo_count"])
    with pytest.raises(ValueError, match=r"model: 'cts' cannot score grid observations of 10 channels.*model=rnd"):
        PseudoCountBonus(MinAtarEnv("seaquest", seed=0), model="cts")
    with pytest.raises(ValueError, match="init_normalizer applies to model='rnd' only"):
        env.init_normalizer(5)


def test_vector_rnd_per_env_and_shared_on_the_maze() -> None:
    venv = make_env("maze/7", num_envs=3, seed=0)
    wrapped = VectorPseudoCountBonus(venv, model="rnd", beta=1.0)
    assert len(wrapped.pseudo_counts) == 3 and all(isinstance(s, RND) for s in wrapped.pseudo_counts)
    wrapped.init_normalizer(10, seed=0)
    assert all(s.normalizer.count == 33 for s in wrapped.pseudo_counts)  # (reset + 10 steps) x 3 envs
    obs, info = wrapped.reset(seed=0)
    obs, reward, _, _, info = wrapped.step(np.zeros(3, np.int64))
    assert np.isnan(info["pseudo_count"]).all() and (info["intrinsic_reward"] > 0).all()
    np.testing.assert_allclose(reward, info["extrinsic_reward"] + info["intrinsic_reward"])
    shared = VectorPseudoCountBonus(make_env("maze/7", num_envs=3, seed=0), model="rnd", shared=True)
    shared.reset(seed=0)
    assert shared.step(np.zeros(3, np.int64))[4]["intrinsic_reward"].shape == (3,)


def test_sb3_ppo_trains_unmodified_through_the_rnd_wrapper_on_minatar() -> None:
    PPO = pytest.importorskip("stable_baselines3").PPO  # the bench extra, which `make test` installs

    bonus_env = PseudoCountBonus(MinAtarEnv("breakout", seed=0), model="rnd")
    bonus_env.init_normalizer(64, seed=0)
    recorder = _Record(bonus_env)
    model = PPO("MlpPolicy", recorder, n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32]})
    model.learn(total_timesteps=256)
    bonus = np.array(recorder.intrinsic)
    assert len(bonus) >= 256 and np.isfinite(bonus).all() and (bonus > 0).all()
    assert isinstance(bonus_env.novelty, RND) and bonus_env.novelty.num_updates >= 257
