"""Environments: Atari (ale-py) with explicit presets, MinAtar (Young & Tian 2019), the STRAW maze (Vezhnevets et
al. 2016), and Catch, a tiny pixel game for tests.

Every env here speaks the same language: NextStep autoreset for vector envs, ``info["raw_reward"]`` /
``info["game_over"]`` on every step, and an observation made of ``stack`` frames of shape ``frame_shape``
(attributes of every vector env, with ``frame_skip``); the newest frames are
``newest_frames(obs, env.stack, env.frame_shape)``:

- Atari and Catch: uint8 [S, 84, 84] per env (S = 4 frames, oldest first, newest last, zero-padded at episode
  start; ``frame_shape = (84, 84)``);
- MinAtar: uint8 [C, 10, 10] per env, one frame of C 0/1 channels (``stack = 1``, ``frame_shape = (C, 10, 10)``);
- maze: uint8 [3, n, n] per env, walls / agent / goal as 0/1 channels (``stack = 1``, ``frame_shape = (3, n, n)``).

    env = make_env("Pong")                          # AtariVector, 8 envs, machado preset
    env = make_env("Breakout", preset="nature")     # life-loss terminals, clipped rewards
    env = make_env("Pong", num_envs=None)           # one Gymnasium env
    env = make_env("toy/catch", num_envs=8)         # CatchVectorEnv
    env = make_env("minatar/breakout", num_envs=8)  # MinAtarVector
    env = make_env("maze/11", num_envs=16)          # MazeVector, 11 x 11 random mazes
    env = make_env("maze/15/curriculum:curriculum_every=100000")  # goals by random walks of growing length
"""

from __future__ import annotations

import math
from typing import Any, overload

import gymnasium as gym
import numpy as np

from envs.atari import (
    PRESETS,
    AtariEpisode,
    AtariPreset,
    AtariVector,
    atari_action_meanings,
    atari_num_actions,
    get_preset,
    latest_frame,
    make_atari,
)
from envs.imagined import ImaginedEnv as ImaginedEnv  # "as": an explicit re-export
from envs.maze import ACTION_MEANINGS as MAZE_ACTION_MEANINGS
from envs.maze import MazeEnv, MazeSettings, MazeTracker, MazeVector, is_maze, maze_settings, maze_to_rgb
from envs.minatar import ACTION_MEANINGS as MINATAR_ACTION_MEANINGS
from envs.minatar import MINATAR_GAMES, MinAtarEnv, MinAtarVector, minatar_game
from envs.minatar import SETTINGS as MINATAR_SETTINGS
from envs.names import display_name, list_games, resolve_game
from envs.toy import ACTION_MEANINGS as CATCH_ACTION_MEANINGS
from envs.toy import CatchEnv, CatchVectorEnv

TOY_GAMES = ("toy/catch",)


# An int num_envs gives a vector env, None one Gymnasium env.
@overload
def make_env(game: str, preset: str | AtariPreset = ..., num_envs: int = ..., seed: int = ..., num_threads: int = ...,
             **overrides: Any) -> AtariVector | CatchVectorEnv | MinAtarVector | MazeVector: ...
@overload
def make_env(game: str, preset: str | AtariPreset, num_envs: None, seed: int = ..., num_threads: int = ...,
             **overrides: Any) -> gym.Env: ...
@overload
def make_env(game: str, preset: str | AtariPreset = ..., *, num_envs: None, seed: int = ..., num_threads: int = ...,
             **overrides: Any) -> gym.Env: ...
