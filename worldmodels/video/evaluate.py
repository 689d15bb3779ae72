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

Beside the whole-frame MSE, PSNR and SSIM (:mod:`worldmodels.video.metrics`), every predictor gets the
motion-aware scores of :mod:`worldmodels.video.motion`: the error on the pixels that moved and on the
foreground, and the recall and precision of the moving objects; whole-frame error is dominated by the static
background, these are not. A model with a reward/game-over head (``VideoPredictor`` with
``model.reward_head``) is also scored on the reward's sign and on game over at every step
(:func:`reward_head_accuracy`).

:func:`evaluate_models` scores several models on the very same windows (``reverie imagine --compare``); the
copy-last and mean-frame references are then computed once.

All errors are on the [0, 1] pixel scale. Frames are luminance ``[..., H, W]`` or colour ``[..., H, W, C]``
(a model with ``channels == 3`` on a dataset collected with ``--rgb``). The model is anything with the
attributes and methods of :class:`ImaginingModel` (``context``, ``num_actions``, ``frame_shape``,
``mean_frame``, ``game``, ``imagine``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from worldmodels.data import DatasetError, TrajectoryDataset
from worldmodels.video.metrics import finite_or_none, per_step_metrics
from worldmodels.video.motion import (
    PREDICTOR_MOTION_KEYS,
    REAL_MOTION_KEYS,
    background_frame,
    motion_metrics,
    motion_settings,
)

__all__ = ["BASELINES", "BEATS_MOTION_KEYS", "GAME_OVER_THRESHOLD", "HeldoutWindows", "ImaginingModel",
           "PREDICTOR_KEYS", "REWARD_KEYS", "REWARD_SIGN_THRESHOLD", "SHARED_BASELINES", "action_divergence",
           "beats_summary", "check_compatible", "evaluate_models", "evaluate_rollouts", "has_reward_head",
           "imagine_batched", "imagine_with_heads", "load_heldout_windows", "reward_head_accuracy", "to_json"]

#: Reference predictors, in the order reports list them; the report key of each is ``<name>_mse`` etc.
BASELINES = ("copy_last", "mean_frame", "shuffled_actions")
#: The references that do not depend on a model (computed once when several models are compared).
SHARED_BASELINES = ("copy_last", "mean_frame")
#: Per-step lists every predictor (the model and each reference) gets.
PREDICTOR_KEYS = ("mse", "psnr", "ssim", *PREDICTOR_MOTION_KEYS)
#: Per-step lists of a model with a reward/game-over head (:func:`reward_head_accuracy`).
REWARD_KEYS = ("reward_sign_accuracy", "reward_nonzero_accuracy", "reward_nonzero_count", "game_over_accuracy",
               "game_over_count")
#: The head's expected clipped reward (``p(+1) - p(-1)``) is read as the sign nearest to it: +1 above this, -1
#: below minus this, else 0.
REWARD_SIGN_THRESHOLD = 0.5
#: Predicted game over: probability above this (``envs.ImaginedEnv``'s default ``terminal_threshold``).
GAME_OVER_THRESHOLD = 0.5


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
    :ivar rewards: float32 ``[N, L]``: ``rewards[:, t]`` is the raw score change caused by ``actions[:, t]``.
    :ivar terminals: bool ``[N, L]``: frame ``t`` is the last of an episode that ended (game over, or the
        emulator's frame cap: the flag the reward head is trained on).
    """

    frames: np.ndarray
    actions: np.ndarray
    episode_ids: np.ndarray
    offsets: np.ndarray
    eligible_episodes: int
    manifest: dict[str, Any]
    rewards: np.ndarray
    terminals: np.ndarray


def _squash_game(name: str) -> str:
    """``"ALE/Pong-v5"``, ``"PongNoFrameskip-v4"``, ``"pong"`` -> ``"pong"``: compare games however spelled.

    (``envs.resolve_game`` does this fully, but ``worldmodels`` does not import ``envs``.)
    """
    name = re.sub(r"^ALE/", "", str(name))
    name = re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", name)
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _colours(channels: int) -> str:
    return {1: "luminance", 3: "RGB (colour)"}.get(channels, f"{channels}-channel")


def check_compatible(model: ImaginingModel, manifest: dict[str, Any], data_dir: str | Path) -> None:
    """Refuse a dataset the model cannot be scored on.

    :raises DatasetError: another game, another frame size or other colours (RGB vs luminance) than the model's
        training data, naming both and the fix.
    """
    game = manifest.get("game")
    # An empty or missing game (a model built by hand) is not checked.
    if game and model.game and _squash_game(game) != _squash_game(model.game):
        raise DatasetError(f"{data_dir} holds {game!r} play but the model was trained on {model.game!r}: "
                           f"evaluate it on a {model.game} dataset (`reverie collect {model.game} --out DIR`).")
    shape = tuple(int(s) for s in manifest.get("frame_shape") or ())
    channels = int(getattr(model, "channels", 1))  # not part of ImaginingModel: luminance unless it says otherwise
    data_channels = shape[2] if len(shape) == 3 else 1
    if shape and data_channels != channels:
        fix = "collected with `reverie collect ... --rgb`" if channels == 3 else "collected without --rgb"
        raise DatasetError(f"{data_dir} holds {_colours(data_channels)} frames but the model predicts "
                           f"{_colours(channels)} frames: use a dataset {fix} for this model.")
    if shape and shape[:2] != tuple(model.frame_shape):
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
    chosen: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    span = np.arange(window)
    for arrays in ds.iter_shards():
        ids = arrays["episode_ids"]
        starts = ds.window_starts(ids)
        for eid in np.unique(ids[starts]) if len(starts) else []:
            mine = starts[ids[starts] == eid]
            pick = np.sort(rng.choice(mine, size=min(starts_per_episode, len(mine)), replace=False))
            first = int(np.flatnonzero(ids == eid)[0])
            rows = pick[:, None] + span
            chosen.append((int(eid), pick - first, arrays["frames"][rows], arrays["actions"][rows],
                           arrays["rewards"][rows], arrays["terminals"][rows]))
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
        manifest=ds.manifest, rewards=np.concatenate([c[4] for c in chosen]).astype(np.float32),
        terminals=np.concatenate([c[5] for c in chosen]).astype(bool))


def imagine_batched(model: ImaginingModel, context: np.ndarray, actions: np.ndarray, batch_size: int = 32,
                    bar: Any = None) -> np.ndarray:
    """``model.imagine`` over ``N`` rollouts, ``batch_size`` at a time, without autograd.

    :param context: uint8 ``[N, k, H, W]`` (colour: ``[N, k, H, W, C]``) real frames.
    :param actions: int64 ``[N, T]``.
    :param bar: an optional tqdm bar, advanced by the rollouts done.
    :return: uint8 ``[N, T, H, W]`` (``[N, T, H, W, C]``).
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

    :param rollouts: uint8 ``[A, B, T, H, W]`` (colour: ``[A, B, T, H, W, C]``).
    :return: float64 ``[A, A, T]`` (symmetric, zero diagonal) on the [0, 1] scale, averaged over starts and
        pixels (and channels). Integer arithmetic, so identical rollouts give exactly 0 (a float mean could
        leave 1e-34).
    """
    a, b, t = rollouts.shape[:3]
    flat = rollouts.reshape(a, b, t, -1)
    out = np.zeros((a, a, t))
    pixels = b * flat.shape[3] * 255.0 ** 2
    for i, j in combinations(range(a), 2):
        d = flat[i].astype(np.int32) - flat[j].astype(np.int32)
        out[i, j] = out[j, i] = np.einsum("btp,btp->t", d, d, dtype=np.int64) / pixels
    return out


def _grid(rows: np.ndarray, pad: int = 2, fill: int = 128) -> np.ndarray:
    """uint8 ``[R, C, H, W]`` -> one uint8 image ``[R (H + pad) + pad, C (W + pad) + pad]``, grey gutters
    (colour ``[R, C, H, W, 3]`` -> ``[..., ..., 3]``)."""
    r, c, h, w = rows.shape[:4]
    img = np.full((r * (h + pad) + pad, c * (w + pad) + pad, *rows.shape[4:]), fill, dtype=np.uint8)
    for i in range(r):
        for j in range(c):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            img[y: y + h, x: x + w] = rows[i, j]
    return img


def action_divergence(model: ImaginingModel, context: np.ndarray, num_actions: int, horizon: int, *,
                      mode: Literal["constant", "random"] = "constant", num_sequences: int = 8, seed: int = 0,
                      tolerance: float = 0.0, batch_size: int = 32, bar: Any = None) -> dict[str, Any]:
    """Do different actions from the same start lead to different imagined frames?

    :param context: uint8 ``[B, k, H, W]`` (colour: ``[B, k, H, W, C]``), the real starting frames.
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


#: Errors that ``beats_motion`` compares with the references, beside ``beats`` (whole-frame MSE).
BEATS_MOTION_KEYS = ("moving_mse", "foreground_mse")


def beats_summary(report: dict[str, Any], key: str = "mse") -> dict[str, dict[str, Any]]:
    """Where the model's error ``key`` is strictly below each reference's.

    :param report: ``key`` and ``<reference>_<key>`` for every reference of :data:`BASELINES` (per-step lists).
    :param key: ``mse`` or a motion error (:data:`BEATS_MOTION_KEYS`); a step where either side is ``None``
        (no frame had such pixels) counts as not won.
    :return: per reference name: ``steps`` (1-based steps where the model wins), ``all`` (it wins at every
        step), ``up_to`` (the last step of the unbroken run of wins from step 1; 0 if it loses step 1).
    """
    out = {}
    for name in BASELINES:
        wins = [m is not None and r is not None and m < r for m, r in zip(report[key], report[f"{name}_{key}"])]
        up_to = next((i for i, w in enumerate(wins) if not w), len(wins))
        out[name] = {"steps": [i + 1 for i, w in enumerate(wins) if w], "all": all(wins), "up_to": up_to}
    return out


# --------------------------------------------------------------------------------- reward / game-over head
def has_reward_head(model: Any) -> bool:
    """Does the model predict the reward's sign and game over? (``VideoPredictor`` built with ``reward_head``:
    its ``head`` is a module, and ``initial``/``step`` report each step's ``reward`` and ``terminal``.)"""
    return (getattr(model, "head", None) is not None and callable(getattr(model, "initial", None))
            and callable(getattr(model, "step", None)))


def imagine_with_heads(model: Any, context: np.ndarray, actions: np.ndarray, batch_size: int = 32,
                       bar: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Roll out through the WorldModel interface (``initial`` then ``step``), keeping each step's head outputs.

    The frames are those of ``model.imagine`` (the same computation), so one rollout gives frames and rewards.

    :param context: uint8 ``[N, k, H, W]`` (colour: ``[N, k, H, W, C]``) real frames.
    :param actions: int64 ``[N, T]``.
    :return: ``(frames, reward, game_over)``: uint8 ``[N, T, H, W]`` (``[N, T, H, W, C]``); float32 ``[N, T]``, the
        expected clipped reward of each step (``state.reward``, in [-1, 1]); float32 ``[N, T]``, the predicted
        probability that the game ended at that step (``state.terminal``).
    """
    frames, rewards, overs = [], [], []
    with torch.no_grad():
        for b in range(0, len(context), batch_size):
            state = model.initial(context[b: b + batch_size])
            fs, rs, ts = [], [], []
            for t in range(actions.shape[1]):
                state, frame = model.step(state, actions[b: b + batch_size, t])
                fs.append(np.asarray(frame))
                rs.append(np.asarray(state.reward, dtype=np.float32))
                ts.append(np.asarray(state.terminal, dtype=np.float32))
            frames.append(np.stack(fs, 1))
            rewards.append(np.stack(rs, 1))
            overs.append(np.stack(ts, 1))
            if bar is not None:
                bar.update(len(fs[0]))
    result = np.concatenate(frames)
    if result.shape != (*actions.shape, *context.shape[2:]) or result.dtype != np.uint8:
        raise TypeError(f"model.step returned {result.dtype} frames {result.shape[2:]}; expected uint8 "
                        f"{context.shape[2:]}")
    return result, np.concatenate(rewards), np.concatenate(overs)


def reward_head_accuracy(pred_reward: np.ndarray, pred_game_over: np.ndarray, rewards: np.ndarray,
                         terminals: np.ndarray) -> dict[str, list[Any]]:
    """Per-step accuracy of a reward/game-over head against held-out data.

    :param pred_reward: float ``[N, T]``, the expected clipped reward of each step; its sign is read as the
        nearest of -1, 0, +1 (``+1`` above :data:`REWARD_SIGN_THRESHOLD`, ``-1`` below its negative, else 0),
        the sign an agent in ``ImaginedEnv`` is paid, rounded.
    :param pred_game_over: float ``[N, T]``, probability that the game ended at the step; predicted game over
        when above :data:`GAME_OVER_THRESHOLD`.
    :param rewards: float ``[N, T]``, the real raw rewards of the steps (only their sign counts).
    :param terminals: bool ``[N, T]``, the real game overs.
    :return: per-step lists: ``reward_sign_accuracy`` (share of rollouts with the right sign),
        ``reward_nonzero_accuracy`` (the same among rollouts whose real reward is not 0; ``None`` where there is
        none), ``reward_nonzero_count``, ``game_over_accuracy`` (share right about game over) and
        ``game_over_count`` (real game overs). Predicting 0 and "not over" everywhere scores
        ``1 - reward_nonzero_count / N`` and ``1 - game_over_count / N``: read the accuracies beside those.
    """
    pred_sign = np.where(pred_reward > REWARD_SIGN_THRESHOLD, 1,
                         np.where(pred_reward < -REWARD_SIGN_THRESHOLD, -1, 0))
    real_sign = np.sign(rewards).astype(np.int64)
    right = pred_sign == real_sign
    nonzero = real_sign != 0
    over_right = (pred_game_over > GAME_OVER_THRESHOLD) == np.asarray(terminals, dtype=bool)
    counts = nonzero.sum(axis=0)
    return {
        "reward_sign_accuracy": [float(v) for v in right.mean(axis=0)],
        "reward_nonzero_accuracy": [float((right[:, t] & nonzero[:, t]).sum() / c) if c else None
                                    for t, c in enumerate(counts)],
        "reward_nonzero_count": [int(c) for c in counts],
        "game_over_accuracy": [float(v) for v in over_right.mean(axis=0)],
        "game_over_count": [int(c) for c in np.asarray(terminals, dtype=bool).sum(axis=0)]}


# ------------------------------------------------------------------------------------------- evaluation
def _score(pred: np.ndarray, real: np.ndarray, last: np.ndarray, background: np.ndarray
           ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """One predictor's per-step lists (:data:`PREDICTOR_KEYS`) and the real frames' counts
    (``REAL_MOTION_KEYS``, the same for every predictor)."""
    rows: dict[str, list[Any]] = dict(per_step_metrics(pred, real))
    motion = motion_metrics(pred, real, last, background)
    rows.update({key: motion[key] for key in PREDICTOR_MOTION_KEYS})
    return rows, {key: motion[key] for key in REAL_MOTION_KEYS}


def evaluate_models(models: Mapping[str, ImaginingModel], data_dir: str | Path, horizon: int = 20,
                    episodes: int | None = None, starts_per_episode: int = 4, seed: int = 0, *, batch_size: int = 32,
                    divergence_starts: int = 4, divergence_mode: Literal["constant", "random"] = "constant",
                    samples: int = 0, progress: bool = False,
                    on_corrupt: Literal["error", "skip"] = "error") -> dict[str, Any]:
    """Score several models' imagined rollouts on the very same held-out windows, beside the references.

    Windows hold ``k_max + H`` frames (``k_max``: the largest context of the models); a model with a shorter
    context reads the last ``k`` of the ``k_max`` context frames, so every model predicts the same real frames
    from the same last real frame under the same actions. Copy-last and mean-frame (the first model's mean
    frame) are scored once; shuffled actions (one permutation for all) per model.

    Arguments as :func:`evaluate_rollouts`, with ``models``: label -> model, in report order.

    :return: ``compare`` (the labels), ``game``, ``data``, ``horizon``, ``context`` (``k_max``), ``seed``,
        counts ``rollouts``, ``episodes``, ``eligible_episodes``, ``starts_per_episode``, ``frame_shape``
        (``[H, W]``), ``channels`` (1, or 3 for RGB), ``steps``; the shared references' per-step lists
        ``r_<key>`` for ``r`` in :data:`SHARED_BASELINES` and ``key`` in :data:`PREDICTOR_KEYS`; the real frames' counts
        ``moving_frames``, ``foreground_frames``, ``real_objects``; ``motion`` (the definitions' constants,
        :func:`worldmodels.video.motion.motion_settings`); ``mean_frame_of`` (the label whose mean frame the
        mean-frame reference is); and ``models``: per label, the model's per-step lists (:data:`PREDICTOR_KEYS`,
        and ``shuffled_actions_<key>``), ``context``, ``num_actions``, ``shuffled_actions_changed``, ``beats``,
        ``beats_motion``, ``action_divergence``, ``imagined_frames_per_second``, ``reward_head`` (bool) and, with a
        head, :data:`REWARD_KEYS`. With ``samples``: ``samples`` holds ``frames``, ``actions``, ``episode_ids``,
        ``offsets``, ``background`` and per label ``imagined`` and ``action_grid`` (dicts).
    """
    if horizon < 1:
        raise ValueError(f"horizon={horizon} must be at least 1.")
    if not models:
        raise ValueError("no model to evaluate.")
    labels = list(models)
    k_max = max(int(m.context) for m in models.values())
    win = load_heldout_windows(data_dir, k_max + horizon, episodes, starts_per_episode, seed, on_corrupt)
    for model in models.values():
        check_compatible(model, win.manifest, data_dir)
    actions = win.actions[:, k_max - 1: k_max - 1 + horizon]
    real = win.frames[:, k_max:]
    last = win.frames[:, k_max - 1]
    for label, model in models.items():
        if actions.min() < 0 or actions.max() >= model.num_actions:
            name = "the model" if len(models) == 1 else f"model {label!r}"
            raise DatasetError(f"{data_dir} has actions {int(actions.min())}..{int(actions.max())} but {name} knows "
                               f"0..{model.num_actions - 1}: use a dataset collected with the model's action set.")
    colour = real.ndim == 5
    rng = np.random.default_rng(seed + 1)
    shuffled = rng.permutation(actions.ravel()).reshape(actions.shape)
    n = len(real)
    div_b = min(divergence_starts, n)
    div_count = {label: (m.num_actions if divergence_mode == "constant" else 8) for label, m in models.items()}
    total = sum(2 * n + (div_b * div_count[label] if div_b else 0) for label in labels)
    # The held-out set's background for the foreground mask and the objects (a median: see motion.py).
    background = background_frame(win.frames, channels_last=colour)

    from tqdm import tqdm

    sections: dict[str, dict[str, Any]] = {}
    imagined_of: dict[str, np.ndarray] = {}
    grids: dict[str, np.ndarray] = {}
    real_counts: dict[str, list[Any]] = {}
    with tqdm(total=total, unit="rollout", desc="imagine", disable=not progress) as bar:
        for label, model in models.items():
            k = int(model.context)
            context = win.frames[:, k_max - k: k_max]
            head = has_reward_head(model)
            t0 = time.perf_counter()
            if head:
                imagined, pred_reward, pred_over = imagine_with_heads(model, context, actions, batch_size, bar)
            else:
                imagined = imagine_batched(model, context, actions, batch_size, bar)
            seconds = time.perf_counter() - t0
            imagined_shuffled = imagine_batched(model, context, shuffled, batch_size, bar)
            divergence = action_divergence(model, context[:div_b], model.num_actions, horizon,
                                           mode=divergence_mode, seed=seed, batch_size=batch_size,
                                           bar=bar) if div_b else None
            section: dict[str, Any] = {"context": k, "num_actions": int(model.num_actions)}
            rows, real_counts = _score(imagined, real, last, background)
            section.update(rows)
            rows, _ = _score(imagined_shuffled, real, last, background)
            section.update({f"shuffled_actions_{key}": v for key, v in rows.items()})
            section["shuffled_actions_changed"] = float((shuffled != actions).mean())
            section["imagined_frames_per_second"] = n * horizon / seconds if seconds > 0 else math.inf
            section["reward_head"] = head
            if head:
                # Step t (0-based) follows actions[:, k_max - 1 + t]: its reward is that action's, its game over
                # is the flag of the frame it predicts (the alignment of VideoPredictor.loss).
                section.update(reward_head_accuracy(
                    pred_reward, pred_over, win.rewards[:, k_max - 1: k_max - 1 + horizon],
                    win.terminals[:, k_max: k_max + horizon]))
            if divergence is not None:
                grids[label] = divergence.pop("grid")
                section["action_divergence"] = divergence
            sections[label] = section
            imagined_of[label] = imagined

    first = models[labels[0]]
    report: dict[str, Any] = {
        "compare": labels, "game": first.game or win.manifest.get("game", ""), "data": str(data_dir),
        "horizon": horizon, "context": k_max, "seed": seed, "rollouts": n,
        "episodes": int(len(np.unique(win.episode_ids))), "eligible_episodes": win.eligible_episodes,
        "starts_per_episode": starts_per_episode, "frame_shape": list(real.shape[2:4]),
        "channels": int(real.shape[4]) if colour else 1, "steps": list(range(1, horizon + 1))}
    for name, pred in (("copy_last", last[:, None]), ("mean_frame", np.asarray(first.mean_frame, np.float32))):
        rows, _ = _score(pred, real, last, background)
        report.update({f"{name}_{key}": v for key, v in rows.items()})
    report.update(real_counts)
    report["motion"] = motion_settings()
    report["mean_frame_of"] = labels[0]
    for section in sections.values():
        rows = {**section, **{f"{b}_{key}": report[f"{b}_{key}"] for b in SHARED_BASELINES
                              for key in ("mse", *BEATS_MOTION_KEYS)}}
        section["beats"] = beats_summary(rows)
        section["beats_motion"] = {key: beats_summary(rows, key) for key in BEATS_MOTION_KEYS}
    report["models"] = sections
    if samples > 0:
        idx = np.unique(np.linspace(0, n - 1, min(samples, n)).round().astype(int))
        report["samples"] = {"frames": win.frames[idx], "actions": win.actions[idx],
                             "episode_ids": win.episode_ids[idx], "offsets": win.offsets[idx],
                             "imagined": {label: imagined_of[label][idx] for label in labels},
                             "action_grid": grids, "background": background}
    return report


def evaluate_rollouts(model: ImaginingModel, data_dir: str | Path, horizon: int = 20, episodes: int | None = None,
                      starts_per_episode: int = 4, seed: int = 0, *, batch_size: int = 32, divergence_starts: int = 4,
                      divergence_mode: Literal["constant", "random"] = "constant", samples: int = 0,
                      progress: bool = False, on_corrupt: Literal["error", "skip"] = "error") -> dict[str, Any]:
    """Score the model's imagined rollouts on held-out episodes against the real frames and three references.

    :param model: a :class:`worldmodels.video.VideoPredictor` (or any :class:`ImaginingModel`) in eval mode.
    :param data_dir: a Reverie dataset of the model's game, frame size and colours with a held-out split.
    :param horizon: imagined steps ``H`` per rollout.
    :param episodes: held-out episodes used (drawn with ``seed``; ``None``: all long enough).
    :param starts_per_episode: windows per episode (drawn with ``seed``).
    :param seed: seeds the choice of windows, the action shuffle and random action sequences.
    :param divergence_starts: starts used by :func:`action_divergence` (the first windows; 0 skips the check).
    :param samples: if positive, ``report["samples"]`` holds numpy arrays of that many rollouts, spread over
        the windows, for pictures: ``frames`` uint8 ``[S, k + H, h, w]`` (real), ``imagined`` uint8
        ``[S, H, h, w]``, ``actions`` int64 ``[S, k + H]``, ``background`` (the held-out median frame, float64
        ``[h, w]`` on the [0, 1] scale, :func:`worldmodels.video.motion.background_frame`) and ``action_grid``
        (uint8 image) if the divergence check ran (colour: a trailing channel axis on frames and images). Pop it
        before :func:`to_json`.
    :param progress: show a tqdm bar over the rollouts.
    :return: a JSON-ready dict (see :func:`to_json` for inf): ``game``, ``data``, ``horizon``, ``context``,
        ``frame_shape`` (``[H, W]``), ``channels``, ``steps`` ``[1..H]``; per-step lists of length ``H`` for the
        model, ``mse``, ``psnr``, ``ssim``, ``moving_mse``, ``foreground_mse``, ``object_recall``,
        ``object_precision``, ``imagined_objects`` (:data:`PREDICTOR_KEYS`; :mod:`worldmodels.video.motion`)
        and for each reference ``r`` in :data:`BASELINES`, ``r_<key>`` for the same keys; the real frames'
        per-step counts ``moving_frames``, ``foreground_frames``, ``real_objects``; ``motion`` (the
        definitions' constants); ``reward_head`` (bool) and, for a model with a reward/game-over head,
        :data:`REWARD_KEYS` (:func:`reward_head_accuracy`); ``beats`` (:func:`beats_summary`) and
        ``beats_motion`` (the same for each error of :data:`BEATS_MOTION_KEYS`);
        ``action_divergence`` (:func:`action_divergence` without its grid); counts ``rollouts``, ``episodes``,
        ``eligible_episodes``; ``shuffled_actions_changed`` (share of actions the permutation changed);
        ``imagined_frames_per_second``.
    :raises DatasetError: missing data, no held-out split, another game, frame size or colours, actions the
        model does not know, or no episode with ``k + H`` frames.
    """
    report = evaluate_models({"model": model}, data_dir, horizon, episodes, starts_per_episode, seed,
                             batch_size=batch_size, divergence_starts=divergence_starts,
                             divergence_mode=divergence_mode, samples=samples, progress=progress,
                             on_corrupt=on_corrupt)
    # One model: its rows at the top level, beside the references' (the report layout before comparisons).
    section = report.pop("models")["model"]
    for key in ("compare", "mean_frame_of"):
        report.pop(key)
    report.update(section)
    report["game"] = model.game
    if "samples" in report:
        pictures = report["samples"]
        pictures["imagined"] = pictures["imagined"]["model"]
        grid = pictures.pop("action_grid").get("model")
        if grid is not None:
            pictures["action_grid"] = grid
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
