"""Double-buffered sampling: a split Atari vector env is the unsplit one, and an actor that acts on one group while
the other emulates collects exactly the unrolls of one that steps all envs at once."""

from __future__ import annotations

import numpy as np
import pytest

from agents.actor_critic.actor import make_ac_parts
from agents.actor_critic.config import ActorCriticConfig
from agents.runtime.actor import EnvActor
from agents.runtime.config import make_actor_env, validate_common
from envs import make_env
from envs.vector import SplitVector
from launch.config import load_config


def ac_config(*overrides: str) -> ActorCriticConfig:
    # a2c_pong's network on Breakout (a life-loss game under the Nature preset), small enough for a unit test.
    return load_config(ActorCriticConfig, ["a2c_pong"], [
        "env.game=Breakout", "env.num_envs=4", "agent.unroll_length=5", "network.hidden=32", *overrides])


def test_split_env_steps_the_games_of_the_unsplit_one() -> None:
    whole = make_env("Breakout", preset="nature", num_envs=4, seed=7)
    split = SplitVector([make_env("Breakout", preset="nature", num_envs=2, seed=7 + 2 * k) for k in range(2)])
    try:
        assert split.num_envs == 4 and split.group_slices == [slice(0, 2), slice(2, 4)]
        obs_a, info_a = whole.reset()
        obs_b, info_b = split.reset()
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(info_a["lives"], info_b["lives"])
        rng = np.random.default_rng(0)
        ended = 0
        for _ in range(300):
            actions = rng.integers(0, whole.single_action_space.n, 4)
            a, b = whole.step(actions), split.step(actions)
            for x, y in zip(a[:4], b[:4]):
                np.testing.assert_array_equal(x, y)
            assert set(a[4]) == set(b[4])
            for key in a[4]:
                np.testing.assert_array_equal(a[4][key], b[4][key], err_msg=key)
            ended += int(a[2].sum())
        assert ended > 0  # life losses happened: the terminal flags were compared where they matter
    finally:
        whole.close()
        split.close()


def test_make_actor_env_splits_as_configured_and_probes_unsplit() -> None:
    cfg = ac_config("env.splits=2")
    env = make_actor_env(cfg.env, seed=3)
    probe = make_actor_env(cfg.env, seed=3, num_envs=1)
    try:
        assert isinstance(env, SplitVector) and env.num_groups == 2 and env.num_envs == 4
        assert env.frame_skip == 4 and env.stack == 4 and env.observation_space.shape == (4, 4, 84, 84)
        assert not isinstance(probe, SplitVector)
    finally:
        env.close()
        probe.close()


def collect(cfg: ActorCriticConfig, chunks: int) -> tuple[list, EnvActor]:
    actor = EnvActor(0, make_ac_parts, cfg, seed=5)
    outputs = [actor.run(5, frames=0) for _ in range(chunks)]
    return outputs, actor


def test_double_buffered_actor_collects_the_unrolls_of_the_synchronous_one() -> None:
    sync, sync_actor = collect(ac_config("env.splits=1"), chunks=40)
    pipe, pipe_actor = collect(ac_config("env.splits=2"), chunks=40)
    try:
        assert not sync_actor._pipelined and pipe_actor._pipelined
        for a, b in zip(sync, pipe):
            assert a.env_steps == b.env_steps and a.episode_returns == b.episode_returns
            for name in ("obs", "starts", "actions", "rewards", "discounts", "carry", "valid"):
                np.testing.assert_array_equal(getattr(a.payload, name), getattr(b.payload, name), err_msg=name)
            np.testing.assert_allclose(a.payload.logits, b.payload.logits, rtol=1e-5, atol=1e-6)
        # Life losses (terminal steps) happened inside the 200 compared steps.
        assert sum(int((out.payload.discounts == 0).sum()) for out in sync) > 0
        np.testing.assert_array_equal(sync_actor._starts, pipe_actor._starts)
        np.testing.assert_array_equal(sync_actor.obs, pipe_actor.obs)
    finally:
        sync_actor.close()
        pipe_actor.close()


def test_a_recurrent_policy_steps_all_groups_at_once() -> None:
    outputs, actor = collect(ac_config("env.splits=2", "network.core=lstm", "network.lstm_size=16"), chunks=1)
    try:
        assert not actor._pipelined  # per-env state across steps: no acting on one group alone
        assert outputs[0].payload.actions.shape == (5, 4)
    finally:
        actor.close()


@pytest.mark.parametrize(("overrides", "message"), [
    (["env.splits=3"], "divide env.num_envs=4"),
    (["env.splits=0"], "must be 1 or more"),
])
def test_bad_splits_are_refused_naming_the_key(overrides: list[str], message: str) -> None:
    cfg = ac_config(*overrides)
    with pytest.raises(ValueError, match=message) as err:
        validate_common(cfg.env, cfg.runtime, cfg.run)
    assert "env.splits" in str(err.value)


@pytest.mark.parametrize("overrides", [
    ["env.game=minatar/breakout", "env.splits=3"],  # 3 does not divide 4: no matter, MinAtar is not split
    ["env.game=toy/catch", "env.splits=2"],
    ["env.backend=gymnasium", "env.splits=2"],
])
def test_envs_that_step_in_python_are_one_vector_env_whatever_splits_says(overrides: list[str]) -> None:
    cfg = ac_config(*overrides)
    validate_common(cfg.env, cfg.runtime, cfg.run)
    env = make_actor_env(cfg.env, seed=0)
    try:
        assert not isinstance(env, SplitVector) and env.num_envs == 4
    finally:
        env.close()


def test_rnd_input_statistics_come_from_random_play_on_a_split_env() -> None:
    # RND's observation statistics are taken from random play before training; a split env is sampled through its
    # batched action space like any vector env (ppo_rnd_freeway uses splits: 2 and once failed here).
    cfg = ac_config("env.splits=2", "exploration.bonus=rnd", "exploration.streams=two", "exploration.rnd_init_steps=8")
    env = make_actor_env(cfg.env, seed=3)
    try:
        assert env.action_space.shape == (4,) and env.action_space.sample().shape == (4,)
    finally:
        env.close()
    outputs, actor = collect(cfg, chunks=1)
    try:
        assert actor._pipelined
        source = actor.adder.scorer.source
        # 9 random-play observations (the reset and 8 steps) of all four envs, then the first unroll's frames.
        assert source.normalizer.count >= 9 * 4
        assert outputs[0].payload.int_rewards.shape == (5, 4)
    finally:
        actor.close()
