"""Tests of launch/scores.py: random/human table, human-normalised scores, Dopamine curves."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from launch import scores

DATA = Path(scores.__file__).parent / "data"


def test_random_human_table_matches_csv() -> None:
    table = scores.load_random_human()
    assert len(table) == 57
    assert table["pong"] == (-20.7, 14.6)
    assert table["montezuma_revenge"] == (0.0, 4753.3)
    with open(DATA / "atari_random_human.csv", newline="") as f:
        for row in csv.DictReader(f):
            assert table[row["game"]] == (float(row["random"]), float(row["human"]))
    table["pong"] = (0.0, 1.0)  # a copy: the cached table must not change
    assert scores.load_random_human()["pong"] == (-20.7, 14.6)


def test_human_normalized_hand_computed() -> None:
    # pong: random -20.7, human 14.6, so human - random = 35.3.
    assert scores.human_normalized("pong", -20.7) == pytest.approx(0.0, abs=1e-12)
    assert scores.human_normalized("pong", 14.6) == pytest.approx(1.0)
    assert scores.human_normalized("pong", 0.0) == pytest.approx(20.7 / 35.3)
    assert scores.human_normalized("pong", 21.0) == pytest.approx(41.7 / 35.3)
    # montezuma_revenge: random 0, human 4753.3.
    assert scores.human_normalized("montezuma_revenge", 2500.0) == pytest.approx(2500.0 / 4753.3)
    # breakout: random 1.7, human 30.5.
    assert scores.human_normalized("breakout", 16.1) == pytest.approx(0.5)


def test_human_normalized_is_zero_and_one_at_the_table_for_every_game() -> None:
    for game, (random, human) in scores.load_random_human().items():
        assert scores.human_normalized(game, random) == pytest.approx(0.0, abs=1e-12)
        assert scores.human_normalized(game, human) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["Pong", "pong", "ALE/Pong-v5", "PongNoFrameskip-v4", " pong "])
def test_pong_spellings(name: str) -> None:
    assert scores.human_normalized(name, 14.6) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("montezuma_revenge", "montezuma_revenge"),
        ("MontezumaRevenge", "montezuma_revenge"),
        ("ALE/MontezumaRevenge-v5", "montezuma_revenge"),
        ("MsPacman", "ms_pacman"),
        ("ms-pacman", "ms_pacman"),
        ("UpNDown", "up_n_down"),
        ("KungFuMaster", "kung_fu_master"),
        ("BreakoutDeterministic-v4", "breakout"),
        ("Pong-ram-v5", "pong"),
        ("toy/catch", "toy/catch"),
    ],
)
def test_snake_case_game(name: str, expected: str) -> None:
    assert scores.snake_case_game(name) == expected


def test_every_table_game_round_trips_through_camel_case() -> None:
    for game in scores.load_random_human():
        camel = "".join(part.capitalize() for part in game.split("_"))
        assert scores.snake_case_game(camel) == game
        assert scores.snake_case_game(f"ALE/{camel}-v5") == game


def test_unknown_games_have_no_normalized_score() -> None:
    assert scores.human_normalized("toy/catch", 10.0) is None
    assert scores.human_normalized("not_a_game", 10.0) is None


def test_load_dopamine_pong_values() -> None:
    runs = scores.load_dopamine("Pong")  # agent DQN by default
    assert sorted(runs) == [0, 1, 2, 3, 4]
    for iterations, values in runs.values():
        np.testing.assert_array_equal(iterations, np.arange(199))
        assert values.dtype == np.float64 and values.shape == (199,)
    # Rows of launch/data/dopamine_dqn.csv: pong,DQN,0,0,-20.3333 and pong,DQN,198,4,18.976.
    assert runs[0][1][0] == -20.3333
    assert runs[4][1][198] == 18.976
    rainbow = scores.load_dopamine("ALE/Pong-v5", agent="rainbow")
    assert rainbow[0][1][198] == 20.5862
    # Dopamine's "montezumarevenge" is found under the snake_case name; run 2 scored 2500 at the end.
    mr = scores.load_dopamine("MontezumaRevenge", "Rainbow")
    assert [v[198] for _, v in mr.values()] == [0.0, 0.0, 2500.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        runs[0][1][0] = 0.0  # cached arrays are read-only


def test_dopamine_curve_hand_computed() -> None:
    frames, mean, low, high = scores.dopamine_curve("pong", "DQN")
    assert frames.shape == mean.shape == low.shape == high.shape == (199,)
    assert frames[0] == 500_000.0 and frames[-1] == 198.5e6
    # Iteration 0 of the five pong DQN runs: -20.3333, -20.3162, -20.3577, -20.5586, -20.1811.
    assert mean[0] == pytest.approx((-20.3333 - 20.3162 - 20.3577 - 20.5586 - 20.1811) / 5)
    assert low[0] == -20.5586 and high[0] == -20.1811
    frames, mean, _, _ = scores.dopamine_curve("pong", "DQN", max_frames=2_000_000)
    np.testing.assert_array_equal(frames, [0.5e6, 1.5e6, 2.5e6])  # iterations starting at 0, 1M and 2M


def test_dopamine_games_and_agents() -> None:
    assert scores.dopamine_agents() == ["DQN", "Rainbow"]
    games = scores.dopamine_games()
    assert len(games) == 12
    assert {"pong", "montezuma_revenge", "ms_pacman", "space_invaders", "private_eye"} <= set(games)
    assert set(games) <= set(scores.load_random_human())


def test_load_dopamine_errors_list_what_exists() -> None:
    with pytest.raises(ValueError, match=r"alien.*Games with a baseline: beam_rider, breakout"):
        scores.load_dopamine("Alien")
    with pytest.raises(ValueError, match=r"Did you mean \['pong'\]"):
        scores.load_dopamine("pongg")
    with pytest.raises(ValueError, match=r"toy/catch"):
        scores.load_dopamine("toy/catch")
    with pytest.raises(ValueError, match=r"agent 'IQN'.*\['DQN', 'Rainbow'\]"):
        scores.load_dopamine("pong", agent="IQN")


def test_shipped_dopamine_csv_holds_only_dqn_and_rainbow() -> None:
    with open(DATA / "dopamine_dqn.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["game", "agent", "iteration", "run", "value"]
        rows = list(reader)
    assert {r["agent"] for r in rows} == {"DQN", "Rainbow"}
    assert len(rows) == 12 * 2 * 5 * 199
