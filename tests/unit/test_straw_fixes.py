"""The settings that address why STRAW does not learn here (README's STRAW section; issue 25): a bounded attention
centre for the action plan and for the commitment filter, and a value head on the features. Each is ours, off by
default; these tests pin what each promises, that the paper's form is unchanged, and that checkpoints written before
the settings existed still load and run."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from agents.straw.attention import attention_params, bounded_intensity, bounded_stride_scale, filterbank, read, write
from agents.straw.config import StrawConfig, validate
from agents.straw.core import STRAWCore
from tests.unit.test_straw import FEATURES, OBS_SHAPE, Counting  # the same feature network as the core's tests

torch.set_num_threads(1)


def _core(seed: int = 0, plan_len: int = 12, num_filters: int = 3, noisy: bool = False,
          commit_init_centre: float = 0.0, attention_init: str = "draw", attention_centre: str = "paper",
          commit_centre: str = "paper", value_head: str = "plan", write_intensity: str = "paper",
          intensity_bound: float = 4.0) -> STRAWCore:
    torch.manual_seed(seed)
    return STRAWCore(Counting(), FEATURES, 3, plan_len=plan_len, num_filters=num_filters, noisy=noisy, latent_dim=8,
                     commit_init_centre=commit_init_centre, attention_init=attention_init,
                     attention_centre=attention_centre, commit_centre=commit_centre, value_head=value_head,
                     write_intensity=write_intensity, intensity_bound=intensity_bound)


def _core_with(choices: dict[str, str], noisy: bool = False) -> STRAWCore:
    """:func:`_core` with some of attention_centre, commit_centre, value_head and write_intensity given by name."""
    full = {"attention_centre": "paper", "commit_centre": "paper", "value_head": "plan", "write_intensity": "paper",
            **choices}
    return _core(noisy=noisy, attention_centre=full["attention_centre"], commit_centre=full["commit_centre"],
                 value_head=full["value_head"], write_intensity=full["write_intensity"])


def _obs(*lead: int) -> torch.Tensor:
    return torch.randint(0, 4, (*lead, *OBS_SHAPE), dtype=torch.uint8)


# ---------------------------------------------------------------------------------------- (a) bounded attention

@pytest.mark.parametrize("plan_len, num_filters", [(100, 10), (500, 10), (12, 3), (40, 1)])
def test_the_bounded_centre_and_stride_stay_in_range_for_any_input(plan_len: int, num_filters: int) -> None:
    g = torch.tensor([-1e30, -1e6, -50.0, -3.0, 0.0, 3.0, 50.0, 1e6, 1e30])
    raw = torch.stack([g, torch.zeros_like(g), g.flip(0), torch.zeros_like(g)], dim=1)  # strides from extremes too
    att = attention_params(raw, plan_len, num_filters, window=num_filters)
    assert torch.isfinite(att.centre).all() and torch.isfinite(att.stride).all()
    # 1-based columns: the first K columns span [0.5, K + 0.5] (0-based [-0.5, K - 0.5]).
    assert (att.centre >= 0.5).all() and (att.centre <= num_filters + 0.5).all()
    assert (att.stride >= 0).all() and (att.stride <= bounded_stride_scale(plan_len, num_filters)).all()
    if num_filters > 1:  # never wider than DRAW's grid over the whole plan
        assert bounded_stride_scale(plan_len, num_filters) >= (plan_len - 1) / (num_filters - 1)
    # DRAW's centre from the same inputs leaves the plan altogether, which is what the bounded one is for.
    paper = attention_params(raw, plan_len, num_filters)
    assert paper.centre.min() < -plan_len and paper.centre.max() > 2 * plan_len


def test_raw_zeros_put_the_bounded_grid_on_the_next_k_columns() -> None:
    att = attention_params(torch.zeros(1, 4), 100, 10, window=10)
    first = att.centre - 4.5 * att.stride
    assert att.centre.item() == pytest.approx(5.5) and att.stride.item() == pytest.approx(1.0)
    assert first.item() == pytest.approx(1.0)
    # STRAWCore's "near" start under the bounded centre: zero weights and biases, the same grid for every observation.
    core = _core(plan_len=100, num_filters=10, attention_init="near", attention_centre="bounded")
    assert not core.f_psi.weight.any() and not core.f_psi.bias.any()


@pytest.mark.parametrize("g_tilde", [-30.0, -8.0, -2.0, 2.0, 8.0, 30.0])
def test_a_drifted_bounded_grid_still_writes_the_first_columns_and_gets_gradient(g_tilde: float) -> None:
    # DRAW's centre at g~ = -8 sits 350 columns before the plan (T = 100): a unit write reaches none of the first
    # columns and no gradient comes back, for good. The bounded one, from any g~, still writes into the columns the
    # next K steps read, and the loss on those columns still moves g~ (float64: the sigmoid's tail is not 0).
    def first_columns(window: int | None) -> tuple[float, float]:
        raw = torch.tensor([[g_tilde, 0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
        att = attention_params(raw, 100, 10, window=window)
        out = write(torch.ones(1, 1, 10, dtype=torch.float64), att, 100, filterbank(att, 100, 10))
        mass = out[0, 0, :10].sum()
        mass.backward()
        assert raw.grad is not None
        return float(mass.detach()), float(raw.grad[0, 0].abs())

    mass, grad = first_columns(10)
    assert mass > 0.5 and grad > 0
    if abs(g_tilde) >= 8:
        assert first_columns(None) == (0.0, 0.0)


# ------------------------------------------------------------------------------------- (b) bounded commitment

@pytest.mark.parametrize("plan_len", [100, 500])
@pytest.mark.parametrize("commit_centre", ["paper", "bounded"])
def test_f_c_gets_gradient_from_the_start_under_the_bounded_commitment_centre(plan_len: int,
                                                                              commit_centre: str) -> None:
    # DRAW's initialisation: the commitment filter in the plan's middle, f_c's gradient exactly 0 (the measured
    # cause). Bounded: in the first K columns, so the commitment cost alone already reaches f_c, and so does a loss on
    # the policy through the straight-through gate.
    core = _core(plan_len=plan_len, num_filters=10, commit_centre=commit_centre)
    steps = 6
    starts = torch.zeros(steps, 2, dtype=torch.bool)
    starts[0] = True
    gates = torch.tensor([[1, 1], [0, 1], [1, 0], [0, 0], [1, 1], [0, 1]], dtype=torch.bool)
    out = core.unroll(_obs(steps, 2), core.initial_state(2), starts, gates)
    out.replan_prob.sum().backward()
    assert core.f_c.weight.grad is not None and core.commit_bias.grad is not None
    assert core.commit_bias.grad.abs().item() > 0
    assert (core.f_c.weight.grad.abs().sum().item() > 0) == (commit_centre == "bounded")
    core.zero_grad(set_to_none=True)
    out = core.unroll(_obs(steps, 2), core.initial_state(2), starts, gates)
    out.logits[1:].pow(2).sum().backward()
    assert core.f_c.weight.grad is not None
    assert (core.f_c.weight.grad.abs().sum().item() > 0) == (commit_centre == "bounded")


def test_the_bounded_commitment_filter_starts_inside_its_window_and_where_asked() -> None:
    core = _core(plan_len=100, num_filters=10, commit_centre="bounded")
    raw_c = core.f_c(torch.zeros(1, core.f_c.in_features))
    centre = attention_params(raw_c, 100, 1, window=core.commit_window).centre.item()
    assert abs(centre - 5.5) < 1.0  # PyTorch's small random bias: about the window's middle
    core = _core(plan_len=100, num_filters=10, commit_centre="bounded", commit_init_centre=3.0)
    raw_c = core.f_c(torch.zeros(1, core.f_c.in_features))
    assert attention_params(raw_c, 100, 1, window=10).centre.item() == pytest.approx(4.0, abs=1e-4)
    # And a first re-plan commits with probability about 1/2 (c_t[0] = sigmoid(b + ~0)): no collapse at the start.
    state = core.initial_state(4)
    starts = torch.ones(4, dtype=torch.bool)
    with torch.no_grad():
        _, _, after, _ = core.step(_obs(4), state, starts, starts)
    assert 0.3 < after["commit"][:, 0].mean().item() < 0.7
    with pytest.raises(ValueError, match="commit_init_centre"):
        _core(plan_len=100, num_filters=10, commit_centre="bounded", commit_init_centre=10.0)


# --------------------------------------------------------------------------------------- (c) the value head

def _committed_values(value_head: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits and values of one committed step from the same plans with two different observations."""
    core = _core(seed=2, value_head=value_head)
    if value_head != "plan":  # a head that is not zero, as after training
        with torch.no_grad():
            core.value_head.weight.normal_()
    starts = torch.ones(2, dtype=torch.bool)
    with torch.no_grad():
        _, _, state, _ = core.step(_obs(2), core.initial_state(2), starts, starts)
        no = torch.zeros(2, dtype=torch.bool)
        obs_a = torch.zeros(2, *OBS_SHAPE, dtype=torch.uint8)
        obs_b = torch.full((2, *OBS_SHAPE), 3, dtype=torch.uint8)
        logits_a, values_a, _, _ = core.step(obs_a, state, no, no)
        logits_b, values_b, _, _ = core.step(obs_b, state, no, no)
    return logits_a, values_a, logits_b, values_b


