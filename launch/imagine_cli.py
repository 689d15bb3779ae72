"""``reverie imagine RUN_DIR --data DIR``: how good are a video-prediction model's imagined rollouts?

Reads top to bottom: load the model (``worldmodels.video.load_world_model``), score its rollouts on held-out
episodes against the real frames and three references (:func:`worldmodels.video.evaluate.evaluate_rollouts`),
then write to ``--out`` (default ``RUN_DIR/imagine/``):

- ``rollouts.gif`` (or ``--video NAME.mp4``): a few rollouts stacked, each row real | imagined | absolute error,
  frame 0 being the last real context frame and frame ``t`` step ``t`` of the horizon;
- ``errors.png``: MSE (log scale) and SSIM against the horizon step, the model beside copy-last, mean-frame and
  shuffled actions;
- ``action_conditioning.png``: from one start, one row per constant action sequence, one column per step;
- ``report.json``: the per-step lists, the references, the action-divergence numbers, where the model beats
  each reference (``beats``);
- ``tb/``: the same per-step scalars as TensorBoard tags ``imagine/...`` with the horizon step as global step,
  the action-conditioning image and the side-by-side frames.

and print a per-step table (or, with ``--json``, the report).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Per-step report lists written to TensorBoard as ``imagine/<key>``.
TB_KEYS = ("mse", "psnr", "ssim", "copy_last_mse", "copy_last_psnr", "copy_last_ssim", "mean_frame_mse",
           "mean_frame_psnr", "mean_frame_ssim", "shuffled_actions_mse", "shuffled_actions_psnr",
           "shuffled_actions_ssim")
LABELS = {"mse": "model", "copy_last_mse": "copy last frame", "mean_frame_mse": "mean frame",
          "shuffled_actions_mse": "model, shuffled actions"}


# ------------------------------------------------------------------------------------------------ pictures
def _label(img: np.ndarray, xy: tuple[int, int], text: str) -> None:
    """Write ``text`` into the uint8 grey image ``img`` in place (PIL's built-in bitmap font, white)."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    ImageDraw.Draw(pil).text(xy, text, fill=255)
    img[...] = np.asarray(pil)


def side_by_side(frames: np.ndarray, imagined: np.ndarray, context: int, scale: int = 2,
                 header: int = 14) -> np.ndarray:
    """Video frames comparing real and imagined rollouts.

    :param frames: uint8 ``[S, k + T, H, W]``, the real windows (context then the ``T`` real frames).
    :param imagined: uint8 ``[S, T, H, W]``, the model's predictions of ``frames[:, k:]``.
    :param context: ``k``.
    :param scale: nearest-neighbour upscaling factor.
    :param header: rows of the caption strip (column titles and the step counter).
    :return: uint8 ``[T + 1, header + S (H s + 2), 3 (W s + 2)]``: frame 0 is the last context frame (real in
        both columns, zero error), frame ``t`` is horizon step ``t``; rows are rollouts, columns real |
        imagined | absolute error (|real - imagined| in grey levels).
    """
    s_count, t_count, h, w = imagined.shape
    real = frames[:, context - 1:]
    pred = np.concatenate([frames[:, context - 1: context], imagined], axis=1)
    err = np.abs(real.astype(np.int16) - pred.astype(np.int16)).astype(np.uint8)
    hs, ws = h * scale, w * scale
    out = np.full((t_count + 1, header + s_count * (hs + 2), 3 * (ws + 2)), 64, dtype=np.uint8)
    up = np.ones((scale, scale), dtype=np.uint8)
    for t in range(t_count + 1):
        for i in range(s_count):
            y = header + i * (hs + 2) + 1
            for j, src in enumerate((real, pred, err)):
                x = j * (ws + 2) + 1
                out[t, y: y + hs, x: x + ws] = np.kron(src[i, t], up)
    caption = np.zeros((t_count + 1, header, out.shape[2]), dtype=np.uint8)
    for t in range(t_count + 1):
        for j, title in enumerate(("real", "imagined", "|error|")):
            _label(caption[t], (j * (ws + 2) + 3, 1), title if j else f"{title}  t={t}")
    out[:, :header] = caption
    return out


def write_video(path: str | Path, frames: np.ndarray, fps: float = 4.0) -> Path:
    """Write uint8 grey frames ``[N, H, W]`` as an animated GIF, or as MP4 when ``path`` ends in ``.mp4``
    (needs imageio's ffmpeg or pyav plugin), atomically.

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
        frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2)), constant_values=64)
        rgb = np.repeat(frames[..., None], 3, axis=-1)
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


def plot_errors(report: dict[str, Any], path: str | Path) -> Path:
    """PNG of MSE (log y axis) and SSIM against the horizon step, the model beside the three references."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    ax_mse, ax_ssim = fig.subplots(1, 2)
    steps = report["steps"]
    styles = {"mse": "-o", "copy_last_mse": "--", "mean_frame_mse": ":", "shuffled_actions_mse": "-."}
    for key, style in styles.items():
        ax_mse.plot(steps, np.maximum(report[key], 1e-12), style, label=LABELS[key], markersize=3)
        ssim_key = key.replace("mse", "ssim")
        ax_ssim.plot(steps, report[ssim_key], style, label=LABELS[key], markersize=3)
    ax_mse.set_yscale("log")
    ax_mse.set(xlabel="horizon step", ylabel="MSE per pixel ([0, 1] scale)", title="error (lower is better)")
    ax_ssim.set(xlabel="horizon step", ylabel="SSIM", title="structural similarity (higher is better)")
    for ax in (ax_mse, ax_ssim):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['game'] or 'imagined rollouts'}: {report['rollouts']} held-out rollouts from "
                 f"{report['episodes']} episodes, context {report['context']}")
    fig.tight_layout()
    return _save_figure(fig, Path(path))


