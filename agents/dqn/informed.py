"""Informed exploration (Oh, Guo, Lee, Lewis and Singh 2015, Sec. 4.3): explore towards the least visited
predicted frame.

Epsilon-greedy picks a uniformly random action with probability epsilon. Informed exploration, with the same
probability and schedule, asks an action-conditional world model for the next frame under *every* action and
takes the action whose predicted frame has been visited least, the visit count being a kernel sum over the
last ``d`` frames of that env's trajectory::

    n_D(x) = sum_{i=1..|D|} k(x, x_i)
    k(x, y) = exp(-sum_j min(max((x_j - y_j)^2 - delta, 0), 1) / sigma)

``j`` runs over the pixels, ``D`` holds the last ``d`` frames the env showed (the current one included). Ties
(e.g. a model that predicts the same frame for every action) are broken uniformly at random, so the strategy
falls back to epsilon-greedy where the model sees no difference. Greedy steps use the Q-network as usual.

Constants and scale (our reading of the paper; all configurable): ``delta = 0``, ``sigma = 100`` and ``d = 20``
are the paper's values (``exploration.informed_delta``, ``informed_sigma``, ``informed_history``). The pixel scale
is not stated with the kernel. We compare grey levels, 0..255 (``exploration.informed_pixel_scale = 255``): then
each pixel's term ``min(max(d^2 - delta, 0), 1)`` is 1 wherever the frames differ at all and 0 where they agree, so
the sum counts differing pixels and ``sigma = 100`` reads "100 differing pixels make a frame e times less
familiar". That is the only scale on which the clip at 1 does anything when ``delta = 0``. On the [0, 1] scale
(``informed_pixel_scale = 1``) the clip never binds, the sum is a squared distance of order 0.1 to 1 for a moving
sprite, and with ``sigma = 100`` every count sits within 1% of ``d``: measured on Breakout, the chosen frames'
counts averaged 19.9 of 20. The paper's trajectory memory is kept per env here and is not cleared at episode ends (after
``d`` steps of a new game the old game's frames are gone).

Cost: one batched world-model step of ``B x A`` predictions per vector step, for the ``B`` envs that explore on
that step only (none are predicted when no env explores), plus ``B x A x d`` kernel evaluations of 84x84 pixels.

Where it lives: :func:`agents.dqn.actor.make_dqn_parts` builds an :class:`InformedExplorationPolicy` in every
actor when ``exploration.strategy == "informed"``, loading the world model from ``exploration.world_model``
inside the actor's process (Ray actors receive the path, never the model). Evaluation (``reverie evaluate``)
stays epsilon-greedy with ``exploration.eval_eps``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.dqn.actor import EpsilonGreedyPolicy
from agents.dqn.config import DQNConfig
from agents.dqn.networks import QNetwork
from envs import TOY_GAMES, get_preset, num_actions, resolve_game


def kernel(x: np.ndarray, y: np.ndarray, sigma: float = 100.0, delta: float = 0.0) -> np.ndarray:
    """The paper's similarity of two frames, ``exp(-sum_j min(max((x_j - y_j)^2 - delta, 0), 1) / sigma)``.

    :param x, y: float arrays ``[..., H, W]`` on the [0, 1] scale (broadcast against each other).
    :param sigma: kernel width (the paper: 100), in squared [0, 1] pixel units summed over pixels.
    :param delta: per-pixel squared difference ignored as noise (the paper: 0).
    :return: float64 ``[...]`` in (0, 1]; 1 for identical frames.
    """
    d2 = np.square(np.asarray(x, np.float64) - np.asarray(y, np.float64))
    per_pixel = np.minimum(np.maximum(d2 - delta, 0.0), 1.0)
    return np.exp(-per_pixel.sum(axis=(-2, -1)) / sigma)


def visit_counts(candidates: np.ndarray, history: np.ndarray, valid: np.ndarray, sigma: float = 100.0,
                 delta: float = 0.0, scale: float = 255.0) -> np.ndarray:
    """n_D of each candidate frame: the kernel summed over that env's remembered frames.

    :param candidates: uint8 ``[B, A, H, W]``: the predicted next frame of each of A actions, per env.
    :param history: uint8 ``[B, d, H, W]``: each env's last ``d`` frames (in any order).
    :param valid: bool ``[B, d]``: which history slots hold a frame (False before ``d`` frames were seen).
    :param scale: pixels are compared on the ``[0, scale]`` scale (255: grey levels; 1: the [0, 1] scale).
    :return: float64 ``[B, A]``, each in ``[0, d]``.
    """
    x = candidates.astype(np.float32) * (scale / 255.0)
    counts = np.zeros(candidates.shape[:2], np.float64)
    # One history slot at a time: [B, A, H, W] temporaries instead of [B, A, d, H, W] (160 MB at 16 x 18 x 20).
    for i in range(history.shape[1]):
        y = history[:, i].astype(np.float32)[:, None] * (scale / 255.0)
        counts += np.where(valid[:, i, None], kernel(x, y, sigma, delta), 0.0)
    return counts


def predict_next_frames(model: Any, obs: np.ndarray) -> np.ndarray:
    """Every action's predicted next frame, in one batch of ``B x A`` one-step predictions.

    :param model: a ``worldmodels.video`` world model (``context`` k <= S, ``num_actions`` A).
    :param obs: uint8 ``[B, S, H, W]``, stacks of the last S frames, oldest first.
    :return: uint8 ``[B, A, H, W]``: entry ``[b, a]`` is the frame predicted after action ``a`` from ``obs[b]``.
    """
    b, a, k = len(obs), int(model.num_actions), int(model.context)
    context = np.repeat(obs[:, -k:], a, axis=0)              # [B*A, k, H, W]: env b's context A times
    actions = np.tile(np.arange(a, dtype=np.int64), b)       # [B*A]: 0..A-1 for each env
    with torch.inference_mode():
        _, frames = model.step(model.initial(context), actions)
    frames = np.asarray(frames, dtype=np.uint8)
    return frames.reshape((b, a) + frames.shape[1:])


class InformedExplorationPolicy(EpsilonGreedyPolicy):
    """Epsilon-greedy on the Q-network, but exploring towards the least visited predicted frame.

    The epsilon schedule (linear or Ape-X), ``set_weights`` and the ``{"q": float32 [N, A]}`` extras are those of
    :class:`EpsilonGreedyPolicy`. Each :meth:`act` call appends the newest frame of every observation to that
    env's history of the last ``history`` frames, then scores the predicted frames of the exploring envs against
    it (see the module docstring).

    :param network: the Q-network. :param world_model: the ``worldmodels.video`` model (same game, same actions).
    :param cfg: full training config. :param actor_id: index of this actor. :param seed: seeds the exploration RNG.
    :param fixed_epsilon: overrides the schedule.
    :param history, sigma, delta: ``d``, ``sigma``, ``delta`` of the kernel; default from ``cfg.exploration``.
    """

    def __init__(self, network: QNetwork, world_model: Any, cfg: DQNConfig, actor_id: int, seed: int,
                 fixed_epsilon: float | None = None, history: int | None = None, sigma: float | None = None,
                 delta: float | None = None) -> None:
        super().__init__(network, cfg, actor_id, seed, fixed_epsilon)
        if int(world_model.num_actions) != self.num_actions:
            raise ValueError(f"the world model has {world_model.num_actions} actions, the Q-network "
                             f"{self.num_actions}")
        self.model = world_model
        ex = cfg.exploration
        self.history = ex.informed_history if history is None else history
        self.sigma = ex.informed_sigma if sigma is None else sigma
        self.delta = ex.informed_delta if delta is None else delta
        self.scale = ex.informed_pixel_scale
        if self.history < 1 or not self.sigma > 0 or self.delta < 0:
            raise ValueError(f"need history >= 1, sigma > 0 and delta >= 0; got {self.history}, {self.sigma}, "
                             f"{self.delta}")
        self._frames: np.ndarray | None = None  # uint8 [N, d, H, W], a ring buffer over the second axis
        self._next = 0                           # slot the next frame goes to
        self._seen = 0                           # frames remembered so far (saturates at d)
        self._chosen_count_sum = 0.0
        self._explored = 0

    def remember(self, frames: np.ndarray) -> None:
        """Append each env's newest frame (uint8 ``[N, H, W]``) to its history, forgetting the oldest."""
        if self._frames is None or self._frames.shape[0] != len(frames):
            self._frames = np.zeros((len(frames), self.history) + frames.shape[1:], np.uint8)
            self._next = self._seen = 0
        self._frames[:, self._next] = frames
        self._next = (self._next + 1) % self.history
        self._seen = min(self._seen + 1, self.history)

    def explore(self, obs: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The informed action of envs ``rows`` (int ``[B]``) of ``obs`` (uint8 ``[N, S, H, W]``), scored against
        their histories (call :meth:`remember` with this step's frames first, as :meth:`act` does).

        :return: int64 actions ``[B]`` and the visit counts n_D of every action's predicted frame, float64 ``[B, A]``.
        """
        assert self._frames is not None, "call remember() before explore()"
        predicted = predict_next_frames(self.model, obs[rows])
        valid = np.zeros((len(rows), self.history), bool)
        valid[:, :self._seen] = True  # the ring fills slots 0..d-1 in order before wrapping
        counts = visit_counts(predicted, self._frames[rows], valid, self.sigma, self.delta, self.scale)
        # Uniform among the least visited (ties within rounding): no model preference -> epsilon-greedy.
        least = counts <= counts.min(axis=1, keepdims=True) * (1 + 1e-9) + 1e-300
        choice = np.array([self.rng.choice(np.flatnonzero(row)) for row in least], np.int64)
        return choice, counts

    def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:param obs: uint8 ``[N, S, 84, 84]``. :return: actions int64 ``[N]``, ``{"q": float32 [N, A]}``."""
        self.remember(obs[:, -1])
        return super().act(obs, frames, starts)

    def exploring_actions(self, obs: np.ndarray, explore: np.ndarray) -> np.ndarray:
        """The informed action where ``explore`` (bool ``[N]``) is True (0 elsewhere, unused)."""
        actions = np.zeros(len(explore), np.int64)
        rows = np.flatnonzero(explore)
        if len(rows):
            choice, counts = self.explore(obs, rows)
            actions[rows] = choice
            self._chosen_count_sum += float(counts[np.arange(len(rows)), choice].sum())
            self._explored += len(rows)
        return actions

    def log_scalars(self, frames: int) -> dict[str, float]:
        """Epsilon, and the mean visit count n_D of the predicted frames chosen since the last call."""
        out = super().log_scalars(frames)
        if self._explored:
            out["explore/informed_visit_count"] = self._chosen_count_sum / self._explored
        self._chosen_count_sum, self._explored = 0.0, 0
        return out


def check_world_model(cfg: DQNConfig, model: Any) -> None:
    """Check that a world model can drive informed exploration of ``cfg``'s game.

    :raises ValueError: naming ``exploration.world_model`` when the model was trained on another game, has
        another action count, predicts frames of another size than 84x84, or needs more context frames than
        the observation stack holds.
    """
    key = f"exploration.world_model={cfg.exploration.world_model!r}"
    game = cfg.env.game
    model_game = str(getattr(model, "game", ""))

    def canonical(name: str) -> str:
        return name if name in TOY_GAMES else resolve_game(name)

    try:
        same_game = canonical(model_game) == canonical(game)
    except ValueError:
        same_game = False
    if not same_game:
        raise ValueError(f"{key} was trained on {model_game!r}, but env.game={game!r}; train a world model on "
                         f"{game} (reverie collect, then reverie fit-world-model) or change env.game.")
    actions = num_actions(game, cfg.env.preset)
    if int(model.num_actions) != actions:
        raise ValueError(f"{key} has {model.num_actions} actions, but {game} with env.preset={cfg.env.preset!r} "
                         f"has {actions}; the model must be trained on data of the same action set.")
    if tuple(model.frame_shape) != (84, 84):
        raise ValueError(f"{key} predicts frames of shape {tuple(model.frame_shape)}; DQN observes 84x84 frames.")
    stack = get_preset(cfg.env.preset).stack
    if int(model.context) > stack:
        raise ValueError(f"{key} needs {model.context} context frames; observations hold only {stack}.")


def load_informed_world_model(cfg: DQNConfig) -> Any:
    """Load ``exploration.world_model`` with ``worldmodels.video.load_world_model`` and check it fits ``cfg``.

    Called by :func:`agents.dqn.train.train` before any actor starts (to fail early, with a clear message) and by
    each actor's :func:`~agents.dqn.actor.make_dqn_parts`.

    :raises ValueError: the path is empty or does not exist, or :func:`check_world_model` fails.
    """
    path = cfg.exploration.world_model
    if not path:
        raise ValueError("exploration.strategy='informed' needs exploration.world_model: the run directory or "
                         "checkpoint of a world model trained on env.game (reverie fit-world-model).")
    if not Path(path).exists():
        raise ValueError(f"exploration.world_model={path!r} does not exist (relative paths start at "
                         f"{Path.cwd()}); train one with `reverie fit-world-model` and set "
                         "exploration.world_model=RUN_DIR, or use exploration.strategy=epsilon_greedy.")
    from worldmodels.video import load_world_model

    try:
        model = load_world_model(path)
    except (FileNotFoundError, ValueError) as err:  # e.g. a run directory without checkpoints yet
        raise ValueError(f"exploration.world_model={path!r} could not be loaded: {err}") from err
    check_world_model(cfg, model)
    return model
