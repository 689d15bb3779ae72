"""How good are imagined rollouts? Compare them with the real frames of held-out episodes, step by step.

:func:`evaluate_rollouts` takes windows of ``k + H`` consecutive frames inside one held-out episode (``k`` =
``model.context``), gives the model the first ``k`` real frames and the real actions that followed, and
compares its ``H`` imagined frames with the real ones at every step ``1 .. H`` (alignment as in
:meth:`worldmodels.video.VideoPredictor.imagine`: ``imagine(frames[:k], actions[k-1 : k-1+H])[:, t]`` predicts
real frame ``k + t``).
Beside the model it scores three references on the very same windows:

- **copy-last**: the last context frame repeated (a model that predicts no motion);
- **mean-frame**: ``model.mean_frame``, the mean training frame, at every step (a blurry average);
- **shuffled actions**: the same model fed a random permutation of the real actions (all rollouts' actions
  pooled and permuted, so the action frequencies stay and their timing is lost). A model that uses its
  action input must do worse here than with the real actions.

:func:`action_divergence` measures action-conditioning directly: from the same starts it rolls out every
constant action sequence (or a few random ones) and reports the mean pairwise MSE between the rollouts at
each step. A model that ignores its action input gives exactly 0, which the check flags.

All errors are on the [0, 1] pixel scale (:mod:`worldmodels.video.metrics`). The model is anything with the
attributes and methods of :class:`ImaginingModel` (``context``, ``num_actions``, ``frame_shape``,
``mean_frame``, ``game``, ``imagine``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from worldmodels.data import DatasetError, TrajectoryDataset
from worldmodels.video.metrics import finite_or_none, per_step_metrics

__all__ = ["BASELINES", "HeldoutWindows", "ImaginingModel", "action_divergence", "beats_summary",
           "check_compatible", "evaluate_rollouts", "imagine_batched", "load_heldout_windows", "to_json"]

#: Reference predictors, in the order reports list them; the report key of each is ``<name>_mse`` etc.
BASELINES = ("copy_last", "mean_frame", "shuffled_actions")


class ImaginingModel(Protocol):
    """The part of ``worldmodels.video.VideoPredictor`` that evaluation uses."""

    context: int
    num_actions: int
    frame_shape: tuple[int, int]
    mean_frame: np.ndarray
    game: str

    def imagine(self, context: np.ndarray, actions: np.ndarray) -> np.ndarray: ...


@dataclass
class HeldoutWindows:
    """Windows of held-out play, each inside one episode.

    :ivar frames: uint8 ``[N, L, H, W]``, ``L = k + horizon`` consecutive frames.
    :ivar actions: int64 ``[N, L]``; ``actions[:, t]`` leads from frame ``t`` to ``t + 1``.
    :ivar episode_ids: int64 ``[N]``, the episode of each window.
    :ivar offsets: int64 ``[N]``, the window's first frame counted from its episode's first stored frame.
    :ivar eligible_episodes: held-out episodes long enough for one window (before choosing ``episodes``).
    :ivar manifest: the dataset's manifest.
    """

    frames: np.ndarray
    actions: np.ndarray
    episode_ids: np.ndarray
    offsets: np.ndarray
    eligible_episodes: int
    manifest: dict[str, Any]


def _squash_game(name: str) -> str:
    """``"ALE/Pong-v5"``, ``"PongNoFrameskip-v4"``, ``"pong"`` -> ``"pong"``: compare games however spelled.

    (``envs.resolve_game`` does this fully, but ``worldmodels`` does not import ``envs``.)
    """
    name = re.sub(r"^ALE/", "", str(name))
    name = re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", name)
    return re.sub(r"[^a-z0-9]", "", name.lower())


def check_compatible(model: ImaginingModel, manifest: dict[str, Any], data_dir: str | Path) -> None:
    """Refuse a dataset the model cannot be scored on.

    :raises DatasetError: another game or another frame size than the model's training data (or a colour
        model), naming both and the fix.
    """
    game = manifest.get("game")
    channels = getattr(model, "channels", 1)  # not part of ImaginingModel: only colour models need refusing
    if channels != 1:
        raise DatasetError(f"the model predicts {channels}-channel (colour) frames but Reverie datasets hold "
                           f"luminance frames: evaluate a model trained with one channel.")
    # An empty or missing game (a model built by hand) is not checked.
    if game and model.game and _squash_game(game) != _squash_game(model.game):
        raise DatasetError(f"{data_dir} holds {game!r} play but the model was trained on {model.game!r}: "
                           f"evaluate it on a {model.game} dataset (`reverie collect {model.game} --out DIR`).")
    shape = tuple(int(s) for s in manifest.get("frame_shape") or ())
    if shape and shape != tuple(model.frame_shape):
        raise DatasetError(f"{data_dir} holds {shape[0]}x{shape[1]} frames but the model predicts "
                           f"{model.frame_shape[0]}x{model.frame_shape[1]} frames: use a dataset collected with "
                           f"the model's frame size.")


def load_heldout_windows(data_dir: str | Path, window: int, episodes: int | None = None,
                         starts_per_episode: int = 4, seed: int = 0,
                         on_corrupt: Literal["error", "skip"] = "error") -> HeldoutWindows:
    """Choose windows of ``window`` frames from the held-out split.

    Every held-out episode with at least one window is eligible; ``episodes`` of them (all if ``None``) are
    drawn with ``seed``, and in each, ``starts_per_episode`` distinct window starts (all if fewer), drawn
    with ``seed`` and sorted. Windows come out in dataset order.

    :raises DatasetError: no dataset, no held-out split, a corrupt shard, or no episode long enough.
    """
    if starts_per_episode < 1 or (episodes is not None and episodes < 1) or window < 1:
        raise ValueError(f"episodes={episodes}, starts_per_episode={starts_per_episode} and window={window} "
                         f"must be positive.")
    ds = TrajectoryDataset(data_dir, "heldout", window=window, on_corrupt=on_corrupt)
    rng = np.random.default_rng(seed)
    # Per eligible episode: its chosen windows. The held-out split is small (a tenth of a dataset), and only
    # the chosen windows are kept, so memory holds starts_per_episode windows per episode, not the split.
    chosen: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    span = np.arange(window)
    for arrays in ds.iter_shards():
        ids = arrays["episode_ids"]
        starts = ds.window_starts(ids)
        for eid in np.unique(ids[starts]) if len(starts) else []:
            mine = starts[ids[starts] == eid]
            pick = np.sort(rng.choice(mine, size=min(starts_per_episode, len(mine)), replace=False))
            first = int(np.flatnonzero(ids == eid)[0])
            rows = pick[:, None] + span
            chosen.append((int(eid), pick - first, arrays["frames"][rows], arrays["actions"][rows]))
    if not chosen:
        raise DatasetError(f"no held-out episode of {data_dir} has {window} frames (context + horizon): lower "
                           f"--horizon or collect more (or longer) episodes.")
    eligible = len(chosen)
    if episodes is not None and episodes < eligible:
        keep = np.sort(rng.choice(eligible, size=episodes, replace=False))
        chosen = [chosen[i] for i in keep]
    return HeldoutWindows(
        frames=np.concatenate([c[2] for c in chosen]), actions=np.concatenate([c[3] for c in chosen]),
        episode_ids=np.concatenate([np.full(len(c[1]), c[0], dtype=np.int64) for c in chosen]),
        offsets=np.concatenate([c[1] for c in chosen]).astype(np.int64), eligible_episodes=eligible,
        manifest=ds.manifest)


def imagine_batched(model: ImaginingModel, context: np.ndarray, actions: np.ndarray, batch_size: int = 32,
                    bar: Any = None) -> np.ndarray:
    """``model.imagine`` over ``N`` rollouts, ``batch_size`` at a time, without autograd.

    :param context: uint8 ``[N, k, H, W]`` real frames.
    :param actions: int64 ``[N, T]``.
    :param bar: an optional tqdm bar, advanced by the rollouts done.
    :return: uint8 ``[N, T, H, W]``.
    """
    out = []
    with torch.no_grad():
        for b in range(0, len(context), batch_size):
            frames = np.asarray(model.imagine(context[b: b + batch_size], actions[b: b + batch_size]))
            out.append(frames)
            if bar is not None:
                bar.update(len(frames))
    result = np.concatenate(out)
    if result.shape != (*actions.shape, *context.shape[2:]) or result.dtype != np.uint8:
        raise TypeError(f"model.imagine returned {result.dtype} {result.shape}; expected uint8 "
                        f"{(*actions.shape, *context.shape[2:])}")
    return result


def _pairwise_step_mse(rollouts: np.ndarray) -> np.ndarray:
    """Mean squared difference between every pair of ``A`` rollouts, per pair and step, exactly.

    :param rollouts: uint8 ``[A, B, T, H, W]``.
    :return: float64 ``[A, A, T]`` (symmetric, zero diagonal) on the [0, 1] scale, averaged over starts and
        pixels. Integer arithmetic, so identical rollouts give exactly 0 (a float mean could leave 1e-34).
    """
    a, _, t = rollouts.shape[:3]
    out = np.zeros((a, a, t))
    pixels = rollouts.shape[1] * rollouts.shape[3] * rollouts.shape[4] * 255.0 ** 2
    for i, j in combinations(range(a), 2):
        d = rollouts[i].astype(np.int32) - rollouts[j].astype(np.int32)
        out[i, j] = out[j, i] = np.einsum("bthw,bthw->t", d, d, dtype=np.int64) / pixels
    return out


def _grid(rows: np.ndarray, pad: int = 2, fill: int = 128) -> np.ndarray:
    """uint8 ``[R, C, H, W]`` -> one uint8 image ``[R (H + pad) + pad, C (W + pad) + pad]``, grey gutters."""
    r, c, h, w = rows.shape
    img = np.full((r * (h + pad) + pad, c * (w + pad) + pad), fill, dtype=np.uint8)
    for i in range(r):
        for j in range(c):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            img[y: y + h, x: x + w] = rows[i, j]
    return img


def action_divergence(model: ImaginingModel, context: np.ndarray, num_actions: int, horizon: int, *,
                      mode: Literal["constant", "random"] = "constant", num_sequences: int = 8, seed: int = 0,
                      tolerance: float = 0.0, batch_size: int = 32, bar: Any = None) -> dict[str, Any]:
    """Do different actions from the same start lead to different imagined frames?

    :param context: uint8 ``[B, k, H, W]``, the real starting frames.
    :param num_actions: actions of the game (``model.num_actions``).
    :param horizon: steps ``T`` per rollout.
    :param mode: ``"constant"``: one rollout per action ``a`` repeating ``a`` (``A = num_actions``);
        ``"random"``: ``num_sequences`` uniformly random sequences drawn with ``seed``, the same for every start.
    :param tolerance: the model is flagged as ignoring its actions when every step's divergence is at most this.
    :return: ``sequences`` (the ``A`` action sequences, lists of ints), ``per_step`` (``[T]``: mean over the
        ``A (A - 1) / 2`` pairs of rollouts, the starts and the pixels, of the squared difference; [0, 1]
        scale), ``mean`` (over steps), ``pairwise`` (``[A][A]``: per pair, mean over steps), ``ignores_actions``
        (bool), ``tolerance``, ``starts`` (``B``), and ``grid``: a uint8 image of the first start's rollouts,
        rows = sequences, columns = steps 1..T (numpy; drop it before writing JSON).
    """
    if mode == "constant":
        seqs = np.repeat(np.arange(num_actions, dtype=np.int64)[:, None], horizon, axis=1)
    elif mode == "random":
        seqs = np.random.default_rng(seed).integers(0, num_actions, size=(num_sequences, horizon), dtype=np.int64)
    else:
        raise ValueError(f"mode={mode!r}: choose 'constant' or 'random'.")
    if len(seqs) < 2:
        raise ValueError(f"action divergence needs at least two action sequences, got {len(seqs)} "
                         f"(num_actions={num_actions}, mode={mode!r}).")
    b = len(context)
    rollouts = np.stack([imagine_batched(model, context, np.broadcast_to(s, (b, horizon)).copy(), batch_size, bar)
                         for s in seqs])  # [A, B, T, H, W]
    pair = _pairwise_step_mse(rollouts)
    a = len(seqs)
    per_step = pair.sum(axis=(0, 1)) / (a * (a - 1))  # mean over unordered pairs (each counted twice)
    return {
        "mode": mode, "sequences": seqs.tolist(), "starts": b, "per_step": [float(v) for v in per_step],
        "mean": float(per_step.mean()), "pairwise": pair.mean(axis=2).tolist(), "tolerance": tolerance,
        "ignores_actions": bool(np.all(per_step <= tolerance)), "grid": _grid(rollouts[:, 0])}


def beats_summary(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Where the model's MSE is strictly below each reference's.

    :return: per reference name: ``steps`` (1-based steps where the model wins), ``all`` (it wins at every
        step), ``up_to`` (the last step of the unbroken run of wins from step 1; 0 if it loses step 1).
    """
    out = {}
    for name in BASELINES:
        wins = [m < r for m, r in zip(report["mse"], report[f"{name}_mse"])]
        up_to = next((i for i, w in enumerate(wins) if not w), len(wins))
        out[name] = {"steps": [i + 1 for i, w in enumerate(wins) if w], "all": all(wins), "up_to": up_to}
    return out


