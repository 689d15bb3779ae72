"""Evaluation under the Machado et al. (2018) protocol: sticky actions (0.25), full games (no life-loss
terminal), 108k-frame cap, a near-greedy policy (epsilon 0.001, Dopamine's evaluation setting).

Each evaluation env contributes only its first game, so short games cannot crowd out long ones (running
until N games end in any env would bias the mean towards short games).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.dqn.actor import EpsilonGreedyPolicy
from agents.dqn.config import TrainConfig
from agents.dqn.networks import QNetwork
from envs import make_env


@dataclass
class EvalResult:
    returns: list[float]
    """Raw game score of each evaluation game."""
    lengths: list[int]
    """Agent steps of each game."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def evaluate_policy(cfg: TrainConfig, weights: dict[str, torch.Tensor], episodes: int, seed: int = 12345,
                    epsilon: float | None = None, preset: str = "machado", max_envs: int = 8) -> EvalResult:
    """Play ``episodes`` games with the given online-network weights.

    :param cfg: the run's config (game, network shape).
    :param weights: online Q-network state dict.
    :param episodes: games to play.
    :param seed: evaluation seed (distinct from training seeds).
    :param epsilon: exploration rate; default ``cfg.exploration.eval_eps``.
    :param preset: Atari protocol of the evaluation env ("machado" by default, whatever the training preset).
    """
    if episodes <= 0:
        raise ValueError(f"episodes={episodes} must be positive.")
    eps = cfg.exploration.eval_eps if epsilon is None else epsilon
    returns: list[float] = []
    lengths: list[int] = []
    round_idx = 0
    while len(returns) < episodes:
        n = min(max_envs, episodes - len(returns))
        env = make_env(cfg.env.game, preset=preset, num_envs=n, seed=seed + 7919 * round_idx)
        network = QNetwork(int(env.single_action_space.n), hidden=cfg.network.hidden, dueling=cfg.network.dueling)
        network.load_state_dict(weights)
        policy = EpsilonGreedyPolicy(network, cfg, 0, seed + round_idx, fixed_epsilon=eps)
        obs, _ = env.reset(seed=seed + 7919 * round_idx)
        ep_ret = np.zeros(n)
        ep_len = np.zeros(n, dtype=np.int64)
        done = np.zeros(n, dtype=bool)
        while not done.all():
            actions, _ = policy.act(obs, 0)
            obs, rewards, term, trunc, info = env.step(actions)
            live = ~done
            ep_ret += np.where(live, info.get("raw_reward", rewards), 0.0)
            ep_len += live
            done |= np.asarray(info.get("game_over", term | trunc))
        env.close()
        returns += ep_ret.tolist()
        lengths += ep_len.tolist()
        round_idx += 1
    return EvalResult(returns[:episodes], lengths[:episodes])
