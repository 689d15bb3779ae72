"""The Gaussian VAE of Model-Free Episodic Control (Blundell et al. 2016, arXiv 1606.04460, Sec. 3 and App. A),
and the representation made of its encoder.

Architecture (App. A), for 84x84 grey frames scaled to [0, 1] (uint8 / 255):

- encoder: four convolutions with {32, 32, 64, 64} channels, kernels {4, 5, 5, 4}, stride 2, ReLU; a 512-unit
  ReLU layer; a linear layer giving the 32 means and 32 log-standard-deviations of the diagonal Gaussian
  posterior q(z | x);
- decoder: the mirror image (linear 32 -> 512 -> 64 x 3 x 3, ReLU; transposed convolutions 64 -> 64 -> 32 -> 32
  -> 2 with kernels {4, 5, 5, 4}, stride 2, ReLU between them) ending in two linear planes: the per-pixel mean
  and raw log-std of a Gaussian p(x | z), the std floored at 0.05 (the paper's floor, on the [0, 1] pixel scale);
- prior p(z) = N(0, I).

Padding (our choice; none is needed): none. Spatial sizes: 84 -> 41 -> 19 -> 8 -> 3 (each ``(n - k) / 2 + 1``,
and every ``n - k`` is even, so no pixel is dropped), and the transposed convolutions retrace 3 -> 8 -> 19 -> 41
-> 84 exactly. Other kernel lists (tiny test models) may leave an odd ``n - k``: the convolution then ignores the
last row and column, and the mirrored transposed convolution adds them back with ``output_padding = 1``, so the
decoder always returns 84 x 84 (:func:`conv_sizes`).

The loss is the negative ELBO in nats per frame, ``-E_q[log p(x | z)] + KL(q(z | x) || N(0, I))``, with one
reparameterised sample z = mu + sigma eps (Kingma & Welling 2014); ``/ 7056`` gives nats per pixel. The
likelihood is a density over [0, 1]-scaled pixels, so the nats can be negative (a sharp density exceeds 1).

``model.learn_std=false`` (ours, a remedy for posterior collapse) fixes every pixel's std at the floor: the
likelihood becomes a scaled squared error, which a decoder cannot lower by widening the std of pixels that change
between frames; it must take them from z. The paper's learned std is the default.

The std floor is soft: ``log sigma = log 0.05 + softplus(raw - log 0.05)``, that is ``sigma = 0.05 + exp(raw)``
(computed in log space, which stays finite for any raw value): never below 0.05, and ~ exp(raw) well above it. A
hard clamp would give a pixel pinned at the floor no gradient to widen its std again when its mean is wrong,
leaving it stuck at the floor's steep loss.

Mean frame (``model.mean_frame=true``, ours). Measured on Ms. Pac-Man (random play; 84x84 frames whose maze is
the same in every frame and whose sprites cover ~150 pixels): the paper's decoder has no per-pixel bias, so it must
build the maze through its whole stack from z. After the ~3,000 updates of a 6-CPU-minute fit it has not yet
matched the mean frame (held-out squared error 8.9 per frame against the mean frame's 8.4; shuffling the codes
across frames changes it by under 0.01), and the reconstruction gradient on the posterior means is still mostly
the same for every frame (its shared part ~4x the part that differs between frames): 0 of 32 latents active, with
or without the KL. A deterministic autoencoder with the same networks does the same (after 800 updates, error 10.2
with its own codes, 10.3 with shuffled ones). Started at the mean frame (and fed the frame minus it), that
autoencoder uses its code within 800 updates (7.7 against 9.4 shuffled). And the VAE with the paper's ELBO, in the
same 6-CPU-minute fit (`gvae_cpu`, ~3,400 updates): 32 of 32 latents active (posterior-mean spread 0.86, posterior
std 0.42, KL 36 nats), held-out error 4.7 with its own codes against 12.2 shuffled, ELBO -14,120 nats per frame
against -13,316 without it (plain, 2,973 updates).

Embedding (``Representation``): the key of a frame is the encoder's 64 posterior parameters, the 32 means then
the 32 log-stds of q(z | x) (deterministic: no sample is drawn).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from worldmodels.common.checks import require_positive

FORMAT = "reverie-gaussian-vae-v1"
IMAGE_SIZE = 84
"""Side of the frames the Gaussian VAE models: 84x84 grey, as `reverie collect` stores them."""
LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class GaussianVAEConfig:
    """Sizes of :class:`GaussianVAE` (defaults: the paper's App. A)."""

    latents: int = 32
    """Gaussian latent units z; the embedding has 2 * latents entries (means and log-stds)."""
    channels: list[int] = field(default_factory=lambda: [32, 32, 64, 64])
    """Output channels of the encoder's stride-2 convolutions (the decoder mirrors them)."""
    kernels: list[int] = field(default_factory=lambda: [4, 5, 5, 4])
    """Kernel sides of those convolutions (no padding; see the module docstring for the sizes)."""
    hidden: int = 512
    """Width of the fully connected ReLU layer between the convolutions and the latents (both ways)."""
    std_floor: float = 0.05
    """Lower bound of the decoder's per-pixel standard deviation, on the [0, 1] pixel scale."""
    learn_std: bool = True
    """True (the paper's): the decoder predicts each pixel's std (>= ``std_floor``). False (ours, against posterior
    collapse): every pixel's std is ``std_floor``, so the likelihood is a scaled squared error and the decoder cannot
    explain the pixels that change between frames (sprites) as noise by widening their std: it must take them from
    z. The decoder keeps its std plane (same weights, same checkpoints) and ignores it."""
    mean_frame: bool = False
    """False: the paper's. True (ours, against posterior collapse on games whose frames share a large static
    picture): the model holds the training frames' per-pixel mean and std (:meth:`GaussianVAE.set_frame_statistics`,
    which `reverie fit-gvae` calls before the first update); the encoder sees each frame minus that mean, the
    decoder's two planes get a learned per-pixel bias that starts at the mean and the std, and its last transposed
    convolution starts at zero. The decoder then starts as the best model that ignores z, instead of spending its
    first thousands of updates learning the static picture before any update can reward using z (module
    docstring, "Mean frame")."""


def validate_model(cfg: GaussianVAEConfig, prefix: str = "model.") -> None:
    """Check sizes and that the convolution stack fits an 84x84 frame.

    :raises ValueError: naming the key, the value and the fix.
    """
    require_positive({f"{prefix}latents": cfg.latents, f"{prefix}hidden": cfg.hidden,
                      f"{prefix}std_floor": cfg.std_floor})
    if not cfg.channels or len(cfg.channels) != len(cfg.kernels):
        raise ValueError(f"{prefix}channels={list(cfg.channels)} and {prefix}kernels={list(cfg.kernels)} must be "
                         f"non-empty lists of the same length (one entry per convolution).")
    for key, values in ((f"{prefix}channels", cfg.channels), (f"{prefix}kernels", cfg.kernels)):
        if any(int(v) < 1 for v in values):
            raise ValueError(f"{key}={list(values)}: every entry must be positive.")
    conv_sizes(cfg.kernels, prefix=prefix)


def conv_sizes(kernels: list[int], size: int = IMAGE_SIZE, prefix: str = "model.") -> list[tuple[int, int]]:
    """Side after each stride-2, unpadded convolution, with the rows it leaves out: ``[(side, remainder), ...]``
    (84 and the paper's kernels: ``[(41, 0), (19, 0), (8, 0), (3, 0)]``). The remainder is the mirrored transposed
    convolution's ``output_padding``.

    :raises ValueError: a kernel larger than the map it is applied to.
    """
    out = []
    for k in kernels:
        if k > size:
            raise ValueError(f"{prefix}kernels={list(kernels)}: a {k}x{k} kernel does not fit the {size}x{size} map "
                             f"it meets (84x84 frames through stride-2 convolutions); use fewer or smaller kernels.")
        out.append(((size - k) // 2 + 1, (size - k) % 2))
        size = out[-1][0]
    return out


def float32_log_floor(floor: float) -> float:
    """The smallest float32 ``l`` with ``exp(l) >= floor`` in float32: ``math.log(floor)`` rounded to float32 can
    give ``exp`` one unit in the last place below the floor (0.049999997 for 0.05)."""
    target = torch.tensor(floor, dtype=torch.float32)
    value = torch.tensor(math.log(floor), dtype=torch.float32)
    while bool(torch.exp(value) < target):
        value = torch.nextafter(value, torch.tensor(math.inf))
    return float(value)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """-log N(x; mean, exp(log_std)^2) of each element, in nats: ``0.5 log 2 pi + log_std + 0.5 ((x - mean) /
    std)^2`` (same shape as ``x``)."""
    return 0.5 * LOG_2PI + log_std + 0.5 * ((x - mean) * torch.exp(-log_std)) ** 2


def kl_standard_normal(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std^2) || N(0, 1)) of each element, in nats: ``0.5 (mean^2 + std^2 - 1) - log_std``."""
    return 0.5 * (mean ** 2 + torch.exp(2.0 * log_std) - 1.0) - log_std


class GaussianVAE(nn.Module):
    """The MFEC paper's Gaussian VAE of 84x84 grey frames (see the module docstring).

    Tensors: frames ``x`` float32 ``[B, 1, 84, 84]`` in [0, 1] (:meth:`scale` makes them from uint8); latents
    float32 ``[B, latents]``; per-frame quantities float32 ``[B]`` in nats.

    :param cfg: sizes (:class:`GaussianVAEConfig`).
    :param seed: seeds the initial weights (the global torch RNG is left as it was).
    """

    frame_mean: torch.Tensor  # model.mean_frame=true only: float32 [1, 1, 84, 84], a buffer
    pixel_bias: nn.Parameter  # model.mean_frame=true only: float32 [1, 2, 84, 84], the decoder's per-pixel bias

    def __init__(self, cfg: GaussianVAEConfig | None = None, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg = cfg or GaussianVAEConfig()
        validate_model(cfg)
        sizes = conv_sizes(cfg.kernels)
        side, chans = sizes[-1][0], [1, *cfg.channels]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            enc: list[nn.Module] = []
            for c_in, c_out, k in zip(chans, chans[1:], cfg.kernels):
                enc += [nn.Conv2d(c_in, c_out, k, stride=2), nn.ReLU()]
            self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(chans[-1] * side * side, cfg.hidden), nn.ReLU(),
                                         nn.Linear(cfg.hidden, 2 * cfg.latents))
            dec: list[nn.Module] = [nn.Linear(cfg.latents, cfg.hidden), nn.ReLU(),
                                    nn.Linear(cfg.hidden, chans[-1] * side * side), nn.ReLU(),
                                    nn.Unflatten(1, (chans[-1], side, side))]
            # Mirror: layer i of the encoder maps chans[i] -> chans[i + 1]; its transposed twin maps back, except that
            # the last one outputs 2 planes (mean, raw log-std) instead of the frame's 1.
            for i in reversed(range(len(cfg.kernels))):
                c_out = chans[i] if i > 0 else 2
                dec.append(nn.ConvTranspose2d(chans[i + 1], c_out, cfg.kernels[i], stride=2,
                                              output_padding=sizes[i][1]))
                if i > 0:
                    dec.append(nn.ReLU())
            self.decoder = nn.Sequential(*dec)
        self.log_floor = float32_log_floor(cfg.std_floor)
        if cfg.mean_frame:
            # Until set_frame_statistics: a mid-grey mean, no pixel bias; the buffer and the parameter travel in
            # state_dict, so a saved model embeds with the statistics it was trained with.
            self.register_buffer("frame_mean", torch.full((1, 1, IMAGE_SIZE, IMAGE_SIZE), 0.5))
            self.pixel_bias = nn.Parameter(torch.zeros(1, 2, IMAGE_SIZE, IMAGE_SIZE))

    @property
    def latents(self) -> int:
        return self.cfg.latents

    @staticmethod
    def scale(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 84, 84]`` -> float32 ``[B, 1, 84, 84]`` in [0, 1] (divided by 255).

        :raises ValueError: another shape, naming the one given.
        """
        x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        if x.ndim != 3 or tuple(x.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"the Gaussian VAE models 84x84 grey frames, uint8 [B, 84, 84]; got {tuple(x.shape)}.")
        return x.to(torch.float32).unsqueeze(1) / 255.0

    @torch.no_grad()
    def set_frame_statistics(self, frames: np.ndarray) -> None:
        """``model.mean_frame=true`` only: from uint8 ``[N, 84, 84]`` training frames, store their per-pixel mean
        (subtracted from the encoder's input), set the decoder's per-pixel bias to that mean and to the raw value
        whose floored std is the frames' per-pixel std (pixels at or below ``std_floor`` get the floor), and zero
        the last transposed convolution: the decoder's output is then that mean and std for every z.

        :raises ValueError: a model without ``mean_frame``, or no frames.
        """
        if not self.cfg.mean_frame:
            raise ValueError("set_frame_statistics needs a model built with model.mean_frame=true.")
        if len(frames) == 0:
            raise ValueError("set_frame_statistics needs at least one frame.")
        total = torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float64)
        squares = torch.zeros_like(total)
        for b in range(0, len(frames), 1024):  # float64 sums, a chunk at a time: 8192 frames would be 460 MB
            x = self.scale(frames[b: b + 1024]).to(torch.float64)
            total += x.sum(0, keepdim=True)
            squares += (x * x).sum(0, keepdim=True)
        mean = total / len(frames)
        std = (squares / len(frames) - mean * mean).clamp(min=0.0).sqrt()
        floor = self.cfg.std_floor
        # log(floor + exp(raw)) = log(std): raw = log(std - floor); far below the floor's log where std <= floor.
        raw = torch.log((std - floor).clamp(min=floor * math.exp(-10.0)))
        device = self.pixel_bias.device
        self.frame_mean.copy_(mean.to(device, torch.float32))
        self.pixel_bias.copy_(torch.cat([mean, raw], 1).to(device, torch.float32))
        last = self.decoder[-1]
        assert isinstance(last, nn.ConvTranspose2d)
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x): (means, log-stds), each float32 ``[B, latents]``."""
        h = self.encoder(x - self.frame_mean if self.cfg.mean_frame else x)
        return h[:, : self.latents], h[:, self.latents:]

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(x | z): per-pixel (means, log-stds), each float32 ``[B, 1, 84, 84]``; every std >= ``std_floor``."""
        out = self.decoder(z)
        if self.cfg.mean_frame:
            out = out + self.pixel_bias
        if not self.cfg.learn_std:
            return out[:, :1], torch.full_like(out[:, 1:], self.log_floor)
        return out[:, :1], self.floor_log_std(out[:, 1:])

    def floor_log_std(self, raw: torch.Tensor) -> torch.Tensor:
        """``log std_floor + softplus(raw - log std_floor)`` = ``log(std_floor + exp(raw))``: never below
        ``log std_floor``, about ``raw`` far above it, and with a gradient everywhere (see the module docstring)."""
        return self.log_floor + F.softplus(raw - self.log_floor)

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The negative ELBO of each frame with one reparameterised posterior sample.

        :param x: float32 ``[B, 1, 84, 84]`` in [0, 1].
        :param generator: draws eps (None: the global RNG); a fixed one makes the estimate repeatable.
        :return: float32 ``[B]`` tensors in nats per frame: ``neg_elbo`` (= ``nll + kl``), ``nll``
            (-log p(x | z)) and ``kl`` (KL(q(z | x) || p(z))); ``std``, each frame's mean decoder std; and
            ``kl_per_dim``, float32 ``[B, latents]``, each latent's KL (``kl`` is its sum; free bits need it).
        """
        mean, log_std = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device) if generator is not None \
            else torch.randn_like(mean)
        z = mean + torch.exp(log_std) * eps
        x_mean, x_log_std = self.decode(z)
        nll = gaussian_nll(x, x_mean, x_log_std).flatten(1).sum(1)
        kl_per_dim = kl_standard_normal(mean, log_std)
        kl = kl_per_dim.sum(1)
        return {"neg_elbo": nll + kl, "nll": nll, "kl": kl, "std": torch.exp(x_log_std).flatten(1).mean(1),
                "kl_per_dim": kl_per_dim}

    @torch.no_grad()
    def embed(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[B, 84, 84]`` -> float32 ``[B, 2 * latents]``: the posterior means, then log-stds."""
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        mean, log_std = self.encode(self.scale(frames).to(device))
        self.train(was_training)
        return torch.cat([mean, log_std], 1).cpu().numpy().astype(np.float32, copy=False)

    @torch.no_grad()
    def reconstruct(self, frames: np.ndarray) -> np.ndarray:
        """The decoder's mean at the posterior mean of each frame, uint8 ``[B, 84, 84]`` (clipped to [0, 255])."""
        device = next(self.parameters()).device
        mean, _ = self.encode(self.scale(frames).to(device))
        return to_uint8(self.decode(mean)[0])

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """The decoder's mean for ``n`` draws z ~ N(0, I) (drawn on the CPU from ``seed``), uint8 ``[n, 84, 84]``.
        Means, not pixel samples: per-pixel Gaussian noise would hide the structure a grid is meant to show."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latents, generator=torch.Generator().manual_seed(seed)).to(device)
        return to_uint8(self.decode(z)[0])

    # ------------------------------------------------------------------------------------------ state
    def export(self) -> dict[str, Any]:
        """Config and weights as plain values and CPU tensors: what :meth:`from_export` rebuilds the model from."""
        return {"format": FORMAT, "config": asdict(self.cfg),
                "weights": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}}

    @classmethod
    def from_export(cls, state: dict[str, Any]) -> GaussianVAE:
        """Rebuild a model saved by :meth:`export`.

        :raises ValueError: a state of another kind.
        """
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"not a Gaussian-VAE state (format {found!r}, expected {FORMAT!r}).")
        cfg = state["config"]
        model = cls(GaussianVAEConfig(latents=int(cfg["latents"]), channels=[int(c) for c in cfg["channels"]],
                                      kernels=[int(k) for k in cfg["kernels"]], hidden=int(cfg["hidden"]),
                                      std_floor=float(cfg["std_floor"]),
                                      learn_std=bool(cfg.get("learn_std", True)),  # older exports: learned
                                      mean_frame=bool(cfg.get("mean_frame", False))))
        model.load_state_dict(state["weights"])
        return model.eval()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float ``[B, 1, H, W]`` on the [0, 1] scale -> uint8 ``[B, H, W]`` (rounded, clipped)."""
    return (x[:, 0].clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()


KIND = "gaussian_vae"


class GaussianVAERepresentation:
    """The key of MFEC's VAE variant: the 64 posterior parameters of a trained :class:`GaussianVAE`'s encoder (32
    means, then 32 log-stds) for each frame, uint8 ``[B, 84, 84]`` -> float32 ``[B, 2 * latents]``
    (``Representation``). Runs on the CPU, without gradients.

    :param model: the trained model (moved to the CPU, put in eval mode).
    :param path: the checkpoint file it came from (kept in :meth:`state_dict`; a spec without weights reloads it).
    """

    def __init__(self, model: GaussianVAE, path: str = "") -> None:
        self.model = model.cpu().eval()
        self.path = str(path)

    @property
    def dim(self) -> int:
        """2 * latents (64 for the paper's 32 latents)."""
        return 2 * self.model.latents

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (IMAGE_SIZE, IMAGE_SIZE)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """:param frames: uint8 ``[B, 84, 84]``. :return: float32 ``[B, dim]``, means then log-stds."""
        return self.model.embed(frames)

    @classmethod
    def load(cls, path: str | Path) -> GaussianVAERepresentation:
        """From a `reverie fit-gvae` checkpoint file, or the newest valid one of a run directory.

        :raises CheckpointError: no readable checkpoint there. :raises ValueError: a checkpoint of another kind.
        """
        from worldmodels.common.checkpoint import load_latest

        ckpt_path, ckpt = load_latest(path)
        if "gvae" not in ckpt:
            other = " (a `reverie fit-vae` binary VAE: use the binary_vae representation)" if "vae" in ckpt else ""
            raise ValueError(f"{ckpt_path} is not a `reverie fit-gvae` checkpoint{other}; train a Gaussian VAE with "
                             f"`reverie fit-gvae gvae_cpu data.path=DATA` and give its run directory.")
        from worldmodels.representations.usage import warn_if_collapsed

        warn_if_collapsed(ckpt, f"The Gaussian VAE at {ckpt_path}")
        return cls(GaussianVAE.from_export(ckpt["gvae"]), str(ckpt_path))  # the file: a run may write newer ones

    def state_dict(self) -> dict[str, Any]:
        """``{"kind", "frame_shape", "dim", "path", "state"}``; ``state`` is :meth:`GaussianVAE.export` (config and
        CPU tensors), so a process without the checkpoint file rebuilds the same model."""
        return {"kind": KIND, "frame_shape": list(self.frame_shape), "dim": self.dim, "path": self.path,
                "state": self.model.export()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GaussianVAERepresentation:
        """Rebuild from :meth:`state_dict`'s output: from its weights if it holds them, else from its path."""
        if state.get("state") is not None:
            return cls(GaussianVAE.from_export(state["state"]), str(state.get("path") or ""))
        return cls.load(state["path"])
