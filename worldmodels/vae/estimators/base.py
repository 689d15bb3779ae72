"""What every gradient estimator shares: drawing posterior samples and scoring them.

An estimator turns a batch of binary frames into a *surrogate loss*: a scalar whose gradient, by autograd,
is minus the estimator's estimate of the gradient of the bound (the ELBO, or the K-sample bound of Burda et
al. 2016 for multi-sample estimators) with respect to every parameter: pathwise for the generative
parameters theta (prior and decoder), by the estimator's rule for the inference parameters phi (encoder and
posterior). Its value is not the bound; the bound is reported in the returned statistics (nats per frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from worldmodels.vae.network import VAENetwork


@dataclass
class Samples:
    """K posterior samples per frame and their log probabilities, each float32 ``[K, B]`` (z: ``[K, B, D]``)."""

    z: torch.Tensor
    log_q: torch.Tensor
    log_prior: torch.Tensor
    log_lik: torch.Tensor

    @property
    def log_w(self) -> torch.Tensor:
        """Importance log-weights log p(x, z) - log q(z | x), ``[K, B]``."""
        return self.log_lik + self.log_prior - self.log_q


def draw(net: VAENetwork, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> Samples:
    """z ~ q(z | x) without gradient through the sample (score-function estimators), scored with gradient.

    :param x: float32 ``[B, 1, S, S]``.
    """
    b = len(x)
    h = net.encode(x).repeat(k, 1)
    z = net.sample_posterior(h.detach(), generator=generator)
    xs = x.repeat(k, 1, 1, 1)
    return Samples(z.view(k, b, -1), net.log_q(z, h).view(k, b), net.log_prior(z).view(k, b),
                   net.log_lik(xs, z).view(k, b))


def multi_sample_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k w_k over the first axis: ``[K, B]`` -> ``[B]`` (the IWAE bound's estimate)."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def stats(s: Samples, bound: torch.Tensor | None = None) -> dict[str, float]:
    """Per-frame means in nats: single-sample ELBO, KL estimate (log q - log p(z)), reconstruction term."""
    out = {"elbo": s.log_w.mean().item(), "kl": (s.log_q - s.log_prior).mean().item(),
           "log_lik": s.log_lik.mean().item()}
    if bound is not None:
        out["bound"] = bound.mean().item()
    return out


class Estimator(nn.Module):
    """Base class: subclasses implement :meth:`surrogate`; some carry parameters (NVIL's baseline)."""

    #: posterior samples drawn per frame
    samples: int = 1

    def surrogate(self, net: VAENetwork, x: torch.Tensor, update_stats: bool = True,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """:param x: float32 ``[B, 1, S, S]`` binary frames.
        :param update_stats: update running statistics (False when only measuring gradient variance).
        :return: ``(surrogate loss, statistics in nats per frame)``."""
        raise NotImplementedError
