"""``reverie imagine`` on the real ``VideoPredictor``: a checkpoint written the way fit-world-model writes it, loaded
by ``load_world_model``, scored on a tiny 84x84 dataset; checks the report's fields and that the video decodes.

The model here is untrained (this test checks the plumbing, not quality). The issue's end-to-end test
(collect -> fit-world-model -> imagine on a tiny preset) can reuse :func:`check_imagine_outputs`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from worldmodels.data import DatasetWriter

if TYPE_CHECKING:
    from worldmodels.video import ModelConfig

REPORT_LISTS = ("mse", "psnr", "ssim", "copy_last_mse", "copy_last_psnr", "copy_last_ssim", "mean_frame_mse",
                "mean_frame_psnr", "mean_frame_ssim", "shuffled_actions_mse", "shuffled_actions_psnr",
                "shuffled_actions_ssim")


def _dataset(root: Path, game: str, episodes: int = 4, length: int = 24, num_actions: int = 3) -> Path:
    """Episodes of a sprite that the action moves sideways, on 84x84 frames."""
    rng = np.random.default_rng(0)
    w = DatasetWriter(root, {"game": game}, heldout_fraction=0.5, shard_frames=50)
    for _ in range(episodes):
        frames = np.zeros((length, 84, 84), np.uint8)
        frames[0, 40:44, 20:24] = 200
        actions = rng.integers(0, num_actions, size=length).astype(np.int64)
        actions[-1] = -1
        for t in range(length - 1):
            frames[t + 1] = np.roll(frames[t], 2 * (int(actions[t]) - 1), axis=-1)
        w.add_episode(frames, actions, np.zeros(length, np.float32), terminal=True)
    w.close()
    return root


def run_cli(argv: list[str]) -> int:
    """``reverie imagine ...`` through the subcommand's own parser (what launch/cli.py wires in)."""
    from launch.imagine_cli import register

    parser = argparse.ArgumentParser(prog="reverie")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def check_imagine_outputs(out: Path, horizon: int, samples: int) -> dict:
    """The files `reverie imagine` promises, with the report's per-step lists of length ``horizon``."""
    import imageio.v3 as iio

    report = json.loads((out / "report.json").read_text())
    for key in REPORT_LISTS:
        assert len(report[key]) == horizon, key
    assert report["steps"] == list(range(1, horizon + 1)) and report["rollouts"] > 0
    assert set(report["beats"]) == {"copy_last", "mean_frame", "shuffled_actions"}
    assert len(report["action_divergence"]["per_step"]) == horizon
    video = iio.imread(out / "rollouts.gif", index=None)
    assert video.shape[0] == horizon + 1 and video.shape[1] == 14 + samples * (2 * 84 + 2)
    assert (out / "errors.png").is_file() and (out / "action_conditioning.png").is_file()
    assert list((out / "tb").glob("events.out.tfevents.*"))
    return report


