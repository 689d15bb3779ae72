"""Local mode (``runtime.num_actors: 0``): one :class:`EnvActor` in the driver's process, no Ray.

Acting and learning interleave in a fixed order, so a run with a fixed seed is deterministic: the mode for
tests and for debugging with a plain debugger.
"""

from __future__ import annotations

from typing import Any

from agents.runtime.actor import ActorOutput, EnvActor, PartsFn


class LocalRuntime:
    """Same interface as :class:`agents.runtime.ray_runtime.RayRuntime`.

    :param parts_fn: builds the actor's :class:`~agents.runtime.algorithm.ActorParts`.
    :param cfg: the algorithm's config.
    :param seed: env seed of the single actor.
    :param chunk_steps: vector-env steps per chunk.
    """

    num_actors = 1
    restarts = 0

    def __init__(self, parts_fn: PartsFn, cfg: Any, seed: int, chunk_steps: int, torch_threads: int = 1) -> None:
        self.actor = EnvActor(0, parts_fn, cfg, seed=seed, torch_threads=torch_threads)
        self.chunk_steps = chunk_steps
        self._weights: Any = None
        self._version = -1

    @property
    def steps_per_chunk(self) -> int:
        return self.chunk_steps * self.actor.obs.shape[0]

    def publish(self, weights: Any, version: int = 0) -> None:
        """Hand new weights (the learner's ``version``: its update count) to the actor before its next chunk
        (same timing as in Ray mode)."""
        self._weights, self._version = weights, version

    def poll(self, frames: int, budget_steps: int, block: bool) -> list[ActorOutput]:
        """Run one chunk if the rate limiter's budget allows it (``budget_steps`` >= one chunk)."""
        if budget_steps < self.steps_per_chunk:
            return []
        weights, self._weights = self._weights, None
        return [self.actor.run(self.chunk_steps, frames, weights, self._version)]

    def actor_states(self) -> list[dict[str, Any]]:
        """Each actor's :meth:`EnvActor.get_state` (checkpointed with the run)."""
        return [self.actor.get_state()]

    def set_actor_states(self, states: list[dict[str, Any]]) -> None:
        """Restore :meth:`actor_states` of a resumed run (extra states, from more actors, are dropped)."""
        if states:
            self.actor.set_state(states[0])

    def close(self) -> None:
        self.actor.close()
