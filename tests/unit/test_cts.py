"""CTS density model: hand-derived cases, an independent reference implementation, invariants."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from worldmodels.density import CTS, preprocess_frames

# --------------------------------------------------------------------------------------------------
# An independent, plainly written reference: dict-based nodes, unnormalised switching weights kept as
# log running products (Bellemare's reference code, with the simultaneous update of Veness et al.),
# a fresh node created (and never stored) where the real model reads "uniform", and the recoding
# probability from a separate prediction pass after all pixels are updated.


class RefNode:
    def __init__(self, num_levels: int) -> None:
        self.counts = [0] * num_levels
        self.total = 0
        self.log_w_stay = math.log(0.5)
        self.log_w_split = math.log(0.5)
        self.children: dict[int, RefNode] = {}


class RefCTS:
    def __init__(self, shape: tuple[int, int], num_levels: int) -> None:
        self.shape = shape
        self.k = num_levels
        self.roots = {(i, j): RefNode(num_levels) for i in range(shape[0]) for j in range(shape[1])}
        self.t = 0

    def context(self, frame: np.ndarray, i: int, j: int) -> list[int]:
        """[up-right, up-left, up, left]; the tree splits on the last element first."""
        h, w = frame.shape

        def read(r: int, c: int) -> int:
            return int(frame[r, c]) if 0 <= r < h and 0 <= c < w else 0

        return [read(i - 1, j + 1), read(i - 1, j - 1), read(i - 1, j), read(i, j - 1)]

    def estimator(self, node: RefNode, s: int) -> float:
        return (node.counts[s] + 1.0 / self.k) / (node.total + 1)

    def predict(self, node: RefNode, ctx: list[int], s: int) -> float:
        p_est = self.estimator(node, s)
        if not ctx:
            return p_est
        child = node.children.get(ctx[-1], RefNode(self.k))
        q = self.predict(child, ctx[:-1], s)
        num = np.logaddexp(node.log_w_stay + math.log(p_est), node.log_w_split + math.log(q))
        return math.exp(num - np.logaddexp(node.log_w_stay, node.log_w_split))

    def learn(self, node: RefNode, ctx: list[int], s: int, alpha: float) -> float:
        p_est = self.estimator(node, s)
        if ctx:
            child = node.children.setdefault(ctx[-1], RefNode(self.k))
            q = self.learn(child, ctx[:-1], s, alpha)
            ws, wp = node.log_w_stay, node.log_w_split
            p = math.exp(np.logaddexp(ws + math.log(p_est), wp + math.log(q)) - np.logaddexp(ws, wp))
            node.log_w_stay = np.logaddexp(
                math.log(1 - alpha) + ws + math.log(p_est), math.log(alpha) + wp + math.log(q)
            )
            node.log_w_split = np.logaddexp(
                math.log(1 - alpha) + wp + math.log(q), math.log(alpha) + ws + math.log(p_est)
            )
        else:
            p = p_est
        node.counts[s] += 1
        node.total += 1
        return p

    def log_prob(self, frame: np.ndarray) -> float:
        return sum(
            math.log(self.predict(self.roots[i, j], self.context(frame, i, j), int(frame[i, j])))
            for i in range(self.shape[0])
            for j in range(self.shape[1])
        )

    def update(self, frame: np.ndarray) -> tuple[float, float]:
        self.t += 1
        alpha = 1.0 / (self.t + 1)
        before = 0.0
        for i in range(self.shape[0]):
            for j in range(self.shape[1]):
                ctx = self.context(frame, i, j)
                before += math.log(self.learn(self.roots[i, j], ctx, int(frame[i, j]), alpha))
        return before, self.log_prob(frame)

    def symbol_probs(self, frame: np.ndarray) -> np.ndarray:
        out = np.zeros((*self.shape, self.k))
        for i in range(self.shape[0]):
            for j in range(self.shape[1]):
                for s in range(self.k):
                    out[i, j, s] = self.predict(self.roots[i, j], self.context(frame, i, j), s)
        return out


# --------------------------------------------------------------------------------------------------


def test_keeps_the_density_model_contract() -> None:
    """What ``DensityModel`` promises and PseudoCount relies on, checked by behaviour: float64 ``[B]`` log
    probabilities; frame b scored before learning by the model that has learned frames 0..b-1, and after learning
    by the model that has learned 0..b; ``log_prob`` scores without learning (the state is unchanged)."""
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 8, size=(3, 6, 5), dtype=np.uint8)
    frames[2] = frames[0]  # a repeated frame
    model, twin = CTS(shape=(6, 5)), CTS(shape=(6, 5))
    before, after = model.update(frames)
    for out in (before, after):
        assert out.dtype == np.float64 and out.shape == (3,) and np.isfinite(out).all() and (out <= 0).all()
    assert (after > before).all()  # learning a frame raises its (recoding) probability
    assert before[2] > before[0]  # a frame seen before is more probable the second time
    for b in range(3):  # the same numbers from a twin that learns one frame at a time (log_prob sums the pixels
        # in another order than update: equal to rounding)
        assert twin.log_prob(frames[b : b + 1])[0] == pytest.approx(before[b], rel=1e-12)
        twin_before, twin_after = twin.update(frames[b : b + 1])
        assert (twin_before[0], twin_after[0]) == (before[b], after[b])
        assert twin.log_prob(frames[b : b + 1])[0] == pytest.approx(after[b], rel=1e-12)
    state = model.state_dict()
    scores = model.log_prob(frames)
    assert scores.dtype == np.float64 and scores.shape == (3,)
    assert scores[2] == pytest.approx(after[2], rel=1e-12)  # the last frame learned: its recoding probability
    unchanged = model.state_dict()
    assert state.keys() == unchanged.keys() and all(np.array_equal(state[k], unchanged[k]) for k in state)
    np.testing.assert_allclose(model.update(frames[:1])[0], scores[:1], rtol=1e-12)  # the next update starts there


def test_hand_derived_1x2_frames_two_levels() -> None:
    """Frames [0 1], [1 0], [0 1]; pixel 0 has an all-zero context (a Perks estimator), pixel 1's
    root splits on its left neighbour (pixel 0). Derivation in exact fractions."""
    half, q34 = Fraction(1, 2), Fraction(3, 4)
    # t=1 (alpha 1/2): everything fresh predicts 1/2; afterwards every node on both paths predicts 3/4.
    before1, after1 = half * half, q34 * q34
    # t=2 (alpha 1/3), frame [1 0]. Pixel 0: Perks (0 + 1/2)/(1 + 1) = 1/4, after (1 + 1/2)/3 = 1/2.
    # Pixel 1, left = 1 (a fresh subtree, 1/2), root estimator p(0) = (0 + 1/2)/2 = 1/4, w = 1/2.
    mix2 = half * Fraction(1, 4) + half * half  # 3/8
    w2 = (Fraction(2, 3) * half * Fraction(1, 4) + Fraction(1, 3) * half * half) / mix2  # 4/9
    recode2 = w2 * Fraction(3, 2) / 3 + (1 - w2) * q34  # root estimator (1 + 1/2)/3; child 3/4
    before2, after2 = Fraction(1, 4) * mix2, half * recode2
    # t=3 (alpha 1/4), frame [0 1]. Pixel 0: p(0) = (1 + 1/2)/3 = 1/2, after (2 + 1/2)/4 = 5/8.
    # Pixel 1, left = 0: root p(1) = (1 + 1/2)/3 = 1/2, child (seen one 1) = 3/4, w = 4/9.
    mix3 = w2 * half + (1 - w2) * q34
    w3 = (Fraction(3, 4) * w2 * half + Fraction(1, 4) * (1 - w2) * q34) / mix3
    recode3 = w3 * Fraction(5, 2) / 4 + (1 - w3) * Fraction(5, 2) / 3  # root (2+1/2)/4; child (2+1/2)/3
    before3, after3 = half * mix3, Fraction(5, 8) * recode3

    model = CTS(shape=(1, 2), num_levels=2)
    frames = np.array([[[0, 1]], [[1, 0]], [[0, 1]]], dtype=np.uint8)
    before, after = model.update(frames)
    expected_before = [math.log(before1), math.log(before2), math.log(before3)]
    expected_after = [math.log(after1), math.log(after2), math.log(after3)]
    np.testing.assert_allclose(before, expected_before, rtol=1e-13)
    np.testing.assert_allclose(after, expected_after, rtol=1e-13)
    assert float(mix2) == 0.375 and float(w2) == pytest.approx(4 / 9)


def test_single_pixel_is_the_perks_estimator() -> None:
    """A 1x1 frame's context is always out of frame (all zeros): every node sees the same data, so the
    mixture equals the Perks estimator (n_s + 1/K) / (n + 1)."""
    model = CTS(shape=(1, 1), num_levels=4)
    seq = [2, 2, 0, 2, 3]
    before, after = model.update(np.array(seq, dtype=np.uint8).reshape(-1, 1, 1))
    counts = [0, 0, 0, 0]
    for n, s in enumerate(seq):
        assert before[n] == pytest.approx(math.log((counts[s] + 0.25) / (n + 1)), rel=1e-13)
        counts[s] += 1
        assert after[n] == pytest.approx(math.log((counts[s] + 0.25) / (n + 2)), rel=1e-13)


@pytest.mark.parametrize(("shape", "levels"), [((1, 1), 2), ((2, 2), 2), ((3, 3), 2), ((3, 4), 3)])
def test_matches_reference_implementation(shape: tuple[int, int], levels: int) -> None:
    rng = np.random.default_rng(sum(shape) * levels)
    frames = rng.integers(0, levels, size=(6, *shape), dtype=np.uint8)
    frames = np.concatenate([frames, frames[:2], frames[:1]])  # revisits exercise existing nodes
    model, ref = CTS(shape=shape, num_levels=levels), RefCTS(shape, levels)
    before, after = model.update(frames[:4])  # a batch ...
    more = [model.update(f[None]) for f in frames[4:]]  # ... then one at a time
    before = np.concatenate([before, [b[0] for b, _ in more]])
    after = np.concatenate([after, [a[0] for _, a in more]])
    expected = np.array([ref.update(f) for f in frames])
    np.testing.assert_allclose(before, expected[:, 0], rtol=1e-12)
    np.testing.assert_allclose(after, expected[:, 1], rtol=1e-12)
    probe = rng.integers(0, levels, size=(3, *shape), dtype=np.uint8)
    np.testing.assert_allclose(model.log_prob(probe), [ref.log_prob(f) for f in probe], rtol=1e-12)
    np.testing.assert_allclose(model.symbol_probs(probe[0]), ref.symbol_probs(probe[0]), rtol=1e-12)


def test_symbol_probs_sum_to_one_on_42x42() -> None:
    rng = np.random.default_rng(0)
    model = CTS()
    frames = (rng.random((30, 42, 42)) < 0.2).astype(np.uint8) * rng.integers(
        0, 8, size=(30, 42, 42), dtype=np.uint8
    )
    model.update(frames)
    probs = model.symbol_probs(frames[3])
    assert probs.shape == (42, 42, 8)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-12)
    # Consistency: the frame's log probability is the sum of its pixels' log probabilities.
    chosen = np.take_along_axis(probs, frames[3][..., None].astype(np.int64), axis=-1)
    assert model.log_prob(frames[3:4])[0] == pytest.approx(np.log(chosen).sum(), rel=1e-12)


def test_learning_a_frame_raises_its_probability() -> None:
    model = CTS()
    frame = preprocess_frames(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (84, 2))[:, :84])
    before, after = model.update(np.repeat(frame, 5, axis=0))
    assert (after > before).all()
    assert np.all(np.diff(before) > 0)  # each repetition is more probable before learning it
    assert before[0] == pytest.approx(42 * 42 * math.log(1 / 8))  # untrained: uniform


def test_state_dict_round_trip_and_pool_growth_give_identical_results() -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 8, size=(12, 42, 42), dtype=np.uint8)
    grown = CTS(initial_capacity=1)  # minimum pool: forces several regrowths
    big = CTS(initial_capacity=200_000)
    b1, a1 = grown.update(frames[:6])
    b2, a2 = big.update(frames[:6])
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(a1, a2)
    assert grown.num_nodes == big.num_nodes

    restored = CTS()
    restored.update(frames[6:8])  # stale content that loading must discard
    restored.load_state_dict(grown.state_dict())
    assert restored.num_frames == 6 and restored.num_nodes == grown.num_nodes
    np.testing.assert_array_equal(restored.update(frames[6:])[0], grown.update(frames[6:])[0])
    np.testing.assert_array_equal(restored.log_prob(frames), grown.log_prob(frames))
    assert all(isinstance(v, np.ndarray) for v in grown.state_dict().values())


def test_log_prob_does_not_learn_or_allocate() -> None:
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 8, size=(4, 42, 42), dtype=np.uint8)
    model = CTS()
    model.update(frames[:2])
    nodes = model.num_nodes
    first = model.log_prob(frames)
    np.testing.assert_array_equal(model.log_prob(frames), first)
    assert model.num_nodes == nodes and model.num_frames == 2


def test_bad_input_is_named() -> None:
    model = CTS(shape=(4, 4), num_levels=8)
    with pytest.raises(ValueError, match="batch axis"):
        model.update(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"shape \[B, 4, 4\]"):
        model.update(np.zeros((1, 42, 42), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        model.update(np.full((1, 4, 4), 8, dtype=np.uint8))
    with pytest.raises(ValueError, match="integer"):
        model.log_prob(np.zeros((1, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="num_levels"):
        CTS(num_levels=1)
    other = CTS(shape=(4, 4), num_levels=4)
    with pytest.raises(ValueError, match="build a matching CTS"):
        other.load_state_dict(model.state_dict())


# ---------------------------------------------------------------------------------------- preprocessing


def test_preprocess_grey_84x84_is_a_2x2_block_mean_then_integer_division_by_32() -> None:
    frame = np.zeros((84, 84), dtype=np.uint8)
    frame[0:2, 0:2] = [[30, 34], [32, 32]]  # mean 32 -> level 1
    frame[0:2, 2:4] = 31  # mean 31 -> level 0
    frame[2:4, 0:2] = [[255, 255], [253, 253]]  # mean 254 -> level 7
    frame[2:4, 2:4] = [[100, 110], [120, 130]]  # mean 115 -> level 3
    out = preprocess_frames(frame)
    assert out.shape == (1, 42, 42) and out.dtype == np.uint8
    assert out[0, :2, :2].tolist() == [[1, 0], [7, 3]]
    assert preprocess_frames(frame, num_levels=4)[0, :2, :2].tolist() == [[0, 0], [3, 1]]  # // 64


def test_preprocess_rgb_uses_bt601_luminance() -> None:
    screens = np.zeros((3, 210, 160, 3), dtype=np.uint8)
    for c in range(3):
        screens[c, ..., c] = 255  # pure red, green, blue screens
    out = preprocess_frames(screens)
    assert out.shape == (3, 42, 42)
    # 0.299 * 255 = 76 -> 2; 0.587 * 255 = 150 -> 4; 0.114 * 255 = 29 -> 0
    assert [int(out[c, 20, 20]) for c in range(3)] == [2, 4, 0]
    assert (out == out[:, :1, :1]).all()  # uniform screens stay uniform
    assert preprocess_frames(screens[0]).shape == (1, 42, 42)


def test_preprocess_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(np.zeros((84, 84), dtype=np.float32))
    with pytest.raises(ValueError, match=r"obs\[:, -1\]"):
        preprocess_frames(np.zeros((2, 4, 84, 84), dtype=np.uint8))


def test_preprocess_large_batches_match_frame_by_frame() -> None:
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, size=(300, 84, 84), dtype=np.uint8)
    batched = preprocess_frames(frames)
    np.testing.assert_array_equal(batched, np.concatenate([preprocess_frames(f) for f in frames]))
