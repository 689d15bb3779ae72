"""Catch: a tiny deterministic pixel game with the exact API of the Atari envs, for fast tests.

The game: a grid of ``rows x columns`` cells (7 x 7 by default), each drawn as a 12 x 12 pixel block so that
a frame is uint8 [84, 84]. A ball appears in a random column of the top row and falls one row per step;
a paddle on the bottom row moves one column per step (actions 0 = left, 1 = stay, 2 = right; it stops at
the walls). Within a step the paddle moves first, then the ball falls. When the ball reaches the bottom
row the step's reward is +1 if the paddle is under it and -1 otherwise, and the next ball appears at the
top in the same step. An episode is ``drops`` balls (5 by default), so it always lasts
``drops * (rows - 1)`` = 30 steps, and the return lies in [-5, +5]: +5 for optimal play (the paddle can
always reach the ball, which needs ``rows - 1`` steps to fall), about -3.6 for uniformly random actions.

Pixels: background 0, paddle 128, ball 255 (the ball is drawn over the paddle). The paddle starts each
episode in the middle column. All randomness (the ball columns) comes from a numpy Generator seeded by
``seed`` / ``reset(seed=...)``.

:class:`CatchVectorEnv` follows the Atari vector env of :mod:`envs.atari` to the letter: obs uint8
[N, S, 84, 84] zero-padded at episode start, NextStep autoreset, info with ``env_id``, ``lives`` (always 0,
Catch has no lives, like Pong), ``frame_number``, ``episode_frame_number`` (emulator-frame bookkeeping,
``frame_skip`` per step), ``raw_reward`` and ``game_over``. :class:`CatchEnv` is the single-env Gymnasium
version. Nothing is registered with Gymnasium.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.vector import reset_mask

FRAME_SIZE = 84
BALL_PIXEL = 255
PADDLE_PIXEL = 128
LEFT, STAY, RIGHT = 0, 1, 2
ACTION_MEANINGS = ("LEFT", "STAY", "RIGHT")


class _CatchCore:
    """State and dynamics of N Catch games, vectorised with numpy (no randomness inside: callers draw)."""

    def __init__(self, num_envs: int, rows: int, columns: int, drops: int) -> None:
        for name, value in (("rows", rows), ("columns", columns)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2 or FRAME_SIZE % value:
                raise ValueError(f"{name} must be an int >= 2 that divides {FRAME_SIZE}, got {value!r}")
        if isinstance(drops, bool) or not isinstance(drops, int) or drops < 1:
            raise ValueError(f"drops must be a positive int, got {drops!r}")
        self.rows, self.columns, self.drops = rows, columns, drops
        self.cell_h, self.cell_w = FRAME_SIZE // rows, FRAME_SIZE // columns
        self.ball_row = np.zeros(num_envs, dtype=np.int64)
        self.ball_col = np.zeros(num_envs, dtype=np.int64)
        self.paddle = np.zeros(num_envs, dtype=np.int64)
        self.balls_left = np.zeros(num_envs, dtype=np.int64)
        self._index = np.arange(num_envs)

    def reset(self, mask: np.ndarray, columns: np.ndarray) -> None:
        """Start new episodes in the envs where ``mask`` (bool [N]); balls at ``columns`` (int [N])."""
        self.ball_row[mask] = 0
        self.ball_col[mask] = columns[mask]
        self.paddle[mask] = self.columns // 2
        self.balls_left[mask] = self.drops

    def step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance the envs where ``active``; returns (reward float64 [N], landed bool [N], done bool [N])."""
        moved = np.clip(self.paddle + actions - 1, 0, self.columns - 1)
        self.paddle = np.where(active, moved, self.paddle)
        self.ball_row = self.ball_row + active
        landed = active & (self.ball_row == self.rows - 1)
        reward = np.where(landed, np.where(self.ball_col == self.paddle, 1.0, -1.0), 0.0)
        self.balls_left = self.balls_left - landed
        done = landed & (self.balls_left == 0)
        return reward, landed, done

    def respawn(self, mask: np.ndarray, columns: np.ndarray) -> None:
        """Put a new ball at the top of ``columns`` where ``mask``."""
        self.ball_row[mask] = 0
        self.ball_col[mask] = columns[mask]

    def render(self) -> np.ndarray:
        """Newest frames, uint8 [N, 84, 84]."""
        n = len(self._index)
        cells = np.zeros((n, self.rows, self.columns), dtype=np.uint8)
        cells[self._index, self.rows - 1, self.paddle] = PADDLE_PIXEL
        cells[self._index, self.ball_row, self.ball_col] = BALL_PIXEL
        return cells.repeat(self.cell_h, axis=1).repeat(self.cell_w, axis=2)

    def place(self, index: int, *, ball_row: int, ball_col: int, paddle: int, balls_left: int) -> None:
        """Set one game's state by hand (for tests and demonstrations)."""
        inside = 0 <= ball_row < self.rows - 1 and 0 <= ball_col < self.columns and 0 <= paddle < self.columns
        if not inside:
            raise ValueError(
                f"need 0 <= ball_row < {self.rows - 1} (the ball lands on row {self.rows - 1}), "
                f"0 <= ball_col, paddle < {self.columns}; got {ball_row}, {ball_col}, {paddle}"
            )
        if not 1 <= balls_left <= self.drops:
            raise ValueError(f"balls_left must be in [1, {self.drops}], got {balls_left}")
        self.ball_row[index], self.ball_col[index] = ball_row, ball_col
        self.paddle[index], self.balls_left[index] = paddle, balls_left


