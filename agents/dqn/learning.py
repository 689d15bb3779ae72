"""The DQN learner: Double DQN (van Hasselt et al. 2016, eq. 4) on n-step returns, with the importance
weights and priorities of prioritised replay (Schaul et al. 2016, Alg. 1).

The target for a transition (s, a, G, d, s') with G = sum_{j<n} gamma^j r_j and d = gamma^n (0 at a terminal):

    y = G + d * Q_target(s', argmax_a Q_online(s', a))     (double=True)
    y = G + d * max_a Q_target(s', a)                       (double=False, Nature DQN)

and the loss is the IS-weighted Huber (or squared) error of Q_online(s, a) against y.

Mixed Monte Carlo (Bellemare et al. 2016, Sec. 5; Ostrovski et al. 2017, Sec. 4), with ``agent.mc_mix`` = m > 0
and G^MC the transition's Monte Carlo return to the end of its episode (computed by the actor):

    y_mixed = (1 - m) * y + m * G^MC        (y alone where G^MC is NaN, i.e. unknown)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from agents.dqn.config import AgentConfig, NetworkConfig
from agents.dqn.networks import QNetwork


@dataclass
class LearnerStats:
    """What one update reports. ``td_abs``: float64 ``[B]`` absolute TD errors, the new priorities."""

    loss: float
    q_mean: float
    td_abs: np.ndarray


def double_dqn_targets(
    q_next_online: torch.Tensor, q_next_target: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor,
    double: bool = True,
) -> torch.Tensor:
    """Bootstrapped targets ``y`` ``[B]`` from next-state Q-values ``[B, A]``, returns and discounts ``[B]``."""
    if double:
        best = q_next_online.argmax(dim=1, keepdim=True)
        bootstrap = q_next_target.gather(1, best).squeeze(1)
    else:
        bootstrap = q_next_target.max(dim=1).values
    return returns + discounts * bootstrap


def mixed_mc_targets(targets: torch.Tensor, mc_returns: torch.Tensor, mc_mix: float) -> torch.Tensor:
    """``(1 - mc_mix) * targets + mc_mix * mc_returns`` ``[B]``; ``targets`` unchanged where ``mc_returns`` is NaN
    (a Monte Carlo return the actor could not know, e.g. an episode cut by a reset)."""
    mixed = (1.0 - mc_mix) * targets + mc_mix * mc_returns
    return torch.where(torch.isnan(mc_returns), targets, mixed)


class DQNLearner:
    """Online and target Q-networks, the optimiser, and the update step.

    :param num_actions: size of the action space.
    :param agent: learning hyperparameters.
    :param network: network shape.
    :param target_update_period: learner updates between target-network copies.
    :param seed: seeds the network initialisation.
    """

    def __init__(self, num_actions: int, agent: AgentConfig, network: NetworkConfig,
                 target_update_period: int, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.cfg = agent
        self.online = QNetwork(num_actions, hidden=network.hidden, dueling=network.dueling)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        if agent.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(
                self.online.parameters(), lr=agent.lr, eps=agent.adam_eps)
        else:  # Nature DQN's RMSProp (centred, squared-gradient momentum 0.95, min squared gradient 0.01)
            self.optimizer = torch.optim.RMSprop(
                self.online.parameters(), lr=agent.lr, alpha=0.95, eps=0.01, centered=True)
        self.target_update_period = max(1, target_update_period)
        self.num_updates = 0

    def step(self, obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor,
             next_obs: torch.Tensor, weights: torch.Tensor, mc_returns: torch.Tensor | None = None) -> LearnerStats:
        """One gradient step on a batch.

        :param obs: uint8 ``[B, 4, 84, 84]``; ``next_obs`` likewise (the bootstrap state s_{t+n}).
        :param actions: int64 ``[B]``. :param returns: float32 ``[B]``. :param discounts: float32 ``[B]``.
        :param weights: float32 ``[B]`` importance weights (ones for uniform replay).
        :param mc_returns: float32 ``[B]`` Monte Carlo returns (NaN = unknown); mixed into the target when
            ``agent.mc_mix > 0``, ignored otherwise.
        """
        # s' goes through the networks without autograd: folding it into the online pass (one batch of 2B)
        # would backpropagate through B inputs whose gradient is zero, measured 1.6x slower on CPU.
        with torch.no_grad():
            q_next_target = self.target(next_obs)
            q_next_online = self.online(next_obs) if self.cfg.double else q_next_target
            y = double_dqn_targets(q_next_online, q_next_target, returns, discounts, self.cfg.double)
            if self.cfg.mc_mix > 0 and mc_returns is not None:
                y = mixed_mc_targets(y, mc_returns, self.cfg.mc_mix)
        q = self.online(obs)
        q_taken = q.gather(1, actions.unsqueeze(1)).squeeze(1)
        td = y - q_taken
        if self.cfg.loss == "huber":
            per_item = F.smooth_l1_loss(q_taken, y, reduction="none")
        else:
            per_item = 0.5 * td.pow(2)
        loss = (weights * per_item).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.online.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.num_updates += 1
        if self.num_updates % self.target_update_period == 0:
            self.target.load_state_dict(self.online.state_dict())
        return LearnerStats(float(loss.detach()), float(q_taken.detach().mean()),
                            td.detach().abs().double().numpy())

    def get_weights(self) -> dict[str, torch.Tensor]:
        """Online-network weights for actors (detached CPU tensors)."""
        return {k: v.detach().clone() for k, v in self.online.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
