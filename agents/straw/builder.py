"""STRAW / STRAWe on the runtime seam: the actor-critic builder (its actors, learner, evaluation) with STRAW's
config, whose ``build_network`` makes every network a planning core (:mod:`agents.straw.network`). A2C, PPO and
IMPALA all train it (``agent.loss``); with IMPALA, V-trace's importance ratios are those of the actions under the
gates the actor drew, which the learner's replay applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.actor_critic.builder import ActorCriticBuilder
from agents.straw.config import StrawConfig, validate


class StrawBuilder(ActorCriticBuilder):
    """The actor-critic learner training a STRAW policy core."""

    name = "straw"
    config_class = StrawConfig

    def validate(self, cfg: StrawConfig) -> None:  # type: ignore[override]
        validate(cfg)

    def pictures(self, cfg: StrawConfig, weights: Any, out_dir: Path) -> list[Path]:
        """The plans as pictures, into the run directory (:mod:`agents.straw.pictures`)."""
        from agents.straw.pictures import write_pictures

        return write_pictures(cfg, weights, out_dir, seed=cfg.run.seed)


BUILDER = StrawBuilder()
