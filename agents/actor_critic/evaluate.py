"""Actor-critic evaluation: the runtime's evaluation games (:func:`agents.runtime.evaluate.play_games`; Machado
protocol) with the trained policy, sampled (or greedy with ``agent.eval_greedy``)."""

from __future__ import annotations

import numpy as np
import torch

from agents.actor_critic.actor import ACPolicy, make_network
from agents.actor_critic.config import ActorCriticConfig
from agents.runtime.algorithm import EnvSpec, EvalResult
from agents.runtime.evaluate import play_games


def evaluate_policy(cfg: ActorCriticConfig, weights: dict[str, torch.Tensor], episodes: int, seed: int = 12345,
                    preset: str = "machado", max_envs: int = 8,
                    record: list[np.ndarray] | None = None) -> EvalResult:
    """Play ``episodes`` games with the network ``weights`` (see :func:`agents.runtime.evaluate.play_games`)."""

    def make_policy(spec: EnvSpec, round_seed: int) -> ACPolicy:
        network = make_network(cfg, spec.obs_shape, spec.num_actions, spec.obs_high)
        network.load_state_dict(weights)
        return ACPolicy(network, round_seed, greedy=cfg.agent.eval_greedy, clip_rewards=cfg.agent.clip_rewards)

    return play_games(cfg.env.game, make_policy, episodes, seed=seed, preset=preset, max_envs=max_envs,
                      record=record, colour=cfg.env.colour)
