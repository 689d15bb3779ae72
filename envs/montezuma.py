"""Montezuma's Revenge: the room Panama Joe is in, read from the console RAM, and a per-episode room tracker.

The room number is RAM byte 3 (address 0x83; the 2600's RAM is mapped at 0x80-0xFF), the byte Bellemare et al.'s
(2016) room counts read. Checked here (ale-py 0.12.1, deterministic emulator): the game starts in room 1 (the
pyramid's top middle room); playing to the key and through the right door makes the byte read 2 exactly at the
step Panama Joe leaves the screen, and through the left door 0 (``tests/unit/test_envs.py`` replays both
routes, found by a Go-Explore style search). The first level has 24 rooms (0-23), and room numbers repeat on
every level (the level is RAM byte 57): we count room numbers regardless of level, so a game that reached level 2
would merge its rooms with level 1's (no agent at our budgets gets there).

Reading the RAM needs the ``"gymnasium"`` vector backend (``make_atari(..., backend="gymnasium")``), which puts
``info["ram"]`` uint8 [N, 128] into every reset and step; ale-py's C++ vector env does not expose it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ROOM_RAM_INDEX", "RoomTracker", "is_montezuma", "room_of"]

#: Index of the room byte in the 128-byte RAM (address 0x83).
ROOM_RAM_INDEX = 3


def is_montezuma(rom: str) -> bool:
    """True for the snake_case rom id of Montezuma's Revenge (see :func:`envs.names.resolve_game`)."""
    return rom == "montezuma_revenge"


def room_of(ram: np.ndarray) -> np.ndarray:
    """Room numbers from console RAM: uint8 ``[..., 128]`` -> int64 ``[...]``."""
    ram = np.asarray(ram)
    if ram.shape[-1:] != (128,):
        raise ValueError(f"expected Atari console RAM [..., 128], got shape {ram.shape}")
    return ram[..., ROOM_RAM_INDEX].astype(np.int64)


class RoomTracker:
    """Rooms visited per game (one set per sub-env) and over the tracker's lifetime.

    Follows the episode-tracker protocol of :class:`agents.runtime.actor.EnvActor` (``on_reset``, ``on_step``,
    ``end_episode``, ``flush``). Every observation counts, the reset observation too: a game's rooms are those
    of all its frames, the start room included.

    :param num_envs: N, sub-envs of the vector env.
    :param tag_visited: TensorBoard tag of the per-game count.
    :param tag_total: TensorBoard tag of the run's total (the driver unions the rooms ``flush`` reports).
    """

    def __init__(self, num_envs: int, tag_visited: str = "explore/rooms_visited",
                 tag_total: str = "explore/rooms_total") -> None:
        self.num_envs = int(num_envs)
        self.tag_visited = tag_visited
        self.tag_total = tag_total
        self._episode = np.zeros((self.num_envs, 256), bool)  # [N, room] visited in the current game
        self._seen = np.zeros(256, bool)  # every room this tracker has seen
        self._reported = np.zeros(256, bool)  # rooms already returned by flush()

    def _visit(self, info: dict[str, Any]) -> None:
        if "ram" not in info:
            raise KeyError("RoomTracker needs info['ram']: build the env with backend='gymnasium'")
        rooms = room_of(info["ram"])
        self._episode[np.arange(self.num_envs), rooms] = True
        self._seen[rooms] = True

    def on_reset(self, info: dict[str, Any]) -> None:
        """After ``env.reset()``: every sub-env starts a game in the room its RAM shows."""
        self._episode[:] = False
        self._visit(info)

    def on_step(self, info: dict[str, Any], live: np.ndarray) -> None:
        """After each vector step (autoreset steps too: their room is the new game's first room)."""
        self._visit(info)

    def end_episode(self, env_index: int) -> dict[str, float]:
        """Sub-env ``env_index``'s game ended at the last step: its room count; its next game starts empty."""
        count = int(self._episode[env_index].sum())
        self._episode[env_index] = False
        return {self.tag_visited: float(count)}

    def flush(self) -> tuple[dict[str, float], dict[str, list[int]]]:
        """Rooms first seen since the last flush (``{tag_total: [room, ...]}``); no scalars."""
        new = np.flatnonzero(self._seen & ~self._reported)
        self._reported |= self._seen
        return {}, {self.tag_total: [int(r) for r in new]}

    @property
    def rooms_seen(self) -> list[int]:
        """Every room seen so far, sorted."""
        return [int(r) for r in np.flatnonzero(self._seen)]
