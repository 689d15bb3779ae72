"""Do imagined frames keep the objects that move? Motion-aware scores of imagined rollouts.

Whole-frame error is dominated by the static background: a model that predicts "nothing moves except the
player" scores well while the ball vanishes. Oh et al. (2015, Sec. 4) judge predictions by whether they keep
the objects that matter for control; these scores measure that without labels, per horizon step, for the
model and for every reference predictor alike.

Definitions. Pixel values are counted in grey levels (0..255: uint8 frames as they are, float frames on the
[0, 1] scale times 255); errors are reported on the [0, 1] scale like :mod:`worldmodels.video.metrics`.

- **differs(a, b)**: ``|a - b| > CHANGE_THRESHOLD`` (8 levels, 8/255 on the [0, 1] scale). For colour
  frames ``[..., H, W, C]`` a pixel differs when any channel does (the maximum over channels). Why 8: on
  84x84 luminance frames of MsPacman (random play, 1500 consecutive held-out pairs) 14% of the pixels that
  change at all change by 1..8 levels, and 95% of those touch a pixel that changes by more: they are the
  blended edges that area resizing leaves around a moving sprite, not objects of their own. Above 8 the
  sprites' cores remain; it also ignores the one-level rounding of a model's uint8 output and the faint haze
  of a blurry prediction.
- **moving pixels** (mask A) at step ``t``: ``differs(real_t, real_{t-1})``, ``real_0`` being the last
  context frame. **Foreground** (mask B): ``differs(real_t, background)``, where the background is the
  per-pixel *median* of the held-out frames (:func:`background_frame`). A median rather than the mean: the
  mean smears every moving object into a trail (where a 200-level sprite passed a tenth of the time the mean
  is 20 levels off the true background), so empty background there would count as foreground. Limit: an
  object that rests in one place in more than half of the held-out frames is background there, and the spot
  it leaves counts as foreground (a "ghost" object) while it is away; more held-out episodes (``--episodes``)
  shrink this.
- **masked MSE**: per frame, the mean over the mask's pixels of the squared error (averaged over colour
  channels); a frame whose mask is empty (nothing moved, nothing off the background) is skipped; per step,
  the mean over the remaining frames, with the count of frames used. ``None`` when no frame is left.
- **objects**: 8-connected components of a frame's foreground with at least ``MIN_OBJECT_PIXELS`` (4) pixels
  that contain at least one moving pixel. Smaller components are ignored: at 84x84 MsPacman 97% of the
  components of the change mask have 4 pixels or more (median 12); the rest are specks of one to three
  pixels. *Real objects* use the real frame's foreground and moving pixels. *Imagined objects* use the
  imagined frame's foreground and its own motion, ``differs(pred_t, pred_{t-1})`` with ``pred_0`` the last
  real context frame: the model's motion is what it changed in the frame it imagined before (what it rolls
  forward from), so an object it drifted off at step 3 and then holds still is not "moving" at step 7, and a
  real motion it did not make is not credited to it.
- **object recall**: a real object is recalled when at least ``MATCH_SHARE`` (half) of its pixels are *kept*
  in the imagined frame: off the background there (``differs(pred_t, background)``) and nearer the real
  pixel than the background is (``max_c |pred - real| < max_c |pred - background|``). So an object kept
  roughly in place, blurred or a little recoloured, counts; an imagined frame that is merely wrong there (a
  black frame over a blue maze is "off the background" everywhere) does not. Per step: recalled objects /
  real objects, pooled over rollouts; ``None`` without real objects.
- **object precision**: an imagined object is right when it shares at least one pixel with a real object
  (its motion is not invented). Per step: right imagined objects / imagined objects, pooled over rollouts;
  ``None`` when the predictor moved nothing (copy-last, mean frame after step 1).

Reading them together: moving-pixel MSE alone favours dropping objects over keeping them in a stale place:
a copy of the last frame is wrong on every moving pixel (where the object was and where it now is), a frame
without the object only where it now is. Foreground MSE and recall do not: a dropped object is wrong on all
of its pixels and never recalled, a stale one is right where it still overlaps. One imagined blob covering
the frame would be "recalled" and "precise": read recall and precision beside the foreground MSE.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["CHANGE_THRESHOLD", "MATCH_SHARE", "MIN_OBJECT_PIXELS", "MOTION_KEYS", "PREDICTOR_MOTION_KEYS",
           "REAL_MOTION_KEYS", "background_frame", "differs", "frame_objects", "kept_pixels", "label_components",
           "labeller", "masked_mse", "motion_metrics", "motion_settings", "moving_objects", "object_flags",
           "object_matches", "squared_error"]

#: Grey levels (of 255) by which two pixels must differ to count as different (8/255 on the [0, 1] scale).
CHANGE_THRESHOLD = 8.0
#: Components of the foreground smaller than this many pixels are not objects.
MIN_OBJECT_PIXELS = 4
#: Share of a real object's pixels that the imagined frame must keep for the object to be recalled.
MATCH_SHARE = 0.5

#: Per-step lists that depend on the predictor (reported for the model and for every reference).
PREDICTOR_MOTION_KEYS = ("moving_mse", "foreground_mse", "object_recall", "object_precision", "imagined_objects")
#: Per-step counts that depend only on the real frames (reported once).
REAL_MOTION_KEYS = ("moving_frames", "foreground_frames", "real_objects")
MOTION_KEYS = PREDICTOR_MOTION_KEYS + REAL_MOTION_KEYS

Backend = Literal["auto", "scipy", "opencv"]


def _levels(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Frames in grey levels as float64: uint8 as they are, floats (the [0, 1] scale) times 255."""
    x = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    # Levels, not [0, 1]: uint8 differences stay exact integers, so "more than 8 levels" has no rounding edge; floats
    # are rounded to 1e-9 levels so that 128/255 * 255 is 128 again, not 127.99999999999999.
    return x.astype(np.float64) if x.dtype == np.uint8 else np.round(x.astype(np.float64) * 255.0, 9)


