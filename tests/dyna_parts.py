"""Shared by the Dyna tests (MinAtar's grid model and Atari's video model): a learner built through the registry,
filled with real chunks from DQN's actor, and a run of its updates."""

from __future__ import annotations

import torch

from agents.dqn.actor import make_dqn_parts
from agents.dyna.config import DynaConfig
from agents.dyna.learning import DynaLearner
from agents.registry import get_builder
from agents.runtime.actor import EnvActor
from agents.runtime.algorithm import Counters
from agents.runtime.loop import probe_env


def make_learner(cfg: DynaConfig) -> DynaLearner:
    """The learner ``algo: dyna`` builds for ``cfg``, on the CPU."""
    learner = get_builder("dyna").make_learner(cfg, probe_env(cfg), torch.device("cpu"))
    assert isinstance(learner, DynaLearner)
    return learner


def fill(learner: DynaLearner, cfg: DynaConfig, steps: int, frame_skip: int) -> Counters:
    """Real chunks (8 steps each) from DQN's actor (seed 1) into ``learner`` until ``steps`` agent steps; the
    counters they leave (``frame_skip``: 1 on MinAtar, 4 on Atari)."""
    actor = EnvActor(0, make_dqn_parts, cfg, seed=1)
    counters = Counters(frame_skip=frame_skip, total_steps=10_000)
    try:
        while counters.steps < steps:
            out = actor.run(8, counters.frames)
            learner.ingest(out)
            counters.steps += out.env_steps
    finally:
        actor.close()
    return counters


def run_updates(learner: DynaLearner, counters: Counters, n: int) -> list[dict[str, float]]:
    """``n`` learner updates, counting them in ``counters``; each update's scalars as floats."""
    out = []
    for _ in range(n):
        out.append({k: float(v) for k, v in learner.update(counters).items()})
        counters.updates += 1
    return out