class CatchVectorEnv(VectorEnv):
    """N Catch games with the API and semantics of :class:`envs.atari.AtariVector` (see module docstring).

    - ``reset(seed=int | None, options={"reset_mask": bool [N]} | None) -> (obs uint8 [N, S, 84, 84], info)``;
      a seed re-seeds the Generator that draws every ball column (same seed -> same episodes).
    - ``step(actions int [N] in {0, 1, 2}) -> (obs, reward float32 [N], terminated bool [N],
      truncated bool [N] (always False), info)``; after ``terminated[i]`` the next step ignores
      ``actions[i]`` and returns env i's first observation of a new episode with reward 0.

    :param num_envs: N.
    :param seed: seeds the ball columns (also used by the first ``reset()`` without a seed).
    :param rows, columns: grid size; each must divide 84.
    :param drops: balls per episode.
    :param stack: frames per observation S (attribute ``stack``; ``frame_shape`` is (84, 84)).
    :param frame_skip: emulator frames one step stands for, only for ``frame_number`` bookkeeping.
    """

    single_observation_space: gym.spaces.Box
    single_action_space: gym.spaces.Discrete

    def __init__(
        self,
        num_envs: int,
        seed: int = 0,
        *,
        rows: int = 7,
        columns: int = 7,
        drops: int = 5,
        stack: int = 4,
        frame_skip: int = 4,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if isinstance(stack, bool) or not isinstance(stack, int) or stack < 1:
            raise ValueError(f"stack must be a positive int, got {stack!r}")
        self.num_envs = num_envs
        self.frame_skip = frame_skip
        self.stack = stack
        self.frame_shape = (FRAME_SIZE, FRAME_SIZE)
        self.game = "toy/catch"
        self.core = _CatchCore(num_envs, rows, columns, drops)
        self.single_observation_space = gym.spaces.Box(0, 255, (stack, FRAME_SIZE, FRAME_SIZE), np.uint8)
        self.single_action_space = gym.spaces.Discrete(3)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
        self._rng = np.random.default_rng(seed)
        self._obs = np.zeros((num_envs, stack, FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
        self._needs_reset = np.ones(num_envs, dtype=bool)
        self._frame_number = np.zeros(num_envs, dtype=np.int32)
        self._episode_frame = np.zeros(num_envs, dtype=np.int32)
        self._env_id = np.arange(num_envs, dtype=np.int32)
        self._lives = np.zeros(num_envs, dtype=np.int32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start new episodes in all envs (or in those of ``options["reset_mask"]``)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        mask = reset_mask(options, self.num_envs)
        self.core.reset(mask, self._rng.integers(self.core.columns, size=self.num_envs))
        self._episode_frame[mask] = 0
        if seed is not None:  # like ale-py, a seeded reset restarts the emulator's frame counter
            self._frame_number[mask] = 0
        self._needs_reset[mask] = False
        # Envs outside the mask keep (and report) their current observation, as in ale-py.
        obs = self._obs.copy()
        obs[mask] = 0
        obs[mask, -1] = self.core.render()[mask]
        self._obs = obs
        info = self._info(np.zeros(self.num_envs), np.zeros(self.num_envs, dtype=bool))
        return obs, info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every env; see the class docstring."""
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.num_envs,) or actions.min() < 0 or actions.max() > 2:
            raise ValueError(
                f"actions must be ints in {{0, 1, 2}} (left, stay, right) of shape ({self.num_envs},), "
                f"got {actions}"
            )
        resetting = self._needs_reset
        reward, landed, done = self.core.step(actions, ~resetting)
        respawn = (landed & ~done) | resetting
        if respawn.any():
            columns = self._rng.integers(self.core.columns, size=self.num_envs)
            self.core.respawn(landed & ~done, columns)
            self.core.reset(resetting, columns)
        self._episode_frame = np.where(resetting, 0, self._episode_frame + self.frame_skip).astype(np.int32)
        self._frame_number += self.frame_skip
        obs = self._next_obs(resetting)
        self._needs_reset = done
        info = self._info(reward, done)
        return obs, reward.astype(np.float32), done.copy(), np.zeros(self.num_envs, dtype=bool), info

    def place(self, index: int, *, ball_row: int, ball_col: int, paddle: int, balls_left: int = 1) -> None:
        """Set env ``index``'s ball (row, column), paddle column and balls left by hand, for tests.

        The current observation is not redrawn; the next ``step`` renders the new state.
        """
        self.core.place(index, ball_row=ball_row, ball_col=ball_col, paddle=paddle, balls_left=balls_left)

    def _next_obs(self, fresh: np.ndarray) -> np.ndarray:
        # A new array every step: callers (replay buffers) may keep references to earlier observations.
        obs = np.empty_like(self._obs)
        obs[:, :-1] = self._obs[:, 1:]
        obs[fresh, :-1] = 0  # zero-padded stack at episode start
        obs[:, -1] = self.core.render()
        self._obs = obs
        return obs

    def _info(self, raw_reward: np.ndarray, game_over: np.ndarray) -> dict[str, Any]:
        return {
            "env_id": self._env_id.copy(),
            "lives": self._lives.copy(),
            "frame_number": self._frame_number.copy(),
            "episode_frame_number": self._episode_frame.copy(),
            "raw_reward": raw_reward.astype(np.float64),
            "game_over": game_over.copy(),
        }


class CatchEnv(gym.Env):
    """One Catch game as a Gymnasium env (passes ``gymnasium.utils.env_checker.check_env``).

    obs uint8 [S, 84, 84] (zero-padded at reset), actions Discrete(3), reward float in {-1, 0, 1}; info has
    ``lives`` (0), ``frame_number``, ``episode_frame_number``, ``raw_reward`` and ``game_over``. Ball
    columns come from ``self.np_random`` (seeded by ``reset(seed=...)``; the first reset without a seed uses
    the constructor's ``seed``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Discrete

    def __init__(
        self,
        seed: int = 0,
        *,
        rows: int = 7,
        columns: int = 7,
        drops: int = 5,
        stack: int = 4,
        frame_skip: int = 4,
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if isinstance(stack, bool) or not isinstance(stack, int) or stack < 1:
            raise ValueError(f"stack must be a positive int, got {stack!r}")
        self.render_mode = render_mode
        self.frame_skip = frame_skip
        self.stack = stack
        self.frame_shape = (FRAME_SIZE, FRAME_SIZE)
        self.core = _CatchCore(1, rows, columns, drops)
        self.observation_space = gym.spaces.Box(0, 255, (stack, FRAME_SIZE, FRAME_SIZE), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self._default_seed: int | None = seed
        self._obs = np.zeros((stack, FRAME_SIZE, FRAME_SIZE), dtype=np.uint8)
        self._done = True
        self._frame_number = 0
        self._episode_frame = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode; the first reset without a seed uses the constructor's ``seed``."""
        if seed is None and self._default_seed is not None:
            seed = self._default_seed
        self._default_seed = None
        super().reset(seed=seed)
        if seed is not None:  # like ale-py, a seeded reset restarts the emulator's frame counter
            self._frame_number = 0
        self.core.reset(np.ones(1, dtype=bool), self.np_random.integers(self.core.columns, size=1))
        self._done = False
        self._episode_frame = 0
        self._obs = np.zeros_like(self._obs)
        self._obs[-1] = self.core.render()[0]
        return self._obs.copy(), self._info(0.0, False)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("CatchEnv.step() called after the episode ended; call reset() first")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 (left), 1 (stay) or 2 (right), got {action!r}")
        reward, landed, done = self.core.step(np.array([int(action)]), np.ones(1, dtype=bool))
        if landed[0] and not done[0]:
            self.core.respawn(landed, self.np_random.integers(self.core.columns, size=1))
        self._done = bool(done[0])
        self._frame_number += self.frame_skip
        self._episode_frame += self.frame_skip
        obs = np.empty_like(self._obs)
        obs[:-1] = self._obs[1:]
        obs[-1] = self.core.render()[0]
        self._obs = obs
        return obs.copy(), float(reward[0]), self._done, False, self._info(float(reward[0]), self._done)

    def render(self) -> np.ndarray | None:
        """The newest frame as RGB uint8 [84, 84, 3] (render_mode "rgb_array"), else None."""
        if self.render_mode != "rgb_array":
            return None
        return np.repeat(self._obs[-1][:, :, None], 3, axis=2)

    def _info(self, raw_reward: float, game_over: bool) -> dict[str, Any]:
        return {
            "lives": 0,
            "frame_number": self._frame_number,
            "episode_frame_number": self._episode_frame,
            "raw_reward": raw_reward,
            "game_over": game_over,
        }
