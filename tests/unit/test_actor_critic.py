"""Actor-critic pieces against hand-computed cases: V-trace, GAE, PPO's clipped surrogate, the A2C loss gradient,
the LSTM state across episode starts and unrolls, the trajectory adder, and config validation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from agents.actor_critic import evaluate as ac_evaluate
from agents.actor_critic import learning
from agents.actor_critic.actor import ACPolicy, TrajectoryAdder, Unroll, make_ac_parts, make_network
from agents.actor_critic.config import ACNetworkConfig, ActorCriticConfig, validate
from agents.actor_critic.learning import ActorCriticLearner, Batch, log_prob_entropy, masked_mean, ppo_policy_loss
from agents.actor_critic.networks import ActorCriticNetwork
from agents.actor_critic.returns import gae_advantages, vtrace
from agents.runtime import evaluate as runtime_evaluate
from agents.runtime.actor import EnvActor
from agents.runtime.algorithm import Counters, EnvSpec
from agents.runtime.loop import probe_env
from launch.config import load_config

torch.set_num_threads(1)

CPU = torch.device("cpu")


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def _tiny(*overrides: str) -> ActorCriticConfig:
    return load_config(ActorCriticConfig, ["a2c_tiny"], ["run.progress=false", *overrides])


def _nstep_returns(rewards: torch.Tensor, discounts: torch.Tensor, carry: torch.Tensor,
                   values: torch.Tensor) -> torch.Tensor:
    """The n-step bootstrapped return by its definition, summed forward from each step: rewards until the episode
    ends (carry 0; a terminal's discount 0 drops the bootstrap, a truncation bootstraps V of the next observation)
    or the unroll ends (bootstrap V(x_T))."""
    steps, batch = rewards.shape
    out = torch.zeros_like(rewards)
    for b in range(batch):
        for s in range(steps):
            total, scale = 0.0, 1.0
            for k in range(s, steps):
                total += scale * float(rewards[k, b])
                scale *= float(discounts[k, b])
                if carry[k, b] == 0 or k == steps - 1:
                    total += scale * float(values[k + 1, b])
                    break
            out[s, b] = total
    return out


# --- V-trace -------------------------------------------------------------------------------------------------------
def test_vtrace_off_policy_hand_computed_with_a_terminal_in_the_middle() -> None:
    # T = 3, B = 2. Ratios 1.5 (above rho_bar 1.2 and c_bar 0.9), 0.5 (below both), 1.0 (between: c is cut to 0.9,
    # rho is not). Column 0 terminates at step 1 (discount 0, carry 0); column 1 runs on.
    g, rho_bar, c_bar = 0.9, 1.2, 0.9
    ratios = [1.5, 0.5, 1.0]
    log_rhos = _t([[math.log(r)] * 2 for r in ratios])
    rewards = _t([[0.5, 0.5], [1.0, 1.0], [-0.5, -0.5]])
    discounts = _t([[g, g], [0.0, g], [g, g]])
    carry = _t([[1, 1], [0, 1], [1, 1]])
    values = _t([[1.0, 1.0], [2.0, 2.0], [-1.0, -1.0], [0.5, 0.5]])
    vs, pg = vtrace(log_rhos, rewards, discounts, carry, values, rho_bar=rho_bar, c_bar=c_bar)

    rho = [1.2, 0.5, 1.0]   # min(rho_bar, ratio)
    c = [0.9, 0.5, 0.9]     # min(c_bar, ratio)
    V0, V1, V2, V3 = 1.0, 2.0, -1.0, 0.5
    # Column 0: delta_s = rho_s (r_s + discount_s V_{s+1} - V_s);
    #           v_s = V_s + delta_s + discount_s c_s (v_{s+1} - V_{s+1})
    d0 = rho[0] * (0.5 + g * V1 - V0)          # 1.2 * 1.3 = 1.56
    d1 = rho[1] * (1.0 + 0.0 * V2 - V1)        # 0.5 * -1 = -0.5 (terminal: no bootstrap)
    d2 = rho[2] * (-0.5 + g * V3 - V2)         # 0.95
    v2 = V2 + d2                               # -0.05
    v1 = V1 + d1 + 0.0 * c[1] * (v2 - V2)      # 1.5: the trace stops at the terminal
    v0 = V0 + d0 + g * c[0] * (v1 - V1)        # 2.155
    assert vs[:, 0].tolist() == pytest.approx([v0, v1, v2], abs=1e-12)
    assert [v0, v1, v2] == pytest.approx([2.155, 1.5, -0.05])
    # pg advantage: rho_s (r_s + discount_s v_{s+1} - V_s), v_3 = V_3
    pg_expected = [rho[0] * (0.5 + g * v1 - V0), rho[1] * (1.0 + 0.0 - V1), rho[2] * (-0.5 + g * V3 - V2)]
    assert pg[:, 0].tolist() == pytest.approx(pg_expected, abs=1e-12)
    assert pg_expected == pytest.approx([1.02, -0.5, 0.95])

    # Column 1: no terminal, the trace runs through.
    e1 = rho[1] * (1.0 + g * V2 - V1)          # -0.95
    w2 = V2 + d2                               # -0.05
    w1 = V1 + e1 + g * c[1] * (w2 - V2)        # 2 - 0.95 + 0.45 * 0.95 = 1.4775
    w0 = V0 + d0 + g * c[0] * (w1 - V1)        # 2.56 + 0.81 * -0.5225 = 2.136775
    assert vs[:, 1].tolist() == pytest.approx([w0, w1, w2], abs=1e-12)
    assert [w0, w1, w2] == pytest.approx([2.136775, 1.4775, -0.05])
    pg1_expected = [rho[0] * (0.5 + g * w1 - V0), rho[1] * (1.0 + g * w2 - V1), rho[2] * (-0.5 + g * V3 - V2)]
    assert pg[:, 1].tolist() == pytest.approx(pg1_expected, abs=1e-12)
    assert pg1_expected == pytest.approx([0.9957, -0.5225, 0.95])


def test_vtrace_pg_rho_bar_truncates_only_the_policy_gradient() -> None:
    log_rhos = _t([[math.log(3.0)]])
    rewards, discounts, carry, values = _t([[1.0]]), _t([[0.5]]), _t([[1.0]]), _t([[0.0], [2.0]])
    vs, pg = vtrace(log_rhos, rewards, discounts, carry, values, rho_bar=2.0, c_bar=1.0, pg_rho_bar=1.5)
    assert float(vs) == pytest.approx(2.0 * (1.0 + 0.5 * 2.0))
    assert float(pg) == pytest.approx(1.5 * (1.0 + 0.5 * 2.0))


def test_on_policy_vtrace_is_the_nstep_return_across_terminal_and_truncation() -> None:
    g = 0.95
    # Column 0: truncated at step 1 (carry 0 but discount gamma: bootstraps V(x_2)); column 1: terminal at step 2;
    # column 2: runs to the unroll's end.
    rewards = _t([[1.0, 0.0, 0.5], [2.0, -1.0, 0.0], [0.0, 1.0, 1.0], [3.0, 0.5, -1.0]])
    discounts = _t([[g, g, g], [g, g, g], [g, 0.0, g], [g, g, g]])
    carry = _t([[1, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    values = _t([[0.1, 0.2, 0.3], [0.4, -0.5, 0.6], [1.5, 0.8, -0.9], [1.0, 1.1, 1.2], [2.0, -2.0, 0.7]])
    vs, pg = vtrace(torch.zeros_like(rewards), rewards, discounts, carry, values)
    expected = _nstep_returns(rewards, discounts, carry, values)
    torch.testing.assert_close(vs, expected, rtol=0, atol=1e-12)
    # By hand, column 0 (truncation at step 1):
    assert vs[0, 0].item() == pytest.approx(1.0 + g * 2.0 + g * g * 1.5)   # r0 + g r1 + g^2 V(x_2)
    assert vs[1, 0].item() == pytest.approx(2.0 + g * 1.5)
    assert vs[2, 0].item() == pytest.approx(0.0 + g * 3.0 + g * g * 2.0)   # new episode to the unroll's end
    # column 1 (terminal at step 2): no bootstrap at all
    assert vs[0, 1].item() == pytest.approx(0.0 + g * -1.0 + g * g * 1.0)
    # On-policy the pg advantage is the return minus the value.
    torch.testing.assert_close(pg, expected - values[:-1], rtol=0, atol=1e-12)


# --- GAE -----------------------------------------------------------------------------------------------------------
def _gae_case() -> tuple[torch.Tensor, ...]:
    g = 0.9
    # T = 5, B = 1: step 2 is truncated (carry 0, discount gamma), step 4 is terminal (discount 0, carry 0).
    rewards = _t([[1.0], [0.0], [2.0], [-1.0], [0.5]])
    discounts = _t([[g], [g], [g], [g], [0.0]])
    carry = _t([[1], [1], [0], [1], [0]])
    values = _t([[0.5], [1.0], [-0.5], [2.0], [0.25], [4.0]])
    return rewards, discounts, carry, values


def test_gae_hand_computed_with_terminal_and_truncation() -> None:
    rewards, discounts, carry, values = _gae_case()
    g, lam = 0.9, 0.95
    V = [0.5, 1.0, -0.5, 2.0, 0.25, 4.0]
    d0 = 1.0 + g * V[1] - V[0]       # 1.4
    d1 = 0.0 + g * V[2] - V[1]       # -1.45
    d2 = 2.0 + g * V[3] - V[2]       # 4.3: truncation bootstraps V(x_3)
    d3 = -1.0 + g * V[4] - V[3]      # -2.775
    d4 = 0.5 + 0.0 * V[5] - V[4]     # 0.25: terminal, V(x_5) unused
    a4 = d4
    a3 = d3 + g * lam * a4
    a2 = d2                          # the episode ended at step 2: nothing of step 3 flows back
    a1 = d1 + g * lam * a2
    a0 = d0 + g * lam * a1
    adv = gae_advantages(rewards, discounts, carry, values, lam)
    assert adv[:, 0].tolist() == pytest.approx([a0, a1, a2, a3, a4], abs=1e-12)
    assert [a0, a1, a2, a3, a4] == pytest.approx([1.4 + 0.855 * (-1.45 + 0.855 * 4.3), -1.45 + 0.855 * 4.3, 4.3,
                                                  -2.775 + 0.855 * 0.25, 0.25])


def test_gae_lambda_one_is_the_nstep_return_and_lambda_zero_the_td_error() -> None:
    rewards, discounts, carry, values = _gae_case()
    adv1 = gae_advantages(rewards, discounts, carry, values, 1.0)
    torch.testing.assert_close(adv1 + values[:-1], _nstep_returns(rewards, discounts, carry, values),
                               rtol=0, atol=1e-12)
    adv0 = gae_advantages(rewards, discounts, carry, values, 0.0)
    td = rewards + discounts * values[1:] - values[:-1]
    torch.testing.assert_close(adv0, td, rtol=0, atol=0)
    assert adv0[:, 0].tolist() == pytest.approx([1.4, -1.45, 4.3, -2.775, 0.25])


# --- PPO -----------------------------------------------------------------------------------------------------------
def test_ppo_policy_loss_hand_case_where_clipping_binds() -> None:
    clip = 0.2
    ratios = torch.tensor([1.5, 0.5, 1.05, 0.7, 3.0], dtype=torch.float64)
    adv = torch.tensor([2.0, -1.0, 1.0, 3.0, 100.0], dtype=torch.float64)
    mask = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    old = torch.tensor([-1.0, -0.5, -2.0, -0.3, -1.0], dtype=torch.float64)
    log_p = (old + ratios.log()).requires_grad_(True)
    loss, ratio, clip_fraction = ppo_policy_loss(log_p, old, adv, mask, clip)
    # min(r A, clip(r) A): 1.5*2=3 vs 1.2*2=2.4 -> 2.4 (clipped); 0.5*-1=-0.5 vs 0.8*-1=-0.8 -> -0.8 (clipped);
    # 1.05 (inside); 0.7*3=2.1 vs 0.8*3=2.4 -> 2.1 (the pessimistic bound keeps the unclipped term); masked 5th.
    assert float(loss.detach()) == pytest.approx(-(2.4 - 0.8 + 1.05 + 2.1) / 4)
    assert ratio.tolist() == pytest.approx(ratios.tolist())
    assert float(clip_fraction) == pytest.approx(3 / 4)
    loss.backward()
    # Where the clip binds the gradient vanishes; elsewhere d(-r A / n) / d log_p = -r A / n.
    assert log_p.grad.tolist() == pytest.approx([0.0, 0.0, -1.05 / 4, -0.7 * 3 / 4, 0.0])


@pytest.mark.parametrize("core", ["ff", "lstm"])
def test_ppo_first_minibatch_ratio_is_one_and_clipping_is_inactive(core: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _tiny("agent.loss=ppo", f"network.core={core}", "agent.ppo_minibatches=2", "agent.ppo_epochs=2",
                "agent.ppo_clip=0.1", "agent.normalize_advantages=true")
    learner = ActorCriticLearner(probe_env(cfg), cfg, CPU)
    actor = EnvActor(0, make_ac_parts, cfg, seed=cfg.run.seed + 1000)
    actor.run(cfg.runtime.chunk_steps, 0, learner.get_weights(), 0)
    for _ in range(6):  # move the games on so that the chunk starts mid-game with a non-zero LSTM state
        actor.run(cfg.runtime.chunk_steps, 0)
    out = actor.run(cfg.runtime.chunk_steps, 0)

    calls: list[dict[str, torch.Tensor]] = []
    original = learning.ppo_policy_loss

    def recording(log_p_a: torch.Tensor, old_log_p_a: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                  clip: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, ratio, clip_fraction = original(log_p_a, old_log_p_a, adv, mask, clip)
        calls.append({"loss": loss.detach(), "ratio": ratio.detach(), "clip_fraction": clip_fraction.detach(),
                      "adv": adv.detach(), "mask": mask.detach()})
        return loss, ratio, clip_fraction

    monkeypatch.setattr(learning, "ppo_policy_loss", recording)
    # Also by hand: the learner's recomputed log-probabilities against the behaviour logits.
    batch = Batch(out.payload, CPU)
    with torch.no_grad():
        logits, _ = learner.network.unroll(batch.obs, batch.state, batch.starts, batch.actions, batch.rewards)
    log_p, _ = log_prob_entropy(logits[:-1], batch.actions)
    old_log_p, _ = log_prob_entropy(batch.behaviour_logits, batch.actions)
    torch.testing.assert_close(log_p, old_log_p, rtol=0, atol=1e-6)

    learner.ingest(out)
    stats = learner.update(Counters(frame_skip=4, total_steps=cfg.run.total_frames // 4))
    assert len(calls) == cfg.agent.ppo_epochs * cfg.agent.ppo_minibatches
    first = calls[0]
    assert float((first["ratio"] - 1.0).abs().max()) < 1e-6
    assert float(first["clip_fraction"]) == 0.0
    unclipped = -masked_mean(first["ratio"] * first["adv"], first["mask"])
    assert float(first["loss"]) == pytest.approx(float(unclipped), abs=1e-7)
    assert float(first["adv"].abs().max()) > 0.1  # the objective is not trivially zero
    # Sensitivity: after the first step the policy has moved, so later minibatches see ratios away from 1.
    assert max(float((c["ratio"] - 1.0).abs().max()) for c in calls[1:]) > 1e-5  # float noise is ~1e-7
    assert math.isfinite(stats["losses/approx_kl"]) and "losses/clip_fraction" in stats


# --- the A2C loss's gradient ---------------------------------------------------------------------------------------
def test_a2c_loss_gradient_wrt_logits_and_values_hand_computed() -> None:
    g, value_coef, entropy_coef = 0.9, 0.5, 0.01
    cfg = _tiny(f"agent.gamma={g}", f"agent.value_coef={value_coef}", f"agent.entropy_coef={entropy_coef}",
                "agent.gae_lambda=1.0", "network.torso=minatar")
    spec = EnvSpec(obs_shape=(1, 10, 10), num_actions=2, frame_skip=1, stack=1, frame_shape=(1, 10, 10))
    learner = ActorCriticLearner(spec, cfg, CPU)
    # T = 2, B = 2, A = 2; column 1's second step is an autoreset step (invalid).
    unroll = Unroll(obs=np.zeros((3, 2, 1, 10, 10), np.uint8), starts=np.zeros((3, 2), bool),
                    actions=np.array([[0, 1], [1, 0]], np.int64), logits=np.zeros((2, 2, 2), np.float32),
                    rewards=np.array([[1.0, 0.0], [0.0, 0.0]], np.float32),
                    discounts=np.array([[g, 0.0], [g, 0.0]], np.float32),
                    carry=np.array([[1.0, 0.0], [1.0, 0.0]], np.float32),
                    valid=np.array([[True, True], [True, False]]))
    batch = Batch(unroll, CPU)
    logits = torch.tensor([[[0.2, -0.3], [1.0, 0.0]], [[0.5, 0.5], [-1.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]],
                          requires_grad=True)
    values = torch.tensor([[0.4, 0.3], [-0.2, 0.9], [1.5, 0.6]], requires_grad=True)
    learner.network.unroll = lambda *args, **kwargs: (logits, values)  # type: ignore[method-assign]
    total, parts = learner.losses(batch, "a2c")
    total.backward()

    # Targets (n-step, lambda = 1): column 0: G_1 = 0 + 0.9 * 1.5 = 1.35, G_0 = 1 + 0.9 * 1.35 = 2.215;
    # column 1 terminates at step 0: G_0 = 0. A = G - V.
    targets = {(0, 0): 1.0 + g * (0.0 + g * 1.5), (1, 0): 0.0 + g * 1.5, (0, 1): 0.0}
    v = values.detach()
    adv = {k: targets[k] - float(v[k]) for k in targets}
    n = 3
    expected_logits = torch.zeros(3, 2, 2)
    expected_values = torch.zeros(3, 2)
    for (t, b), a_tb in adv.items():
        p = torch.softmax(logits.detach()[t, b], -1)
        log_p = torch.log(p)
        entropy = -(p * log_p).sum()
        one_hot = torch.nn.functional.one_hot(torch.tensor(int(unroll.actions[t, b])), 2).float()
        # d/dz [-log pi(a) A / n] = -(onehot(a) - p) A / n; d/dz [-beta H / n] = beta p (log p + H) / n
        expected_logits[t, b] = -(one_hot - p) * a_tb / n + entropy_coef * p * (log_p + entropy) / n
        # d/dV [c * 0.5 (G - V)^2 / n] = c (V - G) / n
        expected_values[t, b] = value_coef * (float(v[t, b]) - targets[(t, b)]) / n
    torch.testing.assert_close(logits.grad, expected_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(values.grad, expected_values, rtol=0, atol=1e-6)
    assert float(parts["value_loss"].detach()) == pytest.approx(
        0.5 * sum((targets[k] - float(v[k])) ** 2 for k in targets) / n, abs=1e-6)
    assert targets[(0, 0)] == pytest.approx(2.215)


def test_impala_loss_gradient_uses_vtrace_of_the_behaviour_policy() -> None:
    g, value_coef, entropy_coef = 0.9, 0.5, 0.01
    cfg = _tiny("agent.loss=impala", f"agent.gamma={g}", f"agent.value_coef={value_coef}",
                f"agent.entropy_coef={entropy_coef}", "network.torso=minatar")
    spec = EnvSpec(obs_shape=(1, 10, 10), num_actions=2, frame_skip=1, stack=1, frame_shape=(1, 10, 10))
    learner = ActorCriticLearner(spec, cfg, CPU)
    # T = 2, B = 1. Target policy pi: step 0 [0.5, 0.5], step 1 [0.75, 0.25]; behaviour mu: step 0 [0.8, 0.2],
    # step 1 [0.5, 0.5]. Actions 1, 1: pi/mu = 0.5/0.2 = 2.5 (cut to rho = c = 1) and 0.25/0.5 = 0.5.
    unroll = Unroll(obs=np.zeros((3, 1, 1, 10, 10), np.uint8), starts=np.zeros((3, 1), bool),
                    actions=np.array([[1], [1]], np.int64),
                    logits=np.array([[[math.log(4.0), 0.0]], [[0.0, 0.0]]], np.float32),
                    rewards=np.array([[1.0], [-1.0]], np.float32), discounts=np.full((2, 1), g, np.float32),
                    carry=np.ones((2, 1), np.float32), valid=np.ones((2, 1), bool))
    logits = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]], [[0.0, 0.0]]], requires_grad=True)
    values = torch.tensor([[0.5], [1.0], [2.0]], requires_grad=True)
    learner.network.unroll = lambda *args, **kwargs: (logits, values)  # type: ignore[method-assign]
    total, parts = learner.losses(Batch(unroll, CPU), "impala")
    total.backward()

    rho, c = [1.0, 0.5], [1.0, 0.5]
    V0, V1, V2 = 0.5, 1.0, 2.0
    v1 = V1 + rho[1] * (-1.0 + g * V2 - V1)                       # 1 - 0.1 = 0.9
    v0 = V0 + rho[0] * (1.0 + g * V1 - V0) + g * c[0] * (v1 - V1)  # 1.9 - 0.09 = 1.81
    pg = [rho[0] * (1.0 + g * v1 - V0), rho[1] * (-1.0 + g * V2 - V1)]  # 1.31, -0.1
    assert [v0, v1, *pg] == pytest.approx([1.81, 0.9, 1.31, -0.1])
    n = 2
    expected_logits = torch.zeros(3, 1, 2)
    for t in range(2):
        p = torch.softmax(logits.detach()[t, 0], -1)
        log_p = torch.log(p)
        entropy = -(p * log_p).sum()
        expected_logits[t, 0] = -(torch.tensor([0.0, 1.0]) - p) * pg[t] / n + entropy_coef * p * (log_p + entropy) / n
    torch.testing.assert_close(logits.grad, expected_logits, rtol=0, atol=1e-6)
    expected_values = torch.tensor([[value_coef * (V0 - v0) / n], [value_coef * (V1 - v1) / n], [0.0]])
    torch.testing.assert_close(values.grad, expected_values, rtol=0, atol=1e-6)
    assert float(parts["mean_rho"]) == pytest.approx((2.5 + 0.5) / 2, rel=1e-5)


# --- LSTM state ----------------------------------------------------------------------------------------------------
def _fresh_step(net: ActorCriticNetwork, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's first step of a new game, written out: zero LSTM state, zero previous action and reward."""
    x = net.fc(net.torso(obs))
    if net.prev_action_reward:
        x = torch.cat([x, torch.zeros(len(obs), net.num_actions + 1)], dim=1)
    zeros = torch.zeros(len(obs), net.lstm.hidden_size)
    h, c = net.lstm(x, (zeros, zeros))
    return h, c


@pytest.mark.parametrize("prev_action_reward", [False, True])
def test_policy_resets_lstm_state_exactly_at_episode_starts(prev_action_reward: bool) -> None:
    torch.manual_seed(0)
    net = ActorCriticNetwork((2, 10, 10), 3, ACNetworkConfig(core="lstm", hidden=16, lstm_size=8,
                                                             prev_action_reward=prev_action_reward))
    policy = ACPolicy(net, seed=0)
    rng = np.random.default_rng(0)
    obs = [rng.integers(0, 2, (3, 2, 10, 10), dtype=np.uint8) for _ in range(3)]
    policy.act(obs[0], 0, np.ones(3, bool))
    policy.observe_rewards(np.array([1.0, -1.0, 0.5], np.float32))
    policy.act(obs[1], 0, np.zeros(3, bool))
    policy.observe_rewards(np.array([0.0, 1.0, -1.0], np.float32))
    carried = {k: v.clone() for k, v in policy.state.items()}
    assert float(carried["h"].abs().min()) > 0  # a live state in every row
    if prev_action_reward:
        assert carried["prev_reward"].tolist() == [0.0, 1.0, -1.0]

    starts = np.array([False, True, False])
    actions, extras = policy.act(obs[2], 0, starts)
    # The state stored for the adder is the one entering the step, before the reset.
    for k, v in carried.items():
        np.testing.assert_array_equal(extras[f"state_{k}"], v.numpy())
    new = policy.state
    with torch.no_grad():
        obs_t = torch.from_numpy(obs[2])
        h_fresh, c_fresh = _fresh_step(net, obs_t[1:2])
        # Rows 0 and 2 carry on from their state: one LSTM step on the carried state (and previous action/reward).
        x = net.fc(net.torso(obs_t[[0, 2]]))
        if prev_action_reward:
            one_hot = torch.nn.functional.one_hot(carried["prev_action"][[0, 2]], 3).float()
            x = torch.cat([x, one_hot, carried["prev_reward"][[0, 2]].unsqueeze(1)], dim=1)
        h_on, c_on = net.lstm(x, (carried["h"][[0, 2]], carried["c"][[0, 2]]))
        logits_fresh = net.policy(h_fresh)
    torch.testing.assert_close(new["h"][1:2], h_fresh, rtol=0, atol=1e-6)
    torch.testing.assert_close(new["c"][1:2], c_fresh, rtol=0, atol=1e-6)
    torch.testing.assert_close(new["h"][[0, 2]], h_on, rtol=0, atol=1e-6)
    torch.testing.assert_close(new["c"][[0, 2]], c_on, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(extras["logits"][1:2]), logits_fresh, rtol=0, atol=1e-6)
    # A reset row does not equal what carrying its state would have given (the test can tell them apart).
    assert not torch.allclose(new["h"][1], carried["h"][1])
    if prev_action_reward:
        assert new["prev_action"].tolist() == actions.tolist()


def test_policy_samples_from_the_softmax_of_its_logits_and_greedy_takes_the_argmax() -> None:
    net = ActorCriticNetwork((1, 10, 10), 3, ACNetworkConfig(hidden=8))
    with torch.no_grad():  # logits independent of the observation: log(0.2, 0.3, 0.5)
        net.policy.weight.zero_()
        net.policy.bias.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
    obs = np.zeros((4000, 1, 10, 10), np.uint8)
    policy = ACPolicy(net, seed=11)
    actions = np.concatenate([policy.act(obs, 0)[0] for _ in range(5)])
    freq = np.bincount(actions, minlength=3) / len(actions)
    np.testing.assert_allclose(freq, [0.2, 0.3, 0.5], atol=0.015)  # 20000 draws: std of a share <= 0.0036
    again = ACPolicy(net, seed=11)
    np.testing.assert_array_equal(np.concatenate([again.act(obs, 0)[0] for _ in range(5)]), actions)
    greedy_actions, extras = ACPolicy(net, seed=0, greedy=True).act(obs[:3], 0)
    assert greedy_actions.tolist() == [2, 2, 2]
    np.testing.assert_allclose(extras["logits"], np.log([[0.2, 0.3, 0.5]] * 3), rtol=0, atol=1e-6)


def _collect_unrolls(cfg: ActorCriticConfig, learner: ActorCriticLearner, chunks: int) -> list[Unroll]:
    actor = EnvActor(0, make_ac_parts, cfg, seed=cfg.run.seed + 1000)
    outs = [actor.run(cfg.runtime.chunk_steps, 0, learner.get_weights(), 0)]
    outs += [actor.run(cfg.runtime.chunk_steps, 0) for _ in range(chunks - 1)]
    return [o.payload for o in outs]


@pytest.mark.parametrize("prev_action_reward", [False, True])
def test_learner_recomputes_the_behaviour_logits_of_lstm_unrolls(prev_action_reward: bool) -> None:
    # Unrolls of 7 steps: catch games last 30 steps plus one autoreset step, so game ends and starts fall inside
    # unrolls (steps 30/31 and 61/62 of the actor's life).
    cfg = _tiny("network.core=lstm", f"network.prev_action_reward={str(prev_action_reward).lower()}",
                "agent.unroll_length=7", "runtime.chunk_steps=7", "env.num_envs=2")
    learner = ActorCriticLearner(probe_env(cfg), cfg, CPU)
    unrolls = _collect_unrolls(cfg, learner, 10)
    inner_starts = sum(int(u.starts[1:-1].sum()) for u in unrolls)
    assert inner_starts >= 4 and sum(int((~u.valid).sum()) for u in unrolls) >= 4
    previous_last = None
    with torch.no_grad():
        for k, u in enumerate(unrolls):
            b = Batch(u, CPU)
            logits, _ = learner.network.unroll(b.obs, b.state, b.starts, b.actions, b.rewards)
            torch.testing.assert_close(logits[:-1], b.behaviour_logits, rtol=0, atol=1e-6)
            if previous_last is not None:
                # Unroll k - 1's bootstrap step is unroll k's first step: same observation, same state.
                torch.testing.assert_close(previous_last, b.behaviour_logits[0], rtol=0, atol=1e-6)
            previous_last = logits[-1]
            if k + 1 < len(unrolls):
                # The state stored at unroll k + 1's start is the one the LSTM reaches over unroll k.
                state = dict(b.state)
                for t in range(u.length):
                    if prev_action_reward and t > 0:
                        state.update(prev_action=b.actions[t - 1], prev_reward=b.rewards[t - 1])
                    x = learner.network.fc(learner.network.torso(b.obs[t]))
                    _, new = learner.network._core_step(x, state, b.starts[t])
                    state.update(new)
                nxt = unrolls[k + 1].state
                np.testing.assert_allclose(state["h"].numpy(), nxt["h"], rtol=0, atol=1e-6)
                np.testing.assert_allclose(state["c"].numpy(), nxt["c"], rtol=0, atol=1e-6)
                if prev_action_reward:
                    np.testing.assert_array_equal(nxt["prev_action"], u.actions[-1])
                    np.testing.assert_array_equal(nxt["prev_reward"], u.rewards[-1])
    # The stored first state of an unroll that does not begin a game is not zero (the LSTM really carries).
    assert any(float(np.abs(u.state["h"]).max()) > 0 for u in unrolls[1:])


def test_feed_forward_learner_recomputes_the_behaviour_logits() -> None:
    cfg = _tiny("agent.unroll_length=7", "runtime.chunk_steps=7", "env.num_envs=2")
    learner = ActorCriticLearner(probe_env(cfg), cfg, CPU)
    for u in _collect_unrolls(cfg, learner, 3):
        assert u.state == {}
        b = Batch(u, CPU)
        with torch.no_grad():
            logits, _ = learner.network.unroll(b.obs, b.state, b.starts, b.actions, b.rewards)
        torch.testing.assert_close(logits[:-1], b.behaviour_logits, rtol=0, atol=1e-6)


def test_evaluation_feeds_the_lstm_its_previous_reward(monkeypatch: pytest.MonkeyPatch) -> None:
    # In training the adder hands each step's clipped reward to the policy (ACPolicy.observe_rewards): the LSTM's
    # previous-reward input. Evaluation must feed the same input, or the policy plays on inputs it never saw.
    cfg = _tiny("network.core=lstm", "network.prev_action_reward=true")
    spec = probe_env(cfg)
    weights = make_network(cfg, spec.obs_shape, spec.num_actions).state_dict()
    prev_rewards: list[np.ndarray] = []  # the previous-reward input entering each step after the first

    class RecordingPolicy(ACPolicy):
        def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            if self.state is not None:
                prev_rewards.append(self.state["prev_reward"].numpy().copy())
            return super().act(obs, frames, starts)

    env_rewards: list[np.ndarray] = []
    make_env = runtime_evaluate.make_env

    def recording_env(*args: Any, **kwargs: Any) -> Any:
        env = make_env(*args, **kwargs)
        step = env.step

        def stepping(actions: np.ndarray) -> Any:
            out = step(actions)
            env_rewards.append(np.asarray(out[1], np.float32).copy())
            return out

        env.step = stepping
        return env

    monkeypatch.setattr(ac_evaluate, "ACPolicy", RecordingPolicy)
    monkeypatch.setattr(runtime_evaluate, "make_env", recording_env)
    result = ac_evaluate.evaluate_policy(cfg, weights, episodes=2, seed=5)
    assert len(result.returns) == 2 and len(prev_rewards) >= 29
    rewards = np.stack(env_rewards[:29])  # catch games last 30 steps: every env is in its first game here
    assert np.abs(rewards).sum() > 0
    np.testing.assert_array_equal(np.stack(prev_rewards[:29]), np.clip(rewards, -1.0, 1.0))


# --- the trajectory adder ------------------------------------------------------------------------------------------
def _obs(step: int, n: int = 2) -> np.ndarray:
    """Observation ``[n, 1, 2, 2]`` whose pixels say which step and env produced it (10 * step + env)."""
    return np.stack([np.full((1, 2, 2), 10 * step + i, np.uint8) for i in range(n)])


def test_trajectory_adder_masks_autoreset_steps_and_cuts_episodes() -> None:
    g = 0.9
    seen: list[np.ndarray] = []
    adder = TrajectoryAdder(2, 3, (1, 2, 2), 3, g, clip_rewards=True, on_rewards=seen.append)
    adder.reset(_obs(0))
    F, T = False, True
    # env 0: game over at step 1 (terminated), step 2 is its autoreset step, a new game from obs 3; truncated
    #        (time limit, game over) at step 4, autoreset step 5.
    # env 1: life-loss terminal at step 1 (terminated, game not over: no reset, the next step is a real step);
    #        game over at step 5 (the last step of unroll 1).
    script = [  # rewards, terminated, truncated, game_over
        ([0.5, 2.0], [F, F], [F, F], [F, F]),
        ([-3.0, 1.0], [T, T], [F, F], [T, F]),
        ([7.0, 0.0], [F, F], [F, F], [F, F]),     # env 0's autoreset step: its reward is dropped
        ([1.0, 0.0], [F, F], [F, F], [F, F]),
        ([0.0, -1.0], [F, F], [T, F], [T, F]),
        ([0.0, 1.0], [F, T], [F, F], [F, T]),
    ]
    for step, (rewards, term, trunc, game_over) in enumerate(script):
        extras = {"logits": np.full((2, 3), float(step), np.float32), "state_h": np.full((2, 1), float(step))}
        adder.add(np.array([step % 3, (step + 1) % 3]), extras, np.array(rewards, np.float32), np.array(term),
                  np.array(trunc), _obs(step + 1), {"game_over": np.array(game_over)})
        if step == 2:
            first = adder.flush()
            assert first is not None and adder.flush() is None
    second = adder.flush()
    assert first is not None and second is not None
    assert (first.length, first.batch, second.length, second.batch) == (3, 2, 3, 2)

    assert first.valid.tolist() == [[T, T], [T, T], [F, T]]
    assert second.valid.tolist() == [[T, T], [T, T], [F, T]]
    # rewards clipped to [-1, 1], 0 on the autoreset step
    assert first.rewards.tolist() == [[0.5, 1.0], [-1.0, 1.0], [0.0, 0.0]]
    assert second.rewards.tolist() == [[1.0, 0.0], [0.0, -1.0], [0.0, 1.0]]
    assert [r.tolist() for r in seen] == first.rewards.tolist() + second.rewards.tolist()
    # discount 0 at a terminal (the life loss included) and on the autoreset step; gamma at the truncation
    np.testing.assert_allclose(first.discounts, [[g, g], [0.0, 0.0], [0.0, g]], rtol=1e-6)
    np.testing.assert_allclose(second.discounts, [[g, g], [g, g], [0.0, 0.0]], rtol=1e-6)
    # carry 0 wherever an episode ended (terminated or truncated) and on the autoreset step
    assert first.carry.tolist() == [[1, 1], [0, 0], [0, 1]]
    assert second.carry.tolist() == [[1, 1], [0, 1], [0, 0]]
    # starts: the very first observations, then the observation an autoreset step returns (env 0: obs 3 and 6);
    # not after the life loss, and not at a game's last observation.
    assert first.starts.tolist() == [[T, T], [F, F], [F, F], [T, F]]
    assert second.starts.tolist() == [[T, F], [F, F], [F, F], [T, F]]
    # observations: T + 1 per unroll, unroll 1's bootstrap observation is unroll 2's first
    assert first.obs[:, :, 0, 0, 0].tolist() == [[0, 1], [10, 11], [20, 21], [30, 31]]
    assert second.obs[:, :, 0, 0, 0].tolist() == [[30, 31], [40, 41], [50, 51], [60, 61]]
    np.testing.assert_array_equal(first.obs[-1], second.obs[0])
    np.testing.assert_array_equal(first.starts[-1], second.starts[0])
    # actions, behaviour logits and the recurrent state entering each unroll's first step
    assert first.actions.tolist() == [[0, 1], [1, 2], [2, 0]] and second.actions[0].tolist() == [0, 1]
    assert first.logits[:, 0, 0].tolist() == [0.0, 1.0, 2.0] and second.logits[:, 1, 2].tolist() == [3.0, 4.0, 5.0]
    assert first.state["h"].tolist() == [[0.0], [0.0]] and second.state["h"].tolist() == [[3.0], [3.0]]

    # env 1 ended its game at the last step of unroll 2: the next unroll begins with its autoreset step.
    adder.add(np.zeros(2, np.int64), {"logits": np.zeros((2, 3), np.float32)}, np.zeros(2, np.float32),
              np.zeros(2, bool), np.zeros(2, bool), _obs(7), {"game_over": np.zeros(2, bool)})
    assert adder.valid[0].tolist() == [True, False] and adder.starts[1].tolist() == [False, True]


def test_trajectory_adder_on_a_real_catch_actor_cuts_games_at_31_step_cycles() -> None:
    cfg = _tiny("agent.unroll_length=8", "runtime.chunk_steps=8", "env.num_envs=2")
    actor = EnvActor(0, make_ac_parts, cfg, seed=3)
    unrolls = [actor.run(8, 0).payload for _ in range(8)]   # 64 vector steps
    valid = np.concatenate([x.valid for x in unrolls])       # [64, 2]
    starts = np.concatenate([x.starts[:-1] for x in unrolls])
    carry = np.concatenate([x.carry for x in unrolls])
    discounts = np.concatenate([x.discounts for x in unrolls])
    # Games of 30 steps, then one autoreset step: invalid steps 30 and 61, starts at 0, 31 and 62.
    assert np.flatnonzero(~valid[:, 0]).tolist() == [30, 61]
    assert np.flatnonzero(starts[:, 0]).tolist() == [0, 31, 62]
    assert np.flatnonzero(carry[:, 0] == 0).tolist() == [29, 30, 60, 61]
    assert np.flatnonzero(discounts[:, 0] == 0).tolist() == [29, 30, 60, 61]
    for a, b in zip(unrolls, unrolls[1:]):
        np.testing.assert_array_equal(a.obs[-1], b.obs[0])
    # the observations marked as starts are zero-padded first frames of a game
    for x in unrolls:
        for t, i in zip(*np.nonzero(x.starts)):
            assert not x.obs[t, i, :-1].any() and x.obs[t, i, -1].any()
    both = Unroll.concat(unrolls[:2])
    assert both.batch == 4 and both.length == 8


def test_a_chunk_of_several_unrolls_goes_side_by_side_and_impala_learns_from_it() -> None:
    # IMPALA may send chunks of several unrolls (runtime.chunk_steps a multiple of agent.unroll_length): they are
    # concatenated along B, each with its own first observation, start mask and first LSTM state.
    cfg = _tiny("agent.loss=impala", "network.core=lstm", "runtime.chunk_steps=8", "env.num_envs=2")
    learner = ActorCriticLearner(probe_env(cfg), cfg, CPU)
    actor = EnvActor(0, make_ac_parts, cfg, seed=cfg.run.seed + 1000)
    outs = [actor.run(8, 0, learner.get_weights(), 0), actor.run(8, 0)]
    chunk = outs[1].payload
    assert (chunk.length, chunk.batch) == (4, 4) and chunk.state["h"].shape == (4, 32)
    np.testing.assert_array_equal(chunk.obs[-1, :2], chunk.obs[0, 2:])  # the first unroll's end starts the second
    b = Batch(chunk, CPU)
    with torch.no_grad():
        logits, _ = learner.network.unroll(b.obs, b.state, b.starts, b.actions, b.rewards)
    torch.testing.assert_close(logits[:-1], b.behaviour_logits, rtol=0, atol=1e-6)
    for out in outs:
        learner.ingest(out)
    before = {k: v.clone() for k, v in learner.get_weights().items()}
    assert learner.updates_due(Counters()) == 1
    stats = learner.update(Counters(frame_skip=4, total_steps=cfg.run.total_frames // 4))
    assert learner.pending == [] and learner.updates_due(Counters()) == 0
    # both chunks were collected on the learner's weights: every importance weight is 1
    assert stats["losses/mean_rho"] == pytest.approx(1.0, abs=1e-5)
    assert any(not torch.equal(before[k], v) for k, v in learner.get_weights().items())


# --- config validation ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, key", [
    (["runtime.max_ahead_chunks=1"], "runtime.max_ahead_chunks"),
    (["agent.loss=ppo", "runtime.max_ahead_chunks=1"], "runtime.max_ahead_chunks"),
    (["runtime.chunk_steps=8"], "runtime.chunk_steps"),
    (["runtime.publish_every_updates=2"], "runtime.publish_every_updates"),
    (["agent.loss=ppo", "agent.ppo_minibatches=17"], "agent.ppo_minibatches"),   # 4 envs x 4 steps = 16 steps
    (["agent.loss=ppo", "network.core=lstm", "agent.ppo_minibatches=5"], "agent.ppo_minibatches"),  # 4 columns
    (["agent.loss=impala", "runtime.chunk_steps=6"], "runtime.chunk_steps"),
    (["agent.gae_lambda=1.5"], "agent.gae_lambda"),
    (["agent.max_grad_norm=-1"], "agent.max_grad_norm"),
])
def test_config_validation_names_the_key(overrides: list[str], key: str) -> None:
    cfg = _tiny(*overrides)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_config_validation_accepts_the_limits() -> None:
    validate(_tiny("agent.loss=ppo", "agent.ppo_minibatches=16"))
    validate(_tiny("agent.loss=ppo", "network.core=lstm", "agent.ppo_minibatches=4"))
    validate(_tiny("agent.loss=ppo", "runtime.num_actors=2", "agent.ppo_minibatches=32"))
    validate(_tiny("agent.loss=impala", "runtime.max_ahead_chunks=2", "runtime.chunk_steps=8"))


# --- the loss reduction (TensorFlow's RMSProp: tests/unit/test_optim.py) --------------------------------------------
def test_summed_losses_are_the_mean_times_the_unmasked_steps() -> None:
    cfg = _tiny("agent.loss=impala")
    spec = probe_env(cfg)
    actor = EnvActor(0, make_ac_parts, cfg, seed=3)
    unroll = actor.run(cfg.agent.unroll_length, 0).payload
    parts = {}
    for reduction in ("mean", "sum"):
        cfg.agent.loss_reduction = reduction  # type: ignore[assignment]
        learner = ActorCriticLearner(spec, cfg, torch.device("cpu"))
        _, parts[reduction] = learner.losses(Batch(unroll, torch.device("cpu")), "impala")
    steps = float(unroll.valid.sum())
    for key in ("policy_loss", "value_loss"):
        assert parts["sum"][key].item() == pytest.approx(parts["mean"][key].item() * steps, rel=1e-5)
    assert parts["sum"]["entropy"].item() == pytest.approx(parts["mean"]["entropy"].item())  # logged as a mean


def test_orthogonal_initialisation_as_baselines() -> None:
    torch.manual_seed(0)
    net = ActorCriticNetwork((4, 84, 84), 6, ACNetworkConfig())
    w = net.policy.weight.detach()  # [6, 256]: orthogonal rows of norm 0.01
    torch.testing.assert_close(w @ w.T, 1e-4 * torch.eye(6), rtol=0, atol=1e-9)
    fc = net.fc[0].weight.detach()  # [256, 2592]: orthonormal rows scaled by sqrt(2)
    torch.testing.assert_close(fc @ fc.T, 2.0 * torch.eye(256), rtol=0, atol=1e-4)
    assert not net.value.bias.detach().any() and not net.torso[0].bias.detach().any()  # zero biases
    with torch.no_grad():
        logits, _ = net(torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8))
    assert float(torch.softmax(logits, -1).max()) < 0.2  # a near-uniform first policy over 6 actions
    plain = ActorCriticNetwork((4, 84, 84), 6, ACNetworkConfig(orthogonal_init=False))
    assert plain.torso[0].bias.detach().abs().sum() > 0  # PyTorch's default initialisation keeps random biases
