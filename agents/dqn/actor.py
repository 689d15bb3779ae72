"""DQN's acting side: an epsilon-greedy policy batched over the vector env, and the n-step adder.

The policy evaluates Q(s, .) for all N envs in one forward pass (one torch thread per actor process); the
Q-values travel to the adder so that priorities are computed on the actor, as in Ape-X (Horgan et al. 2018,
Sec. 3), without a second network evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.dqn.config import ExplorationConfig, TrainConfig
from agents.dqn.networks import QNetwork
from agents.runtime.nstep import NStepBuilder
from envs import make_env


def linear_epsilon(frames: int, exploration: ExplorationConfig, learning_starts_frames: int = 0) -> float:
    """Dopamine's schedule: eps_start until learning starts, then linear to eps_end over eps_decay_frames."""
    progress = (frames - learning_starts_frames) / max(1, exploration.eps_decay_frames)
    progress = min(max(progress, 0.0), 1.0)
    return exploration.eps_start + progress * (exploration.eps_end - exploration.eps_start)


def apex_epsilon(actor_id: int, num_actors: int, exploration: ExplorationConfig) -> float:
    """Ape-X (Horgan et al. 2018, Sec. 4.1): eps_i = eps_base ** (1 + alpha * i / (N - 1))."""
    if num_actors <= 1:
        return exploration.eps_base
    return exploration.eps_base ** (1.0 + exploration.apex_alpha * actor_id / (num_actors - 1))


class EpsilonGreedyPolicy:
    """Acts epsilon-greedily on a local copy of the online Q-network.

    :param network: the Q-network (weights replaced by :meth:`set_weights`).
    :param cfg: full training config (for the epsilon schedule).
    :param actor_id: index of this actor.
    :param seed: seeds the exploration RNG.
    :param fixed_epsilon: if set, overrides the schedule (evaluation).
    """

    def __init__(self, network: QNetwork, cfg: TrainConfig, actor_id: int, seed: int,
                 fixed_epsilon: float | None = None) -> None:
        self.network = network.eval().requires_grad_(False)
        self.cfg = cfg
        self.actor_id = actor_id
        self.rng = np.random.default_rng(seed)
        self.fixed_epsilon = fixed_epsilon
        self.num_actions = network.num_actions

    def epsilon(self, frames: int) -> float:
        if self.fixed_epsilon is not None:
            return self.fixed_epsilon
        if self.cfg.exploration.schedule == "apex":
            return apex_epsilon(self.actor_id, max(1, self.cfg.runtime.num_actors), self.cfg.exploration)
        return linear_epsilon(frames, self.cfg.exploration, self.cfg.agent.learning_starts_frames)

    def act(self, obs: np.ndarray, frames: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:param obs: uint8 ``[N, 4, 84, 84]``. :return: actions int64 ``[N]``, ``{"q": float32 [N, A]}``."""
        with torch.inference_mode():
            q = self.network(torch.from_numpy(obs)).numpy()
        actions = q.argmax(axis=1)
        explore = self.rng.random(len(actions)) < self.epsilon(frames)
        actions = np.where(explore, self.rng.integers(0, self.num_actions, len(actions)), actions)
        return actions.astype(np.int64), {"q": q}

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.network.load_state_dict(weights)

    def log_scalars(self, frames: int) -> dict[str, float]:
        return {"epsilon": self.epsilon(frames)}


class NStepAdder:
    """Clips rewards (if configured) and feeds :class:`agents.runtime.nstep.NStepBuilder` with the newest
    frame of each observation, so replay receives each frame once."""

    def __init__(self, builder: NStepBuilder, clip_rewards: bool) -> None:
        self.builder = builder
        self.clip_rewards = clip_rewards

    def reset(self, obs: np.ndarray) -> None:
        self.builder.reset(obs[:, -1])

    def add(self, actions: np.ndarray, extras: dict[str, np.ndarray], rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, next_obs: np.ndarray, info: dict[str, Any]) -> None:
        rewards = np.asarray(rewards, dtype=np.float32)
        if self.clip_rewards:
            rewards = np.clip(rewards, -1.0, 1.0)
        self.builder.step(actions, extras.get("q"), rewards, terminated, truncated, next_obs[:, -1],
                          game_over=info.get("game_over"))

    def flush(self) -> Any:
        return self.builder.flush()


def actor_seed(cfg: TrainConfig, actor_id: int) -> int:
    return cfg.run.seed + 1000 * (actor_id + 1)


def make_dqn_parts(cfg: TrainConfig, actor_id: int) -> tuple[Any, EpsilonGreedyPolicy, NStepAdder]:
    """Build one actor's vector env, policy and adder (runs inside the actor's process)."""
    seed = actor_seed(cfg, actor_id)
    env = make_env(cfg.env.game, preset=cfg.env.preset, num_envs=cfg.env.num_envs, seed=seed,
                   num_threads=cfg.env.num_threads)
    num_actions = int(env.single_action_space.n)
    torch.manual_seed(seed)
    network = QNetwork(num_actions, hidden=cfg.network.hidden, dueling=cfg.network.dueling)
    policy = EpsilonGreedyPolicy(network, cfg, actor_id, seed)
    # seed=None: the builder's incarnation id must differ after an actor restart or a resume (the replay
    # tells a restarted actor from a duplicated chunk by it); it never influences training.
    builder = NStepBuilder(cfg.env.num_envs, n=cfg.agent.n_step, gamma=cfg.agent.gamma, actor_id=actor_id,
                           seed=None)
    return env, policy, NStepAdder(builder, cfg.agent.clip_rewards)
