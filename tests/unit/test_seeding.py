"""Building a part never moves torch's global generator, and every part's initialisation is its own seed's.

In local mode the actors, the learner and the loop share one process: a constructor that called
``torch.manual_seed`` reseeded the stream the other parts draw from (PPO's minibatch order, STRAW's gates).
Each part now seeds its initialisation in a scope of its own (``torch.random.fork_rng``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch

from agents.actor_critic.actor import make_ac_parts
from agents.actor_critic.config import ActorCriticConfig
from agents.dqn.actor import make_dqn_parts
from agents.dqn.config import DQNConfig
from agents.registry import get_builder
from agents.runtime.algorithm import ActorParts
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
    if isinstance(part, ActorParts):
        return part.policy.network
    core = getattr(part, "core", part)  # DQN's replay learner wraps the Q-learning core
    return core.online if hasattr(core, "online") else core.network


def _close(part: Any) -> None:
    if isinstance(part, ActorParts):
        part.env.close()


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


def test_ppo_draws_its_minibatches_from_the_learners_own_generator() -> None:
    from agents.runtime.actor import EnvActor
    from agents.runtime.algorithm import Counters

    cfg = load_config(ActorCriticConfig, ["a2c_tiny"], ["run.progress=false", "agent.loss=ppo"])
    actor = EnvActor(0, make_ac_parts, cfg, seed=3)
    out = actor.run(cfg.agent.unroll_length, 0)
    counters = Counters(frame_skip=4, total_steps=cfg.run.total_frames // 4)
    learners = []
    for earlier_draws in (0, 100):
        learner = _learner(cfg)
        torch.manual_seed(7)
        torch.rand(earlier_draws)
        expected = torch.rand(3, generator=torch.Generator().manual_seed(7).set_state(torch.get_rng_state()))
        learner.ingest(out)
        learner.update(counters)
        assert torch.equal(torch.rand(3), expected)  # the update drew nothing from the global generator
        learners.append(learner)
    a, b = learners[0].get_weights(), learners[1].get_weights()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The generator's state is checkpointed: a restored learner shuffles the next batch as the original does.
    restored = _learner(cfg)
    restored.load_state_dict(copy.deepcopy(learners[0].state_dict()))  # a copy: torch's optimiser adopts tensors
    for learner in (learners[0], restored):
        learner.ingest(out)
        learner.update(counters)
    a, b = learners[0].get_weights(), restored.get_weights()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(learners[0].generator.get_state(), restored.generator.get_state())
    actor.close()


def test_a_ray_actors_process_draws_from_its_own_seed() -> None:
    """With Ray actors each builds its parts in its own process: the global generator there (STRAW's acting draws)
    gets the actor's seed, so two actors do not share torch's default stream."""
    from agents.runtime.config import actor_seed

    cfg = load_config(ActorCriticConfig, ["a2c_tiny"], ["run.progress=false", "runtime.num_actors=2"])
    draws = []
    for actor_id in (0, 1):
        parts = make_ac_parts(cfg, actor_id)
        draws.append(torch.rand(3))
        expected = torch.rand(3, generator=torch.Generator().manual_seed(actor_seed(cfg.run, actor_id)))
        assert torch.equal(draws[-1], expected)
        parts.env.close()
    assert not torch.equal(draws[0], draws[1])
