"""``objects.png`` of ``reverie imagine``: one picture of what the motion-aware scores count.

One held-out rollout, one column per horizon step (1, 5, 10 and 20, where the horizon reaches), one row for the
real frames and one per predictor (copy-last, then each model). Every mark comes from the functions that compute
the scores (:mod:`worldmodels.video.motion`), so the picture cannot drift from the numbers:

- **real** row: the real frame, its *moving pixels* (mask A: changed since the real frame before) in red and the
  rest of its *foreground* (mask B: off the held-out median) in yellow;
- **predictor** rows: the imagined frame with every real moving object ringed, green when the frame keeps it
  (recalled) and red when it does not (missed); the predictor's own moving objects tinted cyan when they touch a
  real object (right) and magenta when they do not (invented motion). Under each panel: recalled / real objects
  and right / imagined objects at that step, the terms of the step's recall and precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from worldmodels.video.motion import differs, frame_objects, kept_pixels, moving_objects, object_flags

__all__ = ["STEPS", "objects_picture", "pick_rollout"]

#: Horizon steps shown (those beyond the horizon are left out).
STEPS = (1, 5, 10, 20)
MOVING, FOREGROUND = (235, 40, 40), (245, 205, 0)
RIGHT, INVENTED = (0, 205, 235), (235, 0, 205)
RECALLED, MISSED = (40, 225, 40), (255, 40, 40)
_BG = (48, 48, 48)


def _rgb(frame: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W]`` or ``[H, W, 3]`` -> uint8 ``[H, W, 3]``."""
    return np.repeat(frame[..., None], 3, axis=-1) if frame.ndim == 2 else frame.copy()


def _tint(img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.6) -> None:
    """Blend ``colour`` into the uint8 ``[H, W, 3]`` image where ``mask`` is set, in place."""
    blended = (1 - alpha) * img[mask].astype(np.float32) + alpha * np.asarray(colour, np.float32)
    img[mask] = blended.round().astype(np.uint8)