@pytest.mark.parametrize("value_head", ["plan", "features", "both"])
def test_a_feature_value_head_sees_the_observation_on_committed_steps(value_head: str) -> None:
    logits_a, values_a, logits_b, values_b = _committed_values(value_head)
    assert torch.equal(logits_a, logits_b)  # the policy still follows the plan
    assert torch.equal(values_a, values_b) == (value_head == "plan")


def test_the_feature_value_head_runs_the_features_every_step_and_the_planner_only_on_replans() -> None:
    core = _core(value_head="features")
    features = core.features
    assert isinstance(features, Counting)
    starts = torch.ones(3, dtype=torch.bool)
    with torch.no_grad():
        _, _, state, _ = core.step(_obs(3), core.initial_state(3), starts, starts)
        calls = features.calls
        no = torch.zeros(3, dtype=torch.bool)
        _, _, after, _ = core.step(_obs(3), state, no, no)
    assert features.calls == calls + 1 and features.rows[-1] == 3
    assert torch.equal(after["plan"][:, :, :-1], state["plan"][:, :, 1:])  # committed: the plans only shift
    # The paper's value row: no features at all on a committed step.
    core = _core(value_head="plan")
    features = core.features
    assert isinstance(features, Counting)
    with torch.no_grad():
        _, _, state, _ = core.step(_obs(3), core.initial_state(3), starts, starts)
        calls = features.calls
        core.step(_obs(3), state, no, no)
    assert features.calls == calls


