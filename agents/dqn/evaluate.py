"""Evaluation under the Machado et al. (2018) protocol: sticky actions (0.25), full games (no life-loss
terminal), 108k-frame cap, a near-greedy policy (epsilon 0.001, Dopamine's evaluation setting).

Each evaluation env contributes only its first game, so short games cannot crowd out long ones (running
until N games end in any env would bias the mean towards short games).
"""

from __future__ import annotations

import numpy as np
import torch

from agents.dqn.actor import EpsilonGreedyPolicy
from agents.dqn.config import DQNConfig
from agents.dqn.networks import QNetwork
from agents.runtime.algorithm import EvalResult, env_spec
from envs import make_env

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
    :param record: if given, the observations of the first game (env 0 of the first round) are appended to it,
        one uint8 array per step, for a video of the agent playing.
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
        spec = env_spec(env)
        network = QNetwork(spec.num_actions, obs_shape=spec.obs_shape, hidden=cfg.network.hidden,
                           dueling=cfg.network.dueling)
        network.load_state_dict(weights)
        policy = EpsilonGreedyPolicy(network, cfg, 0, seed + round_idx, fixed_epsilon=eps)
        obs, _ = env.reset(seed=seed + 7919 * round_idx)
        ep_ret = np.zeros(n)
        ep_len = np.zeros(n, dtype=np.int64)
        done = np.zeros(n, dtype=bool)
        while not done.all():
            if record is not None and round_idx == 0 and not done[0]:
                record.append(obs[0].copy())
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
