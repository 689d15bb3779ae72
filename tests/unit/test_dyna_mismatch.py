"""The Dyna agent's bad input beyond its settings (those are in test_dyna.py): a checkpoint state whose world model
was made for another observation shape or action count is refused with a message that names both and the fix,
before anything of it is restored."""

from __future__ import annotations

import copy

import pytest
import torch

from agents.dyna.config import DynaConfig
from agents.dyna.learning import DynaLearner
from launch.config import load_config
from tests.dyna_parts import make_learner

torch.set_num_threads(1)

TINY = ["network.hidden=16", "agent.batch_size=8", "world_model.hidden_channels=8", "world_model.res_blocks=1",
        "world_model.head_hidden=16", "replay.capacity=256", "dyna.imagined_capacity=64", "dyna.holdout_size=8",
        "run.progress=false"]
FIX = "Give a world model trained on this env's game"


def _learner(*overrides: str) -> DynaLearner:
    return make_learner(load_config(DynaConfig, ["dyna_minatar"], [*TINY, *overrides]))


def test_a_world_model_of_other_observations_is_refused_before_anything_is_restored() -> None:
    breakout = _learner()
    before = copy.deepcopy(breakout.dqn.core.online.state_dict())
    state = _learner("env.game=minatar/space_invaders", "run.seed=3").state_dict()
    with pytest.raises(ValueError, match=r"trained on minatar/space_invaders: observations \(6, 10, 10\) and 6 "
                                         r"actions, but this env has observations \(4, 10, 10\) and 6 actions") as err:
        breakout.load_state_dict(state)
    assert FIX in str(err.value)
    after = breakout.dqn.core.online.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the Q-network was left as it was


def test_a_world_model_of_another_action_count_is_refused() -> None:
    learner = _learner()
    state = _learner("run.seed=3").state_dict()
    state["world_model"]["model"]["num_actions"] = 3  # a model made for a 3-action game
    with pytest.raises(ValueError, match=r"and 3 actions, but this env has observations \(4, 10, 10\) and 6 "
                                         r"actions") as err:
        learner.load_state_dict(state)
    assert FIX in str(err.value)
    assert learner.trainer.updates == 0 and learner.num_imagined == 0
