"""What the runtime hands an algorithm: episode-start masks, weights versions, actor state, the learner device."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from agents.runtime.actor import EnvActor
from agents.runtime.algorithm import ActorParts
from agents.runtime.local import LocalRuntime
from envs import make_env


class StartRecorder:
    """Records the ``starts`` mask the actor passes at every step."""

    def __init__(self) -> None:
        self.starts: list[np.ndarray] = []
        self.weights: Any = None

    def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        assert starts is not None
        self.starts.append(starts.copy())
        return np.ones(len(obs), np.int64), {}

    def set_weights(self, weights: Any) -> None:
        self.weights = weights


class NullAdder:
    def __init__(self) -> None:
        self.state = {"seen": 0}

    def reset(self, obs: np.ndarray) -> None:
        pass

    def add(self, *args: Any) -> None:
        self.state["seen"] += 1

    def flush(self) -> None:
        return None

    def state_dict(self) -> dict[str, int]:
        return dict(self.state)

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.state = dict(state)


def catch_parts(cfg: Any, actor_id: int) -> ActorParts:
    return ActorParts(make_env("toy/catch", num_envs=2, seed=actor_id), StartRecorder(), NullAdder())


def test_policy_sees_episode_starts_exactly_where_games_begin() -> None:
    # Catch games last 30 agent steps; the step after a game over only resets (NextStep autoreset), and the
    # observation it returns is the first of the next game: starts at steps 0, 31 and 62 of the actor's life.
    actor = EnvActor(0, catch_parts, None, seed=0)
    actor.run(70, frames=0)
    starts = np.array(actor.policy.starts)
    assert starts.shape == (70, 2)
    assert np.flatnonzero(starts[:, 0]).tolist() == [0, 31, 62]
    np.testing.assert_array_equal(starts[:, 0], starts[:, 1])


def test_chunks_carry_the_weights_version_they_were_collected_with() -> None:
    runtime = LocalRuntime(catch_parts, None, seed=0, chunk_steps=4)
    assert runtime.poll(0, 10**6, block=True)[0].weights_version == -1  # nothing published yet
    runtime.publish({"w": 1}, version=7)
    out = runtime.poll(0, 10**6, block=True)[0]
    assert out.weights_version == 7 and runtime.actor.policy.weights == {"w": 1}
    assert runtime.poll(0, 10**6, block=True)[0].weights_version == 7  # kept until the next publication


def test_actor_state_round_trips_through_the_runtime() -> None:
    runtime = LocalRuntime(catch_parts, None, seed=0, chunk_steps=5)
    runtime.poll(0, 10**6, block=True)
    states = runtime.actor_states()
    assert states == [{"adder": {"seen": 5}}]
    fresh = LocalRuntime(catch_parts, None, seed=0, chunk_steps=5)
    fresh.set_actor_states(states)
    fresh.poll(0, 10**6, block=True)
    assert fresh.actor_states() == [{"adder": {"seen": 10}}]


def test_learner_device_cuda_without_a_gpu_is_a_clear_error() -> None:
    from worldmodels.common.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=r"runtime\.device=cuda.*runtime\.device=auto"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"run\.device=cuda"):
        resolve_device("cuda", key="run.device")
