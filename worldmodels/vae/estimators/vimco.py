"""VIMCO (Mnih & Rezende 2016, "Variational inference for Monte Carlo objectives", Sec. 3).

K samples z_1..K ~ q(z | x) and the multi-sample bound L_hat = log (1/K) sum_j w_j, w_j = p(x, z_j) / q(z_j | x).
The gradient estimate (their eq. 8-10) is

    sum_k [L_hat - L_hat_{-k}] grad log q(z_k | x) + sum_k w~_k grad log w_k,

with w~_k = w_k / sum_j w_j and the leave-one-out baseline L_hat_{-k}: the bound with w_k replaced by the
geometric mean of the other weights, exp(mean_{j != k} log w_j). The baseline of sample k does not depend
on z_k, so the estimator stays unbiased, and each sample is credited only with what it adds to the bound.
No learned parameters; K >= 2. Under KL warm-up or free bits the log-weights (in the bound and in the
signals) are the weighted ones of :class:`~.base.KLPenalty`.
"""

from __future__ import annotations

import math

import torch

from worldmodels.vae.estimators.base import Estimator, draw, multi_sample_bound, stats
from worldmodels.vae.network import VAENetwork


def leave_one_out_signal(log_w: torch.Tensor) -> torch.Tensor:
    """Per-sample learning signals L_hat - L_hat_{-k}, float32 ``[K, B]``, for log-weights ``[K, B]`` (K >= 2)."""
    k = log_w.shape[0]
    if k < 2:
        raise ValueError("VIMCO needs at least 2 samples per frame (estimator.samples >= 2).")
    bound = multi_sample_bound(log_w)
    # log of the geometric mean of the other weights, for each k: [K, B]
    others = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)
    # L_hat_{-k}: log-weights with entry k replaced by `others[k]`.
    eye = torch.eye(k, dtype=torch.bool, device=log_w.device)[:, :, None]  # [K(replaced), K, 1]
    replaced = torch.where(eye, others[:, None, :], log_w[None, :, :])  # [K, K, B]
    loo = torch.logsumexp(replaced, 1) - math.log(k)  # [K, B]
    return bound[None] - loo


class VIMCO(Estimator):
    """:param samples: K >= 2 posterior samples per frame."""

    def __init__(self, samples: int = 5) -> None:
        super().__init__()
        if samples < 2:
            raise ValueError(f"VIMCO needs samples >= 2, got {samples}.")
        self.samples = samples

    def surrogate(self, net: VAENetwork, x: torch.Tensor, update_stats: bool = True,
                  generator: torch.Generator | None = None, step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        s = draw(net, x, self.samples, generator)
        w = self.penalty.unit_weights(s.kl_units, step)
        log_w = s.weighted_log_w(w)
        objective = multi_sample_bound(log_w)
        signal = leave_one_out_signal(log_w.detach())
        return -(objective + (signal * s.log_q).sum(0)).mean(), stats(s, multi_sample_bound(s.log_w.detach()), w)
