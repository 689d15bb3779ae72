"""Actor-critic training (A2C, PPO, IMPALA), top to bottom: what a run does, in the order it does it.

    actors (local or Ray) --unrolls: T + 1 observations, actions, behaviour logits, rewards, LSTM state-->
          learner (a2c / ppo / impala update) --weights, one ray.put per publication--> actors

1. Validate the config (synchronous objectives need ``runtime.chunk_steps == agent.unroll_length``,
   ``runtime.max_ahead_chunks == 0`` and ``runtime.publish_every_updates == 1``).
2. Probe the env and build the :class:`~agents.actor_critic.learning.ActorCriticLearner` (network, optimiser).
3. Start the actors (in-process, or Ray actors), each building ``make_ac_parts`` (``agents/actor_critic/actor.py``):
   vector env, sampling policy (its LSTM state lives here), trajectory adder.
4. Loop (``agents/runtime/loop.py``, the same loop for every algorithm). A2C and PPO: every actor collects one
   unroll per env on the newest weights, then one update (PPO: its epochs of minibatches), then the weights go out.
   IMPALA: actors run on; each update takes ``agent.batch_chunks`` chunks as they come and corrects for their
   policy lag with V-trace. Log (``charts/policy_lag``, ``charts/learner_busy_fraction``), checkpoint atomically.
5. Write a last checkpoint, close the actors, and evaluate (Machado protocol) if ``run.eval_episodes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agents.actor_critic.builder import BUILDER
from agents.actor_critic.config import ActorCriticConfig
from agents.runtime.loop import Hook, StopTraining, TrainState, run_training

__all__ = ["StopTraining", "TrainState", "train"]


def train(cfg: ActorCriticConfig, run_dir: str | Path | None = None, resume: bool = False,
          hooks: Sequence[Hook] = ()) -> TrainState:
    """Train an actor-critic agent as configured; returns the final counters (see the module docstring).

    :param cfg: the merged config. :param run_dir: where to write (default ``runs_dir/name``).
    :param resume: continue the run in ``run_dir`` from its newest checkpoint.
    :param hooks: called with the live :class:`TrainState` after every collected batch of chunks; a hook may
        raise :class:`StopTraining` to end the run early (used by benchmarks).
    """
    return run_training(BUILDER, cfg, run_dir=run_dir, resume=resume, hooks=hooks)
