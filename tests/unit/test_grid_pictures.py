"""Pictures of grid observations and of imagined rollouts beside real ones (worldmodels/grid/pictures.py)."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from worldmodels.grid.pictures import (
    ERROR_COLOURS,
    GUTTER,
    channel_palette,
    error_to_rgb,
    grid_to_rgb,
    rollout_frames,
    write_gif,
)


def test_the_palette_is_evenly_spaced_bright_hues() -> None:
    palette = channel_palette(4)
    assert palette.shape == (4, 3) and palette.dtype == np.uint8
    # hues 0, 90, 180, 270 degrees at saturation 0.75, value 1
    assert palette.tolist() == [[255, 63, 63], [159, 255, 63], [63, 255, 255], [159, 63, 255]]
    assert len({tuple(c) for c in channel_palette(10).tolist()}) == 10


def test_each_channel_is_drawn_in_its_colour_the_later_on_top() -> None:
    grid = np.zeros((3, 4, 5), np.uint8)
    grid[0, 1, 2] = 1
    grid[2, 3, 4] = 1
    grid[0, 0, 0] = grid[1, 0, 0] = 1  # two objects share a cell: channel 1 wins
    rgb = grid_to_rgb(grid, scale=2)
    palette = channel_palette(3)
    assert rgb.shape == (8, 10, 3) and rgb.dtype == np.uint8
    assert (rgb[2:4, 4:6] == palette[0]).all()
    assert (rgb[6:8, 8:10] == palette[2]).all()
    assert (rgb[0:2, 0:2] == palette[1]).all()
    assert int(rgb.sum(axis=-1).astype(bool).sum()) == 3 * 4  # three cells of 2x2 pixels; the rest is black
    assert grid_to_rgb(np.stack([grid, grid])).shape == (2, 4, 5, 3)  # leading axes are kept


def test_errors_are_coloured_by_kind() -> None:
    real = np.zeros((2, 3, 3), np.uint8)
    imagined = real.copy()
    real[0, 0, 0] = 1  # missed
    imagined[1, 1, 1] = 1  # invented
    real[0, 2, 2] = imagined[1, 2, 2] = 1  # wrong channel
    real[1, 0, 2] = imagined[1, 0, 2] = 1  # right
    rgb = error_to_rgb(real, imagined)
    assert tuple(rgb[0, 0]) == ERROR_COLOURS["missed"]
    assert tuple(rgb[1, 1]) == ERROR_COLOURS["invented"]
    assert tuple(rgb[2, 2]) == ERROR_COLOURS["wrong_channel"]
    assert tuple(rgb[0, 2]) == (0, 0, 0)
    assert int(rgb.any(axis=-1).sum()) == 3


def test_rollout_frames_put_real_imagined_and_error_side_by_side() -> None:
    rng = np.random.default_rng(0)
    s, t, c, h, w, scale, header = 2, 3, 4, 10, 10, 3, 12
    real = (rng.random((s, t + 1, c, h, w)) < 0.1).astype(np.uint8)
    imagined = real[:, 1:].copy()
    imagined[1, 1, 0, 5, 5] = 1 - imagined[1, 1, 0, 5, 5]  # one wrong cell: rollout 1, step 2
    valid = np.ones((s, t), bool)
    valid[0, 2] = False  # rollout 0's game ended after step 2
    out = rollout_frames(real, imagined, valid, scale=scale, header=header)
    hs, ws = h * scale, w * scale
    assert out.shape == (t + 1, header + s * (hs + 2), 3 * (ws + 2), 3) and out.dtype == np.uint8

    def panel(step: int, row: int, col: int) -> np.ndarray:
        y, x = header + row * (hs + 2) + 1, col * (ws + 2) + 1
        return out[step, y: y + hs, x: x + ws]

    for step in range(t + 1):
        assert (panel(step, 1, 0) == grid_to_rgb(real[1, step], scale)).all()
    assert (panel(0, 0, 1) == panel(0, 0, 0)).all()  # frame 0: the real start in every column
    assert (panel(1, 0, 1) == grid_to_rgb(imagined[0, 0], scale)).all()
    err = panel(2, 1, 2)
    assert (err[5 * scale: 6 * scale, 5 * scale: 6 * scale] != 0).any(axis=-1).all()  # the wrong cell is marked
    assert int(err.any(axis=-1).sum()) == scale * scale  # and nothing else
    assert not panel(1, 1, 2).any()  # a right step: a black error panel
    assert (panel(3, 0, 2) == GUTTER).all()  # after the real game ended: grey, and the frames dimmed
    assert (panel(3, 0, 0) == grid_to_rgb(real[0, 3], scale) // 3).all()
    assert (out[:, header:, ws + 1] == GUTTER).all()  # the gutter between the real and imagined columns
    assert out[:, :header].any()  # captions
    assert not (out[1, :header] == out[2, :header]).all()  # the step counter differs between frames


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[S, T \+ 1, C, H, W\]"):
        rollout_frames(np.zeros((1, 3, 2, 4, 4)), np.zeros((1, 3, 2, 4, 4)))
    with pytest.raises(ValueError, match="valid"):
        rollout_frames(np.zeros((1, 3, 2, 4, 4)), np.zeros((1, 2, 2, 4, 4)), np.ones((1, 3), bool))
    with pytest.raises(ValueError, match="share a shape"):
        error_to_rgb(np.zeros((2, 4, 4)), np.zeros((3, 4, 4)))


def test_the_gif_is_written_atomically_and_reads_back(tmp_path: Path) -> None:
    real = np.zeros((1, 3, 2, 4, 4), np.uint8)
    real[0, :, 0, 1, 1] = 1
    frames = rollout_frames(real, real[:, 1:], scale=4)
    path = write_gif(tmp_path / "sub" / "roll.gif", frames)
    back = iio.imread(path, index=None)
    assert back.shape[:3] == frames.shape[:3]
    assert sorted(p.name for p in path.parent.iterdir()) == ["roll.gif"]  # no temporary file left
