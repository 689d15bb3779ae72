"""Real transitions with the last ``context`` frames of each observation, for a world model that reads histories
(``world_model.context > 1``: MinAtar hides timers, e.g. Freeway's cars, that one frame does not reveal).

DQN's replay keeps one frame per MinAtar observation (its Q-network reads one), so a history is not in it. The
actors' chunks carry enough to rebuild one, though: with ``agent.n_step = 1`` every transition ``s -> s'`` links
frame ``s'`` to the frame before it, and transitions arrive in the order they happened within each game. A
:class:`HistoryReplay` follows those links back ``context - 1`` frames (``-1``, the zero frame, before a game's
first), rewrites each chunk's one-frame stacks as stacks of ``context`` frame ids, and stores them in a
:class:`~agents.replay.buffer.PrioritizedReplay` of stack ``context`` (uniform sampling), which keeps every frame
once, as DQN's replay does: the frames are stored twice in all (once per replay), the transitions' ids are not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from agents.replay.buffer import PrioritizedReplay
from agents.replay.nstep import Chunk


@dataclass
class _Links:
    """One actor incarnation's links, frame id -> the frame before it in its game, in a ring of recent ids."""

    incarnation: int
    prev: np.ndarray  # int64 [R]: the previous frame's id, -1: none (a game's first frame, or not seen)
    owner: np.ndarray  # int64 [R]: which frame id each slot holds (-1: empty)


class HistoryReplay:
    """Real one-step transitions whose observations are the last ``context`` frames (see the module docstring).

    :param capacity: transitions kept (as DQN's ``replay.capacity``). :param num_shards: one per actor.
    :param context: frames per history (>= 2; with 1 DQN's replay is already the history).
    :param frame_shape: one frame ``(C, H, W)``. :param seed: seeds the sampling.
    """

    def __init__(self, capacity: int, num_shards: int, context: int, frame_shape: tuple[int, ...],
                 seed: int) -> None:
        self.context = int(context)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.replay = PrioritizedReplay(capacity, num_shards=num_shards, stack=self.context, frame_shape=frame_shape,
                                        prioritized=False, seed=seed)
        self._ring = int(self.replay.frames_per_shard)  # ids older than a shard's frame ring are gone anyway
        self._links: dict[int, _Links] = {}

    def __len__(self) -> int:
        return len(self.replay)

    def add(self, chunk: Chunk) -> Chunk:
        """Rewrite a chunk of one-frame transitions as ``context``-frame ones and store it; returns the rewritten
        chunk (``obs_ids`` and ``next_ids`` ``[T, context]``, oldest first)."""
        if chunk.obs_ids.shape[1] != 1:
            raise ValueError(f"chunks of {chunk.obs_ids.shape[1]}-frame stacks; a history is built from one-frame "
                             f"observations (MinAtar's).")
        links = self._links.get(int(chunk.actor_id))
        if links is None or links.incarnation != int(chunk.incarnation):  # a new actor, or one restarted
            links = _Links(int(chunk.incarnation), np.full(self._ring, -1, np.int64), np.full(self._ring, -1, np.int64))
            self._links[int(chunk.actor_id)] = links
        t = len(chunk.actions)
        obs_ids = np.full((t, self.context), -1, np.int64)
        next_ids = np.full((t, self.context), -1, np.int64)
        for i in range(t):  # in the order they happened within each game: a link is set before it is followed
            o, n = int(chunk.obs_ids[i, -1]), int(chunk.next_ids[i, -1])
            history = [o]
            while len(history) < self.context:
                slot = history[-1] % self._ring
                before = int(links.prev[slot]) if links.owner[slot] == history[-1] else -1
                if before < 0:
                    break
                history.append(before)
            obs_ids[i, self.context - len(history):] = history[::-1]
            next_ids[i, :-1] = obs_ids[i, 1:]
            next_ids[i, -1] = n
            links.prev[n % self._ring], links.owner[n % self._ring] = o, n
        rewritten = replace(chunk, obs_ids=obs_ids, next_ids=next_ids)
        self.replay.add(rewritten)
        return rewritten

    def sample(self, n: int) -> dict[str, np.ndarray]:
        """``n`` transitions drawn uniformly: ``obs`` uint8 ``[n, context, C, H, W]`` (newest last, zeros before a
        game's first frame), ``actions``, ``rewards`` (the returns of one-step transitions), ``next_obs`` uint8
        ``[n, C, H, W]`` (the newest frame only) and ``terminals`` (discount 0)."""
        batch = self.replay.sample(n, mc_returns=False)
        shape = (len(batch.actions), self.context, *self.frame_shape)
        return {"obs": batch.obs.reshape(shape), "actions": batch.actions, "rewards": batch.returns,
                "next_obs": batch.next_obs.reshape(shape)[:, -1], "terminals": batch.discounts == 0}

    def state_dict(self) -> dict[str, Any]:
        """The replay's contents; the links are not kept (a resumed run's actors start new incarnations)."""
        return self.replay.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.replay.load_state_dict(state)
        self._links = {}
