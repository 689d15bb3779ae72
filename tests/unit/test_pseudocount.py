"""Pseudo-counts and bonuses: the formula on hand cases, every edge case, and growth with repetition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worldmodels.density import CTS, PseudoCount, ostrovski_gain_decay, preprocess_frames
from worldmodels.density.pseudocount import bonus_from_log_count, log_pseudo_count, prediction_gain


class FixedLogProbs:
    """A DensityModel stand-in returning given (log rho, log rho') pairs, to pin the arithmetic."""

    def __init__(self, pairs: list[tuple[float, float]]) -> None:
        self.pairs = list(pairs)

    def update(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        taken, self.pairs = self.pairs[: len(frames)], self.pairs[len(frames) :]
        return np.array([p[0] for p in taken]), np.array([p[1] for p in taken])

    def log_prob(self, frames: np.ndarray) -> np.ndarray:
        return np.zeros(len(frames))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _bonus(
    pairs: list[tuple[float, float]], beta: float = 0.05, **kw: object
) -> tuple[np.ndarray, PseudoCount]:
    pc = PseudoCount(FixedLogProbs(pairs), beta=beta, **kw)  # type: ignore[arg-type]
    return pc(np.zeros((len(pairs), 1, 1), dtype=np.uint8)), pc


def test_hand_computed_count_and_bonus() -> None:
    # rho = 0.2, rho' = 0.25: N = rho (1 - rho') / (rho' - rho) = 0.2 * 0.75 / 0.05 = 3.
    bonus, pc = _bonus([(math.log(0.2), math.log(0.25))], beta=0.05)
    assert pc.last_counts[0] == pytest.approx(3.0, rel=1e-12)
    assert pc.last_gains[0] == pytest.approx(math.log(1.25), rel=1e-12)
    assert bonus[0] == pytest.approx(0.05 / math.sqrt(3.01), rel=1e-12)
    # A frame of probability e^-1000: rho' = rho * (1 + 1/k) gives N = k (1 - rho') = k. The gain is
    # a difference of floats near 1000 (spacing 1e-13), so it is exact to about 1e-13 / (1/k).
    for k in (1.0, 10.0, 1e6):
        _, pc = _bonus([(-1000.0, -1000.0 + math.log1p(1 / k))])
        assert pc.last_counts[0] == pytest.approx(k, rel=1e-12 * k)


def test_non_positive_gain_gives_infinite_count_and_zero_bonus() -> None:
    bonus, pc = _bonus([(-5.0, -5.0), (-5.0, -6.0), (-np.inf, -np.inf)])
    np.testing.assert_array_equal(bonus, [0.0, 0.0, 0.0])
    assert np.isinf(pc.last_counts).all() and (pc.last_counts > 0).all()


def test_tiny_gain_gives_huge_count_and_finite_positive_bonus() -> None:
    tiny = 5e-324  # smallest positive float: N ~ 1/tiny overflows a float, log N does not
    bonus, pc = _bonus([(-1.0, -1.0 + 1e-12)])
    gain = pc.last_gains[0]  # 1e-12 up to the float spacing near 1
    assert gain == pytest.approx(1e-12, rel=1e-3)
    assert pc.last_counts[0] == pytest.approx((1 - math.exp(-1.0 + 1e-12)) / gain, rel=1e-9)
    assert bonus[0] == pytest.approx(0.05 / math.sqrt(pc.last_counts[0]), rel=1e-9)
    # Such a gain arises from a decayed gain (or a log rho' near 0); test the helpers directly.
    log_count = log_pseudo_count(np.array([tiny]), np.array([-1000.0]))
    assert log_count[0] == pytest.approx(-math.log(tiny), rel=1e-12)  # 744.44: N = e^744 overflows
    assert log_count[0] > math.log(np.finfo(np.float64).max)
    assert 0.0 < bonus_from_log_count(log_count, 0.05)[0] < 1e-150


def test_huge_gain_gives_zero_count_and_maximum_bonus() -> None:
    bonus, pc = _bonus([(-2000.0, -1.0), (-np.inf, -3.0), (-1.0, 0.0)], beta=0.05)
    np.testing.assert_allclose(pc.last_counts, [0.0, 0.0, 0.0], atol=1e-300)
    np.testing.assert_allclose(bonus, [0.5, 0.5, 0.5], rtol=1e-12)  # beta / sqrt(0.01) = 10 beta


def test_nan_or_positive_log_prob_is_an_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        _bonus([(np.nan, -1.0)])
    with pytest.raises(ValueError, match="<= 0"):
        prediction_gain(np.array([-1.0]), np.array([0.5]))


def test_stable_helpers_agree_with_the_naive_formula_where_it_is_exact() -> None:
    rho, rho_after = 0.01, 0.03
    gain = prediction_gain(np.array([math.log(rho)]), np.array([math.log(rho_after)]))
    log_n = log_pseudo_count(gain, np.array([math.log(rho_after)]))
    assert math.exp(log_n[0]) == pytest.approx(rho * (1 - rho_after) / (rho_after - rho), rel=1e-12)
    assert bonus_from_log_count(np.array([math.log(4.0)]), 0.1)[0] == pytest.approx(0.1 / math.sqrt(4.01))


def test_ostrovski_decay_scales_and_clips_the_gain() -> None:
    # n-th frame's gain becomes 0.1 * n^-1/2 * max(PG, 0); negative gains clip to 0 -> bonus 0.
    pairs = [(-10.0, -8.0), (-10.0, -11.0), (-10.0, -6.0), (-10.0, -9.0)]
    bonus, pc = _bonus(pairs, prediction_gain_decay=ostrovski_gain_decay(0.1))
    expected = [0.1 * 2.0 / 1.0, 0.0, 0.1 * 4.0 / math.sqrt(3), 0.1 * 1.0 / 2.0]
    np.testing.assert_allclose(pc.last_gains, expected, rtol=1e-12)
    assert bonus[1] == 0.0
    assert pc.last_counts[0] == pytest.approx((1 - math.exp(-8.0)) / math.expm1(0.2), rel=1e-12)
    assert pc.num_updates == 4


def test_pseudo_count_of_a_repeated_frame_grows_with_repetitions() -> None:
    picture = np.zeros((84, 84), dtype=np.uint8)
    picture[20:40, 10:30] = 200
    picture[60:70, 50:80] = 100
    other_picture = picture.copy()
    other_picture[20:40, 10:30] = 0
    other_picture[5:15, 60:70] = 250
    frame, other = preprocess_frames(picture), preprocess_frames(other_picture)
    for interleave in (False, True):
        pc = PseudoCount(CTS(), beta=0.05)
        counts, bonuses = [], []
        for _ in range(40):
            bonuses.append(pc(frame)[0])
            counts.append(pc.last_counts[0])
            if interleave:
                pc(other)  # visits to another frame in between must not stop the growth
        assert np.all(np.diff(counts) > 0), counts
        assert np.all(np.diff(bonuses) <= 0) and bonuses[-1] < bonuses[0], bonuses
        # The first visits of a 42x42 frame have near-zero counts (a product of 1764 pixel models
        # gains hundreds of nats): the bonus starts at its cap beta / sqrt(0.01).
        assert bonuses[0] == pytest.approx(0.5) and counts[-1] > 0.5


def test_state_dict_round_trip() -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 8, size=(8, 42, 42), dtype=np.uint8)
    pc = PseudoCount(CTS(), beta=0.1)
    pc(frames[:5])
    clone = PseudoCount(CTS(), beta=0.1)
    clone.load_state_dict(pc.state_dict())
    np.testing.assert_array_equal(clone(frames[5:]), pc(frames[5:]))
    assert clone.num_updates == pc.num_updates == 8


def test_rejects_non_models_and_bad_beta() -> None:
    with pytest.raises(TypeError, match="DensityModel"):
        PseudoCount(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta"):
        PseudoCount(CTS(), beta=-1.0)