def differs(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, channels_last: bool = False,
            threshold: float = CHANGE_THRESHOLD) -> np.ndarray:
    """Where two frames differ by more than ``threshold`` grey levels.

    :param a: frames ``[..., H, W]`` (``[..., H, W, C]`` with ``channels_last``), uint8 or floats on [0, 1].
    :param b: frames broadcastable to ``a`` (e.g. a background ``[H, W]``).
    :param channels_last: colour frames: a pixel differs when any channel differs by more than the threshold.
    :return: bool ``[..., H, W]``.
    """
    d = np.abs(_levels(a) - _levels(b))
    return (d.max(axis=-1) if channels_last else d) > threshold


def squared_error(pred: np.ndarray | torch.Tensor, real: np.ndarray | torch.Tensor,
                  channels_last: bool = False) -> np.ndarray:
    """Squared error per pixel on the [0, 1] scale: float64 ``[..., H, W]`` (colour: the mean over channels)."""
    d = (_levels(pred) - _levels(real)) / 255.0
    sq = d * d
    return sq.mean(axis=-1) if channels_last else sq


def masked_mse(error: np.ndarray, mask: np.ndarray) -> tuple[float | None, int]:
    """Mean per frame of ``error`` over the pixels of ``mask``, then the mean over frames; empty masks skipped.

    :param error: float ``[N, H, W]``, squared error per pixel.
    :param mask: bool ``[N, H, W]``.
    :return: ``(mse, frames)``: the mean over the ``frames`` frames whose mask has a pixel (``None`` if none).
    """
    counts = mask.sum(axis=(-2, -1))
    used = counts > 0
    if not used.any():
        return None, 0
    per_frame = np.where(mask, error, 0.0).sum(axis=(-2, -1))[used] / counts[used]
    return float(per_frame.mean()), int(used.sum())


