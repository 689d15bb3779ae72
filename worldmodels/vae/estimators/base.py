"""What every gradient estimator shares: drawing posterior samples, scoring them, and weighting the KL.

An estimator turns a batch of binary frames into a *surrogate loss*: a scalar whose gradient, by autograd,
is minus the estimator's estimate of the gradient of the objective (the ELBO, or the K-sample bound of Burda
et al. 2016 for multi-sample estimators) with respect to every parameter: pathwise for the generative
parameters theta (prior and decoder), by the estimator's rule for the inference parameters phi (encoder and
posterior). Its value is not the bound; the bound is reported in the returned statistics (nats per frame).

**KL weighting** (:class:`KLPenalty`, the same for every estimator). The objective an estimator follows is

    L_w = E_q[ log p(x | z) - sum_i w_i (log q(z_i | z_<i, x) - log p(z_i | z_<i)) ]

with one weight w_i per latent unit: w_i = beta(step) * a_g(i), where beta rises linearly from 0 to 1 over
``optim.kl_warmup_steps`` updates (KL warm-up: Bowman et al. 2016, "Generating sentences from a continuous
space", Sec. 3.1; Sonderby et al. 2016, "Ladder variational autoencoders", "warm-up") and a_g is the
free-bits gate of unit i's group g (Kingma et al. 2016, "Improved variational inference with inverse
autoregressive flow", appendix, "free bits"): the objective ``E[log p(x|z)] - sum_g max(lambda, KL_g)``
has gradient 0 for the KL of a group whose minibatch KL is below lambda nats and the plain KL gradient
otherwise, so a_g = 1[KL_g > lambda] with KL_g measured on the minibatch (the gate is a constant of the
step, not differentiated). With no warm-up and no free bits every w_i = 1 and L_w is the ELBO.

Score-function estimators use the same weighted log-weight ``log w~ = log p(x|z) + sum_i w_i (log p_i -
log q_i)`` as their learning signal (and as the importance weight of the multi-sample bound, a tempered
IWAE bound), so the pathwise and score-function parts estimate the gradient of one objective. Dropping the
direct ``-sum_i w_i grad log q_i(z)`` term keeps them unbiased for any w: each unit's score has mean zero
under its own conditional, E_{z_i ~ q(.|z_<i)} grad log q(z_i | z_<i) = 0. The statistics (``elbo``, ``kl``,
``log_lik``) always report the unweighted ELBO terms; ``kl_weight`` is the mean of the w_i.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from worldmodels.vae.network import VAENetwork


@dataclass
class KLPenalty:
    """KL warm-up and free bits (see the module docstring).

    :param warmup_steps: updates over which the KL weight rises linearly from 0 to 1 (0: weight 1 throughout).
    :param free_bits: lambda, nats per group below which a group's KL is not penalised (0: off).
    :param group: latent units per free-bits group (contiguous in the autoregressive order).
    """

    warmup_steps: int = 0
    free_bits: float = 0.0
    group: int = 1

    def beta(self, step: int) -> float:
        """KL weight after ``step`` updates: min(1, step / warmup_steps); 1 when warm-up is off."""
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, max(0, step) / self.warmup_steps)

    def unit_weights(self, kl_units: torch.Tensor, step: int) -> torch.Tensor:
        """Per-unit KL weights w_i, float32 ``[D]`` (no gradient).

        :param kl_units: KL of each unit in nats, float ``[..., D]`` (samples and frames in the leading axes):
            the estimate whose minibatch mean decides the free-bits gate of each group.
        """
        d = kl_units.shape[-1]
        w = torch.full((d,), self.beta(step), dtype=torch.float32, device=kl_units.device)
        if self.free_bits > 0:
            per_unit = kl_units.detach().reshape(-1, d).mean(0)  # [D]
            per_group = per_unit.view(-1, self.group).sum(-1)  # [G]
            w = w * (per_group > self.free_bits).to(w.dtype).repeat_interleave(self.group)
        return w


def bernoulli_kl(q_logits: torch.Tensor, p_logits: torch.Tensor) -> torch.Tensor:
    """KL(Bern(sigmoid(q_logits)) || Bern(sigmoid(p_logits))) elementwise in nats, same shape as the inputs.

    Written with log-sigmoids so that it stays finite (and its gradient nonzero) for saturated logits.
    """
    q1, q0 = F.logsigmoid(q_logits), F.logsigmoid(-q_logits)
    p1, p0 = F.logsigmoid(p_logits), F.logsigmoid(-p_logits)
    return q1.exp() * (q1 - p1) + q0.exp() * (q0 - p0)


@dataclass
class Samples:
    """K posterior samples per frame and their log probabilities: z ``[K, B, D]``, per-unit terms
    ``[K, B, D]``, log_lik ``[K, B]``; all in nats, float32."""

    z: torch.Tensor
    log_q_units: torch.Tensor
    log_prior_units: torch.Tensor
    log_lik: torch.Tensor
    kl_units: torch.Tensor
    """Analytic KL(q(z_i | z_<i, x) || p(z_i | z_<i)) of each unit at the sampled prefix (no gradient): a
    lower-variance measure of each unit's KL than log q_i - log p_i, used by the free-bits gate."""

    @property
    def log_q(self) -> torch.Tensor:
        """log q(z | x), ``[K, B]``."""
        return self.log_q_units.sum(-1)

    @property
    def log_prior(self) -> torch.Tensor:
        """log p(z), ``[K, B]``."""
        return self.log_prior_units.sum(-1)

    @property
    def log_w(self) -> torch.Tensor:
        """Importance log-weights log p(x, z) - log q(z | x), ``[K, B]``."""
        return self.log_lik + self.log_prior - self.log_q

    def weighted_log_w(self, weights: torch.Tensor) -> torch.Tensor:
        """log p(x | z) + sum_i w_i (log p(z_i | z_<i) - log q(z_i | z_<i, x)), ``[K, B]``, for w ``[D]``."""
        return self.log_lik + ((self.log_prior_units - self.log_q_units) * weights).sum(-1)


