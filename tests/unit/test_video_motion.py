"""Motion-aware scores of imagined rollouts (worldmodels.video.motion) on hand-made frames: the thresholds, the
moving-pixel and foreground masks, the objects and their matching, empty masks, colour frames, and a "model" that
keeps the background but drops the moving object."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from worldmodels.video.evaluate import to_json
from worldmodels.video.motion import (
    CHANGE_THRESHOLD,
    MIN_OBJECT_PIXELS,
    background_frame,
    differs,
    label_components,
    masked_mse,
    motion_metrics,
    moving_objects,
)

H, W = 20, 30
BG, FG = 30, 200  # background and object grey levels
C2 = ((FG - BG) / 255) ** 2  # squared error of one object pixel predicted as background (or the reverse)


def scene(xs: Sequence[int | None], size: int = 4, y: int = 8) -> np.ndarray:
    """uint8 ``[len(xs), H, W]``: a flat background with a ``size`` x ``size`` square at column ``x`` (none for
    ``None``) and a static bright bar along the top (part of the background: it never moves)."""
    f = np.full((len(xs), H, W), BG, np.uint8)
    f[:, 0:2, :] = 120
    for i, x in enumerate(xs):
        if x is not None:
            f[i, y: y + size, x: x + size] = FG
    return f


def background() -> np.ndarray:
    return scene([None])[0] / 255.0


def test_differs_uses_eight_levels_and_the_largest_channel() -> None:
    a = np.full((2, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0], b[0, 1], b[1, 2] = 108, 109, 91  # 8 levels is "the same", 9 differs, either sign
    assert CHANGE_THRESHOLD == 8.0
    assert differs(a, b).tolist() == [[False, True, False], [False, False, True]]
    # Floats are on [0, 1]: 128/255 against 136/255 is 8 levels exactly (no rounding edge), 137/255 is 9.
    assert not differs(np.array([128 / 255]), np.array([136 / 255]))[0]
    assert differs(np.array([128 / 255]), np.array([137], np.uint8))[0]
    # Colour: a pixel differs when any one channel does.
    c = np.zeros((1, 2, 3), np.uint8)
    d = c.copy()
    d[0, 0, 2] = 9
    d[0, 1] = 8
    assert differs(c, d, channels_last=True).tolist() == [[True, False]]


def test_masked_mse_skips_empty_frames_and_counts_the_rest() -> None:
    err = np.zeros((3, 2, 2))
    err[0] = [[1.0, 3.0], [5.0, 7.0]]
    err[2] = 2.0
    mask = np.zeros((3, 2, 2), bool)
    mask[0, 0] = True  # pixels 1 and 3 -> frame mean 2
    mask[2, 1, 1] = True  # frame mean 2; frame 1 has an empty mask and is skipped
    assert masked_mse(err, mask) == (2.0, 2)
    assert masked_mse(err, np.zeros_like(mask)) == (None, 0)


def test_moving_square_kept_in_place_is_recalled_and_precise() -> None:
    real = scene([3, 5, 7, 9])[None]  # the square moves 2 columns a step
    last = scene([1])
    out = motion_metrics(real, real, last, background())
    assert out["moving_mse"] == [0.0] * 4 and out["foreground_mse"] == [0.0] * 4
    assert out["object_recall"] == [1.0] * 4 and out["object_precision"] == [1.0] * 4
    assert out["real_objects"] == [1] * 4 and out["imagined_objects"] == [1] * 4
    assert out["moving_frames"] == [1] * 4 and out["foreground_frames"] == [1] * 4
    # The masks by hand at step 1: moving = the two columns left behind and the two entered; foreground = the square.
    moving = differs(real[0, 0], last[0])
    assert moving.sum() == 16 and moving[8:12, 1:3].all() and moving[8:12, 5:7].all()
    assert differs(real[0, 0], background()).sum() == 16


def test_vanished_square_is_not_recalled_and_its_pixels_carry_the_error() -> None:
    real = scene([3, 5, 7])[None]
    last = scene([1])
    dropped = scene([None, None, None])[None]  # the background, exactly: the square is gone
    out = motion_metrics(dropped, real, last, background())
    assert out["object_recall"] == [0.0] * 3 and out["real_objects"] == [1] * 3
    # It moved nothing: no imagined objects, precision undefined (None, null in JSON), not 0.
    assert out["imagined_objects"] == [0] * 3 and out["object_precision"] == [None] * 3
    # Foreground = the 16 square pixels, all predicted as background.
    assert out["foreground_mse"] == pytest.approx([C2] * 3)
    # Moving pixels: 8 entered (wrong) and 8 left behind (right, the background is there again).
    assert out["moving_mse"] == pytest.approx([C2 / 2] * 3)


def test_a_square_that_vanishes_in_the_real_frames_is_no_object() -> None:
    real = scene([3, None])[None]  # at step 2 the square is gone: what changed is background again
    out = motion_metrics(real, real, scene([1]), background())
    assert out["real_objects"] == [1, 0] and out["object_recall"] == [1.0, None]
    assert out["moving_frames"] == [1, 1] and out["foreground_frames"] == [1, 0]
    assert out["foreground_mse"] == [0.0, None]


def test_static_scene_has_empty_masks_reported_as_none_with_zero_counts() -> None:
    real = scene([4, 4, 4])[None]
    out = motion_metrics(real, real, scene([4]), scene([4])[0])  # the square never moves: background has it
    assert out["moving_mse"] == [None] * 3 and out["moving_frames"] == [0] * 3
    assert out["foreground_mse"] == [None] * 3 and out["foreground_frames"] == [0] * 3
    assert out["object_recall"] == [None] * 3 and out["object_precision"] == [None] * 3
    assert out["real_objects"] == [0] * 3 and out["imagined_objects"] == [0] * 3
    assert json.loads(json.dumps(to_json(out), allow_nan=False))["moving_mse"] == [None] * 3
    # One rollout with motion and one without: the static one is skipped, not averaged in as 0.
    both = np.concatenate([scene([4, 4, 4])[None], scene([3, 5, 7])[None]])
    last = np.concatenate([scene([4]), scene([1])])
    out = motion_metrics(scene([None] * 3)[None], both, last, background())
    assert out["moving_frames"] == [1, 1, 1] and out["moving_mse"] == pytest.approx([C2 / 2] * 3)


def test_specks_below_the_minimum_size_are_not_objects() -> None:
    assert MIN_OBJECT_PIXELS == 4
    real = np.full((1, 2, H, W), BG, np.uint8)
    real[0, 1, 3, 3:6] = FG  # 3 pixels: a speck
    real[0, 1, 10, 10:14] = FG  # 4 pixels in a row: an object (8-connected)
    real[0, 1, 15, 20], real[0, 1, 16, 21] = FG, FG  # 2 diagonal pixels: one component, still a speck
    last = np.full((1, H, W), BG, np.uint8)
    out = motion_metrics(real, real, last, np.full((H, W), BG, np.uint8))
    assert out["real_objects"] == [0, 1]
    labels, n = label_components(real[0, 1] != BG)
    assert n == 3 and labels[15, 20] == labels[16, 21] != 0


def test_invented_motion_lowers_precision_but_not_recall() -> None:
    real = scene([3, 5])[None]
    pred = real.copy()
    pred[0, :, 14:18, 20:24] = FG  # a second square the real frames do not have, appearing at step 1
    out = motion_metrics(pred, real, scene([1]), background())
    assert out["object_recall"] == [1.0, 1.0]
    # Step 1: two imagined moving objects, one real -> 1/2; step 2 the invented square stands still.
    assert out["imagined_objects"] == [2, 1] and out["object_precision"] == [0.5, 1.0]


def test_imagined_motion_is_measured_against_the_previous_imagined_frame() -> None:
    # The model put the square one step ahead at step 1 and holds it still: at step 2 it moved nothing, even
    # though its frame differs from the real frame before (which is where a real-previous rule would see motion).
    real = scene([3, 5, 7])[None]
    pred = scene([5, 5, 5])[None]
    out = motion_metrics(pred, real, scene([1]), background())
    assert out["imagined_objects"] == [1, 0, 0] and out["object_precision"] == [1.0, None, None]
    assert out["object_recall"] == [1.0, 1.0, 1.0]  # 2 of 4 columns overlap at step 1 and 3: half is enough


def test_dropping_the_moving_object_scores_worse_than_copy_last_where_objects_count() -> None:
    """A 6x6 square moving one column a step. The "model" keeps the background but drops the square; copy-last
    keeps the square where it last was. Whole-frame MSE prefers the dropping model from step 4 on (the issue);
    the foreground error and the recall do not, at any step."""
    xs = [4, 5, 6, 7, 8]
    real = np.concatenate([scene(xs, size=6)[None], scene([x + 10 for x in xs], size=6, y=4)[None]])
    last = np.concatenate([scene([3], size=6), scene([13], size=6, y=4)])
    drops = np.broadcast_to(scene([None])[0], real.shape)
    copy_last = last[:, None]
    bg = background()
    d = motion_metrics(drops, real, last, bg)
    c = motion_metrics(copy_last, real, last, bg)
    whole_d = ((real.astype(float) - drops) ** 2).mean(axis=(0, 2, 3)) / 255 ** 2
    whole_c = ((real.astype(float) - copy_last) ** 2).mean(axis=(0, 2, 3)) / 255 ** 2
    assert whole_d[3] < whole_c[3] and whole_d[4] < whole_c[4]  # whole frame: dropping the object "wins"
    assert all(a > b for a, b in zip(d["foreground_mse"], c["foreground_mse"]))
    assert d["foreground_mse"] == pytest.approx([C2] * 5)
    assert c["foreground_mse"] == pytest.approx([C2 * t / 6 for t in range(1, 6)])  # t stale columns of 6
    assert d["object_recall"] == [0.0] * 5
    assert c["object_recall"] == [1.0, 1.0, 1.0, 0.0, 0.0]  # kept while half of it still overlaps
    # The moving-pixel error alone ranks them the other way: a stale copy is wrong where the square was and where
    # it is, a frame without it only where it is (the module docstring says to read it beside the others).
    assert all(a < b for a, b in zip(d["moving_mse"], c["moving_mse"]))


def test_colour_frames_use_the_largest_channel_difference() -> None:
    real = np.zeros((1, 3, H, W, 3), np.uint8)
    for t, x in enumerate((3, 5, 7)):
        real[0, t, 8:12, x: x + 4, 0] = FG  # a red square: only channel 0 changes
    last = np.zeros((1, H, W, 3), np.uint8)
    last[0, 8:12, 1:5, 0] = FG
    bg = np.zeros((H, W, 3))
    perfect = motion_metrics(real, real, last, bg)
    assert perfect["object_recall"] == [1.0] * 3 and perfect["moving_mse"] == [0.0] * 3
    dropped = motion_metrics(np.zeros_like(real), real, last, bg)
    assert dropped["object_recall"] == [0.0] * 3
    # Squared error averaged over the three channels: only red is off, by FG levels.
    assert dropped["foreground_mse"] == pytest.approx([(FG / 255) ** 2 / 3] * 3)
    frames = np.zeros((5, H, W, 3), np.uint8)
    frames[0, 0, 0] = 255  # one frame of five: the median ignores it
    assert background_frame(frames, channels_last=True).shape == (H, W, 3)
    assert background_frame(frames, channels_last=True).max() == 0


def test_scipy_and_opencv_label_the_same_components() -> None:
    pytest.importorskip("scipy")
    rng = np.random.default_rng(0)
    mask = rng.random((3, 25, 31)) < 0.3
    a, na = label_components(mask, "scipy")
    b, nb = label_components(mask, "opencv")
    assert na == nb and ((a > 0) == mask).all() and ((b > 0) == mask).all()
    pairs = set(zip(a[mask].tolist(), b[mask].tolist()))
    assert len(pairs) == na  # a one-to-one relabelling
    # Components never span frames: the same pattern in two frames gives two sets of labels.
    twice = np.stack([mask[0], mask[0]])
    lab, n = label_components(twice)
    assert n == 2 * label_components(mask[0])[1] and not set(lab[0].ravel()) & set(lab[1].ravel()) - {0}
    objects, count = moving_objects(twice, np.zeros_like(twice))
    assert count == 0 and not objects.any()  # nothing moved: no objects
    with pytest.raises(ValueError, match="choose 'auto', 'scipy' or 'opencv'"):
        label_components(mask, "skimage")  # type: ignore[arg-type]


def test_background_is_the_median_of_all_windows_frames() -> None:
    windows = np.stack([scene([0, 6, 12]), scene([18, None, 24])])  # [N, L, H, W]: the square anywhere once
    assert np.array_equal(background_frame(windows), background())
    # The mean would keep a trail of the square (a sixth of 170 levels): foreground where nothing is.
    trail = differs(windows.mean(axis=(0, 1)) / 255, background())
    assert trail.any()
    # More frames than max_frames: evenly spaced ones are used.
    many = np.concatenate([scene([None] * 9), scene([5])])
    assert np.array_equal(background_frame(many, max_frames=4), background())


def test_kept_pixels_need_the_object_not_just_any_change() -> None:
    from worldmodels.video.motion import kept_pixels

    real = scene([3])[0]
    bg = background()
    blurred = np.where(real == FG, 150, real).astype(np.uint8)  # dimmer, still nearer the object than the background
    halfway = np.where(real == FG, (FG + BG) // 2 + 1, real).astype(np.uint8)
    tie = np.where(real == FG, (FG + BG) // 2, real).astype(np.uint8)  # as near the background as the object
    black = np.zeros_like(real)  # off the background everywhere, but nothing like the object
    square = real == FG
    assert kept_pixels(real, real, bg)[square].all() and not kept_pixels(real, real, bg)[~square].any()
    assert kept_pixels(blurred, real, bg)[square].all() and kept_pixels(halfway, real, bg)[square].all()
    assert not kept_pixels(tie, real, bg).any() and not kept_pixels(black, real, bg).any()
    # So a black imagined frame recalls nothing, though it differs from the background at every pixel.
    out = motion_metrics(np.zeros((1, 2, H, W), np.uint8), scene([3, 5])[None], scene([1]), bg)
    assert out["object_recall"] == [0.0, 0.0]
    blurry = motion_metrics(np.where(scene([3, 5]) == FG, 150, scene([3, 5]))[None].astype(np.uint8),
                            scene([3, 5])[None], scene([1]), bg)
    assert blurry["object_recall"] == [1.0, 1.0]


def test_object_flags_name_each_recalled_and_each_right_object() -> None:
    from worldmodels.video.motion import object_flags, object_matches

    real = np.zeros((1, 4, 8), np.int64)
    real[0, :2, :2], real[0, :2, 4:6] = 1, 2  # two real objects of 4 pixels
    imagined = np.zeros_like(real)
    imagined[0, 1, 1], imagined[0, 3, 7] = 1, 2  # one touches real object 1, one touches nothing
    kept = np.zeros((1, 4, 8), bool)
    kept[0, :2, 4] = True  # 2 of object 2's 4 pixels: exactly half, recalled; object 1 none
    recalled, right = object_flags(real, 2, imagined, 2, kept)
    assert recalled.tolist() == [False, True] and right.tolist() == [True, False]
    assert object_matches(real, 2, imagined, 2, kept) == (1, 1)


def test_objects_picture_rings_kept_objects_green_and_dropped_ones_red() -> None:
    from worldmodels.video.motion_picture import MISSED, RECALLED, _ring, objects_picture, pick_rollout

    window = np.concatenate([scene([1, 1]), scene([3, 5, 7, 9])])  # context 2, then the square moves
    keeps = objects_picture(window, 2, {"keeps": window[2:]}, background(), steps=(1, 4, 20), copy_last=False)
    drops = objects_picture(window, 2, {"drops": scene([None] * 4)}, background(), steps=(1, 4), copy_last=False)

    def has(img: np.ndarray, colour: tuple[int, int, int]) -> int:
        return int((img == colour).all(axis=-1).sum())

    assert has(keeps, RECALLED) > 0 and has(keeps, MISSED) == 0
    assert has(drops, MISSED) > 0 and has(drops, RECALLED) == 0
    # One ring per object and step: a 4x4 square upscaled 3x is 12x12, its ring 14x14 - 12x12 = 52 pixels.
    assert has(drops, MISSED) == 2 * 52
    assert has(keeps, RECALLED) == 2 * 52  # step 20 is beyond the horizon of 4 and left out
    one = np.zeros((3, 3), bool)
    one[1, 1] = True
    assert _ring(one).sum() == 8 and not _ring(one)[1, 1]
    with pytest.raises(ValueError, match="beyond the horizon"):
        objects_picture(window, 2, {}, background(), steps=(5,))
    # The window whose square moves is picked over one where nothing moves.
    still = np.concatenate([scene([1, 1]), scene([1, 1, 1, 1])])
    assert pick_rollout(np.stack([still, window]), 2, background()) == 1
