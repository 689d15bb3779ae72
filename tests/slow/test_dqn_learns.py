"""DQN learns toy/catch (random play scores about -3 per episode, perfect play +5). Minutes: marked slow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.dqn.config import DQNConfig
from agents.dqn.evaluate import evaluate_policy
from agents.dqn.train import train
from launch.config import load_config
from worldmodels.common.checkpoint import find_checkpoint, load_checkpoint


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_dqn_learns_catch(tmp_path: Path) -> None:
    cfg = load_config(DQNConfig, ["dqn_catch"], [f"run.runs_dir={tmp_path}", "run.progress=false"])
    state = train(cfg)
    weights = load_checkpoint(find_checkpoint(tmp_path / cfg.run.name))["learner"]["online"]
    result = evaluate_policy(cfg, weights, episodes=20, epsilon=0.0)
    assert result.mean >= 3.0, f"greedy return {result.mean} (returns {result.returns})"
    assert np.mean(state.returns[-50:]) > np.mean(state.returns[:50]) + 3.0
