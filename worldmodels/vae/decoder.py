"""p(x | z) for binary frames: a PixelCNN-style autoregressive decoder, or a factorised one.

**Conditioning map.** ``z`` float32 ``[N, D]`` -> linear -> ``[N, C, s, s]`` (s = ceil(size / 4)) -> two
stride-2 transposed convolutions -> ``[N, C, size, size]`` after cropping: a spatial map that tells every
pixel what z says about its neighbourhood.

**PixelCNN decoder** (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", Sec. 3.5, masks A/B; the
conditioning is the spatial variant of the conditional PixelCNN of van den Oord et al. 2016b):

- a ``k x k`` masked convolution of type A on the binary frame (pixel (r, c) sees rows < r, and row r at
  columns < c: never itself or a later pixel), plus a 1x1 projection of the conditioning map;
- ``decoder_layers`` residual blocks ``h + relu(B(h) + P c)`` with 3x3 type-B masks (the centre is allowed:
  after a type-A layer a position's features depend only on earlier pixels);
- a 1x1 convolution to one Bernoulli logit per pixel.

So ``log p(x | z) = sum_i log Bern(x_i | sigmoid(f(x_<i, z)))`` is evaluated for all pixels in one pass (the
true frame is fed in, teacher forcing) and sampled in ``size * size`` passes. The receptive field reaches
``k // 2 + decoder_layers`` rows up, which :meth:`Decoder.sample` exploits: to sample row r it runs the
network on those rows only.

**Factorised decoder**: logits come from the conditioning map alone (independent pixels given z).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class MaskedConv2d(nn.Conv2d):
    """Single-input-channel-ordering masked convolution (type "A" excludes the centre, "B" includes it).

    With one image channel the raster order is the only order, so the mask depends only on the spatial
    position: rows above the centre are open, the centre row is open left of the centre (and at the centre
    for type B), everything below is closed.
    """

    mask: torch.Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str) -> None:
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        k = kernel_size
        mask = torch.zeros(k, k)
        mask[: k // 2, :] = 1
        mask[k // 2, : k // 2 + (mask_type == "B")] = 1
        self.register_buffer("mask", mask[None, None].expand(out_channels, in_channels, k, k).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class Decoder(nn.Module):
    """Bernoulli logits of a binary ``size x size`` frame given z.

    :param size: frame side.
    :param latent_dim: D.
    :param kind: "pixelcnn" or "factorised".
    :param channels, layers, kernel: masked-convolution widths, residual layers, first kernel side.
    :param cond_channels: channels of the conditioning map.
    """

    def __init__(self, size: int, latent_dim: int, kind: str = "pixelcnn", channels: int = 16, layers: int = 2,
                 kernel: int = 5, cond_channels: int = 16) -> None:
        super().__init__()
        self.size, self.kind = size, kind
        self.base = math.ceil(size / 4)
        self.cond_channels = cond_channels
        self.fc = nn.Linear(latent_dim, cond_channels * self.base * self.base)
        self.up = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(cond_channels, cond_channels, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(cond_channels, cond_channels, 4, stride=2, padding=1),
        )
        if kind == "factorised":
            self.head = nn.Sequential(nn.Conv2d(cond_channels, channels, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(channels, 1, 1))
            self.rows_up = 0
            return
        if kind != "pixelcnn":
            raise ValueError(f"decoder kind {kind!r}: choose 'pixelcnn' or 'factorised'.")
        self.first = MaskedConv2d(1, channels, kernel, "A")
        self.first_cond = nn.Conv2d(cond_channels, channels, 1)
        self.blocks = nn.ModuleList(MaskedConv2d(channels, channels, 3, "B") for _ in range(layers))
        self.block_cond = nn.ModuleList(nn.Conv2d(cond_channels, channels, 1) for _ in range(layers))
        self.out = nn.Conv2d(channels, 1, 1)
        self.out_cond = nn.Conv2d(cond_channels, 1, 1)
        self.rows_up = kernel // 2 + layers

    def condition(self, z: torch.Tensor) -> torch.Tensor:
        """float32 ``[N, D]`` -> conditioning map float32 ``[N, C, size, size]``."""
        c = self.fc(z).view(-1, self.cond_channels, self.base, self.base)
        return self.up(c)[:, :, : self.size, : self.size]

    def logits(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """:param x: float32 ``[N, 1, h, W]`` binary frames (h = size, or a band of rows when sampling).
        :param cond: float32 ``[N, C, h, W]``, the matching rows of the conditioning map.
        :return: float32 logits ``[N, 1, h, W]``; the logit of pixel i depends on x only through x_<i."""
        if self.kind == "factorised":
            return self.head(cond)
        h = torch.relu(self.first(x) + self.first_cond(cond))
        for block, proj in zip(self.blocks, self.block_cond):
            h = h + torch.relu(block(h) + proj(cond))
        return self.out(h) + self.out_cond(cond)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) in nats, float32 ``[N]``, for binary x float32 ``[N, 1, size, size]`` and z ``[N, D]``."""
        logits = self.logits(x, self.condition(z))
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample frames float32 ``[N, 1, size, size]`` given z ``[N, D]`` (pixel by pixel for pixelcnn)."""
        cond = self.condition(z)
        n, s = len(z), self.size
        u = torch.rand(n, 1, s, s, generator=generator, device=z.device)
        if self.kind == "factorised":
            return (u < torch.sigmoid(self.logits(None, cond))).float()  # type: ignore[arg-type]
        x = torch.zeros(n, 1, s, s, device=z.device)
        for r in range(s):
            top = max(0, r - self.rows_up)  # rows that can influence row r
            for col in range(s):
                p = torch.sigmoid(self.logits(x[:, :, top: r + 1], cond[:, :, top: r + 1])[:, 0, -1, col])
                x[:, 0, r, col] = (u[:, 0, r, col] < p).float()
        return x
