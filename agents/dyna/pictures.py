"""Pictures of the imagination during a Dyna run: ``imagination/step_<frames>.gif`` every ``dyna.gif_every_frames``.

Each picture is a real segment of a game beside the world model's open-loop rollout from the same start under the
same actions (:func:`worldmodels.grid.pictures.rollout_frames`: real | imagined | where they differ), so that the
run's folder shows the imagination improving as the model learns. The segment is played by the learner in an env of
its own, never an actor's: game ``n`` of the run (``n`` counting the pictures this process wrote) is reset with seed
``run.seed + GIF_SEED + n``, apart from the actors' (``run.seed + 1000 (i + 1)``) and evaluation's
(``run.seed + 99991``), and played by the current Q-network, epsilon-greedy with :data:`GIF_EPSILON`, from a random
point in the first ``2 * dyna.gif_steps`` steps of the game. Nothing here touches the learner's random state, so a
run draws the same training batches with pictures on or off. A picture that fails is logged and skipped: it never
stops a run.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

from agents.dqn.actor import EpsilonGreedyPolicy
from agents.dqn.networks import QNetwork
from agents.dyna.config import DynaConfig
from worldmodels.grid import GridWorldModel, open_loop_rollout, play_episodes
from worldmodels.grid.episodes import window
from worldmodels.grid.pictures import rollout_frames, write_gif

log = logging.getLogger(__name__)

#: Offset of the picture games' seeds from ``run.seed``.
GIF_SEED = 500_000
#: Exploration of the policy that plays the real segment (a little, so the actions vary as in training).
GIF_EPSILON = 0.05


class ImaginationGifs:
    """Writes a GIF of an imagined rollout beside the real one every ``dyna.gif_every_frames`` real frames.

    :param cfg: the run's config (``env.game``, ``run.seed``, ``dyna.gif_every_frames``, ``dyna.gif_steps``).
    """

    def __init__(self, cfg: DynaConfig) -> None:
        self.cfg = cfg
        self.every = cfg.dyna.gif_every_frames
        self.steps = cfg.dyna.gif_steps
        self.written = 0
        """Pictures written by this process."""
        self._next: int | None = None  # frames of the next picture (set at the first call: a resumed run too)
        self._env: Any = None

    def maybe_write(self, counters: Any, model: Any, q_network: QNetwork) -> Path | None:
        """Write the picture if ``counters.frames`` has reached the next multiple of ``dyna.gif_every_frames``.

        :param counters: the runtime's counters (``frames``; ``run_dir`` on a live run's TrainState: without one,
            nothing is written). :param model: the world model (a grid world model; any other turns the pictures
            off with one warning). :param q_network: the online Q-network.
        :return: the GIF written, or None.
        """
        run_dir = getattr(counters, "run_dir", None)
        frames = int(counters.frames)
        if self.every <= 0 or run_dir is None:
            return None
        if not isinstance(model, GridWorldModel):  # the pictures draw MinAtar's channels: said once, then off
            log.warning("dyna.gif_every_frames=%d: pictures of the imagination are drawn for MinAtar's grid world "
                        "model only, not for a %s; no GIFs in this run.", self.every, type(model).__name__)
            self.every = 0
            return None
        if self._next is None:
            self._next = (frames // self.every + 1) * self.every
        if frames < self._next:
            return None
        self._next = (frames // self.every + 1) * self.every
        path = Path(run_dir) / "imagination" / f"step_{frames:012d}.gif"
        try:
            return self.write(path, model, q_network)
        except Exception as err:  # a picture must never stop a run
            log.warning("could not write %s: %s", path, err)
            return None

    def write(self, path: Path, model: GridWorldModel, q_network: QNetwork) -> Path:
        """Play the next real segment and write its GIF to ``path`` (atomically)."""
        from envs import make_env

        seed = self.cfg.run.seed + GIF_SEED + self.written
        if self._env is None:
            self._env = make_env(self.cfg.env.game, num_envs=None, seed=seed)
        policy = EpsilonGreedyPolicy(copy.deepcopy(q_network).cpu(), self.cfg, actor_id=0, seed=seed,
                                     fixed_epsilon=GIF_EPSILON)
        offset = int(np.random.default_rng(seed).integers(2 * self.steps))
        episode = play_episodes(self._env, lambda obs: policy.act(obs, 0)[0], 1, seed,
                                max_steps=offset + self.steps)[0]
        start = max(0, min(offset, len(episode) - self.steps))
        w = window(episode, start, self.steps, model.context)
        imagined = open_loop_rollout(model, w["history"][None], w["actions"][None])["frames"]
        real = np.concatenate([w["history"][None, -1:], w["next_frames"][None]], axis=1)
        write_gif(path, rollout_frames(real, imagined, w["valid"][None]))
        self.written += 1
        return path
