"""ImaginedEnv: a Gymnasium vector env whose steps are a world model's predictions.

Any agent that acts in our real vector envs (:func:`envs.make_env`) can act inside imagination: the observations,
autoreset mode and info keys are the same, and only ``info["imagined"]`` tells the two apart.

    from worldmodels.video import load_world_model
    model = load_world_model("runs/video_pong")
    env = ImaginedEnv(model, context)                  # context uint8 [N, k, 84, 84]: N real start windows
    env = ImaginedEnv(model, TrajectoryDataset("data/pong", split="heldout", window=4), num_envs=8)
    obs, info = env.reset(seed=0)                      # obs uint8 [N, 4, 84, 84], oldest frame first
    obs, reward, terminated, truncated, info = env.step(actions)   # actions int [N]

How a step is made (all N envs in one batched ``model.step``):

- observation: the stack shifted by one frame, with the model's predicted frame (uint8 [H, W]) appended as the
  newest; the model keeps its own state (its last frames, or a recurrent state) between steps.
- grid frames: a model whose ``frame_shape`` is channels-first ``(C, H, W)`` (MinAtar's 0/1 object channels, e.g.
  :class:`worldmodels.grid.GridWorldModel`) predicts uint8 ``[C, H, W]`` frames, and an observation is ``stack``
  of them with their channels concatenated, oldest first: ``[S * C, H, W]``, so ``stack=1`` gives MinAtar's own
  ``[C, H, W]`` (as :func:`envs.make_env`'s MinAtar envs, whose ``stack`` is 1). Start windows are then
  ``[M, c, C, H, W]``, and the observation space's upper bound is the model's ``obs_high`` (1 for 0/1 channels;
  255, pixels, when the model has none).
- reward: ``state.reward`` of that step, the model's predicted *clipped* reward in [-1, 1] (float32). The model
  never saw unclipped scores, so ``info["raw_reward"]`` holds the same predicted value (float64). (A grid model
  predicts MinAtar's raw rewards, which MinAtar never clips: both hold that.)
- terminated: ``state.terminal > terminal_threshold`` (the predicted probability that the game ended at that
  step; default threshold 0.5). ``info["game_over"]`` equals ``terminated | truncated`` (the model predicts game
  ends, not life losses).
- truncated: after ``max_episode_steps`` imagined steps of an episode (default 1000: imagination drifts from
  reality as errors compound, so long episodes mean little).
- autoreset: NextStep, as in :class:`envs.atari.AtariVector`: after env i ends, the next ``step`` ignores
  ``actions[i]`` and returns env i's first observation of a new episode (a fresh real start), with reward 0 and
  both flags False.

Start frames (``context``), at least ``model.context`` frames each:

- ``np.ndarray`` uint8 ``[M, c, H, W]``: M real start windows. With ``num_envs=None`` there are M envs and env i
  always restarts from window i (deterministic); with ``num_envs`` given, every (re)start draws a window
  uniformly from the M with the env's seeded generator.
- a :class:`worldmodels.data.TrajectoryDataset` (its ``window`` >= ``model.context``): up to ``max_starts``
  windows are drawn once, by reservoir sampling over one pass of the split, and every (re)start draws one of
  them uniformly (``num_envs`` is required). Use the held-out split to start from frames the model never trained
  on.
- a callable ``(rng: np.random.Generator, n: int) -> uint8 [n, c, H, W]`` giving n fresh start windows on each
  call (``num_envs`` is required).

An episode's first observation is the last ``stack`` frames of its start window (zero-padded in front when the
window is shorter than ``stack``), so it starts mid-game with a full stack, unlike a real game's zero-padded
first observation. Info keys (arrays of length N, as in :class:`envs.atari.AtariVector`): ``imagined`` (bool, all
True), ``raw_reward``, ``game_over``, ``env_id``, ``lives`` (0: the model has no lives counter),
``episode_frame_number`` and ``frame_number`` (agent steps x ``frame_skip``, bookkeeping only).

Restarting some envs while others play on: the model's state is opaque, so the restarted envs' fresh state is
spliced into the batch's state field by field (dataclass fields, tuples, lists, dicts; numpy arrays and torch
tensors whose leading dimension is N). If the state holds a leaf that cannot be split per env (e.g. an LSTM
state laid out ``[layers, N, units]``), every env's state is instead rebuilt with ``model.initial`` from its last
``model.context`` frames: exact for a feedforward model (whose state is those frames), a fresh warm-up of a
recurrent one (its memory beyond those frames is lost at every restart of any env).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.vector import reset_mask

log = logging.getLogger(__name__)

#: Draws ``n`` start windows, uint8 ``[n, c, H, W]``, with the given generator.
ContextSampler = Callable[[np.random.Generator, int], np.ndarray]


class _Unmergeable(Exception):
    """A state leaf that cannot be split per env."""


def _merge_state(old: Any, new: Any, mask: np.ndarray) -> Any:
    """``new`` where ``mask`` (bool [N]) is True, ``old`` elsewhere, for every leaf of an opaque model state.

    :raises _Unmergeable: a leaf differs between the two states and has no leading dimension N.
    """
    n = len(mask)
    if isinstance(old, np.ndarray):
        if not isinstance(new, np.ndarray):
            raise _Unmergeable(f"array vs {type(new).__name__}")
        if old.ndim >= 1 and old.shape[0] == n and new.shape == old.shape:
            return np.where(mask.reshape((n,) + (1,) * (old.ndim - 1)), new, old)
        if new.shape == old.shape and np.array_equal(new, old):
            return old
        raise _Unmergeable(f"array of shape {old.shape}")
    if type(old).__module__.startswith("torch") and hasattr(old, "shape"):
        import torch

        if not isinstance(new, torch.Tensor):
            raise _Unmergeable(f"tensor vs {type(new).__name__}")
        if old.ndim >= 1 and old.shape[0] == n and new.shape == old.shape:
            m = torch.as_tensor(mask, device=old.device).reshape((n,) + (1,) * (old.ndim - 1))
            return torch.where(m, new, old)
        if new.shape == old.shape and torch.equal(new, old):
            return old
        raise _Unmergeable(f"tensor of shape {tuple(old.shape)}")
    if dataclasses.is_dataclass(old) and not isinstance(old, type):
        if type(new) is not type(old):
            raise _Unmergeable(f"{type(old).__name__} vs {type(new).__name__}")
        merged = {f.name: _merge_state(getattr(old, f.name), getattr(new, f.name), mask)
                  for f in dataclasses.fields(old)}
        out = object.__new__(type(old))  # no __init__: fields with init=False (and frozen classes) work too
        if hasattr(old, "__dict__"):
            out.__dict__.update(old.__dict__)
        for name, value in merged.items():
            object.__setattr__(out, name, value)
        return out
    if isinstance(old, tuple) and hasattr(old, "_fields"):  # namedtuple
        return type(old)(*(_merge_state(o, w, mask) for o, w in zip(old, new)))
    if isinstance(old, (tuple, list)):
        if len(old) != len(new):
            raise _Unmergeable("sequences of different lengths")
        return type(old)(_merge_state(o, w, mask) for o, w in zip(old, new))
    if isinstance(old, dict):
        if old.keys() != new.keys():
            raise _Unmergeable("dicts with different keys")
        return {key: _merge_state(old[key], new[key], mask) for key in old}
    if old is None or isinstance(old, (bool, int, float, str)):
        if old == new:
            return old
        raise _Unmergeable(f"scalar {old!r} != {new!r}")
    raise _Unmergeable(f"leaf of type {type(old).__name__}")


def _reservoir_starts(dataset: Any, max_starts: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``max_starts`` windows' frames (uint8 ``[M, k, H, W]``), uniformly sampled over one pass of
    ``dataset`` (an iterable of dicts with ``"frames"`` uint8 ``[k, H, W]``) without holding the whole split."""
    pool: list[np.ndarray] = []
    for seen, window in enumerate(dataset):
        if len(pool) < max_starts:
            pool.append(np.asarray(window["frames"]).copy())
        else:
            j = int(rng.integers(seen + 1))
            if j < max_starts:
                pool[j] = np.asarray(window["frames"]).copy()
    if not pool:
        raise ValueError(f"{getattr(dataset, 'root', 'the dataset')} gave no windows to start imagination from")
    return np.stack(pool)


