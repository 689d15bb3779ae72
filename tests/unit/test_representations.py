"""MFEC's representations (Blundell et al. 2016, Sec. 3 and App. A): the random projection, the Gaussian VAE (its
ELBO, std floor, shapes, learning), the binary-VAE adapter, make_representation's errors, and specs that rebuild
identical embeddings in another process."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from launch.config import load_config
from worldmodels.common.checkpoint import save_checkpoint
from worldmodels.data import Binarizer
from worldmodels.protocols import Representation
from worldmodels.representations import (
    REPRESENTATION_KINDS,
    RandomProjection,
    load_representation,
    make_representation,
    representation_spec,
)
from worldmodels.representations.binary import BinaryVAERepresentation
from worldmodels.representations.gaussian_vae import (
    GaussianVAE,
    GaussianVAEConfig,
    GaussianVAERepresentation,
    conv_sizes,
    gaussian_nll,
    kl_standard_normal,
)
from worldmodels.representations.train_gvae import GVAEFitConfig, validate
from worldmodels.vae import BinaryVAE, ModelConfig
from worldmodels.vae.config import DecoderChoice

SMALL = GaussianVAEConfig(latents=32, channels=[4, 4, 8, 8], hidden=32)
"""The paper's kernels, strides and 32 latents (so 64-number keys) with narrow layers: fast."""


def frames(n: int = 6, seed: int = 0, shape: tuple[int, ...] = (84, 84)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def gvae_checkpoint(folder: Path, cfg: GaussianVAEConfig = SMALL) -> tuple[Path, GaussianVAE]:
    model = GaussianVAE(cfg, seed=1)
    return save_checkpoint(folder / "checkpoints", 0, {"gvae": model.export(), "config": ""}), model


def bvae_checkpoint(folder: Path) -> tuple[Path, BinaryVAE]:
    background = np.full((42, 42), 20, np.uint8)
    vae = BinaryVAE(ModelConfig(latent_dim=12, encoder_channels=4, encoder_hidden=16, made_hidden=16,
                                decoder=DecoderChoice.factorised, cond_channels=4), seed=2,
                    binarizer=Binarizer(background=background, threshold=24))
    return save_checkpoint(folder / "checkpoints", 0, {"vae": vae.state_dict(), "config": ""}), vae


# ------------------------------------------------------------------------------------------ random projection
def test_random_projection_is_a_by_x_on_a_hand_checked_case() -> None:
    rp = RandomProjection((2, 3), dim=4, seed=5)
    a = np.random.default_rng(5).standard_normal((4, 6), dtype=np.float32)  # the documented construction
    np.testing.assert_array_equal(rp.matrix, a)
    x = np.array([[[0, 255, 51], [102, 0, 255]]], dtype=np.uint8)
    want = a @ np.array([0.0, 1.0, 0.2, 0.4, 0.0, 1.0], dtype=np.float32)  # pixels scaled by 1/255
    got = rp.embed(x)
    assert got.shape == (1, 4) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)
    # By hand for one row: A[0] . x = a00*0 + a01*1 + a02*.2 + a03*.4 + a04*0 + a05*1.
    assert got[0, 0] == pytest.approx(a[0, 1] + 0.2 * a[0, 2] + 0.4 * a[0, 3] + a[0, 5], abs=1e-5)


def test_random_projection_is_deterministic_per_seed_and_differs_across_seeds() -> None:
    x = frames(16)
    a, b, c = (make_representation("random_projection", (84, 84), 64, seed=s) for s in (3, 3, 4))
    assert isinstance(a, Representation) and a.dim == 64
    ea = a.embed(x)
    assert ea.shape == (16, 64) and ea.dtype == np.float32
    np.testing.assert_array_equal(ea, b.embed(x))
    assert np.abs(ea - c.embed(x)).min() > 0  # every entry differs for another seed
    # Entries of A ~ N(0, 1): over 64 x 7056 draws the moments are tight.
    m = a.matrix  # type: ignore[attr-defined]
    assert m.shape == (64, 84 * 84) and abs(float(m.mean())) < 0.01 and abs(float(m.std()) - 1.0) < 0.01


