"""How well a grid world model predicts held-out real transitions, beside two baselines.

The scores (all fractions in [0, 1]; ``nan`` where a denominator is empty, e.g. recall of a channel that is never
on):

- ``cell_error``: fraction of the cells (every channel of every cell) of the next observation predicted wrong, the
  prediction being each cell's more likely value (probability > 0.5). Mostly background: a model that copies the
  last frame scores well on it, so also
- ``changed_cell_error``: the same among the cells that changed between the observation and the next one (where
  something moved, appeared or vanished; copy-last gets every one wrong, 1.0 by construction);
- ``frame_exact``: fraction of transitions whose whole next observation is predicted exactly;
- ``object_recall`` / ``object_precision``: of the cells that are 1 in the real next observation, the fraction
  predicted 1; of the cells predicted 1, the fraction that are 1 (pooled over channels and transitions), and the
  same per channel (``recall_per_channel``, ``precision_per_channel``, lists of C);
- ``reward_accuracy``: the most likely reward equals the real one (rounded and clipped to ``0..max_reward`` as
  in training); ``reward_recall``: that accuracy among the transitions with a non-zero reward (rare: a model that
  always says 0 is accurate and useless);
- ``terminal_accuracy``: ``game-over probability > 0.5`` equals the real flag; ``terminal_recall``: the fraction of
  real game overs predicted.

The baselines, for the same transitions (ours, as :mod:`worldmodels.video.evaluate` does for the video models):

- ``copy_last``: the next observation is the current one, the reward 0 and no game over;
- ``shuffled_actions``: the model itself, with the actions permuted across the batch. A model that ignores the
  action scores as well shuffled as not; the gap shows how much the action informs the prediction (a permutation
  leaves about 1/A of the actions unchanged, so the gap understates it slightly).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from worldmodels.grid.model import GridWorldModel

__all__ = ["ROLLOUT_KEYS", "frame_scores", "one_step_metrics", "open_loop_errors", "open_loop_rollout",
           "rollout_metrics"]


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


def frame_scores(pred: np.ndarray, truth: np.ndarray, previous: np.ndarray) -> dict[str, Any]:
    """Frame scores of predictions (see the module docstring).

    :param pred: predicted next observations, 0/1 (bool or uint8) ``[N, C, H, W]``.
    :param truth: the real next observations, the same shape.
    :param previous: the real observations before them (to find the cells that changed), the same shape.
    :return: floats ``cell_error``, ``changed_cell_error``, ``frame_exact``, ``object_recall``,
        ``object_precision`` and lists of C floats ``recall_per_channel``, ``precision_per_channel``.
    """
    p, t, prev = (np.asarray(x).astype(bool) for x in (pred, truth, previous))
    if p.shape != t.shape or p.shape != prev.shape or p.ndim != 4:
        raise ValueError(f"pred, truth and previous must share a shape [N, C, H, W]; got {p.shape}, {t.shape}, "
                         f"{prev.shape}.")
    wrong = p != t
    changed = t != prev
    tp = (p & t).sum(axis=(0, 2, 3)).astype(np.float64)
    positives = t.sum(axis=(0, 2, 3)).astype(np.float64)
    predicted = p.sum(axis=(0, 2, 3)).astype(np.float64)
    return {
        "cell_error": float(wrong.mean()) if wrong.size else math.nan,
        "changed_cell_error": _ratio(float((wrong & changed).sum()), float(changed.sum())),
        "frame_exact": float((~wrong).reshape(len(p), -1).all(axis=1).mean()) if len(p) else math.nan,
        "object_recall": _ratio(tp.sum(), positives.sum()),
        "object_precision": _ratio(tp.sum(), predicted.sum()),
        "recall_per_channel": [_ratio(a, b) for a, b in zip(tp, positives)],
        "precision_per_channel": [_ratio(a, b) for a, b in zip(tp, predicted)],
    }


def _head_scores(reward_pred: np.ndarray, rewards: np.ndarray, terminal_pred: np.ndarray,
                 terminals: np.ndarray, max_reward: int) -> dict[str, float]:
    """Reward and game-over accuracies (see the module docstring): ``reward_pred`` and ``terminal_pred`` are the
    predicted reward values and bools ``[N]``."""
    truth = np.clip(np.round(np.asarray(rewards, np.float64)), 0, max_reward)
    hit = np.asarray(reward_pred, np.float64) == truth
    nonzero = truth != 0
    over = np.asarray(terminals).astype(bool)
    said = np.asarray(terminal_pred).astype(bool)
    return {
        "reward_accuracy": float(hit.mean()) if len(hit) else math.nan,
        "reward_recall": _ratio(float((hit & nonzero).sum()), float(nonzero.sum())),
        "terminal_accuracy": float((said == over).mean()) if len(over) else math.nan,
        "terminal_recall": _ratio(float((said & over).sum()), float(over.sum())),
    }


def _model_outputs(model: GridWorldModel, obs: np.ndarray, actions: np.ndarray,
                   batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Most likely next observation (bool ``[N, C, H, W]``), most likely reward (float ``[N]``), game-over
    decision (bool ``[N]``) and per-cell probabilities (float ``[N, C, H, W]``), in chunks of ``batch_size``."""
    frames, rewards, overs, probs = [], [], [], []
    for i in range(0, len(obs), batch_size):
        out = model.predict(obs[i: i + batch_size], actions[i: i + batch_size])
        prob = out["cell_prob"].cpu().numpy()
        probs.append(prob)
        frames.append(prob > 0.5)
        rewards.append(model.reward_values[out["reward_prob"].argmax(dim=1)].cpu().numpy())
        overs.append(out["terminal_prob"].cpu().numpy() > 0.5)
    return np.concatenate(frames), np.concatenate(rewards), np.concatenate(overs), np.concatenate(probs)


