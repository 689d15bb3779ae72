"""The video predictor learned online, from an agent's real one-step transitions (a world-model agent's Atari
model): its settings, its trainer, its one-step score and MBPO's branched rollouts on it.

`reverie fit-world-model` (:mod:`worldmodels.video.train`) fits a :class:`VideoPredictor` to a recorded dataset with a
curriculum of K-step objectives. A world-model agent instead fits it as it plays, on transitions sampled from its
replay, where an observation is the last ``context`` frames (Atari's stack of 4) and the next observation adds one
frame. Such a transition is a training window of ``context + 1`` frames (:func:`transition_windows`), and the
objective is the one-step one (K = 1, the curriculum's first stage; the reward/game-over head beside it).

- :class:`OnlineVideoConfig`: the model's sizes (:class:`worldmodels.video.config.ModelConfig`'s fields) plus the
  optimiser and the seed; :func:`validate` names bad keys under a prefix (``video_model.``).
- :class:`VideoModelTrainer`: Adam on those windows; :meth:`~VideoModelTrainer.state_dict` holds the model (with its
  config, action count and game), the optimiser's moments and the update count, so a restored trainer continues
  exactly; :func:`check_compatible` refuses a saved model made for other frames, context or actions.
- :func:`one_step_scores`: the one-step squared error per pixel ([0, 1] scale) on real transitions beside copy-last
  (the last real frame as the prediction), and the reward-sign and game-over accuracy of the head.
- :func:`branched_rollouts`: k imagined steps from each of B real observation stacks under a policy that reads the
  stacks (Janner et al. 2019), with a validity mask after imagined game overs, as
  :func:`worldmodels.grid.branched_rollouts` does for grids.

Ours: the model's mean frame (its input centring) is the mean of the first training batch's frames, set at the
first update (an online learner has no dataset to average beforehand); it is a buffer of the model, saved with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from worldmodels.common.checks import require_nonnegative, require_positive
from worldmodels.common.optim import clipped_step
from worldmodels.grid.rollout import ImaginedBatch
from worldmodels.video.config import ModelConfig, VideoFitConfig
from worldmodels.video.config import validate as validate_fit
from worldmodels.video.model import VideoPredictor

#: A policy for imagination: observation stacks uint8 ``[B, S, H, W]`` -> actions int64 ``[B]``.
StackPolicy = Callable[[np.ndarray], np.ndarray]


@dataclass
class OnlineVideoConfig(ModelConfig):
    """The video predictor's sizes (every field of :class:`worldmodels.video.config.ModelConfig`: architecture, body,
    context, frame size, layer widths, the reward head) and how it is trained online."""

    lr: float = 1e-3
    """Adam learning rate (video_cpu_ff's one-step stage: 1e-3)."""
    adam_beta1: float = 0.9
    """Adam's first-moment decay."""
    adam_beta2: float = 0.95
    """Adam's second-moment decay (the paper: 0.95)."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip of each update (0 disables)."""
    reward_loss_weight: float = 1.0
    """Weight of the reward-sign / game-over head's cross-entropy (its features are detached: it trains the head
    only)."""
    moving_loss_weight: float = 0.0
    """Weight of the squared error on the pixels that moved, added to the whole-frame error (video_cpu_motion: 0.03;
    see :func:`worldmodels.video.model.moving_pixel_mse`)."""
    seed: int = 0
    """Seeds the model's initial weights (a world-model agent adds its ``run.seed``)."""

    def model_config(self) -> ModelConfig:
        """The :class:`ModelConfig` part (what a :class:`VideoPredictor` is built from and saves)."""
        return ModelConfig(**{f.name: getattr(self, f.name) for f in fields(ModelConfig)})


def validate(cfg: OnlineVideoConfig, prefix: str = "video_model.") -> None:
    """The model's checks (those of `reverie fit-world-model`) and the optimiser's, keys named under ``prefix``.

    :raises ValueError: naming the key, the bad value and what would be valid.
    """
    try:
        validate_fit(VideoFitConfig(model=cfg.model_config()))
    except ValueError as err:  # fit-world-model's messages name model.<key>
        raise ValueError(str(err).replace("model.", prefix)) from err
    require_positive({f"{prefix}lr": cfg.lr})
    require_nonnegative({f"{prefix}max_grad_norm": cfg.max_grad_norm,
                         f"{prefix}reward_loss_weight": cfg.reward_loss_weight,
                         f"{prefix}moving_loss_weight": cfg.moving_loss_weight})
    for key in ("adam_beta1", "adam_beta2"):
        value = getattr(cfg, key)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{prefix}{key}={value} must lie in [0, 1).")


def build_model(cfg: OnlineVideoConfig, num_actions: int, game: str = "", seed: int | None = None) -> VideoPredictor:
    """A fresh :class:`VideoPredictor` whose weights are drawn with ``seed`` (default ``cfg.seed``), leaving torch's
    global generator as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed if seed is None else seed)
        return VideoPredictor(cfg.model_config(), num_actions, game=game)


def transition_windows(obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_frames: np.ndarray,
                       terminals: np.ndarray, context: int) -> dict[str, np.ndarray]:
    """One-step transitions as :meth:`VideoPredictor.loss`'s training windows of ``context + 1`` frames.

    :param obs: uint8 ``[B, S, H, W]`` (S >= ``context``): each observation's frames, oldest first (the last
        ``context`` are read). :param actions: int ``[B]``. :param rewards: float ``[B]`` (the head learns their sign).
    :param next_frames: uint8 ``[B, H, W]``: the newest frame of each next observation.
    :param terminals: bool ``[B]``: the game ended at this transition.
    :return: ``frames`` uint8 ``[B, context + 1, H, W]``, ``actions`` int64, ``rewards`` float32 and ``terminals``
        bool ``[B, context + 1]`` (the action and reward at frame ``context - 1``, the game over at frame
        ``context``; the other entries are unused by a one-step loss).
    """
    obs = np.asarray(obs)
    if obs.ndim != 4 or obs.shape[1] < context:
        raise ValueError(f"observations of shape {obs.shape}: need [B, S, H, W] with S >= context={context}.")
    b, k = len(obs), int(context)
    frames = np.concatenate([obs[:, -k:], np.asarray(next_frames, np.uint8)[:, None]], 1)
    acts = np.zeros((b, k + 1), np.int64)
    rews = np.zeros((b, k + 1), np.float32)
    over = np.zeros((b, k + 1), bool)
    acts[:, k - 1], rews[:, k - 1], over[:, k] = actions, rewards, terminals
    return {"frames": frames, "actions": acts, "rewards": rews, "terminals": over}


def check_compatible(state: dict[str, Any], frame_shape: tuple[int, ...], num_actions: int, context: int,
                     where: str = "the world-model checkpoint") -> None:
    """Refuse a saved video predictor (:meth:`VideoPredictor.state_dict_full`) made for other frames, context or
    actions than this env's.

    :raises ValueError: naming what the model was made for, what the env has, and the fix.
    """
    cfg = state.get("model_config", {})
    saved_frame: tuple[int, ...] = (int(cfg.get("height", -1)), int(cfg.get("width", -1)))
    if int(cfg.get("channels", 1)) != 1:
        saved_frame = (*saved_frame, int(cfg["channels"]))
    saved_context, saved_actions = int(cfg.get("context", -1)), int(state.get("num_actions", -1))
    want = tuple(int(s) for s in frame_shape)
    if saved_frame == want and saved_context == int(context) and saved_actions == int(num_actions):
        return
    game = state.get("game") or "an unnamed env"
    raise ValueError(
        f"{where} was trained on {game}: frames {saved_frame}, context {saved_context} and {saved_actions} actions, "
        f"but this env has frames {want}, context {int(context)} and {int(num_actions)} actions. Give a world model "
        f"trained on this env's game, or leave the checkpoint out to learn a new one from scratch.")


class VideoModelTrainer:
    """Fits a :class:`VideoPredictor` to real one-step transitions, one Adam update per :meth:`train_step`.

    :param model: the model to train. :param cfg: its optimiser settings (``lr``, Adam's betas, the gradient clip,
        the loss weights).
    """

    def __init__(self, model: VideoPredictor, cfg: OnlineVideoConfig) -> None:
        self.model, self.cfg = model, cfg
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))
        self.updates = 0

    def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One Adam update on a batch of real transitions.

        :param batch: ``obs`` uint8 ``[B, S, H, W]`` (S >= the model's context), ``actions`` int ``[B]``, ``rewards``
            float ``[B]``, ``next_obs`` uint8 ``[B, H, W]`` (the next observation's newest frame), ``terminals``
            bool ``[B]``.
        :return: floats ``loss``, ``mse`` (per pixel, [0, 1] scale, before the update), ``moving_mse``,
            ``head_loss`` (nats; 0 without a head), ``grad_norm`` (before clipping) and ``updates`` (after this one).
        """
        windows = transition_windows(batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"],
                                     batch["terminals"], self.model.context)
        if self.updates == 0:  # the input centring: the first batch's mean frame (see the module docstring)
            mean = windows["frames"].astype(np.float32).mean(axis=(0, 1)) / 255.0
            with torch.no_grad():
                self.model.mean.copy_(self.model._to_chw(torch.as_tensor(mean)))
        out = self.model.loss(windows, reward_weight=self.cfg.reward_loss_weight,
                              moving_weight=self.cfg.moving_loss_weight)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = clipped_step(self.optimizer, self.model.parameters(), self.cfg.max_grad_norm)
        self.updates += 1
        head = out["head_loss"]
        return {"loss": float(out["loss"].detach()), "mse": float(out["mse"].detach()),
                "moving_mse": float(out["moving_mse"].detach()),
                "head_loss": 0.0 if head is None else float(head.detach()), "grad_norm": grad_norm,
                "updates": float(self.updates)}

    def state_dict(self) -> dict[str, Any]:
        """The model (:meth:`VideoPredictor.state_dict_full`), the optimiser's state and the update count."""
        return {"model": self.model.state_dict_full(), "optimizer": self.optimizer.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output into this trainer's model.

        :raises ValueError: the saved model was made for other frames, context or actions.
        """
        m = self.model
        check_compatible(state["model"], (*m.frame_shape, *((m.channels,) if m.channels > 1 else ())),
                         m.num_actions, m.context, "the trainer state")
        m.load_state_dict(state["model"]["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])


@torch.inference_mode()
def one_step_scores(model: VideoPredictor, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                    next_frames: np.ndarray, terminals: np.ndarray) -> dict[str, float]:
    """The model's one-step prediction on real transitions, scored beside copy-last.

    :param obs: uint8 ``[B, S, H, W]`` (the last ``model.context`` frames are read); ``actions`` int ``[B]``;
        ``rewards`` float ``[B]``; ``next_frames`` uint8 ``[B, H, W]``; ``terminals`` bool ``[B]``.
    :return: ``mse`` and ``copy_last_mse`` (squared error per pixel on the [0, 1] scale of the model's prediction,
        and of the last real frame as the prediction), ``reward_accuracy`` (the head's most likely reward sign equals
        the real reward's) and ``terminal_accuracy`` (game-over probability > 0.5 equals the real game over); the
        accuracies are NaN for a model without a head.
    """
    x = model.frames_in(np.asarray(obs)[:, -model.context:])
    _, frame, logits = model.advance(model.start(x), model.one_hot(np.asarray(actions)))
    target = model.frames_in(np.asarray(next_frames)[:, None])[:, 0]
    mse = float((frame - target).pow(2).mean())
    copy_last = float((x[:, -1] - target).pow(2).mean())
    out = {"mse": mse, "copy_last_mse": copy_last, "reward_accuracy": float("nan"),
           "terminal_accuracy": float("nan")}
    if logits is not None:
        sign = torch.sign(torch.as_tensor(np.asarray(rewards, np.float32))).long() + 1
        over = torch.as_tensor(np.asarray(terminals, bool))
        logits = logits.cpu()
        out["reward_accuracy"] = float((logits[:, :3].argmax(1) == sign).float().mean())
        out["terminal_accuracy"] = float(((logits[:, 3] > 0) == over).float().mean())
    return out


def branched_rollouts(model: VideoPredictor, start_obs: np.ndarray, policy: StackPolicy, k: int, *,
                      terminal_threshold: float = 0.5) -> ImaginedBatch:
    """Roll the model ``k`` steps under ``policy`` from each of ``B`` real observation stacks (MBPO's branched
    rollouts, Janner et al. 2019).

    :param start_obs: uint8 ``[B, S, H, W]``, S >= ``model.context``: real observations (e.g. from replay), the
        policy's input; each step shifts the stack and appends the predicted frame.
    :param policy: stacks uint8 ``[B, S, H, W]`` -> actions int ``[B]`` in ``[0, model.num_actions)``; called once per
        step on every rollout (also those already ended, whose actions are then ignored).
    :param k: imagined steps per rollout (>= 1).
    :param terminal_threshold: a step ends the game when the predicted game-over probability exceeds it.
    :return: an :class:`worldmodels.grid.ImaginedBatch` whose ``obs`` are the stacks ``[k, B, S, H, W]`` the actions
        were chosen at and whose ``next_obs`` are the predicted frames ``[k, B, H, W]`` (the next stack is ``obs``
        shifted by one with that frame appended); ``rewards`` are the head's expected clipped rewards in [-1, 1];
        ``valid`` is False for the steps after a rollout's imagined game over.
    :raises ValueError: ``k`` is not a positive int, or the policy returns actions of the wrong shape or range.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k={k!r} must be a positive int: the imagined steps of each branched rollout.")
    current = np.asarray(start_obs, np.uint8)
    if current.ndim != 4 or current.shape[1] < model.context:
        raise ValueError(f"start observations of shape {current.shape}: need [B, S, H, W] with S >= "
                         f"{model.context} (the model's context).")
    state = model.initial(current[:, -model.context:])
    b = len(current)
    obs = np.empty((k, *current.shape), np.uint8)
    next_frames = np.empty((k, b, *current.shape[2:]), np.uint8)
    actions = np.empty((k, b), np.int64)
    rewards = np.empty((k, b), np.float32)
    terminals = np.empty((k, b), bool)
    valid = np.empty((k, b), bool)
    alive = np.ones(b, bool)
    for t in range(k):
        a = np.asarray(policy(current))
        if a.shape != (b,) or a.dtype.kind not in "iu" or (b and (a.min() < 0 or a.max() >= model.num_actions)):
            raise ValueError(f"the policy must return ints in [0, {model.num_actions}) of shape ({b},); got "
                             f"{a.dtype} of shape {a.shape}.")
        state, frame = model.step(state, a.astype(np.int64))
        obs[t], actions[t], next_frames[t] = current, a, frame
        rewards[t] = state.reward
        terminals[t] = state.terminal > terminal_threshold
        valid[t] = alive
        alive = alive & ~terminals[t]
        current = np.concatenate([current[:, 1:], frame[:, None]], 1)
    return ImaginedBatch(obs, actions, rewards, next_frames, terminals & valid, valid)
