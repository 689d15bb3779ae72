"""STRAW / STRAWe training, top to bottom: the actor-critic run (``agents/actor_critic/train.py``) with a planning
core as the policy.

    actors (local or Ray) --unrolls: observations, actions, behaviour logits, rewards, the plans at the unroll's
          start, the gates (and STRAWe noise) of every step--> learner (a2c / ppo / impala)
          --weights--> actors

1. Validate the config (the actor-critic checks, the planning core's sizes).
2. Probe the env and build the learner: the ``network`` section's torso and hidden layer feed
   :class:`~agents.straw.core.STRAWCore` (``straw`` section).
3. Actors act with the plans: the feature network runs only on the steps whose gate says re-plan.
4. The learner replays each unroll from its stored plans with the recorded gates (straight-through gradient to the
   commitment plan) and adds STRAWe's KL and the commitment cost to the actor-critic loss; TensorBoard gets
   ``charts/committed_fraction`` and ``charts/macro_action_length``.
5. Checkpoints, resume and evaluation as for every algorithm on the runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agents.runtime.loop import Hook, StopTraining, TrainState, run_training
from agents.straw.builder import BUILDER
from agents.straw.config import StrawConfig

__all__ = ["StopTraining", "TrainState", "train"]


def train(cfg: StrawConfig, run_dir: str | Path | None = None, resume: bool = False,
          hooks: Sequence[Hook] = ()) -> TrainState:
    """Train a STRAW agent as configured; returns the final counters (see the module docstring)."""
    return run_training(BUILDER, cfg, run_dir=run_dir, resume=resume, hooks=hooks)
