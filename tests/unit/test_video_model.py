"""The action-conditional video predictor: shapes through the WorldModel protocol for both architectures and
bodies, exact layer mirroring at the paper's 210x160 RGB size, the K-step loss feeding back its own
predictions (never the ground truth), action conditioning, and a loss that falls below copy-last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.algos.fakes import moving_dot_dataset
from worldmodels.data import DatasetError, WindowSampler
from worldmodels.protocols import WorldModel
from worldmodels.video import ModelConfig, VideoPredictor
from worldmodels.video.config import VideoFitConfig, validate

A = 3


def tiny(architecture: str = "feedforward", body: str = "residual", **kw) -> ModelConfig:
    """A model small enough for unit tests (paper body: narrow convolutions and a 32-unit encoding)."""
    sizes = {"conv_channels": [4, 8, 8, 8], "hidden": 32, "factors": 16, "stem_channels": 4, "res_channels": 8,
             "res_blocks": 1, "res_factors": 8}
    return ModelConfig(architecture=architecture, body=body, **{**sizes, **kw})


def perturb(model: VideoPredictor, seed: int = 0) -> VideoPredictor:
    """Give every weight a random value (the residual decoder starts at zero, which hides bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def frames(b: int, t: int, seed: int = 0, size: tuple[int, int] = (84, 84)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, t, *size), dtype=np.uint8)


COMBOS = [(a, b) for a in ("feedforward", "recurrent") for b in ("residual", "paper")]


@pytest.mark.parametrize(("architecture", "body"), COMBOS)
def test_protocol_shapes_and_dtypes(architecture: str, body: str) -> None:
    torch.manual_seed(0)
    model = perturb(VideoPredictor(tiny(architecture, body), A))
    assert isinstance(model, WorldModel)
    ctx = frames(2, 4)
    state = model.initial(ctx)
    assert state.batch_size == 2 and state.reward.dtype == np.float32
    state, frame = model.step(state, np.array([0, 2]))
    assert frame.shape == (2, 84, 84) and frame.dtype == np.uint8
    assert state.reward.shape == (2,) and np.all(np.abs(state.reward) <= 1.0)
    assert np.all((state.terminal >= 0) & (state.terminal <= 1))
    out = model.imagine(ctx, np.array([[0, 1, 2], [2, 2, 1]]))
    assert out.shape == (2, 3, 84, 84) and out.dtype == np.uint8
    # step() continues exactly like imagine(): the first imagined frame is the stepped frame.
    np.testing.assert_array_equal(model.imagine(ctx, np.array([[0], [2]]))[:, 0], frame)


def test_paper_decoder_mirrors_rgb_210x160_exactly() -> None:
    cfg = tiny("feedforward", "paper", channels=3, height=210, width=160)
    model = perturb(VideoPredictor(cfg, A))
    # Kernels 8, 6, 6, 4, stride 2, padding 0, 1, 1, 0: (210 - 8) / 2 + 1 = 102, (102 + 2 - 6) // 2 + 1 = 50, ...
    assert model.encoder.sizes == [(210, 160), (102, 77), (50, 37), (24, 17), (11, 7)]
    rgb = np.random.default_rng(0).integers(0, 256, (1, 4, 210, 160, 3), dtype=np.uint8)
    assert model.imagine(rgb, np.array([[1, 0]])).shape == (1, 2, 210, 160, 3)
    with pytest.raises(ValueError, match="do not fit this model"):
        model.imagine(frames(1, 4), np.array([[0]]))


def test_untrained_residual_model_is_copy_last() -> None:
    model = VideoPredictor(tiny(), A).eval()
    ctx = frames(2, 4, seed=1)
    out = model.imagine(ctx, np.zeros((2, 5), dtype=np.int64))
    for t in range(5):
        np.testing.assert_array_equal(out[:, t], ctx[:, -1])


@pytest.mark.parametrize(("architecture", "body"), COMBOS)
def test_multi_step_loss_feeds_back_predictions_not_ground_truth(architecture: str, body: str) -> None:
    torch.manual_seed(0)
    model = perturb(VideoPredictor(tiny(architecture, body), A))
    x = frames(2, 4 + 3, seed=2)
    actions = np.array([[0, 1, 2, 0, 1, 2, -1], [2, 2, 1, 1, 0, 0, -1]])
    batch = {"frames": x, "actions": actions}
    with torch.no_grad():
        out = model.loss(batch)
    preds = out["predictions"]
    assert preds.shape == (2, 3, 1, 84, 84) and len(out["step_mse"]) == 3
    # Change the ground-truth targets (frames 4..6): no prediction may change, only the loss.
    leaked = {"frames": x.copy(), "actions": actions}
    leaked["frames"][:, 4:] = 255 - leaked["frames"][:, 4:]
    with torch.no_grad():
        out2 = model.loss(leaked)
    torch.testing.assert_close(out2["predictions"], preds, rtol=0, atol=0)
    assert out2["step_mse"] != out["step_mse"]
    # And the predictions are the open-loop rollout itself (same actions: 3, 4, 5 of the window).
    rollout = model.imagine(x[:, :4], actions[:, 3:6])
    np.testing.assert_allclose(rollout / 255.0, preds[:, :, 0].numpy(), atol=0.5 / 255 + 1e-6)