class ImaginedEnv(VectorEnv):
    """N imagined games driven by a world model; see the module docstring for the semantics.

    - ``reset(seed=int | None, options={"reset_mask": bool [N]} | None) -> (obs uint8 [N, S, H, W], info)``;
      a seed re-seeds the generator that draws start windows (the first ``reset()`` without a seed uses the
      constructor's ``seed``).
    - ``step(actions int [N]) -> (obs, reward float32 [N], terminated bool [N], truncated bool [N], info)``.

    :param world_model: satisfies the ``worldmodels.video`` API: ``context``, ``num_actions``, ``frame_shape``,
        ``initial(frames uint8 [B, k, H, W])``, ``step(state, actions int64 [B]) -> (state, uint8 [B, H, W])``
        with ``state.reward`` and ``state.terminal`` float32 [B]; or the same with grid frames ``(C, H, W)``
        (``frame_shape`` of length 3, see the module docstring) and optionally ``obs_high``.
    :param context: start windows: an array uint8 [M, c, H, W] (``[M, c, C, H, W]`` for grid frames), a
        TrajectoryDataset, or a sampler callable.
    :param num_envs: N; ``None`` only with an array context (then N = M, env i starts from window i).
    :param stack: frames per observation S (4, as :func:`envs.make_env`'s Atari envs).
    :param max_episode_steps: imagined steps after which an episode is truncated.
    :param terminal_threshold: ``terminated = state.terminal > terminal_threshold`` (a probability).
    :param seed: seeds the draws of start windows.
    :param max_starts: windows drawn from a TrajectoryDataset context.
    :param frame_skip: emulator frames one step stands for (``frame_number`` bookkeeping only; 4 on Atari).
    """

    single_observation_space: gym.spaces.Box
    single_action_space: gym.spaces.Discrete

    def __init__(
        self,
        world_model: Any,
        context: np.ndarray | ContextSampler | Any,
        *,
        num_envs: int | None = None,
        stack: int = 4,
        max_episode_steps: int = 1000,
        terminal_threshold: float = 0.5,
        seed: int = 0,
        max_starts: int = 1024,
        frame_skip: int = 4,
    ) -> None:
        self.model = world_model
        self.k = int(world_model.context)
        frame_shape = tuple(int(s) for s in world_model.frame_shape)
        if len(frame_shape) not in (2, 3):
            raise ValueError(f"the model's frame_shape {frame_shape} must be (H, W) or channels-first (C, H, W)")
        self.frame_shape: tuple[int, ...] = frame_shape  # before the start windows are checked against it
        for name, value in (("stack", stack), ("max_episode_steps", max_episode_steps), ("max_starts", max_starts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= float(terminal_threshold) <= 1.0:
            raise ValueError(f"terminal_threshold must lie in [0, 1] (a probability), got {terminal_threshold}")
        self._rng = np.random.default_rng(seed)
        self._default_seed: int | None = seed
        self._fixed: np.ndarray | None = None  # array context with num_envs=None: env i -> window i
        self._sampler: ContextSampler
        if isinstance(context, np.ndarray):
            starts = self._check_frames(context, "context")
            if num_envs is None:
                self._fixed = starts
                num_envs = len(starts)
            self._sampler = lambda rng, n: starts[rng.integers(len(starts), size=n)]
        elif callable(context) and not hasattr(context, "__iter__"):
            self._sampler = context
        elif hasattr(context, "__iter__"):
            window = getattr(context, "window", None)
            if window is not None and window < self.k:
                raise ValueError(f"the dataset's window={window} is shorter than the model's context of {self.k} "
                                 f"frames; build it with TrajectoryDataset(..., window={self.k})")
            starts = self._check_frames(_reservoir_starts(context, max_starts, np.random.default_rng(seed)),
                                        "dataset windows")
            self._sampler = lambda rng, n: starts[rng.integers(len(starts), size=n)]
        else:
            raise TypeError("context must be a uint8 array [M, c, H, W], a TrajectoryDataset, or a callable "
                            f"(rng, n) -> uint8 [n, c, H, W]; got {type(context).__name__}")
        if num_envs is None:
            raise ValueError("num_envs is required unless context is an array (then num_envs = len(context))")
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = num_envs
        self.stack = stack
        self.frame_skip = frame_skip
        self.max_episode_steps = max_episode_steps
        self.terminal_threshold = float(terminal_threshold)
        self.game = getattr(world_model, "game", None)
        # Stacked frames: (S, H, W) for luminance frames, (S * C, H, W) for grid frames (channels oldest first), the
        # layout of the real envs (agents.replay.buffer.stacked_shape).
        obs_shape = (stack, *frame_shape) if len(frame_shape) == 2 else (stack * frame_shape[0], *frame_shape[1:])
        high = int(getattr(world_model, "obs_high", 255))
        self.single_observation_space = gym.spaces.Box(0, high, obs_shape, np.uint8)
        self.single_action_space = gym.spaces.Discrete(int(world_model.num_actions))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
        # The last max(stack, k) frames of each env: the observation is the tail of length stack; a state rebuilt
        # with model.initial uses the tail of length k.
        self._frames = np.zeros((num_envs, max(stack, self.k), *frame_shape), np.uint8)
        self._state: Any = None
        self._needs_reset = np.ones(num_envs, bool)
        self._episode_steps = np.zeros(num_envs, np.int64)
        self._frame_number = np.zeros(num_envs, np.int32)
        self._merge_warned = False

    def _check_frames(self, frames: np.ndarray, what: str) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 2 + len(self.frame_shape):
            layout = "[M, c, H, W]" if len(self.frame_shape) == 2 else "[M, c, C, H, W]"
            raise ValueError(f"{what} must be uint8 {layout}, got {frames.dtype} {frames.shape}")
        if frames.shape[1] < self.k:
            raise ValueError(f"{what} hold {frames.shape[1]} frames per window; the model needs {self.k}")
        if tuple(frames.shape[2:]) != self.frame_shape:
            raise ValueError(f"{what} have frames of shape {frames.shape[2:]}; the model predicts "
                             f"{tuple(self.model.frame_shape)}")
        return frames

    def _draw(self, mask: np.ndarray) -> np.ndarray:
        """Start windows for the envs in ``mask``: uint8 ``[mask.sum(), c, H, W]``."""
        if self._fixed is not None:
            return self._fixed[mask]
        return self._check_frames(self._sampler(self._rng, int(mask.sum())), "sampled context")

    def _restart(self, mask: np.ndarray) -> None:
        """Start new episodes in the envs of ``mask``: fresh frames and, spliced into the batch, fresh state."""
        windows = self._draw(mask)
        length = min(windows.shape[1], self._frames.shape[1])
        self._frames[mask] = 0
        self._frames[mask, -length:] = windows[:, -length:]
        self._episode_steps[mask] = 0
        self._needs_reset[mask] = False
        if self._state is None or mask.all():
            self._state = self.model.initial(self._frames[:, -self.k:])
            return
        # model.initial on the whole batch keeps shapes equal for the splice; the other envs' rows are unused.
        # (Their last k frames, with the restarted ones' new windows.)
        fresh = self.model.initial(self._frames[:, -self.k:])
        try:
            self._state = _merge_state(self._state, fresh, mask)
        except _Unmergeable as err:
            if not self._merge_warned:
                log.warning("ImaginedEnv: the model state cannot be split per env (%s); rebuilding every env's "
                            "state from its last %d frames at each restart", err, self.k)
                self._merge_warned = True
            self._state = fresh

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start new episodes in all envs (or in those of ``options["reset_mask"]``); see the class docstring."""
        if seed is None and self._default_seed is not None:
            seed = self._default_seed
        self._default_seed = None
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self._frame_number[:] = 0
        mask = reset_mask(options, self.num_envs)
        if self._state is None:
            mask = np.ones(self.num_envs, bool)  # nothing to keep before the first reset
        if mask.any():
            self._restart(mask)
        zeros = np.zeros(self.num_envs)
        return self._observe(), self._info(zeros, np.zeros(self.num_envs, bool))

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One imagined step of every env (NextStep autoreset); see the module docstring."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions).astype(np.int64)
        num_actions = self.single_action_space.n
        if actions.shape != (self.num_envs,) or actions.min() < 0 or actions.max() >= num_actions:
            raise ValueError(f"actions must be ints in [0, {num_actions}) of shape ({self.num_envs},), got {actions}")
        resetting = self._needs_reset.copy()
        import torch

        with torch.no_grad():  # the model may return tensors that track gradients; imagination never needs them
            state, frame = self.model.step(self._state, actions)
        self._state = state
        frame = np.asarray(frame, dtype=np.uint8)
        reward = np.asarray(state.reward, dtype=np.float32).reshape(self.num_envs)
        terminal = np.asarray(state.terminal, dtype=np.float32).reshape(self.num_envs)
        self._frames = np.concatenate([self._frames[:, 1:], frame[:, None]], axis=1)
        self._episode_steps += 1
        self._frame_number += self.frame_skip
        terminated = terminal > self.terminal_threshold
        truncated = (self._episode_steps >= self.max_episode_steps) & ~terminated
        if resetting.any():
            # NextStep autoreset: the step after an episode ended ignores that env's action (its prediction above
            # is thrown away) and returns the first observation of a new episode.
            self._restart(resetting)
            reward = np.where(resetting, 0.0, reward).astype(np.float32)
            terminated &= ~resetting
            truncated &= ~resetting
        self._needs_reset = terminated | truncated
        return (self._observe(), reward, terminated, truncated,
                self._info(reward, terminated | truncated))

    def _observe(self) -> np.ndarray:
        """A fresh array of the observations, uint8 ``[N, *single_observation_space.shape]``: the last ``stack``
        frames of each env (grid frames' channels concatenated, oldest first)."""
        return self._frames[:, -self.stack:].reshape(self.num_envs, *self.single_observation_space.shape).copy()

    def _info(self, reward: np.ndarray, game_over: np.ndarray) -> dict[str, Any]:
        return {
            "imagined": np.ones(self.num_envs, bool),
            "raw_reward": np.asarray(reward, np.float64).copy(),
            "game_over": game_over.copy(),
            "env_id": np.arange(self.num_envs, dtype=np.int32),
            "lives": np.zeros(self.num_envs, np.int32),
            "episode_frame_number": (self._episode_steps * self.frame_skip).astype(np.int32),
            "frame_number": self._frame_number.copy(),
        }