def background_frame(frames: np.ndarray, channels_last: bool = False, max_frames: int = 512) -> np.ndarray:
    """The per-pixel median of frames: the scene with its moving objects removed.

    :param frames: uint8 frames ``[..., H, W]`` (``[..., H, W, C]`` with ``channels_last``); all leading axes
        are pooled (``[N, L, H, W]`` windows give one background).
    :param max_frames: at most this many frames, evenly spaced, are used (the median of 512 is as good as of
        thousands and bounds the memory of a 210x160 RGB evaluation).
    :return: float64 ``[H, W]`` (``[H, W, C]``) on the [0, 1] scale, like a mean frame.
    """
    x = np.asarray(frames)
    flat = x.reshape(-1, *x.shape[x.ndim - (3 if channels_last else 2):])
    if len(flat) > max_frames:
        flat = flat[np.linspace(0, len(flat) - 1, max_frames).round().astype(int)]
    return np.median(flat, axis=0) / 255.0 if flat.dtype == np.uint8 else np.median(flat, axis=0)


def labeller() -> str:
    """The connected-component labeller :func:`label_components` uses by default: scipy if installed, else OpenCV."""
    return "scipy" if importlib.util.find_spec("scipy") is not None else "opencv"


def label_components(mask: np.ndarray, backend: Backend = "auto") -> tuple[np.ndarray, int]:
    """8-connected components of every frame of a batch, each frame on its own.

    :param mask: bool ``[N, H, W]`` (or ``[H, W]``).
    :param backend: ``"scipy"`` (``scipy.ndimage.label``), ``"opencv"`` (``cv2.connectedComponents``; OpenCV is
        a dependency, scipy is not) or ``"auto"`` (scipy if installed). Both give the same labels up to order.
    :return: ``(labels, count)``: int64 labels of the mask's shape, 0 off the mask and ``1..count`` on it,
        unique across the batch (a component never spans two frames).
    """
    m = np.asarray(mask, dtype=bool)
    batch = m if m.ndim == 3 else m[None]
    name = labeller() if backend == "auto" else backend
    if name == "scipy":
        # Imported by name: scipy is optional and ships no type information (mypy would ask for scipy-stubs).
        ndimage: Any = importlib.import_module("scipy.ndimage")
        # A 3x3x3 structure with only its middle plane set: 8-connectivity within a frame, none between frames.
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1] = True
        labels, count = ndimage.label(batch, structure=structure)
        labels = labels.astype(np.int64)
    elif name == "opencv":
        import cv2

        labels, count = np.zeros(batch.shape, dtype=np.int64), 0
        for i, frame in enumerate(batch):
            n, lab = cv2.connectedComponents(frame.astype(np.uint8), connectivity=8)
            labels[i] = np.where(lab > 0, lab.astype(np.int64) + count, 0)
            count += n - 1
    else:
        raise ValueError(f"backend={backend!r}: choose 'auto', 'scipy' or 'opencv'.")
    return (labels if m.ndim == 3 else labels[0]), int(count)


def moving_objects(foreground: np.ndarray, moving: np.ndarray, min_pixels: int = MIN_OBJECT_PIXELS,
                   backend: Backend = "auto") -> tuple[np.ndarray, int]:
    """The objects of a batch of frames: foreground components of ``min_pixels`` or more that touch motion.

    :param foreground: bool ``[N, H, W]``, pixels off the background.
    :param moving: bool ``[N, H, W]``, pixels that changed since the frame before.
    :return: ``(labels, count)``: int64 ``[N, H, W]``, ``1..count`` on the objects, 0 elsewhere.
    """
    labels, n = label_components(foreground, backend)
    if n == 0:
        return labels, 0
    size = np.bincount(labels.ravel(), minlength=n + 1)
    touches = np.bincount(labels[moving], minlength=n + 1) > 0
    keep = (size >= min_pixels) & touches
    keep[0] = False
    renumber = np.zeros(n + 1, dtype=np.int64)
    renumber[keep] = np.arange(1, int(keep.sum()) + 1)
    return renumber[labels], int(keep.sum())


