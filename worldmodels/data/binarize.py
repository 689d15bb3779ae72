"""Binarisation of luminance frames for binary-latent models: the background-subtraction rule.

Rule (per game, fitted on the training split only):

1. Resize each uint8 ``[84, 84]`` luminance frame to ``size x size`` (42 by default, or 84) by block
   averaging (84 / size pixels per side), rounding to the nearest grey level.
2. The *background* ``b`` is the per-pixel mode (most frequent grey level) of the resized training frames:
   what a pixel shows most of the time (Pong's brown field and walls, Breakout's black screen and bricks).
3. A pixel is on (1) when it differs from the background by more than ``threshold`` grey levels:
   ``x_bin = |x_resized - b| > threshold``; otherwise off (0).

So the binary frame marks what is *not* background: paddles, ball, score digits, missing bricks. A fixed
luminance threshold would instead light up whole bright backgrounds (Pong's walls and field differ by tens of
grey levels in ways that carry no information), and stochastic binarisation (``x ~ Bern(lum / 255)``) would
turn Pong's mid-grey field into noise the model must spend nats on. The rule is deterministic, so the same
frame always gives the same binary frame, and cheap (a resize and a comparison per frame).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

SIZES = (42, 84)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Block-average uint8 ``[B, 84, 84]`` (or ``[84, 84]``) luminance frames to ``[B, size, size]`` uint8.

    :raises ValueError: if the frame side is not a multiple of ``size``.
    """
    frames = np.asarray(frames)
    h, w = frames.shape[-2:]
    if h % size or w % size:
        raise ValueError(f"frames of {h}x{w} cannot be block-averaged to {size}x{size}: use one of {SIZES}.")
    if h == size and w == size:
        return frames.astype(np.uint8, copy=False)
    fh, fw = h // size, w // size
    blocks = frames.reshape(*frames.shape[:-2], size, fh, size, fw).astype(np.float32)
    return np.rint(blocks.mean(axis=(-3, -1))).astype(np.uint8)


@dataclass
class Binarizer:
    """Background-subtracted threshold (see the module docstring).

    :param background: uint8 ``[size, size]``, per-pixel mode of the resized training frames.
    :param threshold: grey levels a pixel must differ from the background by to be on.
    """

    background: np.ndarray
    threshold: int = 24

    @property
    def size(self) -> int:
        return int(self.background.shape[-1])

    @classmethod
    def fit(cls, frame_batches: Iterable[np.ndarray], size: int = 42, threshold: int = 24) -> Binarizer:
        """Per-pixel mode of every frame in ``frame_batches`` (uint8 ``[B, 84, 84]`` each).

        Uses a ``[size * size, 256]`` histogram, so memory does not grow with the number of frames.

        :raises ValueError: on an unsupported size or no frames.
        """
        if size not in SIZES:
            raise ValueError(f"binarisation size {size} is not supported: use one of {SIZES}.")
        counts = np.zeros((size * size, 256), dtype=np.int64)
        offsets = np.arange(size * size, dtype=np.int64) * 256
        seen = 0
        for batch in frame_batches:
            if batch.ndim != 3:
                raise ValueError(f"the binariser reads luminance frames [B, H, W], got {batch.shape}: collect the "
                                 f"dataset without --rgb.")
            small = resize_frames(batch, size).reshape(-1, size * size).astype(np.int64)
            counts += np.bincount((small + offsets).ravel(), minlength=size * size * 256).reshape(size * size, 256)
            seen += len(small)
        if seen == 0:
            raise ValueError("cannot fit a binariser on zero frames: the training split is empty.")
        # argmax returns the lowest grey level among ties: deterministic.
        background = counts.argmax(axis=1).astype(np.uint8).reshape(size, size)
        return cls(background=background, threshold=threshold)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[B, 84, 84]`` luminance -> uint8 ``[B, size, size]`` with values in {0, 1}."""
        small = resize_frames(frames, self.size).astype(np.int16)
        return (np.abs(small - self.background.astype(np.int16)) > self.threshold).astype(np.uint8)

    def state_dict(self) -> dict[str, Any]:
        return {"background": self.background.copy(), "threshold": int(self.threshold)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Binarizer:
        return cls(background=np.asarray(state["background"], dtype=np.uint8), threshold=int(state["threshold"]))
