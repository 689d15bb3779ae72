"""MinAtar (envs.minatar): the vector env's shapes, NextStep autoreset, info and seeding for all five games;
newest_frames on both observation layouts; the shared torsos; a MinAtar Q-network; MinAtar through the n-step
builder and the replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from agents.dqn.networks import QNetwork
from agents.replay.buffer import PrioritizedReplay
from agents.replay.nstep import NStepBuilder
from agents.torsos import a3c_cnn, make_torso, minatar_cnn, nature_cnn
from envs import (
    MINATAR_GAMES,
    CatchVectorEnv,
    MinAtarEnv,
    MinAtarVector,
    action_meanings,
    make_env,
    newest_frames,
    num_actions,
)

torch.set_num_threads(1)

CHANNELS = {"minatar/asterix": 4, "minatar/breakout": 4, "minatar/freeway": 7, "minatar/seaquest": 10,
            "minatar/space_invaders": 6}
INFO_KEYS = {"env_id", "lives", "frame_number", "episode_frame_number", "raw_reward", "game_over"}


def _play_until_game_over(env: MinAtarVector, rng: np.random.Generator, limit: int = 3000) -> tuple:
    """Random actions until some env's game ends; returns (step index, last step's outputs)."""
    for t in range(limit):
        out = env.step(rng.integers(0, 6, env.num_envs))
        if out[2].any():
            return t, out
    raise AssertionError(f"no game ended in {limit} random steps")


# ------------------------------------------------------------------------------------------------ the env
@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_shapes_dtypes_channels_and_info_keys(game: str) -> None:
    c = CHANNELS[game]
    env = make_env(game, num_envs=3, seed=0)
    assert isinstance(env, MinAtarVector) and env.game == game and env.num_envs == 3
    assert (env.stack, env.frame_shape, env.frame_skip) == (1, (c, 10, 10), 1)
    assert env.single_observation_space.shape == (c, 10, 10) and env.single_observation_space.dtype == np.uint8
    assert env.single_action_space.n == 6 == num_actions(game)
    assert action_meanings(game) == ["NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE"]
    obs, info = env.reset(seed=1)
    assert obs.shape == (3, c, 10, 10) and obs.dtype == np.uint8 and obs.flags.c_contiguous
    assert set(np.unique(obs)) <= {0, 1} and obs.any()
    assert set(info) == INFO_KEYS
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, 6, 3))
        assert obs.shape == (3, c, 10, 10) and obs.dtype == np.uint8 and obs in env.observation_space
        assert reward.dtype == np.float32 and terminated.dtype == truncated.dtype == bool and not truncated.any()
        assert set(info) == INFO_KEYS
        assert info["raw_reward"].dtype == np.float64 and info["episode_frame_number"].dtype == np.int32
    # The same info keys as the Atari-like Catch env.
    _, catch_info = CatchVectorEnv(2).reset()
    assert set(catch_info) == INFO_KEYS
    env.close()


def test_next_step_autoreset_after_a_real_game_over() -> None:
    env = make_env("minatar/breakout", num_envs=4, seed=3)
    obs, _ = env.reset()
    t, (obs, reward, terminated, truncated, info) = _play_until_game_over(env, np.random.default_rng(0))
    ended = np.flatnonzero(terminated)
    assert np.array_equal(info["game_over"], terminated) and not truncated.any()
    assert np.all(info["episode_frame_number"][ended] == t + 1) and np.all(info["lives"] == 0)
    # The next step ignores the ended envs' actions and returns a fresh game: reward 0, not terminated.
    obs, reward, terminated, truncated, info = env.step(np.full(4, 5))
    assert np.all(reward[ended] == 0) and not terminated[ended].any() and not info["game_over"][ended].any()
    assert np.all(info["raw_reward"][ended] == 0) and np.all(info["episode_frame_number"][ended] == 0)
    assert np.all(obs[ended, 3].sum(axis=(1, 2)) == 30)  # Breakout starts with three full rows of bricks
    assert np.all(info["frame_number"] == t + 2)
    obs, *_, info = env.step(np.zeros(4, np.int64))
    assert np.all(info["episode_frame_number"][ended] == 1)


def test_autoreset_step_ignores_the_action_entirely() -> None:
    a, b = (make_env("minatar/breakout", num_envs=3, seed=11) for _ in range(2))
    a.reset(), b.reset()
    rng = np.random.default_rng(1)
    ended = np.zeros(3, bool)
    resets = 0
    for _ in range(400):
        actions = rng.integers(0, 6, 3)
        other = np.where(ended, (actions + 1 + rng.integers(0, 5, 3)) % 6, actions)  # differ only where ignored
        oa, ra, ta, _, _ = a.step(actions)
        ob, rb, tb, _, _ = b.step(other)
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(ta, tb)
        resets += int(ended.sum())
        ended = ta
    assert resets >= 2  # the check above covered several autoreset steps


def test_same_seed_same_trajectories_and_seeded_reset_restarts() -> None:
    actions = np.random.default_rng(2).integers(0, 6, (300, 2))

    def rollout(env: MinAtarVector, seed: int | None) -> list[np.ndarray]:
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for a in actions:
            obs, r, te, _, _ = env.step(a)
            out += [obs, r, te]
        return out

    for game in ("minatar/seaquest", "minatar/breakout"):
        first = rollout(make_env(game, num_envs=2, seed=5), None)
        for x, y in zip(first, rollout(make_env(game, num_envs=2, seed=0), 5)):  # the first reset uses the seed
            np.testing.assert_array_equal(x, y)
        again = make_env(game, num_envs=2, seed=5)
        for x, y in zip(first, rollout(again, None)):
            np.testing.assert_array_equal(x, y)
        for x, y in zip(first, rollout(again, 5)):  # a used env reset with the seed replays the same games
            np.testing.assert_array_equal(x, y)
        other = rollout(make_env(game, num_envs=2, seed=6), None)
        assert any(not np.array_equal(x, y) for x, y in zip(first, other))


def test_reset_mask_resets_only_the_masked_envs() -> None:
    env = make_env("minatar/freeway", num_envs=2, seed=0)
    env.reset()
    for _ in range(20):
        obs, *_ = env.step(np.full(2, 2))  # UP: the chicken leaves the bottom row
    again, info = env.reset(options={"reset_mask": np.array([True, False])})
    np.testing.assert_array_equal(again[1], obs[1])
    assert not np.array_equal(again[0], obs[0]) and info["episode_frame_number"].tolist() == [0, 20]
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": np.array([1, 0])})


def test_errors_and_single_env() -> None:
    with pytest.raises(ValueError) as err:
        make_env("minatar/pong")
    for game in MINATAR_GAMES:
        assert game in str(err.value)
    with pytest.raises(ValueError, match="unknown MinAtar game"):
        num_actions("minatar/pong")
    with pytest.raises(ValueError, match="sticky_action_prob"):
        make_env("minatar/breakout", num_envs=2, repeat_action_probability=0.0)
    env = make_env("minatar/breakout", num_envs=2, sticky_action_prob=0.0, difficulty_ramping=False)
    assert env.sticky_action_prob == 0.0 and env.difficulty_ramping is False
    env.reset()
    with pytest.raises(ValueError, match="actions must be ints"):
        env.step(np.array([0, 6]))
    single = make_env("minatar/space_invaders", num_envs=None, seed=4)
    assert isinstance(single, MinAtarEnv) and single.frame_shape == (6, 10, 10)
    check_env(single, skip_render_check=True)
    obs, info = single.reset(seed=4)
    assert obs.shape == (6, 10, 10) and obs.dtype == np.uint8 and set(info) == INFO_KEYS - {"env_id"}


# --------------------------------------------------------------------------------------------- newest_frames
def test_newest_frames_on_both_layouts() -> None:
    rng = np.random.default_rng(0)
    atari = rng.integers(0, 256, (3, 4, 84, 84), dtype=np.uint8)
    frames = newest_frames(atari, 4, (84, 84))
    assert frames.shape == (3, 84, 84) and np.shares_memory(frames, atari)
    np.testing.assert_array_equal(frames, atari[:, -1])
    minatar = rng.integers(0, 2, (3, 7, 10, 10), dtype=np.uint8)
    np.testing.assert_array_equal(newest_frames(minatar, 1, (7, 10, 10)), minatar)
    stacked = rng.integers(0, 2, (3, 2 * 7, 10, 10), dtype=np.uint8)  # two stacked MinAtar frames
    np.testing.assert_array_equal(newest_frames(stacked, 2, (7, 10, 10)), stacked[:, 7:])
    with pytest.raises(ValueError, match="stack=4"):
        newest_frames(minatar, 4, (84, 84))
    env = make_env("toy/catch", num_envs=2)
    obs, _ = env.reset()
    assert (env.stack, env.frame_shape) == (4, (84, 84))
    np.testing.assert_array_equal(newest_frames(obs, env.stack, env.frame_shape), obs[:, -1])


def test_atari_vector_env_has_the_frame_attributes() -> None:
    env = make_env("Breakout", num_envs=1)
    assert (env.stack, env.frame_shape, env.frame_skip) == (4, (84, 84), 4)
    env.close()
    env = make_env("Breakout", preset="nature", num_envs=1, frame_skip=3, stack=2)
    assert (env.stack, env.frame_shape, env.frame_skip) == (2, (84, 84), 3)
    env.close()


# ------------------------------------------------------------------------------------------------- torsos
def test_torso_output_sizes() -> None:
    x84 = torch.zeros(2, 4, 84, 84, dtype=torch.uint8)
    for build, size in ((nature_cnn, 3136), (a3c_cnn, 2592)):
        torso = build(4)
        assert torso.out_features == size and torso(x84).shape == (2, size)
    x10 = torch.zeros(2, 7, 10, 10, dtype=torch.uint8)
    assert minatar_cnn(7).out_features == 1024 and minatar_cnn(7)(x10).shape == (2, 1024)
    torso, out = make_torso((4, 84, 84))
    assert out == 3136 and torso.input_divisor == 255.0 and len(torso) == 7  # Nature: 3 conv + 3 ReLU + flatten
    torso, out = make_torso((7, 10, 10))
    assert out == 1024 and torso.input_divisor == 1.0 and len(torso) == 3
    torso, out = make_torso((3, 21, 21))  # the maze's grid: MinAtar's torso, 0/1 channels as they are
    assert out == 16 * 19 * 19 and torso.input_divisor == 1.0 and len(torso) == 3
    torso, out = make_torso((4, 84, 84), kind="a3c")
    assert out == 2592 and torso(x84).shape == (2, 2592)
    with pytest.raises(ValueError, match="no automatic torso for 32x32"):
        make_torso((4, 32, 32))
    with pytest.raises(ValueError, match="unknown torso kind"):
        make_torso((4, 84, 84), kind="resnet")
    with pytest.raises(ValueError, match="too small"):
        make_torso((4, 10, 10), kind="nature")


def test_torsos_scale_pixels_but_not_minatar_channels() -> None:
    torch.manual_seed(0)
    pixels = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    torso, _ = make_torso((4, 84, 84))
    assert torch.equal(torso(pixels), torso(pixels.float() / 255.0))  # float input: taken as already scaled
    channels = torch.randint(0, 2, (2, 4, 10, 10), dtype=torch.uint8)
    torso, _ = make_torso((4, 10, 10))
    assert torch.equal(torso(channels), torso(channels.float()))


def test_minatar_q_network_forward_on_uint8() -> None:
    for dueling in (False, True):
        net = QNetwork(6, obs_shape=(4, 10, 10), hidden=128, dueling=dueling)
        q = net(torch.randint(0, 2, (5, 4, 10, 10), dtype=torch.uint8))
        assert q.shape == (5, 6) and q.dtype == torch.float32
    keys = set(QNetwork(6, obs_shape=(4, 10, 10), hidden=128).state_dict())
    assert keys == {"torso.0.weight", "torso.0.bias", "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"}
    assert QNetwork(6, obs_shape=(4, 10, 10), hidden=128).head[0].in_features == 1024
    # The Atari default keeps the Nature names and shapes (old checkpoints load), and stack= still works.
    atari = QNetwork(6, hidden=32).state_dict()
    assert {k: tuple(v.shape) for k, v in atari.items() if k.startswith("torso")} == {
        "torso.0.weight": (32, 4, 8, 8), "torso.0.bias": (32,), "torso.2.weight": (64, 32, 4, 4),
        "torso.2.bias": (64,), "torso.4.weight": (64, 64, 3, 3), "torso.4.bias": (64,)}
    QNetwork(6, stack=4, hidden=32).load_state_dict(atari)


# ------------------------------------------------------------------------------------ through builder and replay
def test_minatar_steps_through_the_builder_and_the_replay() -> None:
    """Every sampled (s, a, G, discount, s') of a 1-step replay over a real MinAtar env is a step it made."""
    env = make_env("minatar/breakout", num_envs=2, seed=0)
    builder = NStepBuilder(2, n=1, gamma=0.9, stack=env.stack, frame_shape=env.frame_shape, seed=0)
    replay = PrioritizedReplay(200, stack=env.stack, frame_shape=env.frame_shape, prioritized=False, seed=0)
    obs, _ = env.reset()
    builder.reset(newest_frames(obs, env.stack, env.frame_shape))
    seen = set()
    rng = np.random.default_rng(0)
    ended = np.zeros(2, bool)
    for _ in range(150):
        actions = rng.integers(0, 6, 2)
        nxt, r, te, tr, info = env.step(actions)
        for i in np.flatnonzero(~ended):
            seen.add((obs[i].tobytes(), int(actions[i]), float(r[i]), 0.0 if te[i] else 0.9, nxt[i].tobytes()))
        builder.step(actions, None, r, te, tr, newest_frames(nxt, env.stack, env.frame_shape), info["game_over"])
        replay.add(builder.flush())
        obs, ended = nxt, te
    batch = replay.sample(64)
    assert batch.obs.shape == batch.next_obs.shape == (64, 4, 10, 10)
    seen = {(a, b, c, round(d, 6), e) for a, b, c, d, e in seen}
    for k in range(64):
        key = (batch.obs[k].tobytes(), int(batch.actions[k]), float(batch.returns[k]),
               round(float(batch.discounts[k]), 6), batch.next_obs[k].tobytes())
        assert key in seen


def test_torsos_fold_stacks_of_colour_frames_frame_by_frame() -> None:
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (2, 4, 84, 84, 3), dtype=torch.uint8)  # [B, S, H, W, RGB], as ale-py gives them
    torso, out = make_torso((4, 84, 84, 3), kind="a3c")
    assert out == 2592 and torso.in_shape == (12, 84, 84) and torso.fold_colour
    plain, _ = make_torso((12, 84, 84), kind="a3c")
    plain.load_state_dict(torso.state_dict())
    # Channel 3 s + c is colour c of frame s: the same features as folding by hand.
    by_hand = frames.permute(0, 1, 4, 2, 3).reshape(2, 12, 84, 84)
    assert torch.allclose(torso(frames), plain(by_hand), atol=1e-5)
    assert torch.equal(by_hand[1, 3 * 2 + 1], frames[1, 2, :, :, 1])  # frame 2's green plane
    with pytest.raises(ValueError, match=r"\(S, H, W, 3\)"):
        make_torso((4, 84, 84, 2))
