"""The world model as the Dyna learner sees it: one small protocol, :class:`DynaWorldModel`, and its two makings,
the grid model on MinAtar (:class:`GridDyna`) and the video predictor on Atari (:class:`VideoDyna`).

The learner samples real transitions, keeps the held-out window and the imagined buffer, and runs the policy; the
world model fits, scores and imagines. Both sides speak the same transitions (the arrays of
:data:`agents.dyna.imagined.FIELDS`):

- real transitions, as the model reads them: ``obs`` the model's input (MinAtar: the frame ``[C, H, W]``, or the
  history ``[context, C, H, W]`` with ``world_model.context > 1``; Atari: the observation's ``[4, 84, 84]`` stack,
  which is the video model's context), ``next_obs`` the next observation's newest frame, ``actions``, ``rewards``
  (DQN's, clipped if ``agent.clip_rewards``) and ``terminals``;
- imagined transitions, as the Q-network reads them: ``obs`` its observation (MinAtar's frame, Atari's stack) and
  ``next_obs`` the newest frame of the next one (MinAtar: the whole next observation; Atari: the stack shifted by
  one with that frame appended, :func:`next_observation`), five frames per Atari transition instead of eight.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from agents.dyna.config import DynaConfig, world_model_family
from worldmodels.grid import GridModelTrainer, GridWorldModel, ImaginedBatch, one_step_metrics
from worldmodels.grid import branched_rollouts as grid_rollouts
from worldmodels.grid import check_compatible as grid_compatible
from worldmodels.video import online

#: A policy for imagination: the Q-network's observations ``[B, *obs_shape]`` -> actions int64 ``[B]``.
Policy = Any


class DynaWorldModel(Protocol):
    """What the Dyna learner needs of a world model (see the module docstring for the transitions' layout)."""

    @property
    def model(self) -> nn.Module:
        """The network (its ``train()``/``eval()`` modes are the learner's; :class:`envs.ImaginedEnv` drives it)."""
        ...

    @property
    def trainer(self) -> Any:
        """Its trainer (``updates``: Adam steps taken)."""
        ...

    @property
    def context(self) -> int:
        """Real frames the model reads."""
        ...

    def fit(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One update on real transitions; returns the ``worldmodel/`` scalars of the update."""
        ...

    def score(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One-step scores on real transitions (the held-out window) beside copy-last, as ``worldmodel/`` tags."""
        ...

    def branch(self, starts: np.ndarray, policy: Policy, k: int) -> ImaginedBatch:
        """``k`` imagined steps from real starts (the model's inputs) under ``policy``; the batch's ``obs`` are the
        Q-network's observations, its ``next_obs`` the newest frames of the next ones."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The model, its optimiser and its counts."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...

    def check_compatible(self, state: dict[str, Any]) -> None:
        """:raises ValueError: ``state`` (a :meth:`state_dict`) was made for other observations or actions."""
        ...


class GridDyna:
    """The grid world model (:mod:`worldmodels.grid`) of MinAtar's 0/1 channels."""

    def __init__(self, cfg: DynaConfig, frame_shape: tuple[int, ...], num_actions: int,
                 device: torch.device) -> None:
        model_cfg = replace(cfg.world_model, seed=cfg.run.seed + cfg.world_model.seed)
        self.model = GridWorldModel(model_cfg, tuple(frame_shape), num_actions, game=cfg.env.game).to(device)
        self.trainer = GridModelTrainer(self.model)
        self.context = cfg.world_model.context

    def fit(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        stats = self.trainer.train_step(batch)
        return {f"worldmodel/{tag}": stats[key] for key, tag in (("loss", "loss"), ("obs_nats", "obs_nats"),
                                                                  ("reward_nats", "reward_loss"),
                                                                  ("terminal_nats", "terminal_loss"))}

    def score(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        scores = one_step_metrics(self.model, batch["obs"], batch["actions"], batch["rewards"], batch["next_obs"],
                                  batch["terminals"], seed=0)
        model, copy_last = scores["model"], scores["copy_last"]
        return {"worldmodel/one_step_cell_error": model["cell_error"],
                "worldmodel/copy_last_cell_error": copy_last["cell_error"],
                "worldmodel/one_step_changed_cell_error": model["changed_cell_error"],
                "worldmodel/shuffled_actions_cell_error": scores["shuffled_actions"]["cell_error"],
                "worldmodel/reward_accuracy": model["reward_accuracy"],
                "worldmodel/terminal_accuracy": model["terminal_accuracy"]}

    def branch(self, starts: np.ndarray, policy: Policy, k: int) -> ImaginedBatch:
        return grid_rollouts(self.model, starts, policy, k)

    def state_dict(self) -> dict[str, Any]:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state)

    def check_compatible(self, state: dict[str, Any]) -> None:
        grid_compatible(state["model"], self.model.frame_shape, self.model.num_actions,
                        "the checkpoint's world model")


class VideoDyna:
    """The video predictor (:mod:`worldmodels.video`, ``video_model`` settings) of Atari's 84x84 frames, trained on
    the one-step objective (:mod:`worldmodels.video.online`)."""

    def __init__(self, cfg: DynaConfig, frame_shape: tuple[int, ...], num_actions: int,
                 device: torch.device) -> None:
        v = cfg.video_model
        if (v.height, v.width) != tuple(frame_shape) or v.channels != 1:
            raise ValueError(f"video_model.height={v.height}, video_model.width={v.width}, video_model.channels="
                             f"{v.channels}: this env's frames are {tuple(frame_shape)} (one grey channel); set them "
                             f"to match.")
        self.model = online.build_model(v, num_actions, game=cfg.env.game, seed=cfg.run.seed + v.seed).to(device)
        self.trainer = online.VideoModelTrainer(self.model, v)
        self.context = v.context
        self.frame_shape = tuple(int(s) for s in frame_shape)

    def fit(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        stats = self.trainer.train_step(batch)
        return {"worldmodel/loss": stats["loss"], "worldmodel/mse": stats["mse"],
                "worldmodel/moving_mse": stats["moving_mse"], "worldmodel/reward_loss": stats["head_loss"]}

    def score(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        scores = online.one_step_scores(self.model, batch["obs"], batch["actions"], batch["rewards"],
                                        batch["next_obs"], batch["terminals"])
        return {"worldmodel/one_step_mse": scores["mse"], "worldmodel/copy_last_mse": scores["copy_last_mse"],
                "worldmodel/reward_accuracy": scores["reward_accuracy"],
                "worldmodel/terminal_accuracy": scores["terminal_accuracy"]}

    def branch(self, starts: np.ndarray, policy: Policy, k: int) -> ImaginedBatch:
        return online.branched_rollouts(self.model, starts, policy, k)

    def state_dict(self) -> dict[str, Any]:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state)

    def check_compatible(self, state: dict[str, Any]) -> None:
        online.check_compatible(state["model"], self.frame_shape, self.model.num_actions, self.context,
                                "the checkpoint's world model")


def make_world_model(cfg: DynaConfig, frame_shape: tuple[int, ...], num_actions: int,
                     device: torch.device) -> GridDyna | VideoDyna:
    """The world model of ``cfg.env.game``'s family: the grid model on MinAtar, the video predictor on Atari.

    :raises ValueError: a game of a family without a world model (as :func:`agents.dyna.config.validate` says)."""
    family = world_model_family(cfg.env.game)
    if family == "grid":
        return GridDyna(cfg, frame_shape, num_actions, device)
    if family == "video":
        return VideoDyna(cfg, frame_shape, num_actions, device)
    raise ValueError(f"env.game={cfg.env.game!r} has no world model the dyna agent can learn.")


def next_observation(obs: np.ndarray, next_frames: np.ndarray, stack: int) -> np.ndarray:
    """The Q-network's next observations from its observations ``[N, *obs_shape]`` and the newest frames of the next
    ones: the frames themselves for one-frame observations (MinAtar), else the stacks ``[N, S, H, W]`` shifted by
    one with the new frame appended (Atari)."""
    if stack == 1:
        return next_frames
    return np.concatenate([obs[:, 1:], next_frames[:, None]], 1)
