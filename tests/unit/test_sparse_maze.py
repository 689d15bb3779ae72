"""The sparse-reward maze (``maze/<n>:sparse=true``, issue 24 item 4): one fixed layout for every env and episode,
the goal farthest from the start, reward +1 at the goal only, a long step cap, and random play rarely succeeds."""

from __future__ import annotations

import numpy as np
import pytest

from envs import MazeEnv, MazeVector, make_env, maze_settings
from envs.maze import generate_mazes, shortest_paths, sparse_max_steps

GAME = "maze/21:layout_seed=0,sparse=true"


def _vector(game: str, num_envs: int, seed: int = 0) -> MazeVector:
    env = make_env(game, num_envs=num_envs, seed=seed)
    assert isinstance(env, MazeVector)
    return env


def test_the_name_parses_round_trips_and_sets_a_long_cap() -> None:
    s = maze_settings(GAME)
    assert s.sparse and s.layout_seed == 0 and s.max_steps == sparse_max_steps(21) == 441
    assert s.game == GAME and maze_settings(s.game) == s
    assert maze_settings("maze/21:sparse=false") == maze_settings("maze/21")
    assert maze_settings("maze/21:sparse=true,max_steps=2000").max_steps == 2000
    with pytest.raises(ValueError, match="sparse=.* must be true or false"):
        maze_settings("maze/21:sparse=maybe")
    with pytest.raises(ValueError, match="curriculum"):
        maze_settings("maze/21/curriculum:sparse=true")


def test_one_layout_in_every_env_and_episode_with_the_goal_farthest_from_the_start() -> None:
    env = _vector(GAME, 4, seed=3)
    other = _vector(GAME, 2, seed=99)  # another env seed: the same maze
    first, info = env.reset()
    assert (first == first[0]).all() and (other.reset()[0] == first[0]).all()
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(3 * 441):
        obs, _, terminated, truncated, info = env.step(rng.integers(0, 4, 4))
        starting = info["episode_frame_number"] == 0
        if starting.any():  # a new episode's first observation: the same maze, agent on the same start
            assert (obs[starting] == first[0]).all()
            seen += int(starting.sum())
    assert seen >= 4  # every env has started a second episode (the cap is 441 steps)
    walls = first[0, 0].astype(bool)
    start = np.argwhere(first[0, 1])[0]
    goal = np.argwhere(first[0, 2])[0]
    dist = shortest_paths(~walls[None], start[None])[0]
    assert dist[goal[0], goal[1]] == dist.max() == info["shortest_path"][0] == 31
    assert (~walls).sum() == 322
    # Same walls and start as the dense maze of the same seed: only the goal moved.
    dense = generate_mazes(np.random.default_rng(0), 1, 21, 0.3)
    assert (dense.walls[0] == walls).all() and (dense.start[0] == start).all()


def test_the_only_nonzero_reward_is_the_goal_and_random_play_rarely_reaches_it() -> None:
    """Measured (seed 0, 64 envs, uniform random actions): 18 of the first 2048 episodes (0.9%) reach the goal within
    the 441-step cap. Every nonzero reward is exactly 1 and ends its episode as terminated."""
    env = _vector(GAME, 64)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    episodes = goals = 0
    while episodes < 2000:
        _, reward, terminated, truncated, info = env.step(rng.integers(0, 4, 64))
        assert set(np.unique(reward)) <= {0.0, 1.0}
        assert ((reward == 1.0) == terminated).all() and not (terminated & truncated).any()
        episodes += int((terminated | truncated).sum())
        goals += int(terminated.sum())
    rate = goals / episodes
    assert 0.002 < rate < 0.03, rate
    assert (info["optimal_return"] == 1.0).all()


def test_the_single_env_plays_the_same_maze_and_rewards() -> None:
    env = MazeEnv(GAME, seed=5)
    obs, _ = env.reset()
    assert (obs == _vector(GAME, 1).reset()[0][0]).all()
    env.core.pos[0] = env.core.goal[0] + np.array([0, 0])  # stand next to the goal: find a free neighbour
    goal = env.core.goal[0]
    walls = env.core.walls[0]
    for action, (dr, dc) in enumerate([(-1, 0), (0, 1), (1, 0), (0, -1)]):
        r, c = goal[0] - dr, goal[1] - dc
        if 0 <= r < 21 and 0 <= c < 21 and not walls[r, c]:
            env.core.pos[0] = (r, c)
            _, reward, terminated, _, _ = env.step(action)
            assert reward == 1.0 and terminated
            return
    raise AssertionError("the goal has no free neighbour")
