"""Ray mode (``runtime.num_actors >= 1``): remote :class:`EnvActor` s feeding the learner in the driver.

- Each actor has at most one chunk in flight; the driver resubmits as soon as it collects one, while the
  rate limiter's budget (set by the training loop from the replay ratio) allows, so actors never run more
  than ``max_ahead_chunks`` chunks ahead of the learner.
- Weights are published with one ``ray.put`` per publication; each actor receives the object reference with
  its next task only if it has not seen that version (a restarted actor gets it again).
- Actors are created with ``max_restarts``: when one dies, its task fails with ``RayActorError`` and Ray
  restarts the process. The driver then asks the actor for its incarnation token (:meth:`EnvActor.incarnation`),
  which waits out the restart (calls made while Ray restarts it fail with ``ActorUnavailableError`` and are
  retried a moment later), and resubmits work. ``restarts`` counts *new incarnations*, one per death: the calls
  that fail while an actor restarts are not deaths (counting those tripled the count of one kill -9). An actor Ray
  will no longer restart (``ActorDiedError`` after its ``max_restarts``) stops the run with an
  :class:`ActorsLostError` naming ``runtime.max_actor_restarts``.
- An idle actor (one the rate limiter gives no work) is pinged (:meth:`EnvActor.incarnation`) at most every
  :data:`PING_SECONDS`, so that its death is seen within a poll or so, not when it next gets work.
- A checkpoint never silently lacks an actor's state: :meth:`RayRuntime.actor_states` waits for a dead actor's
  restart and saves the new incarnation's state with a warning saying so, or stops the run if Ray will not
  restart it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from agents.runtime.actor import ActorOutput, EnvActor, PartsFn
from worldmodels.common.allocator import allocator_env
from worldmodels.common.scaffold import RunFailed, preserve_signal_handlers

log = logging.getLogger(__name__)

#: How often an idle actor is asked whether it is alive (seconds).
PING_SECONDS = 1.0
#: How long a checkpoint waits for a dead actor that Ray restarts (seconds).
RESTART_WAIT_SECONDS = 120.0

#: Environment of every Ray worker: one OpenMP thread that sleeps when idle (several processes share cores).
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "RAY_USAGE_STATS_ENABLED": "0"}


class ActorsLostError(RunFailed):
    """Ray actors died beyond what ``runtime.max_actor_restarts`` allows: the run stops, with no checkpoint after it
    (it would lack the dead actors' state); the run's last periodic checkpoint is where ``--resume`` continues."""


def worker_env() -> dict[str, str]:
    """:data:`WORKER_ENV` plus glibc keeping freed batch-sized blocks instead of an mmap/munmap per batch
    (:func:`worldmodels.common.allocator.allocator_env`: the tuned values, or the driver's own where set)."""
    return {**WORKER_ENV, **allocator_env()}


def init_ray(address: str | None, num_cpus: int | None = None, niceness: int = 0) -> bool:
    """Join ``address`` or start a local Ray bound to loopback; returns False if Ray was already running.

    :param address: "auto", "host:port" or None (start an embedded local instance).
    :param num_cpus: CPUs a local instance advertises (default: all cores).
    :param niceness: niceness of the workers a local instance starts (Ray's default is 15, which starves busy
        actors beside any other process); a joined cluster keeps its own, and each actor then adjusts itself
        where the OS allows (see :class:`agents.runtime.actor.EnvActor`).
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Read by the raylet this call starts, which applies it to every worker process it launches.
    os.environ.setdefault("RAY_worker_niceness", str(niceness))
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": worker_env()}, "log_to_driver": True}
    with _driver_keeps_its_signals():
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                     _node_ip_address="127.0.0.1", **kwargs)
    return True


@contextmanager
def _driver_keeps_its_signals() -> Iterator[None]:
    """While ``ray.init`` runs in the driver, keep Ray from taking SIGTERM over, so that SIGTERM ends a Ray run as
    SIGINT does (a last checkpoint, exit 143) through the run's own handler (RunScaffold's, or the CLI's):

    - ``ray.init`` installs a Python SIGTERM handler (``sys.exit(15)``: no checkpoint, a stack dump): it is not
      installed (a SIGTERM during the start-up is the run's too), and the handlers are put back afterwards should a
      Ray version install it another way;
    - the driver's core worker installs absl's failure-signal handler, which on SIGTERM prints a C++ stack dump,
      then aborts the process as it exits (status 134, after the checkpoint): it is left out of the driver only
      (``RAY_DISABLE_FAILURE_SIGNAL_HANDLER`` read at connection time); actors keep it.

    Both are Ray internals looked up by name: where a Ray version lacks them, nothing is changed.
    """
    private = getattr(ray, "_private", None)
    patches = [(getattr(private, "utils", None), "set_sigterm_handler", _keep_sigterm_handler),
               (getattr(private, "ray_constants", None), "RAY_DISABLE_FAILURE_SIGNAL_HANDLER", True)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches if hasattr(module, name)]
    with preserve_signal_handlers():
        for module, name, value in patches:
            if hasattr(module, name):
                setattr(module, name, value)
        try:
            yield
        finally:
            for module, name, value in saved:
                setattr(module, name, value)


def _keep_sigterm_handler(handler: Any) -> None:
    """Stands in for Ray's ``set_sigterm_handler`` while ``ray.init`` runs: the process keeps its own."""
    log.debug("kept this process's SIGTERM handler instead of Ray's %r", handler)


class RayRuntime:
    """Remote actors with the same interface as :class:`agents.runtime.local.LocalRuntime`.

    :param parts_fn: builds each actor's :class:`~agents.runtime.algorithm.ActorParts`, inside its process.
    :param cfg: the algorithm's config (pickled to every actor).
    :param num_actors: number of remote actors.
    :param seed: actor i resets its env with ``seed + 1000 * (i + 1)``.
    :param chunk_steps: vector-env steps per chunk.
    :param steps_per_chunk: agent steps per chunk (chunk_steps x num_envs), for the rate limiter.
    :param actor_cpus: CPUs Ray reserves per actor (fractions place more actors than cores; whole CPUs place
        actors across nodes).
    :param max_restarts: restarts Ray grants a dead actor.
    :param niceness: Unix niceness each actor process sets itself to (None: leave Ray's).
    :param restarts_setting: the setting that sets ``max_restarts``, named when actors died too often.
    """

    def __init__(self, parts_fn: PartsFn, cfg: Any, num_actors: int, seed: int, chunk_steps: int,
                 steps_per_chunk: int, torch_threads: int = 1, actor_cpus: float = 1.0,
                 max_restarts: int = 5, niceness: int | None = 0,
                 restarts_setting: str = "runtime.max_actor_restarts") -> None:
        remote_cls = ray.remote(num_cpus=actor_cpus, max_restarts=max_restarts, max_task_retries=0)(EnvActor)
        # Any: Ray types a handle as the actor class itself, whose plain methods have no `.remote` (only methods
        # decorated with @ray.method do), so the type system cannot follow calls made through the handle.
        self.actors: list[Any] = [
            remote_cls.remote(i, parts_fn, cfg, seed + 1000 * (i + 1), torch_threads, niceness)
            for i in range(num_actors)]
        self.num_actors = num_actors
        self.chunk_steps = chunk_steps
        self.steps_per_chunk = steps_per_chunk
        self.restarts = 0
        self.max_restarts = max_restarts
        self.restarts_setting = restarts_setting
        self._inflight: dict[ray.ObjectRef, int] = {}
        self._busy = [False] * num_actors
        self._weights_ref: ray.ObjectRef | None = None
        self._version = 0  # publications so far (actor i has seen publication _actor_version[i])
        self._learner_version = -1  # the learner's update count at the last publication
        self._actor_version = [0] * num_actors
        self._probes: dict[ray.ObjectRef, int] = {}  # incarnation queries of actors whose task failed
        self._probe_at: dict[int, float] = {}  # actors to query again at this time (they were restarting)
        self._pings: dict[ray.ObjectRef, int] = {}  # liveness queries of idle actors
        self._pinged_at = [time.monotonic()] * num_actors
        # The incarnation of each actor; also surfaces construction errors here, not later.
        self._incarnations: list[str] = ray.get([a.incarnation.remote() for a in self.actors])

    def publish(self, weights: Any, version: int = 0) -> None:
        """One ``ray.put`` per publication; actors fetch it with their next task.

        :param version: the learner's update count (returned in each chunk as ``weights_version``).
        """
        self._weights_ref = ray.put(weights)
        self._version += 1
        self._learner_version = version

    def _submit(self, i: int, frames: int) -> None:
        weights = None
        if self._weights_ref is not None and self._actor_version[i] < self._version:
            weights = self._weights_ref
            self._actor_version[i] = self._version
        ref = self.actors[i].run.remote(self.chunk_steps, frames, weights, self._learner_version)
        self._inflight[ref] = i
        self._busy[i] = True

    def poll(self, frames: int, budget_steps: int, block: bool) -> list[ActorOutput]:
        """Hand out work within ``budget_steps`` (agent steps the actors may still collect, in-flight chunks
        included), then return the chunks that are ready, waiting for one if ``block``."""
        now = time.monotonic()
        for i, at in list(self._probe_at.items()):
            if at <= now:
                del self._probe_at[i]
                self._probes[self.actors[i].incarnation.remote()] = i
        budget_steps -= len(self._inflight) * self.steps_per_chunk
        for i in range(self.num_actors):
            if not self._busy[i] and budget_steps >= self.steps_per_chunk:
                self._submit(i, frames)
                budget_steps -= self.steps_per_chunk
        pinged = set(self._pings.values())
        for i in range(self.num_actors):  # an idle actor's death is seen now, not when it next gets work
            if not self._busy[i] and i not in pinged and now - self._pinged_at[i] >= PING_SECONDS:
                self._pings[self.actors[i].incarnation.remote()] = i
                self._pinged_at[i] = now
        if not self._inflight and not self._probes and not self._pings:
            return []
        # Whatever is ready now; if blocking and nothing is, wait for the *first* chunk only (never for all:
        # that would move every actor in lock-step with the slowest), then take any others that are ready too.
        refs = [*self._inflight, *self._probes, *self._pings]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if block and not ready:
            ray.wait(refs, num_returns=1, timeout=None if not self._probe_at else 0.1)
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        outputs = []
        for ref in ready:
            if ref in self._probes:
                self._restarted(self._probes.pop(ref), ref)
                continue
            if ref in self._pings:
                self._pinged(self._pings.pop(ref), ref)
                continue
            i = self._inflight.pop(ref)
            try:
                outputs.append(ray.get(ref))
                self._busy[i] = False
            except RayActorError as err:
                # The actor died (or cannot be reached): find out whether Ray restarted it before sending more
                # work. It stays busy until then, and a restarted actor lost its weights, so send them again.
                log.debug("actor %d: task failed (%s)", i, type(err).__name__)
                self._actor_version[i] = 0
                self._probes[self.actors[i].incarnation.remote()] = i
        return outputs

    def _pinged(self, i: int, ping: ray.ObjectRef) -> None:
        """Handle the answer to a liveness query of idle actor ``i``."""
        if self._busy[i]:  # work was sent since: its outcome tells
            return
        try:
            token = ray.get(ping)
        except RayActorError as err:  # it died while idle: as for a task that failed, find out whether Ray restarts it
            log.debug("actor %d: liveness query failed (%s)", i, type(err).__name__)
            self._busy[i] = True
            self._actor_version[i] = 0
            self._probes[self.actors[i].incarnation.remote()] = i
            return
        self._new_incarnation(i, token)

    def _dead_for_good(self, i: int) -> ActorsLostError:
        return ActorsLostError(f"Ray actor {i} died and Ray will not restart it: {self.restarts_setting}="
                               f"{self.max_restarts} restarts per actor (the cause is in the actor's log above; "
                               f"raise {self.restarts_setting} to let runs outlive it, and resume with --resume)")

    def _new_incarnation(self, i: int, token: str) -> None:
        """Actor ``i`` answers with incarnation ``token``: a new one is a restart (counted; it lost its weights)."""
        if token != self._incarnations[i]:
            self._incarnations[i] = token
            self._actor_version[i] = 0
            self.restarts += 1
            log.warning("actor %d died; Ray restarted it (%d restarts so far) and training goes on", i,
                        self.restarts)
            if self.restarts > self.max_restarts * self.num_actors:
                raise ActorsLostError(f"Ray actors died {self.restarts} times: {self.restarts_setting}="
                                      f"{self.max_restarts} restarts per actor (the cause is in the actors' logs "
                                      f"above; raise {self.restarts_setting} to let runs outlive it)")

    def _restarted(self, i: int, probe: ray.ObjectRef) -> None:
        """Handle the answer to an incarnation query of actor ``i``, whose task failed."""
        try:
            token = ray.get(probe)
        except ActorUnavailableError:  # Ray is restarting it: ask again a moment later
            self._probe_at[i] = time.monotonic() + 0.2
            return
        except RayActorError as err:  # dead for good: Ray spent its max_restarts on it
            raise self._dead_for_good(i) from err
        self._new_incarnation(i, token)
        self._busy[i] = False

    def _wait_restart(self, i: int) -> None:
        """Wait until actor ``i`` (whose call failed) answers again (Ray restarted it), or raise if it never will."""
        deadline = time.monotonic() + RESTART_WAIT_SECONDS
        while True:
            try:
                token = ray.get(self.actors[i].incarnation.remote())
            except ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise self._dead_for_good(i) from None
                time.sleep(0.2)
                continue
            except RayActorError as err:
                raise self._dead_for_good(i) from err
            self._new_incarnation(i, token)
            return

    def actor_states(self) -> list[dict[str, Any]]:
        """Each actor's :meth:`EnvActor.get_state` (queued behind its chunk in flight; checkpointed with the run).

        Never silently without one: an actor that died is waited for while Ray restarts it, and its new
        incarnation's state is saved with a warning (what the dead one had learnt died with it).

        :raises ActorsLostError: an actor died and Ray will not restart it.
        """
        refs = [actor.get_state.remote() for actor in self.actors]
        states: list[dict[str, Any]] = []
        for i, ref in enumerate(refs):
            try:
                states.append(ray.get(ref))
            except RayActorError:
                self._wait_restart(i)
                log.warning("actor %d died since the last checkpoint; Ray restarted it, and this checkpoint holds "
                            "its new incarnation's state (what the dead one had learnt is lost)", i)
                states.append(ray.get(self.actors[i].get_state.remote()))
        return states

    def set_actor_states(self, states: list[dict[str, Any]]) -> None:
        """Restore the states of a resumed run, actor i from state i (actors beyond the saved ones keep theirs)."""
        ray.get([actor.set_state.remote(state) for actor, state in zip(self.actors, states)])

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
