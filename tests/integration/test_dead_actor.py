"""A dead Ray actor is never silently dropped: an idle one's death is seen within a poll or so, the run stops (or the
actor restarts) as runtime.max_actor_restarts says, and a checkpoint never lacks an actor's state."""

from __future__ import annotations

import os
import signal
import time

import pytest

from agents.runtime.ray_runtime import PING_SECONDS, ActorsLostError, RayRuntime
from tests.algos.fakes import sleepy_parts

pytestmark = pytest.mark.usefixtures("ray_local")


def _kill_9(runtime: RayRuntime, i: int) -> None:
    import ray

    os.kill(ray.get(runtime.actors[i].where.remote())["pid"], signal.SIGKILL)


def _poll_idle(runtime: RayRuntime, seconds: float) -> None:
    """Poll as the loop does while the rate limiter gives the actors no work."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runtime.poll(0, budget_steps=0, block=False)
        time.sleep(0.05)


def test_an_idle_actor_that_dies_for_good_stops_the_run_at_once() -> None:
    runtime = RayRuntime(sleepy_parts, None, num_actors=2, seed=0, chunk_steps=1, steps_per_chunk=2,
                         actor_cpus=0.5, max_restarts=0)
    try:
        _kill_9(runtime, 1)
        start = time.monotonic()
        with pytest.raises(ActorsLostError, match=r"actor 1 died .*runtime\.max_actor_restarts=0"):
            _poll_idle(runtime, 10 * PING_SECONDS + 5)
        assert time.monotonic() - start < 2 * PING_SECONDS + 5
    finally:
        runtime.close()


def test_a_checkpoint_never_silently_lacks_a_dead_actors_state() -> None:
    runtime = RayRuntime(sleepy_parts, None, num_actors=2, seed=0, chunk_steps=1, steps_per_chunk=2,
                         actor_cpus=0.5, max_restarts=0)
    try:
        _kill_9(runtime, 0)
        with pytest.raises(ActorsLostError, match=r"actor 0 died .*runtime\.max_actor_restarts=0"):
            runtime.actor_states()
    finally:
        runtime.close()


def test_an_idle_actor_that_dies_is_restarted_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    runtime = RayRuntime(sleepy_parts, None, num_actors=2, seed=0, chunk_steps=1, steps_per_chunk=2,
                         actor_cpus=0.5, max_restarts=1)
    try:
        _kill_9(runtime, 1)
        deadline = time.monotonic() + 60
        while runtime.restarts == 0 and time.monotonic() < deadline:
            _poll_idle(runtime, 0.2)
        assert runtime.restarts == 1
        assert len(runtime.actor_states()) == 2  # both answer: the restarted one with its new state
        outputs = []
        while not {o.actor_id for o in outputs} >= {1} and time.monotonic() < deadline:
            outputs += runtime.poll(0, budget_steps=4, block=True)  # and the restarted actor works again
        assert 1 in {o.actor_id for o in outputs}
    finally:
        runtime.close()