def plot_action_grid(grid: np.ndarray, divergence: dict[str, Any], frame_shape: tuple[int, int],
                     path: str | Path, pad: int = 2) -> Path:
    """PNG of the action-conditioning grid (rows: action sequences, columns: steps 1..T) with axis labels."""
    from matplotlib.figure import Figure

    seqs = divergence["sequences"]
    rows, cols = len(seqs), len(seqs[0])
    h, w = frame_shape
    fig = Figure(figsize=(min(2 + cols * 0.9, 24), min(1 + rows * 0.9, 24)))
    ax = fig.subplots()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([pad + j * (w + pad) + w / 2 for j in range(cols)], [str(t + 1) for t in range(cols)],
                  fontsize=7)
    names = [f"a={s[0]}" if divergence["mode"] == "constant" else f"seq {i}" for i, s in enumerate(seqs)]
    ax.set_yticks([pad + i * (h + pad) + h / 2 for i in range(rows)], names, fontsize=7)
    ax.set(xlabel="horizon step", title=f"same start, different actions: mean pairwise MSE "
                                        f"{divergence['mean']:.2e}" + ("  (IGNORES ACTIONS)"
                                                                       if divergence["ignores_actions"] else ""))
    fig.tight_layout()
    return _save_figure(fig, Path(path))


# ------------------------------------------------------------------------------------------------ outputs
def log_tensorboard(report: dict[str, Any], tb_dir: str | Path, action_grid: np.ndarray | None = None,
                    video: np.ndarray | None = None) -> None:
    """Per-step scalars ``imagine/<key>`` at global step = horizon step, and the pictures.

    Events of an earlier ``reverie imagine`` into the same folder are replaced, like its report and pictures:
    two event files would show every step twice in TensorBoard.
    """
    from torch.utils.tensorboard import SummaryWriter

    for old in Path(tb_dir).glob("events.out.tfevents.*"):
        old.unlink()
    writer = SummaryWriter(str(tb_dir))
    try:
        for key in TB_KEYS:
            for step, value in zip(report["steps"], report[key]):
                if value is not None and np.isfinite(value):  # PSNR of a perfect step is inf
                    writer.add_scalar(f"imagine/{key}", value, step)
        if "action_divergence" in report:
            for step, value in zip(report["steps"], report["action_divergence"]["per_step"]):
                writer.add_scalar("imagine/action_divergence", value, step)
        if action_grid is not None:
            writer.add_image("imagine/action_conditioning", action_grid, 0, dataformats="HW")
        if video is not None:
            for t, frame in enumerate(video):
                writer.add_image("imagine/side_by_side", frame, t, dataformats="HW")
    finally:
        writer.close()


def format_table(report: dict[str, Any]) -> str:
    """A plain-text per-step table; ``<`` marks a reference the model beats at that step."""
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
    beats = report["beats"]
    for name, b in beats.items():
        verdict = "every step" if b["all"] else (f"steps 1-{b['up_to']}" if b["up_to"] else "not at step 1")
        lines.append(f"beats {name.replace('_', ' ')}: {verdict} ({len(b['steps'])}/{report['horizon']} steps)")
    div = report.get("action_divergence")
    if div:
        flag = "  -> the model IGNORES its actions" if div["ignores_actions"] else ""
        lines.append(f"action divergence ({div['mode']} sequences, {div['starts']} starts): mean pairwise MSE "
                     f"{div['mean']:.3e}, step 1 {div['per_step'][0]:.3e}, step {report['horizon']} "
                     f"{div['per_step'][-1]:.3e}{flag}")
    return "\n".join(lines)


