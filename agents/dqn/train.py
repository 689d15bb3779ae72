"""DQN training, top to bottom: what a run does, in the order it does it.

    actors (local or Ray) --chunks of n-step transitions + priorities--> replay --batches--> learner
          ^------------------------- weights, one ray.put per publication ---------------------'

1. Validate the config and load what the actors will need (an informed-exploration world model is checked here).
2. Probe the env (observation shape, actions, frame skip) and build the learner: a replay that stores each frame
   once (one shard per actor) and the Double DQN update (``agents/dqn/learning.py``).
3. Start the actors (in-process, or Ray actors; a shared density server first if configured), each building
   ``make_dqn_parts`` (``agents/dqn/actor.py``): vector env, epsilon-greedy policy, n-step adder, trackers.
4. Loop (``agents/runtime/loop.py``, the same loop for every algorithm): collect chunks within the rate limiter's
   budget (``agent.update_period`` agent steps per update, after ``agent.learning_starts_frames``), put them in
   replay, update, publish weights every ``runtime.publish_every_updates``; log, checkpoint atomically.
5. Write a last checkpoint, close the actors, and evaluate (Machado protocol) if ``run.eval_episodes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agents.dqn.builder import BUILDER
from agents.dqn.config import DQNConfig
from agents.runtime.loop import Hook, StopTraining, TrainState, run_training

__all__ = ["StopTraining", "TrainState", "train"]


def train(cfg: DQNConfig, run_dir: str | Path | None = None, resume: bool = False,
          hooks: Sequence[Hook] = ()) -> TrainState:
    """Train a DQN agent as configured; returns the final counters.

    :param cfg: the merged config.
    :param run_dir: where to write (default ``runs_dir/name``).
    :param resume: continue the run in ``run_dir`` from its newest checkpoint.
    :param hooks: called with the live :class:`TrainState` after every collected batch of chunks; a hook may
        raise :class:`StopTraining` to end the run early (used by benchmarks).
    """
    return run_training(BUILDER, cfg, run_dir=run_dir, resume=resume, hooks=hooks)
