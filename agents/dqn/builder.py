"""DQN on the runtime seam: the :class:`agents.runtime.algorithm.Builder` the generic loop trains with.

Actors build ``make_dqn_parts`` (epsilon-greedy or informed policy, n-step adder with the optional density bonus,
trackers) in their own process; the driver holds a :class:`DQNReplayLearner` (replay + Double DQN update). With a
shared density model in Ray mode, a :class:`DensityServer` Ray actor is started here, its state checkpointed with
the run and the actor killed when the run ends.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.dqn.actor import DensityServer, make_dqn_parts
from agents.dqn.config import DQNConfig, validate
from agents.dqn.evaluate import evaluate_policy
from agents.dqn.learning import DQNReplayLearner
from agents.runtime.algorithm import ActorSetup, EnvSpec, EvalResult


class DQNBuilder:
    """Double/dueling/n-step/prioritised DQN (with density bonus, mixed Monte Carlo return, informed exploration)."""

    name = "dqn"
    config_class = DQNConfig

    def validate(self, cfg: DQNConfig) -> None:
        validate(cfg)

    def prepare(self, cfg: DQNConfig) -> DQNConfig:
        """``cfg``, or with informed exploration a copy whose world model path is absolute (actors in Ray workers may
        start in another directory); fails here, before any actor starts, if that model is missing or fits another
        game."""
        if cfg.exploration.strategy != "informed":
            return cfg
        from agents.dqn.informed import load_informed_world_model

        load_informed_world_model(cfg)
        path = str(Path(cfg.exploration.world_model).resolve())
        return dataclasses.replace(cfg, exploration=dataclasses.replace(cfg.exploration, world_model=path))

    def actor_setup(self, cfg: DQNConfig, distributed: bool) -> ActorSetup:
        if not (distributed and cfg.exploration.bonus != "none" and cfg.exploration.shared_density):
            return ActorSetup(make_dqn_parts)
        import ray

        # num_cpus=0: on a small machine a reserved CPU would keep an actor from being placed; the server's work
        # (about 1 ms per CTS frame) then competes with the actors for cores.
        name = f"reverie-density-{uuid.uuid4().hex[:12]}"  # unique: several runs may share a cluster
        # Any: a Ray actor handle, whose methods' `.remote` the type system cannot follow (see RayRuntime.actors).
        server: Any = ray.remote(num_cpus=0, max_restarts=0)(DensityServer).options(name=name).remote(
            cfg.exploration.bonus, cfg.exploration.beta)
        return ActorSetup(functools.partial(make_dqn_parts, density_server=name),
                          close=lambda: ray.kill(server),
                          get_state=lambda: ray.get(server.state_dict.remote()),
                          set_state=lambda state: ray.get(server.load_state_dict.remote(state)),
                          extras={"density_server": server})

    def make_learner(self, cfg: DQNConfig, spec: EnvSpec, device: torch.device) -> DQNReplayLearner:
        return DQNReplayLearner(spec.num_actions, spec.obs_shape, spec.frame_shape, spec.stack, spec.frame_skip, cfg,
                                device)

    def evaluate(self, cfg: DQNConfig, weights: Any, episodes: int, seed: int,
                 record: list[np.ndarray] | None = None) -> EvalResult:
        return evaluate_policy(cfg, weights, episodes, seed=seed, record=record)

    def checkpoint_weights(self, ckpt: dict[str, Any]) -> Any:
        return DQNReplayLearner.checkpoint_weights(ckpt)


BUILDER = DQNBuilder()
