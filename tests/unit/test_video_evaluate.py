"""Evaluation of imagined rollouts (worldmodels.video.evaluate, launch/imagine_cli.py) with test-double models
on a tiny dataset whose frames move by the action: window choice, action alignment, the references, the
action-conditioning check, the outputs of ``reverie imagine`` and its errors."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from worldmodels.data import DatasetError, DatasetWriter
from worldmodels.video.evaluate import (
    BASELINES,
    action_divergence,
    beats_summary,
    evaluate_rollouts,
    load_heldout_windows,
    to_json,
)

SIZE = 24  # small frames keep the tests fast; SSIM needs at least 11x11


class _Double:
    """What evaluation needs of a VideoPredictor (``ImaginingModel`` in worldmodels/video/evaluate.py): context,
    num_actions, frame_shape, mean_frame, game, imagine."""

    context, num_actions, game = 4, 3, "Test"
    frame_shape = (SIZE, SIZE)
    mean_frame = np.full((SIZE, SIZE), 0.05, dtype=np.float32)

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def imagine(self, context: np.ndarray, actions: np.ndarray) -> np.ndarray:
        assert context.dtype == np.uint8 and context.shape[1:] == (self.context, *self.frame_shape)
        assert actions.dtype == np.int64 and len(actions) == len(context)
        self.calls.append(actions.copy())
        frame, out = context[:, -1], []
        for t in range(actions.shape[1]):
            frame = self.next(frame, actions[:, t])
            out.append(frame)
        return np.stack(out, 1)

    def next(self, frame: np.ndarray, action: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class CopyLast(_Double):
    """Predicts no motion, and so ignores its actions."""

    def next(self, frame: np.ndarray, action: np.ndarray) -> np.ndarray:
        return frame.copy()


class ShiftByAction(_Double):
    """The data's true dynamics: action a moves the picture a - 1 pixels sideways (a perfect model)."""

    def next(self, frame: np.ndarray, action: np.ndarray) -> np.ndarray:
        return np.stack([np.roll(f, int(a) - 1, axis=-1) for f, a in zip(frame, action)])


