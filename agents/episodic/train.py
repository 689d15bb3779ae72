"""MFEC training (Blundell et al. 2016), top to bottom: what a run does, in the order it does it.

    actors (local or Ray) --finished episodes: keys, actions, rewards--> learner (writes returns into the memory)
          learner --the memory (local mode) or its state (Ray: one ray.put per publication)--> actors

1. Validate the config; make a VAE representation's path absolute (it must exist).
2. Probe the env and build the :class:`~agents.episodic.learning.MFECLearner` (an empty memory, one buffer per
   action).
3. Start the actors (in-process, or Ray actors), each building ``make_mfec_parts`` (``agents/episodic/actor.py``):
   vector env, the representation (the same in every process), an epsilon-greedy policy on the memory, and the
   episode adder.
4. Loop (``agents/runtime/loop.py``, the same loop for every algorithm): every chunk's finished episodes are
   written at the next update; actors' replicas are refreshed every ``runtime.publish_every_updates`` updates.
   Logs ``episodic/memory_size``, ``episodic/exact_match_rate``; checkpoints (with the memory) atomically.
5. Write a last checkpoint, close the actors, and evaluate (Machado protocol) if ``run.eval_episodes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agents.episodic.builder import BUILDER
from agents.episodic.config import MFECConfig
from agents.runtime.loop import Hook, StopTraining, TrainState, run_training

__all__ = ["StopTraining", "TrainState", "train"]


def train(cfg: MFECConfig, run_dir: str | Path | None = None, resume: bool = False,
          hooks: Sequence[Hook] = ()) -> TrainState:
    """Train an MFEC agent as configured; returns the final counters (see the module docstring)."""
    return run_training(BUILDER, cfg, run_dir=run_dir, resume=resume, hooks=hooks)
