"""How many of a VAE's latents carry information about the frame: active units and KL per dimension, the
measures of posterior collapse that `reverie fit-gvae`, `reverie fit-vae` and `reverie evaluate-vae` report.

**Active units** (Burda et al. 2015, "Importance Weighted Autoencoders", Sec. 5.2): latent u is active when
``A_u = Var_x( E_{q(u | x)}[u] ) > 0.01``, the variance over frames of its posterior mean. A collapsed latent gives
every frame the same posterior, so MFEC's nearest neighbours in that coordinate are noise (Blundell et al. 2016
use the posterior parameters as the key). For the Gaussian VAE the posterior mean is ``mu(x)``; for the binary VAE
it is ``q(z_i = 1 | z_<i, x)`` along the greedy code (the key of the ``binary_vae`` representation), whose
variance is at most 0.25, so the same threshold reads "a spread of 0.1 in probability".

**KL per dimension**, nats per frame, averaged over frames: for the Gaussian VAE, ``KL(N(mu_j, sigma_j) || N(0, 1))``
per latent j (its sum is the ELBO's KL); for the binary VAE, whose prior and posterior are autoregressive, the
chain rule's term ``KL(q(z_i | z_<i, x) || p(z_i | z_<i))`` at posterior samples z (their sum over i is an unbiased
estimate of ``KL(q(z | x) || p(z))``). A unit with near-zero KL carries no information whatever its variance.

A model is reported **collapsed** when fewer than ``min_active_fraction`` (default one half) of its latents are
active: the goal of issue 28 is "most of its units active".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["ACTIVE_THRESHOLD", "MIN_ACTIVE_FRACTION", "LatentUsage", "active_variances", "binary_usage",
           "collapse_message", "gaussian_usage", "usage_of", "usage_of_gaussian_posteriors", "warn_if_collapsed"]

ACTIVE_THRESHOLD = 0.01
"""Burda et al. 2015's threshold on the variance over frames of a latent's posterior mean."""
MIN_ACTIVE_FRACTION = 0.5
"""Below this fraction of active latents a model is reported collapsed."""


def active_variances(posterior_means: np.ndarray) -> np.ndarray:
    """``Var_x`` of each latent's posterior mean: float64 ``[D]`` from ``[N, D]`` posterior means of N frames.

    :raises ValueError: fewer than two frames (a variance needs two), or not a 2-d array.
    """
    means = np.asarray(posterior_means, np.float64)
    if means.ndim != 2 or len(means) < 2:
        raise ValueError(f"active units need the posterior means of at least 2 frames, [N, D]; got shape "
                         f"{means.shape}: score more held-out frames.")
    return means.var(axis=0)


@dataclass(frozen=True)
class LatentUsage:
    """Per-latent usage of a VAE on a set of frames.

    :param variances: float64 ``[D]``, the variance over frames of each latent's posterior mean.
    :param kl_per_dim: float64 ``[D]``, nats per frame, each latent's share of the KL term.
    :param threshold: the activity threshold on ``variances``.
    :param min_active_fraction: below this fraction of active latents the model is collapsed.
    :param frames: how many frames were scored.
    """

    variances: np.ndarray
    kl_per_dim: np.ndarray
    threshold: float = ACTIVE_THRESHOLD
    min_active_fraction: float = MIN_ACTIVE_FRACTION
    frames: int = 0

    @property
    def latents(self) -> int:
        return int(len(self.variances))

    @property
    def active(self) -> int:
        """How many latents have ``variance > threshold``."""
        return int((self.variances > self.threshold).sum())

    @property
    def collapsed(self) -> bool:
        return self.active < self.min_active_fraction * self.latents

    def summary(self) -> dict[str, Any]:
        """Plain values for JSON, TensorBoard and checkpoints: ``active_units``, ``latents``, ``collapsed``, the
        threshold, the KL's total and its per-dimension list (sorted largest first, rounded), the variances."""
        order = np.argsort(-self.kl_per_dim)
        return {"active_units": self.active, "latents": self.latents, "collapsed": self.collapsed,
                "active_threshold": self.threshold, "min_active_fraction": self.min_active_fraction,
                "usage_frames": self.frames, "kl_total": round(float(self.kl_per_dim.sum()), 4),
                "kl_per_dim_sorted": [round(float(v), 4) for v in self.kl_per_dim[order]],
                "mean_variances": [round(float(v), 6) for v in self.variances]}


USAGE_KEYS = ("active_units", "latents", "collapsed", "active_threshold", "min_active_fraction", "usage_frames",
              "kl_total")


def usage_of(scores: dict[str, Any]) -> dict[str, Any]:
    """The latent-usage part of a held-out score (empty if none was measured), as checkpoints keep it."""
    return {k: scores[k] for k in USAGE_KEYS if k in scores}


def warn_if_collapsed(checkpoint: dict[str, Any], what: str) -> None:
    """Warn (``UserWarning``) when a VAE checkpoint named as a key source recorded a collapsed model at its last
    held-out score. Checkpoints written before usage was measured say nothing, and nothing is warned."""
    message = collapse_message(checkpoint.get("usage") or {}, what,
                               "Its keys will act much like a constant: refit it with a remedy (a Gaussian VAE: "
                               "model.mean_frame=true; either VAE: optim.free_bits, a KL warm-up), check them with "
                               "`reverie key-quality`, or use random_projection keys.")
    if message:
        warnings.warn(message, UserWarning, stacklevel=3)


