"""``reverie imagine RUN_DIR --data DIR``: how good are a video-prediction model's imagined rollouts?

Reads top to bottom: load the model (``worldmodels.video.load_world_model``), score its rollouts on held-out
episodes against the real frames and three references (:func:`worldmodels.video.evaluate.evaluate_rollouts`),
then write to ``--out`` (default ``RUN_DIR/imagine/``):

- ``rollouts.gif`` (or ``--video NAME.mp4``): a few rollouts stacked, each row real | imagined | absolute error,
  frame 0 being the last real context frame and frame ``t`` step ``t`` of the horizon (colour for a model of
  RGB frames);
- ``errors.png``: against the horizon step, the model beside copy-last, mean-frame and shuffled actions: MSE
  (log scale), SSIM, the MSE on the pixels that moved and on the foreground, and the recall and precision of
  the moving objects (:mod:`worldmodels.video.motion`); with a reward head, its sign and game-over accuracy;
- ``action_conditioning.png``: from one start, one row per constant action sequence, one column per step;
- ``objects.png``: what the motion-aware scores count, drawn on one held-out rollout (the sample with the most
  moving objects) at steps 1, 5, 10 and 20: the real frames' moving pixels and foreground, each real moving object
  ringed green (kept) or red (missed) on the imagined frame, the imagined moving objects tinted cyan (right) or
  magenta (invented) (:mod:`worldmodels.video.motion_picture`);
- ``report.json``: the per-step lists, the references, the action-divergence numbers, where the model beats
  each reference on whole-frame MSE (``beats``) and on moving-pixel and foreground error (``beats_motion``);
- ``tb/``: the same per-step scalars as TensorBoard tags ``imagine/...`` with the horizon step as global step,
  the action-conditioning image and the side-by-side frames.

and print a per-step table (or, with ``--json``, the report).

``reverie imagine RUN`` of a grid world model (a dyna run, or a checkpoint of
:func:`worldmodels.grid.save_grid_world_model`; no ``--data``) is :mod:`launch.imagine_grid`: held-out MinAtar games
played by ``--policy``, per-step cell error, object recall and precision, reward and game-over accuracy beside
copy-last and shuffled actions, a GIF of imagined rollouts beside the real ones, ``report.json`` and TensorBoard.

``reverie imagine --compare RUN_A RUN_B --data DIR`` scores both models on the same windows
(:func:`worldmodels.video.evaluate.evaluate_models`): one report (``compare``: the run names; ``models``: each
run's rows under its name; the copy-last and mean-frame references once, at the top level), one errors plot and
table with a line (column) per run, one video with a real | run | error column group per run, one
``objects.png`` with a row per run, an ``action_conditioning_<RUN>.png`` per run, TensorBoard tags
``imagine/<RUN>/<key>``; written to ``--out`` (default ``RUN_A/imagine/vs-<RUN_B>/``).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Per-step lists written to TensorBoard as ``imagine/<prefix><key>`` for every predictor (model and references).
TB_METRICS = ("mse", "psnr", "ssim", "moving_mse", "foreground_mse", "object_recall", "object_precision")
#: A model's reward-head rows written to TensorBoard (when it has a head).
TB_REWARD = ("reward_sign_accuracy", "reward_nonzero_accuracy", "game_over_accuracy")
BASELINE_LABELS = {"copy_last": "copy last frame", "mean_frame": "mean frame", "shuffled_actions": "shuffled actions"}
#: Every per-step list a predictor may have (whole-frame, motion-aware, reward head).
_ROW_KEYS = ("mse", "psnr", "ssim", "moving_mse", "foreground_mse", "object_recall", "object_precision",
             "imagined_objects", "reward_sign_accuracy", "reward_nonzero_accuracy", "reward_nonzero_count",
             "game_over_accuracy", "game_over_count")


@dataclass
class Series:
    """One predictor's per-step rows in a report, for the plot, the table and TensorBoard.

    :ivar label: legend entry (the run name of a compared model).
    :ivar column: short column title of the printed table.
    :ivar rows: per-step lists keyed without prefix (``mse``, ``moving_mse``, ...; reward rows for a model).
    :ivar tag: TensorBoard tag prefix (``imagine/``, ``imagine/copy_last_``, ``imagine/RUN/``).
    :ivar kind: ``model`` or a reference name of ``BASELINES`` (sets the line style).
    :ivar model: index of the model among the compared ones (sets the colour of it and its shuffled run).
    """

    label: str
    column: str
    rows: dict[str, Any]
    tag: str
    kind: str
    model: int = 0


def _pick(source: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {key: source[prefix + key] for key in _ROW_KEYS if prefix + key in source}


def report_series(report: Mapping[str, Any]) -> list[Series]:
    """The predictors of a report, models first: one run (``model``, the three references) or a comparison
    (each run by name, copy-last and mean-frame once, then each run with shuffled actions)."""
    if "models" not in report:
        return [Series("model", "model", _pick(report, ""), "imagine/", "model"),
                *(Series(BASELINE_LABELS[b] if b != "shuffled_actions" else "model, shuffled actions",
                         {"copy_last": "copy-last", "mean_frame": "mean-frame", "shuffled_actions": "shuffled"}[b],
                         _pick(report, f"{b}_"), f"imagine/{b}_", b) for b in ("copy_last", "mean_frame",
                                                                               "shuffled_actions"))]
    models = report["models"]
    out = [Series(label, label, _pick(section, ""), f"imagine/{_safe(label)}/", "model", i)
           for i, (label, section) in enumerate(models.items())]
    out += [Series(BASELINE_LABELS[b], b.replace("_", "-"), _pick(report, f"{b}_"), f"imagine/{b}_", b)
            for b in ("copy_last", "mean_frame")]
    out += [Series(f"{label}, shuffled actions", f"{label} shuf", _pick(section, "shuffled_actions_"),
                   f"imagine/{_safe(label)}/shuffled_actions_", "shuffled_actions", i)
            for i, (label, section) in enumerate(models.items())]
    return out


def _safe(name: str) -> str:
    """A run name usable in file names and TensorBoard tags."""
    return re.sub(r"[^\w.-]+", "_", name) or "run"


# ------------------------------------------------------------------------------------------------ pictures
def _label(img: np.ndarray, xy: tuple[int, int], text: str) -> None:
    """Write ``text`` into the uint8 grey image ``img`` in place (PIL's built-in bitmap font, white)."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    ImageDraw.Draw(pil).text(xy, text, fill=255)
    img[...] = np.asarray(pil)


def side_by_side(frames: np.ndarray, imagined: np.ndarray | Sequence[np.ndarray], context: int, scale: int = 2,
                 header: int = 14, titles: Sequence[str] | None = None) -> np.ndarray:
    """Video frames comparing real and imagined rollouts.

    :param frames: uint8 ``[S, k + T, H, W]`` (colour: ``[S, k + T, H, W, 3]``), the real windows (context then
        the ``T`` real frames).
    :param imagined: uint8 ``[S, T, H, W]`` (``[S, T, H, W, 3]``), the model's predictions of ``frames[:, k:]``;
        or one such array per compared model.
    :param context: ``k``.
    :param scale: nearest-neighbour upscaling factor.
    :param header: rows of the caption strip (column titles and the step counter).
    :param titles: column title of each imagined array (default ``imagined``; the run names of a comparison).
    :return: uint8 ``[T + 1, header + S (H s + 2), (1 + 2 M) (W s + 2)]`` for ``M`` imagined arrays, with a
        trailing ``3`` for colour: frame 0 is the last context frame (real in every column, zero error), frame
        ``t`` is horizon step ``t``; rows are rollouts, columns real, then per model imagined | absolute error
        (|real - imagined| in grey levels, the largest over colour channels).
    """
    preds = [imagined] if isinstance(imagined, np.ndarray) else list(imagined)
    titles = list(titles) if titles is not None else ["imagined"] * len(preds)
    colour = frames.ndim == 5
    s_count, t_count, h, w = preds[0].shape[:4]
    real = frames[:, context - 1:]
    columns: list[np.ndarray] = [real]
    names = ["real"]
    for title, imag in zip(titles, preds):
        pred = np.concatenate([frames[:, context - 1: context], imag], axis=1)
        err = np.abs(real.astype(np.int16) - pred.astype(np.int16)).astype(np.uint8)
        if colour:  # the error as grey: the largest channel difference, in all three channels
            err = np.repeat(err.max(axis=-1, keepdims=True), 3, axis=-1)
        columns += [pred, err]
        names += [title, "|error|" if len(preds) == 1 else f"|{title} error|"]
    hs, ws = h * scale, w * scale
    tail = (3,) if colour else ()
    out = np.full((t_count + 1, header + s_count * (hs + 2), len(columns) * (ws + 2), *tail), 64, dtype=np.uint8)
    for t in range(t_count + 1):
        for i in range(s_count):
            y = header + i * (hs + 2) + 1
            for j, src in enumerate(columns):
                x = j * (ws + 2) + 1
                out[t, y: y + hs, x: x + ws] = src[i, t].repeat(scale, axis=0).repeat(scale, axis=1)
    caption = np.zeros((t_count + 1, header, out.shape[2]), dtype=np.uint8)
    fits = max(4, (ws - 2) // 6)  # PIL's bitmap font is 6 pixels a character: long run names are cut
    for t in range(t_count + 1):
        for j, title in enumerate(names):
            # The step counter is never cut (it may run into the next column): identical frames would merge in a GIF.
            _label(caption[t], (j * (ws + 2) + 3, 1), title[:fits] if j else f"{title}  t={t}")
    out[:, :header] = caption[..., None] if colour else caption
    return out


def write_video(path: str | Path, frames: np.ndarray, fps: float = 4.0) -> Path:
    """Write uint8 grey frames ``[N, H, W]`` (or colour ``[N, H, W, 3]``) as an animated GIF, or as MP4 when
    ``path`` ends in ``.mp4`` (needs imageio's ffmpeg or pyav plugin), atomically.

    :raises ValueError: MP4 asked for without a plugin that writes it (the message says what to install).
    """
    import imageio.v3 as iio

    from worldmodels.common.atomic import atomic_write

    path = Path(path)
    if path.suffix.lower() == ".mp4":
        # Ask for a writer by name: without one imageio falls through to Pillow, which fails late and noisily.
        plugin = next((name for name, module in (("pyav", "av"), ("FFMPEG", "imageio_ffmpeg"))
                       if importlib.util.find_spec(module) is not None), None)
        if plugin is None:
            raise ValueError(f"cannot write {path}: no MP4 writer is installed; install one with "
                             f"`pip install imageio[ffmpeg]` (or `pip install av`), or use a .gif name.")
        # Codecs want even sizes (yuv420p); pad with the gutter grey rather than resize.
        pad = [(0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2)] + [(0, 0)] * (frames.ndim - 3)
        frames = np.pad(frames, pad, constant_values=64)
        rgb = frames if frames.ndim == 4 else np.repeat(frames[..., None], 3, axis=-1)
        if plugin == "pyav":
            data = iio.imwrite("<bytes>", rgb, extension=".mp4", plugin="pyav", codec="libx264", fps=fps)
        else:
            data = iio.imwrite("<bytes>", rgb, extension=".mp4", plugin="FFMPEG", fps=fps, macro_block_size=1)
    else:
        data = iio.imwrite("<bytes>", frames, extension=".gif", duration=1000.0 / fps, loop=0)
    atomic_write(path, data)
    return path


def _save_figure(fig: Any, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from worldmodels.common.atomic import atomic_write

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write(path, buf.getvalue())
    return path


def _values(rows: Mapping[str, Any], key: str) -> np.ndarray:
    """A per-step list as floats, ``None`` (no such pixels, no objects; inf in JSON) as NaN: a gap in a plot."""
    return np.array([np.nan if v is None else v for v in rows.get(key) or []], dtype=np.float64)


#: The errors plot's panels: report key, y label, title, log scale.
PANELS = (("mse", "MSE per pixel ([0, 1] scale)", "whole frame: error (lower is better)", True),
          ("ssim", "SSIM", "whole frame: structural similarity (higher is better)", False),
          ("moving_mse", "MSE on moving pixels", "pixels that moved since the previous real frame", True),
          ("foreground_mse", "MSE on the foreground", "pixels off the background (held-out median)", True),
          ("object_recall", "share of real moving objects", "moving objects kept (recall)", False),
          ("object_precision", "share of imagined moving objects", "imagined motion that is real (precision)",
           False))
# Every style has a marker: a score defined at one step only (precision of the mean frame) is a lone point.
_STYLES = {"model": "-o", "copy_last": "--.", "mean_frame": ":.", "shuffled_actions": "-.."}
_MODEL_COLOURS = ("C0", "C3", "C4", "C5", "C6", "C8", "C9")


def plot_errors(report: dict[str, Any], path: str | Path) -> Path:
    """PNG of the per-step scores against the horizon step, every model beside the references: MSE (log y
    axis), SSIM, MSE on the moving pixels and on the foreground, object recall and precision (panels
    :data:`PANELS`) and, for a model with a reward head, its reward-sign and game-over accuracy."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    series = report_series(report)
    reward = [s for s in series if s.kind == "model" and "reward_sign_accuracy" in s.rows]
    cols = 4 if reward else 3
    fig = Figure(figsize=(4.6 * cols, 8))
    axes = fig.subplots(2, cols).ravel()
    steps = report["steps"]
    for ax, (key, ylabel, title, log_scale) in zip(axes, PANELS):
        for s in series:
            values = _values(s.rows, key)
            if not len(values):
                continue
            colour = {"copy_last": "C1", "mean_frame": "C2"}.get(s.kind, _MODEL_COLOURS[s.model % 7])
            ax.plot(steps, np.maximum(values, 1e-12) if log_scale else values, _STYLES[s.kind], color=colour,
                    label=s.label, markersize=3, alpha=0.6 if s.kind == "shuffled_actions" else 1.0)
        if log_scale:
            ax.set_yscale("log")
        if key.startswith("object_"):
            ax.set_ylim(-0.03, 1.03)
        ax.set(xlabel="horizon step", ylabel=ylabel, title=title)
    if reward:
        ax = axes[len(PANELS)]
        rollouts = report["rollouts"]
        for s in reward:
            colour = _MODEL_COLOURS[s.model % 7]
            name = "" if s.label == "model" else f"{s.label}: "
            ax.plot(steps, _values(s.rows, "reward_sign_accuracy"), "-o", color=colour, markersize=3,
                    label=f"{name}reward sign")
            ax.plot(steps, _values(s.rows, "game_over_accuracy"), "-s", color=colour, markersize=3, alpha=0.6,
                    label=f"{name}game over")
        zero = 1 - np.array(reward[0].rows["reward_nonzero_count"], dtype=np.float64) / rollouts
        ax.plot(steps, zero, "k:", label="always 0 (reward sign)")
        ax.set_ylim(-0.03, 1.03)
        ax.set(xlabel="horizon step", ylabel="accuracy", title="reward head vs held-out data")
    for ax in axes[len(PANELS) + (1 if reward else 0):]:
        ax.set_visible(False)
    for ax in axes:
        if ax.get_visible():
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    who = " vs ".join(report["compare"]) + ": " if "compare" in report else ""
    fig.suptitle(f"{who}{report['game'] or 'imagined rollouts'}: {report['rollouts']} held-out rollouts from "
                 f"{report['episodes']} episodes, context {report['context']}")
    fig.tight_layout()
    return _save_figure(fig, Path(path))


def plot_action_grid(grid: np.ndarray, divergence: dict[str, Any], frame_shape: tuple[int, int],
                     path: str | Path, pad: int = 2, name: str = "") -> Path:
    """PNG of the action-conditioning grid (rows: action sequences, columns: steps 1..T) with axis labels
    (``grid`` grey ``[h, w]`` or colour ``[h, w, 3]``; ``name`` heads the title, e.g. the run's)."""
    from matplotlib.figure import Figure

    seqs = divergence["sequences"]
    rows, cols = len(seqs), len(seqs[0])
    h, w = frame_shape
    fig = Figure(figsize=(min(2 + cols * 0.9, 24), min(1 + rows * 0.9, 24)))
    ax = fig.subplots()
    if grid.ndim == 3:
        ax.imshow(grid, interpolation="nearest")
    else:
        ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([pad + j * (w + pad) + w / 2 for j in range(cols)], [str(t + 1) for t in range(cols)],
                  fontsize=7)
    names = [f"a={s[0]}" if divergence["mode"] == "constant" else f"seq {i}" for i, s in enumerate(seqs)]
    ax.set_yticks([pad + i * (h + pad) + h / 2 for i in range(rows)], names, fontsize=7)
    ax.set(xlabel="horizon step", title=(f"{name}: " if name else "") + f"same start, different actions: mean "
                                        f"pairwise MSE {divergence['mean']:.2e}" + ("  (IGNORES ACTIONS)"
                                                                       if divergence["ignores_actions"] else ""))
    fig.tight_layout()
    return _save_figure(fig, Path(path))


# ------------------------------------------------------------------------------------------------ outputs
def log_tensorboard(report: dict[str, Any], tb_dir: str | Path,
                    action_grid: np.ndarray | Mapping[str, np.ndarray] | None = None,
                    video: np.ndarray | None = None, objects: np.ndarray | None = None) -> None:
    """Per-step scalars at global step = horizon step, and the pictures.

    Tags: one run: ``imagine/<key>`` for the model, ``imagine/<reference>_<key>`` for the references (keys
    :data:`TB_METRICS`, and :data:`TB_REWARD` for a model with a reward head), ``imagine/action_divergence``;
    a comparison: ``imagine/<RUN>/<key>``, ``imagine/<RUN>/shuffled_actions_<key>``,
    ``imagine/<RUN>/action_divergence`` per run and the shared references as for one run.
    ``action_grid``: one image, or one per run of a comparison. ``objects``: the ``objects.png`` image, as
    ``imagine/objects``.

    Events of an earlier ``reverie imagine`` into the same folder are replaced, like its report and pictures:
    two event files would show every step twice in TensorBoard.
    """
    from torch.utils.tensorboard import SummaryWriter

    for old in Path(tb_dir).glob("events.out.tfevents.*"):
        old.unlink()
    writer = SummaryWriter(str(tb_dir))
    compare = "models" in report
    try:
        for s in report_series(report):
            for key in TB_METRICS + (TB_REWARD if s.kind == "model" else ()):
                for step, value in zip(report["steps"], s.rows.get(key) or []):
                    # None: no moving pixels / objects at that step; inf: the PSNR of a perfect step.
                    if value is not None and np.isfinite(value):
                        writer.add_scalar(f"{s.tag}{key}", value, step)
        sections = report["models"] if compare else {"": report}
        for label, section in sections.items():
            prefix = f"imagine/{_safe(label)}/" if compare else "imagine/"
            if "action_divergence" in section:
                for step, value in zip(report["steps"], section["action_divergence"]["per_step"]):
                    writer.add_scalar(f"{prefix}action_divergence", value, step)
        grids = (action_grid if isinstance(action_grid, Mapping)
                 else ({"": action_grid} if action_grid is not None else {}))
        for label, grid in grids.items():
            tag = f"imagine/{_safe(label)}/action_conditioning" if label else "imagine/action_conditioning"
            writer.add_image(tag, grid, 0, dataformats="HWC" if grid.ndim == 3 else "HW")
        if objects is not None:
            writer.add_image("imagine/objects", objects, 0, dataformats="HWC")
        if video is not None:
            for t, frame in enumerate(video):
                writer.add_image("imagine/side_by_side", frame, t, dataformats="HWC" if frame.ndim == 3 else "HW")
    finally:
        writer.close()


def _cell(value: Any, fmt: str, width: int) -> str:
    return ("-" if value is None else fmt.format(value)).rjust(width)


def _block(title: str, steps: Sequence[int], columns: Sequence[tuple[str, Sequence[Any]]], fmt: str,
           counts: tuple[str, Sequence[Any]] | None = None, formats: Mapping[str, str] | None = None) -> list[str]:
    """A titled per-step block: one column per predictor (``-`` where a value is ``None``), optionally a
    leading count column; ``formats`` overrides ``fmt`` for the columns it names."""
    widths = [max(10, len(name)) for name, _ in columns]
    fmts = [(formats or {}).get(name, fmt) for name, _ in columns]
    head = f"{'step':>4} " + (f"{counts[0]:>8} " if counts else "")
    lines = [title, head + " ".join(f"{name:>{w}}" for (name, _), w in zip(columns, widths))]
    for i, step in enumerate(steps):
        row = f"{step:>4} " + (f"{counts[1][i]:>8} " if counts else "")
        lines.append(row + " ".join(_cell(values[i] if i < len(values) else None, f, w)
                                    for (_, values), f, w in zip(columns, fmts, widths)))
    return lines


def _motion_blocks(report: dict[str, Any]) -> list[str]:
    """The motion-aware scores of every predictor, one block per score."""
    series = report_series(report)
    steps = report["steps"]
    m = report.get("motion") or {}
    thr = f"{m.get('change_threshold_levels', 8):g}/255"

    def cols(key: str) -> list[tuple[str, Sequence[Any]]]:
        return [(s.column, s.rows.get(key) or []) for s in series]

    return [
        "",
        *_block(f"MSE on the moving pixels (|real_t - real_t-1| > {thr}), mean over the frames that have some "
                f"('frames' of {report['rollouts']}):", steps, cols("moving_mse"), "{:10.5f}",
                ("frames", report.get("moving_frames") or [])),
        "",
        *_block(f"MSE on the foreground (|real_t - background| > {thr}; background: median of the held-out "
                f"frames):", steps, cols("foreground_mse"), "{:10.5f}",
                ("frames", report.get("foreground_frames") or [])),
        "",
        *_block(f"moving objects kept (recall): real moving blobs of >= {m.get('min_object_pixels', 4)} px with at "
                f"least {m.get('match_share', 0.5):.0%} of their pixels kept in the imagined frame (off the "
                f"background, nearer the real pixel than the background):",
                steps, cols("object_recall"), "{:10.3f}", ("objects", report.get("real_objects") or [])),
        "",
        *_block("imagined motion that is real (precision): imagined moving blobs that overlap a real one "
                "('-': it moved nothing):", steps, cols("object_precision"), "{:10.3f}"),
    ]


def _reward_block(name: str, section: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """The reward head's per-step accuracy, beside what always predicting 0 and "not over" would score."""
    who = f"{name}: " if name else ""
    if not section.get("reward_head"):
        return ["", f"{who}reward head: none (the model predicts frames only; no reward or game-over rows)"]
    n = report["rollouts"]
    nonzero, overs = section["reward_nonzero_count"], section["game_over_count"]
    columns = [("sign acc", section["reward_sign_accuracy"]), ("always 0", [1 - c / n for c in nonzero]),
               ("nonzero acc", section["reward_nonzero_accuracy"]), ("nonzero", nonzero),
               ("over acc", section["game_over_accuracy"]), ("never over", [1 - c / n for c in overs]),
               ("overs", overs)]
    return ["", *_block(f"{who}reward head (sign: expected reward rounded to -1/0/+1; game over: probability "
                        f"> 0.5), accuracy over {n} rollouts:", report["steps"], columns, "{:.3f}",
                        formats={"nonzero": "{:d}", "overs": "{:d}"})]


#: How the printed verdicts name the errors of ``beats_motion``.
_BEATS_WHAT = {"moving_mse": "on moving pixels", "foreground_mse": "on the foreground"}


def _beats_lines(section: Mapping[str, Any], horizon: int, who: str = "") -> list[str]:
    """One verdict per reference: on whole-frame MSE (``beats``), then on each motion error (``beats_motion``)."""
    lines = []
    groups = [("", section["beats"])]
    groups += [(f" {_BEATS_WHAT.get(key, key)}", beats) for key, beats in (section.get("beats_motion") or {}).items()]
    for what, beats in groups:
        for name, b in beats.items():
            verdict = "every step" if b["all"] else (f"steps 1-{b['up_to']}" if b["up_to"] else "not at step 1")
            lines.append(f"{who}beats {name.replace('_', ' ')}{what}: {verdict} ({len(b['steps'])}/{horizon} steps)")
    return lines


def _divergence_line(div: dict[str, Any] | None, horizon: int, who: str = "") -> list[str]:
    if not div:
        return []
    flag = "  -> the model IGNORES its actions" if div["ignores_actions"] else ""
    return [f"{who}action divergence ({div['mode']} sequences, {div['starts']} starts): mean pairwise MSE "
            f"{div['mean']:.3e}, step 1 {div['per_step'][0]:.3e}, step {horizon} {div['per_step'][-1]:.3e}{flag}"]


def format_table(report: dict[str, Any]) -> str:
    """A plain-text per-step table; ``<`` marks a reference the model beats at that step. Then the motion-aware
    scores of every predictor and the reward head's accuracy. A comparison gets a column per run."""
    if "models" in report:
        return _format_comparison(report)
    lines = [f"{report['game'] or 'model'}: {report['rollouts']} rollouts from {report['episodes']} held-out "
             f"episodes (of {report['eligible_episodes']}), context {report['context']}, horizon "
             f"{report['horizon']}; MSE per pixel on the [0, 1] scale, '<' = model better",
             f"{'step':>4} {'mse':>10} {'copy-last':>11} {'mean-frame':>11} {'shuffled':>11} "
             f"{'psnr dB':>8} {'ssim':>7}"]
    for i, step in enumerate(report["steps"]):
        m = report["mse"][i]
        refs = []
        for name in ("copy_last", "mean_frame", "shuffled_actions"):
            r = report[f"{name}_mse"][i]
            refs.append(f"{r:10.5f}{'<' if m < r else ' '}")
        p = report["psnr"][i]
        lines.append(f"{step:>4} {m:10.5f} {' '.join(refs)} {p if p is not None else float('inf'):8.2f} "
                     f"{report['ssim'][i]:7.4f}")
    lines += _beats_lines(report, report["horizon"])
    lines += _divergence_line(report.get("action_divergence"), report["horizon"])
    if "moving_mse" in report:
        lines += _motion_blocks(report)
    if "reward_head" in report:
        lines += _reward_block("", report, report)
    return "\n".join(lines)


def _format_comparison(report: dict[str, Any]) -> str:
    series = report_series(report)
    steps = report["steps"]
    labels = report["compare"]
    lines = [f"{' vs '.join(labels)} ({report['game'] or 'models'}): {report['rollouts']} rollouts from "
             f"{report['episodes']} held-out episodes (of {report['eligible_episodes']}), the same windows for "
             f"every run, horizon {report['horizon']}; contexts "
             + ", ".join(f"{label} {report['models'][label]['context']}" for label in labels)
             + f"; mean frame of {report.get('mean_frame_of', labels[0])}",
             ""]
    lines += _block("MSE per pixel ([0, 1] scale):", steps, [(s.column, s.rows["mse"]) for s in series],
                    "{:10.5f}")
    lines += ["", *_block("SSIM:", steps, [(s.column, s.rows["ssim"]) for s in series], "{:10.4f}")]
    lines += _motion_blocks(report)
    for label in labels:
        lines += _reward_block(label, report["models"][label], report)
    lines.append("")
    for label in labels:
        section = report["models"][label]
        lines += _beats_lines(section, report["horizon"], f"{label} ")
        lines += _divergence_line(section.get("action_divergence"), report["horizon"], f"{label} ")
    return "\n".join(lines)


def default_out(run: str | Path) -> Path:
    """``RUN_DIR/imagine``; for a checkpoint file, the ``imagine`` folder of its run."""
    return _run_dir(run) / "imagine"


def _run_dir(run: str | Path) -> Path:
    """The run directory of a run directory or of a checkpoint file in it."""
    path = Path(run)
    if path.is_file():
        path = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path


def run_labels(runs: Sequence[str | Path]) -> list[str]:
    """Names of compared runs: each run directory's name, or its last two path parts where names repeat.

    :raises ValueError: two runs that these do not tell apart (the same run twice).
    """
    dirs = [_run_dir(r).resolve() for r in runs]
    names = [d.name for d in dirs]
    if len(set(names)) < len(names):
        names = [f"{d.parent.name}/{d.name}" for d in dirs]
    if len(set(names)) < len(names):
        raise ValueError(f"--compare needs different runs, got {', '.join(str(r) for r in runs)}.")
    return names


def objects_image(pictures: Mapping[str, Any], context: int) -> np.ndarray:
    """``objects.png`` (:func:`worldmodels.video.motion_picture.objects_picture`) of the sample rollout with the
    most real moving objects, one row per model (``model`` for a single run): uint8 ``[height, width, 3]``."""
    from worldmodels.video.motion_picture import objects_picture, pick_rollout

    frames, background = pictures["frames"], pictures["background"]
    imagined = pictures["imagined"]
    models = dict(imagined) if isinstance(imagined, Mapping) else {"model": imagined}
    i = pick_rollout(frames, context, background)
    return objects_picture(frames[i], context, {label: pred[i] for label, pred in models.items()}, background)


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write a uint8 image (``[H, W]`` or ``[H, W, 3]``) as PNG, atomically."""
    from PIL import Image

    from worldmodels.common.atomic import atomic_write

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="png")
    atomic_write(path, buf.getvalue())
    return path


def _load_model(run: str | Path) -> Any:
    """``worldmodels.video.load_world_model(run)``, imported here so the CLI loads without the video package."""
    from worldmodels.video import load_world_model

    return load_world_model(run)


def _write_outputs(report: dict[str, Any], pictures: dict[str, Any], out_dir: Path, video: str,
                   frame_shape: tuple[int, int]) -> dict[str, str]:
    """Video, errors plot, action-conditioning picture(s) and TensorBoard events of a report (one run or a
    comparison) into ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    imagined = pictures["imagined"]
    if isinstance(imagined, Mapping):
        movie = side_by_side(pictures["frames"], list(imagined.values()), report["context"], titles=list(imagined))
    else:
        movie = side_by_side(pictures["frames"], imagined, report["context"])
    outputs["video"] = str(write_video(out_dir / video, movie))
    outputs["plot"] = str(plot_errors(report, out_dir / "errors.png"))
    objects = objects_image(pictures, report["context"])
    outputs["objects"] = str(write_png(out_dir / "objects.png", objects))
    grid = pictures.get("action_grid")
    if isinstance(grid, Mapping):
        for label, image in grid.items():
            outputs[f"action_conditioning_{label}"] = str(plot_action_grid(
                image, report["models"][label]["action_divergence"], frame_shape,
                out_dir / f"action_conditioning_{_safe(label)}.png", name=label))
    elif grid is not None:
        outputs["action_conditioning"] = str(plot_action_grid(grid, report["action_divergence"], frame_shape,
                                                              out_dir / "action_conditioning.png"))
    outputs["tensorboard"] = str(out_dir / "tb")
    log_tensorboard(report, out_dir / "tb", grid, movie, objects)
    return outputs


def _check_run(run: str | Path) -> None:
    if not Path(run).exists():
        raise FileNotFoundError(f"run {run} does not exist: give the run directory (or a checkpoint) of "
                                f"`reverie fit-world-model`.")


def run_imagine(run: str | Path, data: str | Path, horizon: int = 20, episodes: int | None = 8,
                starts_per_episode: int = 4, seed: int = 0, out: str | Path | None = None,
                video: str = "rollouts.gif", samples: int = 4, batch_size: int = 32, progress: bool = True,
                skip_corrupt: bool = False, model: Any = None) -> dict[str, Any]:
    """Evaluate a run's imagined rollouts and write the video, plots, report and TensorBoard events.

    :param run: fit-world-model run directory or checkpoint file.
    :param data: dataset folder of the model's game, frame size and colours, with a held-out split.
    :param out: output folder (default :func:`default_out`).
    :param video: file name (in ``out``) or path of the side-by-side video; ``.gif`` or ``.mp4``.
    :param samples: rollouts stacked in the video.
    :param model: an already loaded model (tests); ``None`` loads ``run``.
    :return: the JSON report (``report.json``) with ``outputs``: the paths written.
    :raises FileNotFoundError: no such run. :raises DatasetError: unusable data (see ``evaluate_rollouts``).
    """
    import torch

    from worldmodels.common.atomic import atomic_write
    from worldmodels.video.evaluate import evaluate_rollouts, to_json

    if samples < 1:
        raise ValueError(f"samples={samples}: the video needs at least one rollout.")
    _check_run(run)
    if model is None:
        model = _load_model(run)
    torch.manual_seed(seed)  # a stochastic model's rollouts are reproducible too
    report = evaluate_rollouts(model, data, horizon=horizon, episodes=episodes, starts_per_episode=starts_per_episode,
                               seed=seed, batch_size=batch_size, samples=samples, progress=progress,
                               on_corrupt="skip" if skip_corrupt else "error")
    pictures = report.pop("samples")
    out_dir = Path(out) if out else default_out(run)
    outputs = _write_outputs(report, pictures, out_dir, video, tuple(model.frame_shape))
    report["run"] = str(run)
    report["outputs"] = {**outputs, "report": str(out_dir / "report.json")}
    result = to_json(report)
    atomic_write(out_dir / "report.json", (json.dumps(result, indent=1) + "\n").encode())
    return result


def run_compare(runs: Sequence[str | Path], data: str | Path, horizon: int = 20, episodes: int | None = 8,
                starts_per_episode: int = 4, seed: int = 0, out: str | Path | None = None,
                video: str = "rollouts.gif", samples: int = 4, batch_size: int = 32, progress: bool = True,
                skip_corrupt: bool = False, models: Sequence[Any] | None = None) -> dict[str, Any]:
    """Evaluate two or more runs on the same held-out windows; one report, plot, video and TensorBoard folder.

    :param runs: fit-world-model run directories or checkpoint files; each is labelled by its run's name
        (:func:`run_labels`).
    :param out: output folder (default ``RUN_A/imagine/vs-<RUN_B>[-<RUN_C>...]``).
    :param models: already loaded models, one per run (tests); ``None`` loads them.
    :return: the JSON report (:func:`worldmodels.video.evaluate.evaluate_models`) with ``runs`` (name -> path)
        and ``outputs``.
    :raises ValueError: fewer than two runs, or the same run twice. :raises FileNotFoundError: no such run.
    """
    import torch

    from worldmodels.common.atomic import atomic_write
    from worldmodels.video.evaluate import evaluate_models, to_json

    if len(runs) < 2:
        raise ValueError(f"--compare needs at least two runs, got {len(runs)}.")
    if samples < 1:
        raise ValueError(f"samples={samples}: the video needs at least one rollout.")
    for run in runs:
        _check_run(run)
    labels = run_labels(runs)
    loaded = list(models) if models is not None else [_load_model(run) for run in runs]
    torch.manual_seed(seed)
    report = evaluate_models(dict(zip(labels, loaded)), data, horizon=horizon, episodes=episodes,
                             starts_per_episode=starts_per_episode, seed=seed, batch_size=batch_size,
                             samples=samples, progress=progress, on_corrupt="skip" if skip_corrupt else "error")
    pictures = report.pop("samples")
    out_dir = Path(out) if out else default_out(runs[0]) / ("vs-" + "-".join(_safe(x) for x in labels[1:]))
    outputs = _write_outputs(report, pictures, out_dir, video, tuple(loaded[0].frame_shape))
    report["runs"] = {label: str(run) for label, run in zip(labels, runs)}
    report["outputs"] = {**outputs, "report": str(out_dir / "report.json")}
    result = to_json(report)
    atomic_write(out_dir / "report.json", (json.dumps(result, indent=1) + "\n").encode())
    return result


# ------------------------------------------------------------------------------------------------ command
def cmd_imagine(args: argparse.Namespace) -> int:
    from launch import imagine_grid

    if args.run and not args.compare and imagine_grid.is_grid_run(args.run, args.data):
        return cmd_imagine_grid(args)
    if args.data is None:
        raise ValueError("--data DIR is needed to score a video model (a `reverie fit-world-model` run): give a "
                         "dataset of the same game with a held-out split.")
    if args.policy or args.game or args.epsilon is not None:
        raise ValueError("--policy, --game and --epsilon apply to a grid world model (a dyna run), which plays its "
                         "own held-out games; a video model is scored on --data.")
    common = dict(horizon=args.horizon, episodes=args.episodes or None, starts_per_episode=args.starts_per_episode,
                  seed=args.seed, out=args.out, video=args.video, samples=args.samples, batch_size=args.batch_size,
                  progress=not (args.no_progress or args.json), skip_corrupt=args.skip_corrupt)
    if args.compare and args.run:
        raise ValueError(f"give RUN_DIR or --compare RUN_A RUN_B, not both (got {args.run} and --compare "
                         f"{' '.join(args.compare)}): to compare {args.run} too, list it after --compare.")
    from worldmodels.common.runrecord import check_run_command

    for run in args.compare or ([args.run] if args.run else []):
        check_run_command(run, "fit-world-model", usage="reverie imagine")
    if args.compare:
        result = run_compare(args.compare, args.data, **common)
    elif args.run:
        result = run_imagine(args.run, args.data, **common)
    else:
        raise ValueError("give the RUN_DIR to score, or --compare RUN_A RUN_B.")
    return _print_result(result, args.json, format_table)


def _print_result(result: dict[str, Any], as_json: bool, table: Callable[[dict[str, Any]], str]) -> int:
    """Print a report as one JSON line, or as its table and the files written; the command's exit status."""
    if as_json:
        print(json.dumps(result))
    else:
        print(table(result))
        print("wrote " + ", ".join(f"{k}: {v}" for k, v in result["outputs"].items()))
    return 0


def cmd_imagine_grid(args: argparse.Namespace) -> int:
    """``reverie imagine RUN`` for a grid world model (:mod:`launch.imagine_grid`)."""
    from launch.imagine_grid import DEFAULT_EPSILON, format_grid_table, run_imagine_grid

    if args.data is not None:
        raise ValueError(f"--data is for video models: {args.run} holds a grid world model, scored on held-out "
                         f"games `reverie imagine` plays itself (see --policy); leave --data out.")
    result = run_imagine_grid(args.run, horizon=args.horizon, episodes=args.episodes,
                              starts_per_episode=args.starts_per_episode, seed=args.seed, out=args.out,
                              video=args.video, samples=args.samples, batch_size=args.batch_size, policy=args.policy,
                              epsilon=DEFAULT_EPSILON if args.epsilon is None else args.epsilon, game=args.game,
                              max_episode_steps=args.max_episode_steps)
    return _print_result(result, args.json, format_grid_table)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``imagine`` to the ``reverie`` subparsers."""
    p = sub.add_parser("imagine", help="score a world model's imagined rollouts on held-out episodes (a video model "
                                       "of fit-world-model, or the grid world model of a dyna run)",
                       description="From real context frames of held-out episodes, replay the real actions in the "
                                   "model of RUN_DIR and compare its imagined frames with the real ones at every "
                                   "step (MSE, PSNR, SSIM; the error on the pixels that moved and on the "
                                   "foreground; whether the moving objects are kept: recall and precision; the "
                                   "reward head's accuracy) beside copy-last, mean-frame and shuffled-action "
                                   "references; check that different actions give different frames; write a "
                                   "side-by-side video, an error plot, report.json and TensorBoard events. "
                                   "--compare RUN_A RUN_B scores several runs on the same windows into one "
                                   "report and plot. For a grid world model (MinAtar; a dyna run's, or a saved "
                                   "one) no --data: it plays held-out games with --policy, and scores per step the "
                                   "cell error, object recall and precision (pooled and per channel), reward and "
                                   "game-over accuracy beside copy-last and shuffled actions (launch/imagine_grid.py).")
    p.add_argument("run", metavar="RUN_DIR", nargs="?",
                   help="fit-world-model run directory or checkpoint file (or use --compare); or a dyna run (or "
                        "a checkpoint holding a grid world model)")
    p.add_argument("--compare", nargs="+", metavar="RUN",
                   help="score two or more runs on the same held-out windows instead of RUN_DIR: one report, plot "
                        "and table, each run's rows under its run name, copy-last and mean-frame once (default "
                        "--out RUN_A/imagine/vs-RUN_B/)")
    p.add_argument("--data", help="video models: dataset folder of the same game, frame size and colours (its "
                                  "held-out split is used); a grid world model plays its own held-out games")
    p.add_argument("--policy", choices=["agent", "random"],
                   help="grid world models: who plays the held-out games: the run's own Q-network (agent, the "
                        "default where the run has one) or uniform random actions")
    p.add_argument("--epsilon", type=float, default=None,
                   help="grid world models: the agent policy's epsilon (default 0.05)")
    p.add_argument("--game", help="grid world models: the held-out MinAtar game (default the model's own)")
    p.add_argument("--max-episode-steps", type=int, default=2000,
                   help="grid world models: a held-out game is cut after this many steps (default 2000)")
    p.add_argument("--horizon", type=int, default=20, help="imagined steps per rollout (default 20)")
    p.add_argument("--episodes", type=int, default=8, help="held-out episodes used (default 8; 0: all); grid world "
                                                           "models: held-out games played")
    p.add_argument("--starts-per-episode", type=int, default=4, help="rollouts started in each episode (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seeds the choice of starts and the action shuffle")
    p.add_argument("--out", help="output folder (default RUN_DIR/imagine/)")
    p.add_argument("--video", default="rollouts.gif", help="video file name in --out: .gif, or .mp4 with an ffmpeg "
                                                         "plugin (default rollouts.gif)")
    p.add_argument("--samples", type=int, default=4, help="rollouts stacked in the video (default 4)")
    p.add_argument("--batch-size", type=int, default=32, help="rollouts imagined at once")
    p.add_argument("--skip-corrupt", action="store_true", help="skip corrupt shards (named in a warning)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object instead of a table")
    p.set_defaults(func=cmd_imagine)
