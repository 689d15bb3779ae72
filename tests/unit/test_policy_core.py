"""Every policy core keeps the contract of :class:`agents.actor_critic.core.PolicyCore` by behaviour, not by name:
the learner's replay from the state the actor stored gives the logits and values the actor's steps gave, with the
per-step inputs the core asked the actor to record; and the actor-critic actor and learner name no concept of one
core (STRAW's gates and committed fraction are STRAW's)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from agents.actor_critic.config import ActorCriticConfig
from agents.actor_critic.core import PolicyCore
from agents.straw.config import StrawConfig
from launch.config import load_config

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
OBS_SHAPE, ACTIONS, B, T = (3, 6, 6), 4, 3, 7

CORES = {
    "ff": (ActorCriticConfig, ["a2c_tiny"], ["network.core=ff"]),
    "lstm": (ActorCriticConfig, ["a2c_tiny"], ["network.core=lstm", "network.prev_action_reward=true"]),
    "straw": (StrawConfig, ["strawe_maze"], ["straw.plan_len=12", "straw.num_filters=3", "straw.noisy=false"]),
    "strawe": (StrawConfig, ["strawe_maze"], ["straw.plan_len=12", "straw.num_filters=3", "straw.noisy=true",
                                              "straw.latent_dim=8"]),
}


def _core(kind: str) -> PolicyCore:
    schema, presets, overrides = CORES[kind]
    cfg = load_config(schema, presets, ["run.progress=false", "network.hidden=32", "network.torso=minatar", *overrides])
    torch.manual_seed(0)
    return cfg.build_network(OBS_SHAPE, ACTIONS, 1.0).eval()


def _act(core: PolicyCore, obs: torch.Tensor, starts: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
         ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """T + 1 actor steps (the last is the bootstrap observation's): logits, values and the recorded step inputs,
    the previous action and reward filled in as ACPolicy does."""
    state = core.initial_state(B)
    logits, values, inputs = [], [], {}
    with torch.no_grad():
        for t in range(T + 1):
            for name, value in core.step_inputs(state).items():
                inputs.setdefault(name, []).append(value)
            step_logits, step_values, state = core.step(obs[t], state, starts[t])
            logits.append(step_logits)
            values.append(step_values)
            if t < T and "prev_action" in state:
                state["prev_action"], state["prev_reward"] = actions[t], rewards[t]
    return torch.stack(logits), torch.stack(values), {k: torch.stack(v) for k, v in inputs.items()}


@pytest.mark.parametrize("kind", sorted(CORES))
def test_replay_from_the_stored_state_gives_what_the_actors_steps_gave(kind: str) -> None:
    core = _core(kind)
    gen = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 2, (T + 1, B, *OBS_SHAPE), dtype=torch.uint8, generator=gen)
    starts = torch.zeros(T + 1, B, dtype=torch.bool)
    starts[0] = True
    starts[4, 1] = True  # a game starts mid-unroll in env 1: the state resets there, in the actor and in replay
    actions = torch.randint(0, ACTIONS, (T, B), generator=gen)
    rewards = torch.randn(T, B, generator=gen)
    torch.manual_seed(5)  # the actor's initial state (STRAW draws its first gate and noise) is state0 below
    acted_logits, acted_values, inputs = _act(core, obs, starts, actions, rewards)

    assert core.recurrent == (kind != "ff")
    assert bool(inputs) == kind.startswith("straw")  # only a planning core asks for per-step inputs
    torch.manual_seed(5)
    state0 = core.initial_state(B)
    out = core.replay(obs, state0, starts, actions, rewards, inputs)
    assert out.logits.shape == (T + 1, B, ACTIONS) and out.values.shape == (T + 1, B)
    torch.testing.assert_close(out.logits, acted_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.values, acted_values, rtol=1e-5, atol=1e-5)
    if out.aux_loss is not None:
        assert out.aux_loss.shape == (T + 1, B)

    mask = torch.ones(T, B)
    stats = core.replay_stats(out, mask)
    assert all(v.dim() == 0 and not v.requires_grad for v in stats.values())
    if kind.startswith("straw"):  # the committed fraction is STRAW's to compute, from the gates it applied
        gates = inputs["gate"][:-1].bool() | starts[:-1]
        assert float(stats["charts/committed_fraction"]) == pytest.approx(1.0 - float(gates.float().mean()))
        assert float(stats["charts/macro_action_length"]) == pytest.approx(T * B / float(gates.sum()))
    else:
        assert stats == {}
    if kind == "ff":  # a feed-forward core may be called on single observations
        with torch.no_grad():
            logits, values = core(obs[2])
        torch.testing.assert_close(logits, acted_logits[2])
        torch.testing.assert_close(values, acted_values[2])


def _code_names(path: Path) -> set[str]:
    """Identifiers, attribute names and string constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            names.add(node.value)
    return names


@pytest.mark.parametrize("module", ["actor", "learning", "networks"])
def test_the_actor_critic_code_names_no_concept_of_one_core(module: str) -> None:
    names = _code_names(ROOT / "agents" / "actor_critic" / f"{module}.py")
    assert not {n for n in names if any(w in n.lower() for w in ("gate", "committed", "macro_action", "straw",
                                                                  "replan", "plan"))}
