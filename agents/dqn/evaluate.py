"""DQN evaluation: the runtime's evaluation games (:func:`agents.runtime.evaluate.play_games`; Machado protocol)
with a near-greedy policy (epsilon 0.001, Dopamine's evaluation setting).
"""

from __future__ import annotations

import numpy as np
import torch

from agents.dqn.actor import EpsilonGreedyPolicy
from agents.dqn.config import DQNConfig
from agents.dqn.networks import QNetwork
from agents.runtime.algorithm import EnvSpec, EvalResult
from agents.runtime.evaluate import play_games

__all__ = ["EvalResult", "evaluate_policy"]


def evaluate_policy(cfg: DQNConfig, weights: dict[str, torch.Tensor], episodes: int, seed: int = 12345,
                    epsilon: float | None = None, preset: str = "machado", max_envs: int = 8,
                    record: list[np.ndarray] | None = None) -> EvalResult:
    """Play ``episodes`` games with the given online-network weights.

    :param cfg: the run's config (game, network shape).
    :param weights: online Q-network state dict.
    :param episodes: games to play.
    :param seed: evaluation seed (distinct from training seeds).
    :param epsilon: exploration rate; default ``cfg.exploration.eval_eps``.
    :param preset: Atari protocol of the evaluation env ("machado" by default, whatever the training preset).
    :param record: if given, the observations of the first game are appended to it (for a video).
    """
    eps = cfg.exploration.eval_eps if epsilon is None else epsilon

    def make_policy(spec: EnvSpec, round_seed: int) -> EpsilonGreedyPolicy:
        network = QNetwork(spec.num_actions, obs_shape=spec.obs_shape, hidden=cfg.network.hidden,
                           dueling=cfg.network.dueling)
        network.load_state_dict(weights)
        return EpsilonGreedyPolicy(network, cfg, 0, round_seed, fixed_epsilon=eps)

    return play_games(cfg.env.game, make_policy, episodes, seed=seed, preset=preset, max_envs=max_envs,
                      record=record, colour=cfg.env.colour)
