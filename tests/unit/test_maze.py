"""The STRAW maze (envs.maze): shapes and info, rewards and the step cap on a hand-made maze, the BFS optimum,
solvability of generated mazes, the curriculum, seeding, NextStep autoreset as in the other vector envs, names and
settings, pictures, and the tracker through the runtime's actor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from agents.runtime.actor import EnvActor
from agents.runtime.algorithm import ActorParts, env_spec
from envs import (
    MazeEnv,
    MazeTracker,
    MazeVector,
    action_meanings,
    make_env,
    maze_settings,
    maze_to_rgb,
    num_actions,
    observation_to_rgb,
)
from envs.maze import DOWN, LEFT, RIGHT, UP, _walk, generate_mazes, optimal_return, shortest_paths

INFO_KEYS = {"env_id", "lives", "frame_number", "episode_frame_number", "raw_reward", "game_over",
             "shortest_path", "optimal_return", "curriculum_length"}

# A hand-made 5 x 5 maze: a ring around a walled-in block, whose centre (2, 2) is a free cell nobody can reach.
#   S . . . .
#   . # # # .
#   . # o # .
#   . # # # .
#   . . . . G
RING = np.zeros((5, 5), dtype=bool)
RING[1:4, 1:4] = True
RING[2, 2] = False
START, GOAL = (0, 0), (4, 4)


def _vector(game: str, num_envs: int, seed: int = 0, **settings: Any) -> MazeVector:
    """``make_env`` of a maze game, typed as the MazeVector it is."""
    env = make_env(game, num_envs=num_envs, seed=seed, **settings)
    assert isinstance(env, MazeVector)
    return env


def _ring_env(r: float = 0.5, **settings: Any) -> MazeVector:
    env = MazeVector(maze_settings("maze/5", step_reward=r, **settings), num_envs=2, seed=0)
    env.reset()
    env.place(0, RING, START, GOAL)
    return env


def _step(env: MazeVector, action: int) -> tuple:
    """Step env 0 with ``action`` (env 1 moves UP); returns env 0's (obs, reward, terminated, truncated, info)."""
    obs, reward, terminated, truncated, info = env.step(np.array([action, UP]))
    return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {k: v[0] for k, v in info.items()}


def _agent(obs: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(obs[1])
    assert len(rows) == 1
    return int(rows[0]), int(cols[0])


# ------------------------------------------------------------------------------------------------ the env
@pytest.mark.parametrize("game, n", [("maze/11", 11), ("maze/15/curriculum", 15)])
def test_shapes_dtypes_spaces_and_info_keys(game: str, n: int) -> None:
    env = make_env(game, num_envs=3, seed=0)
    assert isinstance(env, MazeVector) and env.game == game and env.num_envs == 3
    assert (env.stack, env.frame_shape, env.frame_skip) == (1, (3, n, n), 1)
    spec = env_spec(env)  # what the runtime's driver reads
    assert (spec.obs_shape, spec.num_actions, spec.frame_skip, spec.stack) == ((3, n, n), 4, 1, 1)
    assert num_actions(game) == 4 and action_meanings(game) == ["UP", "RIGHT", "DOWN", "LEFT"]
    obs, info = env.reset(seed=1)
    assert obs.shape == (3, 3, n, n) and obs.dtype == np.uint8 and obs.flags.c_contiguous
    assert obs in env.observation_space
    assert set(info) == INFO_KEYS
    # One agent, one goal, on free cells, apart; walls 0/1.
    assert np.all(obs[:, 1].sum(axis=(1, 2)) == 1) and np.all(obs[:, 2].sum(axis=(1, 2)) == 1)
    assert not np.any(obs[:, 0] & (obs[:, 1] | obs[:, 2])) and not np.any(obs[:, 1] & obs[:, 2])
    assert set(np.unique(obs)) == {0, 1}
    rng = np.random.default_rng(0)
    for _ in range(5):
        previous = obs
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, 4, 3))
        assert obs.shape == (3, 3, n, n) and obs.dtype == np.uint8 and obs is not previous
        assert reward.dtype == np.float32 and terminated.dtype == truncated.dtype == bool
        assert set(info) == INFO_KEYS and info["raw_reward"].dtype == np.float64
        assert info["episode_frame_number"].dtype == np.int32 and info["optimal_return"].dtype == np.float64
        np.testing.assert_allclose(info["raw_reward"], reward, rtol=1e-6)  # float64 beside float32
        np.testing.assert_array_equal(info["game_over"], terminated | truncated)
    env.close()


