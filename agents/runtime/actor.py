"""The acting half of Acme's actor/learner split, shared by every algorithm and both runtimes.

An :class:`EnvActor` owns a vector env, a :class:`Policy` (how to act; weights pulled from the learner) and an
:class:`Adder` (how experience becomes the learner's payload: n-step transitions for DQN, trajectories for
an actor-critic learner, (embedding, return) pairs for episodic control). The same object runs in-process
(local mode) and as a Ray actor, so algorithms never see the difference.

Optional :class:`EpisodeTracker` s add statistics without touching the loop: per finished game (e.g. the
intrinsic return of an exploration bonus, the rooms visited in Montezuma's Revenge), per chunk (e.g. the mean
pseudo-count), and sets of things discovered (e.g. rooms), which the driver unions over actors.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Policy(Protocol):
    """Maps a batch of observations to actions. ``extras`` carry what the adder needs (e.g. Q-values, logits).

    A recurrent policy keeps its own state and resets it where ``starts`` is True.
    """

    def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:param obs: uint8 ``[N, *obs_shape]`` (``[N, 4, 84, 84]`` on Atari).
        :param frames: global emulator frames (for schedules).
        :param starts: bool ``[N]``, True where ``obs`` is the first observation of a game (the
            :class:`EnvActor` always passes it; None, from a direct caller, means "no game starts here").
        :return: int64 actions ``[N]`` and extras (arrays with leading dim N)."""

    def set_weights(self, weights: Any) -> None:
        """Load weights published by the learner."""


class Adder(Protocol):
    """Turns vector-env steps into the learner's payload."""

    def reset(self, obs: np.ndarray) -> None:
        """First observations ``[N, 4, 84, 84]`` of N new episodes."""

    def add(self, actions: np.ndarray, extras: dict[str, np.ndarray], rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, next_obs: np.ndarray, info: dict[str, Any]) -> None:
        """One vector-env step (NextStep autoreset semantics, see ``envs``); ``info["game_over"]`` says
        which envs reset on the next step (a life-loss terminal does not)."""

    def flush(self) -> Any:
        """Everything ready since the last flush."""


class EpisodeTracker(Protocol):
    """Statistics beside the adder: per game, per chunk, and discoveries that the driver unions over actors.

    Tags are TensorBoard tags (``"charts/intrinsic_return"``, ``"explore/rooms_visited"``).
    """

    def on_reset(self, info: dict[str, Any]) -> None:
        """After ``env.reset()``, with its info."""

    def on_step(self, info: dict[str, Any], live: np.ndarray) -> None:
        """After each vector step (after the adder saw it). ``live``: bool [N], False for autoreset steps."""

    def end_episode(self, env_index: int) -> dict[str, float]:
        """Env ``env_index``'s game ended at the last step: its statistics (tag -> value); start a new game."""

    def flush(self) -> tuple[dict[str, float], dict[str, list[int]]]:
        """Per-chunk scalars (tag -> value) and the items first seen since the last flush (tag of the driver's
        running count -> items)."""


#: Builds (vector env, policy, adder) or (vector env, policy, adder, trackers) inside the actor's process. Must be
#: pickleable by reference (a module-level function, or a functools.partial of one) and take the algorithm's
#: config and the actor index.
PartsFn = Callable[[Any, int], "tuple[Any, Policy, Adder] | tuple[Any, Policy, Adder, list[EpisodeTracker]]"]


@dataclass
class ActorOutput:
    """One chunk of acting, as returned to the driver."""

    actor_id: int
    payload: Any
    env_steps: int
    """Agent steps taken in this chunk, summed over the vector env (reset steps excluded)."""
    episode_returns: list[float] = field(default_factory=list)
    """Raw game scores (unclipped) of games that ended in this chunk."""
    episode_lengths: list[int] = field(default_factory=list)
    """Their lengths in agent steps."""
    seconds: float = 0.0
    """Wall time the chunk took in the actor."""
    extras: dict[str, float] = field(default_factory=dict)
    """Scalars for logging, e.g. the actor's epsilon; a key with a "/" is a full TensorBoard tag
    (``explore/pseudo_count_mean``), other keys are logged under ``charts/``."""
    episode_stats: list[dict[str, float]] = field(default_factory=list)
    """Per game that ended in this chunk (aligned with ``episode_returns``): tracker statistics, tag -> value."""
    discovered: dict[str, list[int]] = field(default_factory=dict)
    """Items this actor saw for the first time during this chunk, keyed by the TensorBoard tag of the run's
    running count (``{"explore/rooms_total": [2]}``); the driver unions them over actors."""
    weights_version: int = -1
    """The learner update count of the weights this chunk was collected with (-1: initial weights never
    published); the learner's count minus this is the policy lag (V-trace needs it)."""


def _set_niceness(niceness: int) -> None:
    import logging
    import os

    try:
        if os.getpriority(os.PRIO_PROCESS, 0) != niceness:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except (PermissionError, OSError) as err:
        logging.getLogger(__name__).warning(
            "could not set actor niceness to %d (%s): start Ray with RAY_worker_niceness=%d, or raise "
            "runtime.actor_niceness", niceness, err, niceness)