def test_imagine_with_a_saved_video_predictor(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import torch

    import worldmodels.video as video
    from worldmodels.common.checkpoint import save_checkpoint

    torch.manual_seed(0)
    data = _dataset(tmp_path / "data", "Breakout")
    model = video.VideoPredictor(video.ModelConfig(), num_actions=3, game="Breakout")
    save_checkpoint(tmp_path / "run" / "checkpoints", 0, {"world_model": model.state_dict_full()})
    assert run_cli(["imagine", str(tmp_path / "run"), "--data", str(data), "--horizon", "4", "--samples", "2",
                    "--json", "--starts-per-episode", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = check_imagine_outputs(tmp_path / "run" / "imagine", horizon=4, samples=2)
    assert printed["mse"] == report["mse"] and printed["game"] == "Breakout"

    # Another game's data is refused before any rollout.
    from worldmodels.data import DatasetError

    with pytest.raises(DatasetError, match="'Pong' play but the model was trained on 'Breakout'"):
        run_cli(["imagine", str(tmp_path / "run"), "--data", str(_dataset(tmp_path / "pong", "Pong"))])


def _tiny(**overrides: Any) -> ModelConfig:
    """A video predictor's config small enough for seconds of CPU (the residual body at a few channels)."""
    from worldmodels.video import ModelConfig

    return ModelConfig(stem_channels=4, res_channels=8, res_blocks=1, res_factors=8, **overrides)


def test_compare_two_saved_runs_writes_both_rows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`reverie imagine --compare` on two real checkpoints (a feedforward and a recurrent model of another context),
    each with the reward head: one report with both runs' rows, the references once."""
    import torch

    import worldmodels.video as video
    from worldmodels.common.checkpoint import save_checkpoint

    torch.manual_seed(0)
    data = _dataset(tmp_path / "data", "Breakout")
    runs = {"ff": video.VideoPredictor(_tiny(), num_actions=3, game="Breakout"),
            "rnn": video.VideoPredictor(_tiny(architecture="recurrent", context=2), num_actions=3, game="Breakout")}
    for name, model in runs.items():
        save_checkpoint(tmp_path / name / "checkpoints", 0, {"world_model": model.state_dict_full()})
    out = tmp_path / "cmp"
    assert run_cli(["imagine", "--compare", str(tmp_path / "ff"), str(tmp_path / "rnn"), "--data", str(data),
                    "--horizon", "3", "--starts-per-episode", "2", "--samples", "2", "--out", str(out),
                    "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "report.json").read_text())
    assert printed["models"]["ff"]["mse"] == report["models"]["ff"]["mse"]
    assert report["compare"] == ["ff", "rnn"] and report["context"] == 4
    for name, context in (("ff", 4), ("rnn", 2)):
        section = report["models"][name]
        assert section["context"] == context and section["reward_head"] is True
        for key in (*REPORT_LISTS[:3], "moving_mse", "foreground_mse", "object_recall", "object_precision",
                    "shuffled_actions_mse", "reward_sign_accuracy", "game_over_accuracy"):
            assert len(section[key]) == 3, (name, key)
        assert len(section["action_divergence"]["per_step"]) == 3
    for key in ("copy_last_mse", "mean_frame_mse", "copy_last_object_recall", "real_objects", "moving_frames"):
        assert len(report[key]) == 3, key
    assert (out / "errors.png").is_file() and (out / "action_conditioning_rnn.png").is_file()

    # The rollout that gives the head's outputs (initial/step) gives the frames of imagine, exactly.
    from worldmodels.video.evaluate import has_reward_head, imagine_with_heads, load_heldout_windows

    model = video.load_world_model(tmp_path / "ff")
    win = load_heldout_windows(data, 7, starts_per_episode=2)
    assert has_reward_head(model)
    frames, reward, over = imagine_with_heads(model, win.frames[:, :4], win.actions[:, 3:6])
    assert np.array_equal(frames, model.imagine(win.frames[:, :4], win.actions[:, 3:6]))
    assert reward.shape == over.shape == (len(frames), 3) and (np.abs(reward) <= 1).all()
    plain = video.VideoPredictor(_tiny(reward_head=False), num_actions=3, game="Breakout")
    assert not has_reward_head(plain)


def test_a_colour_model_is_scored_on_rgb_frames(tmp_path: Path) -> None:
    """The paper preset's input is 210x160 RGB: a 3-channel model (here tiny, 24x24) is scored, not refused."""
    import imageio.v3 as iio
    import torch

    import worldmodels.video as video
    from worldmodels.common.checkpoint import save_checkpoint

    rng = np.random.default_rng(0)
    w = DatasetWriter(tmp_path / "rgb", {"game": "Pong"}, heldout_fraction=0.5, shard_frames=50)
    for e in range(4):
        frames = np.zeros((12, 24, 24, 3), np.uint8)
        for t in range(12):
            # An orange square crossing the frame, on rows of its own in each episode: no pixel holds it in half
            # of the held-out frames, so their median is the empty background.
            frames[t, 6 * e: 6 * e + 4, t: t + 4] = (200, 80, 40)
        actions = rng.integers(0, 3, size=12).astype(np.int64)
        actions[-1] = -1
        w.add_episode(frames, actions, np.zeros(12, np.float32), terminal=True)
    w.close()
    torch.manual_seed(0)
    model = video.VideoPredictor(_tiny(channels=3, height=24, width=24), num_actions=3, game="Pong")
    save_checkpoint(tmp_path / "run" / "checkpoints", 0, {"world_model": model.state_dict_full()})
    assert run_cli(["imagine", str(tmp_path / "run"), "--data", str(tmp_path / "rgb"), "--horizon", "3",
                    "--samples", "2", "--starts-per-episode", "2", "--no-progress"]) == 0
    out = tmp_path / "run" / "imagine"
    report = json.loads((out / "report.json").read_text())
    assert report["channels"] == 3 and report["frame_shape"] == [24, 24]
    assert all(len(report[key]) == 3 for key in REPORT_LISTS)
    assert report["real_objects"] == [report["rollouts"]] * 3  # the square moves at every step
    assert report["copy_last_object_recall"][0] == 1.0  # shifted by one column of four: kept
    video_frames = iio.imread(out / "rollouts.gif", index=None)
    assert video_frames.shape[0] == 4 and video_frames.shape[-1] == 3  # RGB
    assert (out / "action_conditioning.png").is_file()
