"""Key quality (worldmodels.representations.quality, `reverie key-quality`): returns-to-go, nearest-neighbour
predictions and scores against hand-computed cases, and the whole score on datasets whose answer is known."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from worldmodels.data import DatasetError, DatasetWriter
from worldmodels.representations.quality import (
    discounted_returns,
    key_quality,
    parse_key,
    predict_by_neighbours,
    score_keys,
)


def test_discounted_returns_by_hand() -> None:
    rewards = np.array([1.0, 0.0, 2.0, 5.0, 1.0])
    ids = np.array([0, 0, 0, 1, 1])
    terminals = np.array([False, False, True, False, False])  # episode 1 was cut short by the end of collection
    g, complete = discounted_returns(rewards, ids, terminals, gamma=0.5)
    np.testing.assert_allclose(g, [1.5, 1.0, 2.0, 5.5, 1.0])  # 2; 0 + 0.5 * 2; 1 + 0.5 * 1 | 1; 5 + 0.5 * 1
    np.testing.assert_array_equal(complete, [True, True, True, False, False])
    g1, _ = discounted_returns(rewards, ids, terminals)
    np.testing.assert_allclose(g1, [3.0, 2.0, 2.0, 6.0, 1.0])
    with pytest.raises(ValueError, match="discount"):
        discounted_returns(rewards, ids, terminals, gamma=1.5)


def test_predictions_are_the_mean_return_of_the_k_nearest_stored_keys() -> None:
    stored = np.array([[0.0], [1.0], [10.0], [11.0]])
    returns = np.array([0.0, 2.0, 10.0, 20.0])
    np.testing.assert_allclose(predict_by_neighbours(stored, returns, np.array([[0.4], [10.6]]), k=2), [1.0, 15.0])
    np.testing.assert_allclose(predict_by_neighbours(stored, returns, np.array([[0.4]]), k=1), [0.0])
    with pytest.raises(ValueError, match="k=5"):
        predict_by_neighbours(stored, returns, np.array([[0.0]]), k=5)


def test_scores_separate_an_informative_key_from_noise() -> None:
    rng = np.random.default_rng(0)
    stored_returns, query_returns = rng.uniform(0, 100, 500), rng.uniform(0, 100, 50)
    good = score_keys("return itself", stored_returns[:, None], stored_returns, query_returns[:, None],
                      query_returns, k=3)
    noise = score_keys("noise", rng.normal(size=(500, 8)), stored_returns, rng.normal(size=(50, 8)),
                       query_returns, k=11)
    assert good.rmse_ratio < 0.05 and good.spearman > 0.99
    assert noise.rmse_ratio > 0.9 and abs(noise.spearman) < 0.4
    assert good.as_dict()["stored"] == 500 and good.as_dict()["queries"] == 50
    with pytest.raises(ValueError, match="reverie collect"):
        score_keys("few", stored_returns[:50, None], stored_returns[:50], query_returns[:, None], query_returns)


def write_countdown(root: Path, episodes: int = 8, length: int = 40, informative: bool = True) -> Path:
    """Episodes of reward 1 per step, so a frame's return (gamma 1) is the steps left; with ``informative`` the
    frame's brightness is 5 x the steps left, else it is noise. The last episode is cut short (no terminal)."""
    rng = np.random.default_rng(0)
    w = DatasetWriter(root, {"game": "countdown"}, heldout_fraction=0.25, shard_frames=200)
    for e in range(episodes):
        n = length + 5 * e
        left = np.arange(n, 0, -1)
        frames = (np.repeat((5 * left % 256).astype(np.uint8), 84 * 84).reshape(n, 84, 84) if informative
                  else rng.integers(0, 256, (n, 84, 84), dtype=np.uint8))
        actions = np.zeros(n, np.int64)
        actions[-1] = -1
        rewards = np.ones(n, np.float32)
        rewards[-1] = 0.0  # no action at the terminal frame, hence no reward
        w.add_episode(frames, actions, rewards, terminal=e < episodes - 1)
    w.close(num_actions=1)
    return root


def test_key_quality_on_datasets_with_known_answers(tmp_path: Path) -> None:
    report = key_quality(write_countdown(tmp_path / "count"), [], k=3, projection_seeds=2, dim=8)
    rows = report["rows"]
    assert [r["name"] for r in rows] == ["random_projection (dim 8, seed 0)", "random_projection (dim 8, seed 1)"]
    # Brightness is the return: a projection of a uniform frame keeps it (up to 51 steps, no wrap-around).
    assert all(r["spearman"] > 0.95 and r["rmse_ratio"] < 0.2 for r in rows)
    noise = key_quality(write_countdown(tmp_path / "noise", informative=False), [], k=3, projection_seeds=1)
    assert noise["rows"][0]["rmse_ratio"] > 0.8
    # Only complete episodes are scored: the last (cut) one is left out of whichever split holds it.
    assert report["stored"] + report["queries"] == sum(40 + 5 * e for e in range(7))


def test_key_quality_refuses_bad_input_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="KIND=PATH"):
        parse_key("gaussian_vae")
    with pytest.raises(ValueError, match="KIND=PATH"):
        parse_key("pixels=runs/x")
    assert parse_key("binary_vae=runs/b") == ("binary_vae", "runs/b")
    small = write_countdown(tmp_path / "small", episodes=3, length=12)
    with pytest.raises(DatasetError, match="reverie collect"):
        key_quality(small, [], k=3)


def test_key_quality_command_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from launch.key_quality_cli import register

    data = write_countdown(tmp_path / "count")
    parser = argparse.ArgumentParser(prog="reverie")
    register(parser.add_subparsers())
    args = parser.parse_args(["key-quality", str(data), "--k", "3", "--projection-seeds", "1", "--dim", "4"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "random_projection (dim 4, seed 0)" in out and "RMSE / mean" in out and "k = 3" in out
