"""The exploration bonus inside our DQN actor: exact rewards against an independent pseudo-count, reset frames,
intrinsic-return bookkeeping, episode trackers in EnvActor, and config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.dqn.actor import BonusStats, NStepAdder, make_dqn_parts, make_pseudo_count
from agents.dqn.config import DQNConfig, validate
from agents.replay.nstep import NStepBuilder
from agents.runtime.actor import EnvActor
from envs import CatchVectorEnv
from envs.montezuma import RoomTracker
from launch.config import ConfigError, load_config
from worldmodels.density import CTS, PseudoCount, preprocess_frames

torch.set_num_threads(1)


def _catch_cfg(*overrides: str) -> DQNConfig:
    return load_config(DQNConfig, ["dqn_catch"],
                       ["network.hidden=16", "env.num_envs=2", "agent.n_step=1", *overrides])


def test_adder_adds_the_bonus_of_the_next_frame_to_the_clipped_reward_and_learns_reset_frames() -> None:
    """Two Catch envs for 75 steps (two games each, so two autoreset steps). An independent PseudoCount fed the
    same frames in the same order (reset frames included) gives every bonus; rewards must be r + bonus exactly,
    and a game's intrinsic return the sum of its real steps' bonuses."""
    env = CatchVectorEnv(2, seed=3)
    builder = NStepBuilder(2, n=1, gamma=0.99, seed=0)
    adder = NStepAdder(builder, clip_rewards=True, pseudo_count=PseudoCount(CTS(), beta=0.05))
    reference = PseudoCount(CTS(), beta=0.05)
    obs, _ = env.reset()
    adder.reset(obs)
    reference(preprocess_frames(obs[:, -1]))
    rng = np.random.default_rng(0)
    expected_rewards: list[float] = []
    episode = np.zeros(2)
    finished: list[tuple[float, float]] = []  # (reported intrinsic return, reference sum)
    resetting = np.zeros(2, bool)
    for _ in range(75):
        actions = rng.integers(0, 3, 2)
        obs, reward, term, trunc, info = env.step(actions)
        adder.add(actions, {}, reward, term, trunc, obs, info)
        bonus = reference(preprocess_frames(obs[:, -1]))
        assert (bonus > 0).all()
        for i in range(2):
            if not resetting[i]:  # env order within a step, as the builder emits them
                expected_rewards.append(float(np.float32(np.clip(reward[i], -1, 1)) + np.float32(bonus[i])))
                episode[i] += bonus[i]
        for i in np.flatnonzero(info["game_over"]):
            finished.append((adder.stats.end_episode(int(i))["charts/intrinsic_return"], episode[i]))
            episode[i] = 0.0
        resetting = info["game_over"] & ~resetting
    chunk = adder.flush()
    np.testing.assert_allclose(chunk.returns, np.array(expected_rewards, np.float32), rtol=1e-6)
    assert len(finished) == 4 and all(a == pytest.approx(b) and a > 0 for a, b in finished)
    assert adder.stats.frames_learned == 2 * 75 + 2  # every frame the envs returned, reset frames too
    scalars, found = adder.stats.flush()
    assert found == {} and scalars["explore/density_frames"] == 152
    assert 0 < scalars["explore/intrinsic_reward_mean"] <= 0.5 and scalars["explore/pseudo_count_mean"] > 0


def test_bonus_stats_skip_infinite_counts_and_autoreset_steps() -> None:
    s = BonusStats(2)
    s.record(np.array([0.4, 0.2]), np.array([np.inf, 3.0]), np.array([True, True]))
    s.record(np.array([0.3, 0.1]), np.array([1.0, 5.0]), np.array([True, False]))
    assert s.end_episode(0) == {"charts/intrinsic_return": pytest.approx(0.7)}
    assert s.end_episode(1) == {"charts/intrinsic_return": pytest.approx(0.2)}
    scalars, _ = s.flush()
    assert scalars["explore/pseudo_count_mean"] == pytest.approx(2.0)  # finite counts of real steps: 3, 1
    assert scalars["explore/intrinsic_reward_mean"] == pytest.approx(0.9 / 3)
    assert "explore/pseudo_count_mean" not in s.flush()[0]  # accumulators restart per chunk


def test_pseudo_count_factory() -> None:
    assert make_pseudo_count("cts", 0.05).prediction_gain_decay is None
    pc = make_pseudo_count("pixelcnn", 0.1)  # Ostrovski et al.: gain decayed by 0.1 n^-1/2
    assert pc.beta == 0.1 and pc.prediction_gain_decay is not None
    assert pc(np.zeros((2, 42, 42), np.uint8)).shape == (2,)
    with pytest.raises(ValueError, match="'cts' or 'pixelcnn'"):
        make_pseudo_count("none", 0.05)


def test_env_actor_logs_intrinsic_returns_per_game_and_bonus_scalars() -> None:
    cfg = _catch_cfg("exploration.bonus=cts", "agent.mc_mix=0.1")
    actor = EnvActor(0, make_dqn_parts, cfg, seed=1)
    assert len(actor.trackers) == 1 and actor.adder.builder.mc_returns
    out = actor.run(31, frames=0)  # Catch games last 30 steps: both envs finish one
    assert len(out.episode_returns) == 2 and len(out.episode_stats) == 2
    assert all(s["charts/intrinsic_return"] > 0 for s in out.episode_stats)
    assert out.extras["epsilon"] == 1.0 and out.extras["explore/pseudo_count_mean"] > 0
    chunk = out.payload
    assert len(chunk) == 60 and np.isfinite(chunk.mc_returns).all()  # both episodes ended: all released
    assert (chunk.mc_returns > chunk.returns).sum() > 50  # later bonuses add up in the Monte Carlo return
    plain = EnvActor(0, make_dqn_parts, _catch_cfg(), seed=1)
    assert plain.trackers == [] and plain.adder.stats is None
    out = plain.run(31, frames=0)
    assert out.episode_stats == [{}, {}] and out.payload.mc_returns is None  # mc_mix = 0: no NaN column sent
    assert set(np.unique(out.payload.returns)) <= {-1.0, 0.0, 1.0}  # no bonus


def test_montezuma_with_gymnasium_backend_tracks_rooms() -> None:
    cfg = load_config(DQNConfig, ["dqn_pong"], ["env.game=MontezumaRevenge", "env.num_envs=2",
                                                 "env.backend=gymnasium", "network.hidden=16"])
    actor = EnvActor(0, make_dqn_parts, cfg, seed=1)
    assert [type(t) for t in actor.trackers] == [RoomTracker]
    out = actor.run(3, frames=0)
    assert out.discovered == {"explore/rooms_total": [1]}  # the start room
    assert actor.run(3, frames=0).discovered == {"explore/rooms_total": []}
    cfg.env.backend = "ale_vector"  # no RAM: no room tracker
    assert EnvActor(0, make_dqn_parts, cfg, seed=1).trackers == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # String choices are Enums: refused while loading (ConfigError is a ValueError), naming key and choices.
        ("exploration.bonus=icm", "exploration.bonus.*'icm', expected one of \\[none, cts, pixelcnn, rnd\\]"),
        ("exploration.beta=-0.1", "exploration.beta=-0.1 must be a finite number >= 0"),
        ("agent.mc_mix=1.5", "agent.mc_mix=1.5 must lie in \\[0, 1\\]"),
        ("env.backend=gym", "env.backend.*'gym', expected one of \\[ale_vector, gymnasium\\]"),
        ("env.backend=gymnasium", "applies to Atari games only"),
    ],
)
def test_config_errors_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate(_catch_cfg(override))


def test_config_type_errors_and_defaults() -> None:
    with pytest.raises(ConfigError, match="exploration.shared_density"):
        _catch_cfg("exploration.shared_density=maybe")
    with pytest.raises(ConfigError, match="exploration.beta"):
        _catch_cfg("exploration.btea=0.1")
    cfg = DQNConfig()
    assert (cfg.exploration.bonus, cfg.exploration.beta, cfg.exploration.shared_density) == ("none", 0.05, False)
    assert cfg.agent.mc_mix == 0.0 and cfg.env.backend == "ale_vector"
