"""ImaginedEnv: a vector env made of a world model's predictions (with a test-double model whose answers are known)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import RecordEpisodeStatistics

from envs import ImaginedEnv
from envs.imagined import _merge_state, _Unmergeable

LEFT, STAY, RIGHT = 0, 1, 2


@dataclasses.dataclass
class PixelState:
    frames: np.ndarray       # uint8 [B, k, H, W]
    reward: np.ndarray       # float32 [B]
    terminal: np.ndarray     # float32 [B]


class PixelModel:
    """Test double of the worldmodels.video API: one bright pixel that the action moves left / keeps / moves right.

    Predicted reward 1 when the pixel reaches the rightmost column, terminal probability 0.9 at column 0.
    """

    def __init__(self, k: int = 2, frame_shape: tuple[int, int] = (6, 8), num_actions: int = 3,
                 game: str = "toy/catch") -> None:
        self.context, self.frame_shape, self.num_actions, self.game = k, frame_shape, num_actions, game
        self.mean_frame = np.zeros(frame_shape, np.float32)
        self.steps = 0

    def initial(self, frames: np.ndarray) -> PixelState:
        assert frames.dtype == np.uint8 and frames.shape[1:] == (self.context, *self.frame_shape)
        b = len(frames)
        return PixelState(frames.copy(), np.zeros(b, np.float32), np.zeros(b, np.float32))

    def step(self, state: PixelState, actions: np.ndarray) -> tuple[PixelState, np.ndarray]:
        assert actions.dtype == np.int64
        self.steps += 1
        h, w = self.frame_shape
        last = state.frames[:, -1].reshape(len(actions), -1).argmax(axis=1)
        row, col = last // w, last % w
        col = np.clip(col + np.asarray([-1, 0, 1])[actions], 0, w - 1)
        frame = np.zeros((len(actions), h, w), np.uint8)
        frame[np.arange(len(actions)), row, col] = 255
        frames = np.concatenate([state.frames[:, 1:], frame[:, None]], axis=1)
        reward = (col == w - 1).astype(np.float32)
        terminal = np.where(col == 0, 0.9, 0.0).astype(np.float32)
        return PixelState(frames, reward, terminal), frame


def pixel_frame(col: int, row: int = 2, shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    frame = np.zeros(shape, np.uint8)
    frame[row, col] = 255
    return frame


def contexts(cols: list[int], length: int = 3, shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    """uint8 [len(cols), length, H, W]: each window a still pixel at its column (a dim copy in older frames)."""
    out = np.stack([np.stack([pixel_frame(c, shape=shape)] * length) for c in cols])
    out[:, :-1] //= 2  # older frames dimmer, so the newest frame is the one the model moves
    return out


def test_reset_shapes_dtypes_spaces_and_info() -> None:
    env = ImaginedEnv(PixelModel(), contexts([3, 4]))
    assert env.num_envs == 2 and env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (2, 4, 6, 8) and obs in env.observation_space
    assert env.single_action_space.n == 3 and env.action_space.shape == (2,)
    assert info["imagined"].dtype == np.bool_ and info["imagined"].all() and info["imagined"].shape == (2,)
    assert info["raw_reward"].dtype == np.float64 and info["game_over"].dtype == np.bool_
    # The window has 3 frames and the stack 4: the newest frames fill the end, the front is zero-padded.
    np.testing.assert_array_equal(obs[:, 1:], contexts([3, 4]))
    assert not obs[:, 0].any()


def test_step_shifts_the_stack_and_appends_the_prediction() -> None:
    env = ImaginedEnv(PixelModel(), contexts([3, 4]))
    obs, _ = env.reset(seed=0)
    nxt, reward, terminated, truncated, info = env.step(np.array([LEFT, RIGHT]))
    assert nxt.dtype == np.uint8 and nxt.shape == obs.shape and nxt in env.observation_space
    np.testing.assert_array_equal(nxt[:, :-1], obs[:, 1:])
    np.testing.assert_array_equal(nxt[:, -1], np.stack([pixel_frame(2), pixel_frame(5)]))
    assert reward.dtype == np.float32 and terminated.dtype == np.bool_ and truncated.dtype == np.bool_
    assert info["imagined"].all() and not info["game_over"].any()
    assert nxt is not env.step(np.array([STAY, STAY]))[0]  # a fresh array each step (replay may keep references)


def test_reward_and_termination_come_from_the_model_then_next_step_autoreset() -> None:
    model = PixelModel()
    env = ImaginedEnv(model, contexts([1, 6]), terminal_threshold=0.5)
    first, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.array([LEFT, RIGHT]))
    # env 0 reached column 0 (terminal 0.9 > 0.5), env 1 column 7 (predicted reward 1).
    np.testing.assert_array_equal(reward, [0.0, 1.0])
    np.testing.assert_array_equal(info["raw_reward"], [0.0, 1.0])
    np.testing.assert_array_equal(terminated, [True, False])
    np.testing.assert_array_equal(info["game_over"], [True, False])
    assert not truncated.any()
    # NextStep: env 0's action is ignored, it restarts from its window with reward 0 and no flags; env 1 plays on.
    obs, reward, terminated, truncated, info = env.step(np.array([RIGHT, LEFT]))
    np.testing.assert_array_equal(obs[0], first[0])
    np.testing.assert_array_equal(obs[1, -1], pixel_frame(6))
    np.testing.assert_array_equal(reward, [0.0, 0.0])
    assert not terminated.any() and not truncated.any() and not info["game_over"].any()
    assert info["episode_frame_number"][0] == 0 and info["episode_frame_number"][1] == 2 * env.frame_skip
    # The restarted env continues from its new start: its state was spliced in, env 1's kept.
    obs, *_ = env.step(np.array([RIGHT, LEFT]))
    np.testing.assert_array_equal(obs[:, -1], np.stack([pixel_frame(2), pixel_frame(5)]))


def test_threshold_decides_termination() -> None:
    env = ImaginedEnv(PixelModel(), contexts([1]), terminal_threshold=0.95)
    env.reset(seed=0)
    _, _, terminated, _, _ = env.step(np.array([LEFT]))
    assert not terminated.any()  # 0.9 is below the threshold


def test_truncation_after_max_episode_steps() -> None:
    env = ImaginedEnv(PixelModel(), contexts([3]), max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(np.array([STAY]))[2:4] for _ in range(4)]
    assert [bool(tr[0]) for _, tr in flags] == [False, False, True, False]
    assert not any(te[0] for te, _ in flags)


def test_sampler_dataset_and_seeding(tmp_path: Path) -> None:
    pool = contexts([1, 2, 3, 4, 5, 6], length=2)

    def sampler(rng: np.random.Generator, n: int) -> np.ndarray:
        return pool[rng.integers(len(pool), size=n)]

    a = ImaginedEnv(PixelModel(), sampler, num_envs=5, seed=3)
    b = ImaginedEnv(PixelModel(), sampler, num_envs=5, seed=3)
    obs_a, _ = a.reset()
    obs_b, _ = b.reset()
    np.testing.assert_array_equal(obs_a, obs_b)
    assert obs_a.shape == (5, 4, 6, 8)
    # An array context with num_envs given is a pool to draw from.
    c = ImaginedEnv(PixelModel(), pool, num_envs=3)
    assert c.reset(seed=1)[0].shape == (3, 4, 6, 8)

    # A real TrajectoryDataset of windows.
    from worldmodels.data import DatasetWriter, TrajectoryDataset

    writer = DatasetWriter(tmp_path / "d", {"game": "toy/catch"}, heldout_fraction=0.5, shard_frames=100)
    for _ in range(2):
        frames = np.stack([pixel_frame(c) for c in range(8)])
        writer.add_episode(frames, np.full(8, STAY, np.int64), np.zeros(8, np.float32), terminal=False)
    writer.close()
    dataset = TrajectoryDataset(tmp_path / "d", split="heldout", window=2)
    env = ImaginedEnv(PixelModel(), dataset, num_envs=4, max_starts=3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 4, 6, 8) and obs[:, -1].reshape(4, -1).max(axis=1).tolist() == [255] * 4
    with pytest.raises(ValueError, match="window=1 is shorter than the model's context of 2"):
        ImaginedEnv(PixelModel(), TrajectoryDataset(tmp_path / "d", split="heldout", window=1), num_envs=2)


def test_reset_mask_restarts_only_those_envs() -> None:
    env = ImaginedEnv(PixelModel(), contexts([3, 4]))
    first, _ = env.reset(seed=0)
    moved, *_ = env.step(np.array([RIGHT, RIGHT]))
    obs, _ = env.reset(options={"reset_mask": np.array([False, True])})
    np.testing.assert_array_equal(obs[0], moved[0])
    np.testing.assert_array_equal(obs[1], first[1])


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="hold 1 frames per window; the model needs 2"):
        ImaginedEnv(PixelModel(), contexts([3], length=1))
    with pytest.raises(ValueError, match="frames of shape"):
        ImaginedEnv(PixelModel(), contexts([3], shape=(8, 8)))
    with pytest.raises(ValueError, match="num_envs is required"):
        ImaginedEnv(PixelModel(), lambda rng, n: contexts([3] * n))
    with pytest.raises(TypeError, match="context must be"):
        ImaginedEnv(PixelModel(), 5)
    env = ImaginedEnv(PixelModel(), contexts([3]))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0]))
    env.reset()
    with pytest.raises(ValueError, match=r"actions must be ints in \[0, 3\)"):
        env.step(np.array([3]))


def test_gymnasium_vector_wrapper_records_imagined_episodes() -> None:
    # Gymnasium 1.x has no checker for vector envs; its NextStep-aware wrappers are the practical check.
    env = RecordEpisodeStatistics(ImaginedEnv(PixelModel(), contexts([2, 5]), max_episode_steps=5))
    env.reset(seed=0)
    episodes = 0
    for _ in range(12):
        _, _, _, _, info = env.step(env.action_space.sample())
        episodes += int(info.get("_episode", np.zeros(2, bool)).sum())
    assert episodes >= 2


def test_dqn_actor_acts_inside_imagination() -> None:
    from agents.dqn.actor import EpsilonGreedyPolicy, NStepAdder
    from agents.dqn.config import DQNConfig
    from agents.dqn.networks import QNetwork
    from agents.replay.nstep import NStepBuilder
    from agents.runtime.actor import EnvActor
    from agents.runtime.algorithm import ActorParts

    cfg = DQNConfig()
    model = PixelModel(k=4, frame_shape=(84, 84))
    starts = contexts([40, 41, 42], length=4, shape=(84, 84))

    def parts(cfg: DQNConfig, actor_id: int) -> ActorParts:
        env = ImaginedEnv(model, starts, max_episode_steps=6)
        policy = EpsilonGreedyPolicy(QNetwork(3, hidden=16), cfg, actor_id, seed=0, fixed_epsilon=1.0)
        adder = NStepAdder(NStepBuilder(3, n=1, gamma=0.99, actor_id=actor_id, seed=0), clip_rewards=True)
        return ActorParts(env, policy, adder)

    actor = EnvActor(0, parts, cfg, seed=0)
    out = actor.run(num_steps=14, frames=0)
    assert out.env_steps > 0 and len(out.episode_returns) >= 3  # every env truncated at least once


def test_merge_state_splices_per_env_leaves() -> None:
    @dataclasses.dataclass(frozen=True)
    class S:
        a: np.ndarray
        t: torch.Tensor
        pair: tuple
        k: int

    mask = np.array([True, False, True])
    old = S(np.zeros((3, 2)), torch.zeros(3), (np.zeros(3), {"x": torch.zeros(3, 1)}), 4)
    new = S(np.ones((3, 2)), torch.ones(3), (np.ones(3), {"x": torch.ones(3, 1)}), 4)
    merged = _merge_state(old, new, mask)
    np.testing.assert_array_equal(merged.a[:, 0], [1, 0, 1])
    assert merged.t.tolist() == [1, 0, 1] and merged.pair[1]["x"][:, 0].tolist() == [1, 0, 1]
    with pytest.raises(_Unmergeable):  # an LSTM state laid out [layers, N, units] cannot be split by rows
        _merge_state(torch.zeros(2, 3, 4), torch.ones(2, 3, 4), mask)


def test_unsplittable_state_falls_back_to_rebuilding_from_frames(caplog: pytest.LogCaptureFixture) -> None:
    @dataclasses.dataclass
    class LayersFirst(PixelState):
        hidden: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(1))

    class Recurrent(PixelModel):
        def initial(self, frames: np.ndarray) -> LayersFirst:
            s = super().initial(frames)
            return LayersFirst(s.frames, s.reward, s.terminal, torch.zeros(3, len(frames)))  # [layers, N]

        def step(self, state: LayersFirst, actions: np.ndarray) -> tuple[LayersFirst, np.ndarray]:
            s, frame = super().step(state, actions)
            return LayersFirst(s.frames, s.reward, s.terminal, state.hidden + 1), frame

    env = ImaginedEnv(Recurrent(), contexts([1, 4]))
    env.reset(seed=0)
    env.step(np.array([LEFT, RIGHT]))        # env 0 terminates
    with caplog.at_level(logging.WARNING, logger="envs.imagined"):
        obs, *_ = env.step(np.array([STAY, RIGHT]))
    assert "cannot be split per env" in caplog.text
    np.testing.assert_array_equal(obs[1, -1], pixel_frame(6))   # env 1 still played its action
    obs, *_ = env.step(np.array([RIGHT, RIGHT]))
    np.testing.assert_array_equal(obs[:, -1], np.stack([pixel_frame(2), pixel_frame(7)]))


class GridModel:
    """Test double of a grid world model (frames ``(C, H, W)`` of 0/1 channels, ``obs_high`` 1): channel 0 holds
    the pixel that the action moves (as :class:`PixelModel`); channel 1 marks the cell it left (a trail)."""

    obs_high = 1

    def __init__(self, k: int = 1) -> None:
        self.pixels = PixelModel(k=1)
        self.context, self.frame_shape, self.num_actions, self.game = k, (2, 6, 8), 3, "toy/grid"

    def initial(self, frames: np.ndarray) -> PixelState:
        assert frames.dtype == np.uint8 and frames.shape[1:] == (self.context, 2, 6, 8)
        b = len(frames)
        return PixelState(frames.copy(), np.zeros(b, np.float32), np.zeros(b, np.float32))

    def step(self, state: PixelState, actions: np.ndarray) -> tuple[PixelState, np.ndarray]:
        pixel = state.frames[:, -1, 0] * 255
        moved, frame = self.pixels.step(PixelState(pixel[:, None], state.reward, state.terminal), actions)
        grid = np.stack([frame // 255, pixel // 255], axis=1).astype(np.uint8)  # [B, 2, H, W]
        frames = np.concatenate([state.frames[:, 1:], grid[:, None]], axis=1)
        return PixelState(frames, moved.reward, moved.terminal), grid


def grid_frame(col: int, trail: int | None = None) -> np.ndarray:
    frame = np.zeros((2, 6, 8), np.uint8)
    frame[0] = pixel_frame(col) // 255
    if trail is not None:
        frame[1] = pixel_frame(trail) // 255
    return frame


def test_grid_frames_make_channel_stacked_observations() -> None:
    starts = np.stack([grid_frame(3)[None], grid_frame(5)[None]])  # [M=2, c=1, C=2, H, W]
    env = ImaginedEnv(GridModel(), starts, stack=1, frame_skip=1)
    assert env.frame_shape == (2, 6, 8) and env.single_observation_space.shape == (2, 6, 8)
    assert env.single_observation_space.high.max() == 1  # 0/1 channels, not pixels
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, starts[:, 0])
    obs, reward, terminated, _, _ = env.step(np.array([RIGHT, LEFT]))
    np.testing.assert_array_equal(obs, np.stack([grid_frame(4, trail=3), grid_frame(4, trail=5)]))
    assert obs in env.observation_space

    # stack=2: the frames' channels concatenated, oldest first ([S * C, H, W]), the layout of the real envs.
    env = ImaginedEnv(GridModel(), starts, stack=2, frame_skip=1)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 4, 6, 8) and not obs[:, :2].any()  # zero-padded in front, as the pixel stacks
    obs, *_ = env.step(np.array([RIGHT, RIGHT]))
    np.testing.assert_array_equal(obs[0], np.concatenate([grid_frame(3), grid_frame(4, trail=3)]))

    with pytest.raises(ValueError, match=r"must be uint8 \[M, c, C, H, W\]"):
        ImaginedEnv(GridModel(), starts[:, 0])
    with pytest.raises(ValueError, match="frames of shape"):
        ImaginedEnv(GridModel(), np.zeros((2, 1, 3, 6, 8), np.uint8))
