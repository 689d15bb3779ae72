"""The Dyna learner's pictures of its imagination (agents/dyna/pictures.py): written at the frames the setting says,
readable, and without any effect on training."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import pytest
import torch

from agents.dyna.pictures import ImaginationGifs
from agents.runtime.loop import TrainState
from tests.dyna_parts import fill, make_learner
from tests.unit.test_dyna import _cfg


def _train(tmp_path: Path, every: int) -> tuple[list[dict[str, float]], dict[str, torch.Tensor], Path]:
    torch.manual_seed(0)  # the Q-network's initial weights
    cfg = _cfg(f"dyna.gif_every_frames={every}", "dyna.gif_steps=4")
    learner = make_learner(cfg)
    fill(learner, cfg, 256, frame_skip=1)
    state = TrainState(frame_skip=1, total_steps=10_000, run_dir=tmp_path / f"every{every}")
    state.steps = 256
    scalars = []
    for _ in range(6):  # at 256 + 32 i real frames
        scalars.append({k: float(v) for k, v in learner.update(state).items()})
        state.updates += 1
        state.steps += 32
    return scalars, learner.get_weights(), state.run_dir  # type: ignore[return-value]


def test_gifs_are_written_at_the_set_frames_and_leave_training_unchanged(tmp_path: Path) -> None:
    off_scalars, off_weights, off_dir = _train(tmp_path, 0)
    on_scalars, on_weights, on_dir = _train(tmp_path, 64)
    assert not (off_dir / "imagination").exists()
    gifs = sorted((on_dir / "imagination").iterdir())
    assert [p.name for p in gifs] == ["step_000000000320.gif", "step_000000000384.gif"]  # 256 + 32 i: 320 and 384
    movie = iio.imread(gifs[0], index=None)
    assert movie.shape == (5, 12 + 82, 3 * 82, 3)
    assert on_scalars == off_scalars  # the same losses: pictures draw nothing from the learner's random state
    assert all(torch.equal(on_weights[k], off_weights[k]) for k in off_weights)


def test_a_model_that_is_not_a_grid_model_turns_the_pictures_off(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    gifs = ImaginationGifs(_cfg("dyna.gif_every_frames=10"))
    state = TrainState(frame_skip=1, total_steps=100, run_dir=tmp_path)
    state.steps = 50
    assert gifs.maybe_write(state, object(), torch.nn.Linear(1, 1)) is None  # type: ignore[arg-type]
    assert gifs.every == 0 and "grid world model only" in caplog.text and not list(tmp_path.iterdir())
