"""Tests of envs/: game names, presets, the Atari vector and single envs, and the Catch toy env."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from gymnasium.spaces import Discrete
from gymnasium.utils.env_checker import check_env

from envs import (
    PRESETS,
    AtariPreset,
    AtariVector,
    CatchEnv,
    CatchVectorEnv,
    action_meanings,
    display_name,
    get_preset,
    latest_frame,
    list_games,
    make_atari,
    make_env,
    num_actions,
    resolve_game,
)
from envs.toy import BALL_PIXEL, LEFT, PADDLE_PIXEL, RIGHT, STAY

INFO_KEYS = {"env_id", "lives", "frame_number", "episode_frame_number", "raw_reward", "game_over"}


# ----------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("name", "rom"),
    [
        ("Pong", "pong"),
        ("pong", "pong"),
        ("ALE/Pong-v5", "pong"),
        ("PongNoFrameskip-v4", "pong"),
        ("Pong-v5", "pong"),
        ("PongDeterministic-v4", "pong"),
        ("MontezumaRevenge", "montezuma_revenge"),
        ("montezuma_revenge", "montezuma_revenge"),
        ("ALE/MontezumaRevenge-v5", "montezuma_revenge"),
        ("MontezumaRevengeNoFrameskip-v4", "montezuma_revenge"),
        ("ms-pacman", "ms_pacman"),
        ("TicTacToe3D", "tic_tac_toe_3d"),
    ],
)
def test_resolve_game_accepts_common_spellings(name: str, rom: str) -> None:
    assert resolve_game(name) == rom


def test_unknown_game_names_input_close_matches_and_how_to_list() -> None:
    with pytest.raises(ValueError) as err:
        resolve_game("Pongg")
    msg = str(err.value)
    assert "'Pongg'" in msg and "'pong'" in msg and "list_games()" in msg
    with pytest.raises(ValueError, match="'montezuma_revenge'"):
        resolve_game("Montezuma")
    with pytest.raises(ValueError, match="no single-player mode"):
        resolve_game("Warlords")


def test_display_name_and_list_games() -> None:
    assert display_name("montezuma_revenge") == "MontezumaRevenge"
    assert display_name("space_invaders") == "SpaceInvaders"
    assert display_name("ALE/Pong-v5") == "Pong"
    games = list_games()
    assert games == sorted(games) and {"pong", "breakout", "montezuma_revenge"} <= set(games)
    assert "warlords" not in games and len(games) == 104


# --------------------------------------------------------------------------------------------- presets
def test_presets_hold_the_published_settings() -> None:
    m, n = PRESETS["machado"], PRESETS["nature"]
    assert (m.repeat_action_probability, m.terminal_on_life_loss, m.clip_rewards, m.noop_max) == (
        0.25,
        False,
        False,
        0,
    )
    assert (n.repeat_action_probability, n.terminal_on_life_loss, n.clip_rewards, n.noop_max) == (
        0.0,
        True,
        True,
        30,
    )
    for p in (m, n):
        assert (p.max_num_frames_per_episode, p.frame_skip, p.stack) == (108_000, 4, 4)
        assert not p.full_action_space and not p.use_fire_reset


def test_preset_errors_name_the_valid_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown Atari preset 'dqn'.*\['machado', 'nature'\]"):
        get_preset("dqn")
    with pytest.raises(ValueError, match=r"\['sticky'\].*repeat_action_probability"):
        make_atari("Pong", num_envs=1, sticky=0.1)
    with pytest.raises(ValueError, match="repeat_action_probability must be in"):
        AtariPreset(repeat_action_probability=1.5)
    assert get_preset("nature", noop_max=0) == AtariPreset(
        repeat_action_probability=0.0, terminal_on_life_loss=True, clip_rewards=True, noop_max=0
    )


def test_action_counts_and_meanings() -> None:
    assert num_actions("Pong") == 6
    assert num_actions("Breakout", "nature") == 4
    assert num_actions("Breakout", full_action_space=True) == 18
    assert action_meanings("ALE/Breakout-v5") == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert num_actions("toy/catch") == 3 and action_meanings("toy/catch") == ["LEFT", "STAY", "RIGHT"]


# ------------------------------------------------------------------------------------------ Atari vector
def test_vector_env_shapes_dtypes_and_zero_padded_reset() -> None:
    env = make_atari("Pong", num_envs=2, seed=0)
    assert isinstance(env, AtariVector) and env.num_envs == 2
    assert env.single_action_space == Discrete(6) and env.frame_skip == 4
    obs, info = env.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert (obs[:, :3] == 0).all() and obs[:, 3].max() > 0  # zero-padded stack, real newest frame
    assert set(info) == INFO_KEYS
    obs, reward, term, trunc, info = env.step(np.array([0, 1]))
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert reward.dtype == np.float32 and reward.shape == (2,)
    assert term.dtype == np.bool_ and trunc.dtype == np.bool_ and term.shape == (2,)
    assert info["raw_reward"].dtype == np.float64 and info["game_over"].dtype == np.bool_
    assert set(info) == INFO_KEYS
    frame = latest_frame(obs)
    assert frame.shape == (2, 84, 84) and np.shares_memory(frame, obs)
    np.testing.assert_array_equal(frame, obs[:, 3])
    env.close()


def _rollout(env: AtariVector, actions: np.ndarray, seed: int | None) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    frames = [obs]
    for a in actions:
        frames.append(env.step(a)[0])
    env.close()
    return np.stack(frames)


def test_vector_env_seeding_reproducible_with_sticky_actions() -> None:
    actions = np.random.default_rng(1).integers(0, 4, size=(300, 2))
    a = _rollout(make_atari("Breakout", "machado", num_envs=2), actions, seed=7)
    b = _rollout(make_atari("Breakout", "machado", num_envs=2), actions, seed=7)
    c = _rollout(make_atari("Breakout", "machado", num_envs=2), actions, seed=8)
    # The constructor seed is used by a first reset() without seed.
    d = _rollout(make_atari("Breakout", "machado", num_envs=2, seed=7), actions, seed=None)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d)
    assert not np.array_equal(a, c)  # sticky actions draw from the seed


def test_nature_life_loss_is_a_learning_terminal_and_the_game_continues() -> None:
    """Breakout, random actions: nature and machado (both deterministic, no no-ops) play the same game.

    Each life loss must be terminated=True in nature with game_over False, and the next step continues that
    game (no reset); only at game over does a new game start.
    """
    overrides = {"repeat_action_probability": 0.0, "noop_max": 0}
    nature = make_atari("Breakout", "nature", num_envs=1, **overrides)
    machado = make_atari("Breakout", "machado", num_envs=1, **overrides)
    obs_n, info_n = nature.reset(seed=3)
    obs_m, _ = machado.reset(seed=3)
    rng = np.random.default_rng(0)
    prev_lives, life_terminals, game_overs, after_life_loss = int(info_n["lives"][0]), 0, 0, False
    prev_frame = int(info_n["episode_frame_number"][0])
    for _ in range(3000):
        a = rng.integers(0, 4, size=1)
        obs_n, r_n, term_n, trunc_n, info_n = nature.step(a)
        obs_m, r_m, term_m, trunc_m, info_m = machado.step(a)
        np.testing.assert_array_equal(obs_n, obs_m)  # the same game, step for step
        np.testing.assert_array_equal(info_n["raw_reward"], info_m["raw_reward"])
        np.testing.assert_array_equal(info_n["game_over"], info_m["game_over"])
        np.testing.assert_array_equal(r_n, np.clip(info_n["raw_reward"], -1, 1))
        lives, frame = int(info_n["lives"][0]), int(info_n["episode_frame_number"][0])
        if after_life_loss:  # the step after a life-loss terminal continues the game
            assert frame == prev_frame + 4 and lives == prev_lives and obs_n[0, 0].max() > 0
        after_life_loss = False
        if lives < prev_lives and not info_n["game_over"][0]:
            assert term_n[0] and not term_m[0] and lives > 0
            life_terminals += 1
            after_life_loss = True
        else:
            assert term_n[0] == term_m[0]
        if info_n["game_over"][0]:
            assert term_n[0] and lives == 0
            game_overs += 1
            obs_n, _, term_n, _, info_n = nature.step(a)
            obs_m, *_ = machado.step(a)
            assert (obs_n[0, :3] == 0).all() and not term_n[0]  # a new game starts
            assert int(info_n["lives"][0]) == 5 and int(info_n["episode_frame_number"][0]) <= 4
            lives, frame = 5, int(info_n["episode_frame_number"][0])
            if game_overs == 2:
                break
        prev_lives, prev_frame = lives, frame
    assert game_overs == 2
    assert life_terminals == 8  # Breakout: 5 lives -> 4 life-loss terminals per game


def test_reward_clipping_keeps_the_raw_reward() -> None:
    env = make_atari("SpaceInvaders", "nature", num_envs=2, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    seen_big = False
    for _ in range(400):
        _, reward, _, _, info = env.step(rng.integers(0, env.single_action_space.n, size=2))
        np.testing.assert_array_equal(reward, np.clip(info["raw_reward"], -1, 1).astype(np.float32))
        seen_big |= bool((info["raw_reward"] > 1).any())
    assert seen_big  # SpaceInvaders aliens are worth 5 to 30 points
    env.close()


def test_frame_cap_truncates_and_is_a_game_over() -> None:
    env = make_atari("Pong", num_envs=1, max_num_frames_per_episode=400)
    env.reset(seed=0)
    for t in range(100):
        _, _, term, trunc, info = env.step(np.zeros(1, dtype=np.int64))
        assert trunc[0] == (t == 99) and not term[0]
    assert info["game_over"][0] and info["episode_frame_number"][0] == 400
    env.close()


# ------------------------------------------------------------------------------------------ Atari single
@pytest.mark.parametrize("preset", ["machado", "nature"])
def test_single_env_passes_check_env(preset: str) -> None:
    env = make_atari("Breakout", preset, num_envs=None, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # check_env warns that it was given a wrapped env
        check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=1)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and (obs[:3] == 0).all()
    obs, reward, term, trunc, info = env.step(1)
    assert isinstance(reward, float) and isinstance(info["raw_reward"], float)
    assert info["game_over"] is False and latest_frame(obs).shape == (84, 84)
    env.close()


def test_single_env_nature_life_loss_continues_the_game() -> None:
    env = make_atari("Breakout", "nature", num_envs=None, seed=0)
    obs, info = env.reset()
    rng = np.random.default_rng(0)
    life_terminals = 0
    for _ in range(3000):
        obs, _, term, trunc, info = env.step(int(rng.integers(4)))
        if term or trunc:
            if info["game_over"]:
                assert info["lives"] == 0
                break
            life_terminals += 1
            after, after_info = env.reset()  # continues the game: same frames, same lives
            np.testing.assert_array_equal(after, obs)
            assert after_info["lives"] == info["lives"] and not after_info["game_over"]
            frame = info["episode_frame_number"]
            _, _, _, _, info = env.step(0)
            assert info["episode_frame_number"] == frame + 4
    assert life_terminals == 4
    env.close()


# --------------------------------------------------------------------------------------------- toy env
def _block(row: int, col: int) -> tuple[slice, slice]:
    return slice(12 * row, 12 * row + 12), slice(12 * col, 12 * col + 12)


def test_catch_shapes_and_zero_padded_reset() -> None:
    env = make_env("toy/catch", num_envs=3, seed=0)
    assert isinstance(env, CatchVectorEnv) and env.single_action_space == Discrete(3)
    obs, info = env.reset()
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8 and (obs[:, :3] == 0).all()
    assert set(info) == INFO_KEYS
    for i in range(3):  # paddle in the middle of the bottom row, one ball block in the top row
        frame = obs[i, 3]
        assert (frame[_block(6, 3)] == PADDLE_PIXEL).all()
        assert (frame[:12] == BALL_PIXEL).sum() == 144 and (frame > 0).sum() == 288
    obs, reward, term, trunc, info = env.step(np.array([0, 1, 2]))
    assert reward.dtype == np.float32 and term.dtype == np.bool_ and info["raw_reward"].dtype == np.float64
    assert (obs[:, :2] == 0).all() and (obs[:, 2:] > 0).any(axis=(2, 3)).all()
    np.testing.assert_array_equal(info["episode_frame_number"], [4, 4, 4])


def test_catch_hand_checked_catch_miss_and_autoreset() -> None:
    env = CatchVectorEnv(2, seed=0)
    env.reset()
    env.place(0, ball_row=4, ball_col=2, paddle=3, balls_left=1)  # last ball, two rows above the paddle
    env.place(1, ball_row=5, ball_col=0, paddle=6, balls_left=2)  # lands next step, paddle far away
    obs, reward, term, _, info = env.step(np.array([LEFT, RIGHT]))
    np.testing.assert_array_equal(reward, [0.0, -1.0])
    np.testing.assert_array_equal(term, [False, False])
    expected0 = np.zeros((84, 84), np.uint8)
    expected0[_block(6, 2)] = PADDLE_PIXEL
    expected0[_block(5, 2)] = BALL_PIXEL
    np.testing.assert_array_equal(obs[0, 3], expected0)
    frame1 = obs[1, 3]  # paddle stuck at the right wall, a new ball at the top of some column
    assert (frame1[_block(6, 6)] == PADDLE_PIXEL).all()
    assert (frame1[:12] == BALL_PIXEL).sum() == 144 and (frame1 > 0).sum() == 288
    assert env.core.balls_left[1] == 1

    obs, reward, term, _, info = env.step(np.array([STAY, STAY]))
    assert reward[0] == 1.0 and term[0] and info["game_over"][0] and info["raw_reward"][0] == 1.0
    expected0 = np.zeros((84, 84), np.uint8)
    expected0[_block(6, 2)] = BALL_PIXEL  # the caught ball covers the paddle
    np.testing.assert_array_equal(obs[0, 3], expected0)

    obs, reward, term, _, info = env.step(np.array([RIGHT, STAY]))  # env 0 ignores RIGHT: it resets
    assert reward[0] == 0.0 and not term[0] and not info["game_over"][0]
    assert (obs[0, :3] == 0).all() and (obs[0, 3][_block(6, 3)] == PADDLE_PIXEL).all()
    assert info["episode_frame_number"][0] == 0 and env.core.balls_left[0] == 5


def _scripted_returns(env: CatchVectorEnv, steps: int, policy: str, seed: int) -> list[float]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    running = np.zeros(env.num_envs)
    returns: list[float] = []
    for _ in range(steps):
        if policy == "random":
            actions = rng.integers(0, 3, size=env.num_envs)
        else:  # read ball and paddle columns from the newest frame's pixels
            frame = latest_frame(obs)
            ball_col = (frame == BALL_PIXEL).any(axis=1).argmax(axis=1) // 12
            bottom = frame[:, 72:84, :].max(axis=1)  # the paddle (or the ball over it) on the bottom row
            paddle_col = np.where((bottom == PADDLE_PIXEL).any(axis=1), (bottom == PADDLE_PIXEL).argmax(1), 0)
            actions = np.sign(ball_col - paddle_col // 12) + 1
        obs, reward, term, _, _ = env.step(actions)
        running += reward
        returns.extend(running[term].tolist())
        running[term] = 0.0
    return returns


def test_catch_random_policy_scores_about_minus_3_6() -> None:
    returns = _scripted_returns(CatchVectorEnv(8, seed=0), 31 * 25, "random", seed=0)
    assert len(returns) == 8 * 25
    assert -4.0 < np.mean(returns) < -3.2  # expectation about -3.6 (std 1.6 per episode)


def test_catch_optimal_policy_scores_exactly_plus_5() -> None:
    returns = _scripted_returns(CatchVectorEnv(8, seed=1), 31 * 10, "optimal", seed=1)
    assert returns == [5.0] * 80


def test_catch_seeding_and_single_env_match_the_vector_env() -> None:
    actions = np.random.default_rng(0).integers(0, 3, size=(70, 1))
    vec = CatchVectorEnv(1, seed=5)
    single = CatchEnv(seed=5)
    obs_v, _ = vec.reset()
    obs_s, _ = single.reset()
    np.testing.assert_array_equal(obs_v[0], obs_s)
    trace = [obs_v]
    single_needs_reset = False
    for a in actions:
        obs_v, r_v, term_v, _, _ = vec.step(a)
        trace.append(obs_v)
        if single_needs_reset:  # the vector env's autoreset step, made by hand
            obs_s, _ = single.reset()
            single_needs_reset = False
            assert r_v[0] == 0.0 and not term_v[0]
        else:
            obs_s, r_s, term_s, _, _ = single.step(int(a[0]))
            assert r_s == r_v[0] and term_s == term_v[0]
            single_needs_reset = term_s
        np.testing.assert_array_equal(obs_v[0], obs_s)
    vec.reset(seed=5)
    again = [vec.reset(seed=5)[0]] + [vec.step(a)[0] for a in actions]
    np.testing.assert_array_equal(np.stack(trace), np.stack(again))


def test_catch_single_env_passes_check_env() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(CatchEnv(render_mode="rgb_array"))
    env = make_env("toy/catch", num_envs=None)
    assert isinstance(env, CatchEnv)
    obs, info = env.reset()
    assert obs.shape == (4, 84, 84) and (obs[:3] == 0).all() and info["game_over"] is False


def test_catch_is_fast() -> None:
    env = CatchVectorEnv(8, seed=0)
    env.reset()
    actions = np.random.default_rng(0).integers(0, 3, size=(1000, 8))
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    steps_per_s = 8000 / (time.perf_counter() - start)
    assert steps_per_s > 20_000, steps_per_s


def test_make_env_toy_errors() -> None:
    with pytest.raises(ValueError, match="toy envs"):
        make_env("toy/pong")
    with pytest.raises(ValueError, match="valid settings"):
        make_env("toy/catch", stak=3)
    assert make_env("toy/catch", num_envs=2, stack=2).reset()[0].shape == (2, 2, 84, 84)


# --------------------------------------------------------------------------- gymnasium backend and RAM
def test_gymnasium_backend_has_the_ale_vector_api_plus_ram() -> None:
    """Same shapes, dtypes, info keys and NextStep semantics; identical frames on a deterministic emulator."""
    kw = {"repeat_action_probability": 0.0, "noop_max": 0}
    ale = make_atari("Breakout", "nature", num_envs=2, seed=4, **kw)
    gym_ = make_atari("Breakout", "nature", num_envs=2, seed=4, backend="gymnasium", **kw)
    assert isinstance(gym_, AtariVector) and gym_.single_action_space == ale.single_action_space
    obs_a, info_a = ale.reset()
    obs_g, info_g = gym_.reset()
    np.testing.assert_array_equal(obs_a, obs_g)
    assert set(info_g) == INFO_KEYS | {"ram"} and info_g["ram"].shape == (2, 128) and info_g["ram"].dtype == np.uint8
    for key in INFO_KEYS:
        assert info_g[key].dtype == info_a[key].dtype and info_g[key].shape == info_a[key].shape, key
    rng = np.random.default_rng(0)
    game_overs = life_losses = 0
    for _ in range(700):
        a = rng.integers(0, 4, size=2)
        out_a, out_g = ale.step(a), gym_.step(a)
        for x, y in zip(out_a[:4], out_g[:4]):  # obs, reward, terminated, truncated
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
        for key in INFO_KEYS - {"frame_number"}:  # frame_number counts since the emulator started
            np.testing.assert_array_equal(out_a[4][key], out_g[4][key], err_msg=key)
        life_losses += int((out_g[2] & ~out_g[4]["game_over"]).sum())
        game_overs += int(out_g[4]["game_over"].sum())
    assert game_overs >= 2 and life_losses >= 8  # autoresets and life-loss terminals were both compared
    ale.close()
    gym_.close()


def test_gymnasium_backend_frame_cap_and_autoreset_step() -> None:
    env = make_atari("Pong", num_envs=1, backend="gymnasium", max_num_frames_per_episode=400)
    env.reset(seed=0)
    for t in range(100):
        _, _, term, trunc, info = env.step(np.zeros(1, dtype=np.int64))
        assert trunc[0] == (t == 99) and not term[0]
    assert info["game_over"][0] and info["episode_frame_number"][0] == 400
    obs, reward, term, trunc, info = env.step(np.zeros(1, dtype=np.int64))  # NextStep: the reset step
    assert (obs[0, :3] == 0).all() and reward[0] == 0 and not term[0] and not trunc[0]
    assert not info["game_over"][0] and info["episode_frame_number"][0] == 0
    env.close()


def test_unknown_backend_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="ale_vector"):
        make_atari("Pong", num_envs=1, backend="cuda")


# Routes found by a Go-Explore style search (deterministic emulator, frame skip 4): (action index, repeats).
# Both fetch the key (+100) and open a door (+300); then Panama Joe walks out of the start room.
_RIGHT_DOOR = [(13, 1), (15, 8), (5, 1), (17, 2), (1, 3), (12, 6), (5, 3), (13, 10), (4, 3), (11, 6), (10, 1),
               (13, 4), (16, 8), (7, 5), (11, 1), (12, 1), (5, 6), (16, 7), (13, 12), (0, 7), (7, 8), (4, 6),
               (5, 19), (17, 12), (13, 6), (0, 10), (17, 1), (7, 4), (2, 35), (12, 5), (14, 12), (3, 17),
               (14, 6), (17, 2), (8, 14)]
_LEFT_DOOR = _RIGHT_DOOR[:30] + [(14, 5), (6, 9), (13, 8), (0, 55), (2, 24), (1, 1), (0, 13), (10, 15), (6, 1),
                                 (15, 2), (2, 3), (7, 3), (14, 7), (7, 11), (16, 3), (12, 12), (15, 2), (14, 9),
                                 (15, 2), (4, 1), (17, 6), (7, 7), (10, 1), (2, 11), (0, 1), (7, 5)]


@pytest.mark.parametrize(("route", "room"), [(_RIGHT_DOOR, 2), (_LEFT_DOOR, 0)])
def test_montezuma_room_byte_starts_at_1_and_changes_when_joe_leaves_the_room(
        route: list[tuple[int, int]], room: int) -> None:
    from envs.montezuma import RoomTracker, room_of

    env = make_atari("MontezumaRevenge", num_envs=1, seed=0, backend="gymnasium", repeat_action_probability=0.0)
    tracker = RoomTracker(1)
    _, info = env.reset()
    tracker.on_reset(info)
    assert room_of(info["ram"]).tolist() == [1]
    rooms, score = [], 0.0
    for action, repeats in route:
        for _ in range(repeats):
            _, _, _, _, info = env.step(np.array([action]))
            tracker.on_step(info, np.ones(1, bool))
            rooms.append(int(room_of(info["ram"])[0]))
            score += float(info["raw_reward"][0])
    env.close()
    assert score == 400.0  # key and door
    assert rooms[:-1] == [1] * (len(rooms) - 1) and rooms[-1] == room  # the room changes on the last step only
    assert tracker.end_episode(0) == {"explore/rooms_visited": 2.0}
    assert tracker.flush() == ({}, {"explore/rooms_total": sorted([1, room])})
    assert tracker.flush() == ({}, {"explore/rooms_total": []})  # reported once
    assert tracker.end_episode(0) == {"explore/rooms_visited": 0.0}


def test_room_tracker_counts_rooms_per_game_with_autoreset_frames_in_the_new_game() -> None:
    from envs.montezuma import RoomTracker

    def info(*rooms: int) -> dict[str, np.ndarray]:
        ram = np.zeros((len(rooms), 128), np.uint8)
        ram[:, 3] = rooms
        return {"ram": ram}

    t = RoomTracker(2)
    t.on_reset(info(1, 1))
    t.on_step(info(0, 2), np.ones(2, bool))
    t.on_step(info(4, 2), np.ones(2, bool))
    assert t.end_episode(0) == {"explore/rooms_visited": 3.0}  # 1, 0, 4
    t.on_step(info(1, 6), np.array([False, True]))  # env 0's autoreset step: start room of its next game
    assert t.end_episode(0) == {"explore/rooms_visited": 1.0}
    assert t.end_episode(1) == {"explore/rooms_visited": 3.0}  # 1, 2, 6
    assert t.flush()[1] == {"explore/rooms_total": [0, 1, 2, 4, 6]} and t.rooms_seen == [0, 1, 2, 4, 6]
    with pytest.raises(KeyError, match="gymnasium"):
        t.on_step({}, np.ones(2, bool))


def test_frame_size_and_colour_overrides() -> None:
    env = make_atari("Pong", num_envs=2, frame_height=210, frame_width=160, grayscale=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 4, 210, 160, 3) and obs.dtype == np.uint8
    assert obs[:, -1].reshape(-1, 3).std(0).min() > 0  # real colour: the channels differ across the screen
    env.close()
    with pytest.raises(ValueError, match="need the ale_vector backend"):
        make_atari("Pong", num_envs=None, grayscale=False)
    with pytest.raises(ValueError, match="frame_height must be a positive int"):
        make_atari("Pong", num_envs=1, frame_height=0)
