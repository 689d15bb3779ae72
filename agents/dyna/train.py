"""Dyna training, top to bottom: DQN's run (``agents/dqn/train.py``) whose learner also learns a world model and
trains on what it imagines.

    actors (local or Ray, DQN's) --one-step transitions--> replay --real batches--> world model (grid)
                                                              |                        | k-step rollouts from
                                                              |                        v replayed real states
                                                              +--real--> DQN update <--imagined buffer
          ^------------------------------ weights, one ray.put per publication ----------'

1. Validate the config: DQN's checks, a MinAtar game (the grid world model) or an Atari game (the video
   predictor, ``dyna_atari``), ``agent.n_step=1``, the world model's and ``dyna``'s settings.
2. Probe the env and build the learner: DQN's replay learner, the grid world model and its trainer, the imagined
   buffer (``agents/dyna/learning.py``).
3. Start DQN's actors; they act in the real env only.
4. The runtime's loop (``agents/runtime/loop.py``) at DQN's replay ratio; each update trains the world model,
   branches rollouts (after ``dyna.model_warmup_transitions``) and runs DQN's step on mixed batches. TensorBoard:
   real frames (``charts/``), ``worldmodel/`` (imagined transitions, losses, one-step accuracy), ``losses/``.
5. Checkpoints (world model, its optimiser, the imagined buffer with the replay), resume and evaluation as DQN's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agents.dyna.builder import BUILDER
from agents.dyna.config import DynaConfig
from agents.runtime.loop import Hook, StopTraining, TrainState, run_training

__all__ = ["StopTraining", "TrainState", "train"]


def train(cfg: DynaConfig, run_dir: str | Path | None = None, resume: bool = False,
          hooks: Sequence[Hook] = ()) -> TrainState:
    """Train a Dyna agent as configured; returns the final counters (see the module docstring)."""
    return run_training(BUILDER, cfg, run_dir=run_dir, resume=resume, hooks=hooks)
