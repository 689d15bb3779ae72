"""Shared by the Dyna tests (MinAtar's grid model and Atari's video model): a learner built through the registry,
filled with real chunks from DQN's actor, a run of its updates, and exact comparison of saved states."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
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


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` through ``torch.save`` and ``torch.load``, as a checkpoint takes it."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def same(a: Any, b: Any) -> bool:
    """Whether two nested states (dicts, lists, tensors, arrays, scalars) are exactly equal (NaN equal to NaN)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    return bool(a == b)