def make_env(
    game: str,
    preset: str | AtariPreset = "machado",
    num_envs: int | None = 8,
    seed: int = 0,
    num_threads: int = 1,
    **overrides: Any,
) -> AtariVector | CatchVectorEnv | MinAtarVector | MazeVector | gym.Env:
    """Build any environment by name: ``"toy/catch"``, ``"minatar/<game>"`` or an Atari game (see
    :func:`make_atari`).

    For ``"toy/catch"`` the preset (with ``overrides``, validated the same way) only supplies ``stack`` and
    ``frame_skip`` (frame-count bookkeeping); ``num_threads`` is ignored. ``num_envs=None`` gives the
    single Gymnasium env (:class:`CatchEnv` or the wrapped Atari env).

    For MinAtar (``MINATAR_GAMES``: ``"minatar/asterix"``, ``"minatar/breakout"``, ``"minatar/freeway"``,
    ``"minatar/seaquest"``, ``"minatar/space_invaders"``) the Atari preset does not apply and is ignored (MinAtar
    has its own protocol, see :mod:`envs.minatar`), as is ``num_threads``; ``overrides`` may only be MinAtar's
    ``sticky_action_prob`` (0.1) and ``difficulty_ramping`` (True). ``num_envs=None`` gives :class:`MinAtarEnv`.

    For the STRAW maze (``"maze/<n>"``, ``"maze/<n>/curriculum"``, settings also after a colon in the name:
    ``"maze/15/curriculum:curriculum_every=100000"``; see :mod:`envs.maze`) the preset and ``num_threads`` are
    ignored as for MinAtar; ``overrides`` may be the maze settings (``envs.maze.SETTINGS``), and ``backend`` only
    at its default ``"ale_vector"`` (the runtime passes ``env.backend`` for every game that is not MinAtar or
    toy/catch). ``num_envs=None`` gives :class:`MazeEnv`.

    :raises ValueError: unknown game (for ``"minatar/<x>"`` the message lists the five games), preset or setting.
    """
    if game.startswith("minatar/"):
        name = minatar_game(game)
        unknown = sorted(set(overrides) - set(MINATAR_SETTINGS))
        if unknown:
            raise ValueError(f"unknown MinAtar setting(s) {unknown}; valid settings: {list(MINATAR_SETTINGS)}")
        if num_envs is None:
            return MinAtarEnv(name, seed, **overrides)
        return MinAtarVector(name, num_envs, seed, **overrides)
    if is_maze(game):
        backend = overrides.pop("backend", "ale_vector")
        if backend != "ale_vector":
            raise ValueError(f"backend={backend!r} applies to Atari games only; {game} has its own vector env: "
                             "leave env.backend at 'ale_vector'")
        maze = maze_settings(game, **overrides)
        return MazeEnv(maze, seed) if num_envs is None else MazeVector(maze, num_envs, seed)
    if game in TOY_GAMES:
        settings = get_preset(preset, **overrides)
        if num_envs is None:
            return CatchEnv(seed, stack=settings.stack, frame_skip=settings.frame_skip)
        return CatchVectorEnv(num_envs, seed, stack=settings.stack, frame_skip=settings.frame_skip)
    if game.startswith("toy/"):
        raise ValueError(f"unknown toy env {game!r}; toy envs: {list(TOY_GAMES)}")
    return make_atari(game, preset, num_envs=num_envs, seed=seed, num_threads=num_threads, **overrides)


def action_meanings(game: str, full_action_space: bool = False) -> list[str]:
    """Names of the game's actions in index order, e.g. Breakout: ``["NOOP", "FIRE", "RIGHT", "LEFT"]``;
    ``"toy/catch"``: ``["LEFT", "STAY", "RIGHT"]``; MinAtar (all 6 actions):
    ``["NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE"]``; a maze: ``["UP", "RIGHT", "DOWN", "LEFT"]``."""
    if game in TOY_GAMES:
        return list(CATCH_ACTION_MEANINGS)
    if is_maze(game):
        maze_settings(game)  # validates the name
        return list(MAZE_ACTION_MEANINGS)
    if game.startswith("minatar/"):
        minatar_game(game)  # validates the name
        return list(MINATAR_ACTION_MEANINGS)
    return atari_action_meanings(game, full_action_space)


