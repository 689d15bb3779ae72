"""Autoregressive masks, checked by gradients: MADE logit i never sees z_>=i, the masked-convolution decoder's
logit at pixel i never sees x_>=i (raster order); and banded sampling equals full-frame sampling."""

from __future__ import annotations

import torch
from torch.autograd.functional import jacobian

from worldmodels.vae.decoder import Decoder
from worldmodels.vae.made import MADE


def test_made_logit_i_depends_only_on_earlier_units() -> None:
    torch.manual_seed(0)
    d = 7
    for layers, context in ((1, 0), (2, 5)):
        made = MADE(d, hidden=12, layers=layers, context_dim=context)
        ctx = torch.randn(1, context) if context else None
        z = torch.rand(1, d)
        jac = jacobian(lambda z, made=made, ctx=ctx: made(z, ctx)[0], z)[:, 0, :]  # [D out, D in]
        upper = torch.triu(torch.ones(d, d, dtype=torch.bool))  # j >= i
        assert torch.all(jac[upper] == 0), "logit i sees z_j with j >= i"
        assert torch.all(jac[1:, 0] != 0)  # ...but every later logit does see z_0 (the model is not trivial)
        assert torch.all(jac.diagonal(-1) != 0)  # and logit i sees z_{i-1}


def test_made_is_a_normalised_distribution() -> None:
    torch.manual_seed(1)
    made = MADE(4, hidden=8)
    zs = torch.tensor([[float(b) for b in f"{i:04b}"] for i in range(16)])
    assert abs(made.log_prob(zs).exp().sum().item() - 1.0) < 1e-5


def test_decoder_pixel_i_depends_only_on_earlier_pixels() -> None:
    torch.manual_seed(0)
    s = 6
    dec = Decoder(s, latent_dim=3, kind="pixelcnn", channels=16, layers=2, kernel=3, cond_channels=4)
    cond = dec.condition(torch.rand(1, 3))
    jac = torch.zeros(s * s, s * s)
    later_or_self = torch.triu(torch.ones(s * s, s * s, dtype=torch.bool))
    for _ in range(3):  # several inputs, so that no connection hides behind a ReLU that happens to be off
        x = torch.rand(1, 1, s, s)
        j = jacobian(lambda x: dec.logits(x, cond).flatten(), x).reshape(s * s, s * s)  # [pixel out, pixel in]
        assert torch.all(j[later_or_self] == 0), "pixel i sees x_j with j >= i"
        jac += j.abs()
    for i in range(s * s):
        r, c = divmod(i, s)
        if c > 0:
            assert jac[i, i - 1] != 0  # left neighbour
        if r > 0:
            assert jac[i, i - s] != 0  # pixel above
    # z reaches every pixel's logit through the conditioning map.
    z = torch.rand(1, 3)
    jz = jacobian(lambda z: dec.logits(x, dec.condition(z)).flatten(), z)[:, 0, :]  # [pixel, D]
    assert torch.all(jz.abs().sum(1) > 0)


def test_banded_sampling_equals_full_frame_sampling() -> None:
    torch.manual_seed(0)
    s = 7
    dec = Decoder(s, latent_dim=3, kind="pixelcnn", channels=4, layers=2, kernel=3, cond_channels=2)
    z = (torch.rand(5, 3) < 0.5).float()
    fast = dec.sample(z, torch.Generator().manual_seed(4))
    # Reference: the whole frame through the network for every pixel, same uniforms.
    cond = dec.condition(z)
    u = torch.rand(5, 1, s, s, generator=torch.Generator().manual_seed(4))
    ref = torch.zeros(5, 1, s, s)
    with torch.no_grad():
        for r in range(s):
            for c in range(s):
                ref[:, 0, r, c] = (u[:, 0, r, c] < torch.sigmoid(dec.logits(ref, cond)[:, 0, r, c])).float()
    assert torch.equal(fast, ref)
