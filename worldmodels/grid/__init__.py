"""World models of MinAtar-style grids: 0/1 object channels ``[C, H, W]``, one frame per observation.

- :class:`GridWorldModel` (:mod:`worldmodels.grid.model`): action-conditional prediction of the next observation
  (Oh et al. 2015) as per-cell, per-channel Bernoullis, with reward and game-over heads (Kaiser et al. 2019,
  SimPLe), from the current frame or, with ``context > 1``, the last few (MinAtar hides some timers); a
  :class:`worldmodels.protocols.WorldModel` that drives :class:`envs.ImaginedEnv`.
  :class:`GridModelTrainer` fits it to real transitions; :func:`save_grid_world_model` /
  :func:`load_grid_world_model` store it, and loading refuses a model made for another observation shape or action
  count.
- :func:`branched_rollouts` (:mod:`worldmodels.grid.rollout`): k-step imagined rollouts branched from real states
  (Janner et al. 2019, MBPO), with a validity mask after imagined game overs.
- :mod:`worldmodels.grid.metrics`: one-step and open-loop scores on held-out real transitions, beside copy-last and
  shuffled actions (:func:`rollout_metrics`: per horizon step, what ``reverie imagine`` reports);
  :mod:`worldmodels.grid.fit_check`: a few-minute fit on random-policy data, scored so.
- :mod:`worldmodels.grid.episodes`: real episodes played under a policy and the open-loop windows cut from them;
  :mod:`worldmodels.grid.pictures`: channels in colour, imagined rollouts beside real ones as GIF frames.
"""

from __future__ import annotations

from worldmodels.grid.config import GridWorldModelConfig, SamplingChoice, validate
from worldmodels.grid.episodes import Episode, Windows, play_episodes, sample_windows
from worldmodels.grid.metrics import (
    frame_scores,
    one_step_metrics,
    open_loop_errors,
    open_loop_rollout,
    rollout_metrics,
)
from worldmodels.grid.model import (
    GridModelTrainer,
    GridState,
    GridWorldModel,
    check_compatible,
    load_grid_world_model,
    save_grid_world_model,
)
from worldmodels.grid.rollout import ImaginedBatch, Policy, branched_rollouts

__all__ = ["Episode", "GridModelTrainer", "GridState", "GridWorldModel", "GridWorldModelConfig", "ImaginedBatch",
           "Policy", "SamplingChoice", "Windows", "branched_rollouts", "check_compatible", "frame_scores",
           "load_grid_world_model", "one_step_metrics", "open_loop_errors", "open_loop_rollout", "play_episodes",
           "rollout_metrics", "sample_windows", "save_grid_world_model", "validate"]