@pytest.mark.parametrize("value_head, write_intensity", [("features", "paper"), ("both", "paper"),
                                                         ("features", "bounded")])
def test_the_learners_replay_reproduces_the_actor_with_every_new_setting(value_head: str,
                                                                         write_intensity: str) -> None:
    # The commitment filter 4 columns ahead and a negative bias b: the actor both commits and re-plans.
    core = _core(seed=1, noisy=True, plan_len=40, num_filters=6, attention_centre="bounded",
                 commit_centre="bounded", commit_init_centre=4.0, value_head=value_head,
                 write_intensity=write_intensity)
    with torch.no_grad():
        core.value_head.weight.normal_()
        core.commit_bias.fill_(-0.5)
    steps, batch = 9, 3
    obs = _obs(steps, batch)
    starts = torch.zeros(steps, batch, dtype=torch.bool)
    starts[0] = True
    starts[4, 1] = True
    generator = torch.Generator().manual_seed(3)
    state0 = core.initial_state(batch)
    state = state0
    rec: dict[str, list[torch.Tensor]] = {"logits": [], "values": [], "gates": [], "noise": []}
    with torch.no_grad():
        for t in range(steps):
            gates = core.sample_gates(state, starts[t], generator)
            logits, values, state, info = core.step(obs[t], state, starts[t], gates)
            for key, value in (("logits", logits), ("values", values), ("gates", info["gates"]),
                               ("noise", info["noise"])):
                rec[key].append(value)
    taken = torch.stack(rec["gates"])
    assert taken.any() and not taken.all()
    out = core.unroll(obs, state0, starts, taken, torch.stack(rec["noise"]))
    assert torch.allclose(out.logits, torch.stack(rec["logits"]), atol=1e-5)
    assert torch.allclose(out.values, torch.stack(rec["values"]), atol=1e-5)


