"""Mixed Monte Carlo returns: the actor-side Monte Carlo returns (held until the episode ends), the replay column
and the learner's mixed target, all against hand-computed numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from agents.dqn.config import AgentConfig, NetworkConfig
from agents.dqn.learning import DQNLearner, double_dqn_targets, mixed_mc_targets
from agents.replay.buffer import PrioritizedReplay
from agents.replay.nstep import NStepBuilder, discounted_returns

torch.set_num_threads(1)


def fr(*values: int) -> np.ndarray:
    """uint8 [N, 2, 2] frames, frame i filled with values[i]."""
    return np.stack([np.full((2, 2), v, np.uint8) for v in values])


def builder(num_envs: int = 1, n: int = 1, gamma: float = 0.9, mc: bool = True) -> NStepBuilder:
    return NStepBuilder(num_envs, n=n, gamma=gamma, stack=4, frame_shape=(2, 2), seed=1, mc_returns=mc)


def step(b: NStepBuilder, actions: list[int], rewards: list[float], frames: list[int], term: list[bool] | None = None,
         trunc: list[bool] | None = None, q: list[list[float]] | None = None,
         game_over: list[bool] | None = None) -> None:
    n = len(actions)
    b.step(np.array(actions), None if q is None else np.array(q, np.float32), np.array(rewards, np.float32),
           np.array(term or [False] * n), np.array(trunc or [False] * n), fr(*frames),
           game_over=None if game_over is None else np.array(game_over))


# Rewards of the 4-step episode used throughout: G_3 = 3, G_2 = 2 + .9 * 3 = 4.7, G_1 = 0 + .9 * 4.7 = 4.23,
# G_0 = 1 + .9 * 4.23 = 4.807.
REWARDS = [1.0, 0.0, 2.0, 3.0]
MC = [4.807, 4.23, 4.7, 3.0]


def test_discounted_returns_hand_computed() -> None:
    np.testing.assert_allclose(discounted_returns(np.array(REWARDS), 0.9), MC)
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 1.0]), 0.5, bootstrap=4.0),
                               [1 + .5 + .25 * 4, 1 + .5 * 4])
    assert discounted_returns(np.zeros(0), 0.9).shape == (0,)
    # 30k steps: no underflow trouble, last one equals its reward
    g = discounted_returns(np.ones(30_000), 0.99)
    assert g[-1] == 1.0 and g[0] == pytest.approx(100.0)


def test_transitions_are_held_until_the_episode_ends_then_carry_exact_mc_returns() -> None:
    b = builder()
    b.reset(fr(10))
    for t, r in enumerate(REWARDS[:3]):
        step(b, [t % 2], [r], [11 + t])
    held = b.flush()
    assert len(held) == 0 and held.frames.shape[0] == 4  # frames go out at once, transitions wait
    assert b.pending == 3
    step(b, [1], [REWARDS[3]], [14], term=[True])
    c = b.flush()
    assert b.pending == 0
    np.testing.assert_allclose(c.mc_returns, MC, rtol=1e-6)
    np.testing.assert_allclose(c.returns, REWARDS)  # 1-step returns unchanged
    np.testing.assert_allclose(c.discounts, [0.9, 0.9, 0.9, 0.0])
    np.testing.assert_array_equal(c.actions, [0, 1, 0, 1])
    assert c.mc_returns.dtype == np.float32


def test_mixed_target_of_the_four_step_episode_hand_computed() -> None:
    """gamma 0.9, mc_mix 0.1, 1-step Double DQN: y = (1 - 0.1) * (r + 0.9 Q_target(s', argmax Q_online)) + 0.1 G."""
    b = builder()
    b.reset(fr(10))
    for t, r in enumerate(REWARDS):
        step(b, [0], [r], [11 + t], term=[t == 3])
    c = b.flush()
    # Next-state values: online picks action 1 for t=0..2 (target 3, 1, -2), t=3 is terminal.
    q_online = torch.tensor([[1.0, 5.0], [0.0, 2.0], [-1.0, 0.0], [9.0, 9.0]])
    q_target = torch.tensor([[2.0, 3.0], [7.0, 1.0], [4.0, -2.0], [5.0, 5.0]])
    y = double_dqn_targets(q_online, q_target, torch.from_numpy(c.returns), torch.from_numpy(c.discounts))
    np.testing.assert_allclose(y.numpy(), [1 + .9 * 3, 0 + .9 * 1, 2 + .9 * -2, 3.0], rtol=1e-6)
    mixed = mixed_mc_targets(y, torch.from_numpy(c.mc_returns), 0.1)
    expected = [0.9 * 3.7 + 0.1 * 4.807, 0.9 * 0.9 + 0.1 * 4.23, 0.9 * 0.2 + 0.1 * 4.7, 0.9 * 3.0 + 0.1 * 3.0]
    np.testing.assert_allclose(mixed.numpy(), expected, rtol=1e-6)
    assert expected == pytest.approx([3.8107, 1.233, 0.65, 3.0])
    # NaN (unknown) Monte Carlo return: the plain target
    nan_mixed = mixed_mc_targets(y, torch.tensor([float("nan"), 4.23, float("nan"), 3.0]), 0.1)
    np.testing.assert_allclose(nan_mixed.numpy(), [3.7, 1.233, 0.2, 3.0], rtol=1e-6)


def test_learner_trains_on_the_mixed_target() -> None:
    """The learner's TD errors are |y_mixed - Q(s, a)| with y_mixed built from its own networks."""
    rng = np.random.default_rng(0)
    obs = torch.from_numpy(rng.integers(0, 255, (4, 4, 84, 84), dtype=np.uint8))
    nxt = torch.from_numpy(rng.integers(0, 255, (4, 4, 84, 84), dtype=np.uint8))
    actions = torch.tensor([0, 1, 2, 1])
    returns = torch.tensor(REWARDS)
    discounts = torch.tensor([0.9, 0.9, 0.9, 0.0])
    mc = torch.tensor([4.807, float("nan"), 4.7, 3.0])
    for mix in (0.0, 0.1):
        learner = DQNLearner(3, AgentConfig(mc_mix=mix, loss="mse"), NetworkConfig(hidden=16), 100, seed=2)
        with torch.no_grad():
            q = learner.online(obs).gather(1, actions[:, None]).squeeze(1)
            y = double_dqn_targets(learner.online(nxt), learner.target(nxt), returns, discounts)
        stats = learner.step(obs, actions, returns, discounts, nxt, torch.ones(4), mc)
        want = y if mix == 0 else torch.where(torch.isnan(mc), y, 0.9 * y + 0.1 * mc)
        np.testing.assert_allclose(stats.td_abs, (want - q).abs().numpy(), rtol=1e-5, atol=1e-6)


def test_n_step_and_mc_columns_together() -> None:
    b = builder(n=3, gamma=0.9)
    b.reset(fr(10))
    for t, r in enumerate(REWARDS):
        step(b, [0], [r], [11 + t], term=[t == 3])
    c = b.flush()
    # 3-step returns: G0 = 1 + 0 + .81 * 2, G1 = 0 + .9 * 2 + .81 * 3, G2 = 2 + .9 * 3, G3 = 3
    np.testing.assert_allclose(c.returns, [2.62, 4.23, 4.7, 3.0], rtol=1e-6)
    np.testing.assert_allclose(c.discounts, [0.729, 0.0, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(c.mc_returns, MC, rtol=1e-6)


def test_truncated_episode_bootstraps_mc_with_max_q_of_the_final_observation() -> None:
    b = builder(gamma=0.5)
    b.reset(fr(10))
    q = [[0.0, 0.0]]
    step(b, [0], [1.0], [11], q=q)
    step(b, [1], [2.0], [12], trunc=[True], q=q)
    assert len(b.flush()) == 0  # the bootstrap value comes with the next call
    step(b, [0], [0.0], [20], q=[[8.0, 6.0]])  # autoreset call: Q of the final observation, max 8
    c = b.flush()
    # G_1 = 2 + .5 * 8 = 6, G_0 = 1 + .5 * 6 = 4
    np.testing.assert_allclose(c.mc_returns, [4.0, 6.0])
    np.testing.assert_allclose(c.returns, [1.0, 2.0])
    np.testing.assert_allclose(c.discounts, [0.5, 0.5])


def test_truncation_without_q_values_gives_unknown_mc() -> None:
    b = builder(gamma=0.5)
    b.reset(fr(10))
    step(b, [0], [1.0], [11], trunc=[True])
    step(b, [0], [0.0], [20])
    c = b.flush()
    assert len(c) == 1 and np.isnan(c.mc_returns).all()


def test_life_loss_terminal_ends_the_mc_episode_but_not_the_game() -> None:
    b = builder(gamma=0.5)
    b.reset(fr(10))
    step(b, [0], [1.0], [11])
    step(b, [0], [2.0], [12], term=[True], game_over=[False])  # a life lost: learning episode ends
    step(b, [0], [4.0], [13])  # the game goes on: a real step of a new learning episode
    step(b, [0], [8.0], [14], term=[True])
    c = b.flush()
    np.testing.assert_allclose(c.mc_returns, [1 + .5 * 2, 2.0, 4 + .5 * 8, 8.0])


def test_two_envs_release_in_episode_end_order_and_reset_mid_stream_gives_nan() -> None:
    b = builder(num_envs=2, gamma=0.5)
    b.reset(fr(10, 20))
    step(b, [0, 1], [1.0, 10.0], [11, 21])
    step(b, [0, 1], [2.0, 20.0], [12, 22], term=[False, True])  # env 1 ends first
    c = b.flush()
    np.testing.assert_allclose(c.mc_returns, [10 + .5 * 20, 20.0])
    np.testing.assert_array_equal(c.actions, [1, 1])
    step(b, [0, 0], [4.0, 0.0], [13, 30])  # env 1 autoresets
    step(b, [0, 0], [8.0, 5.0], [14, 31], term=[True, False])
    c = b.flush()
    np.testing.assert_allclose(c.mc_returns, [1 + .5 * 2 + .25 * 4 + .125 * 8, 2 + .5 * 4 + .25 * 8, 4 + .5 * 8, 8])
    assert b.pending == 1  # env 1's new episode is still running
    b.reset(fr(40, 50))  # cut: its return is unknown
    c = b.flush()
    assert len(c) == 1 and np.isnan(c.mc_returns).all() and c.returns[0] == 5.0
    assert b.pending == 0


def test_without_mc_nothing_is_held_and_no_mc_returns_are_sent() -> None:
    b = builder(mc=False)
    b.reset(fr(10))
    step(b, [0], [1.0], [11])
    c = b.flush()
    assert len(c) == 1 and c.mc_returns is None  # nothing computed, nothing sent: the replay stores NaN


def test_replay_stores_and_samples_mc_returns() -> None:
    b = NStepBuilder(1, n=1, gamma=0.9, stack=4, frame_shape=(84, 84), seed=3, mc_returns=True)
    replay = PrioritizedReplay(64, prioritized=False, seed=0)
    b.reset(np.zeros((1, 84, 84), np.uint8))
    for t, r in enumerate(REWARDS):
        b.step(np.array([0]), None, np.array([r]), np.array([t == 3]), np.array([False]),
               np.full((1, 84, 84), t + 1, np.uint8))
    replay.add(b.flush())
    batch = replay.sample(32)
    # the newest frame of s_t is filled with t, so each sample names its own transition
    t = batch.obs[:, -1, 0, 0].astype(int)
    np.testing.assert_allclose(batch.mc_returns, np.array(MC, np.float32)[t], rtol=1e-6)
    # Chunks without the column (older producers) store NaN
    for frame, term in ((20, False), (21, True)):  # the autoreset step, then a one-step episode
        b.step(np.array([0]), None, np.array([1.0]), np.array([term]), np.array([False]),
               np.full((1, 84, 84), frame, np.uint8))
    chunk = b.flush()
    assert len(chunk) == 1
    chunk.mc_returns = None
    replay.add(chunk)
    batch = replay.sample(64)
    newest = batch.obs[:, -1, 0, 0]
    assert (newest == 20).any() and np.isnan(batch.mc_returns[newest == 20]).all()
    assert not np.isnan(batch.mc_returns[newest < 4]).any()
    state = replay.state_dict()
    del state["t_mc_returns"]  # a checkpoint written before the column existed
    again = PrioritizedReplay(64, prioritized=False, seed=0)
    again.load_state_dict(state)
    assert np.isnan(again.sample(8).mc_returns).all()


def _reference_mc(env: Any, key: bytes, gamma: float) -> float:
    """Monte Carlo return from observation ``key`` to its learning episode's end, recomputed from the log of
    ``env`` (test_replay's AleLikeEnv):
    0 after a terminal, ``max_a Q(s_T, a)`` (the fake Q of the final observation) after a truncation."""
    from tests.unit.test_replay import q_of

    g, k, cur = 0.0, 0, key
    while True:
        _, r, te, tr, nxt = env.steps[cur]
        g += gamma**k * r
        k += 1
        if te:
            return g
        if tr:
            return g + gamma**k * float(q_of(env.shown[nxt][None]).max())
        cur = nxt


@pytest.mark.parametrize("margin", [64, 0])
def test_held_transitions_reach_a_wrapping_replay_consistently(margin: int) -> None:
    """Random episodes with terminals, truncations and life losses; transitions arrive in the replay only when
    their episode ends, so they refer to older frames than usual. Every live transition must still show the
    env's frames, the n-step target and the exact Monte Carlo return; with no frame margin, transitions whose
    frames were overwritten while they were held are dropped or evicted, never corrupted."""
    from tests.unit.test_replay import SHAPE, AleLikeEnv, check_against_env, drive

    n, gamma = 2, 0.8
    env = AleLikeEnv(num_envs=4, seed=5, end_prob=0.08)
    b = NStepBuilder(4, n=n, gamma=gamma, frame_shape=SHAPE, seed=1, mc_returns=True)
    replay = PrioritizedReplay(120, frame_shape=SHAPE, frame_margin=margin, seed=1)
    for chunk in drive(env, b, 500):
        replay.add(chunk)
    live = np.flatnonzero(replay._t["valid"])
    assert len(live) > 60 and replay.num_added > 4 * 120
    frames = replay._frames[replay._t["obs_ref"][live]]
    check_against_env(env, frames, replay._t["actions"][live], replay._t["returns"][live],
                      replay._t["discounts"][live], replay._frames[replay._t["next_ref"][live]], n, gamma)
    want = [_reference_mc(env, f[-1].tobytes(), gamma) for f in frames]
    np.testing.assert_allclose(replay._t["mc_returns"][live], want, rtol=1e-5, atol=1e-5)
    if margin == 0:
        assert replay.num_dropped + replay.num_evicted > 0
