"""MinAtar (Young & Tian 2019): five miniature Atari games on a 10 x 10 grid, with the API of our Atari envs.

MinAtar ("MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible Reinforcement Learning
Experiments", Young & Tian 2019) reimplements Asterix, Breakout, Freeway, Seaquest and Space Invaders in
Python. The state is a bool grid ``[10, 10, C]``, one channel per kind of object (player, ball, trail, ...),
C per game: asterix 4, breakout 4, freeway 7, seaquest 10, space_invaders 6.

:class:`MinAtarVector` follows :class:`envs.atari.AtariVector` and :class:`envs.toy.CatchVectorEnv` to the
letter: NextStep autoreset (the step after a game ended ignores that env's action and returns the first
observation of a new game with reward 0, terminated False), ``reset(seed=..., options={"reset_mask": ...})``,
and info ``env_id``, ``lives``, ``frame_number``, ``episode_frame_number``, ``raw_reward`` and ``game_over``.

What differs from Atari:

- observation: uint8 ``[C, 10, 10]`` per env (MinAtar's bool state, channels first, values 0/1 -- *not*
  pixels: networks must not divide them by 255), a single frame: ``stack = 1``, ``frame_shape = (C, 10, 10)``
  (the channels already show motion, e.g. Breakout's trail channel, so MinAtar stacks no frames);
- no frame skip: one game frame per agent step (``frame_skip = 1``, the frame counters count agent steps);
- MinAtar's own protocol, not an Atari preset: sticky actions with probability 0.1, difficulty ramping on,
  all 6 actions (NOOP, LEFT, UP, RIGHT, DOWN, FIRE, as MinAtar's DQN example; ``minimal_action_set`` is not
  used), raw rewards, and the episode ends only at the game's own terminal (``terminated``); there are no
  lives (``lives`` is always 0, ``game_over == terminated``) and no frame cap (``truncated`` is always False;
  Freeway ends itself after 2500 steps).

Seeding: sub-env i is seeded with ``seed + i`` (MinAtar's ``Environment.seed``: one ``RandomState`` for the
game and the sticky actions), so two envs built (or reset) with the same seed play identical games.
MinAtar is imported on first use, so ``import envs`` stays cheap.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.vector import reset_mask

GRID = 10
#: Channels of each game's state (MinAtar 1.0.15, ``Environment.state_shape()[2]``).
CHANNELS: dict[str, int] = {"asterix": 4, "breakout": 4, "freeway": 7, "seaquest": 10, "space_invaders": 6}
#: Environment names :func:`envs.make_env` accepts for MinAtar.
MINATAR_GAMES: tuple[str, ...] = tuple(f"minatar/{g}" for g in CHANNELS)
#: MinAtar's action map ``['n', 'l', 'u', 'r', 'd', 'f']``, the same for every game.
ACTION_MEANINGS = ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")
STICKY_ACTION_PROB = 0.1
#: Settings ``make_env("minatar/...", **overrides)`` accepts (MinAtar's ``Environment`` arguments).
SETTINGS = ("sticky_action_prob", "difficulty_ramping")


def minatar_game(game: str) -> str:
    """MinAtar's name of a game: ``"minatar/breakout"`` or ``"breakout"`` -> ``"breakout"``.

    :raises ValueError: not one of the five games (the message lists them).
    """
    name = game[len("minatar/"):] if game.startswith("minatar/") else game
    if name not in CHANNELS:
        raise ValueError(f"unknown MinAtar game {game!r}; MinAtar games: {list(MINATAR_GAMES)}")
    return name


def _environment(game: str, sticky_action_prob: float, difficulty_ramping: bool) -> Any:
    if not 0.0 <= float(sticky_action_prob) <= 1.0:
        raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob!r}")
    if not isinstance(difficulty_ramping, bool):
        raise ValueError(f"difficulty_ramping must be a bool, got {difficulty_ramping!r}")
    from minatar import Environment  # imports matplotlib and seaborn (~1 s): only when a MinAtar env is built

    return Environment(game, sticky_action_prob=float(sticky_action_prob), difficulty_ramping=difficulty_ramping)


def _seed(env: Any, seed: int) -> None:
    """Seed one MinAtar ``Environment`` as if freshly built (the sticky-action memory too); call reset after."""
    env.seed(int(seed))
    env.last_action = 0


class MinAtarVector(VectorEnv):
    """N MinAtar games with the API and semantics of :class:`envs.atari.AtariVector` (see module docstring).

    - ``reset(seed=int | None, options={"reset_mask": bool [N]} | None) -> (obs uint8 [N, C, 10, 10], info)``;
      a seed re-seeds sub-env i with ``seed + i``. The first ``reset()`` without a seed uses the constructor's
      ``seed`` (as :class:`envs.atari.AtariVector`), later ones go on drawing from the games' generators.
    - ``step(actions int [N] in [0, 6)) -> (obs, reward float32 [N], terminated bool [N], truncated bool [N]
      (always False), info)``; after ``terminated[i]`` the next step ignores ``actions[i]`` and returns env
      i's first observation of a new game with reward 0. Every call returns a new obs array.

    :param game: ``"breakout"`` or ``"minatar/breakout"`` (any of the five games).
    :param num_envs: N.
    :param seed: sub-env i is seeded with ``seed + i`` (at construction and by the first ``reset()``).
    :param sticky_action_prob: MinAtar's sticky actions (0.1, MinAtar's default).
    :param difficulty_ramping: MinAtar's difficulty ramping (on, MinAtar's default).
    """

    stack = 1
    frame_skip = 1
    single_observation_space: gym.spaces.Box
    single_action_space: gym.spaces.Discrete

    def __init__(
        self,
        game: str,
        num_envs: int = 8,
        seed: int = 0,
        *,
        sticky_action_prob: float = STICKY_ACTION_PROB,
        difficulty_ramping: bool = True,
    ) -> None:
        name = minatar_game(game)
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = num_envs
        self.game = f"minatar/{name}"
        self.sticky_action_prob = float(sticky_action_prob)
        self.difficulty_ramping = difficulty_ramping
        self._envs = [_environment(name, sticky_action_prob, difficulty_ramping) for _ in range(num_envs)]
        channels = int(self._envs[0].state_shape()[2])
        self.frame_shape = (channels, GRID, GRID)
        self._num_actions = int(self._envs[0].num_actions())
        self.single_observation_space = gym.spaces.Box(0, 1, self.frame_shape, np.uint8)
        self.single_action_space = gym.spaces.Discrete(self._num_actions)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
        self._default_seed: int | None = seed
        for i, env in enumerate(self._envs):
            _seed(env, seed + i)
            env.reset()
        # MinAtar's states, gathered channels-last, then transposed into each step's new obs array.
        self._states = np.zeros((num_envs, GRID, GRID, channels), dtype=bool)
        self._obs = np.zeros((num_envs, *self.frame_shape), dtype=np.uint8)
        self._needs_reset = [False] * num_envs
        self._frame_number = np.zeros(num_envs, dtype=np.int32)
        self._episode_frame = np.zeros(num_envs, dtype=np.int32)
        self._env_id = np.arange(num_envs, dtype=np.int32)
        self._lives = np.zeros(num_envs, dtype=np.int32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start new games in all envs (or in those of ``options["reset_mask"]``); see the class docstring."""
        if seed is None and self._default_seed is not None:
            seed = self._default_seed
        self._default_seed = None
        mask = reset_mask(options, self.num_envs)
        for i in np.flatnonzero(mask).tolist():
            env = self._envs[i]
            if seed is not None:
                _seed(env, int(seed) + i)
            env.reset()
            self._states[i] = env.state()
            self._needs_reset[i] = False
        self._episode_frame[mask] = 0
        if seed is not None:  # like ale-py, a seeded reset restarts the frame counter
            self._frame_number[mask] = 0
        # Envs outside the mask keep (and report) their current observation, as in ale-py.
        obs = self._obs.copy()
        obs[mask] = self._states[mask].transpose(0, 3, 1, 2)
        self._obs = obs
        zeros = np.zeros(self.num_envs)
        return obs, self._info(zeros, np.zeros(self.num_envs, dtype=bool))

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every env; see the class docstring."""
        a = np.asarray(actions)
        acts = a.tolist() if a.shape == (self.num_envs,) and a.dtype.kind in "iu" else None
        if acts is None or min(acts) < 0 or max(acts) >= self._num_actions:
            raise ValueError(
                f"actions must be ints in [0, {self._num_actions}) of shape ({self.num_envs},), got {a}"
            )
        reward = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        needs_reset = self._needs_reset
        states = self._states
        fresh = []
        for i, env in enumerate(self._envs):
            if needs_reset[i]:
                env.reset()
                needs_reset[i] = False
                fresh.append(i)
            else:
                r, done = env.act(acts[i])
                reward[i] = r
                if done:
                    terminated[i] = needs_reset[i] = True
            states[i] = env.state()
        obs = np.ascontiguousarray(states.view(np.uint8).transpose(0, 3, 1, 2))  # a new array every step
        self._obs = obs
        self._episode_frame += 1
        if fresh:
            self._episode_frame[fresh] = 0
        self._frame_number += 1
        info = self._info(reward, terminated)
        return obs, reward.astype(np.float32), terminated, np.zeros(self.num_envs, dtype=bool), info

    def _info(self, raw_reward: np.ndarray, game_over: np.ndarray) -> dict[str, Any]:
        return {
            "env_id": self._env_id.copy(),
            "lives": self._lives.copy(),
            "frame_number": self._frame_number.copy(),
            "episode_frame_number": self._episode_frame.copy(),
            "raw_reward": raw_reward,
            "game_over": game_over.copy(),
        }


class MinAtarEnv(gym.Env):
    """One MinAtar game as a Gymnasium env: obs uint8 [C, 10, 10] (0/1), actions Discrete(6), raw rewards.

    info has ``lives`` (0), ``frame_number``, ``episode_frame_number``, ``raw_reward`` and ``game_over``
    (= terminated). ``reset(seed=s)`` seeds MinAtar with ``s``; the first reset without a seed uses the
    constructor's ``seed``. Settings as :class:`MinAtarVector`.
    """

    metadata = {"render_modes": []}
    stack = 1
    frame_skip = 1
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Discrete

    def __init__(
        self,
        game: str,
        seed: int = 0,
        *,
        sticky_action_prob: float = STICKY_ACTION_PROB,
        difficulty_ramping: bool = True,
    ) -> None:
        name = minatar_game(game)
        self.game = f"minatar/{name}"
        self._env = _environment(name, sticky_action_prob, difficulty_ramping)
        self.frame_shape = (int(self._env.state_shape()[2]), GRID, GRID)
        self.observation_space = gym.spaces.Box(0, 1, self.frame_shape, np.uint8)
        self.action_space = gym.spaces.Discrete(int(self._env.num_actions()))
        self._default_seed: int | None = seed
        self._done = True
        self._frame_number = 0
        self._episode_frame = 0

    @property
    def channel_names(self) -> list[str]:
        """What each observation channel shows, in channel order (MinAtar's names: ``paddle``, ``ball``, ...)."""
        channels: dict[str, int] = self._env.env.channels
        return sorted(channels, key=channels.__getitem__)

    def _observe(self) -> np.ndarray:
        return np.ascontiguousarray(self._env.state().transpose(2, 0, 1), dtype=np.uint8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new game; the first reset without a seed uses the constructor's ``seed``."""
        if seed is None and self._default_seed is not None:
            seed = self._default_seed
        self._default_seed = None
        super().reset(seed=seed)
        if seed is not None:  # like ale-py, a seeded reset restarts the frame counter
            _seed(self._env, seed)
            self._frame_number = 0
        self._env.reset()
        self._done = False
        self._episode_frame = 0
        return self._observe(), self._info(0.0)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("MinAtarEnv.step() called after the episode ended; call reset() first")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.action_space.n}), got {action!r}")
        reward, done = self._env.act(int(action))
        self._done = bool(done)
        self._frame_number += 1
        self._episode_frame += 1
        return self._observe(), float(reward), self._done, False, self._info(float(reward))

    def _info(self, raw_reward: float) -> dict[str, Any]:
        return {
            "lives": 0,
            "frame_number": self._frame_number,
            "episode_frame_number": self._episode_frame,
            "raw_reward": raw_reward,
            "game_over": self._done,
        }
