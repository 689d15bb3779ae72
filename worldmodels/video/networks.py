"""Building blocks of the action-conditional video predictors (Oh, Guo, Lee, Lewis and Singh 2015, Sec. 3).

Every network here maps ``(past, action) -> next frame`` through three stages, as in the paper's Fig. 1:
encoding, the multiplicative action-conditional transformation, decoding.

- :class:`FactoredActionTransform` is Sec. 3.3's transformation: the bilinear map
  ``h_dec_i = sum_jl W_ijl h_enc_j a_l + b_i`` factored as ``h_dec = W_dec (W_enc h_enc * W_a a) + b``
  (element-wise product of the encoding and the one-hot action, both projected to ``factors`` units).
  :class:`SpatialActionTransform` applies the same factored product at every location of a feature map
  (1x1 convolutions), as a residual update: our CPU body's way of letting the action move sprites locally.
- Body ``"paper"`` (:class:`DenseEncoder` / :class:`DenseDecoder`): strided convolutions (64x8x8, 128x6x6,
  128x6x6, 128x4x4, stride 2, ReLU), a fully connected ``hidden``-unit encoding (2048), the transform, and a
  mirrored decoder of transposed convolutions that predicts the frame (minus the mean frame).
- Body ``"residual"`` (:class:`ResidualEncoder` / :class:`ResidualDecoder`): a deviation for CPU budgets.
  A 2048-unit bottleneck of an 84x84 frame cannot be trained in minutes on a CPU (it collapses to a blurry
  mean frame), so this body keeps the spatial layout: two stride-2 convolutions to quarter resolution,
  residual blocks each preceded by a :class:`SpatialActionTransform`, transposed convolutions back up with a
  skip connection from the half-resolution features, and it predicts the *change* from the last frame
  (its last layer starts at zero, so an untrained model is the copy-last-frame baseline). About 50k weights.

The recurrent architecture (Sec. 3.2) puts an LSTM between encoder and transform: the paper's is a
fully connected LSTM over the 2048-unit encoding (:class:`torch.nn.LSTMCell`); the residual body uses a
convolutional LSTM (:class:`ConvLSTMCell`) at quarter resolution instead, again to keep the spatial layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FactoredActionTransform(nn.Module):
    """``h_dec = W_dec (W_enc h * W_a a) + b`` (Sec. 3.3, Eq. 3 factored).

    :param dim: width of ``h`` (in and out).
    :param factors: factor units.
    :param num_actions: size of the one-hot action.
    """

    def __init__(self, dim: int, factors: int, num_actions: int) -> None:
        super().__init__()
        self.enc = nn.Linear(dim, factors, bias=False)
        self.act = nn.Linear(num_actions, factors, bias=False)
        self.dec = nn.Linear(factors, dim)
        # The paper initialises W_a uniformly in [-0.1, 0.1] (App. B.1); a small start keeps the product tame.
        nn.init.uniform_(self.act.weight, -0.1, 0.1)

    def forward(self, h: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """:param h: ``[B, dim]``. :param action: one-hot float ``[B, num_actions]``. :return: ``[B, dim]``."""
        return self.dec(self.enc(h) * self.act(action))


class SpatialActionTransform(nn.Module):
    """The factored transform at every location of a feature map, as a residual update:
    ``h + W_dec (W_enc h * W_a a)`` with 1x1 convolutions for ``W_enc`` and ``W_dec``.

    :param channels: channels of ``h`` (in and out).
    :param factors: factor units per location.
    :param num_actions: size of the one-hot action.
    """

    def __init__(self, channels: int, factors: int, num_actions: int) -> None:
        super().__init__()
        self.enc = nn.Conv2d(channels, factors, 1, bias=False)
        self.act = nn.Linear(num_actions, factors)
        self.dec = nn.Conv2d(factors, channels, 1)
        nn.init.uniform_(self.act.weight, -0.1, 0.1)
        nn.init.ones_(self.act.bias)  # starts near the identity gate, so features pass while W_a learns

    def forward(self, h: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """:param h: ``[B, C, H, W]``. :param action: one-hot float ``[B, A]``. :return: ``[B, C, H, W]``."""
        gate = self.act(action)[:, :, None, None]
        return h + self.dec(self.enc(h) * gate)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip: ``h + conv(relu(conv(relu(h))))`` (pre-activation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(F.relu(self.conv1(F.relu(h))))


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell (Shi et al. 2015): the four gates are a 3x3 convolution of ``[x, h]``.

    :param channels: channels of the input, the hidden state and the cell.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 4 * channels, 3, padding=1)
        bias = self.gates.bias
        assert bias is not None
        with torch.no_grad():  # forget-gate bias 1: remember by default (Jozefowicz et al. 2015)
            bias.zero_()
            bias[channels: 2 * channels] = 1.0

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """:param x: ``[B, C, H, W]``. :param state: ``(h, c)``, each ``[B, C, H, W]``. :return: ``(h', c')``."""
        h, c = state
        i, f, g, o = self.gates(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


# ------------------------------------------------------------------------------------------ paper body
class DenseEncoder(nn.Module):
    """Strided ReLU convolutions, then a fully connected ReLU layer of ``hidden`` units (Sec. 3.1).

    :param in_channels: input channels (context frames x colour channels for the feedforward model).
    :param size: ``(H, W)`` of the input.
    """

    def __init__(self, in_channels: int, size: tuple[int, int], channels: list[int], kernels: list[int],
                 padding: list[int], hidden: int) -> None:
        super().__init__()
        layers, c = [], in_channels
        for out, k, p in zip(channels, kernels, padding):
            layers.append(nn.Conv2d(c, out, k, stride=2, padding=p))
            c = out
        self.convs = nn.ModuleList(layers)
        # Record every layer's output size so the decoder can mirror them exactly (210 and 160 are not powers of 2).
        self.sizes = [tuple(size)]
        with torch.no_grad():
            x = torch.zeros(1, in_channels, *size)
            for conv in self.convs:
                x = conv(x)
                if x.shape[-1] < 1 or x.shape[-2] < 1:
                    raise ValueError(f"frames of {size} are too small for the encoder's convolutions")
                self.sizes.append(tuple(x.shape[-2:]))
        self.feature_shape = tuple(x.shape[1:])
        self.fc = nn.Linear(int(x.numel()), hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:param x: ``[B, C, H, W]``. :return: ``[B, hidden]``."""
        for conv in self.convs:
            x = F.relu(conv(x))
        return F.relu(self.fc(x.flatten(1)))


