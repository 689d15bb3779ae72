"""NVIL (Mnih & Gregor 2014, "Neural variational inference and learning in belief networks", Sec. 3, Alg. 1).

The score-function estimator of the ELBO with variance reduction:

    l = log p(x, z) - log q(z | x) - C_psi(x)             (learned input-dependent baseline)
    c <- alpha c + (1 - alpha) mean(l);   v <- alpha v + (1 - alpha) var(l)   (over the minibatch)
    l <- (l - c) / max(1, sqrt(v))                           (centring and variance normalisation)
    theta += grad_theta log p(x, z);   phi += l grad_phi log q(z | x);   psi += l grad_psi C_psi(x)

C_psi is a one-hidden-layer tanh network of the binary frame (100 units in the paper). Neither c nor C_psi
depends on z, so the estimator of the (scaled) gradient is unbiased; dividing by max(1, sqrt(v)) only
rescales the step while the signal is large. Under KL warm-up or free bits (:class:`KLPenalty`) l and the
theta term use the weighted log-weight instead of log p(x, z) - log q(z | x). The paper's "local learning
signals" for multi-layer belief networks do not apply: our model has one stochastic layer.
"""

from __future__ import annotations

import torch
from torch import nn

from worldmodels.vae.estimators.base import Estimator, draw, stats
from worldmodels.vae.network import VAENetwork


class NVIL(Estimator):
    """:param pixels: S * S, input size of the baseline network.
    :param hidden: hidden tanh units of C_psi(x).
    :param alpha: decay of the running mean c and variance v.
    :param normalise: divide the signal by max(1, sqrt(v))."""

    c: torch.Tensor  # buffers: running mean and variance of the learning signal, and whether they are set
    v: torch.Tensor
    started: torch.Tensor

    def __init__(self, pixels: int, hidden: int = 100, alpha: float = 0.8, normalise: bool = True) -> None:
        super().__init__()  # the KL penalty is set by make_estimator (default: plain ELBO)
        self.baseline = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.alpha, self.normalise = alpha, normalise
        self.register_buffer("c", torch.zeros(()))
        self.register_buffer("v", torch.ones(()))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))

    def surrogate(self, net: VAENetwork, x: torch.Tensor, update_stats: bool = True,
                  generator: torch.Generator | None = None, step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        s = draw(net, x, 1, generator)
        w = self.penalty.unit_weights(s.kl_units, step)
        baseline = self.baseline(x * 2.0 - 1.0).squeeze(-1)  # [B]
        l = (s.weighted_log_w(w)[0] - baseline).detach()
        if update_stats:
            with torch.no_grad():
                if not bool(self.started):
                    # Start the running mean at the first batch's mean, not at 0: early ELBOs are
                    # thousands of nats below zero and would otherwise dominate the signal for many steps.
                    self.c.copy_(l.mean())
                    self.v.copy_(l.var(unbiased=False) if len(l) > 1 else torch.ones(()))
                    self.started.fill_(True)
                else:
                    self.c.mul_(self.alpha).add_((1 - self.alpha) * l.mean())
                    if len(l) > 1:
                        self.v.mul_(self.alpha).add_((1 - self.alpha) * l.var(unbiased=False))
        signal = l - self.c
        if self.normalise:
            signal = signal / torch.clamp(self.v.sqrt(), min=1.0)
        model = s.log_lik[0] + (s.log_prior_units[0] * w).sum(-1)  # theta: pathwise gradient of the weighted bound
        loss = -(model + signal * s.log_q[0] + signal * baseline).mean()
        out = stats(s, weights=w)
        out["baseline"] = baseline.mean().item()
        return loss, out
