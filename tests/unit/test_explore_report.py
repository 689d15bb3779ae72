"""``reverie explore-report``: the exploration figures of a run, checked on hand-written TensorBoard files."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from launch.cli import main
from launch.explore_report import exploration_summary, format_exploration_table


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "maze_run"
    writer = SummaryWriter(str(run))
    # Six games ending at frames 100..600: the goal first reached at 300, then at 500 and 600.
    for frame, reached in zip(range(100, 700, 100), (0, 0, 1, 0, 1, 1)):
        writer.add_scalar("charts/episodic_return", float(reached), frame)
        writer.add_scalar("maze/goal_reached", float(reached), frame)
    for frame, bonus, count in ((150, 0.5, 2.0), (450, 0.25, 8.0), (600, 0.125, 32.0)):
        writer.add_scalar("explore/intrinsic_reward_mean", bonus, frame)
        writer.add_scalar("explore/pseudo_count_mean", count, frame)
    writer.close()
    return run


def test_the_summary_by_hand(tmp_path: Path) -> None:
    r = exploration_summary(_run(tmp_path), window_frames=250)
    assert r["frames"] == 600 and r["games"] == 6
    assert r["first_goal_frame"] == 300 and r["goals"] == 3
    assert r["goal_rate_last"] == pytest.approx(2 / 3)  # games ending after frame 350: 400 (no), 500, 600 (yes)
    assert r["return_last"] == pytest.approx(2 / 3)
    assert (r["intrinsic_reward_first"], r["intrinsic_reward_last"]) == (0.5, 0.125)
    assert (r["pseudo_count_first"], r["pseudo_count_last"]) == (2.0, 32.0)
    assert r["intrinsic_return_std_last"] is None and "rooms_total" not in r
    table = format_exploration_table([r], 250)
    assert "maze_run" in table and "0.5 -> 0.125" in table and "2 -> 32" in table


def test_bad_input_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    with pytest.raises(ValueError, match="--window-frames 0"):
        exploration_summary(run, window_frames=0)
    empty = tmp_path / "empty"
    writer = SummaryWriter(str(empty))
    writer.add_scalar("losses/td_loss", 1.0, 1)
    writer.close()
    assert main(["explore-report", str(empty)]) != 0
    assert "no finished game" in capsys.readouterr().err
    assert main(["explore-report", str(run), "--json"]) == 0
    assert '"first_goal_frame": 300' in capsys.readouterr().out


def test_maze_visits_of_a_trained_run(tmp_path: Path) -> None:
    """A tiny A2C run on one fixed 7x7 maze: every game starts on the start cell, no game enters a wall."""
    from launch.explore_report import draw_visits, maze_visits

    run = tmp_path / "a2c"
    assert main(["train", "a2c_maze", "env.game=maze/7:layout_seed=0,sparse=true", "env.num_envs=2",
                 "run.total_frames=200", "run.eval_episodes=0", "run.progress=false", "--run-dir", str(run)]) == 0
    m = maze_visits(run, games=3)
    visits, walls = m["visits"], m["walls"]
    assert visits.shape == walls.shape == (7, 7) and m["frames"] >= 200
    assert visits[m["start"]] == 1.0 and (visits[walls] == 0).all() and ((visits >= 0) & (visits <= 1)).all()
    assert m["goal"] is not None and 0.0 <= m["goal_rate"] <= 1.0
    assert draw_visits([m, m], tmp_path / "visits.png").stat().st_size > 0
    with pytest.raises(ValueError, match="--visit-games 0"):
        maze_visits(run, games=0)