def _bernoulli_nats(prob: np.ndarray, truth: np.ndarray) -> float:
    """Binary cross-entropy in nats per cell, summed over channels and averaged over cells and transitions (the
    training loss's ``obs_nats``)."""
    p = np.clip(prob.astype(np.float64), 1e-7, 1 - 1e-7)
    t = truth.astype(np.float64)
    nats = -(t * np.log(p) + (1 - t) * np.log1p(-p))
    return float(nats.sum(axis=1).mean())


def one_step_metrics(model: GridWorldModel, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                     next_obs: np.ndarray, terminals: np.ndarray, *, seed: int = 0,
                     batch_size: int = 1024) -> dict[str, dict[str, Any]]:
    """One-step scores of the model on real transitions, beside copy-last and shuffled actions.

    :param obs: uint8 ``[N, C, H, W]`` (0/1), real observations, or histories ``[N, T, C, H, W]`` (newest last)
        for a model with ``context > 1``. :param actions: int64 ``[N]``.
    :param rewards: float ``[N]``, the real rewards (game points). :param next_obs: uint8 ``[N, C, H, W]``.
    :param terminals: bool ``[N]``: ``next_obs`` ended the game.
    :param seed: seeds the permutation of the shuffled-actions baseline.
    :param batch_size: transitions per forward pass (memory only).
    :return: ``{"model": scores, "copy_last": scores, "shuffled_actions": scores}``, each the keys of
        :func:`frame_scores` plus ``reward_accuracy``, ``reward_recall``, ``terminal_accuracy``,
        ``terminal_recall`` and ``n`` (transitions); ``model`` and ``shuffled_actions`` also ``obs_nats``.
    """
    obs, next_obs = np.asarray(obs), np.asarray(next_obs)
    actions = np.asarray(actions, np.int64)
    n = len(obs)
    if not (len(actions) == len(rewards) == len(next_obs) == len(terminals) == n):
        raise ValueError(f"obs, actions, rewards, next_obs and terminals need the same length; got {n}, "
                         f"{len(actions)}, {len(rewards)}, {len(next_obs)}, {len(terminals)}.")
    max_reward = model.cfg.max_reward
    newest = obs if obs.ndim == 4 else obs[:, -1]
    was_training = model.training
    model.eval()
    try:
        out: dict[str, dict[str, Any]] = {}
        perm = np.random.default_rng(seed).permutation(n)
        for name, acts in (("model", actions), ("shuffled_actions", actions[perm])):
            frame, reward, over, prob = _model_outputs(model, obs, acts, batch_size)
            out[name] = {**frame_scores(frame, next_obs, newest), **_head_scores(reward, rewards, over, terminals,
                                                                               max_reward),
                         "obs_nats": _bernoulli_nats(prob, next_obs), "n": n}
        out["copy_last"] = {**frame_scores(newest, next_obs, newest),
                            **_head_scores(np.zeros(n), rewards, np.zeros(n, bool), terminals, max_reward), "n": n}
    finally:
        model.train(was_training)
    return {key: out[key] for key in ("model", "copy_last", "shuffled_actions")}


