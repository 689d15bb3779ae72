"""Dyna on the runtime seam: DQN's builder (its actors, evaluation and checkpointed weights) with Dyna's config and
learner. Actors are DQN's (``make_dqn_parts``: epsilon-greedy policy, one-step adder, the env's trackers): they act
in the real env only; imagination happens in the learner (:mod:`agents.dyna.learning`)."""

from __future__ import annotations

import torch

from agents.dqn.builder import DQNBuilder
from agents.dyna.config import DynaConfig, validate
from agents.dyna.learning import DynaLearner
from agents.runtime.algorithm import EnvSpec


class DynaBuilder(DQNBuilder):
    """DQN learning from real and imagined transitions (MBPO's branched rollouts of a grid world model)."""

    name = "dyna"
    config_class = DynaConfig

    def validate(self, cfg: DynaConfig) -> None:  # type: ignore[override]
        validate(cfg)

    def make_learner(self, cfg: DynaConfig, spec: EnvSpec, device: torch.device) -> DynaLearner:  # type: ignore[override]
        return DynaLearner(spec.num_actions, spec.obs_shape, spec.frame_shape, spec.stack, spec.frame_skip, cfg,
                           device)


BUILDER = DynaBuilder()
