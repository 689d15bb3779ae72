"""The actor-critic family's exploration bonus (issue 24 item 1): A3C+'s one stream, RND's two streams (second value
head, own discount, non-episodic, return-normalised), checked against hand computations; validation; the adder's
novelty state surviving a save and load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.actor_critic.actor import TrajectoryAdder, Unroll, make_ac_parts
from agents.actor_critic.config import ActorCriticConfig, validate
from agents.actor_critic.learning import ActorCriticLearner, Batch, IntrinsicReturnScale
from agents.actor_critic.networks import ActorCriticNetwork
from agents.exploration import NoveltyScorer
from agents.runtime.algorithm import EnvSpec
from envs.novelty import make_novelty_source, novelty_input
from launch.config import load_config

SHAPE = (3, 7, 7)


def _cfg(*overrides: str) -> ActorCriticConfig:
    return load_config(ActorCriticConfig, ["a2c_maze"], ["env.game=maze/7", "env.num_envs=2", *overrides])


def _learner(*overrides: str) -> ActorCriticLearner:
    cfg = _cfg(*overrides)
    spec = EnvSpec(SHAPE, 4, 1, 1, SHAPE, 1.0)
    return ActorCriticLearner(spec, cfg, torch.device("cpu"))


def _unroll(int_rewards: np.ndarray | None) -> Unroll:
    """T = 2 steps of one env: step 0 ends its game (terminated), step 1 is the autoreset step."""
    return Unroll(obs=np.zeros((3, 1, *SHAPE), np.uint8), starts=np.array([[True], [False], [True]]),
                  actions=np.zeros((2, 1), np.int64), logits=np.zeros((2, 1, 4), np.float32),
                  rewards=np.array([[1.0], [0.0]], np.float32), discounts=np.zeros((2, 1), np.float32),
                  carry=np.zeros((2, 1), np.float32), valid=np.array([[True], [False]]),
                  int_rewards=int_rewards)


def test_two_value_heads_give_values_per_stream() -> None:
    cfg = _cfg("exploration.bonus=rnd", "exploration.streams=two")
    net = cfg.build_network(SHAPE, 4, 1.0)
    assert isinstance(net, ActorCriticNetwork) and net.value_heads == 2
    obs = torch.zeros(2, 2, *SHAPE, dtype=torch.uint8)  # [T + 1, B, ...]
    logits, values = net.unroll(obs, {}, torch.zeros(2, 2, dtype=torch.bool), torch.zeros(1, 2, dtype=torch.int64),
                                torch.zeros(1, 2), bootstrap_grad=False)
    assert logits.shape == (2, 2, 4) and values.shape == (2, 2, 2)
    one = _cfg("exploration.bonus=cts", "exploration.streams=one").build_network(SHAPE, 4, 1.0)
    assert isinstance(one, ActorCriticNetwork) and one.value.out_features == 1


def test_two_streams_by_hand_non_episodic_and_episodic() -> None:
    """Ext: the game ends at step 0 (discount 0); the intrinsic stream, gamma_I = 0.5, runs on through it (and the
    autoreset step) unless episodic. Values V_E = (0.1, 0.2, 0.3), V_I = (1, 2, 4); lambda 1; weights 2 and 1.

    V_E: delta_0 = 1 - 0.1 = 0.9, delta_1 = 0 - 0.2 = -0.2 (no carry between them): A_E = (0.9, -0.2).
    V_I: delta_1 = 0.25 + 0.5 * 4 - 2 = 0.25; delta_0 = 0.5 + 0.5 * 2 - 1 = 0.5; A_I = (0.5 + 0.5 * 0.25, 0.25).
    """
    learner = _learner("exploration.bonus=rnd", "exploration.streams=two", "exploration.intrinsic_gamma=0.5")
    batch = Batch(_unroll(np.array([[0.5], [0.25]], np.float32)), torch.device("cpu"))
    values = torch.tensor([[[0.1, 1.0]], [[0.2, 2.0]], [[0.3, 4.0]]])
    adv, streams = learner._streams(batch, values, "a2c")
    torch.testing.assert_close(adv, torch.tensor([[2 * 0.9 + 0.625], [2 * -0.2 + 0.25]]))
    (targets_e, mask_e), (targets_i, mask_i) = streams
    torch.testing.assert_close(targets_e, torch.tensor([[1.0], [0.0]]))
    torch.testing.assert_close(targets_i, torch.tensor([[1.625], [2.25]]))
    assert mask_e.tolist() == [[1.0], [0.0]] and mask_i.tolist() == [[1.0], [1.0]]  # V_I learns the reset step too

    episodic = _learner("exploration.bonus=rnd", "exploration.intrinsic_gamma=0.5",
                        "exploration.intrinsic_episodic=true")
    adv, streams = episodic._streams(batch, values, "a2c")
    torch.testing.assert_close(streams[1][0], torch.tensor([[0.5], [0.25]]))  # cut like the extrinsic stream
    torch.testing.assert_close(adv, torch.tensor([[2 * 0.9 + (0.5 - 1.0)], [2 * -0.2 + (0.25 - 2.0)]]))


def test_one_stream_is_the_plain_objective() -> None:
    learner = _learner("exploration.bonus=cts", "exploration.streams=one")
    batch = Batch(_unroll(None), torch.device("cpu"))
    adv, streams = learner._streams(batch, torch.tensor([[0.1], [0.2], [0.3]]), "a2c")
    torch.testing.assert_close(adv, torch.tensor([[0.9], [-0.2]]))
    assert len(streams) == 1


def test_intrinsic_return_scale_by_hand() -> None:
    """gamma 0.5: returns 1, 1.5 (std 0.25), then 0.75 carried on from 1.5 (never reset): std of (1, 1.5, 0.75)."""
    scale = IntrinsicReturnScale(0.5)
    assert scale.std == 1.0
    scale.update(0, np.array([[1.0], [1.0]]))
    assert scale.std == pytest.approx(0.25)
    scale.update(1, np.array([[3.0]]))  # another actor's envs have their own running return
    scale.update(0, np.array([[0.0]]))
    assert scale.returns[0].tolist() == [0.75] and scale.returns[1].tolist() == [3.0]
    assert scale.std == pytest.approx(np.std([1.0, 1.5, 3.0, 0.75]))
    again = IntrinsicReturnScale(0.5)
    again.load_state_dict(scale.state_dict())
    assert again.std == scale.std and again.returns[0].tolist() == [0.75]


def _twin_scorers() -> tuple[NoveltyScorer, NoveltyScorer]:
    spec = novelty_input("maze", "cts", SHAPE)
    return (NoveltyScorer(make_novelty_source("cts", spec, 0.5), spec),
            NoveltyScorer(make_novelty_source("cts", spec, 0.5), spec))


@pytest.mark.parametrize("streams", ["one", "two"])
def test_the_adder_adds_or_keeps_the_bonus(streams: str) -> None:
    rng = np.random.default_rng(0)
    grids = (rng.random((4, 2, *SHAPE)) < 0.3).astype(np.uint8)
    scorer, twin = _twin_scorers()
    adder = TrajectoryAdder(2, 2, SHAPE, 4, 0.99, clip_rewards=True, scorer=scorer, streams=streams)
    adder.reset(grids[0])
    twin.score(grids[0])
    reward = np.array([3.0, 0.0])  # clipped to 1
    info = {"game_over": np.array([True, False])}  # env 0's game ends at step 0: step 1 is its autoreset step
    adder.add(np.zeros(2, np.int64), {"logits": np.zeros((2, 4), np.float32)}, reward, np.array([True, False]),
              np.zeros(2, bool), grids[1], info)
    adder.add(np.zeros(2, np.int64), {"logits": np.zeros((2, 4), np.float32)}, np.zeros(2), np.zeros(2, bool),
              np.zeros(2, bool), grids[2], {"game_over": np.zeros(2, bool)})
    unroll = adder.flush()
    assert unroll is not None
    b1, _ = twin.score(grids[1])
    b2, _ = twin.score(grids[2])
    if streams == "one":  # A3C+: clipped reward + bonus, nothing on env 0's autoreset step
        expected = np.array([[1.0 + b1[0], b1[1]], [0.0, b2[1]]], np.float32)
        np.testing.assert_allclose(unroll.rewards, expected, rtol=1e-6)
        assert unroll.int_rewards is None
    else:  # RND: rewards untouched, every step's bonus kept apart (the reset step's included: non-episodic)
        np.testing.assert_allclose(unroll.rewards, [[1.0, 0.0], [0.0, 0.0]])
        assert unroll.int_rewards is not None
        np.testing.assert_allclose(unroll.int_rewards, np.stack([b1, b2]).astype(np.float32), rtol=1e-6)
    assert adder.stats is not None and adder.stats.frames_learned == 6


@pytest.mark.parametrize("override, match", [
    ("exploration.intrinsic_gamma=1.0", r"exploration.intrinsic_gamma=1.0 must lie in \[0, 1\)"),
    ("exploration.intrinsic_gamma=-0.1", "exploration.intrinsic_gamma"),
    ("exploration.extrinsic_coef=-1.0", "exploration.extrinsic_coef=-1.0 must be a finite number >= 0"),
    ("exploration.beta=-0.01", "exploration.beta"),
    ("exploration.rnd_init_steps=-1", "exploration.rnd_init_steps"),
])
def test_settings_that_cannot_work_are_refused(override: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate(_cfg("exploration.bonus=rnd", override))


def test_straw_takes_one_stream_only() -> None:
    from agents.straw.config import StrawConfig
    from agents.straw.config import validate as validate_straw

    cfg = load_config(StrawConfig, ["strawe_maze"], ["exploration.bonus=cts", "exploration.streams=two"])
    with pytest.raises(ValueError, match="exploration.streams=two needs a second value head.*streams=one"):
        validate_straw(cfg)
    validate_straw(load_config(StrawConfig, ["strawe_maze"], ["exploration.bonus=cts", "exploration.streams=one"]))


def test_a_family_the_bonus_cannot_score_is_refused_when_the_actor_is_built() -> None:
    cfg = load_config(ActorCriticConfig, ["a2c_minatar"], ["env.game=minatar/seaquest", "exploration.bonus=cts"])
    with pytest.raises(ValueError, match=r"exploration.bonus: 'cts' cannot score minatar observations of 10 "
                                         r"channels.*exploration.bonus=rnd"):
        make_ac_parts(cfg, 0)


def test_a_restored_rnd_gives_the_next_bonuses_of_an_uninterrupted_run() -> None:
    cfg = _cfg("exploration.bonus=rnd", "exploration.streams=two", "exploration.rnd_init_steps=4")
    first = make_ac_parts(cfg, 0)
    obs, _ = first.env.reset(seed=1)
    first.adder.reset(obs)
    rng = np.random.default_rng(0)
    for _ in range(6):
        obs, *_ = first.env.step(rng.integers(0, 4, 2))
        first.adder.scorer.score(obs)
    saved = first.adder.state_dict()
    second = make_ac_parts(cfg, 0)
    second.adder.load_state_dict(saved)
    for _ in range(4):
        obs, *_ = first.env.step(rng.integers(0, 4, 2))
        a, _ = first.adder.scorer.score(obs)
        b, _ = second.adder.scorer.score(obs)
        np.testing.assert_array_equal(a, b)
    fresh = make_ac_parts(cfg, 0)  # without the state the bonuses differ: the test can fail
    assert not np.array_equal(fresh.adder.scorer.score(obs)[0], first.adder.scorer.score(obs)[0])


def test_impala_on_policy_two_streams_equal_the_n_step_targets() -> None:
    """On-policy (log rho = 0) V-trace is the n-step return: IMPALA's two streams give A2C's (lambda 1) targets."""
    learner = _learner("exploration.bonus=rnd", "exploration.streams=two", "exploration.intrinsic_gamma=0.5")
    batch = Batch(_unroll(np.array([[0.5], [0.25]], np.float32)), torch.device("cpu"))
    values = torch.tensor([[[0.1, 1.0]], [[0.2, 2.0]], [[0.3, 4.0]]])
    a2c_adv, a2c_streams = learner._streams(batch, values, "a2c")
    adv, streams = learner._streams(batch, values, "impala", log_rhos=torch.zeros(2, 1))
    torch.testing.assert_close(adv, a2c_adv)
    for (targets, mask), (expected, expected_mask) in zip(streams, a2c_streams):
        torch.testing.assert_close(targets, expected)
        assert torch.equal(mask, expected_mask)
