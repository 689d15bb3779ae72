"""STRAW as a network the actor-critic learner trains: a :class:`agents.actor_critic.core.PolicyCore`
(``initial_state``, ``step``, ``step_inputs``, ``replay``, ``replay_stats``) around
:class:`agents.straw.core.STRAWCore`.

- **Features** (the paper's feature extractor, Sec. 5): the ``network`` section's torso and hidden layer (Atari: the
  A3C torso, 16 8x8/4 and 32 4x4/2, then 128 units, as the paper; the maze and MinAtar: one 3x3 convolution).
- **Gates are drawn one step ahead.** After step t the network draws the gate of step t + 1 from
  ``c_t[0]`` (and STRAWe's noise for it) and keeps both in the state (``gate``, ``noise``). So when an unroll of
  T steps ends, the gate of its bootstrap step is already known, and the learner's replay computes the bootstrap
  value the actor would have (a plan that shifts, or one re-planned), not a guess. Both are the network's
  :meth:`STRAWNetwork.step_inputs`: the actor records them at every step.
- **The learner's replay** (:meth:`STRAWNetwork.replay`) re-runs each unroll from the plans stored at its start
  with the recorded gates and noise (:meth:`~agents.straw.core.STRAWCore.unroll`) and returns the core's loss per
  step, ``alpha * KL`` on re-planning steps plus ``lambda * c_{t-1}[0]`` (``straw.kl_weight``,
  ``straw.commitment_cost``), which the learner adds to the actor-critic objective, and the gates it applied
  (``Replay.per_step["gates"]``), from which :meth:`STRAWNetwork.replay_stats` computes
  ``charts/committed_fraction`` and ``charts/macro_action_length``.
- **Unroll length vs the paper's cut.** The paper cuts its A3C rollouts after 40 forward passes of the network
  (re-planning steps), so a rollout's length in environment steps varies with how much the agent commits. Ours
  counts environment steps, committed ones included (``agent.unroll_length``, a fixed T_u): the runtime's
  synchronous batches need equal lengths. With a committed fraction f, one of our unrolls holds about
  ``T_u (1 - f)`` forward passes.
"""

from __future__ import annotations

import torch
from torch import nn

from agents.actor_critic.config import ACNetworkConfig
from agents.actor_critic.core import Replay, State
from agents.actor_critic.networks import torso_kind
from agents.straw.config import StrawSettings
from agents.straw.core import STRAWCore
from agents.torsos import make_torso


