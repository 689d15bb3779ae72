"""STRAW's core against hand-computed cases: the shift, DRAW's 1-D filterbank read and write, the gate contract
(no network run on committed steps, plans only shift), the straight-through gradient, STRAWe's KL, the learner's
replay of the actor's steps, and the detached commitment module (Vezhnevets et al. 2016, Sec. 3-5.1)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from agents.straw.attention import attention_params, filterbank, read, shift, write
from agents.straw.core import STRAWCore

torch.set_num_threads(1)

OBS_SHAPE = (2, 3, 3)
FEATURES = 16


class Counting(nn.Module):
    """A feature network that counts its calls and the rows of each."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(OBS_SHAPE), FEATURES), nn.ReLU())
        self.calls = 0
        self.rows: list[int] = []

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows.append(obs.shape[0])
        return self.net(obs.float())


def _core(num_actions: int = 3, plan_len: int = 12, num_filters: int = 3, noisy: bool = False,
          seed: int = 0) -> STRAWCore:
    torch.manual_seed(seed)
    return STRAWCore(Counting(), FEATURES, num_actions, plan_len=plan_len, num_filters=num_filters,
                     noisy=noisy, latent_dim=8)


def _obs(*lead: int) -> torch.Tensor:
    return torch.randint(0, 4, (*lead, *OBS_SHAPE), dtype=torch.uint8)


def _raw(g_tilde: float, log_sigma2: float, log_delta: float, log_gamma: float) -> torch.Tensor:
    return torch.tensor([[g_tilde, log_sigma2, log_delta, log_gamma]], dtype=torch.float64)


# ------------------------------------------------------------------------------------------ shift, read, write

def test_shift_drops_the_first_column_and_appends_zeros() -> None:
    plan = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]])
    assert torch.equal(shift(plan), torch.tensor([[[2.0, 3.0, 4.0, 0.0], [6.0, 7.0, 8.0, 0.0]]]))
    assert torch.equal(shift(torch.tensor([[0.5, 0.25, 0.125]])), torch.tensor([[0.25, 0.125, 0.0]]))


def test_attention_parameters_follow_draw_eqs_22_24() -> None:
    # T = 5, K = 3: g = (T + 1)/2 (g~ + 1) (eq. 22), delta = (T - 1)/(K - 1) exp(log delta~) (eq. 24).
    att = attention_params(_raw(0.0, math.log(2.0), 0.0, math.log(3.0)), plan_len=5, num_filters=3)
    assert att.centre.item() == pytest.approx(3.0)
    assert att.stride.item() == pytest.approx(2.0)
    assert att.sigma2.item() == pytest.approx(2.0)
    assert att.gamma.item() == pytest.approx(3.0)
    assert attention_params(_raw(-1.0, 0.0, 0.0, 0.0), 5, 3).centre.item() == pytest.approx(0.0)
    assert attention_params(_raw(1.0, 0.0, math.log(0.5), 0.0), 5, 3).stride.item() == pytest.approx(1.0)
    # K = 1 (ours): the stride is 0 whatever log delta~ says.
    assert attention_params(_raw(0.0, 0.0, 3.0, 0.0), 5, 1).stride.item() == 0.0
    # g~ = 0, delta~ = 1 spread the filters over the whole plan, first centre at column 1, last at column T.
    fb_centres = attention_params(_raw(0.0, 0.0, 0.0, 0.0), 500, 10)
    assert fb_centres.centre.item() - 4.5 * fb_centres.stride.item() == pytest.approx(1.0)
    assert fb_centres.centre.item() + 4.5 * fb_centres.stride.item() == pytest.approx(500.0)
    with pytest.raises(ValueError, match="nn.Linear"):
        attention_params(torch.zeros(1, 3), 5, 3)


def test_read_and_write_with_one_filter_by_hand() -> None:
    # T = 3, K = 1, g~ = 0 -> g = 2, sigma^2 = 1: F = [e^-1/2, 1, e^-1/2] / (1 + 2 e^-1/2).
    e = math.exp(-0.5)
    z = 1.0 + 2.0 * e
    f = [e / z, 1.0 / z, e / z]
    gamma = 2.0
    att = attention_params(_raw(0.0, 0.0, 1.7, math.log(gamma)), plan_len=3, num_filters=1)
    assert filterbank(att, 3, 1)[0, 0].tolist() == pytest.approx(f, abs=1e-7)
    plan = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 2.0, 4.0]]], dtype=torch.float64)
    patch = read(plan, att, 1)
    assert patch.shape == (1, 2, 1)
    assert patch[0, :, 0].tolist() == pytest.approx([gamma * f[0], gamma * (f[0] + 2 * f[1] + 4 * f[2])], abs=1e-7)
    # DRAW's write divides by gamma: a patch of 3 writes 3 / gamma * F.
    out = write(torch.tensor([[[3.0]]], dtype=torch.float64), att, 3)
    assert out.shape == (1, 1, 3)
    assert out[0, 0].tolist() == pytest.approx([3.0 / gamma * v for v in f], abs=1e-7)


