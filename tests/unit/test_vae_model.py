"""BinaryVAE: importance-weighted bounds (monotone in K, close to the exact log-likelihood of a tiny model),
the DensityModel and Representation protocols, and state round trips."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from worldmodels.protocols import DensityModel, Representation
from worldmodels.vae import BinaryVAE, EstimatorConfig, ModelConfig, OptimConfig

SMALL = ModelConfig(image_size=42, latent_dim=8, encoder_channels=4, encoder_hidden=16, made_hidden=16,
                    decoder_channels=4, decoder_layers=1, decoder_kernel=3, cond_channels=4)
TINY = ModelConfig(image_size=4, latent_dim=4, encoder_channels=2, encoder_hidden=8, made_hidden=8,
                   decoder_channels=4, decoder_layers=1, decoder_kernel=3, cond_channels=2)


def _frames(n: int, seed: int, size: int = 42) -> np.ndarray:
    """Binary frames with a bar at a random row (a little structure to learn)."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, size, size)) < 0.02).astype(np.uint8)
    for i, r in enumerate(rng.integers(0, size - 2, n)):
        x[i, r: r + 2, 5:15] = 1
    return x


def test_iwae_bounds_increase_with_k_on_heldout_frames() -> None:
    vae = BinaryVAE(SMALL, EstimatorConfig(name="vimco", samples=3), OptimConfig(lr=3e-3), seed=0)
    for i in range(20):
        vae.train_step(_frames(16, i))
    heldout = _frames(6, 999)
    b = vae.bounds(heldout, (1, 10, 100), seed=0)
    assert np.all(b[1] <= b[10] + 1e-9) and np.all(b[10] <= b[100] + 1e-9)
    assert b[100].mean() > b[1].mean()  # strictly better on average: the posterior is not exact
    # K = 1 is the ELBO: the mean of the importance log-weights (same samples, same seed).
    lw = vae.log_weights(heldout, 100, torch.Generator().manual_seed(0))
    assert np.allclose(b[1], lw.mean(0).numpy()) and lw.dtype == torch.float64
    with pytest.raises(ValueError, match="divide the next"):
        vae.bounds(heldout, (1, 3, 10))


def test_iwae_converges_to_the_exact_log_likelihood_of_a_tiny_model() -> None:
    vae = BinaryVAE(TINY, seed=3)
    x = np.array([[[1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]]], dtype=np.uint8)
    zs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)))
    with torch.no_grad():
        xt = vae.to_tensor(x).repeat(16, 1, 1, 1)
        exact = torch.logsumexp(vae.net.log_prior(zs) + vae.net.log_lik(xt, zs), 0).item()  # log p(x) by enumeration
    b = vae.bounds(x, (1, 10, 1000), seed=0)
    assert b[1][0] < exact - 0.01  # the ELBO is a strict bound here
    assert abs(b[1000][0] - exact) < 0.02, (b[1000][0], exact)


def test_density_model_protocol() -> None:
    vae = BinaryVAE(SMALL, seed=0, density_samples=10)
    assert isinstance(vae, DensityModel) and isinstance(vae, Representation)
    x = _frames(3, 1)
    lp = vae.log_prob(x)
    assert lp.dtype == np.float64 and lp.shape == (3,) and np.all(lp < 0)
    assert np.array_equal(lp, vae.log_prob(x))  # common random numbers: deterministic
    before, after = vae.update(x)
    assert before.shape == after.shape == (3,) and before.dtype == np.float64
    assert before[0] == lp[0]  # the first frame is scored by the model before any update
    assert vae.steps == 3
    with pytest.raises(ValueError, match="binariser|binarizer"):
        vae.log_prob(np.full((1, 42, 42), 200, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\[B, 42, 42\]"):
        vae.log_prob(np.zeros((1, 84, 84), dtype=np.uint8))


def test_representation_bits_and_hash_keys() -> None:
    vae = BinaryVAE(SMALL, seed=0)
    x = _frames(4, 2)
    e = vae.embed(x)
    assert e.shape == (4, vae.dim) and e.dtype == np.float32 and set(np.unique(e)) <= {0.0, 1.0}
    assert np.array_equal(e, vae.embed(x))  # greedy code: deterministic
    keys = vae.hash_keys(np.concatenate([x, x[:1]]))
    assert len(keys[0]) == math.ceil(vae.dim / 8) and keys[4] == keys[0]
    assert keys[0] == np.packbits(e[0].astype(np.uint8)).tobytes()


def test_state_round_trip_and_generation() -> None:
    vae = BinaryVAE(SMALL, EstimatorConfig(name="nvil"), seed=0, density_samples=5)
    for i in range(3):
        vae.train_step(_frames(8, i))
    state = vae.state_dict()
    again = BinaryVAE.from_state_dict(state)
    x = _frames(2, 7)
    assert np.array_equal(again.log_prob(x), vae.log_prob(x)) and again.steps == 3
    assert torch.equal(again.estimator.c, vae.estimator.c)  # NVIL's running mean travels too
    torch.manual_seed(5)
    s1 = vae.train_step(x)
    torch.manual_seed(5)
    s2 = again.train_step(x)
    assert s1 == s2  # optimiser state restored: identical next step
    samples = vae.sample_prior(3, seed=1)
    assert samples.shape == (3, 42, 42) and samples.dtype == np.uint8 and samples.max() <= 1
    assert np.array_equal(samples, vae.sample_prior(3, seed=1))
    rec = vae.reconstruct(x, seed=0)
    assert rec.shape == x.shape and rec.max() <= 1
    gv = vae.gradient_variance(x, repeats=3)
    assert gv["grad_var"] > 0 and gv["grad_snr"] > 0


def test_kl_warmup_and_free_bits_reach_the_estimator_from_the_config() -> None:
    """optim.kl_warmup_steps drives the KL weight by the model's update count (so it resumes with the model)."""
    vae = BinaryVAE(SMALL, EstimatorConfig(name="nvil"), OptimConfig(kl_warmup_steps=4), seed=0)
    weights = [vae.train_step(_frames(4, i))["kl_weight"] for i in range(6)]
    assert weights == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    # A free-bits threshold no group of 8 units can reach at initialisation closes every gate.
    vae = BinaryVAE(SMALL, EstimatorConfig(name="relaxed"), OptimConfig(free_bits=5.0, free_bits_group=8), seed=0)
    assert vae.train_step(_frames(4, 0))["kl_weight"] == 0.0
    assert BinaryVAE(SMALL, seed=0).train_step(_frames(4, 0))["kl_weight"] == 1.0  # defaults: the plain ELBO
