"""Fake actor parts for runtime tests (importable by Ray workers, unlike a test module)."""

from __future__ import annotations

from typing import Any

import numpy as np

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


def sleepy_parts(cfg: Any, actor_id: int) -> tuple[Any, SleepyPolicy, CountAdder]:
    """Actor 0 sleeps ``SLOW_SECONDS`` per step, every other actor not at all."""
    from envs import make_env

    return make_env("toy/catch", num_envs=2, seed=actor_id), SleepyPolicy(SLOW_SECONDS if actor_id == 0 else 0.0), \
        CountAdder()


