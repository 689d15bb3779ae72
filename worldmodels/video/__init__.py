"""Action-conditional video prediction (Oh et al. 2015): Reverie's imagination.

- :class:`VideoPredictor` (:mod:`worldmodels.video.model`): the feedforward and recurrent predictors, a
  :class:`worldmodels.protocols.WorldModel`; :func:`load_world_model` loads one from a run.
- :mod:`worldmodels.video.networks`: encoders, the multiplicative action transform, decoders.
- :mod:`worldmodels.video.train`: `reverie fit-world-model` (the 1-, 3-, 5-step curriculum).
"""

from __future__ import annotations

from worldmodels.video.config import ModelConfig, PhaseConfig, VideoFitConfig
from worldmodels.video.model import RolloutState, VideoPredictor, load_world_model

__all__ = ["ModelConfig", "PhaseConfig", "RolloutState", "VideoFitConfig", "VideoPredictor", "load_world_model"]
