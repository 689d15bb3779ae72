"""``model.mean_frame=true`` (ours, against the Gaussian VAE's collapse on frames that share a static picture): the
model starts as the best z-independent per-pixel Gaussian of its training frames, its encoder sees the frames minus
their mean, and the statistics travel with its export; the paper's model is unchanged."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from worldmodels.representations.gaussian_vae import GaussianVAE, GaussianVAEConfig, gaussian_nll

SMALL = GaussianVAEConfig(latents=4, channels=[4, 4, 8, 8], hidden=16, mean_frame=True)


def squares(n: int = 32, seed: int = 0) -> np.ndarray:
    """A fixed random background (pixels 0-100) with a 6x6 square of 250 at a random place in each frame."""
    rng = np.random.default_rng(seed)
    f = np.repeat(rng.integers(0, 101, (1, 84, 84), dtype=np.uint8), n, 0)
    for i in range(n):
        y, x = rng.integers(0, 78, 2)
        f[i, y: y + 6, x: x + 6] = 250
    return f


def test_the_decoder_starts_at_the_per_pixel_mean_and_std_for_every_z() -> None:
    f = squares()
    model = GaussianVAE(SMALL, seed=0)
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    before, _ = model.decode(z)
    x = f.astype(np.float64) / 255.0
    mean, std = x.mean(0), x.std(0)
    assert not np.allclose(before[0, 0].detach().numpy(), mean, atol=0.05)  # a fresh decoder is not the mean frame
    model.set_frame_statistics(f)
    x_mean, x_log_std = model.decode(z)
    for b in range(3):
        np.testing.assert_allclose(x_mean[b, 0].detach().numpy(), mean, atol=1e-6)
        # Where the frames vary by more than the floor the std is theirs; where they do not, it is the floor.
        np.testing.assert_allclose(torch.exp(x_log_std[b, 0]).detach().numpy(), np.maximum(std, 0.05), rtol=1e-4,
                                   atol=1e-6)
    assert (std > 0.05).sum() > 100 and (std < 1e-9).sum() > 5000  # both kinds of pixel are there
    # So its NLL is that of the per-pixel Gaussian, by hand.
    xt = GaussianVAE.scale(f)
    nll = gaussian_nll(xt, x_mean[:1], x_log_std[:1]).flatten(1).sum(1).mean()
    s = np.maximum(std, 0.05 * (1 + math.exp(-10)))  # set_frame_statistics' raw value for a pixel at the floor
    by_hand = (0.5 * math.log(2 * math.pi) + np.log(s) + 0.5 * ((x - mean) / s) ** 2).sum((1, 2)).mean()
    assert float(nll.detach()) == pytest.approx(by_hand, rel=1e-5)


def test_the_encoder_sees_the_frame_minus_the_mean() -> None:
    f = squares()
    model = GaussianVAE(SMALL, seed=0)
    model.set_frame_statistics(f)
    x = GaussianVAE.scale(f[:5])
    mean, log_std = model.encode(x)
    h = model.encoder(x - torch.as_tensor(f.astype(np.float64).mean(0) / 255.0, dtype=torch.float32))
    torch.testing.assert_close(torch.cat([mean, log_std], 1), h, rtol=1e-5, atol=1e-5)


def test_the_statistics_travel_with_the_export_and_the_paper_model_is_unchanged(tmp_path: Path) -> None:
    f = squares()
    model = GaussianVAE(SMALL, seed=0)
    model.set_frame_statistics(f)
    again = GaussianVAE.from_export(model.export())
    assert again.cfg.mean_frame is True
    np.testing.assert_array_equal(again.embed(f[:4]), model.embed(f[:4]))
    np.testing.assert_array_equal(again.reconstruct(f[:4]), model.reconstruct(f[:4]))
    paper = GaussianVAE(replace(SMALL, mean_frame=False), seed=0)
    assert not {"frame_mean", "pixel_bias"} & set(paper.state_dict())  # older checkpoints load as they did
    old = paper.export()
    del old["config"]["mean_frame"]
    assert GaussianVAE.from_export(old).cfg.mean_frame is False
    with pytest.raises(ValueError, match="model.mean_frame=true"):
        paper.set_frame_statistics(f)
