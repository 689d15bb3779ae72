"""Every setting of a STRAW / STRAWe run: the actor-critic tree (:class:`ActorCriticConfig`: env, network torso,
agent objective, runtime, run) plus a ``straw`` section for the planning core, selected by ``algo: straw``.

The paper (Vezhnevets et al. 2016) trains with A3C; what it leaves unstated we choose here and say so:

- the discount (0.99), RMSProp's settings (TensorFlow's RMSProp, lr 7e-4 annealed, alpha 0.99, eps 1e-5: A2C's)
  and the gradient clip (global norm 0.5 for A2C, 40 for IMPALA): the actor-critic presets' values;
- ``alpha`` (the KL weight of STRAWe) and ``lambda`` (the commitment cost): the paper tunes them per game and does
  not print the values; our defaults (1e-3 and 1e-3) keep both terms small beside the policy loss, and the
  presets say which they use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agents.actor_critic.config import ActorCriticConfig
from agents.actor_critic.config import validate as validate_actor_critic
from worldmodels.common.checks import Choice, require_nonnegative, require_positive

if TYPE_CHECKING:
    from agents.actor_critic.core import PolicyCore
    from agents.straw.network import STRAWNetwork


class AttentionInit(Choice):
    draw = "draw"
    near = "near"


class Centre(Choice):
    """Where an attention's centre may go: ``paper`` (DRAW's eq. 22, anywhere on the real line) or ``bounded``
    (ours: squashed into the plan's first K columns, :mod:`agents.straw.attention`)."""

    paper = "paper"
    bounded = "bounded"


class ValueHead(Choice):
    """Where the critic's value comes from: ``plan`` (the paper's value row), ``features`` (ours: a linear head on the
    features, every step) or ``both`` (their sum)."""

    plan = "plan"
    features = "features"
    both = "both"


class Intensity(Choice):
    """The action plan's attention intensity gamma: ``paper`` (DRAW's ``exp(log gamma~)``, unbounded) or ``bounded``
    (ours: in ``(1 / c, c)``, :func:`agents.straw.attention.bounded_intensity`)."""

    paper = "paper"
    bounded = "bounded"


@dataclass
class StrawSettings:
    plan_len: int = 500
    """T: the plans' width in steps (paper: 500)."""
    num_filters: int = 10
    """K: the action plan's read and write filters (paper: 10)."""
    hidden: int = 64
    """Width of h, the 2-layer MLP of the planning module (paper: 64)."""
    noisy: bool = False
    """STRAWe (Sec. 3.3): plan from a sample z ~ N(mu, sigma I) of the features (the reparameterisation trick) and
    charge its KL to N(0, I) on re-planning steps."""
    latent_dim: int = 128
    """z's size in STRAWe (paper: 128)."""
    kl_weight: float = 1e-3
    """alpha: the weight of STRAWe's KL term (charged only on re-planning steps; the paper does not print it)."""
    commitment_cost: float = 1e-3
    """lambda: the cost of re-planning, times the probability of re-planning at each step (c_{t-1}[0]; the
    paper prints "c_t[t]", see :mod:`agents.straw.core`)."""
    commit_patch: float = 40.0
    """The commitment write's fixed patch value (paper: 40)."""
    attention_init: AttentionInit = AttentionInit.draw
    """How the action plan's read/write attention starts (ours; the paper does not say). "draw": PyTorch's random
    linear map f_psi, around DRAW's grid (centre at the plan's middle, K filters spread over all T columns, each
    one column wide). With T = 100 or 500 the first filter lands a few columns off column 0 at random, so the write
    reaches the current step's logits and value with a weight near 0, and so does the gradient that could move it
    there (measured: 0.0014 of a patch on MinAtar, the attention later drifting off the plan; README's STRAW
    section). "near": the K filters start on the next K columns, unit stride, the same for every observation (f_psi's
    weights zero, its biases set), so each re-plan writes the next K steps from the start."""
    commit_init_centre: float = 0.0
    """Where the commitment write's filter is centred at initialisation, in plan columns ahead of the current step
    (ours; the paper does not say). 0: DRAW's initialisation, the middle of the plan ((T + 1) / 2). There the
    filter writes nothing into the first columns, the only ones the gate reads while macro-actions are short, so
    the commitment module's linear map gets exactly zero gradient and only the bias b learns (measured; see
    README's STRAW section). m > 0 starts the filter m columns ahead (``g~ = 2 (m + 1) / (T + 1) - 1``, in the bias of
    f_c), so that re-planning markers start a few steps ahead and the module learns where to put them. With
    ``commit_centre: bounded``, 0 leaves the filter at PyTorch's start, about the middle of the first K columns, and
    m must lie below K - 0.5."""
    attention_centre: Centre = Centre.paper
    """Where the action plan's read/write grid may go. "paper": DRAW's centre ``(T + 1) / 2 (g~ + 1)`` and stride
    ``(T - 1) / (K - 1) delta~``, which can drift off the plan's first columns, after which the gradient that could
    bring it back is exactly 0 (measured on MinAtar Breakout: README's STRAW section). "bounded" (ours): the centre
    squashed by a sigmoid into the first K columns and the stride into (0, max(2, (T - 1) / (K - 1))), 1 column at a
    zero input, so the writes always reach the columns the next steps read (:mod:`agents.straw.attention`)."""
    commit_centre: Centre = Centre.paper
    """Where the commitment write's filter may go. "paper": DRAW's centre; it starts in the plan's middle, where its
    write never reaches the columns the gate reads, so f_c gets exactly zero gradient and the committed fraction
    moves as one number for every state (measured). "bounded" (ours): the centre squashed into the first K columns,
    so f_c learns per state from the first update; the filter still marks where to re-plan and the bias b the
    hazard elsewhere."""
    value_head: ValueHead = ValueHead.plan
    """Where the critic's value comes from. "plan": the paper's value row, read from the plan's first column; on a
    committed step it was written at the last re-plan without the current observation (its error there was 3x that
    on re-planning steps, and the value term dominated the gradient: measured). "features" (ours): a linear head on
    the feature vector, computed at every step, so the feature network runs on committed steps too (the planning
    module does not). "both" (ours): the plan's value row plus the feature head."""
    write_intensity: Intensity = Intensity.paper
    """The action plan's attention intensity gamma, which scales the read and divides the write (DRAW eq. 29; STRAW
    Sec. 3). "paper": DRAW's ``gamma = exp(log gamma~)``, unbounded: a unit patch came to write 207 and 5.7e3 into the
    current step's column (the latter in a run that collapsed to a deterministic policy; measured in
    ``launch/results/straw/fixes.md``). "bounded" (ours): ``gamma = exp(log c tanh(log gamma~ / log c))`` in
    ``(1 / c, c)``, c = ``intensity_bound``; equal to DRAW's to first order at gamma = 1. The commitment filter keeps
    DRAW's gamma."""
    intensity_bound: float = 4.0
    """c >= 1 of ``write_intensity: bounded`` (ours): gamma in (1 / c, c), so the write's gain varies at most c^2
    between states (1: gamma fixed at 1, the write not divided). Read only when ``write_intensity`` is bounded."""


@dataclass
class StrawConfig(ActorCriticConfig):
    algo: str = "straw"
    """Algorithm: selects this schema (``reverie train`` reads it first)."""
    straw: StrawSettings = field(default_factory=StrawSettings)

    def build_network(self, obs_shape: tuple[int, ...], num_actions: int,
                      input_divisor: float | None = None) -> PolicyCore:
        """The policy core the actor-critic learner trains (the hook of :class:`ActorCriticConfig`): STRAW's,
        :meth:`straw_network`."""
        return self.straw_network(obs_shape, num_actions, input_divisor)

    def straw_network(self, obs_shape: tuple[int, ...], num_actions: int,
                      input_divisor: float | None = None) -> STRAWNetwork:
        """The STRAW network (a :class:`~agents.actor_critic.core.PolicyCore`): the ``network`` section's torso and
        hidden layer as the feature extractor, the ``straw`` section's core."""
        from agents.straw.network import STRAWNetwork

        return STRAWNetwork(obs_shape, num_actions, self.network, self.straw, input_divisor)


def validate(cfg: StrawConfig) -> None:
    """The actor-critic checks, plus the planning core's sizes and weights.

    :raises ValueError: naming the key, the bad value and what would be valid.
    """
    validate_actor_critic(cfg, algo="straw")
    s = cfg.straw
    require_positive({"straw.num_filters": s.num_filters, "straw.hidden": s.hidden,
                      "straw.latent_dim": s.latent_dim})
    require_nonnegative({"straw.kl_weight": s.kl_weight, "straw.commitment_cost": s.commitment_cost,
                         "straw.commit_init_centre": s.commit_init_centre})
    for key, value, kind in (("straw.attention_centre", s.attention_centre, Centre),
                             ("straw.commit_centre", s.commit_centre, Centre),
                             ("straw.value_head", s.value_head, ValueHead),
                             ("straw.write_intensity", s.write_intensity, Intensity),
                             ("straw.attention_init", s.attention_init, AttentionInit)):
        if str(value) not in {m.value for m in kind}:
            raise ValueError(f"{key}={value}: choose one of {', '.join(m.value for m in kind)}.")
    if not (math.isfinite(s.intensity_bound) and s.intensity_bound >= 1.0):
        raise ValueError(f"straw.intensity_bound={s.intensity_bound}: choose a finite c >= 1 (the bounded write "
                         "intensity keeps gamma in (1 / c, c); 1 fixes gamma at 1).")
    if str(s.commit_centre) == "bounded" and s.commit_init_centre > 0 and s.commit_init_centre + 0.5 >= s.num_filters:
        raise ValueError(f"straw.commit_init_centre={s.commit_init_centre} lies outside the first straw.num_filters="
                         f"{s.num_filters} columns, where straw.commit_centre=bounded keeps the commitment filter; "
                         f"choose 0 or a column below {s.num_filters - 0.5}, or straw.commit_centre=paper.")
    if s.commit_init_centre > s.plan_len:
        raise ValueError(f"straw.commit_init_centre={s.commit_init_centre} lies past the plan's {s.plan_len} columns; "
                         "choose 0 (DRAW's middle) or a column in 1..plan_len.")
    if s.plan_len < 2 or s.num_filters > s.plan_len:
        raise ValueError(f"straw.plan_len={s.plan_len}, straw.num_filters={s.num_filters}: the plan needs at least 2 "
                         f"columns and at most plan_len filters.")
    if str(cfg.network.core) != "ff":
        raise ValueError(f"network.core={cfg.network.core}: STRAW is the policy core itself (its plans are its "
                         f"memory); leave network.core at 'ff' (the torso and hidden layer are its features).")
