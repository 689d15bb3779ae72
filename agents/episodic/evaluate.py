"""MFEC evaluation: the runtime's evaluation games (:func:`agents.runtime.evaluate.play_games`; Machado protocol)
acting epsilon-greedily (``episodic.eval_epsilon``) on the memory as trained, which evaluation never writes."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.episodic.actor import MFECPolicy
from agents.episodic.config import MFECConfig
from agents.episodic.memory import EpisodicMemory
from agents.episodic.networks import make_key_network, make_memory
from agents.runtime.algorithm import EnvSpec, EvalResult
from agents.runtime.evaluate import play_games


def evaluate_policy(cfg: MFECConfig, weights: EpisodicMemory | dict[str, Any], episodes: int, seed: int = 12345,
                    preset: str = "machado", max_envs: int = 8,
                    record: list[np.ndarray] | None = None) -> EvalResult:
    """Play ``episodes`` games with the memory ``weights`` (the memory, or its ``state_dict`` from a checkpoint)."""
    memory: EpisodicMemory | None = weights if isinstance(weights, EpisodicMemory) else None

    def make_policy(spec: EnvSpec, round_seed: int) -> MFECPolicy:
        nonlocal memory
        if memory is None:
            assert not isinstance(weights, EpisodicMemory)
            memory = make_memory(cfg, spec.num_actions)
            memory.load_state_dict(weights)
        return MFECPolicy(make_key_network(cfg, spec.frame_shape), memory, spec.num_actions, spec.stack,
                          spec.frame_shape, cfg.episodic.eval_epsilon, round_seed)

    return play_games(cfg.env.game, make_policy, episodes, seed=seed, preset=preset, max_envs=max_envs,
                      record=record, colour=cfg.env.colour)