class DenseDecoder(nn.Module):
    """The encoder mirrored: a fully connected ReLU layer, then transposed convolutions back to the frame.

    :param encoder: the :class:`DenseEncoder` to mirror (its layer sizes are reproduced exactly).
    :param out_channels: channels of the predicted frame.
    """

    def __init__(self, encoder: DenseEncoder, channels: list[int], kernels: list[int], padding: list[int],
                 hidden: int, out_channels: int) -> None:
        super().__init__()
        self.feature_shape = encoder.feature_shape
        self.sizes = encoder.sizes
        self.fc = nn.Linear(hidden, int(torch.Size(self.feature_shape).numel()))
        outs = [*channels[:-1][::-1], out_channels]
        ins = channels[::-1]
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(i, o, k, stride=2, padding=p)
            for i, o, k, p in zip(ins, outs, kernels[::-1], padding[::-1]))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """:param h: ``[B, hidden]``. :return: ``[B, out_channels, H, W]`` (no output non-linearity)."""
        x = F.relu(self.fc(h)).view(-1, *self.feature_shape)
        n = len(self.deconvs)
        for i, deconv in enumerate(self.deconvs):
            x = deconv(x, output_size=self.sizes[n - 1 - i])
            if i < n - 1:
                x = F.relu(x)
        return x


class RewardHead(nn.Module):
    """Logits of the reward's sign (3 classes: -1, 0, +1) and of game over, from transformed features.

    :param in_shape: ``(dim,)`` for vector features or ``(C, H, W)`` for feature maps.
    """

    def __init__(self, in_shape: tuple[int, ...]) -> None:
        super().__init__()
        if len(in_shape) == 1:
            self.net = nn.Sequential(nn.Linear(in_shape[0], 64), nn.ReLU(), nn.Linear(64, 4))
        else:
            self.net = nn.Sequential(nn.Conv2d(in_shape[0], 16, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(16, 4))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """:return: ``[B, 4]``: reward-sign logits (columns 0..2 for -1, 0, +1) and the game-over logit."""
        return self.net(h)


# --------------------------------------------------------------------------------------- residual body
class ResidualEncoder(nn.Module):
    """Two stride-2 4x4 convolutions: ``[B, C_in, H, W] -> ([B, r, H/4, W/4], skip [B, s, H/2, W/2])``."""

    def __init__(self, in_channels: int, stem: int, channels: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, stem, 4, stride=2, padding=1)
        self.down = nn.Conv2d(stem, channels, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = F.relu(self.stem(x))
        return F.relu(self.down(skip)), skip


class ActionBody(nn.Module):
    """Residual blocks, each preceded by a :class:`SpatialActionTransform` (at least one transform)."""

    def __init__(self, channels: int, blocks: int, factors: int, num_actions: int) -> None:
        super().__init__()
        n = max(1, blocks)
        self.transforms = nn.ModuleList(SpatialActionTransform(channels, factors, num_actions) for _ in range(n))
        self.blocks = nn.ModuleList(ResidualBlock(channels) for _ in range(blocks))

    def forward(self, h: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        for i, transform in enumerate(self.transforms):
            h = transform(h, action)
            if i < len(self.blocks):
                h = self.blocks[i](h)
        return h


class ResidualDecoder(nn.Module):
    """Quarter resolution back to full: transposed conv, concat the half-resolution skip, 3x3 conv, transposed
    conv to the frame's channels. The last layer starts at zero (the first prediction is "no change")."""

    def __init__(self, channels: int, stem: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(channels, stem, 4, stride=2, padding=1)
        self.mix = nn.Conv2d(2 * stem, stem, 3, padding=1)
        self.out = nn.ConvTranspose2d(stem, out_channels, 4, stride=2, padding=1)
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """:return: ``[B, out_channels, H, W]``, the predicted change (no output non-linearity)."""
        x = F.relu(self.up(F.relu(h)))
        x = F.relu(self.mix(torch.cat([x, skip], 1)))
        return self.out(x)
