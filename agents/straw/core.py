"""STRAW and STRAWe: the planning core (Vezhnevets et al. 2016, "Strategic Attentive Writer for Learning
Macro-Actions", arXiv 1606.04695, Sec. 3-4), a policy core the actor-critic learner trains.

The core keeps two plans per env (the recurrent state, a dict of tensors with leading dim B):

- ``plan``: the action plan A ``[B, |A| + 1, T]``. Row r < |A| of column j holds the action logit of action r,
  j steps ahead; the last row is the value estimate, read and written with the same attention and split off
  before the softmax (Sec. 4). The step's action logits are the first column of the first |A| rows, its value
  the first column of the last row.
- ``commit``: the commitment plan c ``[B, T]``: ``c[:, j]`` is the probability of re-planning j + 1 steps ahead;
  ``c[:, 0]`` is the probability for the NEXT step's gate.

One step t with gate ``g_t`` (Sec. 3.1-3.2; rho is :func:`~agents.straw.attention.shift`):

- ``g_t = 0`` (commit): ``A_t = rho(A_{t-1})``, ``c_t = rho(c_{t-1})``; the feature network is not run.
- ``g_t = 1`` (re-plan): ``z = features(obs)`` (STRAWe: a sample of ``N(mu, sigma^2 I)``, Sec. 3.3);
  ``psi^A = f_psi(z)``, ``beta = read(A_{t-1}, psi^A)``, ``xi = h([beta, z])`` (the paper's xi; h a 2-layer
  MLP of 64 ReLU units), ``p = f_p(xi)`` ``[|A| + 1, K]``, ``A_t = rho(A_{t-1}) + g_t write(p, psi^A)``;
  ``psi^c = f_c([psi^A, xi])`` with psi^A and xi detached (no gradient from the commitment module into the planning
  module, Sec. 5.1), ``c_t = g_t sigmoid(b + write(e, psi^c)) + (1 - g_t) rho(c_{t-1})`` with one filter (K = 1),
  the fixed patch ``e = 40`` and the learnable scalar bias b: the commitment plan is overwritten, not added to.
  Note (the paper's equations): the read looks at A_{t-1} before the shift, the write lands on the shifted plan.

The gate contract (ours; the paper: ``g_t ~ Bernoulli(c_{t-1}[1])``, its column 1 being our column 0):

- the caller (the actor) draws the gate of step t from the state entering step t, ``state["commit"][:, 0]``
  (:meth:`STRAWCore.sample_gates`), and passes it to :meth:`STRAWCore.step`; ``info["replan_prob"]`` is that same
  probability, ``c_{t-1}[0]``, with gradient (the learner's commitment cost ``lambda * replan_prob``);
- at a game start (``starts``) the plans are reset to their initial values *and* the gate is forced to 1, in the
  actor and in the learner alike, so every game begins by planning;
- the initial state (ours; the paper does not say): ``A = 0``, ``c = 0`` except ``c[:, 0] = 1``, so the first
  step re-plans even before the start mask forces it.

Gradients in training (:meth:`STRAWCore.unroll`):

- the gate goes straight through (Bengio et al. 2013, as the paper asks): ``g_st = g + (c0 - c0.detach())`` with
  ``c0 = c_{t-1}[0]``; its value is exactly g (the bracket is exactly 0), its gradient is that of c0, so the
  gradient the loss sends to g_t reaches the commitment module through ``c_{t-1}[0]``;
- the learner computes the would-be re-plan at every step, committed steps included (the features run batched
  over all steps, which is cheap), and multiplies it by g_st: the forward values are those of the actor (a plan
  update lands only where the recorded gate is 1, ``0 * write = 0``), and at ``g = 0`` steps the straight-through
  gradient is complete: ``dA_t / dg = write(p, psi^A)`` and ``dc_t / dg = new_c - rho(c_{t-1})``, the change
  re-planning would have made. Computing nothing at ``g = 0`` would leave ``dc_t / dg = -rho(c_{t-1})`` (a
  "re-plan" that writes zeros), a biased estimator that pushes c0 on a made-up effect; the alternative of no
  straight-through gradient at committed steps would teach the commitment plan only when it re-planned, never
  from the steps where re-planning would have helped.
- STRAWe (Sec. 3.3): ``KL(N(mu, sigma^2 I) || N(0, I))`` in nats is charged only on re-planning steps: ``kl`` is
  ``g * KL`` with the hard gate (exactly 0 on committed steps; the KL does not go straight through, the
  commitment cost already prices re-planning). The paper's loss prints the commitment cost as ``lambda c_t[t]``;
  we read it as lambda times the probability of re-planning at step t, ``c_{t-1}[0]`` (the first column of the
  commitment plan the gate of step t is drawn from), which :meth:`STRAWCore.unroll` returns as ``replan_prob``.
  The noise of the reparameterisation is the actor's, replayed by the learner (``info["noise"]``, zeros on
  committed steps, where the learner's would-be re-plan then uses z = mu).

Three settings that depart from the paper, each off by default (the paper's form), each for one measured reason
STRAW does not learn here (README's STRAW section, ``launch/results/straw/fixes.md``):

- ``attention_centre="bounded"`` (ours): the action plan's grid centre squashed into the first K columns and its
  stride bounded (:func:`~agents.straw.attention.attention_params` with ``window=K``), so the attention cannot drift
  off the columns that the next steps read, where DRAW's centre can, for good.
- ``commit_centre="bounded"`` (ours): the commitment filter's centre squashed the same way into the first K columns,
  so its write always reaches the columns the gate reads and ``f_c`` gets gradient from the first update (under
  DRAW's centre it starts in the plan's middle and gets exactly 0). The paper's filter, patch, bias and sigmoid are
  kept: the filter still says per state where to re-plan, and the bias b the hazard elsewhere.
- ``value_head="features"`` or ``"both"`` (ours): a linear value head on the feature vector, computed at every step,
  instead of (``features``) or added to (``both``) the plan's value row. The plan's value row is written at the
  last re-plan, without the current observation; on committed steps that is a stale guess, and its error
  dominated the gradient (measured). The price: the feature network then runs on every step in the actor, not only
  on re-planning steps (h, f_psi, f_p and f_c still run only on re-planning steps). The value row is still
  written with the plan (``features``: read by nothing but the next re-plan's attentive read).

A fourth, for a cause measured after the first three were fixed (``launch/results/straw/fixes.md``), off by default:

- ``write_intensity="bounded"`` (ours): the action plan's attention intensity gamma squashed into ``(1 / c, c)``,
  ``c = intensity_bound`` (:func:`~agents.straw.attention.bounded_intensity`), where DRAW's ``exp(log gamma~)`` is
  unbounded. DRAW's write (eq. 29) divides by gamma, as STRAW's (Sec. 3) does, and a unit patch came to write 207
  and 5.7e3 into the current column (the latter in a run that collapsed to a deterministic policy). The read and the
  write of the action plan use the bounded gamma; the commitment filter keeps DRAW's.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from agents.straw.attention import NUM_PARAMS, attention_params, filterbank, read, shift, write

State = dict[str, torch.Tensor]

#: The paper's defaults (Sec. 5.1): plan width T, number of read/write filters K, h's width, z's size in STRAWe.
DEFAULT_PLAN_LEN = 500
DEFAULT_NUM_FILTERS = 10
DEFAULT_HIDDEN = 64
DEFAULT_LATENT = 128
#: The commitment write's fixed patch value (Sec. 3.2).
COMMIT_PATCH = 40.0
#: Where the attention's centre may go: DRAW's (the paper's) or bounded to the first K columns (ours).
CENTRES = ("paper", "bounded")
#: Where the value comes from: the plan's value row (the paper's), a linear head on the features, or their sum (ours).
VALUE_HEADS = ("plan", "features", "both")
#: The action plan's attention intensity gamma: DRAW's exp(log gamma~) (the paper's) or squashed into (1/c, c) (ours).
INTENSITIES = ("paper", "bounded")
#: c of the bounded intensity (ours): gamma in (1/4, 4), so the write's gain varies at most 16x between states.
DEFAULT_INTENSITY_BOUND = 4.0


class STRAWUnroll(NamedTuple):
    """The learner's replay of an unroll of ``T_u + 1`` steps over B envs.

    :ivar logits: ``[T_u + 1, B, |A|]`` action logits. :ivar values: ``[T_u + 1, B]`` value estimates.
    :ivar replan_prob: ``[T_u + 1, B]`` ``c_{t-1}[0]``, the probability each step's gate was drawn from (1 at game
        starts), with gradient: the commitment cost is ``lambda * replan_prob``.
    :ivar kl: ``[T_u + 1, B]`` STRAWe's KL in nats on re-planning steps, 0 on committed steps (all 0 for STRAW).
    """

    logits: torch.Tensor
    values: torch.Tensor
    replan_prob: torch.Tensor
    kl: torch.Tensor


class STRAWCore(nn.Module):
    """The STRAW / STRAWe planning core (see the module docstring for the equations and the gate contract).

    :param features: the torso + fc mapping uint8 observations ``[N, *obs_shape]`` to float ``[N, feature_dim]``;
        called only on re-planning rows by :meth:`step` (a counting wrapper counts the network's runs).
    :param feature_dim: F, the width of ``features``' output.
    :param num_actions: |A|.
    :param plan_len: T, the plans' width in steps (paper: 500).
    :param num_filters: K, the action plan's read/write filters (paper: 10).
    :param hidden: h's width (paper: 64).
    :param noisy: STRAWe: ``z ~ N(mu, sigma^2 I)`` of ``latent_dim`` dimensions from the features, by the
        reparameterisation trick (linear maps to mu and log sigma, sigma the standard deviation).
    :param latent_dim: z's size in STRAWe (paper: 128); unused without ``noisy`` (then z is the features).
    :param commit_patch: the commitment write's fixed patch value (paper: 40).
    :param attention_init: "draw" (f_psi as PyTorch initialises it, around DRAW's grid) or "near" (the K filters
        start on the next K columns, unit stride; ours, see :class:`agents.straw.config.StrawSettings`).
    :param commit_init_centre: 0 (PyTorch's initialisation of f_c: the commitment filter at the middle of its
        range, the plan's for DRAW's centre, the first K columns' for the bounded one), or m > 0: the filter starts m
        columns ahead (ours; see :class:`agents.straw.config.StrawSettings`).
    :param attention_centre: "paper" (DRAW's centre and stride) or "bounded" (ours: centre in the first K columns,
        stride at most the whole plan's; see the module docstring).
    :param commit_centre: "paper" (DRAW's centre for the commitment filter) or "bounded" (ours: in the first K
        columns).
    :param value_head: "plan" (the paper's: the value row of A's first column), "features" (ours: a linear map of
        the features, every step) or "both" (their sum).
    :param write_intensity: "paper" (DRAW's gamma = exp(log gamma~), unbounded) or "bounded" (ours: the action
        plan's gamma in ``(1 / intensity_bound, intensity_bound)``; see the module docstring).
    :param intensity_bound: c >= 1 of the bounded intensity (1: gamma fixed at 1); unused with "paper".
    """

    def __init__(self, features: nn.Module, feature_dim: int, num_actions: int, *,
                 plan_len: int = DEFAULT_PLAN_LEN, num_filters: int = DEFAULT_NUM_FILTERS,
                 hidden: int = DEFAULT_HIDDEN, noisy: bool = False, latent_dim: int = DEFAULT_LATENT,
                 commit_patch: float = COMMIT_PATCH, attention_init: str = "draw",
                 commit_init_centre: float = 0.0, attention_centre: str = "paper", commit_centre: str = "paper",
                 value_head: str = "plan", write_intensity: str = "paper",
                 intensity_bound: float = DEFAULT_INTENSITY_BOUND) -> None:
        super().__init__()
        if num_actions < 1 or feature_dim < 1:
            raise ValueError(f"STRAW needs num_actions >= 1 and feature_dim >= 1, got {num_actions}, {feature_dim}")
        if plan_len < 2 or num_filters < 1 or num_filters > plan_len:
            raise ValueError(f"STRAW needs a plan of T >= 2 columns and 1 <= K <= T filters, got T={plan_len}, "
                             f"K={num_filters}: set plan_len / num_filters")
        self.features = features
        self.num_actions = num_actions
        self.rows = num_actions + 1  # the |A| action rows and the value row (Sec. 4)
        self.plan_len = plan_len
        self.num_filters = num_filters
        self.noisy = noisy
        self.latent_dim = latent_dim if noisy else 0
        self.commit_patch = float(commit_patch)
        z_dim = latent_dim if noisy else feature_dim
        if noisy:
            self.z_mu = nn.Linear(feature_dim, latent_dim)
            self.z_log_sigma = nn.Linear(feature_dim, latent_dim)
        # Planning module (Sec. 3.1): f_psi, h, f_p. Commitment module (Sec. 3.2): f_c and the bias b.
        self.f_psi = nn.Linear(z_dim, NUM_PARAMS)
        self.h = nn.Sequential(nn.Linear(self.rows * num_filters + z_dim, hidden), nn.ReLU(),
                               nn.Linear(hidden, hidden), nn.ReLU())
        self.f_p = nn.Linear(hidden, self.rows * num_filters)
        self.f_c = nn.Linear(NUM_PARAMS + hidden, NUM_PARAMS)
        if attention_init not in ("draw", "near"):
            raise ValueError(f"attention_init={attention_init!r}: choose 'draw' or 'near'")
        for key, value, choices in (("attention_centre", attention_centre, CENTRES),
                                    ("commit_centre", commit_centre, CENTRES),
                                    ("value_head", value_head, VALUE_HEADS),
                                    ("write_intensity", write_intensity, INTENSITIES)):
            if value not in choices:
                raise ValueError(f"{key}={value!r}: choose one of {', '.join(repr(c) for c in choices)}")
        #: W of the bounded centres (None: DRAW's centre): the action plan's K filters and the commitment filter both
        #: stay within the first K columns, where the action plan's bounded grid writes.
        self.attention_window = num_filters if attention_centre == "bounded" else None
        self.commit_window = num_filters if commit_centre == "bounded" else None
        self.value_head_kind = value_head
        if write_intensity == "bounded" and not (math.isfinite(intensity_bound) and intensity_bound >= 1.0):
            raise ValueError(f"intensity_bound={intensity_bound}: the bounded intensity needs a finite c >= 1 "
                             "(gamma in (1 / c, c); 1 fixes gamma at 1)")
        #: c of the action plan's bounded intensity (None: DRAW's unbounded gamma).
        self.intensity_bound = float(intensity_bound) if write_intensity == "bounded" else None
        if commit_init_centre > 0 and self.commit_window is not None and commit_init_centre + 0.5 >= num_filters:
            raise ValueError(f"commit_init_centre={commit_init_centre} lies outside the bounded commitment filter's "
                             f"first {num_filters} columns: choose 0 < m < {num_filters - 0.5}")
        if value_head != "plan":
            # Ours: created only when chosen, so checkpoints of the paper's network (no such parameter) still load.
            # Zero weights: the head starts at 0, like the empty plan's value row.
            self.value_head = nn.Linear(feature_dim, 1)
            with torch.no_grad():
                self.value_head.weight.zero_()
                self.value_head.bias.zero_()
        if attention_init == "near" and num_filters > 1 and self.attention_window is not None:
            # The bounded centre and stride put filter i on column i at raw zeros (attention.py); zero weights so
            # that every observation starts there.
            with torch.no_grad():
                self.f_psi.weight.zero_()
                self.f_psi.bias.zero_()
        elif attention_init == "near" and num_filters > 1:
            # Filter i (1-based) on column i: centre g = (K + 1) / 2, so g~ = (K + 1) / (T + 1) - 1 (eq. 22), and
            # stride 1, so delta~ = (K - 1) / (T - 1) (eq. 24); sigma^2 = gamma = 1. Zero weights: every observation
            # starts from that grid (the centre moves (T + 1) / 2 columns per unit of g~, so even small random weights
            # scatter it at T = 500), and the gradient, which a zero weight does not block, moves it from there.
            with torch.no_grad():
                self.f_psi.weight.zero_()
                self.f_psi.bias.copy_(torch.tensor([(num_filters + 1.0) / (plan_len + 1.0) - 1.0, 0.0,
                                                    math.log((num_filters - 1.0) / (plan_len - 1.0)), 0.0]))
        if commit_init_centre > 0 and self.commit_window is None:
            # Centre g = (T + 1) / 2 (g~ + 1) on 1-based column m + 1 (m steps ahead of the current column 1):
            # g~ = 2 (m + 1) / (T + 1) - 1, the bias of g~'s output; the weights stay small and random.
            with torch.no_grad():
                self.f_c.bias[0] = 2.0 * (commit_init_centre + 1.0) / (plan_len + 1.0) - 1.0
        elif commit_init_centre > 0:
            # Bounded: m + 1 = 0.5 + W sigmoid(g~), so g~ = logit((m + 0.5) / W).
            frac = (commit_init_centre + 0.5) / num_filters
            with torch.no_grad():
                self.f_c.bias[0] = math.log(frac / (1.0 - frac))
        self.commit_bias = nn.Parameter(torch.zeros(()))

    # ----------------------------------------------------------------------------------------------- state

    def initial_state(self, batch: int) -> State:
        """The plans of ``batch`` fresh envs (ours): ``plan`` zeros ``[batch, |A| + 1, T]``, ``commit``
        ``[batch, T]`` zeros but for ``commit[:, 0] = 1`` (the first step re-plans)."""
        device = self.f_psi.weight.device
        commit = torch.zeros(batch, self.plan_len, device=device)
        commit[:, 0] = 1.0
        return {"plan": torch.zeros(batch, self.rows, self.plan_len, device=device), "commit": commit}

    @staticmethod
    def sample_gates(state: State, starts: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The actor's gates for the step ``state`` enters: ``g ~ Bernoulli(state["commit"][:, 0])``, forced to 1
        where ``starts`` (bool ``[B]``). :return: bool ``[B]``."""
        prob = state["commit"][:, 0]
        draw = torch.rand(prob.shape, generator=generator, device=prob.device) < prob
        return draw | starts.to(device=prob.device, dtype=torch.bool)

    def _reset(self, state: State, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The plans entering a step, reset to the initial state where ``starts`` (bool ``[B]``)."""
        init = self.initial_state(starts.shape[0])
        keep = ~starts
        plan = torch.where(keep[:, None, None], state["plan"], init["plan"])
        commit = torch.where(keep[:, None], state["commit"], init["commit"])
        return plan, commit

    # --------------------------------------------------------------------------------------------- modules

    def _encode(self, x: torch.Tensor, noise: torch.Tensor | None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z, the KL in nats and the noise used, of features ``x`` ``[n, F]``.

        STRAW: ``z = x``, KL 0, noise ``[n, 0]``. STRAWe (Sec. 3.3): ``z = mu + sigma * noise``,
        ``KL(N(mu, sigma^2 I) || N(0, I)) = 0.5 * sum(mu^2 + sigma^2 - 1 - 2 log sigma)``; ``noise`` ``[n, latent]``
        is drawn from N(0, I) when None.
        """
        if not self.noisy:
            return x, x.new_zeros(x.shape[0]), x.new_zeros(x.shape[0], 0)
        mu, log_sigma = self.z_mu(x), self.z_log_sigma(x)
        if noise is None:
            noise = torch.randn_like(mu)
        z = mu + torch.exp(log_sigma) * noise
        kl = 0.5 * (mu.pow(2) + torch.exp(2.0 * log_sigma) - 1.0 - 2.0 * log_sigma).sum(dim=1)
        return z, kl, noise

    def _replan(self, plan_prev: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The re-planning computation on n rows: the action-plan write ``[n, |A| + 1, T]`` (to be added to
        rho(A_{t-1})) and the new commitment plan ``[n, T]`` (to overwrite it), Sec. 3.1-3.2.

        :param plan_prev: A_{t-1} ``[n, |A| + 1, T]`` (before the shift). :param z: ``[n, z_dim]``.
        """
        n = z.shape[0]
        raw = self.f_psi(z)
        att = attention_params(raw, self.plan_len, self.num_filters, self.attention_window, self.intensity_bound)
        fb = filterbank(att, self.plan_len, self.num_filters)  # one filterbank for the read and the write
        beta = read(plan_prev, att, self.num_filters, fb)  # [n, |A| + 1, K]
        xi = self.h(torch.cat([beta.flatten(1), z], dim=1))
        patch = self.f_p(xi).view(n, self.rows, self.num_filters)
        plan_write = write(patch, att, self.plan_len, fb)
        # Sec. 5.1: no gradient from the commitment module into the planning module through psi^A and xi.
        raw_c = self.f_c(torch.cat([raw.detach(), xi.detach()], dim=1))
        att_c = attention_params(raw_c, self.plan_len, 1, self.commit_window)
        e = z.new_full((n, 1, 1), self.commit_patch)
        new_commit = torch.sigmoid(self.commit_bias + write(e, att_c, self.plan_len).squeeze(1))
        return plan_write, new_commit

    def _advance(self, plan_prev: torch.Tensor, commit_prev: torch.Tensor, gates: torch.Tensor,
                 plan_write: torch.Tensor, new_commit: torch.Tensor,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A_t, c_t and c_{t-1}[0] from the plans entering the step and the (would-be) re-plan.

        :param gates: bool ``[B]``. :param plan_write: ``[B, |A| + 1, T]``; :param new_commit: ``[B, T]``.
        """
        c0 = commit_prev[:, 0]
        # Straight-through (Bengio et al. 2013): the bracket is exactly 0 in value (so g_st == g exactly, which
        # `g + c0 - c0.detach()` would not guarantee in floating point) and carries c0's gradient.
        g_st = gates.to(c0.dtype) + (c0 - c0.detach())
        plan = shift(plan_prev) + g_st[:, None, None] * plan_write
        commit = g_st[:, None] * new_commit + (1.0 - g_st[:, None]) * shift(commit_prev)
        return plan, commit, c0

    def _heads(self, plan: torch.Tensor, x: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[B, |A|]`` and values ``[B]``: the first column of A_t, the value row split off (Sec. 4); with
        a feature value head (ours), its output on the step's features ``x`` ``[B, F]`` instead or added.

        :param x: the features of every row (required unless ``value_head`` is "plan"; ignored then).
        """
        logits, plan_value = plan[:, : self.num_actions, 0], plan[:, self.num_actions, 0]
        if self.value_head_kind == "plan":
            return logits, plan_value
        if x is None:
            raise ValueError(f"value_head={self.value_head_kind!r} needs the features of every step")
        feature_value = self.value_head(x).squeeze(1)
        return logits, feature_value if self.value_head_kind == "features" else plan_value + feature_value

    # ------------------------------------------------------------------------------------------ public API

    def step(self, obs: torch.Tensor, state: State, starts: torch.Tensor, gates: torch.Tensor,
             noise: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor, State, dict[str, torch.Tensor]]:
        """The actor's step: ``features`` runs only on the rows whose gate is 1, and not at all when none is.

        :param obs: uint8 ``[B, *obs_shape]``. :param state: the plans entering the step.
        :param starts: bool ``[B]``, True where ``obs`` starts a game (plans reset, gate forced to 1).
        :param gates: bool or 0/1 float ``[B]``, drawn from ``state["commit"][:, 0]`` (:meth:`sample_gates`).
        :param noise: STRAWe only: ``[B, latent_dim]`` N(0, I) noise (rows of committed steps ignored); drawn
            when None.
        :return: logits ``[B, |A|]``, values ``[B]``, the next state (``commit[:, 0]`` is the probability of the
            next step's gate), and info: ``replan_prob`` ``[B]`` (``c_{t-1}[0]``, the probability this step's gate
            was drawn from, 1 at starts), ``gates`` bool ``[B]`` (as applied: starts forced), ``kl`` ``[B]`` (nats,
            0 on committed steps) and ``noise`` ``[B, latent_dim]`` (zeros on committed rows; ``[B, 0]`` for
            STRAW): store ``gates`` and ``noise`` for :meth:`unroll`.
        """
        starts = starts.to(torch.bool)
        gates = gates.to(torch.bool) | starts
        plan_prev, commit_prev = self._reset(state, starts)
        batch = obs.shape[0]
        plan_write = plan_prev.new_zeros(plan_prev.shape)
        new_commit = commit_prev.new_zeros(commit_prev.shape)
        kl = commit_prev.new_zeros(batch)
        noise_used = commit_prev.new_zeros(batch, self.latent_dim)
        rows = gates.nonzero().squeeze(1)
        # A feature value head needs every row's features (ours); the paper's runs the network on re-planning rows.
        x_all = self.features(obs) if self.value_head_kind != "plan" else None
        if rows.numel() > 0:
            # Only the re-planning rows run the planning network (the paper's "economic computation").
            x_rows = self.features(obs[rows]) if x_all is None else x_all[rows]
            z, kl_rows, noise_rows = self._encode(x_rows, None if noise is None else noise[rows])
            write_rows, commit_rows = self._replan(plan_prev[rows], z)
            plan_write = plan_write.index_copy(0, rows, write_rows)
            new_commit = new_commit.index_copy(0, rows, commit_rows)
            kl = kl.index_copy(0, rows, kl_rows)
            noise_used = noise_used.index_copy(0, rows, noise_rows.to(noise_used.dtype))
        plan, commit, c0 = self._advance(plan_prev, commit_prev, gates, plan_write, new_commit)
        logits, values = self._heads(plan, x_all)
        info = {"replan_prob": c0, "gates": gates, "kl": kl, "noise": noise_used}
        return logits, values, {"plan": plan, "commit": commit}, info

    def unroll(self, obs: torch.Tensor, state: State, starts: torch.Tensor, gates: torch.Tensor,
               noise: torch.Tensor | None = None) -> STRAWUnroll:
        """The learner's replay of an unroll from the plans the actor stored at its start, with the actor's gates.

        The features run once, batched over all ``T_u + 1`` steps; the would-be re-plan is computed at every step
        and applied through the straight-through gate, so the forward values equal the actor's (a plan changes
        only where the recorded gate is 1) and the straight-through gradient at committed steps is complete (see
        the module docstring).

        :param obs: uint8 ``[T_u + 1, B, *obs_shape]``. :param state: the plans entering step 0.
        :param starts: bool ``[T_u + 1, B]``. :param gates: bool or 0/1 float ``[T_u + 1, B]``, as the actor drew
            them (starts are forced to 1 here too).
        :param noise: STRAWe: ``[T_u + 1, B, latent_dim]``, the actor's ``info["noise"]``; required.
        :raises ValueError: STRAWe without the actor's noise, or inputs whose leading dims disagree.
        """
        steps, batch = obs.shape[:2]
        if starts.shape != (steps, batch) or gates.shape != (steps, batch):
            raise ValueError(f"starts {tuple(starts.shape)} and gates {tuple(gates.shape)} must be [T_u + 1, B] = "
                             f"{(steps, batch)} like obs' leading dims")
        if self.noisy and noise is None:
            raise ValueError("STRAWe's unroll needs the noise the actor drew (step's info['noise'], stacked to "
                             "[T_u + 1, B, latent_dim]): without it the replay samples other plans than the actor's")
        starts = starts.to(torch.bool)
        gates = gates.to(torch.bool) | starts
        flat_noise = None if noise is None else noise.reshape(steps * batch, -1)
        x_flat = self.features(obs.reshape(steps * batch, *obs.shape[2:]))
        z, kl_all, _ = self._encode(x_flat, flat_noise)
        z, kl_all = z.reshape(steps, batch, -1), kl_all.reshape(steps, batch)
        x = x_flat.reshape(steps, batch, -1)
        current = state
        logits, values, replan_prob, kl = [], [], [], []
        for t in range(steps):
            plan_prev, commit_prev = self._reset(current, starts[t])
            plan_write, new_commit = self._replan(plan_prev, z[t])
            plan, commit, c0 = self._advance(plan_prev, commit_prev, gates[t], plan_write, new_commit)
            step_logits, step_values = self._heads(plan, x[t])
            logits.append(step_logits)
            values.append(step_values)
            replan_prob.append(c0)
            # The hard gate: the KL is charged on re-planning steps only and is exactly 0 elsewhere.
            kl.append(gates[t].to(kl_all.dtype) * kl_all[t])
            current = {"plan": plan, "commit": commit}
        return STRAWUnroll(torch.stack(logits), torch.stack(values), torch.stack(replan_prob), torch.stack(kl))
