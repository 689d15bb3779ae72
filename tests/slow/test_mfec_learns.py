"""MFEC solves a small deterministic env in few episodes (Blundell et al. 2016: episodic control latches onto
the best return it has seen): one fixed 5 x 5 maze, where a greedy agent then reaches the goal every game."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.episodic.config import MFECConfig
from agents.registry import get_builder
from agents.runtime.loop import run_training
from launch.config import load_config
from launch.plot import read_scalars

pytestmark = pytest.mark.slow


def test_mfec_solves_a_fixed_maze_within_a_few_games(tmp_path: Path) -> None:
    cfg = load_config(MFECConfig, ["mfec_minatar"], [
        "env.game=maze/5:layout_seed=0,wall_density=0.2,step_reward=0.1", "env.num_envs=4",
        "run.total_frames=3000", "run.eval_episodes=8", "episodic.eval_epsilon=0", "run.progress=false",
        "run.log_every_frames=200", f"run.runs_dir={tmp_path}", "run.name=maze"])
    state = run_training(get_builder("mfec"), cfg)
    assert state.episodes > 40
    _, goal = read_scalars(tmp_path / "maze", "maze/goal_reached")
    _, gap = read_scalars(tmp_path / "maze", "maze/return_gap")
    assert gap[:4].mean() > 3.0  # each env's first game wanders (the memory is empty: random moves)
    assert goal[-40:].mean() == 1.0 and gap[-40:].mean() < 1.0  # every late game reaches it, close to the optimum
    _, evals = read_scalars(tmp_path / "maze", "eval/mean_return")
    _, optimal = read_scalars(tmp_path / "maze", "maze/optimal_return")
    assert evals[-1] > optimal[-1] - 1.0 and np.isfinite(evals[-1])
