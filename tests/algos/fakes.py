"""Fakes shared by tests: actor parts for runtime tests (importable by Ray workers, unlike a test module) and a
synthetic trajectory dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.runtime.algorithm import ActorParts

SLOW_SECONDS = 1.5


class SleepyPolicy:
    """Acts on Catch (always "stay"), sleeping ``delay`` seconds at every step."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        import time

        time.sleep(self.delay)
        return np.ones(len(obs), np.int64), {}

    def set_weights(self, weights: Any) -> None:
        pass


class CountAdder:
    """Counts vector steps; the payload is the count since the last flush."""

    def reset(self, obs: np.ndarray) -> None:
        self.n = 0

    def add(self, actions: np.ndarray, extras: dict[str, np.ndarray], rewards: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, next_obs: np.ndarray, info: dict[str, Any]) -> None:
        self.n += 1

    def flush(self) -> int:
        n, self.n = self.n, 0
        return n


def sleepy_parts(cfg: Any, actor_id: int) -> ActorParts:
    """Actor 0 sleeps ``SLOW_SECONDS`` per step, every other actor not at all."""
    from envs import make_env

    return ActorParts(make_env("toy/catch", num_envs=2, seed=actor_id),
                      SleepyPolicy(SLOW_SECONDS if actor_id == 0 else 0.0), CountAdder())




def moving_dot_dataset(root: Path, episodes: int = 6, length: int = 40, heldout_fraction: float = 0.2,
                       shard_frames: int = 100) -> Path:
    """A trajectory dataset of 84x84 frames in which a 4x4 dot moves left (action 0), stays (1) or moves right (2)
    by 4 pixels per step, walls at the edges; ``root`` is returned."""
    from worldmodels.data import DatasetWriter

    rng = np.random.default_rng(0)
    w = DatasetWriter(root, {"game": "dot"}, heldout_fraction=heldout_fraction, shard_frames=shard_frames)
    for _ in range(episodes):
        x = int(rng.integers(10, 74))
        f = np.zeros((length, 84, 84), np.uint8)
        acts = rng.integers(0, 3, length).astype(np.int64)
        for t in range(length):
            f[t, 40:44, x:x + 4] = 255
            x = int(np.clip(x + 4 * (acts[t] - 1), 0, 80))
        acts[-1] = -1
        w.add_episode(f, acts, np.zeros(length, np.float32), terminal=True)
    w.close(num_actions=3, frame_skip=1, emulator_frames=episodes * length, wall_seconds=0.0)
    return root


def sprite_dataset(root: Path, episodes: int = 4, length: int = 40) -> Path:
    """A trajectory dataset of bright squares moving over a dark background, 84x84 luminance frames, a quarter of
    them held out (shards of 80 frames); ``root`` is returned."""
    rng = np.random.default_rng(0)
    from worldmodels.data import DatasetWriter

    w = DatasetWriter(root, {"game": "sprites"}, heldout_fraction=0.25, shard_frames=80)
    for _ in range(episodes):
        f = np.full((length, 84, 84), 20, np.uint8)
        for t in range(length):
            y, x = rng.integers(0, 76, 2)
            f[t, y:y + 8, x:x + 8] = 200
        acts = rng.integers(0, 3, length).astype(np.int64)
        acts[-1] = -1
        w.add_episode(f, acts, np.zeros(length, np.float32), terminal=True)
    w.close(num_actions=3, frame_skip=1, emulator_frames=episodes * length, wall_seconds=0.0)
    return root
