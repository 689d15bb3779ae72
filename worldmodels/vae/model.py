"""``BinaryVAE``: the binary-latent VAE as one object that trains, scores, samples and embeds.

It bundles the network (:mod:`worldmodels.vae.network`), the gradient estimator
(:mod:`worldmodels.vae.estimators`), an Adam optimiser and, optionally, the :class:`Binarizer` that turns
luminance frames into the binary frames it models. It satisfies two protocols of
:mod:`worldmodels.protocols`:

- ``DensityModel``: ``log_prob(frames)`` is the importance-weighted bound (Burda et al. 2016) with
  ``density_samples`` posterior samples, a *lower bound* on log p(x) in nats that tightens as K grows.
  Its samples come from a generator re-seeded on every call (common random numbers), so it is a
  deterministic function of the parameters and the frames: the difference ``log_p_after - log_p_before``
  of :meth:`BinaryVAE.update` measures the parameter change, not sampling noise. ``update`` takes one
  estimator step per frame, in order.
- ``Representation``: ``embed(frames)`` is the greedy posterior code (z_i = 1 iff q(z_i = 1 | z_<i, x) > 1/2,
  unit by unit) as float32 0/1; ``hash_keys(frames)`` packs the same bits into bytes for exact-match lookup
  (episodic control).

Frames given to these methods are binary: uint8 ``[B, S, S]`` with values in {0, 1} (S = ``image_size``).
Luminance frames go through ``vae.binarizer(frames)`` first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from enum import Enum
from typing import Any

import numpy as np
import torch

from worldmodels.common.device import to_device
from worldmodels.data.binarize import Binarizer
from worldmodels.vae.config import EstimatorConfig, ModelConfig, OptimConfig
from worldmodels.vae.estimators import Estimator, KLPenalty, make_estimator
from worldmodels.vae.network import VAENetwork

FORMAT = "reverie-binary-vae-v1"
EVAL_KS = (1, 10, 100, 1000)


def plain_config(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a dict of plain values (Enum choices as their strings), as saved in state dicts: a
    checkpoint then unpickles without this package's Enum classes, and compares equal to a config either way."""
    return {k: v.value if isinstance(v, Enum) else v for k, v in asdict(cfg).items()}