def _episode(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 3x3 sprite on a faint textured background; frame t + 1 = frame t rolled by actions[t] - 1."""
    frames = np.empty((n, SIZE, SIZE), np.uint8)
    frames[0] = rng.integers(0, 30, size=(SIZE, SIZE))
    frames[0, 10:13, 5:8] = 220
    actions = rng.integers(0, 3, size=n).astype(np.int64)
    actions[-1] = -1
    for t in range(n - 1):
        frames[t + 1] = np.roll(frames[t], actions[t] - 1, axis=-1)
    return frames, actions, np.zeros(n, np.float32)


def _dataset(root: Path, lengths: list[int], game: str = "Test", heldout: float = 0.5, size: int = SIZE) -> Path:
    rng = np.random.default_rng(0)
    w = DatasetWriter(root, {"game": game}, heldout_fraction=heldout, shard_frames=40)
    for n in lengths:
        f, a, r = _episode(rng, n)
        if size != SIZE:
            f = np.zeros((n, size, size), np.uint8)
        w.add_episode(f, a, r, terminal=True)
    w.close()
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # heldout 0.5: episodes 0 (30 frames), 2, 4 ... alternate; episode lengths vary so some are too short.
    return _dataset(tmp_path_factory.mktemp("d") / "data", [30, 20, 12, 25, 8, 30, 16, 20])


def _heldout_lengths(data: Path) -> dict[int, int]:
    from worldmodels.data import TrajectoryDataset

    ds = TrajectoryDataset(data, "heldout")
    ids = np.concatenate([a["episode_ids"] for a in ds.iter_shards()])
    return {int(e): int((ids == e).sum()) for e in np.unique(ids)}


def test_windows_stay_in_one_episode_and_follow_the_seed(data: Path) -> None:
    lengths = _heldout_lengths(data)
    win = load_heldout_windows(data, window=9, starts_per_episode=3, seed=5)
    eligible = {e: n - 9 + 1 for e, n in lengths.items() if n >= 9}
    assert win.eligible_episodes == len(eligible)
    assert len(win.frames) == sum(min(3, s) for s in eligible.values())
    assert win.frames.shape[1:] == (9, SIZE, SIZE) and win.actions.shape[1:] == (9,)
    assert set(win.episode_ids) == set(eligible)
    for e, off in zip(win.episode_ids, win.offsets):
        assert 0 <= off <= lengths[int(e)] - 9
    # Only an episode's last frame has action -1, and a window never ends past it.
    assert (win.actions[:, :-1] >= 0).all()
    again = load_heldout_windows(data, window=9, starts_per_episode=3, seed=5)
    assert np.array_equal(again.frames, win.frames) and np.array_equal(again.offsets, win.offsets)
    other = load_heldout_windows(data, window=9, starts_per_episode=3, seed=6)
    assert not np.array_equal(other.offsets, win.offsets)
    two = load_heldout_windows(data, window=9, episodes=2, starts_per_episode=1, seed=0)
    assert len(two.frames) == 2 and len(set(two.episode_ids)) == 2 and two.eligible_episodes == len(eligible)


def test_report_fields_alignment_and_references(data: Path) -> None:
    model = ShiftByAction()
    report = evaluate_rollouts(model, data, horizon=5, starts_per_episode=3, seed=1, samples=2)
    samples = report.pop("samples")
    for key in ("mse", "psnr", "ssim", *(f"{b}_{m}" for b in BASELINES for m in ("mse", "psnr", "ssim"))):
        assert len(report[key]) == 5, key
    assert report["steps"] == [1, 2, 3, 4, 5] and report["horizon"] == 5 and report["context"] == 4
    assert report["rollouts"] == sum(min(3, n - 8) for n in _heldout_lengths(data).values() if n >= 9)
    assert report["game"] == "Test" and report["frame_shape"] == [SIZE, SIZE] and report["num_actions"] == 3
    # The true dynamics replayed with the real actions, aligned as the API says, reproduce the data exactly;
    # an off-by-one in the action alignment would not.
    assert report["mse"] == [0.0] * 5 and report["psnr"] == [math.inf] * 5 and np.allclose(report["ssim"], 1.0)
    assert all(m > 0 for m in report["copy_last_mse"]) and all(m > 0 for m in report["mean_frame_mse"])
    assert all(m > 0 for m in report["shuffled_actions_mse"]) and report["shuffled_actions_changed"] > 0.3
    assert report["beats"] == {b: {"steps": [1, 2, 3, 4, 5], "all": True, "up_to": 5} for b in BASELINES}
    div = report["action_divergence"]
    assert not div["ignores_actions"] and len(div["per_step"]) == 5 and div["per_step"][0] > 0
    assert len(div["sequences"]) == 3 and div["starts"] == 4
    # The shuffled rollouts got the same actions in another order.
    real_actions, shuffled = model.calls[0], model.calls[1]
    assert sorted(real_actions.ravel()) == sorted(shuffled.ravel())
    # Samples for the pictures: real windows, the model's frames, the action grid (3 rows x 5 steps).
    assert samples["frames"].shape == (2, 9, SIZE, SIZE) and samples["imagined"].shape == (2, 5, SIZE, SIZE)
    assert np.array_equal(samples["imagined"], samples["frames"][:, 4:])
    assert samples["action_grid"].shape == (2 + 3 * (SIZE + 2), 2 + 5 * (SIZE + 2))
    # Strict JSON: a perfect step's PSNR becomes null.
    text = json.dumps(to_json(report), allow_nan=False)
    assert json.loads(text)["psnr"] == [None] * 5


def test_copy_last_model_equals_the_copy_last_reference_and_is_flagged(data: Path) -> None:
    report = evaluate_rollouts(CopyLast(), data, horizon=6, seed=0)
    assert report["mse"] == report["copy_last_mse"] and report["ssim"] == report["copy_last_ssim"]
    assert report["mse"] == report["shuffled_actions_mse"]  # it never looks at the actions
    assert report["beats"]["copy_last"] == {"steps": [], "all": False, "up_to": 0}
    div = report["action_divergence"]
    assert div["ignores_actions"] and div["per_step"] == [0.0] * 6 and div["mean"] == 0.0


def test_action_divergence_measures_pairs_exactly() -> None:
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 256, size=(2, 4, SIZE, SIZE), dtype=np.uint8)
    d = action_divergence(ShiftByAction(), ctx, num_actions=3, horizon=4)
    pair = np.array(d["pairwise"])
    assert pair.shape == (3, 3) and np.allclose(pair, pair.T) and np.all(np.diag(pair) == 0)
    # By hand for step 1: mean over pairs (0,1), (0,2), (1,2) of the MSE between the shifted frames.
    f = ctx[:, -1].astype(float) / 255
    shifted = [np.roll(f, a - 1, axis=-1) for a in range(3)]
    by_hand = np.mean([((shifted[i] - shifted[j]) ** 2).mean() for i, j in ((0, 1), (0, 2), (1, 2))])
    assert d["per_step"][0] == pytest.approx(by_hand, rel=1e-12)
    r = action_divergence(ShiftByAction(), ctx, num_actions=3, horizon=4, mode="random", num_sequences=5, seed=3)
    assert len(r["sequences"]) == 5 and r["grid"].shape[0] == 2 + 5 * (SIZE + 2) and not r["ignores_actions"]
    with pytest.raises(ValueError, match="at least two"):
        action_divergence(ShiftByAction(), ctx, num_actions=1, horizon=2)


def test_beats_summary_counts_the_unbroken_run() -> None:
    r = {"mse": [1.0, 2.0, 3.0, 4.0], "copy_last_mse": [2.0, 3.0, 1.0, 5.0], "mean_frame_mse": [0.5] * 4,
         "shuffled_actions_mse": [9.0] * 4}
    b = beats_summary(r)
    assert b["copy_last"] == {"steps": [1, 2, 4], "all": False, "up_to": 2}
    assert b["mean_frame"]["up_to"] == 0 and b["shuffled_actions"]["all"]


def test_bad_data_is_refused_with_the_fix(data: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="trained on 'Test'.*reverie collect Test"):
        evaluate_rollouts(ShiftByAction(), _dataset(tmp_path / "pong", [20, 20], game="ALE/Pong-v5"), horizon=2)
    with pytest.raises(DatasetError, match="16x16 frames but the model predicts 24x24"):
        evaluate_rollouts(ShiftByAction(), _dataset(tmp_path / "small", [20, 20], size=16), horizon=2)
    with pytest.raises(DatasetError, match="no 'heldout' shards.*--heldout-fraction"):
        evaluate_rollouts(ShiftByAction(), _dataset(tmp_path / "noheld", [20, 20], heldout=0.0), horizon=2)
    with pytest.raises(DatasetError, match="has 104 frames.*lower --horizon"):
        evaluate_rollouts(ShiftByAction(), data, horizon=100)
    with pytest.raises(DatasetError, match="does not exist"):
        evaluate_rollouts(ShiftByAction(), tmp_path / "nothing", horizon=2)
    few = ShiftByAction()
    few.num_actions = 2
    with pytest.raises(DatasetError, match="model knows 0..1"):
        evaluate_rollouts(few, data, horizon=3)
    # Game names are compared however they are spelled.
    spelled = ShiftByAction()
    spelled.game = "ALE/Test-v5"
    assert evaluate_rollouts(spelled, data, horizon=2, divergence_starts=0)["rollouts"] > 0


# ------------------------------------------------------------------------------------------ reverie imagine
def _cli(argv: list[str], model: _Double, monkeypatch: pytest.MonkeyPatch) -> int:
    from launch import imagine_cli

    monkeypatch.setattr(imagine_cli, "_load_model", lambda run: model)
    parser = argparse.ArgumentParser(prog="reverie")
    imagine_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_imagine_command_writes_video_plot_report_and_tensorboard(data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    import imageio.v3 as iio

    run = tmp_path / "run"
    run.mkdir()
    assert _cli(["imagine", str(run), "--data", str(data), "--horizon", "6", "--samples", "3", "--no-progress"],
                ShiftByAction(), monkeypatch) == 0
    table = capsys.readouterr().out
    assert "copy-last" in table and "beats copy last: every step" in table and "action divergence" in table
    out = run / "imagine"
    report = json.loads((out / "report.json").read_text())
    for key in ("mse", "psnr", "ssim", "copy_last_mse", "mean_frame_mse", "shuffled_actions_mse"):
        assert len(report[key]) == 6
    assert report["beats"]["mean_frame"]["all"] and "per_step" in report["action_divergence"]
    gif = iio.imread(out / "rollouts.gif", index=None)
    # Frame 0 (last context frame) + 6 steps; 3 rollouts of 2x-upscaled frames under a 14-row caption.
    assert gif.shape[0] == 7
    assert gif.shape[1:3] == (14 + 3 * (2 * SIZE + 2), 3 * (2 * SIZE + 2))
    assert iio.imread(out / "errors.png").ndim == 3 and iio.imread(out / "action_conditioning.png").ndim == 3
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(out / "tb"))
    acc.Reload()
    mse = acc.Scalars("imagine/copy_last_mse")
    assert [e.step for e in mse] == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in mse] == pytest.approx(report["copy_last_mse"], rel=1e-6)
    assert "imagine/psnr" not in acc.Tags()["scalars"]  # all inf for a perfect model: nothing plottable
    assert "imagine/action_conditioning" in acc.Tags()["images"]

    # Running again into the same folder replaces the events, as it replaces the report: each step shows once.
    assert _cli(["imagine", str(run), "--data", str(data), "--horizon", "6", "--samples", "3", "--no-progress"],
                ShiftByAction(), monkeypatch) == 0
    capsys.readouterr()
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1
    acc = event_accumulator.EventAccumulator(str(out / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("imagine/copy_last_mse")] == [1, 2, 3, 4, 5, 6]

    # --json prints the report and takes --out.
    assert _cli(["imagine", str(run), "--data", str(data), "--horizon", "3", "--json", "--out",
                 str(tmp_path / "o"), "--episodes", "1", "--starts-per-episode", "2"], CopyLast(), monkeypatch) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["rollouts"] == 2 and printed["episodes"] == 1
    assert printed["action_divergence"]["ignores_actions"] and (tmp_path / "o/report.json").is_file()
    assert printed["outputs"]["video"] == str(tmp_path / "o/rollouts.gif")


def test_imagine_command_errors(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="run .*missing.* does not exist.*fit-world-model"):
        _cli(["imagine", str(tmp_path / "missing"), "--data", str(data)], CopyLast(), monkeypatch)
    (tmp_path / "run").mkdir()
    with pytest.raises(DatasetError, match="does not exist"):
        _cli(["imagine", str(tmp_path / "run"), "--data", str(tmp_path / "nodata")], CopyLast(), monkeypatch)


def test_mp4_without_a_plugin_names_the_fix(tmp_path: Path) -> None:
    from launch.imagine_cli import write_video

    frames = np.zeros((3, 15, 17), np.uint8)
    try:
        path = write_video(tmp_path / "v.mp4", frames)
    except ValueError as err:
        assert "imageio[ffmpeg]" in str(err) and "gif" in str(err)
    else:
        import imageio.v3 as iio

        assert len(iio.imread(path, index=None)) == 3