def frame_objects(frames: np.ndarray | torch.Tensor, previous: np.ndarray | torch.Tensor,
                  background: np.ndarray | torch.Tensor, channels_last: bool = False,
                  threshold: float = CHANGE_THRESHOLD, min_pixels: int = MIN_OBJECT_PIXELS,
                  backend: Backend = "auto") -> tuple[np.ndarray, int]:
    """The objects of frames (:func:`moving_objects`) from the frames themselves: foreground = off the
    ``background``, moving = changed since ``previous``.

    :param frames: ``[N, H, W]`` (``[N, H, W, C]`` with ``channels_last``), uint8 or floats on [0, 1].
    :param previous: the frames before, broadcastable to ``frames``.
    :return: ``(labels, count)`` as :func:`moving_objects`.
    """
    return moving_objects(differs(frames, background, channels_last, threshold),
                          differs(frames, previous, channels_last, threshold), min_pixels, backend)


def kept_pixels(pred: np.ndarray | torch.Tensor, real: np.ndarray | torch.Tensor,
                background: np.ndarray | torch.Tensor, channels_last: bool = False,
                threshold: float = CHANGE_THRESHOLD) -> np.ndarray:
    """Where the imagined frame shows the real frame's content rather than the background: off the background
    by more than ``threshold`` levels and nearer the real pixel than the background is (largest channel
    difference for colour).

    :return: bool ``[..., H, W]``.
    """
    p = _levels(pred)
    to_real, to_bg = np.abs(p - _levels(real)), np.abs(p - _levels(background))
    if channels_last:
        to_real, to_bg = to_real.max(axis=-1), to_bg.max(axis=-1)
    return (to_bg > threshold) & (to_real < to_bg)


