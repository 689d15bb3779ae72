"""Real episodes of a grid env played for scoring or drawing a world model, and the open-loop windows cut from them.

:func:`play_episodes` plays whole games in one Gymnasium-style env (MinAtar's :class:`envs.MinAtarEnv`: ``reset`` and
``step`` of one game; this package never imports ``envs``, so the env is passed in) under any
:data:`worldmodels.grid.rollout.Policy`. :func:`window` and :func:`sample_windows` cut them into what
:func:`worldmodels.grid.metrics.rollout_metrics` scores: the real frames before a start (the model's context), the
actions after it, and the real frames, rewards and game overs those actions led to, with a mask for the steps after
the real game ended (a window near the end of a game is shorter than the horizon, so the game overs are scored too).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from worldmodels.grid.rollout import Policy

__all__ = ["Episode", "Windows", "play_episodes", "sample_windows", "window"]


@dataclass
class Episode:
    """One real game (or its first ``max_steps`` steps).

    :ivar frames: uint8 ``[L + 1, C, H, W]`` (0/1): the first observation, then the one after each action.
    :ivar actions: int64 ``[L]``: ``actions[t]`` leads from ``frames[t]`` to ``frames[t + 1]``.
    :ivar rewards: float32 ``[L]``: the game's reward of each action (game points).
    :ivar terminated: the last action ended the game (False: cut at ``max_steps``).
    """

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def terminals(self) -> np.ndarray:
        """bool ``[L]``: this action ended the game (only the last, and only if ``terminated``)."""
        out = np.zeros(len(self), bool)
        if self.terminated and len(self):
            out[-1] = True
        return out


def play_episodes(env: Any, policy: Policy, episodes: int, seed: int, max_steps: int = 10_000) -> list[Episode]:
    """Play ``episodes`` games, one after another.

    :param env: one game (``reset(seed=...) -> (obs uint8 [C, H, W], info)``, ``step(int) -> (obs, reward,
        terminated, truncated, info)``), e.g. ``envs.make_env("minatar/breakout", num_envs=None)``.
    :param policy: observations uint8 ``[1, C, H, W]`` -> actions int ``[1]``.
    :param episodes: games to play (>= 1).
    :param seed: game ``i`` starts from ``env.reset(seed=seed + i)``.
    :param max_steps: a game is cut after this many actions (MinAtar games have no time limit).
    :return: the games, in order.
    """
    if episodes < 1 or max_steps < 1:
        raise ValueError(f"episodes={episodes} and max_steps={max_steps} must be positive.")
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        frames = [np.asarray(obs, np.uint8)]
        actions: list[int] = []
        rewards: list[float] = []
        terminated = False
        while len(actions) < max_steps:
            action = int(np.asarray(policy(frames[-1][None])).reshape(-1)[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            frames.append(np.asarray(obs, np.uint8))
            actions.append(action)
            rewards.append(float(reward))
            if terminated or truncated:
                break
        out.append(Episode(np.stack(frames), np.asarray(actions, np.int64), np.asarray(rewards, np.float32),
                           bool(terminated)))
    return out


@dataclass
class Windows:
    """Open-loop windows of real episodes, batch first (``B`` windows, horizon ``K``).

    :ivar history: uint8 ``[B, context, C, H, W]``: the real frames up to the start, newest last (zeros before a
        game's first frame).
    :ivar actions: int64 ``[B, K]``: the real actions from the start (0 after the game ended).
    :ivar next_frames: uint8 ``[B, K, C, H, W]``: the real frame after each action (the last real frame repeated
        after the game ended).
    :ivar rewards: float32 ``[B, K]``. :ivar terminals: bool ``[B, K]``: this action ended the game.
    :ivar valid: bool ``[B, K]``: the step happened (False after the game ended or was cut).
    :ivar episode: int64 ``[B]``: index of each window's episode. :ivar start: int64 ``[B]``: its start frame.
    """

    history: np.ndarray
    actions: np.ndarray
    next_frames: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    valid: np.ndarray
    episode: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)

    def take(self, idx: np.ndarray | list[int]) -> Windows:
        """The windows at ``idx``."""
        i = np.asarray(idx, np.int64)
        return Windows(**{f.name: getattr(self, f.name)[i] for f in fields(self)})


def window(episode: Episode, start: int, horizon: int, context: int = 1) -> dict[str, np.ndarray]:
    """One window of ``episode`` from frame ``start`` (``0 <= start < len(episode)``): the fields of
    :class:`Windows` without the batch axis (and without ``episode`` / ``start``)."""
    n = len(episode)
    if not 0 <= start < n:
        raise ValueError(f"start={start} must lie in [0, {n}): a window needs at least one real step after it.")
    frames = episode.frames
    shape = frames.shape[1:]
    history = np.zeros((context, *shape), np.uint8)
    first = max(0, start - context + 1)
    history[context - (start + 1 - first):] = frames[first: start + 1]
    steps = min(horizon, n - start)
    actions = np.zeros(horizon, np.int64)
    rewards = np.zeros(horizon, np.float32)
    terminals = np.zeros(horizon, bool)
    valid = np.zeros(horizon, bool)
    next_frames = np.repeat(frames[start + steps][None], horizon, axis=0)
    actions[:steps] = episode.actions[start: start + steps]
    rewards[:steps] = episode.rewards[start: start + steps]
    terminals[:steps] = episode.terminals[start: start + steps]
    valid[:steps] = True
    next_frames[:steps] = frames[start + 1: start + 1 + steps]
    return {"history": history, "actions": actions, "next_frames": next_frames, "rewards": rewards,
            "terminals": terminals, "valid": valid}


def sample_windows(episodes: list[Episode], horizon: int, starts_per_episode: int, rng: np.random.Generator,
                   context: int = 1) -> Windows:
    """``starts_per_episode`` windows of each episode (fewer from a game with fewer steps), their starts drawn
    uniformly without replacement from every frame that has a step after it, sorted.

    :raises ValueError: ``horizon`` or ``starts_per_episode`` below 1, or no episode with a step.
    """
    if horizon < 1 or starts_per_episode < 1:
        raise ValueError(f"horizon={horizon} and starts_per_episode={starts_per_episode} must be positive.")
    rows, which, starts = [], [], []
    for i, ep in enumerate(episodes):
        if len(ep) == 0:
            continue
        for s in np.sort(rng.choice(len(ep), size=min(starts_per_episode, len(ep)), replace=False)):
            rows.append(window(ep, int(s), horizon, context))
            which.append(i)
            starts.append(int(s))
    if not rows:
        raise ValueError("no held-out episode has a step to imagine from.")
    stacked = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    return Windows(**stacked, episode=np.asarray(which, np.int64), start=np.asarray(starts, np.int64))
