"""What every agent family's actors share to earn an exploration bonus (``exploration.bonus``): a scorer that turns
the newest observations into intrinsic rewards with a :class:`~worldmodels.protocols.NoveltySource` (local, or a
shared one in a Ray actor), the episode tracker that logs the bonus, and the random play that seeds RND's input
statistics.

DQN's n-step adder (:mod:`agents.dqn.actor`) and the actor-critic trajectory adder (:mod:`agents.actor_critic.actor`)
both score through :class:`NoveltyScorer`, so an env family's preprocessing (:mod:`envs.novelty`) and the source's
order of operations (score, then learn) are written once. What each family does with the bonus differs: DQN adds it to
the reward; the actor-critic adds it (A3C+) or keeps it as a second reward stream (RND's two value heads).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.novelty import NoveltyInput, env_family, last_counts, make_novelty_source, novelty_input
from worldmodels.common.checks import Choice
from worldmodels.protocols import NoveltySource

__all__ = ["BonusChoice", "BonusStats", "NoveltyScorer", "last_counts", "make_scorer", "random_play_inputs"]


class BonusChoice(Choice):
    """``exploration.bonus`` of every agent family: no bonus, or the novelty source that scores it."""

    none = "none"
    cts = "cts"
    pixelcnn = "pixelcnn"
    rnd = "rnd"


class NoveltyScorer:
    """Scores, then learns, the newest observations of a vector env with one novelty source.

    :param source: a local :class:`~worldmodels.protocols.NoveltySource`, or None with ``server``.
    :param novelty: what the source scores of a batch of observations (:func:`envs.novelty.novelty_input`); None:
        Atari's newest frame at 42x42 and 8 levels (``preprocess_frames(obs[:, -1])``, DQN's pre-family input).
    :param server: a Ray actor handle whose ``score.remote(inputs, novelty)`` returns ``(bonus, counts)`` (DQN's
        shared density model), or None.
    """

    def __init__(self, source: NoveltySource | None, novelty: NoveltyInput | None = None, server: Any = None) -> None:
        if (source is None) == (server is None):
            raise ValueError("give the scorer a local novelty source or a shared server, exactly one of them")
        self.source, self.novelty, self.server = source, novelty, server
        if novelty is None:
            from worldmodels.density import preprocess_frames  # only actors with a bonus load the density package

            self._preprocess = preprocess_frames

    def inputs(self, obs: np.ndarray) -> np.ndarray:
        """The source's input of observations ``[N, *obs_shape]`` (see :mod:`envs.novelty`)."""
        return self.novelty(obs) if self.novelty is not None else self._preprocess(obs[:, -1])

    def score(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bonus and pseudo-count float64 ``[N]`` of observations ``obs`` ``[N, *obs_shape]``, learned in order
        (counts are NaN for RND)."""
        frames = self.inputs(obs)
        if self.server is not None:
            import ray

            return ray.get(self.server.score.remote(frames, self.novelty))
        assert self.source is not None
        bonus = self.source.step(frames)
        return bonus, last_counts(self.source, len(frames))

    def state_dict(self) -> dict[str, Any]:
        """The local source's state (empty with a shared server: the server saves its own)."""
        return self.source.state_dict() if self.source is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.source is not None and state:
            self.source.load_state_dict(state)


def make_scorer(bonus: str, beta: float, game: str, obs_shape: tuple[int, ...], seed: int,
                key: str = "exploration.bonus") -> NoveltyScorer:
    """A local scorer for ``bonus`` ("cts", "pixelcnn" or "rnd") on observations of ``game``'s env family.

    :raises ValueError: a family the source cannot score (a pseudo-count on MinAtar Seaquest's 10 channels), naming
        ``key`` and the fix.
    """
    novelty = novelty_input(env_family(game), bonus, obs_shape, key=key)
    return NoveltyScorer(make_novelty_source(bonus, novelty, beta, seed=seed), novelty)


def random_play_inputs(env: Any, scorer: NoveltyScorer, steps: int, seed: int) -> np.ndarray:
    """The source inputs of the observations of ``steps`` uniformly random vector steps of ``env`` from a reset
    (:func:`envs.wrappers.random_play`, the bonus wrappers' own), for RND's input statistics before training (Burda
    et al. 2018, Sec. 2.3). The env is left mid-game: the actor resets it before it acts."""
    from envs.wrappers import random_play

    return np.concatenate([scorer.inputs(obs) for obs in random_play(env, steps, seed)])


class BonusStats:
    """Episode tracker (see :class:`agents.runtime.actor.EpisodeTracker`) of the exploration bonus: per game
    ``charts/intrinsic_return`` (the undiscounted sum of its bonuses); per chunk ``explore/pseudo_count_mean`` (finite
    pseudo-counts of the real steps; a frame without prediction gain has an infinite count and is left out),
    ``explore/intrinsic_reward_mean`` and ``explore/density_frames`` (frames this actor has scored, reset frames
    included)."""

    def __init__(self, num_envs: int) -> None:
        self._episode = np.zeros(num_envs, np.float64)
        self._bonus_sum = 0.0
        self._count_sum = 0.0
        self._num = 0
        self._num_finite = 0
        self.frames_learned = 0

    def record(self, bonus: np.ndarray, counts: np.ndarray, live: np.ndarray) -> None:
        """Bonuses and pseudo-counts float64 [N] of one vector step; ``live`` bool [N] marks real steps."""
        self._episode += np.where(live, bonus, 0.0)
        self._bonus_sum += float(bonus[live].sum())
        finite = counts[live][np.isfinite(counts[live])]
        self._count_sum += float(finite.sum())
        self._num += int(live.sum())
        self._num_finite += len(finite)
        self.frames_learned += len(bonus)

    def on_reset(self, info: dict[str, Any]) -> None:
        self._episode[:] = 0.0

    def on_step(self, info: dict[str, Any], live: np.ndarray) -> None:
        pass  # the adder records the bonus of each step itself

    def end_episode(self, env_index: int) -> dict[str, float]:
        value = float(self._episode[env_index])
        self._episode[env_index] = 0.0
        return {"charts/intrinsic_return": value}

    def flush(self) -> tuple[dict[str, float], dict[str, list[int]]]:
        scalars = {"explore/density_frames": float(self.frames_learned)}
        if self._num:
            scalars["explore/intrinsic_reward_mean"] = self._bonus_sum / self._num
        if self._num_finite:
            scalars["explore/pseudo_count_mean"] = self._count_sum / self._num_finite
        self._bonus_sum = self._count_sum = 0.0
        self._num = self._num_finite = 0
        return scalars, {}
