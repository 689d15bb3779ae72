"""MFEC's acting and learning parts on hand-made steps (Blundell et al. 2016, Algorithm 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.episodic.actor import EpisodeAdder, MFECPolicy
from agents.episodic.config import MFECConfig, validate
from agents.episodic.learning import MFECLearner
from agents.episodic.memory import EpisodicMemory
from agents.runtime.actor import ActorOutput
from agents.runtime.algorithm import Counters, EnvSpec
from launch.config import load_config


class Flatten:
    """A representation whose key is the frame itself (as float32): exact matches are easy to make by hand."""

    dim = 4

    def embed(self, frames: np.ndarray) -> np.ndarray:
        return frames.reshape(len(frames), -1).astype(np.float32)


def _step(adder: EpisodeAdder, keys: list[list[float]], actions: list[int], rewards: list[float],
          terminated: list[bool], game_over: list[bool], raw: list[float] | None = None) -> None:
    n = len(actions)
    info = {"game_over": np.array(game_over), "raw_reward": np.array(raw if raw is not None else rewards)}
    adder.add(np.array(actions), {"keys": np.array(keys, dtype=np.float32)}, np.array(rewards, dtype=np.float32),
              np.array(terminated), np.zeros(n, bool), np.zeros((n, 4), np.uint8), info)


def test_the_adder_hands_over_whole_episodes_and_skips_reset_steps() -> None:
    adder = EpisodeAdder(2, clip_rewards=False)
    adder.reset(np.zeros((2, 4), np.uint8))
    _step(adder, [[0] * 4, [1] * 4], [0, 1], [1.0, 0.0], [False, False], [False, False], raw=[5.0, 0.0])
    _step(adder, [[2] * 4, [3] * 4], [2, 1], [0.0, 1.0], [True, False], [True, False], raw=[0.0, 3.0])
    (keys, actions, rewards), = adder.flush()  # env 0's game ended: its two steps, raw rewards
    assert keys[:, 0].tolist() == [0, 2] and actions.tolist() == [0, 2] and rewards.tolist() == [5.0, 0.0]
    # Env 0 now resets (its action ignored, not an agent step); env 1 loses a life (terminal, game goes on).
    _step(adder, [[9] * 4, [4] * 4], [3, 0], [0.0, 0.0], [False, True], [False, False], raw=[0.0, 2.0])
    (keys, actions, rewards), = adder.flush()
    assert keys[:, 0].tolist() == [1, 3, 4] and actions.tolist() == [1, 1, 0] and rewards.tolist() == [0, 3, 2]
    _step(adder, [[5] * 4, [6] * 4], [1, 1], [0.0, 0.0], [True, True], [True, True])
    done = adder.flush()
    assert [k[:, 0].tolist() for k, _, _ in done] == [[5], [6]]  # env 0's new game had only this step
    clipped = EpisodeAdder(1, clip_rewards=True)
    _step(clipped, [[0] * 4], [0], [1.0], [True], [True], raw=[40.0])
    assert clipped.flush()[0][2].tolist() == [1.0]


def test_the_policy_is_greedy_on_the_memory_with_random_ties() -> None:
    memory = EpisodicMemory(3, 4, capacity=10, k=1)
    frame = np.full((1, 1, 2, 2), 7, np.uint8)  # [N, S, H, W] with one frame of 2x2
    policy = MFECPolicy(Flatten(), memory, 3, 1, (2, 2), epsilon=0.0, seed=0)
    first = {int(policy.act(frame, 0)[0][0]) for _ in range(60)}
    assert first == {0, 1, 2}  # every action untried (+inf): a random one of the three
    memory.update(np.full((3, 4), 7, np.float32), np.array([0, 1, 2]), np.array([1.0, 5.0, 2.0]))
    actions, extras = policy.act(frame, 0)
    assert actions.tolist() == [1] and extras["keys"].tolist() == [[7, 7, 7, 7]]
    assert policy.log_scalars(0)["episodic/exact_match_rate"] == pytest.approx(1 / 61)  # only the last step
    explore = MFECPolicy(Flatten(), memory, 3, 1, (2, 2), epsilon=1.0, seed=0)
    assert len({int(explore.act(frame, 0)[0][0]) for _ in range(60)}) == 3


def test_the_learner_writes_returns_and_replicas_match_it() -> None:
    cfg = load_config(MFECConfig, ["mfec_minatar"], ["representation.dim=4", "episodic.capacity=16",
                                                     "episodic.k=1", "runtime.num_actors=2"])
    learner = MFECLearner(EnvSpec((1, 2, 2), 3, 1, 1, (2, 2)), cfg)
    keys = np.arange(12, dtype=np.float32).reshape(3, 4)
    episode = (keys, np.array([0, 0, 2]), np.array([1.0, 0.0, 2.0], np.float32))
    learner.ingest(ActorOutput(0, [episode], 3))
    assert learner.updates_due(Counters()) == 1
    stats = learner.update(Counters())
    assert stats["episodes_written"] == 1 and stats["episode_return"] == 3.0 and learner.updates_due(Counters()) == 0
    values, exact = learner.memory.estimate(keys)
    # gamma = 1: returns 3, 2, 2 from each step to the end; action 1 never taken (+inf: untried).
    assert values[:, 0].tolist()[:2] == [3.0, 2.0] and values[2, 2] == 2.0 and math.isinf(values[0, 1])
    assert exact[0, 0] and exact[2, 2] and not exact[2, 0]
    weights = learner.get_weights()  # Ray mode: the state, loaded into an actor's replica
    assert isinstance(weights, dict)
    replica = EpisodicMemory(3, 4, capacity=16, k=1)
    policy = MFECPolicy(Flatten(), None, 3, 1, (2, 2), epsilon=0.0, seed=0, replica=replica)
    policy.set_weights(weights)
    assert policy.memory is replica and np.array_equal(replica.estimate(keys).values, values)
    with pytest.raises(ValueError, match="does not fit"):
        MFECLearner(EnvSpec((1, 2, 2), 4, 1, 1, (2, 2)), cfg).load_state_dict(learner.state_dict())


def test_validate_names_the_bad_setting() -> None:
    with pytest.raises(ValueError, match="needs representation.path"):
        validate(load_config(MFECConfig, ["mfec_atari"], ["representation.kind=gaussian_vae"]))
    with pytest.raises(ValueError, match="episodic.epsilon=2.0"):
        validate(load_config(MFECConfig, ["mfec_atari"], ["episodic.epsilon=2.0"]))
    with pytest.raises(ValueError, match="episodic.k"):
        validate(load_config(MFECConfig, ["mfec_minatar"], ["episodic.k=0"]))