def object_flags(real_objects: np.ndarray, real_count: int, imagined_objects: np.ndarray, imagined_count: int,
                 kept: np.ndarray, share: float = MATCH_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Which real objects are recalled and which imagined objects are right (definitions in the module docstring).

    :param real_objects: int ``[N, H, W]`` labels ``1..real_count`` (:func:`moving_objects`).
    :param imagined_objects: int ``[N, H, W]`` labels ``1..imagined_count``.
    :param kept: bool ``[N, H, W]``, the pixels the imagined frames keep (:func:`kept_pixels`).
    :return: ``(recalled, right)``: bool ``[real_count]``, real object ``i + 1`` has at least ``share`` of its
        pixels kept; bool ``[imagined_count]``, imagined object ``j + 1`` shares a pixel with a real object.
    """
    recalled = np.zeros(real_count, dtype=bool)
    right = np.zeros(imagined_count, dtype=bool)
    if real_count:
        size = np.bincount(real_objects.ravel(), minlength=real_count + 1)[1:]
        present = np.bincount(real_objects.ravel(), weights=kept.ravel(), minlength=real_count + 1)[1:]
        recalled = present >= share * size
    if imagined_count:
        right = np.bincount(imagined_objects[real_objects > 0], minlength=imagined_count + 1)[1:] > 0
    return recalled, right


def object_matches(real_objects: np.ndarray, real_count: int, imagined_objects: np.ndarray, imagined_count: int,
                   kept: np.ndarray, share: float = MATCH_SHARE) -> tuple[int, int]:
    """The counts of :func:`object_flags`: ``(recalled, right)``, recalled real objects and right imagined ones."""
    recalled, right = object_flags(real_objects, real_count, imagined_objects, imagined_count, kept, share)
    return int(recalled.sum()), int(right.sum())


def motion_metrics(pred: np.ndarray | torch.Tensor, real: np.ndarray, last_context: np.ndarray,
                   background: np.ndarray, threshold: float = CHANGE_THRESHOLD,
                   min_pixels: int = MIN_OBJECT_PIXELS, share: float = MATCH_SHARE,
                   backend: Backend = "auto") -> dict[str, list[Any]]:
    """Motion-aware scores of ``N`` rollouts at each of their ``T`` steps (definitions in the module docstring).

    :param pred: predicted frames ``[N, T, H, W]`` or anything that broadcasts to ``real`` (a mean frame
        ``[H, W]`` on the [0, 1] scale, the last context frame ``[N, 1, H, W]``); uint8 or floats on [0, 1].
    :param real: uint8 real frames ``[N, T, H, W]``, or colour ``[N, T, H, W, C]`` (five axes mean colour).
    :param last_context: uint8 ``[N, H, W]`` (``[N, H, W, C]``): the real frame before step 1, the "previous
        frame" of step 1 for the real frames and for the predictions alike.
    :param background: ``[H, W]`` (``[H, W, C]``), or one per rollout ``[N, H, W]``: uint8, or floats on the
        [0, 1] scale (:func:`background_frame`).
    :return: per-step lists of length ``T``: ``moving_mse`` and ``foreground_mse`` ([0, 1] scale, ``None`` where
        no frame has such pixels), ``moving_frames`` and ``foreground_frames`` (frames used), ``object_recall``
        and ``object_precision`` (``None`` without objects), ``real_objects`` and ``imagined_objects``.
    """
    colour = real.ndim == 5
    pred_b = pred.expand(real.shape) if isinstance(pred, torch.Tensor) else np.broadcast_to(pred, real.shape)
    out: dict[str, list[Any]] = {k: [] for k in MOTION_KEYS}
    real_prev: np.ndarray | torch.Tensor = last_context
    pred_prev: np.ndarray | torch.Tensor = last_context
    for t in range(real.shape[1]):
        r, p = real[:, t], pred_b[:, t]
        moving = differs(r, real_prev, colour, threshold)
        fg_real = differs(r, background, colour, threshold)
        err = squared_error(p, r, colour)
        for name, mask in (("moving", moving), ("foreground", fg_real)):
            value, frames = masked_mse(err, mask)
            out[f"{name}_mse"].append(value)
            out[f"{name}_frames"].append(frames)
        real_obj, real_n = moving_objects(fg_real, moving, min_pixels, backend)
        pred_obj, pred_n = frame_objects(p, pred_prev, background, colour, threshold, min_pixels, backend)
        kept = kept_pixels(p, r, background, colour, threshold)
        recalled, right = object_matches(real_obj, real_n, pred_obj, pred_n, kept, share)
        out["object_recall"].append(recalled / real_n if real_n else None)
        out["object_precision"].append(right / pred_n if pred_n else None)
        out["real_objects"].append(real_n)
        out["imagined_objects"].append(pred_n)
        real_prev, pred_prev = r, p
    return out


def motion_settings(backend: Backend = "auto") -> dict[str, Any]:
    """The constants of the definitions, for reports: thresholds, sizes, the background and the labeller."""
    return {"change_threshold_levels": CHANGE_THRESHOLD, "change_threshold": CHANGE_THRESHOLD / 255.0,
            "min_object_pixels": MIN_OBJECT_PIXELS, "match_share": MATCH_SHARE, "connectivity": 8,
            "background": "per-pixel median of the held-out windows' frames",
            "moving": "|real_t - real_t-1| > threshold (largest colour channel); real_0 = last context frame",
            "foreground": "|real_t - background| > threshold",
            "objects": "8-connected foreground components of >= min_object_pixels that touch a moving pixel; "
                       "imagined ones move relative to the previous imagined frame",
            "recall": "real objects with >= match_share of their pixels kept: imagined pixel off the background "
                      "and nearer the real pixel than the background",
            "precision": "imagined objects sharing a pixel with a real object",
            "labeller": labeller() if backend == "auto" else backend}