def _nested(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(sorted(set(int(k) for k in ks)))
    for a, b in zip(ks, ks[1:]):
        if b % a:
            raise ValueError(f"sample counts {ks} must each divide the next (e.g. 1, 10, 100, 1000).")
    if not ks or ks[0] < 1:
        raise ValueError(f"sample counts {ks} must be positive.")
    return ks


class BinaryVAE:
    """Binary VAE with autoregressive Bernoulli prior, posterior and likelihood.

    :param model: sizes (:class:`ModelConfig`).
    :param estimator: gradient estimator (:class:`EstimatorConfig`); default NVIL.
    :param optim: optimiser settings (:class:`OptimConfig`).
    :param seed: seeds the initial weights.
    :param binarizer: turns luminance frames into this model's binary frames (kept in the state dict).
    :param density_samples: K of the importance-weighted bound returned by :meth:`log_prob`.
    """

    def __init__(self, model: ModelConfig | None = None, estimator: EstimatorConfig | None = None,
                 optim: OptimConfig | None = None, seed: int = 0, binarizer: Binarizer | None = None,
                 density_samples: int = 100) -> None:
        self.model_cfg = model or ModelConfig()
        self.estimator_cfg = estimator or EstimatorConfig()
        self.optim_cfg = optim or OptimConfig()
        self.binarizer = binarizer
        self.density_samples = density_samples
        self.seed = seed
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = VAENetwork(self.model_cfg)
            o = self.optim_cfg
            penalty = KLPenalty(o.kl_warmup_steps, o.free_bits, o.free_bits_group)
            self.estimator: Estimator = make_estimator(self.estimator_cfg, self.size * self.size, penalty)
        groups = [{"params": list(self.net.parameters()), "lr": self.optim_cfg.lr}]
        if list(self.estimator.parameters()):
            groups.append({"params": list(self.estimator.parameters()), "lr": self.optim_cfg.baseline_lr})
        self.optimizer = torch.optim.Adam(groups)
        self.steps = 0
        self.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> BinaryVAE:
        """Move the network, the estimator (NVIL's baseline and statistics) and the optimiser's moments to
        ``device``; frames given to the methods below are moved there too. Returns ``self``."""
        if torch.device(device) == self.device:
            return self
        self.device = torch.device(device)
        self.net.to(self.device)
        self.estimator.to(self.device)
        # Loading its own state re-casts the optimiser's moments to the device of the parameters they belong to.
        self.optimizer.load_state_dict(self.optimizer.state_dict())
        return self

    # ----------------------------------------------------------------------------------------- shapes
    @property
    def size(self) -> int:
        """Side S of the binary frames."""
        return self.model_cfg.image_size

    @property
    def dim(self) -> int:
        """Embedding length: the number of latent bits D (``Representation``)."""
        return self.model_cfg.latent_dim

    def to_tensor(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, S, S]`` in {0, 1} -> float32 ``[B, 1, S, S]``.

        :raises ValueError: wrong shape or non-binary values (naming the fix).
        """
        x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.size, self.size):
            raise ValueError(f"frames must be binary [B, {self.size}, {self.size}], got {tuple(x.shape)}; "
                             f"binarise luminance frames first with vae.binarizer(frames).")
        if x.numel() and int(x.max()) > 1:
            raise ValueError("frames must hold 0/1 values (binarised); got values up to "
                             f"{int(x.max())}: apply vae.binarizer(frames) first.")
        return to_device(x, self.device).to(torch.float32).unsqueeze(1)

    # --------------------------------------------------------------------------------------- training
    def train_step(self, frames: np.ndarray) -> dict[str, float]:
        """One estimator step on a batch of binary frames uint8 ``[B, S, S]``.

        :return: per-frame means in nats (``elbo``, ``kl``, ``log_lik``, ``bound`` for multi-sample
            estimators), ``loss`` (the surrogate) and ``grad_norm`` (before clipping).
        """
        x = self.to_tensor(frames)
        self.net.train()
        loss, out = self.estimator.surrogate(self.net, x, step=self.steps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        clip = self.optim_cfg.max_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.steps += 1
        out.update(loss=loss.item(), grad_norm=float(norm))
        return out

    def gradient_variance(self, frames: np.ndarray, repeats: int = 8) -> dict[str, float]:
        """Spread of the estimator's gradient w.r.t. the inference parameters (encoder and posterior) over
        ``repeats`` independent estimates on the same batch (running statistics are not updated).

        :return: ``grad_var``, the mean over parameters of the per-coordinate sample variance, and
            ``grad_snr``, ``|mean gradient|^2 / sum of variances`` (scale-free: comparable across estimators).
        """
        x = self.to_tensor(frames)
        params = self.net.inference_parameters()
        grads = []
        for _ in range(repeats):
            loss, _ = self.estimator.surrogate(self.net, x, update_stats=False, step=self.steps)
            g = torch.autograd.grad(loss, params, allow_unused=True)
            grads.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).flatten()
                                    for gi, p in zip(g, params)]))
        stack = torch.stack(grads).double()
        var = stack.var(0, unbiased=True)
        return {"grad_var": var.mean().item(),
                "grad_snr": (stack.mean(0).pow(2).sum() / var.sum().clamp_min(1e-300)).item()}

    # ------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def log_weights(self, frames: np.ndarray, k: int, generator: torch.Generator | None = None,
                    pairs_per_pass: int = 256) -> torch.Tensor:
        """log p(x, z_j) - log q(z_j | x) for k posterior samples per frame, float64 ``[k, B]`` in nats.

        The posterior's uniform noise ``[k, D]`` is drawn once from ``generator`` and shared by all frames,
        so a frame's weights depend only on the frame and the generator's seed, not on the batch.
        """
        x = self.to_tensor(frames)
        self.net.eval()
        u = torch.rand(k, self.dim, generator=generator).to(self.device)  # drawn on the CPU: same numbers anywhere
        out = []
        chunk = max(1, pairs_per_pass // max(1, len(x)))
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            out.append(self.net.log_weights(x, n, uniforms=u[start: start + n]).double())
        return torch.cat(out)

    def bounds(self, frames: np.ndarray, ks: Sequence[int] = EVAL_KS, seed: int = 0,
               pairs_per_pass: int = 256) -> dict[int, np.ndarray]:
        """Importance-weighted bounds L_K (Burda et al. 2016) of each frame, float64 ``[B]`` nats per K.

        One set of max(ks) samples serves every K: it is split into max(ks) / K disjoint groups of K,
        and L_K is the mean over groups of log (1/K) sum_group w. Each group's estimate is unbiased for
        L_K, and because the groups of a larger K are unions of those of a smaller K (ks must each divide
        the next), the estimates never decrease with K (Jensen's inequality, group by group), just as the
        true bounds L_1 <= L_10 <= ... <= log p(x) do. L_1 is the ELBO.
        """
        ks = _nested(ks)
        gen = torch.Generator().manual_seed(seed)
        lw = self.log_weights(frames, ks[-1], gen, pairs_per_pass)  # [Kmax, B]
        out = {}
        for k in ks:
            grouped = lw.view(ks[-1] // k, k, -1)
            out[k] = (torch.logsumexp(grouped, 1) - math.log(k)).mean(0).cpu().numpy()
        return out

    # --------------------------------------------------------------------------- DensityModel protocol
    def log_prob(self, frames: np.ndarray) -> np.ndarray:
        """Importance-weighted lower bound on log p(x) with ``density_samples`` samples, float64 ``[B]`` nats.

        Deterministic: the sampling generator is re-seeded on every call (see the module docstring).
        """
        return self.bounds(frames, (self.density_samples,), seed=self.seed + 1)[self.density_samples]

    def update(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score, take one estimator step on, and re-score each frame in order (``DensityModel``).

        :param frames: binary uint8 ``[B, S, S]``.
        :return: ``(log_p_before, log_p_after)``, float64 ``[B]`` nats (IWAE bounds, see :meth:`log_prob`).
        """
        before, after = np.empty(len(frames)), np.empty(len(frames))
        for i in range(len(frames)):
            one = frames[i: i + 1]
            before[i] = self.log_prob(one)[0]
            self.train_step(one)
            after[i] = self.log_prob(one)[0]
        return before, after

    # ------------------------------------------------------------------------- Representation protocol
    @torch.no_grad()
    def codes(self, frames: np.ndarray) -> torch.Tensor:
        """Greedy posterior codes, float32 ``[B, D]`` of 0/1 (deterministic)."""
        x = self.to_tensor(frames)
        self.net.eval()
        return self.net.sample_posterior(self.net.encode(x), greedy=True)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Posterior bits as float32 ``[B, D]`` of 0/1 (``Representation``)."""
        return self.codes(frames).cpu().numpy().astype(np.float32)

    def hash_keys(self, frames: np.ndarray) -> list[bytes]:
        """The posterior bits of each frame packed into ``ceil(D / 8)`` bytes: equal keys <=> equal codes."""
        bits = self.codes(frames).cpu().numpy().astype(np.uint8)
        return [row.tobytes() for row in np.packbits(bits, axis=1)]

    # ------------------------------------------------------------------------------------- generation
    @torch.no_grad()
    def sample_prior(self, n: int, seed: int = 0) -> np.ndarray:
        """n frames from the model: z ~ p(z), x ~ p(x | z); uint8 ``[n, S, S]`` in {0, 1}."""
        gen = torch.Generator(self.device).manual_seed(seed)
        self.net.eval()
        z = self.net.prior.sample(n, generator=gen)
        return self.net.decoder.sample(z, gen)[:, 0].to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, frames: np.ndarray, seed: int = 0) -> np.ndarray:
        """x' ~ p(x | z) with z the greedy posterior code of x; uint8 ``[B, S, S]`` in {0, 1}."""
        gen = torch.Generator(self.device).manual_seed(seed)
        return self.net.decoder.sample(self.codes(frames), gen)[:, 0].to(torch.uint8).cpu().numpy()

    # ------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything to rebuild the model and continue training: configs, weights, estimator state
        (NVIL's baseline and running statistics), optimiser, binariser, step count."""
        return {
            "format": FORMAT, "model_config": plain_config(self.model_cfg),
            "estimator_config": plain_config(self.estimator_cfg), "optim_config": plain_config(self.optim_cfg),
            "seed": self.seed, "density_samples": self.density_samples,
            "net": self.net.state_dict(), "estimator": self.estimator.state_dict(),
            "optimizer": self.optimizer.state_dict(), "steps": self.steps,
            "binarizer": self.binarizer.state_dict() if self.binarizer is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (the configs must match this object's)."""
        if state.get("format") != FORMAT:
            raise ValueError(f"not a binary-VAE state (format {state.get('format')!r}, expected {FORMAT!r}).")
        if state["model_config"] != plain_config(self.model_cfg):
            raise ValueError("the saved model config differs from this model's; build it with "
                             "BinaryVAE.from_state_dict(state) instead.")
        self.net.load_state_dict(state["net"])
        self.estimator.load_state_dict(state["estimator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        self.binarizer = Binarizer.from_state_dict(state["binarizer"]) if state.get("binarizer") else None

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> BinaryVAE:
        """Build a model from a saved state (configs included) and load it."""
        model_cfg = ModelConfig(**state["model_config"])
        vae = cls(model_cfg, EstimatorConfig(**state["estimator_config"]), OptimConfig(**state["optim_config"]),
                  seed=int(state["seed"]), density_samples=int(state["density_samples"]))
        vae.load_state_dict(state)
        return vae
