"""Turn raw Atari frames into the density models' input: 42x42 frames with 8 grey levels.

The pipeline follows Bellemare et al. (2016, App. C) and Ostrovski et al. (2017, App. A):

1. luminance grey: RGB frames are converted with the ITU-R BT.601 weights
   ``Y = 0.299 R + 0.587 G + 0.114 B`` (OpenCV's ``COLOR_RGB2GRAY``, rounded to uint8); grey frames
   are used as they are;
2. area averaging to 42x42 (OpenCV ``INTER_AREA``: the exact mean of each 2x2 block for our 84x84
   frames, a pixel-area-weighted mean for 210x160 RGB frames), rounded to uint8;
3. quantisation to ``num_levels`` levels by integer division: ``level = grey // (256 // num_levels)``,
   i.e. ``grey // 32`` for 8 levels.

Our environments already emit grey 84x84 frames stacked as ``obs`` uint8 ``[..., 4, 84, 84]`` (oldest
first); the newest frame is ``obs[..., -1, :, :]`` (``envs.atari.latest_frame``), so the density
model needs no second call into the emulator: ``preprocess_frames(obs[:, -1])``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["preprocess_frames", "DEFAULT_SHAPE", "DEFAULT_LEVELS"]

DEFAULT_SHAPE: tuple[int, int] = (42, 42)
DEFAULT_LEVELS: int = 8
# cv2's Python binding resizes at most 128 channels at once (measured, OpenCV 5.0): larger batches go
# in chunks.
_CV_MAX_CHANNELS = 128


def preprocess_frames(
    frames: np.ndarray,
    shape: tuple[int, int] = DEFAULT_SHAPE,
    num_levels: int = DEFAULT_LEVELS,
) -> np.ndarray:
    """Grey, area-average and quantise frames for a density model.

    Accepted inputs (all uint8):

    - RGB: ``[B, H, W, 3]`` or one frame ``[H, W, 3]`` (e.g. ALE's 210x160 screens);
    - grey: ``[B, H, W]`` or one frame ``[H, W]`` (e.g. the newest 84x84 frame of our stacked obs,
      ``obs[:, -1]``). A 3-D array whose last axis is not 3 is a grey batch.

    :param frames: see above.
    :param shape: output ``(height, width)``.
    :param num_levels: number of grey levels, a power of two dividing 256.
    :return: uint8 ``[B, height, width]`` with values in ``[0, num_levels)`` (a batch axis is added for
        single frames).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 Atari screens, got dtype {frames.dtype}; convert with "
            "frames.astype(np.uint8) if they hold 0..255 values"
        )
    if num_levels < 2 or num_levels > 256 or 256 % num_levels != 0:
        raise ValueError(f"num_levels must be a power of two in [2, 256], got {num_levels}")
    height, width = int(shape[0]), int(shape[1])
    if frames.ndim == 4 and frames.shape[-1] == 3:
        grey = _rgb_to_grey(frames)
    elif frames.ndim == 3 and frames.shape[-1] == 3:
        grey = _rgb_to_grey(frames[None])
    elif frames.ndim == 3:
        grey = frames
    elif frames.ndim == 2:
        grey = frames[None]
    else:
        raise ValueError(
            f"frames must be RGB [B,H,W,3] / [H,W,3] or grey [B,H,W] / [H,W], got shape {frames.shape}; "
            "for a stacked observation [B,4,84,84] pass its newest frame obs[:, -1]"
        )
    small = _area_resize(grey, height, width)
    return small // np.uint8(256 // num_levels)


def _rgb_to_grey(frames: np.ndarray) -> np.ndarray:
    """uint8 ``[B, H, W, 3]`` RGB -> uint8 ``[B, H, W]`` BT.601 luminance."""
    out = np.empty(frames.shape[:3], dtype=np.uint8)
    for b in range(frames.shape[0]):
        cv2.cvtColor(np.ascontiguousarray(frames[b]), cv2.COLOR_RGB2GRAY, dst=out[b])
    return out


def _area_resize(grey: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``[B, H, W]`` -> uint8 ``[B, height, width]`` by area averaging."""
    batch = grey.shape[0]
    if grey.shape[1:] == (height, width):
        return grey.copy()
    out = np.empty((batch, height, width), dtype=np.uint8)
    # cv2 treats the last axis as channels: resize a whole chunk of frames in one call.
    for start in range(0, batch, _CV_MAX_CHANNELS):
        chunk = np.ascontiguousarray(grey[start : start + _CV_MAX_CHANNELS].transpose(1, 2, 0))
        resized = cv2.resize(chunk, (width, height), interpolation=cv2.INTER_AREA)
        if resized.ndim == 2:  # cv2 drops a single channel axis
            resized = resized[:, :, None]
        out[start : start + _CV_MAX_CHANNELS] = resized.transpose(2, 0, 1)
    return out
