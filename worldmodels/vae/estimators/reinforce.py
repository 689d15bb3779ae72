"""Plain REINFORCE (Williams 1992): the score-function estimator with no control variate, the floor.

With K = 1 it estimates the ELBO's gradient as

    grad_phi L ~= (log p(x, z) - log q(z | x)) grad_phi log q(z | x) - grad_phi log q(z | x),   z ~ q(z | x)

(the last term has mean zero). With K > 1 it is the naive estimator of the K-sample bound
L_K = E[log (1/K) sum_k w_k] of Mnih & Rezende (2016, eq. 5): every sample's learning signal is the whole
bound estimate, ``L_hat grad log q(z_k | x)``, plus the pathwise term ``sum_k w~_k grad log w_k``; it is what
VIMCO improves on with the same samples. Generative parameters get the pathwise gradient in both cases. Under
KL warm-up or free bits the log-weights are the weighted ones of :class:`~.base.KLPenalty` throughout.
"""

from __future__ import annotations

import torch

from worldmodels.vae.estimators.base import Estimator, draw, multi_sample_bound, stats
from worldmodels.vae.network import VAENetwork


class Reinforce(Estimator):
    """:param samples: K, posterior samples per frame (1: the ELBO)."""

    def __init__(self, samples: int = 1) -> None:
        super().__init__()
        self.samples = samples

    def surrogate(self, net: VAENetwork, x: torch.Tensor, update_stats: bool = True,
                  generator: torch.Generator | None = None, step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        s = draw(net, x, self.samples, generator)
        w = self.penalty.unit_weights(s.kl_units, step)
        objective = multi_sample_bound(s.weighted_log_w(w))  # [B]
        score = (objective.detach()[None] * s.log_q).sum(0)
        return -(objective + score).mean(), stats(s, multi_sample_bound(s.log_w.detach()), w)
