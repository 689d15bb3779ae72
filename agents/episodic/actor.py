"""MFEC's acting half (Blundell et al. 2016, Algorithm 1): embed the newest frame, estimate every action's return
from the episodic memory, act epsilon-greedily; record (key, action, reward) until the episode ends, then hand the
whole episode to the learner, which writes its returns into the memory.

Where the memory lives (the design notes' choice, by measurement; README's MFEC section has the figures):

- local mode: the actor's policy queries the learner's own memory object (publications hand it the object), so
  every episode the learner writes is seen at the next step, at no cost;
- Ray mode: each actor keeps a replica, rebuilt from the memory's state at each publication
  (``runtime.publish_every_updates`` learner updates). Queries then cost no round trip; the price is a replica that
  lags the learner's memory by up to that many updates. Eviction by update keeps queries read-only, so a replica
  equals the learner's memory as of its publication.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.episodic.config import MFECConfig
from agents.episodic.memory import EpisodicMemory
from agents.episodic.networks import make_key_network, make_memory
from agents.runtime.algorithm import ActorParts
from agents.runtime.config import actor_seed, env_trackers, make_actor_env
from envs import newest_frames


class MFECPolicy:
    """Epsilon-greedy over the memory's estimates of the newest frame's key; ties (every action untried, or equal
    estimates) are broken at random.

    :param representation: ``embed(uint8 [N, *frame_shape]) -> float32 [N, D]``.
    :param memory: the memory to query (None until the first publication: then every action is untried).
    :param stack: frames per observation. :param frame_shape: one frame's shape.
    :param epsilon: probability of a uniformly random action.
    """

    def __init__(self, representation: Any, memory: EpisodicMemory | None, num_actions: int, stack: int,
                 frame_shape: tuple[int, ...], epsilon: float, seed: int,
                 replica: EpisodicMemory | None = None) -> None:
        self.representation = representation
        self.memory = memory
        self.num_actions = num_actions
        self.stack, self.frame_shape = stack, tuple(frame_shape)
        self.epsilon = float(epsilon)
        self.rng = np.random.default_rng(seed)
        self._replica = replica
        self._steps = 0
        self._exact = 0

    def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:param obs: uint8 ``[N, *obs_shape]``. :return: actions int64 ``[N]`` and ``{"keys": float32 [N, D]}``
        (the keys the adder records)."""
        keys = self.representation.embed(newest_frames(obs, self.stack, self.frame_shape))
        n = len(keys)
        if self.memory is None:
            values = np.full((n, self.num_actions), np.inf, dtype=np.float32)
            exact = np.zeros((n, self.num_actions), dtype=bool)
        else:
            values, exact = self.memory.estimate(keys)
        best = values.max(axis=1, keepdims=True)
        # A random pick among the maxima: uniform noise where the estimate is the row's maximum, -1 elsewhere.
        greedy = np.where(values == best, self.rng.random(values.shape), -1.0).argmax(axis=1)
        explore = self.rng.random(n) < self.epsilon
        actions = np.where(explore, self.rng.integers(0, self.num_actions, n), greedy).astype(np.int64)
        self._steps += n
        self._exact += int(exact[np.arange(n), actions].sum())
        return actions, {"keys": keys}

    def set_weights(self, weights: Any) -> None:
        """The learner's memory itself (local mode) or its ``state_dict`` (Ray mode: loaded into this actor's
        replica)."""
        if isinstance(weights, EpisodicMemory):
            self.memory = weights
            return
        if self._replica is None:
            raise ValueError("this policy has no replica to load a memory state into: build it with replica=")
        self._replica.load_state_dict(weights)
        self.memory = self._replica

    def log_scalars(self, frames: int) -> dict[str, float]:
        """``episodic/exact_match_rate``: the share of steps since the last call whose taken action's estimate was
        an exact match (the state seen before with that action); and the epsilon."""
        rate = self._exact / self._steps if self._steps else 0.0
        self._steps = self._exact = 0
        return {"episodic/exact_match_rate": rate, "epsilon": self.epsilon}


class EpisodeAdder:
    """Keeps each env's episode so far as (key, action, reward) rows and hands over the finished ones.

    An episode ends where the env says ``terminated`` or ``truncated`` (under the Nature preset a life loss ends
    one; the game goes on). The step after a game ends is the env's reset step, not an agent step: it is skipped.
    """

    def __init__(self, num_envs: int, clip_rewards: bool) -> None:
        self.clip_rewards = clip_rewards
        self._keys: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        self._actions: list[list[int]] = [[] for _ in range(num_envs)]
        self._rewards: list[list[float]] = [[] for _ in range(num_envs)]
        self._resetting = np.zeros(num_envs, dtype=bool)
        self._done: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def reset(self, obs: np.ndarray) -> None:
        for i in range(len(self._keys)):
            self._keys[i], self._actions[i], self._rewards[i] = [], [], []
        self._resetting[:] = False

    def add(self, actions: np.ndarray, extras: dict[str, np.ndarray], rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, next_obs: np.ndarray, info: dict[str, Any]) -> None:
        raw = rewards if self.clip_rewards else info.get("raw_reward", rewards)
        ended = np.asarray(terminated) | np.asarray(truncated)
        for i in np.flatnonzero(~self._resetting):
            self._keys[i].append(extras["keys"][i])
            self._actions[i].append(int(actions[i]))
            self._rewards[i].append(float(raw[i]))
            if ended[i]:
                self._done.append((np.stack(self._keys[i]), np.asarray(self._actions[i], dtype=np.int64),
                                   np.asarray(self._rewards[i], dtype=np.float32)))
                self._keys[i], self._actions[i], self._rewards[i] = [], [], []
        self._resetting = np.asarray(info.get("game_over", ended)) & ~self._resetting

    def flush(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The episodes finished since the last flush: (keys float32 [T, D], actions int64 [T], rewards float32
        [T]) each."""
        done, self._done = self._done, []
        return done


def make_mfec_parts(cfg: MFECConfig, actor_id: int) -> ActorParts:
    """The vector env, policy, adder and env family's trackers (:func:`agents.runtime.config.env_trackers`) of
    actor ``actor_id``, built in its own process. Its memory arrives with the first publication (a replica in Ray
    mode, the learner's own in local mode)."""
    seed = actor_seed(cfg.run, actor_id)
    env = make_actor_env(cfg.env, seed)
    frame_shape = tuple(int(d) for d in env.frame_shape)
    num_actions = int(env.single_action_space.n)
    replica = make_memory(cfg, num_actions) if cfg.runtime.num_actors > 0 else None
    policy = MFECPolicy(make_key_network(cfg, frame_shape), None, num_actions, int(env.stack), frame_shape,
                        cfg.episodic.epsilon, seed, replica=replica)
    return ActorParts(env, policy, EpisodeAdder(env.num_envs, cfg.episodic.clip_rewards), env_trackers(cfg.env))