def open_loop_errors(model: GridWorldModel, frames: np.ndarray, actions: np.ndarray) -> dict[str, list[float]]:
    """Cell errors of K-step open-loop predictions (each prediction is the next step's input; never the truth).

    :param frames: uint8 ``[B, c + K, C, H, W]`` with ``c = model.context``: real windows within one episode each
        (no game over before the last frame); the first ``c`` frames are the real context the rollout starts from.
    :param actions: int64 ``[B, K]`` (further columns are ignored): ``actions[:, t]`` leads from frame ``c - 1 + t``
        to frame ``c + t``.
    :return: lists of K floats: ``model`` and ``copy_last`` (frame ``c - 1`` held) cell errors, and
        ``model_changed``, the model's error among the cells that differ from frame ``c - 1`` (where the game moved
        since the rollout began; copy-last gets all of them wrong), at each step 1..K.
    """
    frames = np.asarray(frames)
    c = model.context
    steps = frames.shape[1] - c
    acts = np.asarray(actions, np.int64)[:, :max(steps, 0)]
    if frames.ndim != 5 or steps < 1 or acts.shape != (len(frames), steps):
        raise ValueError(f"frames must be [B, context + K, C, H, W] with context = {c}, K >= 1, and actions "
                         f"[B, K]; got {frames.shape} and {np.shape(actions)}.")
    first = frames[:, c - 1].astype(bool)
    history = torch.as_tensor(frames[:, :c])
    out: dict[str, list[float]] = {"model": [], "copy_last": [], "model_changed": []}
    for t in range(steps):
        prob = model.predict(history, acts[:, t])["cell_prob"]
        pred = (prob > 0.5).cpu().numpy()
        truth = frames[:, c + t].astype(bool)
        changed = truth != first
        out["model"].append(float((pred != truth).mean()))
        out["copy_last"].append(float((first != truth).mean()))
        out["model_changed"].append(_ratio(float(((pred != truth) & changed).sum()), float(changed.sum())))
        history = torch.cat([history[:, 1:], torch.as_tensor(pred.astype(np.uint8))[:, None]], dim=1)
    return out


@torch.no_grad()
def open_loop_rollout(model: GridWorldModel, history: np.ndarray, actions: np.ndarray,
                      batch_size: int = 256) -> dict[str, np.ndarray]:
    """The model's most likely open-loop rollout under given actions (each predicted frame is the next step's input;
    whatever ``cfg.sampling`` says, every step takes each cell's likelier value, the likeliest reward and "game
    over" when its probability exceeds 0.5, as :func:`one_step_metrics` scores).

    :param history: uint8 ``[B, T, C, H, W]`` (0/1), the real frames up to the start, newest last (see
        :meth:`GridWorldModel.history_in`), or ``[B, C, H, W]`` for a model with ``context = 1``.
    :param actions: int64 ``[B, K]``: ``actions[:, t]`` leads to step ``t + 1``.
    :param batch_size: rollouts imagined at once (memory only).
    :return: ``frames`` uint8 ``[B, K, C, H, W]``, ``rewards`` float32 ``[B, K]`` (game points), ``terminals`` bool
        ``[B, K]``.
    """
    acts = np.asarray(actions, np.int64)
    if acts.ndim != 2 or len(acts) != len(history):
        raise ValueError(f"actions must be [B, K] with B = {len(history)} rollouts, got shape {acts.shape}.")
    was_training = model.training
    model.eval()
    frames, rewards, terminals = [], [], []
    try:
        for i in range(0, len(acts), batch_size):
            h = model.history_in(history[i: i + batch_size])
            f, r, o = [], [], []
            for t in range(acts.shape[1]):
                out = model.predict(h, acts[i: i + batch_size, t])
                pred = (out["cell_prob"] > 0.5).float()
                f.append(pred.to(torch.uint8).cpu().numpy())
                r.append(model.reward_values[out["reward_prob"].argmax(dim=1)].cpu().numpy())
                o.append(out["terminal_prob"].cpu().numpy() > 0.5)
                h = torch.cat([h[:, 1:], pred[:, None]], dim=1)
            frames.append(np.stack(f, axis=1) if f else np.zeros((len(h), 0, *model.frame_shape), np.uint8))
            rewards.append(np.stack(r, axis=1) if r else np.zeros((len(h), 0)))
            terminals.append(np.stack(o, axis=1) if o else np.zeros((len(h), 0), bool))
    finally:
        model.train(was_training)
    if not frames:
        return {"frames": np.zeros((0, acts.shape[1], *model.frame_shape), np.uint8),
                "rewards": np.zeros((0, acts.shape[1]), np.float32), "terminals": np.zeros((0, acts.shape[1]), bool)}
    return {"frames": np.concatenate(frames), "rewards": np.concatenate(rewards).astype(np.float32),
            "terminals": np.concatenate(terminals)}


#: The per-step scores of each predictor in :func:`rollout_metrics` (lists of K; the per-channel ones lists of K
#: lists of C).
ROLLOUT_KEYS = ("cell_error", "changed_cell_error", "frame_exact", "object_recall", "object_precision",
                "recall_per_channel", "precision_per_channel", "reward_accuracy", "reward_recall",
                "terminal_accuracy", "terminal_recall")