class STRAWNetwork(nn.Module):
    """STRAW / STRAWe policy and value for the actor-critic learner (see the module docstring).

    :param obs_shape: one observation. :param num_actions: |A|.
    :param net: the ``network`` section (torso, hidden width of the features).
    :param straw: the ``straw`` section (T, K, h's width, STRAWe, alpha, lambda).
    :param input_divisor: what uint8 observations are divided by (the env's ``EnvSpec.obs_high``).
    """

    #: The state is the plans: the learner replays whole unrolls from the plans stored at their start.
    recurrent = True

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, net: ACNetworkConfig, straw: StrawSettings,
                 input_divisor: float | None = None) -> None:
        super().__init__()
        torso, width = make_torso(tuple(obs_shape), torso_kind(tuple(obs_shape), str(net.torso)),
                                  input_divisor=input_divisor)
        features = nn.Sequential(torso, nn.Linear(width, net.hidden), nn.ReLU())
        self.num_actions = num_actions
        self.core = STRAWCore(features, net.hidden, num_actions, plan_len=straw.plan_len,
                              num_filters=straw.num_filters, hidden=straw.hidden, noisy=straw.noisy,
                              latent_dim=straw.latent_dim, commit_patch=straw.commit_patch,
                              attention_init=str(straw.attention_init),
                              commit_init_centre=straw.commit_init_centre,
                              attention_centre=str(straw.attention_centre), commit_centre=str(straw.commit_centre),
                              value_head=str(straw.value_head), write_intensity=str(straw.write_intensity),
                              intensity_bound=float(straw.intensity_bound))
        self.kl_weight = float(straw.kl_weight)
        self.commitment_cost = float(straw.commitment_cost)

    @property
    def features(self) -> nn.Module:
        """The feature extractor (torso + hidden layer): it runs only on re-planning steps in the actor."""
        return self.core.features

    def _draws(self, commit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The next step's gate ``[B]`` (0/1 float, drawn from ``commit[:, 0]``) and STRAWe noise ``[B, latent]``."""
        no_start = torch.zeros(commit.shape[0], dtype=torch.bool, device=commit.device)
        gate = self.core.sample_gates({"commit": commit}, no_start).float()
        return gate, torch.randn(commit.shape[0], self.core.latent_dim, device=commit.device)

    def initial_state(self, batch: int) -> State:
        """The plans of ``batch`` fresh envs, and the first step's gate (1: re-plan) and noise."""
        state = self.core.initial_state(batch)
        gate, noise = self._draws(state["commit"])
        return {**state, "gate": torch.ones_like(gate), "noise": noise}

    def step(self, obs: torch.Tensor, state: State, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, State]:
        """The actor's step: logits ``[B, A]``, values ``[B]`` and the next state (the plans after this step, the
        next step's gate and noise). The feature extractor runs only on the envs whose gate is 1 (or that start a
        game).

        :param obs: uint8 ``[B, *obs_shape]``. :param state: the state entering this step.
        :param starts: bool ``[B]``, True where ``obs`` is the first observation of a game.
        """
        plans = {"plan": state["plan"], "commit": state["commit"]}
        noise = state["noise"] if self.core.noisy else None
        logits, values, after, _ = self.core.step(obs, plans, starts, state["gate"] > 0.5, noise)
        gate, next_noise = self._draws(after["commit"])
        return logits, values, {**after, "gate": gate, "noise": next_noise}

    def step_inputs(self, state: State) -> dict[str, torch.Tensor]:
        """The gate (0/1 float ``[B]``) and STRAWe noise ``[B, latent]`` drawn for the step ``state`` enters: the
        learner's replay applies the same."""
        return {"gate": state["gate"], "noise": state["noise"]}

    def replay(self, obs: torch.Tensor, state: State, starts: torch.Tensor, actions: torch.Tensor,
               rewards: torch.Tensor, inputs: dict[str, torch.Tensor] | None = None,
               bootstrap_grad: bool = True) -> Replay:
        """The learner's pass over unrolls with the actor's gates and noise: logits ``[T + 1, B, A]``, values
        ``[T + 1, B]``, the core's loss per step (alpha KL + lambda c_{t-1}[0]) and, per step, the gates applied
        (``gates``, 1 where the step ran the whole network), the re-planning probability and the KL.

        :param obs: uint8 ``[T + 1, B, *obs_shape]``. :param state: the plans entering step 0.
        :param starts: bool ``[T + 1, B]``. :param actions, rewards: unused (no previous-action input).
        :param inputs: ``gate`` ``[T + 1, B]`` and ``noise`` ``[T + 1, B, latent]``, as the actor recorded them
            (:meth:`step_inputs`).
        :param bootstrap_grad: unused: the plans run in sequence, so the bootstrap step is computed with the rest.
        :raises ValueError: the recorded gates are missing.
        """
        if not inputs or "gate" not in inputs:
            raise ValueError("STRAW's replay needs the gates the actor drew (Unroll.inputs['gate']).")
        gates = inputs["gate"] > 0.5
        noise = inputs.get("noise") if self.core.noisy else None
        out = self.core.unroll(obs, {"plan": state["plan"], "commit": state["commit"]}, starts, gates, noise)
        applied = (gates | starts.to(torch.bool)).to(out.values.dtype)
        aux = self.kl_weight * out.kl + self.commitment_cost * out.replan_prob
        per_step = {"gates": applied, "replan_prob": out.replan_prob.detach(), "kl": out.kl.detach()}
        return Replay(out.logits, out.values, aux_loss=aux, per_step=per_step)

    def replay_stats(self, out: Replay, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """``losses/replan_prob`` (the mean probability of re-planning, c_{t-1}[0]), ``losses/kl`` (STRAWe's KL per
        re-planning step), ``charts/committed_fraction`` (the share of the learner's steps ``mask`` that followed
        the plan without running the network) and ``charts/macro_action_length`` (steps per re-plan)."""
        if not out.per_step or "gates" not in out.per_step:
            return {}
        gates = out.per_step["gates"][:-1]
        steps = mask.sum()
        replans = (gates * mask).sum()
        stats = {"charts/committed_fraction": 1.0 - replans / steps.clamp(min=1.0),
                 "charts/macro_action_length": steps / replans.clamp(min=1.0)}
        if "replan_prob" in out.per_step:
            stats["replan_prob"] = out.per_step["replan_prob"][:-1].mean()
        if "kl" in out.per_step:
            stats["kl"] = out.per_step["kl"][:-1].sum() / gates.sum().clamp(min=1.0)
        return {k: v.detach() for k, v in stats.items()}
