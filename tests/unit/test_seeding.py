"""Building a part never moves torch's global generator, and every part's initialisation is its own seed's.

In local mode the actors, the learner and the loop share one process: a constructor that called
``torch.manual_seed`` reseeded the stream the other parts draw from (PPO's minibatch order, STRAW's gates).
Each part now seeds its initialisation in a scope of its own (``torch.random.fork_rng``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from agents.actor_critic.actor import make_ac_parts
from agents.actor_critic.config import ActorCriticConfig
from agents.dqn.actor import make_dqn_parts
from agents.dqn.config import DQNConfig
from agents.registry import get_builder
from agents.runtime.loop import probe_env
from launch.config import load_config

torch.set_num_threads(1)
CPU = torch.device("cpu")


def _dqn() -> DQNConfig:
    return load_config(DQNConfig, ["dqn_catch"], ["network.hidden=32", "run.progress=false"])


def _ac() -> ActorCriticConfig:
    return load_config(ActorCriticConfig, ["a2c_tiny"], ["run.progress=false"])


def _learner(cfg: Any) -> Any:
    return get_builder(cfg.algo).make_learner(cfg, probe_env(cfg), CPU)


PARTS: dict[str, Callable[[], Any]] = {
    "dqn actor": lambda: make_dqn_parts(_dqn(), 0),
    "actor-critic actor": lambda: make_ac_parts(_ac(), 0),
    "dqn learner": lambda: _learner(_dqn()),
    "actor-critic learner": lambda: _learner(_ac()),
}


def _network(part: Any) -> torch.nn.Module:
    """The part's network: an actor's policy network, or the learner's online network."""
    if hasattr(part, "policy"):
        return part.policy.network
    if isinstance(part, tuple):  # actor parts as (env, policy, adder, trackers)
        return part[1].network
    core = getattr(part, "core", part)  # DQN's replay learner wraps the Q-learning core
    return core.online if hasattr(core, "online") else core.network


def _close(part: Any) -> None:
    env = getattr(part, "env", None) or (part[0] if isinstance(part, tuple) else None)
    if env is not None:
        env.close()


@pytest.mark.parametrize("name", list(PARTS))
def test_building_a_part_leaves_the_global_generator_alone(name: str) -> None:
    torch.manual_seed(123)
    torch.rand(3)
    expected = torch.rand(3)
    torch.manual_seed(123)
    torch.rand(3)
    part = PARTS[name]()  # built between two draws: the second must be what it would have been
    assert torch.equal(torch.rand(3), expected)
    _close(part)


@pytest.mark.parametrize("name", list(PARTS))
def test_a_parts_initialisation_does_not_depend_on_earlier_draws(name: str) -> None:
    torch.manual_seed(0)
    first = PARTS[name]()
    torch.manual_seed(1)
    torch.rand(100)
    second = PARTS[name]()
    a, b = _network(first).state_dict(), _network(second).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    _close(first)
    _close(second)