class EnvActor:
    """Steps a vector env with a policy and feeds an adder.

    :param actor_id: index of this actor (selects its seed, its epsilon under Ape-X, its replay shard).
    :param parts_fn: builds (env, policy, adder) for this actor.
    :param cfg: the algorithm's config, passed to ``parts_fn``.
    :param seed: seed of the env's reset.
    :param torch_threads: torch threads in this process (1 on shared machines).
    :param niceness: Unix niceness to set this process to (Ray actors; None leaves it). Lowering it below the
        current value needs privileges: where the OS refuses, the actor logs a warning and runs on.
    """

    def __init__(self, actor_id: int, parts_fn: PartsFn, cfg: Any, seed: int, torch_threads: int = 1,
                 niceness: int | None = None) -> None:
        import torch

        torch.set_num_threads(torch_threads)
        if niceness is not None:
            _set_niceness(niceness)
        self.actor_id = actor_id
        parts = parts_fn(cfg, actor_id)
        self.env, self.policy, self.adder = parts[:3]
        self.trackers: list[EpisodeTracker] = list(parts[3]) if len(parts) > 3 else []
        self.obs, info = self.env.reset(seed=seed)
        self.adder.reset(self.obs)
        for tracker in self.trackers:
            tracker.on_reset(info)
        n = self.obs.shape[0]
        self._ep_return = np.zeros(n, dtype=np.float64)
        self._ep_length = np.zeros(n, dtype=np.int64)
        # NextStep autoreset: the step after a game ends only resets that env; it is not an agent step.
        self._resetting = np.zeros(n, dtype=bool)
        # Which observations are the first of a game (a recurrent policy resets its state there).
        self._starts = np.ones(n, dtype=bool)
        self._weights_version = -1
        # Which life of this actor this is: Ray restarts a dead actor by constructing it again in a new process,
        # so the driver tells a restart (a new token) from a call that merely failed (the same token).
        self._incarnation = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"

    def ping(self) -> int:
        """Cheap liveness check; returns the actor id."""
        return self.actor_id

    def incarnation(self) -> str:
        """A token unique to this construction of the actor (a restarted actor returns a new one)."""
        return self._incarnation

    def where(self) -> dict[str, Any]:
        """Process id, niceness and, under Ray, the node id this actor runs on (to check placement across nodes)."""
        import os

        node = None
        try:
            import ray

            if ray.is_initialized():
                node = ray.get_runtime_context().get_node_id()
        except ImportError:
            pass
        return {"actor_id": self.actor_id, "pid": os.getpid(), "node_id": node,
                "niceness": os.getpriority(os.PRIO_PROCESS, 0)}

    def run(self, num_steps: int, frames: int, weights: Any = None, version: int = -1) -> ActorOutput:
        """Act for ``num_steps`` vector steps and return the adder's payload.

        :param num_steps: vector-env steps (each is ``num_envs`` agent steps).
        :param frames: global emulator frames so far (drives epsilon schedules).
        :param weights: new learner weights, or None to keep the current ones.
        :param version: the learner's update count when ``weights`` were published.
        """
        start = time.perf_counter()
        if weights is not None:
            self.policy.set_weights(weights)
            self._weights_version = version
        returns: list[float] = []
        lengths: list[int] = []
        stats: list[dict[str, float]] = []
        env_steps = 0
        for _ in range(num_steps):
            actions, extras = self.policy.act(self.obs, frames, self._starts)
            next_obs, rewards, terminated, truncated, info = self.env.step(actions)
            # The observation a reset step returns is the first of a new game.
            self._starts = self._resetting.copy()
            self.adder.add(actions, extras, rewards, terminated, truncated, next_obs, info)
            live = ~self._resetting
            for tracker in self.trackers:
                tracker.on_step(info, live)
            env_steps += int(live.sum())
            self._ep_return += np.where(live, info.get("raw_reward", rewards), 0.0)
            self._ep_length += live
            # A life-loss terminal (Nature preset) ends a learning episode but not the game: only at game
            # over does the env reset on the next step.
            ended = np.asarray(info.get("game_over", terminated | truncated))
            game_over = ended & live
            for i in np.flatnonzero(game_over):
                returns.append(float(self._ep_return[i]))
                lengths.append(int(self._ep_length[i]))
                episode: dict[str, float] = {}
                for tracker in self.trackers:
                    episode.update(tracker.end_episode(int(i)))
                stats.append(episode)
                self._ep_return[i] = 0.0
                self._ep_length[i] = 0
            self._resetting = game_over
            self.obs = next_obs
        extras_out = dict(getattr(self.policy, "log_scalars", lambda f: {})(frames))
        discovered: dict[str, list[int]] = {}
        for tracker in self.trackers:
            scalars, found = tracker.flush()
            extras_out.update(scalars)
            for tag, items in found.items():
                discovered.setdefault(tag, []).extend(items)
        return ActorOutput(self.actor_id, self.adder.flush(), env_steps, returns, lengths,
                           time.perf_counter() - start, extras_out, stats, discovered, self._weights_version)

    def _parts(self) -> dict[str, Any]:
        # The env too: one with a state a resumed run needs (the maze's curriculum position) has a state_dict.
        return {"env": self.env, "policy": self.policy, "adder": self.adder,
                **{f"tracker{i}": t for i, t in enumerate(self.trackers)}}

    def get_state(self) -> dict[str, Any]:
        """What this actor learned that a resumed run needs (e.g. its density model, the maze's curriculum
        position): the ``state_dict()`` of its env, policy, adder and trackers, where they have one."""
        return {name: part.state_dict() for name, part in self._parts().items() if hasattr(part, "state_dict")}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (parts without a saved state keep theirs)."""
        parts = self._parts()
        for name, part_state in state.items():
            part = parts.get(name)
            if part is not None and hasattr(part, "load_state_dict"):
                part.load_state_dict(part_state)

    def close(self) -> None:
        self.env.close()
