"""NStepBuilder: hand-computed n-step returns, discounts, frame ids, NextStep resets and Ape-X priorities.

Frames are 2x2 and filled with one distinct value each, so a frame id can be checked by its pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.replay.nstep import NStepBuilder

NAN = float("nan")


def fr(*values: int) -> np.ndarray:
    """uint8 [N, 2, 2] frames, frame i filled with values[i]."""
    return np.stack([np.full((2, 2), v, np.uint8) for v in values])


def one_env(n: int, gamma: float, seed: int = 1) -> NStepBuilder:
    return NStepBuilder(1, n=n, gamma=gamma, stack=4, frame_shape=(2, 2), seed=seed)


def step1(b: NStepBuilder, action: int, reward: float, frame: int, term: bool = False, trunc: bool = False,
          q: list[float] | None = None, game_over: bool | None = None) -> None:
    qv = None if q is None else np.array([q], np.float32)
    go = None if game_over is None else np.array([game_over])
    b.step(np.array([action]), qv, np.array([reward], np.float32), np.array([term]), np.array([trunc]),
           fr(frame), game_over=go)


def play_four_steps(term: bool, trunc: bool) -> NStepBuilder:
    b = one_env(n=3, gamma=0.5)
    b.reset(fr(10))  # id 0
    for t, (a, r) in enumerate([(0, 1.0), (1, 2.0), (0, 3.0), (1, 4.0)]):  # ids 1..4
        step1(b, a, r, 11 + t, term=term and t == 3, trunc=trunc and t == 3)
    return b


def test_terminal_returns_discounts_and_zero_padded_stacks() -> None:
    b = play_four_steps(term=True, trunc=False)
    c = b.flush()
    assert c.first_frame_id == 0 and c.num_steps == 4
    np.testing.assert_array_equal(c.frames[:, 0, 0], [10, 11, 12, 13, 14])
    # s_t = last 4 frames of the episode up to t, -1 (zero frame) padded at the start, oldest first
    np.testing.assert_array_equal(c.obs_ids, [[-1, -1, -1, 0], [-1, -1, 0, 1], [-1, 0, 1, 2], [0, 1, 2, 3]])
    np.testing.assert_array_equal(c.next_ids, [[0, 1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]])
    np.testing.assert_array_equal(c.actions, [0, 1, 0, 1])
    # G_0 = 1 + .5*2 + .25*3, G_1 = 2 + .5*3 + .25*4, G_2 = 3 + .5*4, G_3 = 4
    np.testing.assert_allclose(c.returns, [2.75, 4.5, 5.0, 4.0])
    # t=0 bootstraps from s_3 (gamma^3); t=1..3 reach the terminal within their k steps
    np.testing.assert_allclose(c.discounts, [0.125, 0.0, 0.0, 0.0])
    assert np.isnan(c.priorities).all()  # no Q-values given
    assert c.obs_ids.dtype == np.int64 and c.returns.dtype == np.float32 and c.priorities.dtype == np.float32


def test_truncation_bootstraps_from_final_observation() -> None:
    c = play_four_steps(term=False, trunc=True).flush()
    np.testing.assert_allclose(c.returns, [2.75, 4.5, 5.0, 4.0])
    np.testing.assert_allclose(c.discounts, [0.125, 0.125, 0.25, 0.5])  # gamma^k with k = 3, 3, 2, 1
    np.testing.assert_array_equal(c.next_ids[1:], [[1, 2, 3, 4]] * 3)  # the final observation s_4


def test_nextstep_autoreset_call_is_a_reset_not_a_transition() -> None:
    b = play_four_steps(term=True, trunc=False)
    b.flush()
    step1(b, 1, 99.0, 20)  # autoreset: action and reward ignored, frame 20 (id 5) starts a new episode
    c = b.flush()
    assert len(c) == 0 and c.num_steps == 0 and c.first_frame_id == 5
    np.testing.assert_array_equal(c.frames[:, 0, 0], [20])
    step1(b, 0, 1.0, 21, term=True)  # id 6
    c = b.flush()
    np.testing.assert_array_equal(c.obs_ids, [[-1, -1, -1, 5]])
    np.testing.assert_array_equal(c.next_ids, [[-1, -1, 5, 6]])
    np.testing.assert_allclose(c.returns, [1.0])  # the 99 of the reset call is not part of any return
    np.testing.assert_allclose(c.discounts, [0.0])
    assert c.num_steps == 1 and c.first_frame_id == 6


def test_life_loss_terminal_keeps_the_stack_and_the_next_step_is_real() -> None:
    b = one_env(n=2, gamma=0.9)
    b.reset(fr(10))  # id 0
    step1(b, 0, 1.0, 11)  # id 1
    step1(b, 1, 2.0, 12, term=True, game_over=False)  # id 2: a life lost, the game goes on
    step1(b, 0, 3.0, 13)  # id 3: a real step from s_2 (not an autoreset)
    step1(b, 1, 4.0, 14, trunc=True, game_over=True)  # id 4
    c = b.flush()
    np.testing.assert_array_equal(c.obs_ids, [[-1, -1, -1, 0], [-1, -1, 0, 1], [-1, 0, 1, 2], [0, 1, 2, 3]])
    np.testing.assert_array_equal(c.next_ids, [[-1, 0, 1, 2], [-1, 0, 1, 2], [1, 2, 3, 4], [1, 2, 3, 4]])
    np.testing.assert_allclose(c.returns, [1 + 0.9 * 2, 2.0, 3 + 0.9 * 4, 4.0], rtol=1e-6)
    np.testing.assert_allclose(c.discounts, [0.0, 0.0, 0.81, 0.9], rtol=1e-6)
    assert c.num_steps == 4
    with pytest.raises(ValueError, match="game_over"):
        step1(b, 0, 0.0, 15, game_over=True)  # autoreset step: game_over without term/trunc


def test_priorities_are_apex_td_errors_known_when_the_bootstrap_state_is_evaluated() -> None:
    b = one_env(n=2, gamma=0.5)
    b.reset(fr(10))  # s_0 = id 0
    step1(b, 1, 1.0, 11, q=[1.0, 2.0])  # Q(s_0) = [1, 2], a_0 = 1
    step1(b, 0, 2.0, 12, q=[0.5, 3.0])  # Q(s_1), a_1 = 0; t=0 now has its 2 rewards but needs max Q(s_2)
    assert len(b.flush()) == 0 and b.pending == 2
    step1(b, 1, 0.0, 13, term=True, q=[4.0, 1.0])  # Q(s_2) = [4, 1], a_2 = 1, episode terminates
    c = b.flush()
    # t=0: 1 + .5*2 + .25 * max Q(s_2) - Q(s_0, 1) = 2 + 1 - 2 = 1
    # t=1: terminal within 2 steps: |2 + .5*0 - Q(s_1, 0)| = 1.5;  t=2: |0 - Q(s_2, 1)| = 1
    np.testing.assert_allclose(c.priorities, [1.0, 1.5, 1.0])
    np.testing.assert_allclose(c.discounts, [0.25, 0.0, 0.0])
    assert b.pending == 0
    # Truncation: the bootstrap Q is that of the final observation, evaluated in the autoreset call.
    step1(b, 1, 0.0, 20, q=[9.0, 9.0])  # autoreset (id 4); these Q are of the terminal obs: unused
    step1(b, 0, 1.0, 21, trunc=True, q=[2.0, 0.0])  # a=0 in s'_0 (Q(s'_0, 0) = 2), truncated -> id 5
    assert len(b.flush()) == 0 and b.pending == 1
    step1(b, 1, 0.0, 22, q=[3.0, 7.0])  # autoreset; Q of the final observation = [3, 7]
    c = b.flush()
    np.testing.assert_allclose(c.priorities, [abs(1.0 + 0.5 * 7.0 - 2.0)])  # 2.5
    np.testing.assert_array_equal(c.next_ids, [[-1, -1, 4, 5]])
    np.testing.assert_allclose(c.discounts, [0.5])


def test_two_envs_ids_are_consecutive_and_frames_sent_once() -> None:
    b = NStepBuilder(2, n=1, gamma=0.9, stack=2, frame_shape=(2, 2), seed=0)
    b.reset(fr(1, 2))  # ids 0 (env 0), 1 (env 1)
    b.step(np.array([0, 1]), None, np.array([1.0, 2.0]), np.array([True, False]), np.array([False, False]),
           fr(3, 4))  # ids 2, 3
    c1 = b.flush()
    np.testing.assert_array_equal(c1.frames[:, 0, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(c1.obs_ids, [[-1, 0], [-1, 1]])
    np.testing.assert_array_equal(c1.next_ids, [[0, 2], [1, 3]])
    np.testing.assert_allclose(c1.discounts, [0.0, 0.9], rtol=1e-6)
    b.step(np.array([5, 0]), None, np.array([0.0, 3.0]), np.array([False, False]), np.array([False, False]),
           fr(5, 6))  # env 0 autoresets (id 4); env 1 steps (id 5)
    c2 = b.flush()
    assert c2.first_frame_id == c1.first_frame_id + len(c1.frames) == 4
    np.testing.assert_array_equal(c2.frames[:, 0, 0], [5, 6])
    np.testing.assert_array_equal(c2.obs_ids, [[1, 3]])
    np.testing.assert_array_equal(c2.next_ids, [[3, 5]])
    assert c2.num_steps == 1 and c1.num_steps == 2
    assert len(b.flush().frames) == 0


def test_reset_mid_stream_emits_open_transitions_as_truncated() -> None:
    b = one_env(n=3, gamma=0.5)
    b.reset(fr(10))
    step1(b, 0, 1.0, 11)
    step1(b, 1, 2.0, 12)
    b.reset(fr(30))  # id 3; the running episode is cut at s_2
    c = b.flush()
    np.testing.assert_array_equal(c.obs_ids, [[-1, -1, -1, 0], [-1, -1, 0, 1]])
    np.testing.assert_array_equal(c.next_ids, [[-1, 0, 1, 2]] * 2)
    np.testing.assert_allclose(c.returns, [2.0, 2.0])
    np.testing.assert_allclose(c.discounts, [0.25, 0.5])
    assert np.isnan(c.priorities).all()
    step1(b, 0, 1.0, 31, term=True)
    np.testing.assert_array_equal(b.flush().obs_ids, [[-1, -1, -1, 3]])


def test_incarnation_is_random_unless_seeded() -> None:
    a, b = one_env(2, 0.9, seed=None), one_env(2, 0.9, seed=None)  # type: ignore[arg-type]
    assert a.incarnation != b.incarnation and 0 <= a.incarnation < 2**63
    assert one_env(2, 0.9, seed=5).incarnation == one_env(2, 0.9, seed=5).incarnation


def test_bad_input_names_the_problem() -> None:
    b = one_env(n=2, gamma=0.9)
    with pytest.raises(RuntimeError, match="before reset"):
        step1(b, 0, 0.0, 1)
    with pytest.raises(ValueError, match=r"obs\[:, -1\]"):
        b.reset(np.zeros((1, 4, 2, 2), np.uint8))  # a whole stack instead of the newest frame
    b.reset(fr(1))
    step1(b, 0, 0.0, 2, term=True)
    with pytest.raises(ValueError, match="NextStep"):
        step1(b, 0, 0.0, 3, term=True)  # the step after an episode end must be the autoreset
    with pytest.raises(ValueError, match="n-step"):
        NStepBuilder(1, n=0, gamma=0.9)
