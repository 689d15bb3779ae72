"""MADE: masked autoencoder for distribution estimation (Germain et al. 2015), for Bernoulli latents.

``MADE(D)`` maps binary ``z`` float32 ``[N, D]`` to logits ``[N, D]`` where logit ``i`` depends only on
``z_<i`` (and on an optional context vector that does not depend on z), so

    log p(z) = sum_i log Bern(z_i | sigmoid(logit_i(z_<i)))

is a normalised autoregressive distribution that can be scored in one pass and sampled in D passes.
Masks follow Germain et al. (2015, Sec. 4): inputs get degrees 1..D, hidden units degrees in 1..D-1
(assigned cyclically, so every degree is represented), outputs degrees 1..D; a hidden unit of degree m sees
inputs of degree <= m, an output of degree d sees hidden units of degree < d. A direct input-to-output
connection with a strictly lower-triangular mask adds the linear autoregressive part (as in NADE/DARN).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MaskedLinear(nn.Linear):
    """``nn.Linear`` whose weight is multiplied by a fixed 0/1 mask ``[out, in]`` (a buffer, saved)."""

    mask: torch.Tensor

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("mask", mask.to(torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Autoregressive logits over ``dim`` binary units, optionally conditioned on a context vector.

    :param dim: number of binary units D.
    :param hidden: width of each hidden layer.
    :param layers: number of hidden layers (>= 1).
    :param context_dim: size of the context vector (0: unconditional). The context is added to every hidden
        pre-activation and to the logits through unmasked linear maps: it may depend on x, never on z.
    """

    def __init__(self, dim: int, hidden: int, layers: int = 1, context_dim: int = 0) -> None:
        super().__init__()
        self.dim = dim
        in_deg = torch.arange(1, dim + 1)
        # Hidden degrees in 1..D-1; with D == 1 there is nothing to condition on, so degree 0 (sees no input).
        hid_deg = (torch.arange(hidden) % max(1, dim - 1)) + 1 if dim > 1 else torch.zeros(hidden, dtype=torch.long)
        self.hidden_layers = nn.ModuleList()
        self.context_layers = nn.ModuleList()
        prev_deg, prev_dim = in_deg, dim
        for _ in range(layers):
            self.hidden_layers.append(MaskedLinear(prev_dim, hidden, (hid_deg[:, None] >= prev_deg[None, :])))
            if context_dim:
                self.context_layers.append(nn.Linear(context_dim, hidden, bias=False))
            prev_deg, prev_dim = hid_deg, hidden
        self.out = MaskedLinear(hidden, dim, (in_deg[:, None] > hid_deg[None, :]))
        self.direct = MaskedLinear(dim, dim, torch.tril(torch.ones(dim, dim), diagonal=-1), bias=False)
        self.context_out = nn.Linear(context_dim, dim, bias=False) if context_dim else None

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """:param z: float32 ``[N, D]`` (0/1, or relaxed values in [0, 1]).
        :param context: float32 ``[N, context_dim]`` or ``None``.
        :return: float32 logits ``[N, D]``; logit i is a function of ``z[:, :i]`` and the context only."""
        h = z
        for i, layer in enumerate(self.hidden_layers):
            pre = layer(h)
            if self.context_out is not None:
                pre = pre + self.context_layers[i](context)
            h = torch.relu(pre)
        logits = self.out(h) + self.direct(z)
        if self.context_out is not None:
            logits = logits + self.context_out(context)
        return logits

    def log_prob(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z) in nats, float32 ``[N]`` for binary z ``[N, D]``."""
        return self.log_prob_units(z, context).sum(-1)

    def log_prob_units(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z_i | z_<i) of each unit in nats, float32 ``[N, D]`` for binary z ``[N, D]`` (sums to log p(z))."""
        return -F.binary_cross_entropy_with_logits(self(z, context), z, reduction="none")

    @torch.no_grad()
    def sample(self, n: int, context: torch.Tensor | None = None, generator: torch.Generator | None = None,
               greedy: bool = False, uniforms: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``n`` binary vectors, float32 ``[n, D]``, one unit per pass (D passes).

        :param greedy: take z_i = 1 iff p(z_i = 1 | z_<i) > 1/2 (a deterministic code, not a sample).
        :param uniforms: float32 ``[n, D]`` U(0, 1) noise to use (z_i = 1 iff u_i < p_i); drawn if None.
        """
        device = self.out.weight.device
        z = torch.zeros(n, self.dim, device=device)
        u = None if greedy else uniforms if uniforms is not None else torch.rand(
            n, self.dim, generator=generator, device=device)
        for i in range(self.dim):
            p = torch.sigmoid(self(z, context)[:, i])
            z[:, i] = (p > 0.5).float() if u is None else (u[:, i] < p).float()
        return z
