"""MFEC's "network": the representation that maps an observation's newest frame to a key (Blundell et al. 2016,
Sec. 3), and the memory the keys index. Both are built from the config, identically in every process: the random
projection from its seed (``run.seed``), the VAEs from their checkpoint."""

from __future__ import annotations

import math
from typing import Any

from agents.episodic.config import MFECConfig
from agents.episodic.memory import EpisodicMemory


def make_key_network(cfg: MFECConfig, frame_shape: tuple[int, ...]) -> Any:
    """The :class:`worldmodels.protocols.Representation` of ``cfg.representation`` for frames of ``frame_shape``
    (``(84, 84)`` on Atari, ``(C, 10, 10)`` on MinAtar): ``embed(uint8 [B, *frame_shape]) -> float32 [B, dim]``."""
    from worldmodels.representations import make_representation

    r = cfg.representation
    return make_representation(str(r.kind), tuple(frame_shape), dim=r.dim, seed=cfg.run.seed, path=r.path)


def make_memory(cfg: MFECConfig, num_actions: int) -> EpisodicMemory:
    """An empty memory as ``cfg.episodic`` says, for keys of ``representation.dim``."""
    e = cfg.episodic
    return EpisodicMemory(num_actions, cfg.representation.dim, e.capacity, k=e.k, index=str(e.index),
                          eviction=str(e.eviction), seed=cfg.run.seed,
                          empty_value=math.inf if e.try_untried_first else 0.0, nprobe=e.nprobe)
