"""A quick check that a grid world model learns a game: fit it on random-policy transitions for a few minutes and
score it on held-out ones, beside copy-last and shuffled actions (:mod:`worldmodels.grid.metrics`).

``worldmodels`` never imports ``envs``, so the env is given, already built (a NextStep-autoreset vector env such as
``envs.make_env("minatar/breakout", num_envs=8)``)::

    OMP_NUM_THREADS=1 python -c "
    import json; from envs import make_env; from worldmodels.grid.fit_check import fit_check
    report = fit_check(make_env('minatar/breakout', num_envs=8), train_transitions=50_000, minutes=4)
    print(json.dumps(report, indent=1))"
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from worldmodels.grid.config import GridWorldModelConfig
from worldmodels.grid.metrics import one_step_metrics, open_loop_errors
from worldmodels.grid.model import GridModelTrainer, GridWorldModel

__all__ = ["collect_random_transitions", "fit_check", "open_loop_windows"]


def collect_random_transitions(env: Any, num_transitions: int, seed: int, history: int = 1) -> dict[str, np.ndarray]:
    """Real transitions of a uniformly random policy in a NextStep-autoreset vector env.

    The step that follows a game over (which ignores the action and returns a new game's first observation) is
    not a transition of the game and is left out.

    :param env: a vector env (``reset``, ``step``, ``num_envs``, ``single_action_space.n``), reset here with ``seed``.
    :param num_transitions: how many to keep (the last batch of steps is cut to size).
    :param seed: seeds the env's reset and the random actions.
    :param history: frames of each ``obs`` (a world model's ``context``): 1 gives ``[N, C, H, W]``; more gives
        ``[N, history, C, H, W]``, the newest last, zeros before the game's first frame.
    :return: ``obs`` uint8 ``[N, C, H, W]`` (or histories, above), ``actions`` int64 ``[N]``, ``rewards`` float32
        ``[N]``, ``next_obs`` uint8 ``[N, C, H, W]``, ``terminals`` bool ``[N]``, and for finding consecutive steps
        ``env_ids`` int64 ``[N]`` and ``episode_ids`` int64 ``[N]`` (per env, counting its games).
    """
    rng = np.random.default_rng(seed)
    n_envs, num_actions = int(env.num_envs), int(env.single_action_space.n)
    obs, _ = env.reset(seed=seed)
    past = np.zeros((n_envs, history, *obs.shape[1:]), np.uint8)  # each env's last frames, newest last
    past[:, -1] = obs
    just_ended = np.zeros(n_envs, bool)
    episode = np.zeros(n_envs, np.int64)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminals",
                                                           "env_ids", "episode_ids")}
    kept = 0
    while kept < num_transitions:
        actions = rng.integers(num_actions, size=n_envs).astype(np.int64)
        next_obs, reward, terminated, truncated, _ = env.step(actions)
        real = ~just_ended
        for key, value in (("obs", past if history > 1 else obs), ("actions", actions), ("rewards", reward),
                           ("next_obs", next_obs), ("terminals", terminated), ("env_ids", np.arange(n_envs)),
                           ("episode_ids", episode)):
            parts[key].append(np.asarray(value)[real].copy())
        kept += int(real.sum())
        episode = episode + just_ended  # a new game began at this step in the envs that had ended
        past = np.concatenate([past[:, 1:], np.asarray(next_obs, np.uint8)[:, None]], axis=1)
        past[just_ended, :-1] = 0  # these envs' next_obs is a new game's first frame: no history before it
        just_ended = np.asarray(terminated | truncated, bool)
        obs = next_obs
    out = {key: np.concatenate(value)[:num_transitions] for key, value in parts.items()}
    out["obs"] = out["obs"].astype(np.uint8)
    out["next_obs"] = out["next_obs"].astype(np.uint8)
    out["actions"] = out["actions"].astype(np.int64)
    out["rewards"] = out["rewards"].astype(np.float32)
    out["terminals"] = out["terminals"].astype(bool)
    return out


def open_loop_windows(data: dict[str, np.ndarray], horizon: int, max_windows: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``horizon`` consecutive transitions of one game each, from :func:`collect_random_transitions`'s
    output, for :func:`worldmodels.grid.metrics.open_loop_errors`.

    :return: ``(frames uint8 [W, horizon + 1, C, H, W], actions int64 [W, horizon])``, at most ``max_windows``
        windows drawn uniformly from all that exist (none crosses a game over: a terminal may only be the last step).
        With histories in ``data["obs"]``, the newest frame of each is used.
    """
    starts = []
    env_ids, episode_ids, terminals = data["env_ids"], data["episode_ids"], data["terminals"]
    for env_id in np.unique(env_ids):
        idx = np.flatnonzero(env_ids == env_id)  # this env's transitions, in order
        for j in range(len(idx) - horizon + 1):
            window = idx[j: j + horizon]
            if episode_ids[window[0]] == episode_ids[window[-1]] and not terminals[window[:-1]].any():
                starts.append(window)
    if not starts:
        shape = data["obs"].shape[-3:]
        return np.zeros((0, horizon + 1, *shape), np.uint8), np.zeros((0, horizon), np.int64)
    chosen = [starts[i] for i in rng.choice(len(starts), size=min(max_windows, len(starts)), replace=False)]
    newest = data["obs"] if data["obs"].ndim == 4 else data["obs"][:, -1]
    frames = np.stack([np.concatenate([newest[w[:1]], data["next_obs"][w]]) for w in chosen])
    actions = np.stack([data["actions"][w] for w in chosen])
    return frames, actions


def fit_check(env: Any, *, train_transitions: int = 50_000, heldout_transitions: int = 5_000, minutes: float = 4.0,
              max_updates: int = 1_000_000, batch_size: int = 64, horizon: int = 5, seed: int = 0,
              cfg: GridWorldModelConfig | None = None, log_every: int = 500) -> dict[str, Any]:
    """Fit a fresh :class:`GridWorldModel` on random-policy transitions and score it on held-out ones.

    Held-out transitions come from games played after the env is reset with another seed (``seed + 10_000``), so no
    held-out game is one the model trained on.

    :param env: a built NextStep vector env of the game (see the module docstring).
    :param train_transitions: real transitions to fit on (minibatches are drawn uniformly from them).
    :param heldout_transitions: real transitions to score on.
    :param minutes: wall-clock budget of the fitting (collection and scoring not counted).
    :param max_updates: stop earlier at this many updates.
    :param batch_size: transitions per Adam update.
    :param horizon: steps of the open-loop scores.
    :param seed: seeds collection, the model (unless ``cfg`` is given) and the minibatch draws.
    :param cfg: the model's settings (default: :class:`GridWorldModelConfig` with ``seed``).
    :param log_every: updates between the training-loss entries of the report.
    :return: a JSON-ready dict: ``game``, ``updates``, ``fit_seconds``, ``updates_per_second``, ``collect_seconds``,
        ``train_loss`` (a list of ``[update, loss]``), ``one_step`` (:func:`one_step_metrics`), ``open_loop``
        (:func:`open_loop_errors`, with ``windows``), and the settings used.
    """
    cfg = cfg or GridWorldModelConfig(seed=seed)
    start = time.perf_counter()
    train = collect_random_transitions(env, train_transitions, seed, cfg.context)
    heldout = collect_random_transitions(env, heldout_transitions, seed + 10_000, cfg.context)
    collect_seconds = time.perf_counter() - start
    model = GridWorldModel(cfg, tuple(train["obs"].shape[-3:]), int(env.single_action_space.n),
                           game=str(getattr(env, "game", "")))
    trainer = GridModelTrainer(model)
    rng = np.random.default_rng(seed)
    keys = ("obs", "actions", "rewards", "next_obs", "terminals")
    # Torch tensors once, so each update only gathers a minibatch.
    pool = {key: torch.as_tensor(train[key]) for key in keys}
    curve: list[list[float]] = []
    start = time.perf_counter()
    deadline = start + 60.0 * minutes
    window: list[float] = []
    while trainer.updates < max_updates and time.perf_counter() < deadline:
        idx = torch.as_tensor(rng.integers(len(train["obs"]), size=batch_size))
        metrics = trainer.train_step({key: pool[key][idx] for key in keys})
        window.append(metrics["loss"])
        if trainer.updates % log_every == 0:
            curve.append([trainer.updates, float(np.mean(window))])
            window = []
    fit_seconds = time.perf_counter() - start
    model.eval()
    one_step = one_step_metrics(model, heldout["obs"], heldout["actions"], heldout["rewards"], heldout["next_obs"],
                                heldout["terminals"], seed=seed)
    # context - 1 real steps before the rollout, then horizon imagined ones.
    c = cfg.context
    frames, actions = open_loop_windows(heldout, c - 1 + horizon, 512, np.random.default_rng(seed))
    open_loop: dict[str, Any] = {"windows": len(frames)}
    if len(frames):
        open_loop |= open_loop_errors(model, frames, actions[:, c - 1:])

    def clean(x: Any) -> Any:  # strict JSON has no NaN
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return clean({
        "game": model.game, "train_transitions": len(train["obs"]), "heldout_transitions": len(heldout["obs"]),
        "heldout_rewarded": int((heldout["rewards"] != 0).sum()), "heldout_terminals": int(heldout["terminals"].sum()),
        "batch_size": batch_size, "updates": trainer.updates, "fit_seconds": fit_seconds,
        "updates_per_second": trainer.updates / max(fit_seconds, 1e-9), "collect_seconds": collect_seconds,
        "train_loss": curve, "one_step": one_step, "open_loop": open_loop,
        "config": {k: (str(v) if not isinstance(v, (int, float)) else v) for k, v in vars(cfg).items()},
    })