def test_gradient_flows_through_fed_back_predictions() -> None:
    """Step 2's error must reach what step 1 predicted (backpropagation through the rollout)."""
    torch.manual_seed(0)
    model = perturb(VideoPredictor(tiny(), A)).train()
    x = frames(2, 4 + 2, seed=3)
    actions = np.ones((2, 6), dtype=np.int64)
    s1 = model.start(model.frames_in(x[:, :4]))
    s2, f1, _ = model.advance(s1, model.one_hot(actions[:, 3]))
    f1.retain_grad()
    _, f2, _ = model.advance(s2, model.one_hot(actions[:, 4]))
    f2.sum().backward()
    assert f1.grad is not None and float(f1.grad.abs().sum()) > 0


def test_action_conditioning_changes_predictions() -> None:
    torch.manual_seed(0)
    model = perturb(VideoPredictor(tiny(), A))
    ctx = np.repeat(frames(1, 4, seed=4), A, axis=0)
    out = model.imagine(ctx, np.arange(A)[:, None].repeat(3, 1))
    assert not np.array_equal(out[0], out[1]) and not np.array_equal(out[1], out[2])
    with torch.no_grad():  # a model whose action weights are zero cannot tell actions apart
        for t in model.transform.transforms:
            t.act.weight.zero_()
    out = model.imagine(ctx, np.arange(A)[:, None].repeat(3, 1))
    np.testing.assert_array_equal(out[0], out[1])
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 3\)"):
        model.imagine(ctx, np.full((A, 1), 3))


def test_state_round_trip_gives_identical_predictions() -> None:
    model = perturb(VideoPredictor(tiny("recurrent"), A, mean_frame=np.full((84, 84), 0.3, np.float32), game="Pong"))
    again = VideoPredictor.from_state_dict_full(model.state_dict_full()).eval()
    assert again.game == "Pong" and np.allclose(again.mean_frame, 0.3)
    ctx, acts = frames(2, 4, seed=5), np.array([[0, 1], [2, 0]])
    np.testing.assert_array_equal(again.imagine(ctx, acts), model.imagine(ctx, acts))
    with pytest.raises(ValueError, match="not a video-predictor state"):
        VideoPredictor.from_state_dict_full({"format": "other"})


def test_window_sampler_stays_in_episodes(tmp_path: Path) -> None:
    moving_dot_dataset(tmp_path / "d")
    s = WindowSampler(tmp_path / "d", "train", 6, seed=0)
    b = s.sample(64)
    assert b["frames"].shape == (64, 6, 84, 84) and b["actions"].shape == (64, 6)
    assert np.all(b["episode_ids"] == b["episode_ids"][:, :1])
    assert np.all(b["actions"][:, :-1] >= 0)  # only an episode's last frame has no action
    assert 0 < float(s.mean_frame().max()) < 1
    with pytest.raises(DatasetError, match="no episode in this split has 41 frames"):
        s.set_length(41)


def test_training_beats_copy_last_on_a_moving_dot(tmp_path: Path) -> None:
    moving_dot_dataset(tmp_path / "d")
    torch.manual_seed(0)
    s = WindowSampler(tmp_path / "d", "train", 4 + 1, seed=0)
    model = VideoPredictor(tiny(), 3, s.mean_frame()).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        out = model.loss(s.sample(16))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["mse"].detach()))
    held = WindowSampler(tmp_path / "d", "heldout", 4 + 1, seed=1).sample(64)
    model.eval()
    pred = model.imagine(held["frames"][:, :4], held["actions"][:, 3:4]) / 255.0
    real = held["frames"][:, 4:] / 255.0
    copy = held["frames"][:, 3:4] / 255.0
    mse, copy_mse = ((pred - real) ** 2).mean(), ((copy - real) ** 2).mean()
    # The untrained model is copy-last exactly; training must pull the error clearly below it.
    assert np.mean(losses[-50:]) < 0.85 * np.mean(losses[:10]), (losses[:10], losses[-50:])
    assert mse < 0.85 * copy_mse, (mse, copy_mse)


