"""Environments: Atari (ale-py) with explicit presets, and Catch, a tiny pixel game for tests.

Every env here speaks the same language: observations uint8 [S, 84, 84] per env (S = 4 frames, oldest
first, newest last, zero-padded at episode start; the newest frame is ``latest_frame(obs)``), NextStep
autoreset for vector envs, and ``info["raw_reward"]`` / ``info["game_over"]`` on every step.

    env = make_env("Pong")                          # AtariVector, 8 envs, machado preset
    env = make_env("Breakout", preset="nature")     # life-loss terminals, clipped rewards
    env = make_env("Pong", num_envs=None)           # one Gymnasium env
    env = make_env("toy/catch", num_envs=8)         # CatchVectorEnv
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.atari import (
    PRESETS,
    AtariEpisode,
    AtariPreset,
    AtariVector,
    action_meanings,
    get_preset,
    latest_frame,
    make_atari,
    num_actions,
)
from envs.imagined import ImaginedEnv as ImaginedEnv  # "as": an explicit re-export
from envs.names import display_name, list_games, resolve_game
from envs.toy import CatchEnv, CatchVectorEnv

TOY_GAMES = ("toy/catch",)


def make_env(
    game: str,
    preset: str | AtariPreset = "machado",
    num_envs: int | None = 8,
    seed: int = 0,
    num_threads: int = 1,
    **overrides: Any,
) -> AtariVector | CatchVectorEnv | gym.Env:
    """Build any environment by name: ``"toy/catch"`` or an Atari game (see :func:`make_atari`).

    For ``"toy/catch"`` the preset (with ``overrides``, validated the same way) only supplies ``stack`` and
    ``frame_skip`` (frame-count bookkeeping); ``num_threads`` is ignored. ``num_envs=None`` gives the
    single Gymnasium env (:class:`CatchEnv` or the wrapped Atari env).
    """
    if game in TOY_GAMES:
        settings = get_preset(preset, **overrides)
        if num_envs is None:
            return CatchEnv(seed, stack=settings.stack, frame_skip=settings.frame_skip)
        return CatchVectorEnv(num_envs, seed, stack=settings.stack, frame_skip=settings.frame_skip)
    if game.startswith("toy/"):
        raise ValueError(f"unknown toy env {game!r}; toy envs: {list(TOY_GAMES)}")
    return make_atari(game, preset, num_envs=num_envs, seed=seed, num_threads=num_threads, **overrides)


__all__ = [
    "PRESETS",
    "TOY_GAMES",
    "AtariEpisode",
    "AtariPreset",
    "AtariVector",
    "CatchEnv",
    "CatchVectorEnv",
    "action_meanings",
    "display_name",
    "get_preset",
    "latest_frame",
    "list_games",
    "make_atari",
    "make_env",
    "num_actions",
    "resolve_game",
]
