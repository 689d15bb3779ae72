"""Pseudo-count bonus wrappers: gymnasium's env checker, a third-party-style training loop, vector envs."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from envs.wrappers import PseudoCountBonus, VectorPseudoCountBonus, newest_frame
from worldmodels.density import CTS, preprocess_frames

torch.set_num_threads(1)
gym.register_envs(ale_py)


class Corridor(gym.Env):
    """A 5-cell corridor drawn as an 84x84 grey image (a bright block at the agent's cell).

    Actions: 0 left, 1 right. Reaching the last cell terminates with reward 1; 12 steps truncate.
    ``mode``: ``gray`` [84, 84], ``rgb`` [84, 84, 3], ``stack`` [4, 84, 84] (newest last).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, mode: str = "gray", length: int = 5, max_steps: int = 12) -> None:
        self.mode, self.length, self.max_steps = mode, length, max_steps
        shape = {"gray": (84, 84), "rgb": (84, 84, 3), "stack": (4, 84, 84)}[mode]
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.pos, self.t = 0, 0
        self.stack = np.zeros((4, 84, 84), dtype=np.uint8)

    def picture(self, pos: int) -> np.ndarray:
        img = np.full((84, 84), 40, dtype=np.uint8)
        img[30:54, 6 + 15 * pos : 18 + 15 * pos] = 250
        return img

    def _obs(self) -> np.ndarray:
        img = self.picture(self.pos)
        if self.mode == "rgb":
            return np.repeat(img[..., None], 3, axis=-1)
        if self.mode == "stack":
            self.stack = np.concatenate([self.stack[1:], img[None]])
            return self.stack.copy()
        return img

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos, self.t = 0, 0
        self.stack = np.zeros((4, 84, 84), dtype=np.uint8)
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.pos = int(np.clip(self.pos + (1 if action == 1 else -1), 0, self.length - 1))
        self.t += 1
        terminated = self.pos == self.length - 1
        truncated = self.t >= self.max_steps and not terminated
        return self._obs(), 1.0 if terminated else 0.0, terminated, truncated, {"pos": self.pos}


