"""Pictures and scores of a grid world model end to end: a tiny Dyna run with ``dyna.gif_every_frames`` writes
readable GIFs of its imagination, ``reverie imagine RUN`` scores its world model on held-out games it plays (the
report, the table, the GIF, the plot, TensorBoard), and bad input is refused naming the fix."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch

from agents.dyna.config import DynaConfig, validate
from launch.cli import main
from launch.config import load_config
from tests.integration.test_dyna_training import TINY
from worldmodels.common.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint

GIF_STEPS = 6


@pytest.fixture(scope="module")
def dyna_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Dyna run on MinAtar Breakout (600 real frames) with a GIF every 200 frames."""
    run = tmp_path_factory.mktemp("grid") / "dyna"
    assert main(["train", "dyna_minatar", *TINY, "run.total_frames=600", "dyna.gif_every_frames=200",
                 f"dyna.gif_steps={GIF_STEPS}", "--run-dir", str(run)]) == 0
    return run


def test_a_dyna_run_writes_gifs_of_its_imagination(dyna_run: Path) -> None:
    folder = dyna_run / "imagination"
    gifs = sorted(folder.iterdir())
    assert [p.suffix for p in gifs] == [".gif"] * 3, gifs  # no temporary file left beside them
    frames = [int(p.stem.removeprefix("step_")) for p in gifs]
    # The first update at or past 200, 400 and 600 real frames (the run ends at 605 with the updates it owed).
    assert 200 <= frames[0] < 220 and 400 <= frames[1] < 420 and 600 <= frames[2] < 620, frames
    for path in gifs:
        movie = iio.imread(path, index=None)
        # frame 0 the start, then GIF_STEPS steps; one row: a caption and a 10x10 grid at 8 pixels a cell
        assert movie.shape == (GIF_STEPS + 1, 12 + 82, 3 * 82, 3), movie.shape
        assert movie[:, 12:].max() > 64  # objects in colour, not an empty picture


def test_gif_settings_are_checked_naming_the_key() -> None:
    cfg = load_config(DynaConfig, ["dyna_minatar"], [])
    assert cfg.dyna.gif_every_frames == 100_000 and cfg.dyna.gif_steps == 20  # the preset's
    assert DynaConfig().dyna.gif_every_frames == 0  # off unless asked for
    for override, match in (("dyna.gif_every_frames=-1", r"dyna\.gif_every_frames=-1 must be 0 \(no pictures\)"),
                            ("dyna.gif_steps=0", r"dyna\.gif_steps=0 must be positive")):
        with pytest.raises(ValueError, match=match):
            validate(load_config(DynaConfig, ["dyna_minatar"], [override]))


def test_imagine_scores_the_runs_world_model(dyna_run: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "imagine"
    argv = ["imagine", str(dyna_run), "--out", str(out), "--episodes", "2", "--horizon", "4",
            "--starts-per-episode", "3", "--samples", "2"]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "report.json").read_text())
    assert report["game"] == "minatar/breakout" and report["policy"] == "agent" and report["epsilon"] == 0.05
    assert report["channels"] == ["paddle", "ball", "trail", "brick"] and report["episodes"] == 2
    assert report["steps"] == [1, 2, 3, 4] and report["windows"][0] == report["rollouts"] <= 6
    assert report["heldout_seed"] == 777_000  # run.seed 0, --seed 0
    for name in ("model", "copy_last", "shuffled_actions"):
        rows = report[name]
        for key in ("cell_error", "object_recall", "object_precision", "reward_accuracy", "terminal_accuracy"):
            assert len(rows[key]) == 4 and all(v is None or 0.0 <= v <= 1.0 for v in rows[key]), (name, key)
        assert len(rows["recall_per_channel"]) == 4 and len(rows["recall_per_channel"][0]) == 4
    assert report["copy_last"]["changed_cell_error"][0] in (1.0, None)  # copy-last misses every changed cell
    movie = iio.imread(out / "rollouts.gif", index=None)
    assert movie.shape == (5, 12 + 2 * 82, 3 * 82, 3)
    assert (out / "errors.png").stat().st_size > 0 and list((out / "tb").glob("events.out.tfevents.*"))
    assert main(argv) == 0  # the table, and the outputs written again over the first
    table = capsys.readouterr().out
    assert "cells wrong" in table and "copy-last" in table and "paddle" in table and "rew recall" in table
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err.strip()


def test_bad_input_is_refused_naming_the_fix(dyna_run: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "o"), "--episodes", "1", "--horizon", "2"]
    err = _error(capsys, ["imagine", str(dyna_run), "--game", "minatar/freeway", *out])
    assert "trained on minatar/breakout: observations (4, 10, 10) and 6 actions, but minatar/freeway has " \
           "observations (7, 10, 10) and 6 actions. Leave --game out" in err, err
    err = _error(capsys, ["imagine", str(dyna_run), "--game", "Pong", *out])
    assert "give --game minatar/<game>" in err, err
    err = _error(capsys, ["imagine", str(dyna_run), "--data", str(tmp_path), *out])
    assert "--data is for video models" in err and "leave --data out" in err, err
    err = _error(capsys, ["imagine", str(dyna_run), "--epsilon", "2", *out])
    assert "--epsilon 2.0 must lie in [0, 1]" in err, err

    # A run whose checkpoint holds no world model (DQN's, here a Dyna checkpoint without its model).
    ckpt = load_checkpoint(list_checkpoints(dyna_run / "checkpoints")[-1])
    del ckpt["world_model"]
    (tmp_path / "dqn").mkdir()
    (tmp_path / "dqn" / "run.json").write_text(json.dumps({"command": "train", "algo": "dqn"}))
    save_checkpoint(tmp_path / "dqn" / "checkpoints", 600, {**ckpt, "algo": "dqn"})
    err = _error(capsys, ["imagine", str(tmp_path / "dqn"), *out])
    assert "is a checkpoint of dqn that holds no grid world model" in err and "algo=dyna" in err, err

    # A world model saved alone: no Q-network to play with, so the agent policy is refused and random is used.
    from worldmodels.grid import load_grid_world_model, save_grid_world_model

    model = load_grid_world_model(dyna_run)
    alone = save_grid_world_model(tmp_path / "alone" / "model.pt", model)
    err = _error(capsys, ["imagine", str(alone), "--policy", "agent", *out])
    assert "holds none (a saved world model alone): use --policy random" in err, err
    assert main(["imagine", str(alone), *out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["policy"] == "random"
    assert torch.equal(model.frame_head.weight, load_grid_world_model(alone).frame_head.weight)
