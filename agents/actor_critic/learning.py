"""The actor-critic learner: one network, one optimiser, three objectives (``agent.loss``).

Every update re-runs the network over a batch of unrolls (:class:`~agents.actor_critic.actor.Unroll`) from the
recurrent state stored at their start, then minimises ``policy_loss + value_coef * value_loss - entropy_coef *
entropy``, with ``value_loss = 0.5 * mean((target - V)^2)``, every mean over the steps that are not autoreset steps:

- ``a2c`` (Mnih et al. 2016, Alg. S3, synchronous): advantages ``A = G - V`` from the n-step return to the unroll's
  end (GAE with ``gae_lambda``; 1 is the paper's), ``policy_loss = -mean(log pi(a|x) A)``; one gradient step.
- ``ppo`` (Schulman et al. 2017, eq. 7 and 9; CleanRL's ``ppo_atari.py``): GAE advantages and value targets from the
  values at collection time; ``ppo_epochs`` passes of ``ppo_minibatches`` minibatches, each minimising
  ``-mean(min(r A, clip(r, 1 - eps, 1 + eps) A))`` with ``r = pi(a|x) / pi_old(a|x)``, the value loss optionally
  clipped around the old values.
- ``impala`` (Espeholt et al. 2018, Sec. 4): V-trace targets ``v_s`` and advantages ``rho_s (r_s + gamma v_{s+1} -
  V(x_s))`` from the behaviour logits each unroll carries (:func:`agents.actor_critic.returns.vtrace`).

Synchronous objectives (a2c, ppo) wait for one chunk from every actor, all collected on the newest weights;
IMPALA updates on ``agent.batch_chunks`` chunks as they come, whatever weights collected them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from agents.actor_critic.actor import Unroll
from agents.actor_critic.config import ActorCriticConfig, is_synchronous, two_streams
from agents.actor_critic.core import PolicyCore, Replay
from agents.actor_critic.returns import gae_advantages, vtrace
from agents.runtime.actor import ActorOutput
from agents.runtime.algorithm import Counters, EnvSpec, Scalars
from worldmodels.common.device import StagingBuffer
from worldmodels.common.optim import RMSpropEpsInside

#: The :class:`Unroll` arrays laid out ``[T (+ 1), B, ...]`` (concatenated along B), and the :class:`Batch` attribute
#: each becomes; ``state`` entries are ``[B, ...]`` (concatenated along axis 0).
_TIME_MAJOR = {"obs": "obs", "starts": "starts", "actions": "actions", "logits": "behaviour_logits",
               "rewards": "rewards", "discounts": "discounts", "carry": "carry", "valid": "mask",
               "values": "behaviour_values", "int_rewards": "int_rewards"}


def _unroll_arrays(unrolls: Sequence[Unroll]) -> dict[str, tuple[list[np.ndarray], int]]:
    """Each array of a batch of ``unrolls`` by key (``state.<k>``, ``inputs.<k>`` for the dicts): its parts, one per
    unroll, and the axis they are concatenated along."""
    first = unrolls[0]
    out: dict[str, tuple[list[np.ndarray], int]] = {}
    for name in _TIME_MAJOR:
        parts = [getattr(u, name) for u in unrolls]
        if all(p is not None for p in parts):
            out[name] = (parts, 1)
    out.update({f"state.{k}": ([u.state[k] for u in unrolls], 0) for k in first.state})
    out.update({f"inputs.{k}": ([u.inputs[k] for u in unrolls], 1) for k in first.inputs})
    return out


class UnrollStager:
    """Moves the unrolls of one update to the learner's device. On the CPU: zero-copy tensors over the (concatenated)
    arrays. On CUDA: every array packed straight from the unrolls into one pinned
    :class:`~worldmodels.common.device.StagingBuffer` (reused while the shapes repeat: every update but the first),
    then one non-blocking host-to-device copy, instead of one copy per array (eleven or more).

    :param device: the learner's device.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffer: StagingBuffer | None = None

    def tensors(self, unrolls: Sequence[Unroll]) -> dict[str, torch.Tensor]:
        """The arrays of ``unrolls`` side by side (as :meth:`Unroll.concat`), by key of :func:`_unroll_arrays`."""
        arrays = _unroll_arrays(unrolls)
        if self.device.type == "cpu":
            return {k: torch.from_numpy(parts[0] if len(parts) == 1 else np.concatenate(parts, axis))
                    for k, (parts, axis) in arrays.items()}
        layout: dict[str, tuple[tuple[int, ...], Any]] = {}
        for key, (parts, axis) in arrays.items():
            shape = list(parts[0].shape)
            shape[axis] = sum(p.shape[axis] for p in parts)
            layout[key] = (tuple(shape), parts[0].dtype)
        if self.buffer is None or not self.buffer.fits(layout):
            self.buffer = StagingBuffer(layout, self.device)
        self.buffer.wait_host_free()  # the previous update's copy has left the buffer (the host may run ahead)
        for key, (parts, axis) in arrays.items():
            np.concatenate(parts, axis=axis, out=self.buffer.host[key])
        return self.buffer.to_device()  # on the current stream: ordered after the last update's kernels