def test_read_and_write_with_two_filters_by_hand() -> None:
    # T = 3, K = 2, g = 2, delta = (3 - 1)/(2 - 1) = 2: mu = 2 + (i - 1.5) * 2 = 1 and 3; sigma^2 = 1, gamma = 1.
    e1, e4 = math.exp(-0.5), math.exp(-2.0)
    z = 1.0 + e1 + e4
    f1, f2 = [1.0 / z, e1 / z, e4 / z], [e4 / z, e1 / z, 1.0 / z]
    att = attention_params(_raw(0.0, 0.0, 0.0, 0.0), plan_len=3, num_filters=2)
    fb = filterbank(att, 3, 2)[0]
    assert fb[0].tolist() == pytest.approx(f1, abs=1e-7)
    assert fb[1].tolist() == pytest.approx(f2, abs=1e-7)
    plan = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    assert read(plan, att, 2)[0, 0].tolist() == pytest.approx(
        [f1[0] + 2 * f1[1] + 3 * f1[2], f2[0] + 2 * f2[1] + 3 * f2[2]], abs=1e-7)
    # write(p) = p F: column a gets p_1 F[1, a] + p_2 F[2, a].
    out = write(torch.tensor([[[2.0, -1.0]]], dtype=torch.float64), att, 3)[0, 0]
    assert out.tolist() == pytest.approx([2 * a - b for a, b in zip(f1, f2)], abs=1e-7)


# ------------------------------------------------------------------------------------------------- the gate

def _after_one_replan(core: STRAWCore, batch: int) -> dict[str, torch.Tensor]:
    """A state with non-trivial plans: one re-planning step from a game start."""
    starts = torch.ones(batch, dtype=torch.bool)
    with torch.no_grad():
        _, _, state, _ = core.step(_obs(batch), core.initial_state(batch), starts, starts)
    return state


def test_initial_state_replans_first() -> None:
    core = _core()
    state = core.initial_state(2)
    assert state["plan"].shape == (2, 4, 12) and not state["plan"].any()
    assert state["commit"][:, 0].tolist() == [1.0, 1.0] and not state["commit"][:, 1:].any()
    assert core.sample_gates(state, torch.zeros(2, dtype=torch.bool)).all()


def test_committed_steps_never_run_the_network_and_only_shift() -> None:
    core = _core()
    state = _after_one_replan(core, 3)
    features = core.features
    assert isinstance(features, Counting)
    calls = features.calls
    no = torch.zeros(3, dtype=torch.bool)
    for _ in range(4):
        logits, values, new_state, info = core.step(_obs(3), state, no, no)
        assert torch.equal(new_state["plan"], shift(state["plan"]))
        assert torch.equal(new_state["commit"], shift(state["commit"]))
        assert torch.equal(logits, shift(state["plan"])[:, :3, 0])
        assert torch.equal(values, shift(state["plan"])[:, 3, 0])
        assert torch.equal(info["replan_prob"], state["commit"][:, 0])
        assert not info["kl"].any()
        state = new_state
    assert features.calls == calls
    # Mixed gates: one call, on the re-planning rows only.
    core.step(_obs(3), state, no, torch.tensor([False, True, False]))
    assert features.calls == calls + 1 and features.rows[-1] == 1


def test_a_game_start_resets_the_plans_and_forces_the_gate() -> None:
    core = _core()
    state = _after_one_replan(core, 2)
    starts = torch.tensor([True, False])
    with torch.no_grad():
        _, _, new_state, info = core.step(_obs(2), state, starts, torch.zeros(2, dtype=torch.bool))
    assert info["gates"].tolist() == [True, False]
    assert info["replan_prob"][0].item() == 1.0  # the initial commitment plan's first column
    assert torch.equal(new_state["plan"][1], shift(state["plan"][1]))
    fresh = core.initial_state(1)
    with torch.no_grad():
        _, _, from_fresh, _ = core.step(_obs(1), fresh, torch.ones(1, dtype=torch.bool),
                                        torch.ones(1, dtype=torch.bool))
    # Env 0's plans no longer depend on its past: the re-plan starts from the initial (zero) plan.
    assert not torch.equal(new_state["plan"][0], shift(state["plan"][0]))
    assert new_state["commit"][0].min() > 0.0 and from_fresh["commit"].min() > 0.0


