"""The video predictor learned online (worldmodels/video/online.py): transitions become one-step windows, the
trainer's loss falls on a fixed batch and a restored trainer continues exactly, a model of other frames or actions
is refused, the one-step score sits beside copy-last, and branched rollouts have the shapes and masks they should."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch

from worldmodels.video.online import (
    OnlineVideoConfig,
    VideoModelTrainer,
    branched_rollouts,
    build_model,
    check_compatible,
    one_step_scores,
    transition_windows,
    validate,
)

torch.set_num_threads(1)

#: A tiny residual predictor of 16x16 frames.
TINY = {"height": 16, "width": 16, "stem_channels": 4, "res_channels": 8, "res_blocks": 1, "res_factors": 4}


def _cfg(**overrides: Any) -> OnlineVideoConfig:
    return OnlineVideoConfig(**{**TINY, **overrides})


def _batch(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A moving bright square: the next frame is the last one shifted right by the action (0 or 1 pixels)."""
    rng = np.random.default_rng(seed)
    obs = np.zeros((n, 4, 16, 16), np.uint8)
    x = rng.integers(0, 8, n)
    for t in range(4):
        for i in range(n):
            obs[i, t, 6:10, x[i] + t: x[i] + t + 3] = 200
    actions = rng.integers(0, 2, n)
    nxt = np.zeros((n, 16, 16), np.uint8)
    for i in range(n):
        nxt[i, 6:10, x[i] + 3 + actions[i]: x[i] + 6 + actions[i]] = 200
    rewards = (actions == 1).astype(np.float32)
    return {"obs": obs, "actions": actions.astype(np.int64), "rewards": rewards, "next_obs": nxt,
            "terminals": np.zeros(n, bool)}


def test_transitions_become_one_step_windows() -> None:
    b = _batch(3)
    w = transition_windows(b["obs"], b["actions"], b["rewards"], b["next_obs"], b["terminals"] | [1, 0, 0], 4)
    assert w["frames"].shape == (3, 5, 16, 16) and np.array_equal(w["frames"][:, 4], b["next_obs"])
    assert np.array_equal(w["actions"][:, 3], b["actions"]) and np.array_equal(w["rewards"][:, 3], b["rewards"])
    assert w["terminals"][:, 4].tolist() == [True, False, False] and not w["terminals"][:, :4].any()
    with pytest.raises(ValueError, match="S >= context=4"):
        transition_windows(b["obs"][:, :2], b["actions"], b["rewards"], b["next_obs"], b["terminals"], 4)


def _roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_the_loss_falls_and_a_restored_trainer_continues_exactly() -> None:
    cfg = _cfg(lr=1e-2)
    model = build_model(cfg, 2, game="square")
    trainer = VideoModelTrainer(model, cfg)
    batch = _batch(32)
    first = trainer.train_step(batch)
    assert float(model.mean.max()) > 0  # the first batch's mean frame centres the input
    for _ in range(30):
        last = trainer.train_step(batch)
    assert last["mse"] < 0.7 * first["mse"] and last["updates"] == 31
    state = _roundtrip(trainer.state_dict())
    twin_model = build_model(cfg, 2, seed=7)
    twin = VideoModelTrainer(twin_model, cfg)
    twin.load_state_dict(state)
    assert twin.updates == 31
    a = [trainer.train_step(_batch(8, seed=s)) for s in range(3)]
    b = [twin.train_step(_batch(8, seed=s)) for s in range(3)]
    assert a == b
    assert all(torch.equal(v, twin_model.state_dict()[k]) for k, v in model.state_dict().items())


