"""The acting half of Acme's actor/learner split, shared by every algorithm and both runtimes.

An :class:`EnvActor` owns the :class:`~agents.runtime.algorithm.ActorParts` its algorithm's parts function
builds: a vector env, a :class:`Policy` (how to act; weights pulled from the learner) and an :class:`Adder`
(how experience becomes the learner's payload: n-step transitions for DQN, trajectories for an actor-critic
learner, (embedding, return) pairs for episodic control). The same object runs in-process
(local mode) and as a Ray actor, so algorithms never see the difference.

Optional :class:`EpisodeTracker` s add statistics without touching the loop: per finished game (e.g. the
intrinsic return of an exploration bonus, the rooms visited in Montezuma's Revenge), per chunk (e.g. the mean
pseudo-count), and sets of things discovered (e.g. rooms), which the driver unions over actors.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

# The contracts live in the seam's one file; imported here too, where callers have long found them.
from agents.runtime.algorithm import (
    ActorOutput,
    ActorParts,
    ActsPerEnv,
    Adder,
    EpisodeTracker,
    LogsScalars,
    PartsFn,
    Policy,
    Stateful,
)
from envs.vector import SplitVector, VectorStep

__all__ = ["ActorOutput", "ActorParts", "Adder", "EnvActor", "EpisodeTracker", "PartsFn", "Policy"]


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
    :param parts_fn: builds this actor's :class:`~agents.runtime.algorithm.ActorParts`.
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
        if not isinstance(parts, ActorParts):
            raise TypeError(f"{getattr(parts_fn, '__name__', parts_fn)!r} returned {type(parts).__name__}, not "
                            "ActorParts: a parts function returns ActorParts(env, policy, adder, trackers) "
                            "(agents.runtime.algorithm).")
        self.env, self.policy, self.adder = parts.env, parts.policy, parts.adder
        self.trackers: list[EpisodeTracker] = list(parts.trackers)
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
        # Double-buffered sampling (env.splits > 1) where the policy acts on each env alone; a policy with state
        # across steps or per-env settings steps all groups at once (their emulators still run side by side).
        self._pipelined = (isinstance(self.env, SplitVector) and self.env.num_groups > 1
                           and isinstance(self.policy, ActsPerEnv) and self.policy.acts_per_env)

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
        steps = self._pipelined_steps(num_steps, frames) if self._pipelined else self._steps(num_steps, frames)
        for actions, extras, (next_obs, rewards, terminated, truncated, info) in steps:
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
        extras_out = dict(self.policy.log_scalars(frames)) if isinstance(self.policy, LogsScalars) else {}
        discovered: dict[str, list[int]] = {}
        for tracker in self.trackers:
            scalars, found = tracker.flush()
            extras_out.update(scalars)
            for tag, items in found.items():
                discovered.setdefault(tag, []).extend(items)
        return ActorOutput(self.actor_id, self.adder.flush(), env_steps, returns, lengths,
                           time.perf_counter() - start, extras_out, stats, discovered, self._weights_version)

    def _steps(self, num_steps: int, frames: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray], VectorStep]]:
        """``num_steps`` vector steps: act on every env, step every env; (actions, extras, the env's step)."""
        for _ in range(num_steps):
            actions, extras = self.policy.act(self.obs, frames, self._starts)
            yield actions, extras, self.env.step(actions)

    def _pipelined_steps(self, num_steps: int, frames: int,
                         ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray], VectorStep]]:
        """As :meth:`_steps`, on a :class:`~envs.vector.SplitVector` with a policy that acts per env: group k's
        next action is chosen as soon as its step arrives, while the other groups' emulators run, and sent at
        once (double-buffered sampling). Per step: receive group 0, act on it for the next step and send; then
        group 1, ... The policy sees the groups in index order, step after step, so it draws its random numbers
        in the order one batched call over all envs would; every step of a chunk is acted on the weights the chunk
        began with, and the chunk ends with no step in flight."""
        env = self.env
        parts = env.group_slices

        def launch(k: int, obs: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            actions, extras = self.policy.act(obs, frames, starts)
            env.send_group(k, actions)
            return actions, extras

        # The first step of the chunk: act on each group in turn; the earlier groups emulate meanwhile.
        sent = [launch(k, self.obs[part], self._starts[part]) for k, part in enumerate(parts)]
        for s in range(num_steps):
            acted, received = list(sent), []
            for k, part in enumerate(parts):
                received.append(env.recv_group(k))
                if s + 1 < num_steps:
                    # The next step's starts are this step's resetting flags (see run()), known before it.
                    sent[k] = launch(k, received[k][0], self._resetting[part])
            extras = {key: np.concatenate([e[key] for _, e in acted]) for key in acted[0][1]}
            yield np.concatenate([a for a, _ in acted]), extras, env.merge(received)

    def _parts(self) -> dict[str, Any]:
        # The env too: one with a state a resumed run needs (the maze's curriculum position) has a state_dict.
        return {"env": self.env, "policy": self.policy, "adder": self.adder,
                **{f"tracker{i}": t for i, t in enumerate(self.trackers)}}

    def get_state(self) -> dict[str, Any]:
        """What this actor learned that a resumed run needs (e.g. its density model, the maze's curriculum
        position): the ``state_dict()`` of its env, policy, adder and trackers that are
        :class:`~agents.runtime.algorithm.Stateful`."""
        return {name: part.state_dict() for name, part in self._parts().items() if isinstance(part, Stateful)}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned (parts without a saved state keep theirs)."""
        parts = self._parts()
        for name, part_state in state.items():
            part = parts.get(name)
            if isinstance(part, Stateful):
                part.load_state_dict(part_state)

    def close(self) -> None:
        self.env.close()