# ------------------------------------------------------------------------------------------ (d) write intensity

#: Raw log gamma~ from far below to far above anything a network outputs, and the rest of the raw parameters with it.
EXTREME = torch.tensor([-1e30, -1e4, -60.0, -8.0, -1.0, 0.0, 1.0, 8.0, 60.0, 1e4, 1e30])


@pytest.mark.parametrize("bound", [1.0, 1.5, 4.0, 100.0])
@pytest.mark.parametrize("window", [None, 10])
def test_the_bounded_write_into_a_column_never_exceeds_the_bound(bound: float, window: int | None) -> None:
    # A patch of ones: each of the K filters sums to 1 over the columns, so it puts at most 1 into any column, and the
    # write divides by gamma > 1 / c: at most K * c into any column, for any centre, width, stride and intensity.
    n = len(EXTREME)
    for centre, log_sigma2 in ((0.0, 0.0), (-1.0, -20.0), (3.0, 5.0)):
        raw = torch.stack([torch.full((n,), centre), torch.full((n,), log_sigma2), EXTREME.flip(0), EXTREME], dim=1)
        att = attention_params(raw, 100, 10, window=window, intensity_bound=bound)
        assert torch.isfinite(att.gamma).all()
        assert (att.gamma >= (1.0 / bound) * (1 - 1e-6)).all() and (att.gamma <= bound * (1 + 1e-6)).all()
        out = write(torch.ones(n, 1, 10), att, 100)
        assert torch.isfinite(out).all() and out.max().item() <= 10 * bound * (1 + 1e-5)
        # The read of a plan of ones is gamma times at most K (one per filter): at most K * c too.
        assert read(torch.ones(n, 1, 100), att, 10).max().item() <= 10 * bound * (1 + 1e-5)
    # DRAW's gamma from the same inputs writes without bound: the cause this setting removes.
    raw = torch.stack([torch.zeros(n), torch.zeros(n), torch.zeros(n), EXTREME], dim=1)
    paper = attention_params(raw, 100, 10)
    assert write(torch.ones(n, 1, 10), paper, 100).max().item() > 1e20


def test_the_bounded_intensity_agrees_with_draws_at_one_and_c_one_fixes_it() -> None:
    log_gamma = torch.tensor([-0.01, 0.0, 0.01], dtype=torch.float64, requires_grad=True)
    gamma = bounded_intensity(log_gamma, 4.0)
    assert gamma[1].item() == 1.0
    assert torch.allclose(gamma, torch.exp(log_gamma.detach()), atol=1e-5)  # same value and slope at 0
    gamma.sum().backward()
    assert log_gamma.grad is not None and torch.allclose(log_gamma.grad, torch.ones(3, dtype=torch.float64), atol=0.02)
    # The ends: (1 / c, c), reached only where tanh saturates.
    assert bounded_intensity(torch.tensor([-1e30, 1e30]), 4.0).tolist() == pytest.approx([0.25, 4.0])
    # c = 1: gamma is 1 whatever the input, the read not scaled, the write not divided, no gradient into log gamma~.
    log_gamma = torch.tensor([-50.0, 0.0, 3.0], requires_grad=True)
    ones = bounded_intensity(log_gamma, 1.0)
    assert torch.equal(ones, torch.ones(3))
    assert not ones.requires_grad
    for bad in (0.5, 0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="intensity bound"):
            bounded_intensity(torch.zeros(1), bad)