def collapse_message(summary: dict[str, Any], what: str, fix: str) -> str | None:
    """The warning for a collapsed model (``summary`` is :meth:`LatentUsage.summary` or the copy a checkpoint
    keeps), or None when it is not collapsed. ``what`` names the model, ``fix`` the remedy to try."""
    if not summary or not summary.get("collapsed"):
        return None
    return (f"{what} has collapsed: {summary['active_units']} of its {summary['latents']} latents are active "
            f"(posterior-mean variance over frames > {summary['active_threshold']:g}; fewer than "
            f"{summary['min_active_fraction']:.0%}), so its keys barely depend on the frame and MFEC's nearest "
            f"neighbours are noise. {fix}")


@torch.no_grad()
def gaussian_usage(model: Any, frames: np.ndarray, batch: int = 100, threshold: float = ACTIVE_THRESHOLD,
                   min_active_fraction: float = MIN_ACTIVE_FRACTION) -> LatentUsage:
    """Usage of a :class:`~worldmodels.representations.gaussian_vae.GaussianVAE` on uint8 ``[N, 84, 84]`` frames
    (N >= 2), computed from its posterior means and log-stds (no sampling: exact)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    means, log_stds = [], []
    for b in range(0, len(frames), batch):
        mean, log_std = model.encode(model.scale(frames[b: b + batch]).to(device))
        means.append(mean.double().cpu().numpy())
        log_stds.append(log_std.double().cpu().numpy())
    model.train(was_training)
    if not means:
        raise ValueError("active units need the posterior means of at least 2 frames; got none.")
    return usage_of_gaussian_posteriors(np.concatenate(means), np.concatenate(log_stds), threshold,
                                        min_active_fraction)


def usage_of_gaussian_posteriors(means: np.ndarray, log_stds: np.ndarray, threshold: float = ACTIVE_THRESHOLD,
                                 min_active_fraction: float = MIN_ACTIVE_FRACTION) -> LatentUsage:
    """Usage from diagonal Gaussian posteriors already computed: means and log-stds, float ``[N, latents]`` each
    (N >= 2); the KL per latent is ``0.5 (mu^2 + sigma^2 - 1) - log sigma`` averaged over the frames."""
    mu, log_std = np.asarray(means, np.float64), np.asarray(log_stds, np.float64)
    kl = 0.5 * (mu ** 2 + np.exp(2.0 * log_std) - 1.0) - log_std
    return LatentUsage(active_variances(mu), kl.mean(0), threshold, min_active_fraction, len(mu))


@torch.no_grad()
def binary_usage(vae: Any, binary_frames: np.ndarray, samples: int = 4, seed: int = 0, batch: int = 100,
                 threshold: float = ACTIVE_THRESHOLD, min_active_fraction: float = MIN_ACTIVE_FRACTION) -> LatentUsage:
    """Usage of a :class:`~worldmodels.vae.BinaryVAE` on its binary frames uint8 ``[N, S, S]`` (N >= 2; run
    luminance frames through ``vae.binarizer`` first).

    The posterior means are those of the greedy code (the ``binary_vae`` key). The KL per unit is the exact
    Bernoulli KL between ``q(z_i | z_<i, x)`` and ``p(z_i | z_<i)`` averaged over ``samples`` posterior samples per
    frame, drawn from a generator seeded with ``seed`` (repeatable).
    """
    net = vae.net
    was_training = net.training
    net.eval()
    gen = torch.Generator(vae.device).manual_seed(seed)
    means, kls = [], []
    for b in range(0, len(binary_frames), batch):
        x = vae.to_tensor(binary_frames[b: b + batch])
        h = net.encode(x)
        greedy = net.sample_posterior(h, greedy=True)
        means.append(torch.sigmoid(net.posterior(greedy, h)).double().cpu())
        hs = h.repeat(samples, 1)
        z = net.sample_posterior(hs, generator=gen)
        q_logits, p_logits = net.posterior(z, hs).double(), net.prior(z).double()
        kl = bernoulli_kl(q_logits, p_logits).view(samples, len(x), -1).mean(0)
        kls.append(kl.cpu())
    net.train(was_training)
    mu = torch.cat(means).numpy() if means else np.zeros((0, 0))
    return LatentUsage(active_variances(mu), torch.cat(kls).mean(0).numpy(), threshold, min_active_fraction,
                       len(binary_frames))


def bernoulli_kl(q_logits: torch.Tensor, p_logits: torch.Tensor) -> torch.Tensor:
    """``KL(Bern(sigmoid(q)) || Bern(sigmoid(p)))`` elementwise, nats, from logits (stable: log-sigmoids)."""
    q = torch.sigmoid(q_logits)
    log_q1, log_q0 = torch.nn.functional.logsigmoid(q_logits), torch.nn.functional.logsigmoid(-q_logits)
    log_p1, log_p0 = torch.nn.functional.logsigmoid(p_logits), torch.nn.functional.logsigmoid(-p_logits)
    return q * (log_q1 - log_p1) + (1.0 - q) * (log_q0 - log_p0)
