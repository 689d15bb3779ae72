"""A2C, PPO and IMPALA on the runtime seam: the :class:`agents.runtime.algorithm.Builder` the generic loop trains
with. Actors build ``make_ac_parts`` (vector env, sampling policy with its LSTM state, trajectory adder); the driver
holds an :class:`ActorCriticLearner`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.actor_critic.actor import make_ac_parts
from agents.actor_critic.config import ActorCriticConfig, validate
from agents.actor_critic.evaluate import evaluate_policy
from agents.actor_critic.learning import ActorCriticLearner
from agents.runtime.algorithm import ActorSetup, EnvSpec, EvalResult


class ActorCriticBuilder:
    """One learner, three objectives (``agent.loss``: a2c, ppo, impala); feed-forward or LSTM core."""

    name = "actor_critic"
    config_class = ActorCriticConfig

    def validate(self, cfg: ActorCriticConfig) -> None:
        validate(cfg)

    def prepare(self, cfg: ActorCriticConfig) -> ActorCriticConfig:
        return cfg  # nothing to load before the actors start

    def actor_setup(self, cfg: ActorCriticConfig, distributed: bool) -> ActorSetup:
        return ActorSetup(make_ac_parts)

    def make_learner(self, cfg: ActorCriticConfig, spec: EnvSpec, device: torch.device) -> ActorCriticLearner:
        return ActorCriticLearner(spec, cfg, device)

    def evaluate(self, cfg: ActorCriticConfig, weights: Any, episodes: int, seed: int,
                 record: list[np.ndarray] | None = None) -> EvalResult:
        return evaluate_policy(cfg, weights, episodes, seed=seed, record=record)

    def checkpoint_weights(self, ckpt: dict[str, Any]) -> Any:
        return ActorCriticLearner.checkpoint_weights(ckpt)


BUILDER = ActorCriticBuilder()
