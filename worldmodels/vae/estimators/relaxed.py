"""Straight-through Gumbel-sigmoid: the pathwise comparison (Jang, Gu & Poole 2017, "Categorical
reparameterization with Gumbel-softmax", Sec. 2-3; Maddison, Mnih & Teh 2017, "The Concrete distribution",
binary Concrete; Bengio, Leonard & Courville 2013 for straight-through).

Each latent unit is drawn through the binary Concrete relaxation, in autoregressive order:

    a_i = logit q(z_i = 1 | z_<i, x),   y_i = sigmoid((a_i + log u - log(1 - u)) / tau),   u ~ U(0, 1)
    z_i = 1[y_i > 1/2] + y_i - stop_gradient(y_i)

so the forward pass uses the exact binary sample z_i ~ Bern(sigmoid(a_i)) (the model is always evaluated at
binary z, as at test time), and the backward pass differentiates the relaxed y_i, flowing into later units'
logits and the decoder. The surrogate is minus the single-sample ELBO log p(x, z) - log q(z | x). Biased
(the straight-through gradient is not the gradient of any objective), low variance.
"""

from __future__ import annotations

import torch

from worldmodels.vae.estimators.base import Estimator, Samples, stats
from worldmodels.vae.network import VAENetwork


class StraightThroughGumbel(Estimator):
    """:param temperature: tau of the relaxation."""

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        self.temperature = temperature

    def surrogate(self, net: VAENetwork, x: torch.Tensor, update_stats: bool = True,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        h = net.encode(x)
        b, d = len(x), net.latent_dim
        u = torch.rand(b, d, generator=generator).clamp_(1e-6, 1 - 1e-6)
        noise = u.log() - (-u).log1p()
        units: list[torch.Tensor] = []
        for i in range(d):
            # logit i depends only on z_<i: the zeros standing in for later units are not seen.
            partial = torch.cat([*units, x.new_zeros(b, d - i)], dim=1) if units else x.new_zeros(b, d)
            a = net.posterior(partial, h)[:, i]
            y = torch.sigmoid((a + noise[:, i]) / self.temperature)
            units.append(((y > 0.5).float() + y - y.detach())[:, None])
        z = torch.cat(units, dim=1)
        s = Samples(z[None], net.log_q(z, h)[None], net.log_prior(z)[None], net.log_lik(x, z)[None])
        return -s.log_w[0].mean(), stats(s)
