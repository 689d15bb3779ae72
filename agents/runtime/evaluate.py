"""Evaluation games for every algorithm, under the Machado et al. (2018) protocol by default: sticky actions
(0.25), full games (no life-loss terminal), 108k-frame cap.

Each evaluation env contributes only its first game, so short games cannot crowd out long ones (running until N
games end in any env would bias the mean towards short games).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agents.runtime.algorithm import EnvSpec, EvalResult, ObservesRewards, Policy, env_spec
from envs import make_env


def play_games(game: str, make_policy: Callable[[EnvSpec, int], Policy], episodes: int, seed: int = 12345,
               preset: str = "machado", max_envs: int = 8, record: list[np.ndarray] | None = None,
               colour: bool = False) -> EvalResult:
    """Play ``episodes`` games of ``game``, at most ``max_envs`` at a time.

    :param make_policy: builds the policy for a round of games from the env's spec and a seed (distinct per round).
        A policy that :class:`~agents.runtime.algorithm.ObservesRewards` (a recurrent policy fed the previous
        reward) gets each step's rewards ``[N]``, as its adder gives them in training.
    :param seed: evaluation seed (distinct from training seeds).
    :param preset: Atari protocol of the evaluation env ("machado" by default, whatever the training preset).
    :param record: if given, the observations of the first game (env 0 of the first round) are appended to it,
        one uint8 array per step, for a video of the agent playing.
    :param colour: RGB Atari frames (the run's ``env.colour``).
    :raises ValueError: ``episodes`` not positive.
    """
    if episodes <= 0:
        raise ValueError(f"episodes={episodes} must be positive.")
    returns: list[float] = []
    lengths: list[int] = []
    round_idx = 0
    while len(returns) < episodes:
        n = min(max_envs, episodes - len(returns))
        env = make_env(game, preset=preset, num_envs=n, seed=seed + 7919 * round_idx,
                       **({"grayscale": False} if colour else {}))
        policy = make_policy(env_spec(env), seed + round_idx)
        observe_rewards = policy.observe_rewards if isinstance(policy, ObservesRewards) else None
        obs, _ = env.reset(seed=seed + 7919 * round_idx)
        ep_ret = np.zeros(n)
        ep_len = np.zeros(n, dtype=np.int64)
        done = np.zeros(n, dtype=bool)
        starts = np.ones(n, dtype=bool)  # every env's first observation starts its game
        while not done.all():
            if record is not None and round_idx == 0 and not done[0]:
                record.append(obs[0].copy())
            actions, _ = policy.act(obs, 0, starts)
            starts = np.zeros(n, dtype=bool)  # only the first game of each env counts: no later starts matter
            obs, rewards, term, trunc, info = env.step(actions)
            if observe_rewards is not None:
                observe_rewards(rewards)
            live = ~done
            ep_ret += np.where(live, info.get("raw_reward", rewards), 0.0)
            ep_len += live
            done |= np.asarray(info.get("game_over", term | trunc))
        env.close()
        returns += ep_ret.tolist()
        lengths += ep_len.tolist()
        round_idx += 1
    return EvalResult(returns[:episodes], lengths[:episodes])