def evaluate_rollouts(model: ImaginingModel, data_dir: str | Path, horizon: int = 20, episodes: int | None = None,
                      starts_per_episode: int = 4, seed: int = 0, *, batch_size: int = 32, divergence_starts: int = 4,
                      divergence_mode: Literal["constant", "random"] = "constant", samples: int = 0,
                      progress: bool = False, on_corrupt: Literal["error", "skip"] = "error") -> dict[str, Any]:
    """Score the model's imagined rollouts on held-out episodes against the real frames and three references.

    :param model: a :class:`worldmodels.video.VideoPredictor` (or any :class:`ImaginingModel`) in eval mode.
    :param data_dir: a Reverie dataset of the model's game and frame size with a held-out split.
    :param horizon: imagined steps ``H`` per rollout.
    :param episodes: held-out episodes used (drawn with ``seed``; ``None``: all long enough).
    :param starts_per_episode: windows per episode (drawn with ``seed``).
    :param seed: seeds the choice of windows, the action shuffle and random action sequences.
    :param divergence_starts: starts used by :func:`action_divergence` (the first windows; 0 skips the check).
    :param samples: if positive, ``report["samples"]`` holds numpy arrays of that many rollouts, spread over
        the windows, for pictures: ``frames`` uint8 ``[S, k + H, h, w]`` (real), ``imagined`` uint8
        ``[S, H, h, w]``, ``actions`` int64 ``[S, k + H]``, and ``action_grid`` (uint8 image) if the
        divergence check ran. Pop it before :func:`to_json`.
    :param progress: show a tqdm bar over the rollouts.
    :return: a JSON-ready dict (see :func:`to_json` for inf): ``game``, ``data``, ``horizon``, ``context``,
        ``steps`` ``[1..H]``; per-step lists of length ``H`` ``mse``, ``psnr``, ``ssim`` and, for each
        reference ``r`` in :data:`BASELINES`, ``r_mse``, ``r_psnr``, ``r_ssim``; ``beats``
        (:func:`beats_summary`); ``action_divergence`` (:func:`action_divergence` without its grid);
        counts ``rollouts``, ``episodes``, ``eligible_episodes``; ``shuffled_actions_changed`` (share of
        actions the permutation changed); ``imagined_frames_per_second``.
    :raises DatasetError: missing data, no held-out split, another game or frame size, actions the model does
        not know, or no episode with ``k + H`` frames.
    """
    if horizon < 1:
        raise ValueError(f"horizon={horizon} must be at least 1.")
    k = int(model.context)
    win = load_heldout_windows(data_dir, k + horizon, episodes, starts_per_episode, seed, on_corrupt)
    check_compatible(model, win.manifest, data_dir)
    context = win.frames[:, :k]
    actions = win.actions[:, k - 1: k - 1 + horizon]
    real = win.frames[:, k:]
    if actions.min() < 0 or actions.max() >= model.num_actions:
        raise DatasetError(f"{data_dir} has actions {int(actions.min())}..{int(actions.max())} but the model knows "
                           f"0..{model.num_actions - 1}: use a dataset collected with the model's action set.")
    rng = np.random.default_rng(seed + 1)
    shuffled = rng.permutation(actions.ravel()).reshape(actions.shape)
    n = len(context)
    div_b = min(divergence_starts, n)
    div_count = model.num_actions if divergence_mode == "constant" else 8  # action_divergence's num_sequences
    total = 2 * n + (div_b * div_count if div_b else 0)

    from tqdm import tqdm

    with tqdm(total=total, unit="rollout", desc="imagine", disable=not progress) as bar:
        t0 = time.perf_counter()
        imagined = imagine_batched(model, context, actions, batch_size, bar)
        seconds = time.perf_counter() - t0
        imagined_shuffled = imagine_batched(model, context, shuffled, batch_size, bar)
        divergence = action_divergence(model, context[:div_b], model.num_actions, horizon, mode=divergence_mode,
                                       seed=seed, batch_size=batch_size, bar=bar) if div_b else None

    report: dict[str, Any] = {
        "game": model.game, "data": str(data_dir), "horizon": horizon, "context": k, "seed": seed,
        "rollouts": n, "episodes": int(len(np.unique(win.episode_ids))), "eligible_episodes": win.eligible_episodes,
        "starts_per_episode": starts_per_episode, "frame_shape": list(model.frame_shape),
        "num_actions": int(model.num_actions), "steps": list(range(1, horizon + 1))}
    report.update(per_step_metrics(imagined, real))
    for name, pred in (("copy_last", context[:, -1:]), ("mean_frame", np.asarray(model.mean_frame, np.float32)),
                       ("shuffled_actions", imagined_shuffled)):
        report.update({f"{name}_{key}": v for key, v in per_step_metrics(pred, real).items()})
    report["shuffled_actions_changed"] = float((shuffled != actions).mean())
    report["beats"] = beats_summary(report)
    report["imagined_frames_per_second"] = n * horizon / seconds if seconds > 0 else math.inf
    extra: dict[str, Any] = {}
    if divergence is not None:
        extra["action_grid"] = divergence.pop("grid")
        report["action_divergence"] = divergence
    if samples > 0:
        idx = np.unique(np.linspace(0, n - 1, min(samples, n)).round().astype(int))
        report["samples"] = {"frames": win.frames[idx], "imagined": imagined[idx], "actions": win.actions[idx],
                             "episode_ids": win.episode_ids[idx], "offsets": win.offsets[idx], **extra}
    return report


def to_json(report: dict[str, Any]) -> Any:
    """A copy of ``report`` that strict JSON accepts: ``inf``/``nan`` (PSNR of a perfect prediction) become
    ``None``, numpy scalars become Python numbers. ``samples`` (numpy arrays) must be removed first."""
    if isinstance(report, dict):
        if "samples" in report:
            raise ValueError("pop report['samples'] (numpy arrays) before converting the report to JSON.")
        return {str(k): to_json(v) for k, v in report.items()}
    if isinstance(report, Sequence) and not isinstance(report, str):
        return [to_json(v) for v in report]
    if isinstance(report, (bool, np.bool_)):
        return bool(report)
    if isinstance(report, (int, np.integer)):
        return int(report)
    if isinstance(report, (float, np.floating)):
        return finite_or_none(float(report))
    return report