def test_config_validation_names_the_key() -> None:
    from launch.config import ConfigError, load_config

    # String choices are Enums: OmegaConf refuses a bad one while loading, naming the key and the choices.
    with pytest.raises(ConfigError, match=r"model\.architecture.*'transformer', expected one of \[feedforward, "
                                          r"recurrent\]"):
        load_config(VideoFitConfig, ["video_tiny"], ["model.architecture=transformer"])
    with pytest.raises(ConfigError, match=r"run\.device.*'tpu', expected one of \[auto, cpu, cuda\]"):
        load_config(VideoFitConfig, ["video_tiny"], ["run.device=tpu"])
    assert load_config(VideoFitConfig, ["video_tiny"], ["model.body=paper"]).model.body == "paper"
    cfg = VideoFitConfig()
    cfg.model.architecture = "transformer"  # a config built in Python: validate checks the choice as well
    with pytest.raises(ValueError, match="model.architecture='transformer': choose one of feedforward, recurrent"):
        validate(cfg)
    cfg = VideoFitConfig()
    cfg.optim.phases[1].batch_size = 0
    with pytest.raises(ValueError, match=r"optim.phases\[1\].batch_size=0"):
        validate(cfg)
    cfg = VideoFitConfig()
    cfg.model.height = 210
    with pytest.raises(ValueError, match="multiples of 4"):
        validate(cfg)
    cfg = VideoFitConfig()
    cfg.optim.moving_loss_weight = -1.0
    with pytest.raises(ValueError, match="optim.moving_loss_weight"):
        validate(cfg)


def test_action_divergence_flags_the_real_model_when_its_action_weights_are_zero() -> None:
    from worldmodels.video.evaluate import action_divergence

    model = perturb(VideoPredictor(tiny(), A))
    ctx = frames(2, 4, seed=6)
    assert not action_divergence(model, ctx, A, horizon=3)["ignores_actions"]
    with torch.no_grad():
        for t in model.transform.transforms:
            t.act.weight.zero_()
    result = action_divergence(model, ctx, A, horizon=3)
    assert result["ignores_actions"] and result["per_step"] == [0.0, 0.0, 0.0]


def test_window_sampler_refuses_a_corrupt_shard_by_name(tmp_path: Path) -> None:
    moving_dot_dataset(tmp_path / "d")
    shard = sorted((tmp_path / "d" / "train").glob("shard_*.npz"))[0]
    shard.write_bytes(shard.read_bytes()[:-100])  # truncated
    with pytest.raises(DatasetError, match=rf"{shard.name}.*truncated or corrupt"):
        WindowSampler(tmp_path / "d", "train", 5)
    s = WindowSampler(tmp_path / "d", "train", 5, on_corrupt="skip")
    assert s.skipped == [str(shard)] and s.num_frames > 0


def test_moving_pixel_mse_by_hand() -> None:
    """A 2x2 square moves one pixel right: the moved pixels are the column it left and the column it entered
    (4 pixels); the error counts only there, and a frame where nothing moved adds no pixel."""
    from worldmodels.video.model import moving_pixel_mse

    prev = torch.zeros(2, 1, 4, 4)
    target = torch.zeros(2, 1, 4, 4)
    prev[0, 0, 1:3, 0:2] = 1.0  # square at columns 0-1
    target[0, 0, 1:3, 1:3] = 1.0  # moved to columns 1-2: column 0 and column 2 changed (4 pixels), column 1 not
    target[1] = prev[1] = 0.5  # frame 2: nothing moved
    prev[1, 0, 0, 0] = 0.5 + 7 / 255  # a change of 7 levels is below the 8-level threshold
    pred = target.clone()
    pred[0, 0, 1, 0] = 0.5  # error 0.25 on one moved pixel (column 0 should now be 0)
    pred[0, 0, 1, 2] = 0.0  # error 1.0 on another moved pixel (the square's new column dropped)
    pred[0, 0, 0, 3] = 1.0  # error 1.0 on a pixel that did not move: not counted
    pred[1] = 0.0  # frame 2 all wrong, but nothing moved there
    expected = (0.25 + 1.0) / 4
    assert float(moving_pixel_mse(pred, target, prev)) == pytest.approx(expected)
    # nothing moved anywhere: 0, not NaN
    assert float(moving_pixel_mse(pred[1:], target[1:], prev[1:])) == 0.0
    # colour: a pixel moved when any channel changed, and its error is the mean over channels
    prev_c, target_c, pred_c = torch.zeros(1, 3, 1, 2), torch.zeros(1, 3, 1, 2), torch.zeros(1, 3, 1, 2)
    target_c[0, 2, 0, 0] = 1.0  # only the blue channel of pixel 0 changed
    pred_c[0, 0, 0, 0] = 0.6  # red wrong by 0.6, blue wrong by 1.0 on the moved pixel
    assert float(moving_pixel_mse(pred_c, target_c, prev_c)) == pytest.approx((0.36 + 1.0) / 3)


def test_loss_adds_the_weighted_moving_pixel_mse() -> None:
    torch.manual_seed(0)
    model = perturb(VideoPredictor(tiny(), A))
    batch = {"frames": frames(2, 4 + 2, seed=4), "actions": np.ones((2, 6), dtype=np.int64)}
    with torch.no_grad():
        plain, weighted = model.loss(batch), model.loss(batch, moving_weight=3.0)
    assert float(plain["moving_mse"]) > 0
    assert float(plain["loss"]) == pytest.approx(float(plain["mse"]))  # default: the paper's objective
    assert float(weighted["loss"]) == pytest.approx(float(plain["mse"]) + 3.0 * float(plain["moving_mse"]),
                                                    rel=1e-6)