# ---------------------------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("second_gate", [1.0, 0.0])
def test_the_straight_through_gradient_reaches_the_commitment_module(second_gate: float) -> None:
    # Step 0 starts a game (re-plans, writes c_0); the gate of step 1 goes straight through c_0[0], so a loss on
    # step 1's logits reaches the commitment bias and f_c. At a committed step (gate 0) the would-be write makes
    # the straight-through gradient complete (module docstring), so it reaches them too.
    core = _core()
    obs = _obs(2, 2)
    starts = torch.tensor([[True, True], [False, False]])
    gates = torch.tensor([[1.0, 1.0], [second_gate, second_gate]])
    out = core.unroll(obs, core.initial_state(2), starts, gates)
    assert out.replan_prob[1].requires_grad
    out.logits[1].pow(2).sum().backward()
    assert core.commit_bias.grad is not None and core.commit_bias.grad.abs().item() > 0
    assert core.f_c.weight.grad is not None and core.f_c.weight.grad.abs().sum().item() > 0


def test_the_commitment_plan_sends_no_gradient_into_the_planning_module() -> None:
    core = _core()
    steps = 5
    starts = torch.zeros(steps, 2, dtype=torch.bool)
    starts[0] = True
    gates = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1], [0, 0]], dtype=torch.bool)
    out = core.unroll(_obs(steps, 2), core.initial_state(2), starts, gates)
    out.replan_prob.sum().backward()  # the commitment cost: a loss on c only
    assert core.commit_bias.grad is not None and core.commit_bias.grad.abs().item() > 0
    planning = [*core.f_psi.parameters(), *core.h.parameters(), *core.f_p.parameters(), *core.features.parameters()]
    assert all(p.grad is None or not p.grad.any() for p in planning)
    # And through the actor's step: a loss on the new commitment plan alone.
    core.zero_grad(set_to_none=True)
    _, _, state, _ = core.step(_obs(2), core.initial_state(2), starts[0], gates[0])
    state["commit"].sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in planning)
    assert core.f_c.weight.grad is not None and core.f_c.weight.grad.abs().sum().item() > 0


@pytest.mark.parametrize("init_centre", [0.0, 4.0])
def test_where_the_commitment_filter_starts_decides_whether_f_c_learns(init_centre: float) -> None:
    # DRAW's initialisation centres the commitment filter at the middle of a plan of T = 100 columns: the columns the
    # gate reads during a short unroll lie ~50 filter widths away, where the Gaussian is 0 in float32, so f_c gets
    # exactly zero gradient and only the bias b learns. Started 4 columns ahead, it learns.
    torch.manual_seed(0)
    core = STRAWCore(Counting(), FEATURES, 3, plan_len=100, num_filters=3, commit_init_centre=init_centre)
    raw_c = core.f_c(torch.zeros(1, core.f_c.in_features))  # the bias alone: where the filter starts
    centre = attention_params(raw_c, 100, 1).centre.item()
    if init_centre == 0:  # PyTorch's random bias, |g~| <= 1 / sqrt(68): within 6.2 columns of the middle
        assert abs(centre - 50.5) < 6.2
    else:  # 1-based columns: column 1 is the current step
        assert centre == pytest.approx(init_centre + 1, abs=1e-4)
    steps = 6
    starts = torch.zeros(steps, 2, dtype=torch.bool)
    starts[0] = True
    out = core.unroll(_obs(steps, 2), core.initial_state(2), starts, torch.tensor([[1, 1], [0, 1], [1, 0], [0, 0],
                                                                                   [1, 1], [0, 1]]))
    out.replan_prob.sum().backward()
    assert core.commit_bias.grad is not None and core.commit_bias.grad.abs().item() > 0
    assert core.f_c.weight.grad is not None
    assert (core.f_c.weight.grad.abs().sum().item() > 0) == (init_centre > 0)


@pytest.mark.parametrize("plan_len", [100, 500])
def test_near_attention_starts_on_the_next_k_columns(plan_len: int) -> None:
    # "near": filter i on column i (1-based), unit stride, sigma = gamma = 1, whatever the observation; so a write
    # reaches column 1 (the current step's logits and value) with most of a patch. "draw" at T >= 100 does not.
    def column0_weight(init: str) -> torch.Tensor:
        torch.manual_seed(1)
        core = STRAWCore(Counting(), FEATURES, 3, plan_len=plan_len, num_filters=10, attention_init=init)
        att = attention_params(core.f_psi(core.features(_obs(64))), plan_len, 10)
        if init == "near":
            assert torch.allclose(att.centre, torch.full((64,), 5.5), atol=1e-4)
            assert torch.allclose(att.stride, torch.ones(64), atol=1e-4)
            assert torch.allclose(att.sigma2, torch.ones(64)) and torch.allclose(att.gamma, torch.ones(64))
        return filterbank(att, plan_len, 10)[:, :, 0].sum(1) / att.gamma  # of a unit patch, into column 1

    assert column0_weight("near").min() > 0.85
    assert column0_weight("draw").median() < 0.1
    with pytest.raises(ValueError, match="attention_init"):
        STRAWCore(Counting(), FEATURES, 3, attention_init="middle")


