"""DQN pieces against hand-computed cases: targets, loss, schedules, network shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.dqn.actor import apex_epsilon, linear_epsilon
from agents.dqn.config import AgentConfig, ExplorationConfig, NetworkConfig
from agents.dqn.learning import DQNLearner, double_dqn_targets
from agents.dqn.networks import QNetwork

torch.set_num_threads(1)


def test_double_dqn_target_hand_computed() -> None:
    # Two transitions, three actions.
    q_next_online = torch.tensor([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]])
    q_next_target = torch.tensor([[10.0, 20.0, 30.0], [4.0, 5.0, 6.0]])
    returns = torch.tensor([1.0, 0.5])
    discounts = torch.tensor([0.9, 0.0])  # second one terminated: no bootstrap
    y = double_dqn_targets(q_next_online, q_next_target, returns, discounts, double=True)
    # online argmax: action 1 -> target 20; action 2 -> target 6 (discounted by 0)
    assert y.tolist() == pytest.approx([1.0 + 0.9 * 20.0, 0.5])
    y_plain = double_dqn_targets(q_next_online, q_next_target, returns, discounts, double=False)
    assert y_plain.tolist() == pytest.approx([1.0 + 0.9 * 30.0, 0.5])


def test_n_step_discount_enters_target() -> None:
    # A 3-step return with gamma 0.99 bootstraps with gamma^3.
    y = double_dqn_targets(torch.tensor([[2.0]]), torch.tensor([[2.0]]), torch.tensor([1.0 + 0.99 + 0.99**2]),
                           torch.tensor([0.99**3]))
    assert float(y) == pytest.approx(1 + 0.99 + 0.99**2 + 0.99**3 * 2.0)


def test_network_shapes_and_uint8_input() -> None:
    for dueling in (False, True):
        net = QNetwork(6, dueling=dueling, hidden=32)
        q = net(torch.zeros(3, 4, 84, 84, dtype=torch.uint8))
        assert q.shape == (3, 6) and q.dtype == torch.float32


def test_dueling_head_mean_advantage_is_value() -> None:
    net = QNetwork(4, dueling=True, hidden=16)
    x = torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8)
    feats = net.torso(x.float() / 255)
    v = net.value(feats).squeeze(1)
    assert torch.allclose(net(x).mean(dim=1), v, atol=1e-5)


def _batch(rng: np.random.Generator, b: int = 16) -> tuple[torch.Tensor, ...]:
    obs = torch.from_numpy(rng.integers(0, 255, (b, 4, 84, 84), dtype=np.uint8))
    nxt = torch.from_numpy(rng.integers(0, 255, (b, 4, 84, 84), dtype=np.uint8))
    actions = torch.from_numpy(rng.integers(0, 3, b))
    returns = torch.from_numpy(rng.normal(size=b).astype(np.float32))
    discounts = torch.full((b,), 0.99)
    return obs, actions, returns, discounts, nxt, torch.ones(b)


def test_learner_loss_falls_on_a_fixed_batch_and_reports_td_errors() -> None:
    agent = AgentConfig(lr=1e-3, batch_size=16)
    learner = DQNLearner(3, agent, NetworkConfig(hidden=32), target_update_period=10**9)
    batch = _batch(np.random.default_rng(0))
    first = learner.step(*batch)
    for _ in range(30):
        last = learner.step(*batch)
    assert last.loss < 0.5 * first.loss
    assert first.td_abs.shape == (16,) and bool((first.td_abs >= 0).all())
    assert learner.num_updates == 31


def test_target_network_copied_every_period() -> None:
    learner = DQNLearner(3, AgentConfig(lr=1e-2), NetworkConfig(hidden=16), target_update_period=3)
    batch = _batch(np.random.default_rng(1), 8)
    before = [p.clone() for p in learner.target.parameters()]
    learner.step(*batch)
    learner.step(*batch)
    assert all(torch.equal(a, b) for a, b in zip(before, learner.target.parameters()))
    learner.step(*batch)
    assert all(torch.equal(a, b) for a, b in zip(learner.online.parameters(), learner.target.parameters()))


def test_importance_weights_scale_the_loss() -> None:
    agent = AgentConfig(loss="mse")
    a = DQNLearner(3, agent, NetworkConfig(hidden=16), target_update_period=100, seed=3)
    b = DQNLearner(3, agent, NetworkConfig(hidden=16), target_update_period=100, seed=3)
    obs, actions, returns, discounts, nxt, w = _batch(np.random.default_rng(2), 8)
    la = float(a.step(obs, actions, returns, discounts, nxt, w).loss)
    lb = float(b.step(obs, actions, returns, discounts, nxt, 0.5 * w).loss)
    assert lb == pytest.approx(0.5 * la, rel=1e-5)


def test_epsilon_schedules() -> None:
    ex = ExplorationConfig(eps_start=1.0, eps_end=0.1, eps_decay_frames=1000)
    assert linear_epsilon(0, ex, learning_starts_frames=200) == 1.0
    assert linear_epsilon(200, ex, 200) == 1.0
    assert linear_epsilon(700, ex, 200) == pytest.approx(0.55)
    assert linear_epsilon(10**6, ex, 200) == pytest.approx(0.1)
    ap = ExplorationConfig(eps_base=0.4, apex_alpha=7.0)
    assert apex_epsilon(0, 8, ap) == pytest.approx(0.4)
    assert apex_epsilon(7, 8, ap) == pytest.approx(0.4**8)
    assert apex_epsilon(0, 1, ap) == pytest.approx(0.4)