def test_rewards_for_a_move_a_wall_the_edge_and_the_goal_then_autoreset() -> None:
    r = 0.5
    env = _ring_env(r)
    obs = env.place(0, RING, START, GOAL)[0]  # (placing again restarts the same game)
    assert _agent(obs) == START and obs[2, 4, 4] == 1 and np.array_equal(obs[0], RING.astype(np.uint8))
    obs, reward, term, trunc, info = _step(env, UP)  # off the grid: the edge is a wall
    assert (reward, term, trunc, _agent(obs)) == (-2 * r, False, False, START)
    obs, reward, *_ = _step(env, DOWN)
    assert (reward, _agent(obs)) == (-r, (1, 0))
    obs, reward, *_ = _step(env, RIGHT)  # into the ring's wall: stays
    assert (reward, _agent(obs)) == (-2 * r, (1, 0))
    assert info["episode_frame_number"] == 1
    for action in (DOWN, DOWN, DOWN, RIGHT, RIGHT, RIGHT):
        obs, reward, term, *_ = _step(env, action)
        assert reward == -r and not term
    obs, reward, term, trunc, info = _step(env, RIGHT)  # onto the goal
    assert (reward, term, trunc, bool(info["game_over"])) == (r, True, False, True)
    assert _agent(obs) == GOAL and obs[2, 4, 4] == 1 and info["episode_frame_number"] == 10
    assert info["shortest_path"] == 8 and info["optimal_return"] == pytest.approx(r * (2 - 8))
    # NextStep autoreset: the action is ignored, a new maze comes with reward 0 and no flags.
    obs, reward, term, trunc, info = _step(env, LEFT)
    assert (reward, term, trunc, bool(info["game_over"]), int(info["episode_frame_number"])) == (0.0, False, False,
                                                                                                   False, 0)
    assert not np.array_equal(obs[0], RING.astype(np.uint8))  # a new maze (drawn mazes have no unreachable free cell)
    assert info["raw_reward"] == 0.0


def test_the_step_cap_truncates_and_a_goal_on_the_last_step_terminates() -> None:
    env = _ring_env()
    for t in range(1, 101):
        obs, reward, term, trunc, info = _step(env, UP if t % 2 else DOWN)  # up and down, never the goal
        assert not term and trunc == (t == 100) and bool(info["game_over"]) == (t == 100)
    assert info["episode_frame_number"] == 100
    obs, reward, term, trunc, info = _step(env, DOWN)  # the autoreset step
    assert (reward, term, trunc, int(info["episode_frame_number"])) == (0.0, False, False, 0)
    # The cap is a setting; reaching the goal on the capped step is a termination, not a truncation.
    env = _ring_env(max_steps=8)
    for action in (DOWN,) * 4 + (RIGHT,) * 4:
        obs, reward, term, trunc, info = _step(env, action)
    assert (term, trunc) == (True, False)


def test_bfs_distances_and_the_optimal_return_on_a_hand_made_maze() -> None:
    dist = shortest_paths(~RING[None], np.array([START]))[0]
    expected = np.array([
        [0, 1, 2, 3, 4],
        [1, -1, -1, -1, 5],
        [2, -1, -1, -1, 6],
        [3, -1, -1, -1, 7],
        [4, 5, 6, 7, 8],
    ])
    np.testing.assert_array_equal(dist, expected)  # the walled-in centre (2, 2) is free but unreachable: -1
    np.testing.assert_allclose(optimal_return(np.array([1, 8, 100, 101]), 0.01, 100), [0.01, -0.06, -0.98, -1.0])
    # The shortest path earns exactly the optimum the env reports.
    r = 0.25
    env = _ring_env(r)
    total = 0.0
    for action in (RIGHT,) * 4 + (DOWN,) * 4:
        _, reward, term, _, info = _step(env, action)
        total += reward
    assert term and total == pytest.approx(float(info["optimal_return"])) == pytest.approx(r * (2 - 8))
    with pytest.raises(ValueError, match="cannot be reached"):
        env.place(0, RING, START, (2, 2))
    with pytest.raises(ValueError, match="free cells"):
        env.place(0, RING, START, (1, 1))


