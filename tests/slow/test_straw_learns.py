"""STRAW learns a small fixed maze (issue 11, part 6): with A2C on one 5x5 maze (the same walls, start and goal every
episode), it comes to reach the goal in nearly every game on a path much closer to the BFS optimum than random
play's. Minutes on one core: marked slow, run with `make test-slow`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.registry import get_builder
from agents.runtime.loop import run_training
from agents.straw.config import StrawConfig
from launch.config import load_config


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_straw_solves_a_fixed_maze(tmp_path: Path) -> None:
    cfg = load_config(StrawConfig, ["straw_maze"], [
        "env.game=maze/5:layout_seed=0,wall_density=0.2,step_reward=0.1", "straw.plan_len=32",
        "run.total_frames=400000", "run.progress=false", "run.eval_episodes=0", "run.log_every_frames=20000",
        "run.checkpoint_every_frames=400000", f"run.runs_dir={tmp_path}", "run.name=fixed"])
    state = run_training(get_builder("straw"), cfg)
    acc = EventAccumulator(str(tmp_path / "fixed"), size_guidance={"scalars": 0}).Reload()
    gap = np.array([e.value for e in acc.Scalars("maze/return_gap")])
    reached = np.array([e.value for e in acc.Scalars("maze/goal_reached")])
    first, last = gap[:500].mean(), gap[-500:].mean()
    # The maze, its start and its goal are fixed: the optimum is one 6-move path. Random play reaches the goal in
    # about half the games; measured (one seed, 400k frames): STRAW reaches it in 93% of its last games with a gap
    # of 3.3 to the optimum (from 9.1), the feed-forward baseline in 100% with a gap of 0.
    assert reached[-500:].mean() > 0.85, reached[-500:].mean()
    assert last < first / 2, (first, last)
    assert state.updates > 0