def test_the_same_seed_builds_the_same_model_and_leaves_torch_alone() -> None:
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a, b = build_model(_cfg(), 3, seed=1), build_model(_cfg(), 3, seed=1)
    assert torch.equal(torch.rand(1), before)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    c = build_model(_cfg(), 3, seed=2)
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_a_model_of_other_frames_context_or_actions_is_refused() -> None:
    state = build_model(_cfg(), 2, game="pong").state_dict_full()
    check_compatible(state, (16, 16), 2, 4)
    with pytest.raises(ValueError, match=r"trained on pong: frames \(16, 16\), context 4 and 2 actions, but this env "
                                         r"has frames \(84, 84\), context 4 and 2 actions.*from scratch"):
        check_compatible(state, (84, 84), 2, 4)
    with pytest.raises(ValueError, match=r"and 6 actions"):
        check_compatible(state, (16, 16), 6, 4)
    with pytest.raises(ValueError, match=r"context 2"):
        check_compatible(state, (16, 16), 2, 2)
    trainer = VideoModelTrainer(build_model(_cfg(), 3), _cfg())
    with pytest.raises(ValueError, match="the trainer state was trained on pong"):
        trainer.load_state_dict({"model": state, "optimizer": {}, "updates": 0})


def test_the_one_step_score_sits_beside_copy_last() -> None:
    cfg = _cfg(lr=1e-2)
    model = build_model(cfg, 2)
    trainer = VideoModelTrainer(model, cfg)
    for _ in range(60):
        trainer.train_step(_batch(32))
    b = _batch(64, seed=9)
    scores = one_step_scores(model, b["obs"], b["actions"], b["rewards"], b["next_obs"], b["terminals"])
    copy = ((b["obs"][:, -1].astype(np.float32) - b["next_obs"]) / 255.0) ** 2
    assert scores["copy_last_mse"] == pytest.approx(float(copy.mean()), rel=1e-5)
    assert 0 <= scores["mse"] < scores["copy_last_mse"]
    assert 0 <= scores["reward_accuracy"] <= 1 and scores["terminal_accuracy"] == 1.0


def test_branched_rollouts_have_the_shapes_and_masks_they_should() -> None:
    model = build_model(_cfg(), 2)
    with torch.no_grad():
        model.head.net[-1].bias.copy_(torch.tensor([0.0, 0.0, 0.0, -50.0]))  # never a game over ...
    starts = _batch(5)["obs"]
    seen: list[np.ndarray] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        seen.append(obs.copy())
        return np.arange(len(obs)) % 2

    out = branched_rollouts(model, starts, policy, 3)
    assert out.obs.shape == (3, 5, 4, 16, 16) and out.next_obs.shape == (3, 5, 16, 16)
    assert out.valid.all() and out.num_valid == 15 and not out.terminals.any()
    assert np.array_equal(out.obs[0], starts) and np.array_equal(seen[1], out.obs[1])
    # each stack is the one before, shifted, with the predicted frame appended
    assert np.array_equal(out.obs[1][:, :3], starts[:, 1:]) and np.array_equal(out.obs[1][:, 3], out.next_obs[0])
    assert np.all(np.abs(out.rewards) <= 1)
    with torch.no_grad():
        model.head.net[-1].bias[3] = 50.0  # ... or always one: only the first step counts
    ended = branched_rollouts(model, starts, policy, 3)
    assert ended.valid.sum(0).tolist() == [1] * 5 and ended.terminals[0].all() and ended.num_valid == 5
    assert ended.transitions()["obs"].shape == (5, 4, 16, 16)
    with pytest.raises(ValueError, match="k=0"):
        branched_rollouts(model, starts, policy, 0)
    with pytest.raises(ValueError, match=r"ints in \[0, 2\)"):
        branched_rollouts(model, starts, lambda o: np.full(len(o), 5), 1)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"lr": 0.0}, r"video_model\.lr=0"),
    ({"context": 0}, r"video_model\.context=0"),
    ({"height": 18}, r"video_model\.height=18 and video_model\.width=16 must be multiples of 4"),
    ({"adam_beta2": 1.0}, r"video_model\.adam_beta2=1\.0"),
    ({"moving_loss_weight": -1.0}, r"video_model\.moving_loss_weight=-1"),
])
def test_bad_settings_are_refused_naming_the_key(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate(_cfg(**overrides))
