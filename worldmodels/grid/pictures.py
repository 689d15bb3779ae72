"""Pictures of grid observations and of imagined rollouts beside real ones (MinAtar's 0/1 object channels).

- :func:`channel_palette` / :func:`grid_to_rgb`: each channel in its own colour on black, the later channel on top
  where objects share a cell, as MinAtar's own display draws them (``envs.observation_to_rgb`` uses the same).
- :func:`rollout_frames`: the frames of an animation, real | imagined | error per rollout, frame 0 the real start
  and frame ``t`` step ``t`` of the open-loop rollout; :func:`encode_gif` / :func:`write_gif` store it.

The error column marks each cell where the imagined channels differ from the real ones: red where the real frame
has an object and the imagined cell is empty (missed), blue where the imagined frame has an object on an empty
real cell (invented), white where both have objects of different kinds (wrong channel); black where they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["ERROR_COLOURS", "GUTTER", "channel_palette", "encode_gif", "error_to_rgb", "grid_to_rgb",
           "rollout_frames", "write_gif"]

#: Error-column colours (RGB), see the module docstring.
ERROR_COLOURS = {"missed": (255, 60, 60), "invented": (60, 140, 255), "wrong_channel": (255, 255, 255)}
#: Grey level of the gutters between panels and of steps after a real game over.
GUTTER = 64


def channel_palette(channels: int) -> np.ndarray:
    """``channels`` evenly spaced bright hues: uint8 ``[channels, 3]``, channel ``c`` the HSV colour
    ``(c / channels, 0.75, 1)`` (channel 0 red)."""
    hues = np.arange(channels) / max(channels, 1)
    k = (np.array([5.0, 3.0, 1.0]) + hues[:, None] * 6) % 6
    return (255 * (1 - 0.75 * np.clip(np.minimum(k, 4 - k), 0, 1))).astype(np.uint8)


def grid_to_rgb(frames: np.ndarray, scale: int = 1) -> np.ndarray:
    """Grid observations as colour pictures.

    :param frames: 0/1 (bool or uint8) ``[..., C, H, W]``.
    :param scale: pixels per cell along each axis (nearest-neighbour).
    :return: uint8 ``[..., H * scale, W * scale, 3]``: black background, each channel's objects in
        :func:`channel_palette`'s colour, the highest channel on top where several share a cell.
    """
    x = np.asarray(frames).astype(bool)
    if x.ndim < 3:
        raise ValueError(f"frames must be [..., C, H, W], got shape {x.shape}.")
    channels = x.shape[-3]
    palette = channel_palette(channels)
    rgb = np.zeros((*x.shape[:-3], *x.shape[-2:], 3), np.uint8)
    for c in range(channels):
        rgb[x[..., c, :, :]] = palette[c]
    return _upscale(rgb, scale)


def error_to_rgb(real: np.ndarray, imagined: np.ndarray, scale: int = 1) -> np.ndarray:
    """Where imagined grids differ from real ones, coloured by :data:`ERROR_COLOURS` (black: the cell agrees).

    :param real: 0/1 ``[..., C, H, W]``. :param imagined: the same shape.
    :return: uint8 ``[..., H * scale, W * scale, 3]``.
    """
    r, m = np.asarray(real).astype(bool), np.asarray(imagined).astype(bool)
    if r.shape != m.shape or r.ndim < 3:
        raise ValueError(f"real and imagined must share a shape [..., C, H, W]; got {r.shape} and {m.shape}.")
    r_any, m_any = r.any(axis=-3), m.any(axis=-3)
    differ = (r != m).any(axis=-3)
    rgb = np.zeros((*differ.shape, 3), np.uint8)
    rgb[differ & r_any & ~m_any] = ERROR_COLOURS["missed"]
    rgb[differ & ~r_any & m_any] = ERROR_COLOURS["invented"]
    rgb[differ & r_any & m_any] = ERROR_COLOURS["wrong_channel"]
    return _upscale(rgb, scale)


def _upscale(rgb: np.ndarray, scale: int) -> np.ndarray:
    if scale < 1:
        raise ValueError(f"scale={scale} must be a positive int.")
    return rgb if scale == 1 else rgb.repeat(scale, axis=-3).repeat(scale, axis=-2)


def _caption(strip: np.ndarray, x: int, text: str) -> None:
    """Write ``text`` in white into the uint8 ``[h, w, 3]`` strip in place (PIL's bitmap font, 6 px a character)."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(strip)
    ImageDraw.Draw(pil).text((x, 1), text, fill=(255, 255, 255))
    strip[...] = np.asarray(pil)


def rollout_frames(real: np.ndarray, imagined: np.ndarray, valid: np.ndarray | None = None, scale: int = 8,
                   header: int = 12, titles: Sequence[str] = ("real", "imagined", "error")) -> np.ndarray:
    """Animation frames of open-loop rollouts beside the real episodes they imagine.

    :param real: 0/1 ``[S, T + 1, C, H, W]``: each rollout's real start frame, then the real frame after each of the
        ``T`` actions.
    :param imagined: 0/1 ``[S, T, C, H, W]``: the model's frames after the same actions, from the same start.
    :param valid: bool ``[S, T]``: False for steps after the real game ended (drawn dimmed, the error column grey);
        None: all valid.
    :param scale: pixels per grid cell.
    :param header: rows of the caption strip (column titles and the step counter).
    :param titles: the three column titles.
    :return: uint8 ``[T + 1, header + S (H scale + 2), 3 (W scale + 2), 3]``: frame 0 shows the start in every
        column (no error), frame ``t`` step ``t``; one row of panels per rollout, columns real | imagined | error
        (:func:`error_to_rgb`), each panel framed by a one-pixel gutter of grey :data:`GUTTER`.
    """
    real, imagined = np.asarray(real).astype(bool), np.asarray(imagined).astype(bool)
    if real.ndim != 5 or imagined.ndim != 5 or real.shape[0] != imagined.shape[0] \
            or real.shape[1] != imagined.shape[1] + 1 or real.shape[2:] != imagined.shape[2:]:
        raise ValueError(f"real must be [S, T + 1, C, H, W] and imagined [S, T, C, H, W]; got {real.shape} and "
                         f"{imagined.shape}.")
    s_count, t_count = imagined.shape[:2]
    ok = np.ones((s_count, t_count), bool) if valid is None else np.asarray(valid, bool)
    if ok.shape != (s_count, t_count):
        raise ValueError(f"valid must be [S, T] = {(s_count, t_count)}, got {ok.shape}.")
    ok = np.concatenate([np.ones((s_count, 1), bool), ok], axis=1)  # the start is real in every column
    pred = np.concatenate([real[:, :1], imagined], axis=1)
    columns = [grid_to_rgb(real, scale), grid_to_rgb(pred, scale), error_to_rgb(real, pred, scale)]
    h, w = real.shape[-2] * scale, real.shape[-1] * scale
    out = np.full((t_count + 1, header + s_count * (h + 2), 3 * (w + 2), 3), GUTTER, np.uint8)
    for j, col in enumerate(columns):
        x = j * (w + 2) + 1
        for i in range(s_count):
            y = header + i * (h + 2) + 1
            panel = col[i].copy()  # [T + 1, h, w, 3]
            if j == 2:
                panel[~ok[i]] = GUTTER
            else:
                panel[~ok[i]] //= 3
            out[:, y: y + h, x: x + w] = panel
    out[:, :header] = 0
    fits = max(4, (w - 2) // 6)
    for t in range(t_count + 1):
        for j, title in enumerate(titles):
            # The step counter is never cut: identical frames would merge in a GIF.
            _caption(out[t, :header], j * (w + 2) + 3, f"{title[:fits]}  t={t}" if j == 0 else title[:fits])
    return out


def encode_gif(frames: np.ndarray, fps: float = 2.0) -> bytes:
    """uint8 ``[N, H, W, 3]`` (or grey ``[N, H, W]``) frames as the bytes of a looping animated GIF."""
    import imageio.v3 as iio

    data: bytes = iio.imwrite("<bytes>", np.asarray(frames, np.uint8), extension=".gif", duration=1000.0 / fps,
                              loop=0)
    return data


def write_gif(path: str | Path, frames: np.ndarray, fps: float = 2.0) -> Path:
    """Write :func:`encode_gif`'s animation to ``path`` atomically (a temporary file, then ``os.replace``; a reader
    never sees half a GIF), creating the folder."""
    from worldmodels.common.atomic import atomic_write

    path = Path(path)
    atomic_write(path, encode_gif(frames, fps))
    return path