def draw(net: VAENetwork, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> Samples:
    """z ~ q(z | x) without gradient through the sample (score-function estimators), scored with gradient.

    :param x: float32 ``[B, 1, S, S]``.
    """
    b = len(x)
    h = net.encode(x).repeat(k, 1)
    z = net.sample_posterior(h.detach(), generator=generator)
    xs = x.repeat(k, 1, 1, 1)
    q_logits, p_logits = net.posterior(z, h), net.prior(z)
    log_q = -F.binary_cross_entropy_with_logits(q_logits, z, reduction="none")
    log_p = -F.binary_cross_entropy_with_logits(p_logits, z, reduction="none")
    with torch.no_grad():
        kl = bernoulli_kl(q_logits, p_logits)
    d = z.shape[-1]
    return Samples(z.view(k, b, d), log_q.view(k, b, d), log_p.view(k, b, d), net.log_lik(xs, z).view(k, b),
                   kl.view(k, b, d))


def multi_sample_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k w_k over the first axis: ``[K, B]`` -> ``[B]`` (the IWAE bound's estimate)."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def stats(s: Samples, bound: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> dict[str, float]:
    """Per-frame means in nats: single-sample ELBO, KL estimate (log q - log p(z)), reconstruction term;
    ``bound`` (multi-sample) and ``kl_weight`` (mean of the w_i) when given."""
    out = {"elbo": s.log_w.mean().item(), "kl": (s.log_q - s.log_prior).mean().item(),
           "log_lik": s.log_lik.mean().item()}
    if bound is not None:
        out["bound"] = bound.mean().item()
    if weights is not None:
        out["kl_weight"] = weights.mean().item()
    return out


class Estimator(nn.Module):
    """Base class: subclasses implement :meth:`surrogate`; some carry parameters (NVIL's baseline)."""

    #: posterior samples drawn per frame
    samples: int = 1

    def __init__(self) -> None:
        super().__init__()
        self.penalty = KLPenalty()

    def surrogate(self, net: VAENetwork, x: torch.Tensor, update_stats: bool = True,
                  generator: torch.Generator | None = None, step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        """:param x: float32 ``[B, 1, S, S]`` binary frames.
        :param update_stats: update running statistics (False when only measuring gradient variance).
        :param step: updates taken so far (drives KL warm-up and temperature annealing).
        :return: ``(surrogate loss, statistics in nats per frame)``."""
        raise NotImplementedError