@pytest.mark.parametrize("size, density, walk", [(11, 0.3, 0), (15, 0.3, 0), (15, 0.3, 3), (7, 0.55, 0),
                                                 (5, 0.0, 2), (11, 0.3, 40)])
def test_every_generated_maze_is_solvable(size: int, density: float, walk: int) -> None:
    for seed in range(4):
        mazes = generate_mazes(np.random.default_rng(seed), 250, size, density, walk_length=walk)
        free = ~mazes.walls
        index = np.arange(250)
        assert free[index, mazes.start[:, 0], mazes.start[:, 1]].all()
        assert free[index, mazes.goal[:, 0], mazes.goal[:, 1]].all()
        assert (mazes.start != mazes.goal).any(axis=1).all()
        dist = shortest_paths(free, mazes.start)
        np.testing.assert_array_equal(dist[index, mazes.goal[:, 0], mazes.goal[:, 1]], mazes.distance)
        assert (mazes.distance >= 1).all()
        assert ((dist >= 0) == free).all()  # every free cell is reachable: pockets were filled with walls
        if walk:
            assert (mazes.distance <= walk).all()


def test_the_curriculum_lengthens_the_walk_every_m_steps() -> None:
    settings = maze_settings("maze/9/curriculum:curriculum_every=40,curriculum_start=1")
    assert (settings.curriculum_start, settings.curriculum_every) == (1, 40)
    assert [settings.walk_length(s) for s in (0, 39, 40, 119, 120)] == [1, 1, 2, 3, 4]
    env = MazeVector(settings, num_envs=4, seed=0)
    obs, info = env.reset()
    assert env.curriculum_length == 1 and (info["curriculum_length"] == 1).all() and (info["shortest_path"] == 1).all()
    rng = np.random.default_rng(0)
    counted = 0
    fresh = np.zeros(4, dtype=bool)
    seen = set()
    for _ in range(500):
        obs, reward, term, trunc, info = env.step(rng.integers(0, 4, 4))
        if fresh.any():  # the mazes drawn at this autoreset step use L after the live steps counted so far
            counted += int((~fresh).sum())
            expected = 1 + counted // 40
            assert (info["curriculum_length"][fresh] == expected).all()
            assert (info["shortest_path"][fresh] <= expected).all()
            seen.add(expected)
        else:
            counted += 4
        assert env.curriculum_steps == counted
        fresh = term | trunc
    assert len(seen) >= 10  # L grew through many values
    # The count is the curriculum's state: saved, restored and settable (e.g. from a run's global step count).
    again = MazeVector(settings, num_envs=4, seed=0)
    again.load_state_dict(env.state_dict())
    assert again.curriculum_length == env.curriculum_length
    again.curriculum_steps = 400
    again.reset()
    assert again.curriculum_length == 11 and (again.core.walk_length == 11).all()
    # Without the curriculum there is no walk.
    plain = _vector("maze/9", num_envs=2)
    assert plain.curriculum_length == 0 and (plain.reset()[1]["curriculum_length"] == 0).all()


def test_the_walk_does_not_turn_back_except_at_a_dead_end() -> None:
    corridor = np.zeros((1, 5, 5), dtype=bool)
    corridor[0, 0] = True  # only the top row is free
    rng = np.random.default_rng(0)
    for length, end in ((1, 1), (3, 3), (4, 4), (6, 2)):  # 6: to the end (4 moves), back 2
        assert _walk(rng, corridor, np.array([[0, 0]]), length).tolist() == [[0, end]]
    # A walk that ends on its start gives the last other cell it visited.
    stub = np.zeros((1, 5, 5), dtype=bool)
    stub[0, 0, :2] = True
    assert _walk(rng, stub, np.array([[0, 0]]), 2).tolist() == [[0, 1]]