def test_the_papers_intensity_is_unchanged_bit_for_bit() -> None:
    # The paper's mode is DRAW's exp(log gamma~) exactly, and a core built with write_intensity="paper" (any bound)
    # computes exactly what the core computed before the setting existed (its defaults).
    generator = torch.Generator().manual_seed(7)
    raw = torch.randn(64, 4, generator=generator) * 3.0
    att = attention_params(raw, 100, 10)
    assert torch.equal(att.gamma, torch.exp(raw[:, 3]))
    assert torch.equal(attention_params(raw, 100, 10, window=10).gamma, torch.exp(raw[:, 3]))
    steps, batch = 6, 3
    obs = _obs(steps, batch)
    starts = torch.zeros(steps, batch, dtype=torch.bool)
    starts[0] = True
    gates = torch.tensor([[1, 1, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 1], [0, 1, 0]], dtype=torch.bool)
    outs = []
    choices: list[dict[str, Any]] = [{}, {"write_intensity": "paper"}, {"write_intensity": "paper",
                                                                         "intensity_bound": 1.5}]
    for kwargs in choices:
        core = _core(**kwargs)
        assert core.intensity_bound is None
        outs.append(core.unroll(obs, core.initial_state(batch), starts, gates))
    for out in outs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(outs[0], out))
    # The bounded one differs once gamma is off 1 (its weights are the same: only the transform changes).
    bounded = _core(write_intensity="bounded", intensity_bound=1.0)
    with torch.no_grad():
        bounded.f_psi.bias[3] = 2.0
    paper = _core()
    paper.load_state_dict(bounded.state_dict())
    a = bounded.unroll(obs, bounded.initial_state(batch), starts, gates)
    b = paper.unroll(obs, paper.initial_state(batch), starts, gates)
    assert not torch.allclose(a.logits, b.logits)


def test_a_bad_intensity_bound_names_the_key() -> None:
    cfg = StrawConfig()
    for bad in (0.5, 0.0, float("nan")):
        cfg.straw.intensity_bound = bad
        with pytest.raises(ValueError, match="straw.intensity_bound"):
            validate(cfg)
        with pytest.raises(ValueError, match="intensity_bound"):
            _core(write_intensity="bounded", intensity_bound=bad)
    cfg.straw.intensity_bound = 1.0
    validate(cfg)
    from launch.config import load_config

    with pytest.raises(ValueError, match="straw.write_intensity"):
        load_config(StrawConfig, ["straw_maze"], ["straw.write_intensity=clamped"])
    cfg = load_config(StrawConfig, ["straw_maze"], ["straw.write_intensity=bounded", "straw.intensity_bound=2"])
    validate(cfg)
    net = cfg.straw_network((3, 5, 5), 4)
    assert net.core.intensity_bound == 2.0


# ----------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("key, value", [("attention_centre", "middle"), ("commit_centre", "wide"),
                                        ("value_head", "critic"), ("write_intensity", "clamped")])
def test_a_bad_choice_is_an_error_that_names_the_key(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=key):
        _core_with({key: value})
    cfg = StrawConfig()
    setattr(cfg.straw, key, value)  # as a hand-built config could, past OmegaConf's check
    with pytest.raises(ValueError, match=f"straw.{key}=.*choose one of"):
        validate(cfg)


def test_a_bad_choice_in_an_override_names_the_key() -> None:
    from launch.config import load_config

    with pytest.raises(ValueError, match="straw.value_head"):
        load_config(StrawConfig, ["straw_maze"], ["straw.value_head=critic"])
    cfg = load_config(StrawConfig, ["straw_maze"], ["straw.attention_centre=bounded", "straw.commit_centre=bounded",
                                                    "straw.value_head=both"])
    validate(cfg)
    assert (str(cfg.straw.attention_centre), str(cfg.straw.commit_centre), str(cfg.straw.value_head)) == (
        "bounded", "bounded", "both")


