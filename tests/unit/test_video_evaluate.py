"""Evaluation of imagined rollouts (worldmodels.video.evaluate, launch/imagine_cli.py) with test-double models
on a tiny dataset whose frames move by the action: window choice, action alignment, the references, the
action-conditioning check, the outputs of ``reverie imagine`` and its errors."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from worldmodels.data import DatasetError, DatasetWriter
from worldmodels.video.evaluate import (
    BASELINES,
    REWARD_KEYS,
    action_divergence,
    beats_summary,
    evaluate_models,
    evaluate_rollouts,
    load_heldout_windows,
    reward_head_accuracy,
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
    # A motion error: a step with no such pixels (None on either side) is not won.
    r = {"moving_mse": [1.0, None, 1.0], "copy_last_moving_mse": [2.0, 2.0, None], "mean_frame_moving_mse": [3.0] * 3,
         "shuffled_actions_moving_mse": [None] * 3}
    b = beats_summary(r, "moving_mse")
    assert b["copy_last"] == {"steps": [1], "all": False, "up_to": 1} and b["mean_frame"]["steps"] == [1, 3]
    assert b["shuffled_actions"]["steps"] == []


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
    assert iio.imread(out / "objects.png").shape[-1] == 3
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(out / "tb"))
    acc.Reload()
    mse = acc.Scalars("imagine/copy_last_mse")
    assert [e.step for e in mse] == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in mse] == pytest.approx(report["copy_last_mse"], rel=1e-6)
    assert "imagine/psnr" not in acc.Tags()["scalars"]  # all inf for a perfect model: nothing plottable
    assert {"imagine/action_conditioning", "imagine/objects"} <= set(acc.Tags()["images"])

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


# ------------------------------------------------------------------------ motion, reward head, colour, compare
SPRITE = 220


def _sprite_background(colour: bool = False) -> np.ndarray:
    """A static faint texture (the same in every episode); colour: the texture in all three channels."""
    bg = np.random.default_rng(7).integers(0, 30, size=(SIZE, SIZE)).astype(np.uint8)
    return np.repeat(bg[..., None], 3, axis=-1) if colour else bg


def _draw(bg: np.ndarray, y: int, x: int) -> np.ndarray:
    f = bg.copy()
    if bg.ndim == 3:
        f[y: y + 3, x: x + 3, 0] = SPRITE  # a red sprite: only channel 0 differs from the background
    else:
        f[y: y + 3, x: x + 3] = SPRITE
    return f


def _sprite_dataset(root: Path, colour: bool = False, episodes: int = 8, length: int = 16) -> Path:
    """A 3x3 sprite that action a moves a - 1 columns over a static background; each episode on its own rows (so
    no pixel holds a sprite in more than a few frames and the held-out median is the background). The reward of
    an action is 5 (a - 1): raw, only its sign is predicted. Episodes end by game over."""
    rng = np.random.default_rng(1)
    bg = _sprite_background(colour)
    w = DatasetWriter(root, {"game": "Test"}, heldout_fraction=0.5, shard_frames=40)
    for e in range(episodes):
        y, x = 3 * e, 10
        actions = rng.integers(0, 3, size=length).astype(np.int64)
        actions[-1] = -1
        frames = []
        for t in range(length):
            frames.append(_draw(bg, y, x))
            x = int(np.clip(x + actions[t] - 1, 0, SIZE - 3))
        rewards = np.where(actions >= 0, 5.0 * (actions - 1), 0.0).astype(np.float32)
        w.add_episode(np.stack(frames), actions, rewards, terminal=True)
    w.close()
    return root


@pytest.fixture(scope="module")
def sprite_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _sprite_dataset(tmp_path_factory.mktemp("s") / "data")


@dataclass
class _State:
    frame: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray


class SpriteModel:
    """The sprite data's dynamics (perfect), or with ``drop`` the background alone (the moving sprite dropped, all
    else kept); with ``head``, a reward head that says ``head_scale * (a - 1)`` for action a and never game over
    (through ``initial``/``step``, as VideoPredictor)."""

    num_actions, game = 3, "Test"
    frame_shape = (SIZE, SIZE)

    def __init__(self, drop: bool = False, colour: bool = False, head: bool = False, head_scale: float = 0.9,
                 context: int = 4) -> None:
        self.drop, self.colour, self.context, self.head_scale = drop, colour, context, head_scale
        self.channels = 3 if colour else 1
        self.background = _sprite_background(colour)
        self.mean_frame = self.background / 255.0
        self.head = object() if head else None
        self.imagine_calls = 0

    def next(self, frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
        out = []
        for f, a in zip(frames, actions):
            ys, xs = np.nonzero((f[..., 0] if self.colour else f) == SPRITE)
            if self.drop or not len(ys):
                out.append(self.background.copy())
            else:
                out.append(_draw(self.background, int(ys.min()), int(np.clip(xs.min() + a - 1, 0, SIZE - 3))))
        return np.stack(out)

    def imagine(self, context: np.ndarray, actions: np.ndarray) -> np.ndarray:
        assert context.shape[1] == self.context and context.ndim == (5 if self.colour else 4)
        self.imagine_calls += 1
        frame, out = context[:, -1], []
        for t in range(actions.shape[1]):
            frame = self.next(frame, actions[:, t])
            out.append(frame)
        return np.stack(out, 1)

    def initial(self, frames: np.ndarray, actions: np.ndarray | None = None) -> _State:
        b = len(frames)
        return _State(frames[:, -1], np.zeros(b, np.float32), np.zeros(b, np.float32))

    def step(self, state: _State, action: np.ndarray) -> tuple[_State, np.ndarray]:
        frame = self.next(state.frame, action)
        reward = (self.head_scale * (np.asarray(action) - 1)).astype(np.float32)
        return _State(frame, reward, np.zeros(len(frame), np.float32)), frame


def test_motion_rows_for_the_model_and_every_reference(sprite_data: Path) -> None:
    report = evaluate_rollouts(SpriteModel(), sprite_data, horizon=5, starts_per_episode=3, seed=0)
    for prefix in ("", *(f"{b}_" for b in BASELINES)):
        for key in ("moving_mse", "foreground_mse", "object_recall", "object_precision", "imagined_objects"):
            assert len(report[prefix + key]) == 5, prefix + key
    assert report["motion"]["change_threshold"] == pytest.approx(8 / 255)
    assert report["motion"]["min_object_pixels"] == 4 and report["motion"]["match_share"] == 0.5
    n = report["rollouts"]
    # Every rollout shows the sprite (foreground) at every step; it moves in some of them.
    assert report["foreground_frames"] == [n] * 5 and report["real_objects"] == report["moving_frames"]
    assert all(0 < m <= n for m in report["moving_frames"])
    # The perfect model: no error where things move, every moving sprite kept, nothing invented.
    assert report["moving_mse"] == [0.0] * 5 and report["foreground_mse"] == [0.0] * 5
    assert report["object_recall"] == [1.0] * 5 and report["object_precision"] == [1.0] * 5
    # Copy-last moves nothing: its precision is undefined at every step (null), not 0.
    assert report["copy_last_imagined_objects"] == [0] * 5 and report["copy_last_object_precision"] == [None] * 5
    assert json.loads(json.dumps(to_json(report), allow_nan=False))["copy_last_object_precision"] == [None] * 5


def test_a_model_that_drops_the_moving_sprite_scores_worse_than_copy_last(sprite_data: Path) -> None:
    report = evaluate_rollouts(SpriteModel(drop=True), sprite_data, horizon=5, starts_per_episode=3, seed=0)
    # It keeps the whole background exactly, so its whole-frame error is small; but on the sprite's pixels it is
    # wrong everywhere, where copy-last is still partly right (the sprite moves one column a step, it is 3 wide).
    assert all(m > c for m, c in zip(report["foreground_mse"], report["copy_last_foreground_mse"]))
    assert report["foreground_mse"] == pytest.approx([(np.mean(
        [((SPRITE - v) / 255) ** 2 for v in _sprite_background().ravel()]))] * 5, rel=0.02)
    assert report["object_recall"] == [0.0] * 5
    assert all(r > 0 for r in report["copy_last_object_recall"][:2])
    assert report["imagined_objects"] == [0] * 5 and report["object_precision"] == [None] * 5
    # The verdict says so: it beats copy-last on the foreground at no step.
    assert report["beats_motion"]["foreground_mse"]["copy_last"]["steps"] == []


def test_reward_head_accuracy_by_hand() -> None:
    pred = np.array([[0.9, 0.2, -0.7], [0.4, -0.6, 0.0], [-0.51, 0.0, 0.6]])
    real = np.array([[3.0, 0.0, -1.0], [1.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    over_p = np.array([[0.1, 0.2, 0.9], [0.0, 0.0, 0.4], [0.0, 0.6, 0.0]])
    over = np.array([[False, False, True], [False, False, True], [False, False, False]])
    r = reward_head_accuracy(pred, over_p, real, over)
    # Signs read: [+1, 0, -1], [0, -1, 0], [-1, 0, +1] against [+1, 0, -1], [+1, -1, 0], [0, 0, 0].
    assert r["reward_sign_accuracy"] == pytest.approx([1 / 3, 1.0, 2 / 3])
    assert r["reward_nonzero_count"] == [2, 1, 1]
    assert r["reward_nonzero_accuracy"] == [0.5, 1.0, 1.0]
    assert r["game_over_count"] == [0, 0, 2]
    assert r["game_over_accuracy"] == pytest.approx([1.0, 2 / 3, 2 / 3])
    none = reward_head_accuracy(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1), bool))
    assert none["reward_nonzero_accuracy"] == [None] and none["reward_sign_accuracy"] == [1.0]


def test_reward_head_rows_only_for_a_model_with_a_head(sprite_data: Path) -> None:
    model = SpriteModel(head=True)
    report = evaluate_rollouts(model, sprite_data, horizon=4, starts_per_episode=100, seed=0)
    assert report["reward_head"] is True
    # The head's reward follows the action taken at the step (the data's reward of that action): all right, which
    # an off-by-one alignment between steps, actions and rewards would not be.
    assert report["reward_sign_accuracy"] == [1.0] * 4 and report["reward_nonzero_accuracy"] == [1.0] * 4
    assert all(0 < c < report["rollouts"] for c in report["reward_nonzero_count"])
    # Every window is used, so each held-out episode's last window ends at its game over (step 4 only); the head
    # never predicts it.
    episodes = report["eligible_episodes"]
    assert report["game_over_count"] == [0, 0, 0, episodes]
    assert report["game_over_accuracy"] == pytest.approx([1.0, 1.0, 1.0, 1 - episodes / report["rollouts"]])
    # The frames came from initial/step (imagine ran for the shuffled actions only) and are the perfect ones.
    assert model.imagine_calls > 0 and report["mse"] == [0.0] * 4
    # A head that is always unsure (expected reward 0.45: rounds to 0) is right only where the reward is 0.
    weak = evaluate_rollouts(SpriteModel(head=True, head_scale=0.45), sprite_data, horizon=4, starts_per_episode=100)
    n = weak["rollouts"]
    assert weak["reward_sign_accuracy"] == pytest.approx([1 - c / n for c in weak["reward_nonzero_count"]])
    assert weak["reward_nonzero_accuracy"] == [0.0] * 4
    # No head: the row is absent, and the report says so.
    plain = evaluate_rollouts(SpriteModel(), sprite_data, horizon=4)
    assert plain["reward_head"] is False and not set(REWARD_KEYS) & set(plain)


def test_colour_models_are_scored_on_colour_data(tmp_path: Path) -> None:
    data = _sprite_dataset(tmp_path / "rgb", colour=True)
    report = evaluate_rollouts(SpriteModel(colour=True), data, horizon=4, starts_per_episode=2, samples=2)
    samples = report.pop("samples")
    assert report["channels"] == 3 and report["frame_shape"] == [SIZE, SIZE]
    assert report["mse"] == [0.0] * 4 and np.allclose(report["ssim"], 1.0)
    assert all(m > 0 for m in report["copy_last_mse"]) and all(m > 0 for m in report["mean_frame_mse"])
    assert report["object_recall"] == [1.0] * 4 and report["moving_mse"] == [0.0] * 4
    assert samples["frames"].shape == (2, 8, SIZE, SIZE, 3) and samples["imagined"].shape == (2, 4, SIZE, SIZE, 3)
    assert samples["action_grid"].shape == (2 + 3 * (SIZE + 2), 2 + 4 * (SIZE + 2), 3)
    dropped = evaluate_rollouts(SpriteModel(colour=True, drop=True), data, horizon=4, starts_per_episode=2)
    assert dropped["object_recall"] == [0.0] * 4
    # Colours must match: a luminance model on RGB data and an RGB model on luminance data are refused.
    with pytest.raises(DatasetError, match="holds RGB \\(colour\\) frames but the model predicts luminance"):
        evaluate_rollouts(SpriteModel(), data, horizon=2)
    with pytest.raises(DatasetError, match="holds luminance frames but the model predicts RGB.*--rgb"):
        evaluate_rollouts(SpriteModel(colour=True), _sprite_dataset(tmp_path / "grey"), horizon=2)


def test_evaluate_models_uses_the_same_windows_and_the_references_once(sprite_data: Path) -> None:
    models = {"perfect": SpriteModel(), "short": SpriteModel(drop=True, context=2), "still": CopyLastSprite()}
    report = evaluate_models(models, sprite_data, horizon=3, starts_per_episode=2, seed=0, samples=2)
    samples = report.pop("samples")
    assert report["compare"] == ["perfect", "short", "still"] and report["context"] == 4
    assert [report["models"][m]["context"] for m in report["compare"]] == [4, 2, 4]
    # One copy-last and one mean-frame reference at the top level; per-model shuffled actions.
    assert len(report["copy_last_mse"]) == 3 and "shuffled_actions_mse" not in report
    assert all(len(s["shuffled_actions_mse"]) == 3 for s in report["models"].values())
    # A model that copies the last frame scores exactly the shared copy-last reference: the same windows.
    assert report["models"]["still"]["mse"] == report["copy_last_mse"]
    assert report["models"]["perfect"]["mse"] == [0.0] * 3
    assert report["models"]["perfect"]["beats"]["copy_last"]["all"]
    assert report["models"]["short"]["object_recall"] == [0.0] * 3
    assert set(samples["imagined"]) == set(models) and set(samples["action_grid"]) == set(models)
    text = json.dumps(to_json(report), allow_nan=False)
    assert json.loads(text)["models"]["perfect"]["psnr"] == [None] * 3


class CopyLastSprite(SpriteModel):
    def next(self, frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return frames.copy()


def test_side_by_side_colour_and_several_models() -> None:
    from launch.imagine_cli import side_by_side

    frames = np.zeros((2, 6, 8, 10, 3), np.uint8)
    imagined = np.full((2, 2, 8, 10, 3), 50, np.uint8)
    one = side_by_side(frames, imagined, context=4)
    assert one.shape == (3, 14 + 2 * (16 + 2), 3 * (20 + 2), 3)
    two = side_by_side(frames[..., 0], [imagined[..., 0], imagined[..., 0]], context=4, titles=["a", "b"])
    assert two.shape == (3, 14 + 2 * (16 + 2), 5 * (20 + 2))
    # Step 1's error column of the first model: |0 - 50| everywhere.
    y, x = 14 + 1, 2 * 22 + 1
    assert (two[1, y: y + 16, x: x + 20] == 50).all() and (two[0, y: y + 16, x: x + 20] == 0).all()


def _cli_runs(argv: list[str], models: Mapping[str, object], monkeypatch: pytest.MonkeyPatch) -> int:
    from launch import imagine_cli

    monkeypatch.setattr(imagine_cli, "_load_model", lambda run: models[Path(run).name])
    parser = argparse.ArgumentParser(prog="reverie")
    imagine_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_imagine_writes_the_motion_rows_to_table_plot_and_tensorboard(sprite_data: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert _cli_runs(["imagine", str(run), "--data", str(sprite_data), "--horizon", "3", "--no-progress"],
                     {"run": SpriteModel(head=True)}, monkeypatch) == 0
    table = capsys.readouterr().out
    assert "MSE on the moving pixels" in table and "moving objects kept (recall)" in table
    assert "reward head (sign" in table and "precision" in table
    report = json.loads((run / "imagine" / "report.json").read_text())
    assert report["object_recall"] == [1.0] * 3 and report["reward_sign_accuracy"] == [1.0] * 3
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run / "imagine" / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"imagine/moving_mse", "imagine/foreground_mse", "imagine/object_recall", "imagine/copy_last_object_recall",
            "imagine/shuffled_actions_foreground_mse", "imagine/reward_sign_accuracy",
            "imagine/game_over_accuracy"} <= tags
    assert "imagine/copy_last_object_precision" not in tags  # undefined at every step: nothing to plot
    assert [e.value for e in acc.Scalars("imagine/copy_last_foreground_mse")] == pytest.approx(
        report["copy_last_foreground_mse"], rel=1e-6)


def test_imagine_compare_writes_both_runs_rows(sprite_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    import imageio.v3 as iio

    for name in ("ff", "drops"):
        (tmp_path / name).mkdir()
    models = {"ff": SpriteModel(), "drops": SpriteModel(drop=True)}
    argv = ["imagine", "--compare", str(tmp_path / "ff"), str(tmp_path / "drops"), "--data", str(sprite_data),
            "--horizon", "3", "--samples", "2", "--no-progress"]
    assert _cli_runs(argv, models, monkeypatch) == 0
    table = capsys.readouterr().out
    assert "ff vs drops" in table and "ff beats copy last: every step" in table and "drops shuf" in table
    assert "ff beats copy last on the foreground: every step" in table
    assert "drops beats copy last on the foreground: not at step 1" in table
    out = tmp_path / "ff" / "imagine" / "vs-drops"
    report = json.loads((out / "report.json").read_text())
    assert report["compare"] == ["ff", "drops"] and report["runs"] == {"ff": str(tmp_path / "ff"),
                                                                      "drops": str(tmp_path / "drops")}
    assert report["models"]["ff"]["object_recall"] == [1.0] * 3
    assert report["models"]["drops"]["object_recall"] == [0.0] * 3
    assert len(report["copy_last_foreground_mse"]) == 3 and "copy_last_mse" not in report["models"]["ff"]
    assert (out / "errors.png").is_file() and (out / "action_conditioning_ff.png").is_file()
    assert (out / "action_conditioning_drops.png").is_file()
    from worldmodels.video.motion_picture import MISSED, RECALLED

    objects = iio.imread(out / "objects.png")  # rows real | copy last | ff | drops: ff keeps the sprite, drops not
    assert objects.ndim == 3 and report["outputs"]["objects"] == str(out / "objects.png")
    assert (objects == RECALLED).all(axis=-1).any() and (objects == MISSED).all(axis=-1).any()
    gif = iio.imread(out / "rollouts.gif", index=None)
    assert gif.shape[0] == 4 and gif.shape[2] == 5 * (2 * SIZE + 2)  # real | ff | error | drops | error
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"imagine/ff/mse", "imagine/drops/object_recall", "imagine/ff/shuffled_actions_mse",
            "imagine/copy_last_mse", "imagine/ff/action_divergence"} <= tags
    # --json prints the same report; --out is honoured.
    assert _cli_runs([*argv, "--json", "--out", str(tmp_path / "o")], models, monkeypatch) == 0
    assert json.loads(capsys.readouterr().out)["models"]["ff"]["mse"] == report["models"]["ff"]["mse"]

    with pytest.raises(ValueError, match="not both"):
        _cli_runs(["imagine", str(tmp_path / "ff"), "--compare", str(tmp_path / "drops"), "--data",
                   str(sprite_data)], models, monkeypatch)
    with pytest.raises(ValueError, match="at least two runs"):
        _cli_runs(["imagine", "--compare", str(tmp_path / "ff"), "--data", str(sprite_data)], models, monkeypatch)
    with pytest.raises(ValueError, match="different runs"):
        _cli_runs(["imagine", "--compare", str(tmp_path / "ff"), str(tmp_path / "ff"), "--data",
                   str(sprite_data)], models, monkeypatch)
    with pytest.raises(ValueError, match="give the RUN_DIR"):
        _cli_runs(["imagine", "--data", str(sprite_data)], models, monkeypatch)
