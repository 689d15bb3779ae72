"""Open-loop scores of a grid world model per horizon step (worldmodels/grid/metrics.py: rollout_metrics) and the
held-out episodes and windows they are computed on (worldmodels/grid/episodes.py), on hand-made cases whose answer
is known."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from worldmodels.grid import (
    Episode,
    GridWorldModel,
    GridWorldModelConfig,
    open_loop_rollout,
    play_episodes,
    rollout_metrics,
    sample_windows,
)
from worldmodels.grid.episodes import window
from worldmodels.grid.model import COPY_WEIGHT

SHAPE = (3, 5, 5)


def _copy_last_model(context: int = 1) -> GridWorldModel:
    """A model that is exactly copy-last: each cell's logit is ``COPY_WEIGHT * cell + EMPTY_LOGIT`` (> 0 for an
    occupied cell, < 0 for an empty one), reward 0 and never a game over, whatever the action."""
    model = GridWorldModel(GridWorldModelConfig(hidden_channels=4, res_blocks=1, head_hidden=8, context=context),
                           SHAPE, num_actions=3)
    with torch.no_grad():
        model.frame_head.weight[:, :4] = 0.0  # the features say nothing: only the newest frame's own cell counts
        for head, bias in ((model.reward_head, torch.tensor([10.0] + [0.0] * model.cfg.max_reward)),
                           (model.terminal_head, torch.tensor([-10.0]))):
            head.weight.zero_()
            head.bias.copy_(bias)
    assert COPY_WEIGHT > 3  # 4 * 1 - 3 > 0 > -3
    return model


def _moving_windows(b: int = 4, k: int = 3) -> dict[str, Any]:
    """A dot in channel 0 moving one cell right per step (the action does not matter), a still wall in channel 2."""
    start = np.zeros((b, *SHAPE), np.uint8)
    start[:, 2, 0, :] = 1
    start[np.arange(b), 0, 1 + np.arange(b) % 3, 0] = 1
    frames = [start]
    for _ in range(k):
        nxt = frames[-1].copy()
        nxt[:, 0] = np.roll(nxt[:, 0], 1, axis=-1)
        frames.append(nxt)
    return {"history": start, "actions": np.zeros((b, k), np.int64), "next_frames": np.stack(frames[1:], axis=1),
            "rewards": np.zeros((b, k), np.float32), "terminals": np.zeros((b, k), bool)}


def test_a_copy_last_model_scores_exactly_as_copy_last() -> None:
    model = _copy_last_model()
    w = _moving_windows()
    out = rollout_metrics(model, **w, seed=3)
    assert out["steps"] == [1, 2, 3] and out["windows"] == [4, 4, 4]
    for name in ("model", "shuffled_actions"):  # it ignores the actions: shuffled scores the same too
        assert out[name] == out["copy_last"], name
    cl = out["copy_last"]
    # Each step: the dot's old cell is wrong and its new cell is wrong: 2 of 3 * 25 cells per window.
    assert cl["cell_error"] == pytest.approx([2 / 75] * 3)
    assert cl["changed_cell_error"] == [1.0, 1.0, 1.0]  # copy-last misses every cell that changed
    assert cl["frame_exact"] == [0.0, 0.0, 0.0]
    # 6 object cells per window (5 wall + 1 dot), the wall kept, the dot lost: recall = precision = 5/6.
    assert cl["object_recall"] == pytest.approx([5 / 6] * 3)
    assert cl["object_precision"] == pytest.approx([5 / 6] * 3)
    dot, empty, wall = cl["recall_per_channel"][0]
    assert dot == 0.0 and math.isnan(empty) and wall == 1.0  # nothing in channel 1 to recall
    assert cl["reward_accuracy"] == [1.0, 1.0, 1.0] and cl["terminal_accuracy"] == [1.0, 1.0, 1.0]
    assert all(math.isnan(v) for v in cl["reward_recall"] + cl["terminal_recall"])  # nothing to recall


def test_on_still_frames_the_copy_last_model_is_perfect() -> None:
    w = _moving_windows()
    w["next_frames"] = np.repeat(w["history"][:, None], 3, axis=1)  # nothing moves
    out = rollout_metrics(_copy_last_model(), **w)
    m = out["model"]
    assert m["cell_error"] == [0.0] * 3 and m["frame_exact"] == [1.0] * 3
    assert m["object_recall"] == [1.0] * 3 and m["object_precision"] == [1.0] * 3
    assert all(math.isnan(v) for v in m["changed_cell_error"])  # no cell changed: no denominator


def test_rewards_game_overs_and_the_mask_are_scored_per_step() -> None:
    w = _moving_windows(b=2, k=3)
    w["rewards"][0, 0] = 1.0  # window 0: a point at step 1, then its game ends at step 2
    w["terminals"][0, 1] = True
    valid = np.ones((2, 3), bool)
    valid[0, 2] = False
    out = rollout_metrics(_copy_last_model(), **w, valid=valid)
    assert out["windows"] == [2, 2, 1] and out["rewarded"] == [1, 0, 0] and out["game_overs"] == [0, 1, 0]
    m = out["model"]  # says reward 0 and never over
    assert m["reward_accuracy"] == [0.5, 1.0, 1.0] and m["reward_recall"][0] == 0.0
    assert m["terminal_accuracy"] == [1.0, 0.5, 1.0] and m["terminal_recall"][1] == 0.0
    assert m["cell_error"][2] == pytest.approx(2 / 75)  # step 3 scores window 1 only


class _LampModel(GridWorldModel):
    """A known action-conditional model: the next frame is the current one, with every cell of channel 1 switched
    on by action 1 and off by any other action (a lamp); reward 1 for action 2, else 0; never a game over."""

    @torch.no_grad()
    def predict(self, obs: Any, action: Any) -> dict[str, torch.Tensor]:
        frame = self.history_in(obs)[:, -1].clone()
        a = torch.as_tensor(np.asarray(action))
        frame[:, 1] = (a == 1).float()[:, None, None]
        reward_prob = torch.zeros(len(a), self.cfg.max_reward + 1)
        reward_prob[torch.arange(len(a)), (a == 2).long()] = 1.0
        return {"cell_prob": frame, "reward_prob": reward_prob, "reward_mean": (a == 2).float(),
                "terminal_prob": torch.zeros(len(a))}


def test_shuffled_actions_use_another_windows_actions() -> None:
    model = _LampModel(GridWorldModelConfig(hidden_channels=4, res_blocks=1, head_hidden=8), SHAPE, num_actions=3)
    b, k, seed = 12, 2, 5
    rng = np.random.default_rng(1)
    history = (rng.random((b, *SHAPE)) < 0.2).astype(np.uint8)
    actions = rng.integers(3, size=(b, k)).astype(np.int64)
    truth, frame = [], history.copy()
    for t in range(k):  # the real game is the lamp
        frame = frame.copy()
        frame[:, 1] = (actions[:, t] == 1)[:, None, None]
        truth.append(frame)
    rewards = (actions == 2).astype(np.float32)
    rollout = open_loop_rollout(model, history, actions, batch_size=5)  # in chunks: the same
    assert (rollout["frames"] == np.stack(truth, axis=1)).all() and (rollout["rewards"] == rewards).all()
    out = rollout_metrics(model, history, actions, np.stack(truth, axis=1), rewards, np.zeros((b, k), bool),
                          seed=seed)
    assert out["model"]["cell_error"] == [0.0, 0.0] and out["model"]["reward_accuracy"] == [1.0, 1.0]
    perm = np.random.default_rng(seed).permutation(b)
    for t in range(k):
        lamp_wrong = (actions[perm, t] == 1) != (actions[:, t] == 1)  # channel 1's 25 cells all wrong
        assert out["shuffled_actions"]["cell_error"][t] == pytest.approx(lamp_wrong.sum() * 25 / (b * 75))
        reward_right = (actions[perm, t] == 2) == (actions[:, t] == 2)
        assert out["shuffled_actions"]["reward_accuracy"][t] == pytest.approx(reward_right.mean())
    assert out["shuffled_actions"]["cell_error"] != [0.0, 0.0]


def test_bad_shapes_are_refused() -> None:
    w = _moving_windows()
    with pytest.raises(ValueError, match="actions \\[B, K\\]"):
        rollout_metrics(_copy_last_model(), **{**w, "rewards": w["rewards"][:, :2]})
    with pytest.raises(ValueError, match="actions must be \\[B, K\\]"):
        open_loop_rollout(_copy_last_model(), w["history"], w["actions"][0])


def _episode(length: int, terminated: bool = True) -> Episode:
    frames = np.zeros((length + 1, *SHAPE), np.uint8)
    frames[np.arange(length + 1), 0, 0, np.arange(length + 1) % 5] = 1
    return Episode(frames, np.arange(length, dtype=np.int64) % 3, np.arange(length, dtype=np.float32), terminated)


def test_a_window_near_the_end_is_masked_and_a_history_zero_padded() -> None:
    ep = _episode(4)
    w = window(ep, 2, horizon=4, context=3)
    assert (w["history"][2] == ep.frames[2]).all() and (w["history"][0] == ep.frames[0]).all()
    w0 = window(ep, 0, horizon=2, context=3)
    assert not w0["history"][:2].any() and (w0["history"][2] == ep.frames[0]).all()  # zeros before the game
    assert w["valid"].tolist() == [True, True, False, False]
    assert w["terminals"].tolist() == [False, True, False, False]  # the game over is the last real step
    assert (w["next_frames"][:2] == ep.frames[3:5]).all() and w["actions"][:2].tolist() == [2, 0]
    assert w["rewards"].tolist() == [2.0, 3.0, 0.0, 0.0]
    assert not window(_episode(4, terminated=False), 2, 4)["terminals"].any()  # a cut game never ends
    with pytest.raises(ValueError, match="start=4"):
        window(ep, 4, 2)


def test_sample_windows_draws_distinct_starts_per_episode() -> None:
    eps = [_episode(10), _episode(2), _episode(0, terminated=False)]
    w = sample_windows(eps, horizon=3, starts_per_episode=4, rng=np.random.default_rng(0), context=2)
    assert len(w) == 6 and w.episode.tolist() == [0, 0, 0, 0, 1, 1]  # a 2-step game has 2 starts, an empty one 0
    assert len(set(w.start[:4].tolist())) == 4 and w.start[4:].tolist() == [0, 1]
    assert w.history.shape == (6, 2, *SHAPE) and w.next_frames.shape == (6, 3, *SHAPE)
    assert w.take([5]).start.tolist() == [1]
    with pytest.raises(ValueError, match="no held-out episode"):
        sample_windows([_episode(0)], 3, 1, np.random.default_rng(0))


class _CountingEnv:
    """A game that ends after ``length`` steps; the observation counts the steps in cell (0, 0, t)."""

    def __init__(self, length: int) -> None:
        self.length, self.t = length, 0
        self.seeds: list[int | None] = []

    def _obs(self) -> np.ndarray:
        obs = np.zeros(SHAPE, np.uint8)
        obs[0, 0, self.t % 5] = 1
        return obs

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        self.t = 0
        self.seeds.append(seed)
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._obs(), float(action), self.t >= self.length, False, {}


def test_play_episodes_records_whole_games_or_cuts_them() -> None:
    env = _CountingEnv(3)
    games = play_episodes(env, lambda obs: np.array([1]), 2, seed=10)
    assert env.seeds == [10, 11] and [len(g) for g in games] == [3, 3] and all(g.terminated for g in games)
    assert games[0].frames.shape == (4, *SHAPE) and games[0].rewards.tolist() == [1.0, 1.0, 1.0]
    cut = play_episodes(_CountingEnv(100), lambda obs: np.array([2]), 1, seed=0, max_steps=5)[0]
    assert len(cut) == 5 and not cut.terminated and not cut.terminals.any()