def test_random_projection_on_minatar_frames_is_not_divided_by_255() -> None:
    rp = make_representation("random_projection", (4, 10, 10), dim=8, seed=0)
    x = np.random.default_rng(1).integers(0, 2, (3, 4, 10, 10), dtype=np.uint8)
    a = np.random.default_rng(0).standard_normal((8, 400), dtype=np.float32)
    np.testing.assert_allclose(rp.embed(x), x.reshape(3, 400).astype(np.float32) @ a.T, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(rp.embed(x.astype(bool)), rp.embed(x))
    with pytest.raises(ValueError, match=r"built for frames \(4, 10, 10\)"):
        rp.embed(x[:, :2])
    with pytest.raises(ValueError, match="uint8"):
        rp.embed(x.astype(np.float32))


# ----------------------------------------------------------------------------------------------- Gaussian VAE
def test_gaussian_nll_and_kl_by_hand() -> None:
    # x = 0.5, mean 0.3, std 0.1: 0.5 log 2pi + log 0.1 + 0.5 (0.2 / 0.1)^2.
    nll = gaussian_nll(torch.tensor(0.5), torch.tensor(0.3), torch.tensor(math.log(0.1)))
    assert float(nll) == pytest.approx(0.5 * math.log(2 * math.pi) + math.log(0.1) + 2.0, abs=1e-5)
    assert float(nll) == pytest.approx(0.6163534, abs=1e-5)
    # KL(N(1, 2^2) || N(0, 1)) = 0.5 (1 + 4 - 1) - log 2.
    kl = kl_standard_normal(torch.tensor(1.0), torch.tensor(math.log(2.0)))
    assert float(kl) == pytest.approx(2.0 - math.log(2.0), abs=1e-6)
    assert float(kl_standard_normal(torch.tensor(0.0), torch.tensor(0.0))) == 0.0


def test_a_fixed_decoder_std_makes_the_likelihood_a_scaled_squared_error() -> None:
    from dataclasses import replace

    model = GaussianVAE(replace(SMALL, learn_std=False), seed=0)
    x = GaussianVAE.scale(frames(2))
    z = torch.randn(2, SMALL.latents, generator=torch.Generator().manual_seed(1))
    x_mean, x_log_std = model.decode(z)
    assert torch.equal(x_log_std, torch.full_like(x_log_std, model.log_floor))  # every pixel at the floor
    nll = gaussian_nll(x, x_mean, x_log_std).flatten(1).sum(1)
    by_hand = (0.5 * math.log(2 * math.pi) + math.log(0.05)) * 84 * 84 \
        + 0.5 * ((x - x_mean) / 0.05).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(nll, by_hand, rtol=1e-4, atol=1e-2)
    # The setting travels with the export; an export from before it existed loads with the paper's learned std.
    assert GaussianVAE.from_export(model.export()).cfg.learn_std is False
    old = GaussianVAE(SMALL).export()
    del old["config"]["learn_std"]
    assert GaussianVAE.from_export(old).cfg.learn_std is True


def test_loss_is_the_negative_elbo_of_the_direct_formula() -> None:
    torch.manual_seed(0)
    model = GaussianVAE(SMALL)
    x = GaussianVAE.scale(frames(3))
    out = model.loss(x, generator=torch.Generator().manual_seed(7))
    # Recompute with torch.distributions and the same eps.
    mean, log_std = model.encode(x)
    eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    x_mean, x_log_std = model.decode(mean + log_std.exp() * eps)
    log_lik = torch.distributions.Normal(x_mean, x_log_std.exp()).log_prob(x).flatten(1).sum(1)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mean, log_std.exp()),
                                           torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(out["nll"], -log_lik, rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(out["kl"], kl, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["neg_elbo"], out["nll"] + out["kl"])
    assert out["neg_elbo"].shape == (3,)


def test_std_floor_holds_for_very_negative_raw_log_std() -> None:
    model = GaussianVAE(SMALL)
    raw = torch.tensor([-1e4, -100.0, math.log(0.05), 0.0, 3.0])
    std = model.floor_log_std(raw).exp()
    # exp(log f + softplus(r - log f)) = f (1 + e^r / f) = f + e^r: the floor plus the raw std.
    torch.testing.assert_close(std, 0.05 + raw.exp())
    assert bool((std >= 0.05).all()) and float(std[0]) == pytest.approx(0.05)
    last = model.decoder[-1]
    assert isinstance(last, torch.nn.ConvTranspose2d) and last.bias is not None
    with torch.no_grad():  # push the log-std plane of the last transposed convolution to -1000
        last.bias[1] = -1000.0
        last.weight[:, 1] = 0.0
    with torch.no_grad():
        _, log_std = model.decode(torch.randn(4, 32))
    assert bool((log_std.exp() >= 0.05).all()) and float(log_std.exp().min()) == pytest.approx(0.05)
    # A gradient still reaches a floored std (a hard clamp would give none).
    raw = torch.tensor([-5.0], requires_grad=True)
    model.floor_log_std(raw).sum().backward()
    assert raw.grad is not None and float(raw.grad) > 0


def test_paper_network_shapes() -> None:
    assert conv_sizes([4, 5, 5, 4]) == [(41, 0), (19, 0), (8, 0), (3, 0)]  # no padding, no pixel dropped
    model = GaussianVAE()  # the paper's sizes
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64] and [c.kernel_size[0] for c in convs] == [4, 5, 5, 4]
    assert all(c.stride == (2, 2) and c.padding == (0, 0) for c in convs)
    x = GaussianVAE.scale(frames(2))
    mean, log_std = model.encode(x)
    assert mean.shape == log_std.shape == (2, 32)
    x_mean, x_log_std = model.decode(mean)
    assert x_mean.shape == x_log_std.shape == (2, 1, 84, 84)
    key = model.embed(frames(2))
    assert key.shape == (2, 64) and key.dtype == np.float32
    np.testing.assert_allclose(key, torch.cat([mean, log_std], 1).detach().numpy(), rtol=1e-6, atol=1e-6)
    # Kernels that leave an odd remainder are mirrored with output_padding: still 84x84 out.
    odd = GaussianVAE(GaussianVAEConfig(latents=2, channels=[2, 2], kernels=[3, 4], hidden=8))
    assert conv_sizes([3, 4]) == [(41, 1), (19, 1)]
    assert odd.decode(torch.zeros(1, 2))[0].shape == (1, 1, 84, 84)
    with pytest.raises(ValueError, match=r"model\.kernels=\[40, 40\]"):
        GaussianVAE(GaussianVAEConfig(channels=[2, 2], kernels=[40, 40]))
    with pytest.raises(ValueError, match="84x84 grey frames"):
        GaussianVAE.scale(frames(2, shape=(42, 42)))