def test_same_seed_same_mazes_and_a_seeded_reset_replays_them() -> None:
    actions = np.random.default_rng(2).integers(0, 4, (300, 3))

    def rollout(env: MazeVector, seed: int | None) -> list[np.ndarray]:
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for a in actions:
            obs, r, te, tr, info = env.step(a)
            out += [obs, r, te, tr, info["optimal_return"]]
        return out

    first = rollout(_vector("maze/8", 3, seed=5), None)
    for x, y in zip(first, rollout(_vector("maze/8", 3, seed=0), 5)):  # the first reset uses the seed
        np.testing.assert_array_equal(x, y)
    again = _vector("maze/8", 3, seed=5)
    rollout(again, None)
    for x, y in zip(first, rollout(again, 5)):  # a used env reset with the seed replays the same mazes
        np.testing.assert_array_equal(x, y)
    other = rollout(_vector("maze/8", 3, seed=6), None)
    assert any(not np.array_equal(x, y) for x, y in zip(first, other))
    # The single env draws the same mazes from the same seed as a 1-env vector env.
    single, vector = make_env("maze/8", num_envs=None, seed=9), make_env("maze/8", num_envs=1, seed=9)
    np.testing.assert_array_equal(single.reset()[0], vector.reset()[0][0])
    for _ in range(200):
        obs, r, te, tr, _ = single.step(RIGHT)
        vobs, vr, vte, vtr, _ = vector.step(np.array([RIGHT]))
        assert (r, te, tr) == (vr[0], vte[0], vtr[0]) and np.array_equal(obs, vobs[0])
        if te or tr:
            np.testing.assert_array_equal(single.reset()[0], vector.step(np.array([UP]))[0][0])


def test_autoreset_step_ignores_the_action_and_counters_follow_the_other_envs() -> None:
    a, b = (make_env("maze/6", num_envs=3, seed=11) for _ in range(2))
    a.reset(), b.reset()
    rng = np.random.default_rng(1)
    ended = np.zeros(3, bool)
    resets = 0
    for t in range(400):
        actions = rng.integers(0, 4, 3)
        other = np.where(ended, (actions + 1 + rng.integers(0, 3, 3)) % 4, actions)  # differ only where ignored
        oa, ra, ta, ua, ia = a.step(actions)
        ob, rb, tb, ub, _ = b.step(other)
        for x, y in ((oa, ob), (ra, rb), (ta, tb), (ua, ub)):
            np.testing.assert_array_equal(x, y)
        assert np.all(ra[ended] == 0) and not (ta | ua)[ended].any() and np.all(ia["episode_frame_number"][ended] == 0)
        assert np.all(ia["frame_number"] == t + 1) and np.all(ia["lives"] == 0)
        resets += int(ended.sum())
        ended = ta | ua
    assert resets >= 5


def test_reset_mask_step_before_reset_and_errors() -> None:
    env = make_env("maze/7", num_envs=2, seed=0)
    obs, _ = env.step(np.array([0, 1]))[:2]  # a step before any reset starts games, like Catch
    assert obs[:, 1].sum() == 2
    for _ in range(3):
        obs, *_ = env.step(np.array([0, 1]))
    again, info = env.reset(options={"reset_mask": np.array([True, False])})
    np.testing.assert_array_equal(again[1], obs[1])
    assert not np.array_equal(again[0], obs[0]) and info["episode_frame_number"][0] == 0
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": np.array([1, 0])})
    with pytest.raises(ValueError, match="actions must be ints in"):
        env.step(np.array([0, 4]))
    with pytest.raises(ValueError, match="actions must be ints in"):
        env.step(np.array([0.0, 1.0]))


