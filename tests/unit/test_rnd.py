"""Random Network Distillation (worldmodels/density/rnd.py): the paper's defaults, the bonus is the predictor's error
and falls on familiar inputs, the input whitening and clipping, the training fraction, exact resume, bad settings,
and the NoveltySource protocol that RND and the pseudo-counts share."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from worldmodels.density import CTS, PseudoCount
from worldmodels.density.rnd import RND, RNDConfig, RunningMeanStd
from worldmodels.protocols import NoveltySource

GRID = (4, 10, 10)


def _grids(rng: np.random.Generator, n: int, shape: tuple[int, ...] = GRID) -> np.ndarray:
    return (rng.random((n, *shape)) < 0.2).astype(np.float32)


def test_defaults_are_the_papers() -> None:
    c = RNDConfig()
    assert (c.input_shape, c.feature_dim, c.predictor_hidden, c.learning_rate, c.update_proportion, c.obs_clip) == (
        (1, 84, 84), 512, 512, 1e-4, 0.25, 5.0)
    rnd = RND()
    convs = [m for m in rnd.target.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size, m.stride) for m in convs] == [(32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)),
                                                                          (64, (3, 3), (1, 1))]
    linears = [m for m in rnd.predictor.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512, 512, 512]
    assert not any(p.requires_grad for p in rnd.target.parameters())
    bonus = rnd.step(np.random.default_rng(0).integers(0, 256, (3, 84, 84), dtype=np.uint8))  # [B, H, W] is 1 channel
    assert bonus.dtype == np.float64 and bonus.shape == (3,) and np.isfinite(bonus).all() and (bonus > 0).all()


def test_the_bonus_is_beta_times_the_mean_squared_feature_error_before_learning() -> None:
    rnd = RND(RNDConfig(input_shape=GRID, beta=2.0, feature_dim=8, predictor_hidden=16))
    x = _grids(np.random.default_rng(0), 5)
    rnd.init_normalizer(x)
    inputs = rnd._normalise(x)
    with torch.no_grad():
        expected = 2.0 * (rnd.predictor(inputs) - rnd.target(inputs)).pow(2).mean(dim=1).double().numpy()
    np.testing.assert_allclose(rnd.score(x), expected, rtol=1e-6)
    np.testing.assert_allclose(rnd.step(x), expected, rtol=1e-6)  # scored before the predictor's step


def test_the_bonus_falls_on_familiar_inputs_and_stays_high_on_new_ones() -> None:
    rng = np.random.default_rng(0)
    rnd = RND(RNDConfig(input_shape=GRID, learning_rate=1e-3, update_proportion=1.0))
    familiar, novel = _grids(rng, 8), _grids(rng, 8)
    rnd.init_normalizer(np.concatenate([_grids(rng, 64)]))
    first = rnd.score(familiar).mean()
    for _ in range(60):
        rnd.step(familiar)
    assert rnd.score(familiar).mean() < 0.2 * first
    assert rnd.score(novel).mean() > 2 * rnd.score(familiar).mean()


def test_inputs_are_whitened_by_running_statistics_and_clipped_to_5() -> None:
    rng = np.random.default_rng(1)
    rnd = RND(RNDConfig(input_shape=(1, 3, 3)))
    init = rng.normal(10.0, 2.0, (500, 1, 3, 3))
    rnd.init_normalizer(init[:200])
    rnd.init_normalizer(init[200:])  # two folds equal one pass over all of them (Chan's update)
    np.testing.assert_allclose(rnd.normalizer.mean, init.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(rnd.normalizer.var, init.var(axis=0), rtol=1e-10)
    assert rnd.normalizer.count == 500
    x = init[:4].copy()
    x[0, 0, 0, 0] = 1e6  # far outside: clipped
    x[1, 0, 0, 0] = -1e6
    white = rnd._normalise(x).numpy()
    assert white[0, 0, 0, 0] == 5.0 and white[1, 0, 0, 0] == -5.0
    expected = (x[2:] - init.mean(axis=0)) / np.sqrt(init.var(axis=0) + 1e-8)
    np.testing.assert_allclose(white[2:], expected, rtol=1e-5)
    # step updates the statistics after scoring: mean of all 504 inputs
    rnd.step(x)
    np.testing.assert_allclose(rnd.normalizer.mean, np.concatenate([init, x]).mean(axis=0), rtol=1e-9)


def test_running_mean_std_starts_from_the_first_batch() -> None:
    rms = RunningMeanStd((2,))
    rms.update(np.array([[1.0, 2.0], [3.0, 6.0]]))
    np.testing.assert_array_equal(rms.mean, [2.0, 4.0])
    np.testing.assert_array_equal(rms.var, [1.0, 4.0])


def test_the_predictor_trains_on_the_configured_fraction() -> None:
    rnd = RND(RNDConfig(input_shape=GRID, feature_dim=8, predictor_hidden=8))
    rng = np.random.default_rng(0)
    for _ in range(20):
        rnd.step(_grids(rng, 100))
    assert rnd.num_updates == 2000 and 400 < rnd.num_trained < 600  # 0.25 of 2000


def test_resume_mid_stream_gives_the_uninterrupted_runs_next_bonuses_exactly() -> None:
    config = RNDConfig(input_shape=GRID, learning_rate=1e-3)
    rng = np.random.default_rng(0)
    stream = [_grids(rng, 6) for _ in range(12)]
    straight = RND(config)
    straight.init_normalizer(_grids(np.random.default_rng(1), 50))
    for batch in stream[:6]:
        straight.step(batch)
    buffer = io.BytesIO()
    torch.save(straight.state_dict(), buffer)  # as a checkpoint stores it
    buffer.seek(0)
    resumed = RND(RNDConfig(input_shape=GRID, learning_rate=1e-3))
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    for batch in stream[6:]:
        np.testing.assert_array_equal(resumed.step(batch), straight.step(batch))
    assert resumed.num_trained == straight.num_trained
    with pytest.raises(ValueError, match="saved config"):
        RND(RNDConfig(input_shape=GRID, feature_dim=64)).load_state_dict(straight.state_dict())


@pytest.mark.parametrize("overrides, match", [
    ({"feature_dim": 0}, "rnd.feature_dim=0 must be at least 1"),
    ({"predictor_hidden": 0}, "rnd.predictor_hidden=0 must be at least 1"),
    ({"learning_rate": -1e-4}, "rnd.learning_rate"),
    ({"learning_rate": 0.0}, "rnd.learning_rate"),
    ({"beta": -1.0}, "rnd.beta"),
    ({"update_proportion": 0.0}, "rnd.update_proportion"),
    ({"update_proportion": 1.5}, "rnd.update_proportion"),
    ({"obs_clip": 0.0}, "rnd.obs_clip"),
    ({"input_shape": (4, 10, 10), "conv": "nature"}, "conv='small'"),
    ({"input_shape": (4, 0, 10)}, "every side"),
])
def test_settings_that_cannot_work_are_refused_by_name(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RND(RNDConfig(**overrides))


def test_wrong_inputs_are_refused() -> None:
    rnd = RND(RNDConfig(input_shape=GRID, feature_dim=4, predictor_hidden=4))
    with pytest.raises(ValueError, match=r"\[B, 4, 10, 10\]"):
        rnd.step(np.zeros((2, 3, 10, 10), np.float32))
    with pytest.raises(ValueError, match="finite"):
        rnd.step(np.full((2, *GRID), np.nan, np.float32))
    with pytest.raises(TypeError, match="rnd.feature_dim"):
        RND(RNDConfig(**{"feature_dim": 1.5}))


def test_rnd_and_the_pseudo_counts_are_novelty_sources() -> None:
    assert isinstance(RND(RNDConfig(input_shape=GRID, feature_dim=4, predictor_hidden=4)), NoveltySource)
    assert isinstance(PseudoCount(CTS(shape=(4, 4))), NoveltySource)