def num_actions(game: str, preset: str | AtariPreset = "machado", **overrides: Any) -> int:
    """Size of the Discrete action space :func:`make_env` gives for this game and preset (3 for ``"toy/catch"``,
    6 for MinAtar and 4 for a maze, whose presets are ignored)."""
    if game in TOY_GAMES:
        get_preset(preset, **overrides)  # same validation as make_env
        return len(CATCH_ACTION_MEANINGS)
    if is_maze(game):
        maze_settings(game, **overrides)  # same validation as make_env
        return len(MAZE_ACTION_MEANINGS)
    if game.startswith("minatar/"):
        minatar_game(game)  # validates the name
        return len(MINATAR_ACTION_MEANINGS)
    return atari_num_actions(game, preset, **overrides)


def newest_frames(obs: np.ndarray, stack: int, frame_shape: tuple[int, ...]) -> np.ndarray:
    """The newest frame of each observation of a batch: ``obs.reshape(N, stack, *frame_shape)[:, -1]``.

    :param obs: uint8 [N, *observation shape]: Atari/Catch [N, S, 84, 84], MinAtar [N, C, 10, 10].
    :param stack: frames per observation (``env.stack``: 4 for Atari, 1 for MinAtar).
    :param frame_shape: shape of one frame (``env.frame_shape``: (84, 84), or (C, 10, 10) for MinAtar).
    :returns: [N, *frame_shape], a view into ``obs`` when its layout allows (always for contiguous obs):
        Atari [N, 84, 84] (= ``obs[:, -1]``), MinAtar [N, C, 10, 10] (= ``obs``).
    :raises ValueError: ``obs`` does not hold ``stack`` frames of ``frame_shape`` per row.
    """
    if obs.ndim < 2 or math.prod(obs.shape[1:]) != stack * math.prod(frame_shape):
        raise ValueError(
            f"observations of shape {tuple(obs.shape)} do not hold stack={stack} frames of shape "
            f"{tuple(frame_shape)} each"
        )
    return obs.reshape(obs.shape[0], stack, *frame_shape)[:, -1]


def observation_to_rgb(obs: np.ndarray, stack: int, frame_shape: tuple[int, ...], scale: int = 4) -> np.ndarray:
    """One observation as a picture people can look at: uint8 ``[H * scale, W * scale, 3]``.

    Atari and Catch: the newest frame, grey or (``env.colour``) RGB. MinAtar and the maze: each of the C 0/1
    channels in its own colour (a fixed palette; where objects overlap, the later channel wins) on black, as
    MinAtar's own display does.

    :param obs: one observation (``[S, 84, 84]``, ``[S, 84, 84, 3]`` or ``[C, 10, 10]``). :param scale: pixel repeat
        per axis.
    """
    frame = newest_frames(obs[None], stack, frame_shape)[0]
    if frame.ndim == 2:
        rgb = np.repeat(frame[..., None], 3, axis=2)
    elif frame.shape[-1] == 3 and frame.shape[0] != 3:  # an RGB frame [H, W, 3], not 3 channels of a grid
        rgb = frame
    else:  # evenly spaced bright hues, as the grid world model's pictures draw them
        from worldmodels.grid.pictures import grid_to_rgb

        rgb = grid_to_rgb(frame > 0)
    return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


__all__ = [
    "MINATAR_GAMES",
    "PRESETS",
    "TOY_GAMES",
    "AtariEpisode",
    "AtariPreset",
    "AtariVector",
    "CatchEnv",
    "CatchVectorEnv",
    "MazeEnv",
    "MazeSettings",
    "MazeTracker",
    "MazeVector",
    "MinAtarEnv",
    "MinAtarVector",
    "action_meanings",
    "display_name",
    "get_preset",
    "is_maze",
    "latest_frame",
    "list_games",
    "make_atari",
    "make_env",
    "maze_settings",
    "maze_to_rgb",
    "newest_frames",
    "observation_to_rgb",
    "num_actions",
    "resolve_game",
]