def test_loss_falls_over_a_few_dozen_steps() -> None:
    model = GaussianVAE(SMALL, seed=0)
    f = np.full((8, 84, 84), 20, np.uint8)  # bright squares on a dark background: something to learn
    for i, (y, x) in enumerate(np.random.default_rng(0).integers(0, 76, (8, 2))):
        f[i, y: y + 8, x: x + 8] = 200
    x = GaussianVAE.scale(f)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        loss = model.loss(x, generator=torch.Generator().manual_seed(step))["neg_elbo"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # Nats per frame: ~7100 at the start (a unit-std Gaussian over 7056 pixels), ~12% less after 40 steps.
    assert np.mean(losses[-5:]) < 0.93 * np.mean(losses[:5])
    assert all(b < a for a, b in zip(losses[::8], losses[8::8]))


def test_export_round_trip_and_presets() -> None:
    model = GaussianVAE(SMALL, seed=4)
    again = pickle.loads(pickle.dumps(model.export()))
    np.testing.assert_array_equal(GaussianVAE.from_export(again).embed(frames()), model.embed(frames()))
    with pytest.raises(ValueError, match="not a Gaussian-VAE state"):
        GaussianVAE.from_export({"format": "other"})
    paper = load_config(GVAEFitConfig, ["gvae_paper"])
    validate(paper)
    assert (paper.optim.name, paper.optim.lr, paper.optim.batch_size, paper.run.total_steps) == \
        ("rmsprop", 1e-5, 100, 400_000)
    assert paper.model == GaussianVAEConfig()  # the paper's network is the default
    cpu = load_config(GVAEFitConfig, ["gvae_cpu"])
    validate(cpu)
    assert cpu.model == paper.model and cpu.run.max_seconds == 1800 and cpu.optim.name == "adam"


# ------------------------------------------------------------------------------------------- make_representation
def test_make_representation_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose one of random_projection, gaussian_vae, binary_vae"):
        make_representation("pca", (84, 84))
    assert REPRESENTATION_KINDS == ("random_projection", "gaussian_vae", "binary_vae")
    for kind in ("gaussian_vae", "binary_vae"):
        for path in (None, ""):
            with pytest.raises(ValueError, match=f"the {kind} representation needs path"):
                make_representation(kind, (84, 84), 64, path=path)
    gpath, _ = gvae_checkpoint(tmp_path / "g")
    bpath, _ = bvae_checkpoint(tmp_path / "b")
    with pytest.raises(ValueError, match=r"dim=32, but the Gaussian VAE .* has 32 latents, .* 64 entries: set dim=64"):
        make_representation("gaussian_vae", (84, 84), 32, path=str(gpath))
    with pytest.raises(ValueError, match="dim=64, but the binary VAE .* has 12 latents .* set dim=12"):
        make_representation("binary_vae", (84, 84), 64, path=str(bpath))
    with pytest.raises(ValueError, match=r"84x84 .* got \(4, 10, 10\)"):
        make_representation("gaussian_vae", (4, 10, 10), 64, path=str(gpath))
    with pytest.raises(ValueError, match="not a `reverie fit-vae` checkpoint .*use the gaussian_vae"):
        make_representation("binary_vae", (84, 84), 64, path=str(gpath))
    with pytest.raises(ValueError, match="not a `reverie fit-gvae` checkpoint .*use the binary_vae"):
        make_representation("gaussian_vae", (84, 84), 12, path=str(bpath))
    with pytest.raises(ValueError, match="dim=0"):
        make_representation("random_projection", (84, 84), 0)


def test_binary_adapter_keys_are_the_posterior_means_along_the_greedy_code(tmp_path: Path) -> None:
    path, vae = bvae_checkpoint(tmp_path)
    rep = make_representation("binary_vae", (84, 84), 12, path=str(tmp_path))  # a run directory works too
    x = frames(5)
    key = rep.embed(x)
    assert key.shape == (5, 12) and key.dtype == np.float32 and bool(((key > 0) & (key < 1)).all())
    assert vae.binarizer is not None
    bits = vae.embed(vae.binarizer(x))  # fit-vae's own greedy code of the binarised frames
    np.testing.assert_array_equal((key > 0.5).astype(np.float32), bits)
    with pytest.raises(ValueError, match=r"uint8 \[B, 84, 84\]"):
        rep.embed(frames(2, shape=(42, 42)))


# ----------------------------------------------------------------------------------------------- specs
def test_spec_round_trip_gives_identical_embeddings(tmp_path: Path) -> None:
    gpath, _ = gvae_checkpoint(tmp_path / "g")
    bpath, _ = bvae_checkpoint(tmp_path / "b")
    reps = [make_representation("random_projection", (84, 84), 64, seed=9),
            make_representation("random_projection", (3, 10, 10), 16, seed=2),
            make_representation("gaussian_vae", (84, 84), 64, path=str(gpath)),
            make_representation("binary_vae", (84, 84), 12, path=str(bpath))]
    for rep in reps:
        x = frames(4, shape=tuple(rep.frame_shape))  # type: ignore[attr-defined]
        if x.shape[1:] == (3, 10, 10):
            x = x % 2
        for weights in (True, False):
            spec = representation_spec(rep, weights=weights)
            assert spec["dim"] == rep.dim and isinstance(spec["frame_shape"], list)
            assert ("state" in spec) == (weights and spec["kind"] != "random_projection")
            remote = load_representation(pickle.loads(pickle.dumps(spec)))  # what a Ray actor receives
            assert type(remote) is type(rep) and remote.dim == rep.dim
            np.testing.assert_array_equal(remote.embed(x), rep.embed(x))
    assert representation_spec(reps[0]) == {"kind": "random_projection", "frame_shape": [84, 84], "dim": 64,
                                            "seed": 9}
    assert isinstance(reps[2], GaussianVAERepresentation) and isinstance(reps[3], BinaryVAERepresentation)
    with pytest.raises(ValueError, match="choose one of"):
        load_representation({"kind": "pca"})
    with pytest.raises(ValueError, match="no spec"):
        representation_spec(object())