def rollout_metrics(model: GridWorldModel, history: np.ndarray, actions: np.ndarray, next_frames: np.ndarray,
                    rewards: np.ndarray, terminals: np.ndarray, valid: np.ndarray | None = None, *, seed: int = 0,
                    batch_size: int = 256) -> dict[str, Any]:
    """Open-loop scores at every horizon step on real windows, beside copy-last and shuffled actions.

    At step ``t`` the model has imagined ``t`` steps from the real start under the real actions
    (:func:`open_loop_rollout`); its frame is scored against the real frame after ``t`` actions with
    :func:`frame_scores` (``previous`` being the real start frame: ``changed_cell_error`` counts the cells that
    changed since the rollout began, all of which copy-last gets wrong), and its reward and game over as
    :func:`one_step_metrics` scores them. Only the windows whose real game has not ended before step ``t`` count
    (``valid``); the step that ends the game counts, with its real game over.

    - ``copy_last``: the start frame held, reward 0, no game over;
    - ``shuffled_actions``: the model under another window's action sequence (a seeded permutation of the
      windows), from its own start.

    :param history: uint8 ``[B, T, C, H, W]`` (0/1), the real frames up to each start, newest last (``[B, C, H, W]``
        for ``context = 1``). :param actions: int64 ``[B, K]``.
    :param next_frames: uint8 ``[B, K, C, H, W]``: the real frame after each action.
    :param rewards: float ``[B, K]``: the real rewards (game points). :param terminals: bool ``[B, K]``: the action
        ended the game. :param valid: bool ``[B, K]``: the step happened (None: all did).
    :param seed: seeds the permutation of the shuffled actions.
    :return: ``steps`` (1..K), ``windows`` (``[K]``: valid windows at each step), ``rewarded`` and ``game_overs``
        (``[K]``: of them, those with a non-zero reward / a real game over), and for each of ``model``,
        ``copy_last``, ``shuffled_actions`` a dict of :data:`ROLLOUT_KEYS`, each a list over steps (``nan`` where
        a denominator is empty).
    """
    hist = np.asarray(history)
    acts = np.asarray(actions, np.int64)
    truth = np.asarray(next_frames)
    b, k = acts.shape if acts.ndim == 2 else (-1, -1)
    ok = np.ones((max(b, 0), max(k, 0)), bool) if valid is None else np.asarray(valid, bool)
    if acts.ndim != 2 or len(hist) != b or truth.shape[:2] != (b, k) or truth.ndim != 5 \
            or np.shape(rewards) != (b, k) or np.shape(terminals) != (b, k) or ok.shape != (b, k):
        raise ValueError(f"give history [B, T, C, H, W], actions [B, K], next_frames [B, K, C, H, W] and rewards, "
                         f"terminals, valid [B, K]; got {hist.shape}, {np.shape(actions)}, {truth.shape}, "
                         f"{np.shape(rewards)}, {np.shape(terminals)}, {ok.shape}.")
    start = (hist if hist.ndim == 4 else hist[:, -1]).astype(bool)
    over = np.asarray(terminals, bool)
    perm = np.random.default_rng(seed).permutation(b)
    predicted = {"model": open_loop_rollout(model, hist, acts, batch_size),
                 "shuffled_actions": open_loop_rollout(model, hist, acts[perm], batch_size),
                 "copy_last": {"frames": np.repeat(start[:, None], k, axis=1), "rewards": np.zeros((b, k)),
                               "terminals": np.zeros((b, k), bool)}}
    truth_reward = np.clip(np.round(np.asarray(rewards, np.float64)), 0, model.cfg.max_reward)
    out: dict[str, Any] = {"steps": list(range(1, k + 1)), "windows": [int(v) for v in ok.sum(axis=0)],
                           "rewarded": [int(v) for v in ((truth_reward != 0) & ok).sum(axis=0)],
                           "game_overs": [int(v) for v in (over & ok).sum(axis=0)]}
    for name in ("model", "copy_last", "shuffled_actions"):
        pred = predicted[name]
        rows: dict[str, list[Any]] = {key: [] for key in ROLLOUT_KEYS}
        for t in range(k):
            v = ok[:, t]
            scores = {**frame_scores(pred["frames"][v, t], truth[v, t], start[v]),
                      **_head_scores(pred["rewards"][v, t], np.asarray(rewards)[v, t], pred["terminals"][v, t],
                                     over[v, t], model.cfg.max_reward)}
            for key in ROLLOUT_KEYS:
                rows[key].append(scores[key])
        out[name] = rows
    return out
