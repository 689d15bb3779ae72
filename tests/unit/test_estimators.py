"""Score-function estimators against the exact gradient, computed by enumerating every latent state of a tiny
binary VAE (3 latent bits, 4x4 frames): unbiasedness (mean over many samples) and variance reduction."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from worldmodels.vae.config import ModelConfig
from worldmodels.vae.estimators import NVIL, VIMCO, Reinforce, StraightThroughGumbel
from worldmodels.vae.network import VAENetwork

TINY = ModelConfig(image_size=4, latent_dim=3, encoder_channels=2, encoder_hidden=4, made_hidden=4,
                   decoder_channels=2, decoder_layers=1, decoder_kernel=3, cond_channels=2)
ZS = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))  # [8, 3]: every latent state


def _setup(seed: int = 0) -> tuple[VAENetwork, torch.Tensor]:
    torch.manual_seed(seed)
    net = VAENetwork(TINY)
    x = torch.tensor([[1, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1],
                      [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1]], dtype=torch.float32).view(2, 1, 4, 4)
    return net, x


def _log_terms(net: VAENetwork, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log q(z | x) and log w(x, z) for every z: each ``[B, 8]``."""
    b, n = len(x), len(ZS)
    h = net.encode(x).repeat_interleave(n, 0)
    z = ZS.repeat(b, 1)
    xs = x.repeat_interleave(n, 0)
    lq = net.log_q(z, h).view(b, n)
    lw = (net.log_lik(xs, z) + net.log_prior(z)).view(b, n) - lq
    return lq, lw


def exact_bound(net: VAENetwork, x: torch.Tensor, k: int) -> torch.Tensor:
    """E over k iid z ~ q of log (1/k) sum w, by enumeration of all 8**k tuples (k = 1: the ELBO); mean over x."""
    lq, lw = _log_terms(net, x)
    combos = torch.tensor(list(itertools.product(range(len(ZS)), repeat=k)))  # [8**k, k]
    log_prob = lq[:, combos].sum(-1)
    value = torch.logsumexp(lw[:, combos], -1) - math.log(k)
    return (log_prob.exp() * value).sum(-1).mean()


def _grad(net: VAENetwork, value: torch.Tensor) -> torch.Tensor:
    g = torch.autograd.grad(value, list(net.parameters()), allow_unused=True)
    return torch.cat([(gi if gi is not None else torch.zeros_like(p)).flatten() for gi, p in zip(g, net.parameters())])


def _trained_nvil(net: VAENetwork, x: torch.Tensor) -> NVIL:
    """NVIL whose baseline C(x) and running mean have been fitted (the model itself stays fixed)."""
    nvil = NVIL(16, hidden=4, normalise=False)
    opt = torch.optim.Adam(nvil.parameters(), lr=0.05)
    for _ in range(300):
        loss, _ = nvil.surrogate(net, x.repeat(4, 1, 1, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return nvil


@pytest.mark.parametrize("name,k", [("reinforce", 1), ("nvil", 1), ("reinforce", 3), ("vimco", 3)])
def test_score_function_means_match_the_exact_gradient(name: str, k: int) -> None:
    net, x = _setup()
    exact = _grad(net, exact_bound(net, x, k))
    torch.manual_seed(1)
    est = {"reinforce": lambda: Reinforce(k), "nvil": lambda: _trained_nvil(net, x), "vimco": lambda: VIMCO(k)}[name]()
    # Chunk means of many single-sample estimates give the mean and its standard error per coordinate.
    chunks = torch.stack([-_grad(net, est.surrogate(net, x.repeat(6000, 1, 1, 1), update_stats=False)[0])
                          for _ in range(8)])
    mean, se2 = chunks.mean(0), chunks.var(0) / len(chunks)
    inference = {id(q) for q in net.inference_parameters()}
    phi = torch.cat([torch.full((p.numel(),), id(p) in inference) for p in net.parameters()])
    for part, sel in (("all parameters", torch.ones_like(phi)), ("posterior parameters", phi)):
        err2, noise2 = (mean[sel] - exact[sel]).pow(2).sum().item(), se2[sel].sum().item()
        # Unbiased: the squared error is what Monte Carlo noise explains (its expectation is `noise2`).
        assert err2 < 3.0 * noise2, f"{name} K={k}, {part}: squared error {err2:.3g} vs noise {noise2:.3g}"
    rel = ((mean - exact).norm() / exact.norm()).item()
    assert rel < 0.05, f"{name} K={k}: relative error {rel:.3f} of the mean gradient"
    if name != "reinforce":  # low variance: the posterior's gradient itself is pinned down to 10%
        rel_phi = ((mean[phi] - exact[phi]).norm() / exact[phi].norm()).item()
        assert rel_phi < 0.1, f"{name} K={k}: relative error {rel_phi:.3f} on the posterior's parameters"


def _phi_variance(net: VAENetwork, est: torch.nn.Module, x: torch.Tensor, draws: int = 200) -> float:
    params = net.inference_parameters()
    grads = []
    for _ in range(draws):
        loss, _ = est.surrogate(net, x, update_stats=False)
        g = torch.autograd.grad(loss, params, allow_unused=True)
        grads.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).flatten() for gi, p in zip(g, params)]))
    return torch.stack(grads).var(0).sum().item()


def test_nvil_and_vimco_have_lower_variance_than_reinforce() -> None:
    net, x = _setup()
    x1 = x[:1]
    torch.manual_seed(2)
    nvil = _trained_nvil(net, x1)
    v_reinforce = _phi_variance(net, Reinforce(1), x1)
    v_nvil = _phi_variance(net, nvil, x1)
    assert v_nvil < 0.2 * v_reinforce, (v_nvil, v_reinforce)
    v_reinforce3 = _phi_variance(net, Reinforce(3), x1)
    v_vimco3 = _phi_variance(net, VIMCO(3), x1)
    assert v_vimco3 < 0.2 * v_reinforce3, (v_vimco3, v_reinforce3)


def test_vimco_leave_one_out_signal_by_hand() -> None:
    from worldmodels.vae.estimators import leave_one_out_signal

    log_w = torch.tensor([[0.0], [math.log(2.0)], [math.log(4.0)]])  # w = 1, 2, 4
    bound = math.log(7 / 3)
    # Sample 0 replaced by the geometric mean of the others, sqrt(8): L_-0 = log((sqrt(8) + 6) / 3).
    expected = [bound - math.log((math.sqrt(8) + 6) / 3), bound - math.log((1 + 2 + 4) / 3),
                bound - math.log((1 + 2 + math.sqrt(2)) / 3)]
    assert torch.allclose(leave_one_out_signal(log_w)[:, 0], torch.tensor(expected), atol=1e-6)


def test_straight_through_forward_is_an_exact_posterior_sample() -> None:
    net, x = _setup()
    with torch.no_grad():
        elbo = exact_bound(net, x, 1).item()
    torch.manual_seed(3)
    _, stats = StraightThroughGumbel(0.5).surrogate(net, x.repeat(20_000, 1, 1, 1))
    # Binary z ~ q(z | x) in the forward pass, so the single-sample ELBO averages to the exact ELBO.
    assert abs(stats["elbo"] - elbo) < 0.05, (stats["elbo"], elbo)
    loss, _ = StraightThroughGumbel(0.5).surrogate(net, x)
    g = torch.autograd.grad(loss, net.inference_parameters(), allow_unused=True)
    assert any(gi is not None and gi.abs().sum() > 0 for gi in g)  # the pathwise gradient reaches the posterior