class Batch:
    """An :class:`Unroll` (or several side by side) as tensors on the learner's device (``obs`` stays uint8).

    :param unroll: one unroll, or unrolls of equal length (concatenated along B, as :meth:`Unroll.concat`).
    :param device: where the tensors go.
    :param stager: moves them (a learner keeps one, so that its pinned buffer is reused); default: a new one.
    """

    def __init__(self, unroll: Unroll | Sequence[Unroll], device: torch.device,
                 stager: UnrollStager | None = None) -> None:
        unrolls = [unroll] if isinstance(unroll, Unroll) else list(unroll)
        t = (stager or UnrollStager(device)).tensors(unrolls)
        self.obs = t["obs"]
        self.starts = t["starts"]
        self.actions = t["actions"]
        self.behaviour_logits = t["logits"]
        self.rewards = t["rewards"]
        self.discounts = t["discounts"]
        self.carry = t["carry"]
        self.mask = t["valid"].float()
        self.state = {k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("state.")}
        self.behaviour_values = t.get("values")
        self.inputs = {k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("inputs.")}
        self.int_rewards: torch.Tensor | None = t.get("int_rewards")

    def columns(self, cols: torch.Tensor) -> Batch:
        """The unrolls ``cols`` (env columns), for PPO's minibatches over whole unrolls."""
        out = Batch.__new__(Batch)
        for name in ("obs", "starts", "actions", "behaviour_logits", "rewards", "discounts", "carry", "mask"):
            setattr(out, name, getattr(self, name)[:, cols])
        out.state = {k: v[cols] for k, v in self.state.items()}
        out.behaviour_values = None if self.behaviour_values is None else self.behaviour_values[:, cols]
        out.inputs = {k: v[:, cols] for k, v in self.inputs.items()}
        out.int_rewards = None if self.int_rewards is None else self.int_rewards[:, cols]
        return out


