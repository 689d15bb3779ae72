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
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from agents.dqn.config import AgentConfig, NetworkConfig
from agents.dqn.networks import QNetwork
from agents.runtime.algorithm import Scalars
from worldmodels.common.optim import nature_dqn_rmsprop

log = logging.getLogger(__name__)


@dataclass
class LearnerStats:
    """What one update reports, as tensors on the learner's device (reading them waits for the device: the runtime
    does it once per log window)."""

    loss: torch.Tensor
    """0-dim: the IS-weighted loss."""
    q_mean: torch.Tensor
    """0-dim: mean Q(s, a) of the batch."""
    td_abs: torch.Tensor
    """float32 ``[B]``: absolute TD errors, the new priorities (copied to the host only for prioritised replay)."""


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
    :param obs_shape: one observation (``(4, 84, 84)`` on Atari, ``(C, 10, 10)`` on MinAtar).
    :param device: where the networks and the update run (batches must be there already).
    """

    def __init__(self, num_actions: int, agent: AgentConfig, network: NetworkConfig,
                 target_update_period: int, seed: int = 0, obs_shape: tuple[int, ...] = (4, 84, 84),
                 device: torch.device | None = None) -> None:
        self.cfg = agent
        self.device = device or torch.device("cpu")
        # Seeded in a scope of its own: building the learner leaves the process's generator as it was (in local
        # mode the actors share that process). The networks are initialised on the CPU, then moved.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            online = QNetwork(num_actions, obs_shape=obs_shape, hidden=network.hidden, dueling=network.dueling)
        self.online = online.to(self.device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        if agent.optimizer == "adam":
            # foreach: one multi-tensor kernel per step for all parameters (torch's default only on CUDA); fewer
            # calls per update matter for the small MinAtar network on the CPU.
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(
                self.online.parameters(), lr=agent.lr, eps=agent.adam_eps, foreach=True)
        elif agent.optimizer == "rmsprop":  # DeepMind's: 0.01 inside the square root (worldmodels.common.optim)
            self.optimizer = nature_dqn_rmsprop(self.online.parameters(), lr=agent.lr)
        else:  # PyTorch's, with the same numbers (0.01 outside the root): what MinAtar's DQN example runs
            self.optimizer = torch.optim.RMSprop(
                self.online.parameters(), lr=agent.lr, alpha=0.95, eps=0.01, centered=True, foreach=True)
        self.target_update_period = max(1, target_update_period)
        self.num_updates = 0

    def step(self, obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor,
             next_obs: torch.Tensor, weights: torch.Tensor, mc_returns: torch.Tensor | None = None) -> LearnerStats:
        """One gradient step on a batch.

        :param obs: uint8 ``[B, *obs_shape]`` (``[B, 4, 84, 84]`` on Atari); ``next_obs`` likewise (the bootstrap
            state s_{t+n}).
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
        return LearnerStats(loss.detach(), q_taken.detach().mean(), td.detach().abs())

    def get_weights(self) -> dict[str, torch.Tensor]:
        """Online-network weights for actors (detached CPU tensors)."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.online.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])


class DQNReplayLearner:
    """DQN on the runtime seam (:class:`agents.runtime.algorithm.Learner`): a replay fed with the actors' n-step
    chunks and the Double DQN update at a fixed replay ratio.

    - ``updates_due``: ``(steps - learning_starts) / update_period - updates`` once the replay holds a batch;
    - ``collect_allowance``: actors may collect up to ``learning_starts + updates * update_period`` steps;
    - each update anneals the importance-sampling exponent beta linearly to 1 over the run and writes the new
      priorities back.

    :param num_actions: size of the action space. :param obs_shape: one observation (``(4, 84, 84)`` on Atari).
    :param frame_shape: one stored frame. :param stack: frames per observation.
    :param frame_skip: emulator frames per agent step (converts the ``*_frames`` settings).
    :param cfg: the run's :class:`agents.dqn.config.DQNConfig`. :param device: where the networks live.
    """

    def __init__(self, num_actions: int, obs_shape: tuple[int, ...], frame_shape: tuple[int, ...], stack: int,
                 frame_skip: int, cfg: Any, device: torch.device | None = None) -> None:
        from agents.replay.buffer import PrioritizedReplay
        from agents.replay.prefetch import ReplaySampler

        self.cfg = cfg
        self.device = device or torch.device("cpu")
        agent = cfg.agent
        self.period = agent.update_period
        self.learning_starts = agent.learning_starts_frames // frame_skip
        self.core = DQNLearner(num_actions, agent, cfg.network,
                               target_update_period=agent.target_update_frames // (frame_skip * self.period),
                               seed=cfg.run.seed, obs_shape=obs_shape, device=self.device)
        self.replay = PrioritizedReplay(cfg.replay.capacity, num_shards=max(1, cfg.runtime.num_actors),
                                        alpha=cfg.replay.alpha, beta=cfg.replay.beta_start,
                                        prioritized=cfg.replay.prioritized, seed=cfg.run.seed, stack=stack,
                                        frame_shape=frame_shape)
        # Monte Carlo returns are sampled (and copied to the device) only when the target mixes them in.
        self.sampler = ReplaySampler(self.replay, agent.batch_size, self.device, mc_returns=agent.mc_mix > 0,
                                     prefetch=cfg.replay.prefetch)
        self._refill_from: tuple[int, int] | None = (0, 0)

    def ingest(self, output: Any) -> None:
        self.replay.add(output.payload)

    def _since_refill(self, counters: Any) -> tuple[int, int]:
        """(agent steps, updates) since the replay was last empty: since the run started, or since a resume whose
        checkpoint held no replay (``replay.save_in_checkpoint: false``), which refills ``learning_starts`` steps
        before updating again, as a new run does, rather than training on a handful of transitions."""
        if self._refill_from is None:
            self._refill_from = (counters.steps, counters.updates)
            log.warning("the checkpoint holds no replay (replay.save_in_checkpoint=false): collecting %d agent steps "
                        "before updates resume", self.learning_starts)
        return counters.steps - self._refill_from[0], counters.updates - self._refill_from[1]

    def updates_due(self, counters: Any) -> int:
        if len(self.replay) < self.cfg.agent.batch_size:
            return 0
        steps, updates = self._since_refill(counters)
        return max(0, steps - self.learning_starts) // self.period - updates

    def collect_allowance(self, counters: Any) -> int:
        steps, updates = self._since_refill(counters)
        return self.learning_starts + updates * self.period - steps

    def update(self, counters: Any) -> Scalars:
        batch = self.take_batch(counters)
        stats = self.core.step(batch.obs, batch.actions, batch.returns, batch.discounts, batch.next_obs,
                               batch.weights, batch.mc_returns)
        self.finish_batch(batch, stats.td_abs)
        return {"losses/td_loss": stats.loss, "losses/q_values": stats.q_mean}

    def take_batch(self, counters: Any) -> Any:
        """The next replay batch, on the device (with replay.prefetch the next one is sampled meanwhile), its
        importance weights at the annealed beta. Hand it back with :meth:`finish_batch` after the step; an update
        that adds rows of its own (Dyna's imagined transitions) appends them after these."""
        beta_start = self.cfg.replay.beta_start
        beta = beta_start + (1 - beta_start) * min(1.0, counters.steps / max(1, counters.total_steps))
        return self.sampler.take(beta)

    def finish_batch(self, batch: Any, td_abs: torch.Tensor) -> None:
        """Release a batch of :meth:`take_batch` and, with prioritised replay, write its new priorities from the
        step's ``|TD error|`` (the batch's rows first; rows appended after them are not the replay's)."""
        self.sampler.release(batch)
        if self.cfg.replay.prioritized:  # the one device-to-host copy of an update, and only for prioritised replay
            td = td_abs[: len(batch.actions)].double().cpu().numpy()
            self.sampler.replay_idle()
            self.replay.update_priorities(batch.indices, td, batch.generations)
        self.sampler.replay_idle()  # the caller writes the replay next (ingest)

    def get_weights(self) -> dict[str, torch.Tensor]:
        return self.core.get_weights()

    def scalars(self) -> dict[str, float]:
        return {"charts/replay_size": float(len(self.replay))}

    @staticmethod
    def checkpoint_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The actor weights (:meth:`get_weights`: the online network) in a checkpoint this learner's
        :meth:`state_dict` went into."""
        from agents.runtime.algorithm import CheckpointLayout

        return CheckpointLayout.learner_state(ckpt)["online"]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"learner": self.core.state_dict()}
        if self.cfg.replay.save_in_checkpoint:
            state["replay"] = self.replay.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.core.load_state_dict(state["learner"])
        self.sampler.discard()  # a batch sampled ahead from the replay this restore replaces
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])
        else:
            self._refill_from = None  # set from the counters the run resumes at, by the next call