def _up(x: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of the first two axes."""
    return x.repeat(scale, axis=0).repeat(scale, axis=1)


def _ring(mask: np.ndarray) -> np.ndarray:
    """The pixels just outside ``mask`` (its 8-neighbour dilation minus itself): a ring that leaves the object
    itself visible, however small."""
    m = np.pad(mask, 1)
    grown = np.zeros_like(m)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown |= np.roll(np.roll(m, dy, axis=0), dx, axis=1)
    return (grown & ~m)[1:-1, 1:-1]


def _colour(frames: np.ndarray, spatial: int) -> bool:
    """Whether ``frames`` has a trailing colour axis beyond its ``spatial`` leading-plus-image axes."""
    return frames.ndim == spatial + 1


def pick_rollout(frames: np.ndarray, context: int, background: np.ndarray, steps: Sequence[int] = STEPS) -> int:
    """The rollout with the most real moving objects at ``steps``: the most instructive one to draw.

    :param frames: uint8 windows ``[S, k + T, H, W]`` (``[S, k + T, H, W, 3]``).
    :param background: ``[H, W]`` (``[H, W, 3]``), floats on [0, 1] or uint8.
    :return: an index into ``S`` (the first among equals).
    """
    colour = _colour(frames, 4)
    counts = []
    for window in frames:
        n = 0
        for t in steps:
            if context + t - 1 < len(window):
                r, prev = window[context + t - 1], window[context + t - 2]
                n += frame_objects(r[None], prev[None], background, colour)[1]
        counts.append(n)
    return int(np.argmax(counts))


def objects_picture(window: np.ndarray, context: int, predictors: Mapping[str, np.ndarray], background: np.ndarray,
                    steps: Sequence[int] = STEPS, scale: int | None = None, copy_last: bool = True) -> np.ndarray:
    """The picture of one rollout (module docstring).

    :param window: uint8 ``[k + T, H, W]`` (colour ``[k + T, H, W, 3]``): the context, then the ``T`` real frames.
    :param context: ``k``.
    :param predictors: row label -> uint8 ``[T, H, W]`` (``[T, H, W, 3]``), the imagined frames of ``window[k:]``.
    :param background: ``[H, W]`` (``[H, W, 3]``): the held-out median frame, floats on [0, 1] or uint8.
    :param steps: horizon steps (1-based) to draw; those beyond ``T`` are dropped.
    :param scale: upscaling factor (default 3 up to 105 pixels high, else 2).
    :param copy_last: add a copy-last row before the predictors.
    :return: uint8 RGB image ``[height, width, 3]``.
    :raises ValueError: no step within the horizon, or a predictor whose shape is not the real frames'.
    """
    from PIL import Image, ImageDraw

    colour = _colour(window, 3)
    real = window[context:]
    last = window[context - 1]
    horizon = len(real)
    shown = [t for t in steps if 1 <= t <= horizon]
    if not shown:
        raise ValueError(f"steps {list(steps)} are all beyond the horizon of {horizon}: give steps in 1..{horizon}.")
    rows: dict[str, np.ndarray] = {}
    if copy_last:
        rows["copy last"] = np.broadcast_to(last, real.shape)
    for label, pred in predictors.items():
        if pred.shape != real.shape:
            raise ValueError(f"predictor {label!r} has frames {pred.shape}, the real frames are {real.shape}.")
        rows[label] = pred
    h, w = real.shape[1:3]
    s = scale or (3 if h <= 105 else 2)
    label_w, header, caption, gap = 110, 14, 13, 4
    legend = ["real: red = moved since the frame before (moving-pixel mask), yellow = rest of the foreground",
              "imagined: ring = real moving object, green recalled / red missed; tint = imagined moving object,",
              "cyan touches a real one (right) / magenta invented.  Under each panel: recalled/real, right/imagined"]
    panel_h = h * s + caption
    width = max(label_w + len(shown) * (w * s + gap), 6 * max(map(len, legend)) + 8)
    height = header + (1 + len(rows)) * (panel_h + gap) + 12 * len(legend) + 4
    canvas = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(canvas)
    for j, t in enumerate(shown):
        draw.text((label_w + j * (w * s + gap) + 2, 1), f"step {t}", fill=(255, 255, 255))

    def paste(img: np.ndarray, row: int, col: int, text: str) -> None:
        x, y = label_w + col * (w * s + gap), header + row * (panel_h + gap)
        canvas.paste(Image.fromarray(img), (x, y))
        draw.text((x + 2, y + h * s + 1), text, fill=(220, 220, 220))

    for j, t in enumerate(shown):
        r = real[t - 1]
        r_prev = real[t - 2] if t > 1 else last
        moving = differs(r, r_prev, colour)
        foreground = differs(r, background, colour)
        real_obj, real_n = moving_objects(foreground[None], moving[None])
        img = _rgb(r)
        _tint(img, foreground & ~moving, FOREGROUND)
        _tint(img, moving, MOVING)
        paste(_up(img, s), 0, j, f"{real_n} moving object{'s' * (real_n != 1)}")
        for i, pred in enumerate(rows.values(), start=1):
            p = pred[t - 1]
            p_prev = pred[t - 2] if t > 1 else last
            pred_obj, pred_n = frame_objects(np.asarray(p)[None], np.asarray(p_prev)[None], background, colour)
            kept = kept_pixels(p, r, background, colour)[None]
            recalled, right = object_flags(real_obj, real_n, pred_obj, pred_n, kept)
            img = _rgb(np.asarray(p))
            for m in range(pred_n):
                _tint(img, pred_obj[0] == m + 1, RIGHT if right[m] else INVENTED, 0.5)
            big = _up(img, s)
            # Missed rings first, recalled on top: where two objects touch, a recall is not hidden by a miss.
            for want in (False, True):
                for k in np.flatnonzero(recalled == want):
                    big[_ring(_up(real_obj[0] == k + 1, s))] = RECALLED if want else MISSED
            paste(big, i, j, f"{int(recalled.sum())}/{real_n} kept, {int(right.sum())}/{pred_n} right")
    fits = label_w // 6 - 1  # PIL's bitmap font is 6 pixels a character: long run names wrap onto more lines
    for i, label in enumerate(["real", *rows]):
        lines = [label[c: c + fits] for c in range(0, len(label), fits)][:4]
        y = header + i * (panel_h + gap) + (h * s) // 2 - 6 * len(lines)
        for n, line in enumerate(lines):
            draw.text((4, y + 12 * n), line, fill=(255, 255, 255))
    y0 = header + (1 + len(rows)) * (panel_h + gap)
    for i, line in enumerate(legend):
        draw.text((4, y0 + 12 * i), line, fill=(230, 230, 230))
    return np.asarray(canvas)
