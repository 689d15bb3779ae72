"""Branched rollouts: short imagined continuations of real states (Janner, Fu, Zhang and Levine 2019, MBPO, Sec. 4).

MBPO's answer to compounding model error is to never imagine far from real data: from states sampled out of the
replay of real experience, the model is rolled ``k`` steps under the current policy, and the imagined transitions
train a model-free learner. :func:`branched_rollouts` is that primitive for a grid world model; what to branch from,
how often, and which learner consumes the result are the agent's choices (it lives in ``agents/``, which this
package never imports).

Ours: the ``valid`` mask. A batch of rollouts runs in lock-step, so a rollout whose imagined game ended at step t
goes on being stepped (from the imagined terminal frame) to keep the batch rectangular; its steps after t are
marked invalid and must be dropped (or masked) by the consumer. Step t itself is valid, with ``terminals`` True.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from worldmodels.grid.model import GridWorldModel

#: A policy for imagination: observations uint8 ``[B, C, H, W]`` -> actions int64 ``[B]``.
Policy = Callable[[np.ndarray], np.ndarray]


@dataclass
class ImaginedBatch:
    """``k`` imagined steps of ``B`` rollouts, time first.

    :ivar obs: uint8 ``[k, B, C, H, W]``: the observation each action was chosen at (``obs[0]`` the real start's
        newest frame).
    :ivar actions: int64 ``[k, B]``.
    :ivar rewards: float32 ``[k, B]``: the model's reward of each step (game points; see
        :class:`worldmodels.grid.model.GridState` for expectation vs sample).
    :ivar next_obs: uint8 ``[k, B, C, H, W]``: the imagined observation after each action (``obs[t + 1]``).
    :ivar terminals: bool ``[k, B]``: the model ended the game at this step (False on invalid steps).
    :ivar valid: bool ``[k, B]``: False for the steps after a rollout's imagined game over (drop them).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminals: np.ndarray
    valid: np.ndarray

    @property
    def num_valid(self) -> int:
        """Imagined transitions that count (the ``True`` entries of ``valid``)."""
        return int(self.valid.sum())

    def transitions(self) -> dict[str, np.ndarray]:
        """The valid steps as a flat batch of transitions, step-major (all rollouts' step 0, then step 1, ...):
        ``obs`` uint8 ``[M, C, H, W]``, ``actions`` int64 ``[M]``, ``rewards`` float32 ``[M]``, ``next_obs``,
        ``terminals`` bool ``[M]``, with ``M = num_valid``; the format of
        :meth:`worldmodels.grid.model.GridModelTrainer.train_step` and of a replay's transitions."""
        v = self.valid
        return {"obs": self.obs[v], "actions": self.actions[v], "rewards": self.rewards[v],
                "next_obs": self.next_obs[v], "terminals": self.terminals[v]}


def branched_rollouts(model: GridWorldModel, start_obs: np.ndarray, policy: Policy, k: int,
                      generator: torch.Generator | None = None, *,
                      terminal_threshold: float = 0.5) -> ImaginedBatch:
    """Roll the model ``k`` steps under ``policy`` from each of ``B`` real observations (MBPO's branched rollouts).

    :param model: the world model (its ``cfg.sampling`` decides most-likely or sampled steps).
    :param start_obs: uint8 ``[B, C, H, W]`` (0/1): real observations to branch from, e.g. sampled from replay; for
        a model with ``context > 1``, their histories ``[B, T, C, H, W]``, newest last (zero-padded in front when
        ``T < context``, as before an episode's first frame).
    :param policy: observations uint8 ``[B, C, H, W]`` -> actions int ``[B]`` in ``[0, model.num_actions)``; called
        once per step on every rollout (also those already ended, whose actions are then ignored).
    :param k: imagined steps per rollout (>= 1).
    :param generator: CPU generator for "sample" sampling (default: the model's own, seeded by its ``cfg.seed``).
    :param terminal_threshold: a step ends the game when the model's ``terminal`` exceeds it (a probability in
        "mode" sampling; a 0/1 sample in "sample" sampling, which any threshold in [0, 1) passes through).
    :return: the :class:`ImaginedBatch` of the ``k`` steps.
    :raises ValueError: ``k`` is not a positive int, or the policy returns actions of the wrong shape or range.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k={k!r} must be a positive int: the imagined steps of each branched rollout (MBPO's "
                         f"rollout length; 1 to 5 is typical on MinAtar-sized models).")
    if not 0.0 <= float(terminal_threshold) < 1.0:
        raise ValueError(f"terminal_threshold={terminal_threshold} must lie in [0, 1) (a probability).")
    start = np.asarray(start_obs)
    state = model.initial(start)
    b = state.batch_size
    current = (start if start.ndim == 4 else start[:, -1]).astype(np.uint8)  # the policy sees the newest frame
    obs = np.empty((k, *current.shape), np.uint8)
    next_obs = np.empty_like(obs)
    actions = np.empty((k, b), np.int64)
    rewards = np.empty((k, b), np.float32)
    terminals = np.empty((k, b), bool)
    valid = np.empty((k, b), bool)
    alive = np.ones(b, bool)  # no imagined game over yet
    for t in range(k):
        a = np.asarray(policy(current))
        if a.shape != (b,) or a.dtype.kind not in "iu" or (b and (a.min() < 0 or a.max() >= model.num_actions)):
            raise ValueError(f"the policy must return ints in [0, {model.num_actions}) of shape ({b},); got "
                             f"{a.dtype} of shape {a.shape}.")
        state, frame = model.step(state, a.astype(np.int64), generator=generator)
        obs[t], actions[t], next_obs[t] = current, a, frame
        rewards[t] = state.reward
        terminals[t] = state.terminal > terminal_threshold
        valid[t] = alive
        alive = alive & ~terminals[t]
        current = frame
    return ImaginedBatch(obs, actions, rewards, next_obs, terminals & valid, valid)