def test_the_kl_is_zero_on_committed_steps_and_positive_on_replanning_steps() -> None:
    core = _core(noisy=True)
    state = core.initial_state(2)
    pattern = [[True, True], [False, True], [True, False], [False, False]]
    starts = torch.tensor([[True, True], [False, False], [False, False], [False, False]])
    noises = []
    for t, row in enumerate(pattern):
        _, _, state, info = core.step(_obs(2), state, starts[t], torch.tensor(row))
        for b, gate in enumerate(row):
            assert (info["kl"][b].item() > 0) if gate else (info["kl"][b].item() == 0.0)
            assert bool(info["noise"][b].any()) == gate
        noises.append(info["noise"])
    out = core.unroll(_obs(4, 2), core.initial_state(2), starts, torch.tensor(pattern), torch.stack(noises))
    assert torch.equal(out.kl > 0, torch.tensor(pattern))
    assert not out.kl[~torch.tensor(pattern)].any()
    with pytest.raises(ValueError, match="noise"):
        core.unroll(_obs(4, 2), core.initial_state(2), starts, torch.tensor(pattern))


# ------------------------------------------------------------------------------------ the learner's replay

@pytest.mark.parametrize("noisy", [False, True])
def test_the_learners_replay_reproduces_the_actors_steps(noisy: bool) -> None:
    core = _core(noisy=noisy, seed=1)
    steps, batch = 9, 3
    obs = _obs(steps, batch)
    starts = torch.zeros(steps, batch, dtype=torch.bool)
    starts[0] = True
    starts[4, 1] = True  # a game start inside the unroll
    # Push the commitment bias down so that the actor commits as well as re-plans.
    with torch.no_grad():
        core.commit_bias.fill_(-0.5)
    # The stored initial plans: where an earlier unroll left them.
    state0 = _after_one_replan(core, batch)
    generator = torch.Generator().manual_seed(3)
    state, rec = state0, {"logits": [], "values": [], "replan_prob": [], "kl": [], "gates": [], "noise": []}
    with torch.no_grad():
        for t in range(steps):
            gates = core.sample_gates(state, starts[t], generator)
            logits, values, state, info = core.step(obs[t], state, starts[t], gates)
            for key, value in (("logits", logits), ("values", values), ("replan_prob", info["replan_prob"]),
                               ("kl", info["kl"]), ("gates", info["gates"]), ("noise", info["noise"])):
                rec[key].append(value)
    gates_taken = torch.stack(rec["gates"])
    assert gates_taken.any() and not gates_taken.all()  # both kinds of step are exercised
    out = core.unroll(obs, state0, starts, gates_taken, torch.stack(rec["noise"]) if noisy else None)
    probs = torch.softmax(out.logits, dim=-1)
    assert torch.allclose(probs, torch.softmax(torch.stack(rec["logits"]), dim=-1), atol=1e-5)
    assert torch.allclose(out.logits, torch.stack(rec["logits"]), atol=1e-5)
    assert torch.allclose(out.values, torch.stack(rec["values"]), atol=1e-5)
    assert torch.allclose(out.replan_prob, torch.stack(rec["replan_prob"]), atol=1e-5)
    assert torch.allclose(out.kl, torch.stack(rec["kl"]), atol=1e-4)


# ---------------------------------------------------------------------------------------------- the paper's size

@pytest.mark.parametrize("num_actions", [4, 18])
def test_shapes_at_the_papers_size(num_actions: int) -> None:
    core = _core(num_actions=num_actions, plan_len=500, num_filters=10, noisy=True)
    state = core.initial_state(2)
    assert state["plan"].shape == (2, num_actions + 1, 500) and state["commit"].shape == (2, 500)
    starts = torch.tensor([True, False])
    logits, values, new_state, info = core.step(_obs(2), state, starts, starts)
    assert logits.shape == (2, num_actions) and values.shape == (2,)
    assert new_state["plan"].shape == state["plan"].shape and new_state["commit"].shape == state["commit"].shape
    assert info["replan_prob"].shape == (2,) and info["kl"].shape == (2,) and info["noise"].shape == (2, 8)
    # Filters centred inside the plan sum to 1 (one centred far outside with a narrow width reads ~nothing).
    att = attention_params(torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.2, 1.0, -0.5, 0.3]]), 500, 10)
    assert torch.allclose(filterbank(att, 500, 10).sum(-1), torch.ones(2, 10), atol=1e-5)
    out = core.unroll(_obs(3, 2), state, torch.tensor([[True, True], [False, False], [False, True]]),
                      torch.ones(3, 2), torch.zeros(3, 2, 8))
    assert out.logits.shape == (3, 2, num_actions)
    assert out.values.shape == out.replan_prob.shape == out.kl.shape == (3, 2)