class IntrinsicReturnScale:
    """RND's reward normalisation (Burda et al. 2018, Sec. 2.3; their ``RewardForwardFilter``): a running standard
    deviation of the discounted intrinsic return ``R_t = gamma_I R_{t-1} + r_t``, kept per env and never reset
    (the intrinsic stream is non-episodic), folded over every env of every actor; the intrinsic rewards of an update
    are divided by it.

    :param gamma: the intrinsic discount (``exploration.intrinsic_gamma``).
    """

    def __init__(self, gamma: float) -> None:
        from worldmodels.density.rnd import RunningMeanStd

        self.gamma = gamma
        self.returns: dict[int, np.ndarray] = {}  # actor id -> [B] running discounted returns of its envs
        self.stats = RunningMeanStd(())

    def update(self, actor_id: int, int_rewards: np.ndarray) -> None:
        """Fold one actor's intrinsic rewards ``[T, B]`` (time-major, in the order it collected them)."""
        returns = self.returns.get(actor_id)
        if returns is None or returns.shape != int_rewards.shape[1:]:
            returns = np.zeros(int_rewards.shape[1:], np.float64)
        seen = np.empty(int_rewards.shape, np.float64)
        for t in range(int_rewards.shape[0]):
            returns = returns * self.gamma + int_rewards[t]
            seen[t] = returns
        self.returns[actor_id] = returns
        self.stats.update(seen.reshape(-1))

    @property
    def std(self) -> float:
        """The standard deviation the rewards are divided by (1 before any reward; never below 1e-8)."""
        return max(float(np.sqrt(self.stats.var)), 1e-8)

    def state_dict(self) -> dict[str, Any]:
        return {"returns": {k: v.copy() for k, v in self.returns.items()}, "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns = {int(k): np.asarray(v, np.float64).copy() for k, v in state["returns"].items()}
        self.stats.load_state_dict(state["stats"])


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (0 if there are none)."""
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over the entries where ``mask`` is 1."""
    return (x * mask).sum()


def log_prob_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log pi(a|x)`` and the policy's entropy (nats), both shaped like ``actions``, of logits ``[..., A]``."""
    log_p = F.log_softmax(logits, dim=-1)
    log_p_a = log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return log_p_a, entropy


def shape_advantages(adv: torch.Tensor, mask: torch.Tensor, normalize: bool, clip: bool) -> torch.Tensor:
    """Optionally normalise (zero mean, unit std over the unmasked entries) then clip to [-1, 1] (STRAW)."""
    if normalize:
        mean = masked_mean(adv, mask)
        std = masked_mean((adv - mean) ** 2, mask).sqrt()
        adv = (adv - mean) / (std + 1e-8)
    if clip:
        adv = adv.clamp(-1.0, 1.0)
    return adv


def ppo_policy_loss(log_p_a: torch.Tensor, old_log_p_a: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                    clip: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), to minimise; and the ratio ``[...]`` and the share of
    steps whose ratio was clipped. ``log_p_a``, ``old_log_p_a``, ``adv``, ``mask``: same shape."""
    ratio = torch.exp(log_p_a - old_log_p_a)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * adv
    loss = -masked_mean(torch.min(unclipped, clipped), mask)
    clip_fraction = masked_mean(((ratio - 1.0).abs() > clip).float(), mask)
    return loss, ratio, clip_fraction


class ActorCriticLearner:
    """The driver's side of A2C / PPO / IMPALA (see the module docstring).

    :param spec: the env (observation shape, actions). :param cfg: the run's config.
    :param device: where the network and its updates run.
    """

    def __init__(self, spec: EnvSpec, cfg: ActorCriticConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.agent = cfg.agent
        self.device = device
        # Seeded in a scope of its own: building the learner leaves the process's generator as it was (in local
        # mode the actors share that process). The network is initialised on the CPU, then moved.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.run.seed)
            network = cfg.build_network(spec.obs_shape, spec.num_actions, spec.obs_high)
        self.network: PolicyCore = network.to(device)
        # The learner's own draws (PPO's minibatch order): the actors in this process draw from the global generator.
        self.generator = torch.Generator(device=device).manual_seed(cfg.run.seed)
        a = cfg.agent
        params = list(self.network.parameters())
        if a.optimizer == "rmsprop_tf":
            # TensorFlow 1's RMSProp: epsilon inside the root, the squared-gradient average starting at 1.
            self.optimizer: torch.optim.Optimizer = RMSpropEpsInside(params, lr=a.lr, alpha=a.rmsprop_alpha,
                                                                     eps=a.optimizer_eps, initial_square_avg=1.0)
        elif a.optimizer == "rmsprop":
            self.optimizer = torch.optim.RMSprop(params, lr=a.lr, alpha=a.rmsprop_alpha, eps=a.optimizer_eps,
                                                 foreach=True)
        else:
            self.optimizer = torch.optim.Adam(params, lr=a.lr, eps=a.optimizer_eps, foreach=True)
        self.synchronous = is_synchronous(cfg)
        self.batch_chunks = max(1, cfg.runtime.num_actors) if self.synchronous else a.batch_chunks
        self.steps_per_chunk = cfg.runtime.chunk_steps * cfg.env.num_envs
        self.pending: list[Unroll] = []
        self.lr = a.lr
        self._busy = 0.0
        self._stager = UnrollStager(device)
        self._since = time.perf_counter()
        ex = cfg.exploration
        self.two_streams = two_streams(cfg)
        self.int_scale = IntrinsicReturnScale(ex.intrinsic_gamma) if self.two_streams and ex.normalize_intrinsic \
            else None

    # --- the runtime's Learner protocol ---------------------------------------------------------------------
    def ingest(self, output: ActorOutput) -> None:
        if output.payload is not None:
            self.pending.append(output.payload)
            if self.int_scale is not None and output.payload.int_rewards is not None:
                self.int_scale.update(output.actor_id, output.payload.int_rewards)

    def updates_due(self, counters: Counters) -> int:
        return 1 if len(self.pending) >= self.batch_chunks else 0

    def collect_allowance(self, counters: Counters) -> int:
        # Synchronous: exactly the chunks that complete this batch (runtime.max_ahead_chunks is 0), so every chunk
        # of a batch is collected on the weights of the last update. IMPALA: the same plus the runtime's slack.
        return max(0, self.batch_chunks - len(self.pending)) * self.steps_per_chunk

    def update(self, counters: Counters) -> Scalars:
        start = time.perf_counter()
        unrolls = self.pending[:self.batch_chunks]
        del self.pending[:self.batch_chunks]
        if self.agent.anneal_lr:
            self.lr = self.agent.lr * max(0.0, 1.0 - counters.frames / max(1, self.cfg.run.total_frames))
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
        batch = Batch(unrolls, self.device, self._stager)  # on CUDA: one host-to-device copy
        if self.two_streams and batch.int_rewards is None:
            raise ValueError("exploration.streams=two, but the actors sent no intrinsic rewards: actors and learner "
                             "were built from different configs")
        if self.int_scale is not None and batch.int_rewards is not None:
            batch.int_rewards = batch.int_rewards / self.int_scale.std
        loss = str(self.agent.loss)
        stats = self._ppo(batch) if loss == "ppo" else self._one_step(batch, loss)
        self._busy += time.perf_counter() - start
        return stats

    def get_weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}

    def scalars(self) -> dict[str, float]:
        now = time.perf_counter()
        busy = self._busy / max(1e-9, now - self._since)
        self._busy, self._since = 0.0, now
        out = {"charts/learning_rate": self.lr, "charts/learner_busy_fraction": busy}
        if self.int_scale is not None:
            out["explore/intrinsic_return_std"] = self.int_scale.std
        return out

    @staticmethod
    def checkpoint_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The actor weights (:meth:`get_weights`) in a checkpoint this learner's :meth:`state_dict` went into."""
        from agents.runtime.algorithm import CheckpointLayout

        return CheckpointLayout.learner_state(ckpt)["network"]

    def state_dict(self) -> dict[str, Any]:
        state = {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(), "lr": self.lr,
                 "generator": self.generator.get_state()}
        if self.int_scale is not None:
            state["int_scale"] = self.int_scale.state_dict()
        return {"learner": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.network.load_state_dict(state["learner"]["network"])
        except RuntimeError as err:  # a network of another shape: name the fix, not torch's key lists
            raise ValueError("the checkpoint's network does not fit this config's (network.core, torso, sizes or "
                             "game differ); resume with the run's own config: reverie train --resume RUN_DIR "
                             f"({str(err).splitlines()[0]})") from err
        self.optimizer.load_state_dict(state["learner"]["optimizer"])
        self.lr = float(state["learner"]["lr"])
        saved = state["learner"].get("generator")  # None in checkpoints from before the learner had its own
        if saved is not None and saved.numel() == self.generator.get_state().numel():  # (and a CPU one on CUDA)
            self.generator.set_state(saved)
        if self.int_scale is not None and "int_scale" in state["learner"]:
            self.int_scale.load_state_dict(state["learner"]["int_scale"])

    # --- objectives --------------------------------------------------------------------------------------------
    def _step(self, loss: torch.Tensor) -> torch.Tensor:
        """One gradient step on ``loss``; the gradient norm before clipping (0-dim, on the device: not read here)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.zeros((), device=self.device)
        if self.agent.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.agent.max_grad_norm, foreach=True)
        self.optimizer.step()
        return norm.detach()

    def losses(self, batch: Batch, loss: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The a2c or impala loss of ``batch`` (a scalar with a graph) and its parts (for logging and tests)."""
        a = self.agent
        out = self.network.replay(batch.obs, batch.state, batch.starts, batch.actions, batch.rewards, batch.inputs,
                                  bootstrap_grad=False)
        logits, values = out.logits[:-1], out.values
        log_p_a, entropy = log_prob_entropy(logits, batch.actions)
        values_d = values.detach()
        parts: dict[str, torch.Tensor] = {}
        log_rhos = None
        if loss == "impala":
            behaviour_log_p_a, _ = log_prob_entropy(batch.behaviour_logits, batch.actions)
            log_rhos = log_p_a.detach() - behaviour_log_p_a
            parts["mean_rho"] = masked_mean(torch.exp(log_rhos), batch.mask)
        adv, streams = self._streams(batch, values_d, loss, log_rhos)
        adv = shape_advantages(adv, batch.mask, a.normalize_advantages, a.clip_advantages)
        reduce = masked_sum if a.loss_reduction == "sum" else masked_mean
        policy_loss = -reduce(log_p_a * adv, batch.mask)
        value_loss = torch.zeros((), device=values.device)
        for (targets, m), v in zip(streams, self._stream_values(values)):  # RND: the two heads' losses summed
            value_loss = value_loss + 0.5 * reduce((targets - v[:-1]) ** 2, m)
        values_d = self._stream_values(values_d)[0]
        self._intrinsic_stats(batch, values, parts)
        total = policy_loss + a.value_coef * value_loss - a.entropy_coef * reduce(entropy, batch.mask)
        total = total + self._core_terms(out, batch.mask, reduce, parts)
        # Logged as optimised (sums under loss_reduction "sum"), except the entropy: a mean, a property of the policy.
        parts.update(policy_loss=policy_loss, value_loss=value_loss, entropy=masked_mean(entropy, batch.mask),
                     value_mean=masked_mean(values_d[:-1], batch.mask))
        return total, parts

    def _stream_values(self, values: torch.Tensor) -> list[torch.Tensor]:
        """The value of each reward stream: ``[values]``, or ``[extrinsic, intrinsic]`` of two heads' ``[..., 2]``."""
        return [values[..., 0], values[..., 1]] if self.two_streams else [values]

    def _intrinsic_discounts(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Discounts, carry and value-loss mask ``[T, B]`` of the intrinsic stream: non-episodic (RND), it runs on
        through game overs and autoreset steps (gamma_I everywhere, carry 1, every step learned); episodic, it is cut
        where the extrinsic one is."""
        ex = self.cfg.exploration
        if ex.intrinsic_episodic:
            return (batch.discounts > 0).to(batch.mask.dtype) * ex.intrinsic_gamma, batch.carry, batch.mask
        ones = torch.ones_like(batch.mask)
        return ones * ex.intrinsic_gamma, ones, ones

    def _streams(self, batch: Batch, values: torch.Tensor, loss: str, log_rhos: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The policy's advantages ``[T, B]`` and, per reward stream, its value targets and value-loss mask ``[T, B]``.

        One stream: A2C/PPO's GAE or IMPALA's V-trace on the rewards. Two (RND, Burda et al. 2018, Sec. 2.3): each
        stream's own targets from its own head, discount and episode cuts, the advantages combined as
        ``extrinsic_coef * A_E + intrinsic_coef * A_I``.

        :param values: ``[T + 1, B]`` or ``[T + 1, B, 2]``, without gradient. :param log_rhos: IMPALA's ``[T, B]``.
        """
        a = self.agent

        def stream(rewards: torch.Tensor, discounts: torch.Tensor, carry: torch.Tensor, v: torch.Tensor,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
            if loss == "impala":
                assert log_rhos is not None
                return vtrace(log_rhos, rewards, discounts, carry, v, a.vtrace_rho_bar, a.vtrace_c_bar)
            adv = gae_advantages(rewards, discounts, carry, v, a.gae_lambda)
            return adv + v[:-1], adv

        heads = self._stream_values(values)
        targets_e, adv_e = stream(batch.rewards, batch.discounts, batch.carry, heads[0])
        if not self.two_streams:
            return adv_e, [(targets_e, batch.mask)]
        assert batch.int_rewards is not None
        ex = self.cfg.exploration
        discounts_i, carry_i, mask_i = self._intrinsic_discounts(batch)
        targets_i, adv_i = stream(batch.int_rewards, discounts_i, carry_i, heads[1])
        return ex.extrinsic_coef * adv_e + ex.intrinsic_coef * adv_i, [(targets_e, batch.mask), (targets_i, mask_i)]

    def _intrinsic_stats(self, batch: Batch, values: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        """The intrinsic stream's mean value and (normalised) reward, into ``parts`` (two streams only)."""
        if self.two_streams and batch.int_rewards is not None:
            parts["explore/intrinsic_value_mean"] = masked_mean(values[:-1, ..., 1].detach(), batch.mask)
            parts["explore/intrinsic_reward_normalised"] = masked_mean(batch.int_rewards, batch.mask)

    def _core_terms(self, out: Replay, mask: torch.Tensor, reduce: Any, parts: dict[str, torch.Tensor],
                    ) -> torch.Tensor:
        """The policy core's own loss (:attr:`Replay.aux_loss`) with the objective's reduction, and the core's
        statistics (:meth:`~agents.actor_critic.core.PolicyCore.replay_stats`) into ``parts``."""
        parts.update(self.network.replay_stats(out, mask))
        if out.aux_loss is None:
            return torch.zeros((), device=mask.device)
        aux = reduce(out.aux_loss[:-1], mask)
        parts["core_loss"] = aux
        return aux

    def _one_step(self, batch: Batch, loss: str) -> Scalars:
        total, parts = self.losses(batch, loss)
        norm = self._step(total)
        return {**{k if "/" in k else f"losses/{k}": v.detach() for k, v in parts.items()}, "losses/grad_norm": norm}

    def _ppo(self, batch: Batch) -> Scalars:
        """PPO's epochs of minibatches. Nothing is read on the host (no ``.item()``, no data-dependent shapes): the
        statistics are summed on the device, and a feed-forward core's minibatches are a permutation of all
        ``T * B`` steps with the autoreset steps weighted 0 (rather than the valid steps picked out by ``nonzero``,
        a sync), so every minibatch has ``T * B / ppo_minibatches`` steps and its means run over its valid ones."""
        a = self.agent
        with torch.no_grad():
            if batch.behaviour_values is not None and not self.network.recurrent:
                # On-policy, the actors' values are this network's: only the bootstrap values are new.
                _, bootstrap = self.network(batch.obs[-1])
                values_all = torch.cat([batch.behaviour_values, bootstrap.unsqueeze(0)])
            else:
                values_all = self.network.replay(batch.obs, batch.state, batch.starts, batch.actions, batch.rewards,
                                                 batch.inputs).values
            adv_all, streams = self._streams(batch, values_all, "ppo")
            old_log_p_all, _ = log_prob_entropy(batch.behaviour_logits, batch.actions)
        old_values_all = [v[:-1] for v in self._stream_values(values_all)]
        recurrent = self.network.recurrent
        steps, envs = batch.actions.shape
        sums: dict[str, torch.Tensor] = {}
        minibatches = 0
        flat_mask = batch.mask.reshape(-1)
        for _ in range(a.ppo_epochs):
            if recurrent:  # whole unrolls, so the LSTM re-runs each from its stored first state
                order = torch.randperm(envs, generator=self.generator, device=self.device)
            else:  # single steps, as CleanRL shuffles its flat batch (autoreset steps weighted 0 below)
                order = torch.randperm(steps * envs, generator=self.generator, device=self.device)
            for idx in torch.tensor_split(order, a.ppo_minibatches):
                if recurrent:
                    mb = batch.columns(idx)
                    out = self.network.replay(mb.obs, mb.state, mb.starts, mb.actions, mb.rewards, mb.inputs)
                    logits, values, mask = out.logits[:-1], out.values[:-1], mb.mask
                    actions = mb.actions

                    def pick(x: torch.Tensor, i: torch.Tensor = idx) -> torch.Tensor:
                        return x[:, i]  # the minibatch's env columns
                else:
                    flat_obs = batch.obs[:-1].reshape(steps * envs, *batch.obs.shape[2:])
                    logits, values = self.network(flat_obs[idx])
                    actions = batch.actions.reshape(-1)[idx]
                    mask = flat_mask[idx]  # 0 on autoreset steps: dropped from every mean

                    def pick(x: torch.Tensor, i: torch.Tensor = idx) -> torch.Tensor:
                        return x.reshape(-1)[i]  # the minibatch's steps of the flattened [T * B] batch
                log_p_a, entropy = log_prob_entropy(logits, actions)
                adv = shape_advantages(pick(adv_all), mask, a.normalize_advantages, a.clip_advantages)
                policy_loss, ratio, clip_fraction = ppo_policy_loss(log_p_a, pick(old_log_p_all), adv, mask,
                                                                    a.ppo_clip)
                value_loss = torch.zeros((), device=self.device)
                for (returns_k, mask_k), old_k, values_k in zip(streams, old_values_all, self._stream_values(values)):
                    returns, old_values = pick(returns_k), pick(old_k)
                    value_err = (values_k - returns) ** 2
                    if a.ppo_clip_value:
                        clipped = old_values + (values_k - old_values).clamp(-a.ppo_clip, a.ppo_clip)
                        value_err = torch.max(value_err, (clipped - returns) ** 2)
                    value_loss = value_loss + 0.5 * masked_mean(value_err, pick(mask_k))
                entropy_mean = masked_mean(entropy, mask)
                total = policy_loss + a.value_coef * value_loss - a.entropy_coef * entropy_mean
                core: dict[str, torch.Tensor] = {}
                if recurrent:
                    total = total + self._core_terms(out, mask, masked_mean, core)
                norm = self._step(total)
                with torch.no_grad():
                    log_ratio = torch.log(ratio)
                    approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)  # Schulman's low-variance estimator
                minibatches += 1
                for key, value in (("policy_loss", policy_loss), ("value_loss", value_loss),
                                   ("entropy", entropy_mean), ("approx_kl", approx_kl),
                                   ("clip_fraction", clip_fraction), ("grad_norm", norm), *core.items()):
                    value = value.detach()
                    sums[key] = sums[key] + value if key in sums else value
        stats: dict[str, float | torch.Tensor] = {
            k if "/" in k else f"losses/{k}": v / minibatches for k, v in sums.items()}
        stats["losses/value_mean"] = masked_mean(old_values_all[0], batch.mask)
        parts: dict[str, torch.Tensor] = {}
        self._intrinsic_stats(batch, values_all, parts)
        stats.update(parts)
        return stats