class RecordingCTS(CTS):
    """A real CTS that also keeps every frame it learns, to check which frames a wrapper scores."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[np.ndarray] = []

    def update(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.seen.extend(np.asarray(frames).copy())
        return super().update(frames)


def _gymnasium_atari() -> gym.Env:
    env = gym.make("ALE/Pong-v5", frameskip=1)
    env = gym.wrappers.AtariPreprocessing(env, frame_skip=4, screen_size=84, grayscale_obs=True)
    return gym.wrappers.FrameStackObservation(env, 4)


def _our_atari() -> gym.Env:
    from envs import make_atari

    return make_atari("pong", num_envs=None)


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")  # check_env on a wrapper
@pytest.mark.parametrize("make", [_gymnasium_atari, _our_atari])
def test_check_env_passes_on_wrapped_atari(make: Any) -> None:
    wrapped = PseudoCountBonus(make(), model="cts", beta=0.05)
    check_env(wrapped, skip_render_check=True)  # ALE's "human" render mode needs a display
    assert wrapped.spec is not None and wrapped.spec.nondeterministic
    obs, info = wrapped.reset(seed=0)
    assert obs.shape == (4, 84, 84) and info["intrinsic_reward"] > 0
    obs, reward, _, _, info = wrapped.step(0)
    assert reward == pytest.approx(info["extrinsic_reward"] + info["intrinsic_reward"])
    assert info["pseudo_count"] >= 0.0
    wrapped.close()


@pytest.mark.parametrize("mode", ["gray", "rgb", "stack"])
def test_frame_is_found_in_each_observation_layout(mode: str) -> None:
    env = Corridor(mode)
    obs, _ = env.reset(seed=0)
    expected = preprocess_frames(env.picture(0))
    np.testing.assert_array_equal(preprocess_frames(newest_frame(obs)), expected)
    wrapped = PseudoCountBonus(Corridor(mode), model=RecordingCTS())
    wrapped.reset(seed=0)
    np.testing.assert_array_equal(wrapped.pseudo_count.model.seen[0], expected[0])


def test_cleanrl_style_dqn_loop_through_the_wrapper() -> None:
    """A third-party training loop (gymnasium API only, CleanRL's shape): the bonus is positive and
    falls as states are revisited. (CTS is not strictly learning-positive: once a frame is familiar,
    the switching weights can move so that rho' < rho by a few thousandths of a nat, and then the
    bonus is 0 by definition; that happens on about one step in ten here, where a greedy policy
    keeps showing the same frames.)"""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    envs = gym.vector.SyncVectorEnv([lambda: PseudoCountBonus(Corridor("stack"), model="cts", beta=0.05)])
    q_network = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(4 * 7 * 7, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)
    )
    optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-3)
    replay: list[tuple[np.ndarray, int, float, np.ndarray, bool]] = []
    bonus_by_cell: dict[int, list[float]] = defaultdict(list)
    all_bonuses: list[float] = []

    def features(obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs[:, :, ::12, ::12], dtype=torch.float32) / 255.0

    obs, _ = envs.reset(seed=0)
    for step in range(300):
        epsilon = max(0.1, 1.0 - step / 200)
        if rng.random() < epsilon:
            actions = rng.integers(0, 2, size=1)
        else:
            actions = q_network(features(obs)).argmax(dim=1).numpy()
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        assert "intrinsic_reward" in infos and infos["_intrinsic_reward"][0]
        intrinsic = float(infos["intrinsic_reward"][0])
        assert intrinsic >= 0.0
        all_bonuses.append(intrinsic)
        # NextStep autoreset: SyncVectorEnv's reset step has reward 0, the info of our reset() (the
        # first frame's bonus) and no "pos".
        if "pos" in infos and infos["_pos"][0]:
            assert rewards[0] == pytest.approx(infos["extrinsic_reward"][0] + intrinsic)
            bonus_by_cell[int(infos["pos"][0])].append(intrinsic)
            replay.append((obs[0], int(actions[0]), float(rewards[0]), next_obs[0], bool(terminations[0])))
        obs = next_obs
        if len(replay) >= 32:
            batch = [replay[i] for i in rng.integers(0, len(replay), 32)]
            o, a, r, o2, d = (np.array(x) for x in zip(*batch, strict=True))
            with torch.no_grad():
                target = torch.as_tensor(r, dtype=torch.float32) + 0.99 * q_network(features(o2)).max(
                    1
                ).values * (1 - torch.as_tensor(d, dtype=torch.float32))
            q = q_network(features(o)).gather(1, torch.as_tensor(a)[:, None]).squeeze(1)
            loss = torch.nn.functional.mse_loss(q, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    envs.close()
    assert np.mean(np.array(all_bonuses) > 0) > 0.8
    # Each cell's image (stacked with recent history) recurs; its bonus falls with visits.
    often = {cell: b for cell, b in bonus_by_cell.items() if len(b) >= 10}
    assert len(often) >= 2
    for bonuses in often.values():
        k = len(bonuses) // 3
        assert np.mean(bonuses[-k:]) < 0.5 * np.mean(bonuses[:k])


@pytest.mark.parametrize("ours", [False, True])
def test_vector_wrapper_on_ale_vector_env(ours: bool) -> None:
    from ale_py.vector_env import AtariVectorEnv

    from envs import make_atari

    vec = make_atari("pong", num_envs=2) if ours else AtariVectorEnv("pong", 2, num_threads=1)
    envs = VectorPseudoCountBonus(vec, model="cts", beta=0.05)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and info["intrinsic_reward"].shape == (2,)
    assert len(envs.pseudo_counts) == 2  # one density model per sub-env by default
    for _ in range(20):
        obs, reward, term, trunc, info = envs.step(np.zeros(2, dtype=np.int64))
        np.testing.assert_allclose(reward, info["extrinsic_reward"] + info["intrinsic_reward"])
        assert (info["intrinsic_reward"] > 0).all() and (info["pseudo_count"] >= 0).all()
    assert all(pc.num_updates == 21 for pc in envs.pseudo_counts)
    envs.close()


def test_vector_wrapper_shared_model_and_next_step_autoreset() -> None:
    """Every returned frame is learned once, in sub-env order, including reset frames after episodes."""
    model = RecordingCTS()
    vec = gym.vector.SyncVectorEnv([lambda: Corridor(max_steps=3) for _ in range(2)])
    envs = VectorPseudoCountBonus(vec, model=model, shared=True)
    obs, _ = envs.reset(seed=0)
    returned = [obs]
    for _ in range(7):
        obs, *_ = envs.step(np.zeros(2, dtype=np.int64))  # always left: truncates every 3 steps
        returned.append(obs)
    expected = preprocess_frames(np.concatenate(returned))
    np.testing.assert_array_equal(np.stack(model.seen), expected)


def test_vector_wrapper_same_step_scores_the_terminal_frame() -> None:
    model = RecordingCTS()
    vec = gym.vector.SyncVectorEnv([lambda: Corridor(length=2)], autoreset_mode=AutoresetMode.SAME_STEP)
    envs = VectorPseudoCountBonus(vec, model=model, shared=True)
    envs.reset(seed=0)
    _, reward, term, _, info = envs.step(np.ones(1, dtype=np.int64))  # right: reaches the goal cell
    assert term[0] and reward[0] == pytest.approx(1.0 + info["intrinsic_reward"][0])
    corridor = Corridor(length=2)
    goal, start = preprocess_frames(corridor.picture(1)), preprocess_frames(corridor.picture(0))
    # Learned: start (reset), the terminal goal frame (scored for this step), the new start frame.
    np.testing.assert_array_equal(np.stack(model.seen), np.concatenate([start, goal, start]))


def test_pixelcnn_option_uses_the_decayed_gain() -> None:
    env = PseudoCountBonus(Corridor(), model="pixelcnn")
    assert env.pseudo_count.prediction_gain_decay is not None
    env.reset(seed=0)
    for _ in range(3):
        _, _, _, _, info = env.step(1)
        assert info["intrinsic_reward"] >= 0.0
    assert PseudoCountBonus(Corridor(), model="cts").pseudo_count.prediction_gain_decay is None
    from worldmodels.density import PixelCNNConfig, PixelCNNDensity

    instance = PseudoCountBonus(Corridor(), model=PixelCNNDensity(PixelCNNConfig.small()))
    assert instance.pseudo_count.prediction_gain_decay is not None


def test_configuration_errors_are_named() -> None:
    vec = gym.vector.SyncVectorEnv([lambda: Corridor() for _ in range(2)])
    with pytest.raises(ValueError, match="factory"):
        VectorPseudoCountBonus(vec, model=CTS())
    envs = VectorPseudoCountBonus(vec, model=CTS)  # a class is a factory: one model each
    assert envs.pseudo_counts[0].model is not envs.pseudo_counts[1].model
    with pytest.raises(ValueError, match="'cts' or 'pixelcnn'"):
        PseudoCountBonus(Corridor(), model="ctw")
    with pytest.raises(ValueError, match="frame_fn"):
        newest_frame({"image": np.zeros((84, 84), dtype=np.uint8)})


def test_density_bench_runs_and_formats() -> None:
    from launch.bench.density import format_density_table, run_density_bench

    result = run_density_bench(frames=24, game="pong", pixelcnn_frames=2, wrapper_steps=10, rnd_frames=8)
    for key in ("cts_ms_per_frame", "cts_memory_mb", "pixelcnn_ms_per_frame", "wrapper_steps_per_s_ratio",
                "rnd_ms_per_frame", "rnd_batched_ms_per_frame", "rnd_memory_mb"):
        assert result[key] > 0, key
    assert result["frames"] == 24 and result["cts_nodes"] >= 42 * 42
    table = format_density_table(result)
    assert "CTS update + recoding" in table and "ratio" in table and "RND memory" in table