def test_a_commitment_start_outside_the_bounded_window_names_the_key() -> None:
    cfg = StrawConfig()
    cfg.straw.commit_centre = "bounded"  # type: ignore[assignment]
    cfg.straw.commit_init_centre = float(cfg.straw.num_filters)
    with pytest.raises(ValueError, match="straw.commit_init_centre"):
        validate(cfg)
    cfg.straw.commit_init_centre = 4.0
    validate(cfg)


# ------------------------------------------------------------------------------------------- old checkpoints

#: The parameters of STRAWCore before these settings existed (commit 809b96b), for _core()'s sizes: |A| = 3,
#: T = 12, K = 3, h of 64 units, F = 16; STRAWe adds z_mu and z_log_sigma of 8 dimensions.
OLD_CORE_PARAMS = {
    "features.net.1.weight": (16, 18), "features.net.1.bias": (16,),
    "f_psi.weight": (4, 16), "f_psi.bias": (4,),
    "h.0.weight": (64, 28), "h.0.bias": (64,), "h.2.weight": (64, 64), "h.2.bias": (64,),
    "f_p.weight": (12, 64), "f_p.bias": (12,),
    "f_c.weight": (4, 68), "f_c.bias": (4,),
    "commit_bias": (),
}
OLD_STRAWE_PARAMS = {**OLD_CORE_PARAMS, "z_mu.weight": (8, 16), "z_mu.bias": (8,), "z_log_sigma.weight": (8, 16),
                     "z_log_sigma.bias": (8,), "f_psi.weight": (4, 8), "h.0.weight": (64, 20)}


@pytest.mark.parametrize("noisy", [False, True])
@pytest.mark.parametrize("settings", [{}, {"attention_centre": "paper", "commit_centre": "paper", "value_head": "plan"},
                                      {"attention_centre": "bounded", "commit_centre": "bounded"},
                                      {"attention_centre": "bounded", "write_intensity": "bounded"}])
def test_a_checkpoint_from_before_the_settings_loads_and_runs(noisy: bool, settings: dict[str, str]) -> None:
    old = OLD_STRAWE_PARAMS if noisy else OLD_CORE_PARAMS
    generator = torch.Generator().manual_seed(5)
    state_dict = {k: torch.randn(shape, generator=generator) * 0.1 for k, shape in old.items()}
    core = _core_with(settings, noisy=noisy)
    assert {k: tuple(v.shape) for k, v in core.state_dict().items()} == old  # no parameter added
    core.load_state_dict(state_dict, strict=True)
    starts = torch.ones(2, dtype=torch.bool)
    with torch.no_grad():
        logits, values, _, _ = core.step(_obs(2), core.initial_state(2), starts, starts)
    assert torch.isfinite(logits).all() and torch.isfinite(values).all()


def test_a_checkpoint_from_before_the_settings_loads_into_the_papers_network_from_the_config() -> None:
    # The network a run builds from the config (the maze preset's torso), with the defaults, has the parameters it
    # had before: a saved run's weights load into it as they are and it evaluates.
    from launch.config import load_config

    paper = load_config(StrawConfig, ["straw_maze"], ["straw.attention_centre=paper", "straw.commit_centre=paper",
                                                      "straw.value_head=plan"])
    defaults = load_config(StrawConfig, ["straw_maze"])
    torch.manual_seed(0)
    saved = defaults.straw_network((3, 5, 5), 4).state_dict()
    net = paper.straw_network((3, 5, 5), 4)
    net.load_state_dict(saved, strict=True)
    assert not any("value_head" in k for k in saved)
    state = net.initial_state(2)
    logits, values, _ = net.step(torch.zeros(2, 3, 5, 5, dtype=torch.uint8), state, torch.ones(2, dtype=torch.bool))
    assert logits.shape == (2, 4) and values.shape == (2,)
    # A feature value head has parameters of its own: an old checkpoint does not carry them (strict load fails,
    # naming them), so such weights continue under value_head=plan.
    feats = load_config(StrawConfig, ["straw_maze"], ["straw.value_head=features"]).straw_network((3, 5, 5), 4)
    with pytest.raises(RuntimeError, match="value_head"):
        feats.load_state_dict(saved, strict=True)
