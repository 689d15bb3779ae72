"""Convolutional torsos shared by every algorithm (DQN now, actor-critic later), chosen from the observation shape.

A torso maps uint8 observations ``[B, C_in, H, W]`` to float32 features ``[B, out_features]`` and scales its input
itself, so that observations stay uint8 in replay and across process boundaries. Stacks of colour frames
``[B, S, H, W, 3]`` (ale-py's RGB observations, ``env.colour``) are folded into ``C_in = 3 S`` channels inside the
torso, so that they too stay as the env gives them:

- Atari / Catch pixels (0..255) are divided by 255;
- MinAtar observations (Young & Tian 2019) are 0/1 channels: they are used as they are (divisor 1).

Only integer input is scaled: a floating-point input is taken as already scaled (e.g. ``obs.float() / 255``).

The architectures (ReLU after every conv, then flatten):

============================  ===============================================  =====================
:func:`nature_cnn`            Mnih et al. 2015: 32 8x8/4, 64 4x4/2, 64 3x3/1     3136 for 84x84 inputs
:func:`a3c_cnn`               Mnih et al. 2016 (A3C): 16 8x8/4, 32 4x4/2         2592 for 84x84 inputs
:func:`minatar_cnn`           MinAtar's DQN example: 16 3x3/1                    1024 for 10x10 inputs
============================  ===============================================  =====================

:func:`make_torso` picks one from the observation shape (``"auto"``: MinAtar for grids of cells up to 31x31, Nature
for 84x84).
"""

from __future__ import annotations

import torch
from torch import nn

#: Torso kinds :func:`make_torso` accepts (besides ``"auto"``).
TORSO_KINDS = ("nature", "a3c", "minatar")
PIXEL_DIVISOR = 255.0


class Torso(nn.Sequential):
    """Conv layers (an ``nn.Sequential``: parameter names ``0.weight``, ``2.weight``, ...) that first scale their
    uint8 input: ``forward(obs)`` is ``layers(obs.float() / input_divisor)``; a floating-point ``obs`` is taken as
    already scaled and goes in as it is.

    :param layers: the modules, ending in ``nn.Flatten``.
    :param input_divisor: 255 for pixels, 1 for MinAtar's 0/1 channels.
    :param in_shape: (C_in, H, W) the torso was sized for; ``out_features`` is its flattened output for that shape.
    :param fold_colour: the input is a stack of colour frames ``[B, S, H, W, 3]`` with ``C_in = 3 S``: it is folded
        into ``[B, 3 S, H, W]`` (frame-major: the channels of frame 0, then frame 1, ...) before the first conv.
    """

    def __init__(self, *layers: nn.Module, input_divisor: float, in_shape: tuple[int, int, int],
                 fold_colour: bool = False) -> None:
        super().__init__(*layers)
        self.input_divisor = float(input_divisor)
        self.fold_colour = bool(fold_colour)
        c, h, w = in_shape
        self.in_shape = (int(c), int(h), int(w))
        self.out_features = _flat_size(layers, self.in_shape)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """:param obs: uint8 ``[B, C_in, H, W]`` observations (or float, already scaled); ``[B, S, H, W, 3]`` for a
            torso built with ``fold_colour``.
        :return: float32 ``[B, out_features]``."""
        if self.fold_colour:
            # [B, S, H, W, 3] -> [B, H, W, S * 3] is the channels-last layout of [B, 3 S, H, W]: one uint8 copy, and
            # the permute below is a view, so the convolutions get NHWC as they would from the branch after this.
            b, s, h, w, c = obs.shape
            obs = obs.permute(0, 2, 3, 1, 4).reshape(b, h, w, s * c).permute(0, 3, 1, 2)
        # Channels-last (NHWC) input: oneDNN's convolutions on the CPU take it without reordering, measured 1.3-1.4x
        # faster forward + backward for the A3C and Nature torsos at batch 96 on one thread. Reordered as uint8
        # (a quarter of the bytes), before the float conversion, which keeps the layout.
        obs = obs.contiguous(memory_format=torch.channels_last) if obs.dim() == 4 else obs
        if obs.is_floating_point():
            return super().forward(obs)
        x = obs.float()  # a new tensor: dividing in place never touches the caller's
        if self.input_divisor != 1.0:
            x = x.div_(self.input_divisor)
        return super().forward(x)


def _flat_size(layers: tuple[nn.Module, ...], in_shape: tuple[int, int, int]) -> int:
    """Flattened output size of conv layers on an input of ``in_shape`` (computed, no forward pass).

    :raises ValueError: the input is too small for a conv layer.
    """
    c, h, w = in_shape
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            if isinstance(layer.padding, str):
                raise ValueError(f"the torso's conv layers need numeric padding, not {layer.padding!r} ({layer})")
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
            h, w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            if h < 1 or w < 1:
                raise ValueError(f"input {in_shape} is too small for the torso's conv layers ({layer})")
            c = layer.out_channels
    return c * h * w


