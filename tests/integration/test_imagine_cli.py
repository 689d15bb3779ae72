"""``reverie imagine`` on the real ``VideoPredictor``: a checkpoint written the way fit-world-model writes it, loaded
by ``load_world_model``, scored on a tiny 84x84 dataset; checks the report's fields and that the video decodes.

The model here is untrained (this test checks the plumbing, not quality). The issue's end-to-end test
(collect -> fit-world-model -> imagine on a tiny preset) can reuse :func:`check_imagine_outputs`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from worldmodels.data import DatasetWriter

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