def default_out(run: str | Path) -> Path:
    """``RUN_DIR/imagine``; for a checkpoint file, the ``imagine`` folder of its run."""
    path = Path(run)
    if path.is_file():
        path = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return path / "imagine"


def _load_model(run: str | Path) -> Any:
    """``worldmodels.video.load_world_model(run)``, imported here so the CLI loads without the video package."""
    from worldmodels.video import load_world_model

    return load_world_model(run)


def run_imagine(run: str | Path, data: str | Path, horizon: int = 20, episodes: int | None = 8,
                starts_per_episode: int = 4, seed: int = 0, out: str | Path | None = None,
                video: str = "rollouts.gif", samples: int = 4, batch_size: int = 32, progress: bool = True,
                skip_corrupt: bool = False, model: Any = None) -> dict[str, Any]:
    """Evaluate a run's imagined rollouts and write the video, plots, report and TensorBoard events.

    :param run: fit-world-model run directory or checkpoint file.
    :param data: dataset folder of the model's game and frame size, with a held-out split.
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
    if not Path(run).exists():
        raise FileNotFoundError(f"run {run} does not exist: give the run directory (or a checkpoint) of "
                                f"`reverie fit-world-model`.")
    if model is None:
        model = _load_model(run)
    torch.manual_seed(seed)  # a stochastic model's rollouts are reproducible too
    report = evaluate_rollouts(model, data, horizon=horizon, episodes=episodes, starts_per_episode=starts_per_episode,
                               seed=seed, batch_size=batch_size, samples=samples, progress=progress,
                               on_corrupt="skip" if skip_corrupt else "error")
    pictures = report.pop("samples")
    out_dir = Path(out) if out else default_out(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    movie = side_by_side(pictures["frames"], pictures["imagined"], report["context"])
    outputs["video"] = str(write_video(out_dir / video, movie))
    outputs["plot"] = str(plot_errors(report, out_dir / "errors.png"))
    grid = pictures.get("action_grid")
    if grid is not None:
        outputs["action_conditioning"] = str(plot_action_grid(grid, report["action_divergence"],
                                                              tuple(model.frame_shape),
                                                              out_dir / "action_conditioning.png"))
    outputs["tensorboard"] = str(out_dir / "tb")
    log_tensorboard(report, out_dir / "tb", grid, movie)
    report["run"] = str(run)
    report["outputs"] = {**outputs, "report": str(out_dir / "report.json")}
    result = to_json(report)
    atomic_write(out_dir / "report.json", (json.dumps(result, indent=1) + "\n").encode())
    return result


# ------------------------------------------------------------------------------------------------ command
def cmd_imagine(args: argparse.Namespace) -> int:
    result = run_imagine(args.run, args.data, horizon=args.horizon, episodes=args.episodes or None,
                         starts_per_episode=args.starts_per_episode, seed=args.seed, out=args.out, video=args.video,
                         samples=args.samples, batch_size=args.batch_size,
                         progress=not (args.no_progress or args.json), skip_corrupt=args.skip_corrupt)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
        print("wrote " + ", ".join(f"{k}: {v}" for k, v in result["outputs"].items()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``imagine`` to the ``reverie`` subparsers."""
    p = sub.add_parser("imagine", help="score a video-prediction model's imagined rollouts on held-out episodes",
                       description="From real context frames of held-out episodes, replay the real actions in the "
                                   "model of RUN_DIR and compare its imagined frames with the real ones at every "
                                   "step (MSE, PSNR, SSIM) beside copy-last, mean-frame and shuffled-action "
                                   "references; check that different actions give different frames; write a "
                                   "side-by-side video, an error plot, report.json and TensorBoard events.")
    p.add_argument("run", metavar="RUN_DIR", help="fit-world-model run directory or checkpoint file")
    p.add_argument("--data", required=True, help="dataset folder of the same game and frame size (its held-out "
                                                 "split is used)")
    p.add_argument("--horizon", type=int, default=20, help="imagined steps per rollout (default 20)")
    p.add_argument("--episodes", type=int, default=8, help="held-out episodes used (default 8; 0: all)")
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