@pytest.mark.parametrize("game, message", [
    ("maze/", "maze size"), ("maze/2", "integer >= 3"), ("maze/eleven", "maze size"),
    ("maze/11/spiral", "unknown maze variant"), ("maze/11:speed=3", "unknown maze setting 'speed'"),
    ("maze/11:curriculum_every=10", "apply only to the curriculum"), ("maze/11:step_reward", "key=value"),
    ("maze/11:max_steps=2.5", "must be an integer"), ("maze/11:step_reward=fast", "not a number"),
    ("maze/11:wall_density=1", r"wall_density must be in \[0, 1\)"), ("maze/11:step_reward=0", "step_reward"),
    ("maze/15/curriculum:curriculum_every=0", "curriculum_every must be a positive"),
    ("maze/11:max_steps=5,max_steps=6", "given twice"),
])
def test_bad_names_and_settings_say_what_is_wrong(game: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_env(game, num_envs=1)


def test_names_settings_and_overrides() -> None:
    s = maze_settings("maze/15/curriculum:curriculum_every=1e5,step_reward=0.1")
    assert (s.size, s.curriculum, s.curriculum_every, s.step_reward, s.curriculum_start, s.max_steps) == (
        15, True, 100_000, 0.1, 2, 100)
    assert s.game == "maze/15/curriculum:step_reward=0.1,curriculum_every=100000"
    assert maze_settings(s.game) == s and maze_settings("maze/11").game == "maze/11"
    env = make_env("maze/11", num_envs=2, wall_density=0.1, max_steps=50, backend="ale_vector", preset="nature")
    assert isinstance(env, MazeVector) and (env.settings.wall_density, env.settings.max_steps) == (0.1, 50)
    assert env.game == "maze/11:wall_density=0.1,max_steps=50"
    with pytest.raises(ValueError, match="both in the game name"):
        make_env("maze/11:max_steps=5", num_envs=1, max_steps=6)
    with pytest.raises(ValueError, match="unknown maze setting"):
        make_env("maze/11", num_envs=1, sticky_action_prob=0.1)
    with pytest.raises(ValueError, match="Atari games only"):
        make_env("maze/11", num_envs=1, backend="gymnasium")
    with pytest.raises(ValueError, match="unknown maze variant"):
        num_actions("maze/11/x")


def test_single_env_passes_check_env_and_renders() -> None:
    single = make_env("maze/9", num_envs=None, seed=4)
    assert isinstance(single, MazeEnv) and single.frame_shape == (3, 9, 9)
    check_env(single, skip_render_check=True)
    obs, info = single.reset(seed=4)
    assert obs.shape == (3, 9, 9) and obs.dtype == np.uint8 and set(info) == INFO_KEYS - {"env_id"}
    with pytest.raises(ValueError, match="action must be an int"):
        single.step(4)
    picture = MazeEnv("maze/9", render_mode="rgb_array").render()
    assert picture is not None and picture.shape == (144, 144, 3)


def test_pictures_of_a_maze() -> None:
    env = _ring_env()
    obs = env.place(0, RING, START, GOAL)[0]  # (placing again restarts the same game)
    rgb = maze_to_rgb(obs, scale=4)
    assert rgb.shape == (20, 20, 3) and rgb.dtype == np.uint8
    wall, agent, goal, free = rgb[4 * 1, 4 * 1], rgb[0, 0], rgb[4 * 4, 4 * 4], rgb[4 * 2, 4 * 2]
    assert len({tuple(c) for c in (wall, agent, goal, free)}) == 4
    generic = observation_to_rgb(obs, 1, env.frame_shape, scale=4)  # what `reverie evaluate --gif` draws
    assert generic.shape == (20, 20, 3) and len({tuple(generic[y, x]) for y, x in ((4, 4), (0, 0), (16, 16))}) == 3
    with pytest.raises(ValueError, match=r"\[3, n, n\]"):
        maze_to_rgb(obs[:2])


# ------------------------------------------------------------------------------------------ through the runtime
class _RandomPolicy:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        return self.rng.integers(0, 4, len(obs)), {}

    def set_weights(self, weights: Any) -> None:
        pass


class _NoAdder:
    def reset(self, obs: np.ndarray) -> None:
        pass

    def add(self, *args: Any) -> None:
        pass

    def flush(self) -> None:
        return None


def _parts(cfg: Any, actor_id: int) -> ActorParts:
    return ActorParts(make_env("maze/5", num_envs=4, seed=0), _RandomPolicy(actor_id), _NoAdder(), [MazeTracker()])


def test_tracker_reports_each_mazes_optimum_beside_the_return_through_the_actor() -> None:
    actor = EnvActor(0, _parts, None, seed=3)
    out = actor.run(300, 0)
    assert len(out.episode_returns) >= 5 and len(out.episode_stats) == len(out.episode_returns)
    for ret, length, stats in zip(out.episode_returns, out.episode_lengths, out.episode_stats):
        assert set(stats) == {"maze/optimal_return", "maze/return_gap", "maze/goal_reached", "maze/shortest_path"}
        assert stats["maze/return_gap"] == pytest.approx(stats["maze/optimal_return"] - ret)
        assert stats["maze/return_gap"] >= -1e-9  # nobody beats the shortest path
        assert stats["maze/optimal_return"] == pytest.approx(0.01 * (2 - stats["maze/shortest_path"]))
        if length < 100:  # only the goal ends a game before the cap
            assert stats["maze/goal_reached"] == 1.0
        if stats["maze/goal_reached"] == 0.0:
            assert length == 100
    actor.close()


def test_actor_critic_trains_on_the_maze_with_0_1_inputs_and_logs_the_optimum(tmp_path: Path) -> None:
    """The runtime needs nothing maze-specific: A2C reads 0/1 channels unscaled (``EnvSpec.obs_high``), picks the
    grid torso for an 11x11 input, and TensorBoard gets each maze's optimal return beside the agent's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from agents.actor_critic.builder import BUILDER
    from agents.actor_critic.config import ActorCriticConfig
    from agents.runtime.loop import run_training
    from launch.config import load_config

    cfg = load_config(ActorCriticConfig, ["a2c_minatar"], [
        "env.game=maze/11", "env.num_envs=4", "run.total_frames=1200", "run.log_every_frames=400",
        "run.progress=false", "run.eval_episodes=0", f"run.runs_dir={tmp_path}", "run.name=maze"])
    state = run_training(BUILDER, cfg)
    assert state.learner.network.torso.input_divisor == 1.0
    assert state.episodes > 0
    acc = EventAccumulator(str(tmp_path / "maze")).Reload()
    optimal = [e.value for e in acc.Scalars("maze/optimal_return")]
    gaps = [e.value for e in acc.Scalars("maze/return_gap")]
    assert len(optimal) == state.episodes and all(g >= -1e-6 for g in gaps)


def test_layout_seed_fixes_the_maze_for_every_episode_and_env() -> None:
    env = make_env("maze/6:layout_seed=4", num_envs=3, seed=0)
    first, _ = env.reset(seed=1)
    assert (first == first[0]).all()
    for _ in range(400):  # many episodes end and restart on the same maze
        obs, *_ = env.step(np.random.default_rng(0).integers(0, 4, 3))
        assert (obs[:, 0] == first[0, 0]).all() and (obs[:, 2] == first[0, 2]).all()  # walls and goal
    other, _ = make_env("maze/6:layout_seed=4", num_envs=1, seed=99).reset(seed=7)
    assert (other[0] == first[0]).all()  # the layout depends on layout_seed only
    assert (MazeEnv("maze/6:layout_seed=4").reset(seed=3)[0] == first[0]).all()
    with pytest.raises(ValueError, match="layout_seed"):
        make_env("maze/6:layout_seed=-2", num_envs=1)


def test_the_curriculum_position_is_part_of_the_actor_state() -> None:
    """A resumed run goes on with the curriculum's L (the actor's state, checkpointed, holds the env's)."""
    from agents.actor_critic.actor import make_ac_parts
    from agents.actor_critic.config import ActorCriticConfig
    from launch.config import load_config

    cfg = load_config(ActorCriticConfig, ["a2c_minatar"], [
        "env.game=maze/9/curriculum:curriculum_every=50", "env.num_envs=2", "agent.unroll_length=5",
        "runtime.chunk_steps=5"])
    actor = EnvActor(0, make_ac_parts, cfg, seed=1)
    for _ in range(10):
        actor.run(5, 0, None, 0)
    saved = actor.get_state()
    assert saved["env"]["curriculum_steps"] == actor.env.curriculum_steps > 50
    fresh = EnvActor(0, make_ac_parts, cfg, seed=1)
    fresh.set_state(saved)
    assert fresh.env.curriculum_steps == actor.env.curriculum_steps
