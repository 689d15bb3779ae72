"""MFEC's learner (Blundell et al. 2016, Sec. 2 and Algorithm 1): no gradients, a non-parametric memory. Each
update writes the episodes the actors finished since the last one, every step's return
``R_t = sum_i gamma^i r_{t+i}`` max-updated into (or inserted in) the taken action's buffer.

Pacing: an update is due whenever finished episodes are waiting, and actors are never held back (the memory has no
replay ratio to keep); ``runtime.publish_every_updates`` sets how often Ray actors' replicas are refreshed.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from agents.episodic.config import MFECConfig
from agents.episodic.memory import EpisodicMemory, discounted_returns
from agents.episodic.networks import make_memory
from agents.runtime.actor import ActorOutput
from agents.runtime.algorithm import Counters, EnvSpec

#: Steps actors may always collect ahead (the loop adds its per-actor slack): MFEC never makes them wait.
NO_LIMIT = 1 << 40


class MFECLearner:
    """Writes finished episodes into the memory; its weights are the memory (see :mod:`agents.episodic.actor`).

    :param spec: the env's spec (the number of actions). :param cfg: the run's config.
    """

    def __init__(self, spec: EnvSpec, cfg: MFECConfig) -> None:
        self.cfg = cfg
        self.memory = make_memory(cfg, spec.num_actions)
        self.local = cfg.runtime.num_actors == 0
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._busy, self._since = 0.0, time.perf_counter()

    def ingest(self, output: ActorOutput) -> None:
        self.pending.extend(output.payload)

    def updates_due(self, counters: Counters) -> int:
        return 1 if self.pending else 0

    def collect_allowance(self, counters: Counters) -> int:
        return NO_LIMIT

    def update(self, counters: Counters) -> dict[str, float]:
        """Write every waiting episode (eq. 1); scalars: the episodes and steps written."""
        start = time.perf_counter()
        episodes, self.pending = self.pending, []
        gamma = self.cfg.episodic.gamma
        keys = np.concatenate([k for k, _, _ in episodes])
        actions = np.concatenate([a for _, a, _ in episodes])
        per_episode = [discounted_returns(r, gamma) for _, _, r in episodes]
        # One call for all of them: each buffer's index hears of its written slots once.
        self.memory.update(keys, actions, np.concatenate(per_episode))
        self._busy += time.perf_counter() - start
        return {"episodes_written": float(len(episodes)), "steps_written": float(len(keys)),
                "episode_return": float(np.mean([r[0] for r in per_episode]))}

    def get_weights(self) -> EpisodicMemory | dict[str, Any]:
        """Local mode: the memory itself (the actor queries it directly). Ray mode: its state, for the replicas."""
        return self.memory if self.local else self.memory.state_dict()

    def scalars(self) -> dict[str, float]:
        now = time.perf_counter()
        busy = self._busy / max(1e-9, now - self._since)
        self._busy, self._since = 0.0, now
        return {"episodic/memory_size": float(self.memory.size), "charts/learner_busy_fraction": busy}

    @staticmethod
    def checkpoint_weights(ckpt: dict[str, Any]) -> dict[str, Any]:
        """The actors' "weights" (the memory's state) in a checkpoint this learner's :meth:`state_dict` went into."""
        from agents.runtime.algorithm import CheckpointLayout

        return CheckpointLayout.learner_state(ckpt)["memory"]

    def state_dict(self) -> dict[str, Any]:
        return {"learner": {"memory": self.memory.state_dict()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.memory.load_state_dict(state["learner"]["memory"])
        except (KeyError, ValueError) as err:
            raise ValueError(f"the checkpoint's memory does not fit this config ({err}); resume with the run's own "
                             "config: reverie train --resume RUN_DIR") from err
