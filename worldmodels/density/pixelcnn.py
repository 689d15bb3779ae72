"""PixelCNN density model over quantised frames, trained online (Ostrovski et al. 2017, App. A).

Architecture (the paper's setting is :class:`PixelCNNConfig`'s default):

- input: a 42x42 frame of 8 grey levels, fed as one channel scaled to ``[0, 1]``;
- a 7x7 masked convolution of type A (a pixel sees only the pixels above it and to its left);
- ``num_res_blocks`` (2) residual blocks ``h + W2 relu(W1 relu(h))`` of masked 1x1 convolutions of type
  B with ``channels`` (16) feature planes;
- a masked 1x1 convolution to ``hidden_channels`` (64) feature planes, then a final masked 1x1
  convolution to ``num_levels`` (8) logits per pixel; a per-pixel softmax over the levels.

With a single colour channel a type-B mask on a 1x1 kernel keeps the whole kernel (the centre is the
pixel's own features, which already depend only on earlier pixels), so after the first layer no
pixel ever sees itself or a later pixel. The paper does not name the non-linearity: we use ReLU.

``log_prob`` is the sum over pixels of the log-softmax of the observed level, in nats.

Training follows the paper: online, one frame at a time, each frame's negative log-likelihood
(summed over pixels) minimised by one step of uncentred RMSProp with decay 0.95, momentum 0.9 and
epsilon 1e-4. We implement RMSProp as DeepMind's TensorFlow code of the time did (epsilon inside the
square root, mean square initialised to 1): ``ms <- 0.95 ms + 0.05 g^2``,
``mom <- 0.9 mom + lr g / sqrt(ms + eps)``, ``theta <- theta - mom``. The learning rate, 1e-3, is our
reading of the paper (its appendix gives the optimiser's other constants).

``update(frames)`` computes ``log_p_before`` from the forward pass of the training step (the model
before the step), takes the step, and scores the frame again (``log_p_after``, the recoding
probability). **Deviation, opt-in:** ``update_mode="batched"`` takes one step on the summed loss of the
whole batch instead of one per frame: every frame's ``log_p_before`` comes from the model before the
step and ``log_p_after`` from the model after it, so frames of one batch do not see each other's
updates. It exists for accelerators, where one frame cannot fill the device; on one CPU core the
model is compute-bound and we measured no gain per frame (about 1.5-2 ms either way, see
``reverie bench density``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from worldmodels.common.optim import RMSpropEpsInside

__all__ = ["PixelCNNConfig", "PixelCNNDensity", "PixelCNN", "MaskedConv2d"]


@dataclass
class PixelCNNConfig:
    """PixelCNN size and optimiser settings; the defaults are Ostrovski et al. (2017, App. A)."""

    shape: tuple[int, int] = (42, 42)
    """Frame ``(height, width)``."""
    num_levels: int = 8
    """Grey levels per pixel (softmax size)."""
    kernel_size: int = 7
    """Side of the first, type-A masked convolution."""
    channels: int = 16
    """Feature planes of the first convolution and the residual blocks."""
    num_res_blocks: int = 2
    """Residual blocks of masked 1x1 convolutions."""
    hidden_channels: int = 64
    """Feature planes of the 1x1 convolution before the output logits."""
    learning_rate: float = 1e-3
    """RMSProp step size."""
    rms_decay: float = 0.95
    """RMSProp decay of the mean squared gradient."""
    momentum: float = 0.9
    """RMSProp momentum."""
    epsilon: float = 1e-4
    """RMSProp epsilon, added to the mean square inside the square root."""
    update_mode: Literal["online", "batched"] = "online"
    """``online``: one step per frame (the paper); ``batched``: one step per ``update`` call (deviation)."""
    seed: int = 0
    """Seed of the weight initialisation."""

    @classmethod
    def small(cls, **overrides: Any) -> PixelCNNConfig:
        """A cheaper setting for CPU tests and debugging: 8 planes, 1 residual block, 32 hidden planes."""
        base: dict[str, Any] = {"channels": 8, "num_res_blocks": 1, "hidden_channels": 32}
        base.update(overrides)
        return cls(**base)


class MaskedConv2d(nn.Conv2d):
    """A convolution whose kernel never reaches pixels after the centre in raster order.

    Type ``A`` also masks the centre (the pixel itself); type ``B`` keeps it. Same-size output.
    """

    mask: torch.Tensor

    def __init__(self, mask_type: Literal["A", "B"], in_channels: int, out_channels: int, kernel_size: int):
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd so the centre is a pixel, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones(kernel_size, kernel_size)
        centre = kernel_size // 2
        mask[centre, centre + (1 if mask_type == "B" else 0) :] = 0
        mask[centre + 1 :, :] = 0
        self.register_buffer("mask", mask[None, None], persistent=False)
        self.mask_type = mask_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = MaskedConv2d("B", channels, channels, 1)
        self.conv2 = MaskedConv2d("B", channels, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(F.relu(self.conv1(F.relu(h))))


class PixelCNN(nn.Module):
    """The network: float ``[B, 1, H, W]`` in ``[0, 1]`` -> logits float ``[B, num_levels, H, W]``."""

    def __init__(self, config: PixelCNNConfig) -> None:
        super().__init__()
        self.input_conv = MaskedConv2d("A", 1, config.channels, config.kernel_size)
        self.blocks = nn.Sequential(*[_ResidualBlock(config.channels) for _ in range(config.num_res_blocks)])
        self.hidden_conv = MaskedConv2d("B", config.channels, config.hidden_channels, 1)
        self.output_conv = MaskedConv2d("B", config.hidden_channels, config.num_levels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.input_conv(x))
        h = F.relu(self.hidden_conv(F.relu(h)))
        return self.output_conv(h)


class PixelCNNDensity:
    """Online PixelCNN density model; satisfies :class:`worldmodels.protocols.DensityModel`.

    Use it with ``PseudoCount(model, prediction_gain_decay=ostrovski_gain_decay(0.1))`` as the paper
    does. Runs on CPU by default (one frame at a time is latency-bound; a GPU brings little here).

    :param config: sizes and optimiser; defaults to the paper's setting.
    :param device: torch device for the network.
    """

    def __init__(self, config: PixelCNNConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.config = config or PixelCNNConfig()
        if self.config.update_mode not in ("online", "batched"):
            raise ValueError(f"update_mode must be 'online' or 'batched', got {self.config.update_mode!r}")
        self.device = torch.device(device)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(self.config.seed)
        self.network = PixelCNN(self.config).to(self.device)
        torch.random.set_rng_state(generator_state)
        c = self.config
        # TensorFlow 1's RMSProp: uncentred, epsilon inside the root, mean square starting at 1, momentum.
        self.optimizer = RMSpropEpsInside(self.network.parameters(), lr=c.learning_rate, alpha=c.rms_decay,
                                          eps=c.epsilon, momentum=c.momentum, initial_square_avg=1.0)
        self.num_frames = 0

    # ------------------------------------------------------------------ DensityModel
    def update(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score, learn and re-score frames (uint8 ``[B, H, W]``); returns float64 ``[B]`` pairs, nats."""
        x, target = self._to_tensors(frames)
        if self.config.update_mode == "batched":
            before = self._train_step(x, target)
            after = self._log_prob(x, target)
        else:
            before = torch.empty(x.shape[0], dtype=torch.float64)
            after = torch.empty(x.shape[0], dtype=torch.float64)
            for b in range(x.shape[0]):
                before[b : b + 1] = self._train_step(x[b : b + 1], target[b : b + 1])
                after[b : b + 1] = self._log_prob(x[b : b + 1], target[b : b + 1])
        self.num_frames += x.shape[0]
        return before.numpy(), after.numpy()

    def log_prob(self, frames: np.ndarray) -> np.ndarray:
        """Log probability in nats of each frame, float64 ``[B]``, without learning."""
        x, target = self._to_tensors(frames)
        return self._log_prob(x, target).numpy()

    def symbol_probs(self, frame: np.ndarray) -> np.ndarray:
        """Per-pixel predictive distribution given the frame's earlier pixels: float64 ``[H, W, levels]``."""
        x, _ = self._to_tensors(np.asarray(frame)[None])
        with torch.no_grad():
            logits = self.network(x)
        return torch.softmax(logits.double(), dim=1)[0].permute(1, 2, 0).cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "network": {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()},
            # deep copies: torch hands out (and load_state_dict adopts) the live state tensors
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "num_frames": np.array(self.num_frames, dtype=np.int64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        config = dict(state["config"])
        config["shape"] = tuple(config["shape"])
        if PixelCNNConfig(**config) != self.config:
            raise ValueError(
                f"state was saved from PixelCNNDensity({config}) but this model has {asdict(self.config)}; "
                "build the model with the saved config"
            )
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(_renamed_optimizer_state(copy.deepcopy(state["optimizer"])))
        self.num_frames = int(np.asarray(state["num_frames"]))

    # ------------------------------------------------------------------ helpers
    def _to_tensors(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        frames = np.asarray(frames)
        c = self.config
        if frames.ndim != 3 or frames.shape[1:] != tuple(c.shape):
            raise ValueError(
                f"PixelCNNDensity expects frames of shape [B, {c.shape[0]}, {c.shape[1]}], "
                f"got {frames.shape}; "
                "quantise raw frames with worldmodels.density.preprocess_frames"
            )
        if not np.issubdtype(frames.dtype, np.integer):
            raise ValueError(f"expected integer grey levels (uint8), got dtype {frames.dtype}")
        if frames.size and (int(frames.min()) < 0 or int(frames.max()) >= c.num_levels):
            raise ValueError(
                f"frame values must lie in [0, {c.num_levels}), "
                f"got [{int(frames.min())}, {int(frames.max())}]; quantise with preprocess_frames"
            )
        target = torch.as_tensor(frames.astype(np.int64), device=self.device)
        x = target[:, None].float() / float(c.num_levels - 1)
        return x, target

    def _frame_log_prob(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Differentiable log probability per frame, float64 ``[B]`` (summed in float64: the prediction
        gain is a small difference of sums of 1764 terms)."""
        log_probs = F.log_softmax(self.network(x), dim=1)
        return log_probs.gather(1, target[:, None]).double().sum(dim=(1, 2, 3))

    def _train_step(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """One RMSProp step on the summed NLL of the frames; returns their log probs before it."""
        log_p = self._frame_log_prob(x, target)
        self.optimizer.zero_grad(set_to_none=True)
        (-log_p.sum()).backward()
        self.optimizer.step()
        return log_p.detach().cpu()

    def _log_prob(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._frame_log_prob(x, target).cpu()


def _renamed_optimizer_state(state: dict[str, Any]) -> dict[str, Any]:
    """An optimiser state saved by this module's former ``TFRMSProp`` (``ms``, ``mom``, ``decay``) in the names of
    :class:`~worldmodels.common.optim.RMSpropEpsInside` (same update); a current state passes unchanged."""
    for entry in state["state"].values():
        if "ms" in entry:
            entry["square_avg"] = entry.pop("ms")
            entry["momentum_buffer"] = entry.pop("mom")
    for group in state["param_groups"]:
        if "decay" in group:
            group["alpha"] = group.pop("decay")
            group.update(centered=False, initial_square_avg=1.0)
    return state