def nature_cnn(in_channels: int, input_divisor: float = PIXEL_DIVISOR, size: tuple[int, int] = (84, 84),
               fold_colour: bool = False) -> Torso:
    """Nature DQN torso (Mnih et al. 2015, Methods): conv 32 8x8/4, 64 4x4/2, 64 3x3/1, flatten.

    ``[B, in_channels, 84, 84]`` -> ``[B, 3136]`` (64 x 7 x 7). ``size`` (H, W) only sets ``out_features``.
    """
    return Torso(
        nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
        nn.Flatten(),
        input_divisor=input_divisor, in_shape=(in_channels, *size), fold_colour=fold_colour,
    )


def a3c_cnn(in_channels: int, input_divisor: float = PIXEL_DIVISOR, size: tuple[int, int] = (84, 84),
            fold_colour: bool = False) -> Torso:
    """A3C torso (Mnih et al. 2016; the DQN of Mnih et al. 2013): conv 16 8x8/4, 32 4x4/2, flatten.

    ``[B, in_channels, 84, 84]`` -> ``[B, 2592]`` (32 x 9 x 9). ``size`` (H, W) only sets ``out_features``.
    """
    return Torso(
        nn.Conv2d(in_channels, 16, 8, stride=4), nn.ReLU(),
        nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(),
        nn.Flatten(),
        input_divisor=input_divisor, in_shape=(in_channels, *size), fold_colour=fold_colour,
    )


def minatar_cnn(in_channels: int, input_divisor: float = 1.0, size: tuple[int, int] = (10, 10),
                fold_colour: bool = False) -> Torso:
    """MinAtar torso (Young & Tian 2019, the DQN example of the MinAtar repository): conv 16 3x3/1, flatten.

    ``[B, in_channels, 10, 10]`` -> ``[B, 1024]`` (16 x 8 x 8). ``size`` (H, W) only sets ``out_features``.
    """
    return Torso(
        nn.Conv2d(in_channels, 16, 3, stride=1), nn.ReLU(),
        nn.Flatten(),
        input_divisor=input_divisor, in_shape=(in_channels, *size), fold_colour=fold_colour,
    )


#: Inputs up to this size on both sides are grids of cells (MinAtar's 10x10, the maze's n x n), not pixels.
GRID_MAX = 31

_BUILDERS = {"nature": nature_cnn, "a3c": a3c_cnn, "minatar": minatar_cnn}


def make_torso(
    obs_shape: tuple[int, ...], kind: str = "auto", input_divisor: float | None = None
) -> tuple[Torso, int]:
    """The torso for observations of ``obs_shape`` (C_in, H, W), and its number of output features.

    :param obs_shape: one observation's shape: (4, 84, 84) for Atari/Catch stacks, (C, 10, 10) for MinAtar (or
        (S * C, 10, 10) for stacked MinAtar frames), (S, H, W, 3) for a stack of colour frames (folded into 3 S
        channels by the torso).
    :param kind: "nature", "a3c", "minatar", or "auto": "minatar" for grids of cells (both sides at most
        :data:`GRID_MAX`: MinAtar's 10x10, the maze's n x n), "nature" for 84x84.
    :param input_divisor: what the uint8 input is divided by; None: 1 for grids of cells (0/1 channels), 255
        otherwise (pixels).
    :returns: ``(torso, out_features)``; ``torso(obs uint8 [B, *obs_shape])`` is float32 ``[B, out_features]``.
    :raises ValueError: ``obs_shape`` not (C, H, W) or (S, H, W, 3); unknown kind; "auto" for a size other than
        a grid of cells or 84x84; an input too small for the chosen torso.
    """
    shape = tuple(int(x) for x in obs_shape)
    fold_colour = len(shape) == 4 and shape[-1] == 3
    if fold_colour:
        shape = (shape[0] * 3, shape[1], shape[2])
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"obs_shape must be (C, H, W) or colour frames (S, H, W, 3) with positive sizes, got "
                         f"{tuple(obs_shape)}")
    size = shape[1:]
    grid = max(size) <= GRID_MAX
    if kind == "auto":
        if not (grid or size == (84, 84)):
            raise ValueError(
                f"no automatic torso for {size[0]}x{size[1]} inputs (auto knows grids of cells up to {GRID_MAX}x"
                f"{GRID_MAX}: minatar, 84x84: nature); pass kind= one of {list(TORSO_KINDS)}"
            )
        kind = "minatar" if grid else "nature"
    if kind not in _BUILDERS:
        raise ValueError(f"unknown torso kind {kind!r}; choose 'auto' or one of {list(TORSO_KINDS)}")
    if input_divisor is None:
        input_divisor = 1.0 if grid else PIXEL_DIVISOR
    torso = _BUILDERS[kind](shape[0], input_divisor=input_divisor, size=size, fold_colour=fold_colour)
    return torso, torso.out_features
