"""Active units and KL per latent (worldmodels.representations.usage) against hand-made latents with known
answers, for both VAEs; and the collapse message."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worldmodels.representations.gaussian_vae import GaussianVAE, GaussianVAEConfig
from worldmodels.representations.usage import (
    LatentUsage,
    active_variances,
    bernoulli_kl,
    binary_usage,
    collapse_message,
    gaussian_usage,
    usage_of,
)

SMALL = GaussianVAEConfig(latents=4, channels=[4, 4, 8, 8], hidden=16)


def test_active_units_count_the_latents_whose_posterior_mean_varies_over_frames() -> None:
    means = np.array([[0.0, 1.0, 0.05, 3.0],
                      [0.0, -1.0, -0.05, 3.0],
                      [0.0, 1.0, 0.05, 3.0],
                      [0.0, -1.0, -0.05, 3.0]])
    variances = active_variances(means)
    np.testing.assert_allclose(variances, [0.0, 1.0, 0.0025, 0.0])
    usage = LatentUsage(variances, np.array([0.0, 2.0, 0.1, 0.0]), frames=4)
    assert usage.active == 1 and usage.latents == 4 and usage.collapsed  # 1 < half of 4
    summary = usage.summary()
    assert summary["active_units"] == 1 and summary["kl_total"] == pytest.approx(2.1)
    assert summary["kl_per_dim_sorted"] == [2.0, 0.1, 0.0, 0.0]
    assert not LatentUsage(variances, np.zeros(4), threshold=0.001).collapsed  # 2 of 4 above 0.001: not below half
    with pytest.raises(ValueError, match="at least 2 frames"):
        active_variances(means[:1])


def test_collapse_message_names_the_count_and_the_fix() -> None:
    usage = LatentUsage(np.array([0.0, 0.5, 0.0, 0.0]), np.zeros(4))
    message = collapse_message(usage_of(usage.summary()), "The VAE at X", "Try free bits.")
    assert message is not None and "1 of its 4 latents are active" in message and message.endswith("Try free bits.")
    healthy = LatentUsage(np.array([0.5, 0.5, 0.5, 0.0]), np.zeros(4))
    assert collapse_message(usage_of(healthy.summary()), "The VAE", "") is None
    assert collapse_message({}, "an old checkpoint", "") is None  # no usage recorded: nothing to say


def set_encoder_head(model: GaussianVAE, weight: torch.Tensor, bias: torch.Tensor) -> None:
    head = model.encoder[-1]
    assert isinstance(head, torch.nn.Linear)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)


def test_gaussian_usage_of_an_encoder_with_known_outputs() -> None:
    model = GaussianVAE(SMALL, seed=0)
    head = model.encoder[-1]
    assert isinstance(head, torch.nn.Linear)
    # A collapsed encoder: every frame gets means (1, 0, -2, 0) and log-stds (0, log 0.5, 0, 0), whatever it is.
    weight = torch.zeros_like(head.weight)
    bias = torch.tensor([1.0, 0.0, -2.0, 0.0, 0.0, math.log(0.5), 0.0, 0.0])
    set_encoder_head(model, weight, bias)
    # Frames from black to white, so that the encoder's features differ from frame to frame.
    frames = np.repeat(np.linspace(0, 255, 12).astype(np.uint8), 84 * 84).reshape(12, 84, 84)
    usage = gaussian_usage(model, frames, batch=5)
    assert usage.active == 0 and usage.collapsed and usage.frames == 12
    # KL(N(m, s) || N(0, 1)) = 0.5 (m^2 + s^2 - 1) - log s, by hand:
    expected = [0.5, 0.5 * (0.25 - 1) - math.log(0.5), 2.0, 0.0]
    np.testing.assert_allclose(usage.kl_per_dim, expected, rtol=1e-6, atol=1e-7)
    # Latent 0's mean now reads the features along a direction scaled so that its variance over the frames is 1:
    # it alone becomes active.
    with torch.no_grad():
        features = model.encoder[:-1](model.scale(frames)).double()
    direction = features[-1] - features[0]
    weight[0] = (direction / float((features @ direction).std(unbiased=False))).float()
    set_encoder_head(model, weight, bias)
    usage = gaussian_usage(model, frames)
    assert usage.active == 1 and usage.variances[0] == pytest.approx(1.0, rel=1e-4)
    assert (usage.variances[1:] == 0).all()
    # The per-latent KLs are the ELBO's KL term, split.
    with torch.no_grad():
        out = model.loss(model.scale(frames))
    assert float(out["kl"].mean()) == pytest.approx(float(usage.kl_per_dim.sum()), rel=1e-5)


def test_bernoulli_kl_by_hand() -> None:
    q, p = torch.tensor([0.0, 0.0, 3.0]), torch.tensor([0.0, math.log(1 / 3), 3.0])  # p = 0.5, 0.25, q = p
    np.testing.assert_allclose(bernoulli_kl(q, p).numpy(), [0.0, 0.5 * math.log(4 / 3), 0.0], atol=1e-6)


def test_binary_usage_kl_per_unit_sums_to_the_monte_carlo_kl() -> None:
    from worldmodels.vae.config import ModelConfig
    from worldmodels.vae.model import BinaryVAE

    torch.manual_seed(0)
    vae = BinaryVAE(ModelConfig(image_size=42, latent_dim=8, encoder_channels=4, encoder_hidden=16, made_hidden=16,
                                decoder="factorised", decoder_channels=4))
    frames = (np.random.default_rng(0).random((16, 42, 42)) < 0.3).astype(np.uint8)
    usage = binary_usage(vae, frames, samples=400, seed=3, batch=7)
    # The chain rule: sum_i E_q KL(q(z_i | z_<i, x) || p(z_i | z_<i)) = KL(q(z | x) || p(z)) = E_q[log q - log p].
    with torch.no_grad():
        net = vae.net
        x = vae.to_tensor(frames)
        h = net.encode(x).repeat(2000, 1)
        z = net.sample_posterior(h, generator=torch.Generator().manual_seed(9))
        mc = float((net.log_q(z, h) - net.log_prior(z)).mean())
    assert usage.kl_per_dim.shape == (8,) and (usage.kl_per_dim >= 0).all()
    assert float(usage.kl_per_dim.sum()) == pytest.approx(mc, rel=0.05, abs=0.02)
    # Posterior means are those of the greedy code, the binary_vae key, in (0, 1): variances at most 0.25.
    assert (usage.variances <= 0.25).all() and usage.latents == 8
