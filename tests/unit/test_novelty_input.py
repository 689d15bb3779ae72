"""What a novelty source scores per env family (envs/novelty.py), with hand-checked cases: Atari's newest frame at
42x42 / 8 levels for a pseudo-count and as one 84x84 channel for RND; MinAtar's and the maze's whole grid, one
symbol per cell packing the channel bits (pseudo-counts) or the float channels (RND); families a source cannot score
are refused naming the key and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from envs import make_env
from envs.novelty import env_family, family_of_observation, make_novelty_source, novelty_input
from worldmodels.density import PseudoCount
from worldmodels.density.rnd import RND


def test_env_families_by_name_and_by_observation() -> None:
    assert [env_family(g) for g in ("Pong", "toy/catch", "minatar/breakout", "maze/21:sparse=true")] == [
        "atari", "atari", "minatar", "maze"]
    assert family_of_observation((4, 84, 84), 255) == "atari"
    assert family_of_observation((84, 84, 3), 255) == "atari"
    assert family_of_observation((7, 10, 10), 1) == "grid"
    assert family_of_observation((3, 21, 21), 1) == "grid"


def test_minatar_cells_become_one_symbol_packing_the_channel_bits() -> None:
    spec = novelty_input("minatar", "cts", (4, 10, 10))
    assert (spec.shape, spec.num_levels) == ((10, 10), 16)
    obs = np.zeros((2, 4, 10, 10), np.uint8)
    obs[0, 0, 1, 2] = obs[0, 2, 1, 2] = 1  # channels 0 and 2: 1 + 4
    obs[0, 3, 9, 9] = 1  # channel 3: 8
    obs[1, :, 5, 5] = 1  # all four: 15
    out = spec(obs)
    assert out.dtype == np.uint8 and out.shape == (2, 10, 10)
    assert (out[0, 1, 2], out[0, 9, 9], out[1, 5, 5]) == (5, 8, 15)
    assert out.sum() == 5 + 8 + 15  # every other cell is empty: symbol 0


def test_the_maze_packs_walls_agent_goal_into_8_symbols() -> None:
    env = make_env("maze/7:layout_seed=0", num_envs=1, seed=0)
    obs, _ = env.reset()
    spec = novelty_input("maze", "pixelcnn", obs.shape[1:])
    assert (spec.shape, spec.num_levels) == ((7, 7), 8)
    out = spec(obs)[0]
    np.testing.assert_array_equal(out, obs[0, 0] * 1 + obs[0, 1] * 2 + obs[0, 2] * 4)
    assert (out == 2).sum() == 1 and (out == 4).sum() == 1  # the agent, the goal


def test_rnd_scores_grids_as_float_channels_and_atari_as_the_newest_frame() -> None:
    grid = np.zeros((1, 7, 10, 10), np.uint8)
    grid[0, 6, 3, 4] = 1
    spec = novelty_input("minatar", "rnd", (7, 10, 10))
    assert spec.shape == (7, 10, 10) and spec.num_levels == 0
    out = spec(grid)
    assert out.dtype == np.float32 and out[0, 6, 3, 4] == 1.0 and out.sum() == 1.0
    stack = np.zeros((2, 4, 84, 84), np.uint8)
    stack[:, -1] = 200  # the newest frame
    stack[:, 0] = 9
    spec = novelty_input("atari", "rnd", (4, 84, 84))
    assert spec.shape == (1, 84, 84)
    out = spec(stack)
    assert out.shape == (2, 1, 84, 84) and (out == 200.0).all()


def test_atari_frames_for_a_pseudo_count_are_42x42_with_8_levels_of_the_newest_frame() -> None:
    stack = np.zeros((1, 4, 84, 84), np.uint8)
    stack[0, -1, :2, :2] = [[0, 64], [128, 255]]  # one 2x2 block: mean 111.75 -> 112 -> level 112 // 32 = 3
    stack[0, -1, 2:4, :2] = 255  # level 7
    stack[0, 0] = 255  # an older frame: ignored
    spec = novelty_input("atari", "cts", (4, 84, 84))
    assert (spec.shape, spec.num_levels) == ((42, 42), 8)
    out = spec(stack)
    assert out.shape == (1, 42, 42) and (out[0, 0, 0], out[0, 1, 0]) == (3, 7) and out.sum() == 10


def test_families_a_source_cannot_score_are_refused_naming_the_key_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"exploration.bonus: 'cts' cannot score minatar .* 10 channels.*"
                                         r"exploration.bonus=rnd"):
        novelty_input("minatar", "cts", (10, 10, 10))  # MinAtar Seaquest
    assert novelty_input("minatar", "rnd", (10, 10, 10)).shape == (10, 10, 10)
    with pytest.raises(ValueError, match="model: unknown novelty source 'rnn'"):
        novelty_input("atari", "rnn", (4, 84, 84), key="model")
    with pytest.raises(ValueError, match=r"maze observations are \[C, n, n\]"):
        novelty_input("maze", "cts", (84, 84))
    with pytest.raises(ValueError, match="takes observations"):
        novelty_input("maze", "cts", (3, 7, 7))(np.zeros((1, 3, 8, 8), np.uint8))


@pytest.mark.parametrize("game", ["minatar/breakout", "maze/9", "toy/catch"])
@pytest.mark.parametrize("source", ["cts", "rnd"])
def test_every_family_gets_finite_positive_bonuses(game: str, source: str) -> None:
    env = make_env(game, num_envs=3, seed=0)
    obs, _ = env.reset(seed=0)
    spec = novelty_input(env_family(game), source, obs.shape[1:])
    bonus_source = make_novelty_source(source, spec, beta=0.05)
    assert isinstance(bonus_source, RND if source == "rnd" else PseudoCount)
    for _ in range(3):
        obs, *_ = env.step(np.zeros(3, np.int64))
        bonus = bonus_source.step(spec(obs))
        assert bonus.shape == (3,) and np.isfinite(bonus).all() and (bonus >= 0).all() and bonus.sum() > 0
