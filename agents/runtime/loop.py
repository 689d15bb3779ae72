"""The one training loop of every algorithm on the runtime. It never names an algorithm.

    actors (local or Ray) --ActorOutput chunks--> learner.ingest --> learner.update x updates_due
          ^------------------ weights, one ray.put per publication ------------------'

Rate limiter: the learner says how many updates the data allows (``updates_due``) and how many more agent
steps the actors may collect before it must catch up (``collect_allowance``); actors may run at most
``runtime.max_ahead_chunks`` chunks each beyond that. After every update the loop goes back to harvesting
chunks, so actors never wait long. The frame around it (run directory, ``config.yaml``, TensorBoard, progress
bar, SIGINT/SIGTERM -> last checkpoint, cleanup on any exception) is :class:`worldmodels.common.RunScaffold`.

Logged: ``charts/episodic_return`` and ``charts/episodic_length`` per game; per log window
``charts/frames_per_s`` (wall clock), ``charts/cpu_frames_per_s``, ``charts/steps_per_s``,
``charts/updates_per_s``, ``charts/actor_restarts``, ``charts/policy_lag`` (learner updates between the weights
a chunk was collected with and the newest), the learner's ``losses/*`` and ``charts/*``, and tracker tags.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.runtime.actor import ActorOutput
from agents.runtime.algorithm import (
    ActorSetup,
    Builder,
    CheckpointLayout,
    Counters,
    EnvSpec,
    Learner,
    Scalars,
    env_spec,
)
from agents.runtime.config import RESUME_SAFE_KEYS, make_actor_env
from worldmodels.common.checkpoint import CheckpointError, rng_state, save_checkpoint, set_rng_state
from worldmodels.common.device import resolve_device
from worldmodels.common.resume import ResumeError, ResumePoint, open_run, refuse_shorter_total
from worldmodels.common.scaffold import Rates, RunScaffold, StopRun, run_path
from worldmodels.common.scaffold import config_yaml as config_yaml_of

log = logging.getLogger(__name__)

#: Raised by a hook to end training early and cleanly (final checkpoint written, actors closed).
StopTraining = StopRun


@dataclass
class TrainState(Counters):
    """Counters of a run (saved in checkpoints) plus live objects hooks may inspect."""

    returns: list[float] = field(default_factory=list)
    """Raw score of every finished game, in order of arrival."""
    discovered: dict[str, set[int]] = field(default_factory=dict)
    """Union over actors of what their trackers discovered, by TensorBoard tag (``explore/rooms_total``: rooms)."""
    runtime: Any = None
    """The LocalRuntime / RayRuntime (hooks may inspect or kill actors)."""
    learner: Any = None
    """The algorithm's learner (hooks may inspect it, e.g. its replay)."""
    setup: ActorSetup | None = None
    """How the actors were built (shared services in ``setup.extras``)."""
    run_dir: Path | None = None
    """Where the run writes (``--run-dir``, or ``run.runs_dir / run.name``)."""


Hook = Callable[[TrainState], None]


def probe_env(cfg: Any) -> EnvSpec:
    """The env's :class:`EnvSpec` from a 1-env instance (raises the env's own clear error for an unknown game)."""
    env = make_actor_env(cfg.env, seed=0, num_envs=1)
    try:
        return env_spec(env)
    finally:
        env.close()


def make_runtime(cfg: Any, setup: ActorSetup) -> Any:
    """Local mode for ``runtime.num_actors == 0``, else Ray actors (starting or joining Ray)."""
    rt = cfg.runtime
    if rt.num_actors == 0:
        from agents.runtime.local import LocalRuntime

        return LocalRuntime(setup.parts_fn, cfg, seed=cfg.run.seed + 1000, chunk_steps=rt.chunk_steps,
                            torch_threads=rt.torch_threads)
    from agents.runtime.ray_runtime import RayRuntime

    return RayRuntime(setup.parts_fn, cfg, rt.num_actors, seed=cfg.run.seed, chunk_steps=rt.chunk_steps,
                      steps_per_chunk=rt.chunk_steps * cfg.env.num_envs, torch_threads=rt.torch_threads,
                      actor_cpus=rt.actor_cpus, max_restarts=rt.max_actor_restarts, niceness=rt.actor_niceness)


class _Window:
    """Scalars averaged over one logging window.

    A learner's scalars may be Python floats or 0-dim tensors on its device (:data:`agents.runtime.algorithm.Scalars`):
    tensors are summed where they are, without a host sync per update, and read once per window by :meth:`flush`
    (one stack and one ``.tolist()`` per device)."""

    def __init__(self) -> None:
        self.sums: dict[str, float | torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, scalars: Scalars) -> None:
        for key, value in scalars.items():
            tag = key if "/" in key else f"losses/{key}"
            value = value.detach() if isinstance(value, torch.Tensor) else float(value)
            self.sums[tag] = self.sums[tag] + value if tag in self.sums else value
            self.counts[tag] = self.counts.get(tag, 0) + 1

    def flush(self) -> dict[str, float]:
        totals = {k: v for k, v in self.sums.items() if not isinstance(v, torch.Tensor)}
        by_device: dict[torch.device, list[str]] = {}
        for key, value in self.sums.items():
            if isinstance(value, torch.Tensor):
                by_device.setdefault(value.device, []).append(key)
        for keys in by_device.values():  # one device-to-host read per device per window
            stacked = torch.stack([torch.as_tensor(self.sums[k]).reshape(()).float() for k in keys])
            totals.update(zip(keys, stacked.tolist(), strict=True))
        out = {k: float(totals[k]) / self.counts[k] for k in self.sums}
        self.sums, self.counts = {}, {}
        return out


def run_training(builder: Builder, cfg: Any, run_dir: str | Path | None = None, resume: bool = False,
                 hooks: Sequence[Hook] = (), resume_from: ResumePoint | None = None) -> TrainState:
    """Train ``builder``'s algorithm as ``cfg`` says; returns the final counters.

    :param builder: the algorithm (its ``BUILDER``).
    :param cfg: the merged config (the algorithm's dataclass). On resume it must equal the run's saved config but
        for :data:`agents.runtime.config.RESUME_SAFE_KEYS` (each change is logged).
    :param run_dir: where to write (default ``runs_dir/name``); on resume, the run directory or one of its
        checkpoint files.
    :param resume: continue the run in ``run_dir`` from its newest valid checkpoint (or the file named). A run
        directory that saved no checkpoint starts afresh.
    :param resume_from: the checkpoint already found and loaded (by the CLI), instead of finding it again.
    :raises ResumeError: a resume whose config changes settings that may not change.
    :param hooks: called with the live :class:`TrainState` after every batch of chunks; a hook may raise
        :class:`StopTraining` to end the run early (used by benchmarks).
    """
    builder.validate(cfg)
    # The config the run uses from here on: what config.yaml and every checkpoint hold, and what the learner and
    # the actors are built with (prepare derives it, e.g. with paths made absolute, and leaves ``cfg`` alone).
    cfg = builder.prepare(cfg)
    config_yaml = config_yaml_of(cfg)
    device = resolve_device(cfg.runtime.device)
    torch.set_num_threads(cfg.runtime.learner_threads)
    random.seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)

    spec = probe_env(cfg)
    learner: Learner = builder.make_learner(cfg, spec, device)
    state = TrainState(frame_skip=spec.frame_skip, total_steps=cfg.run.total_frames // spec.frame_skip,
                       learner=learner)
    path, point = open_run(run_path(run_dir, cfg.run.runs_dir, cfg.run.name), resume, builder.config_class, cfg,
                           RESUME_SAFE_KEYS, resume_from)
    ckpt, ckpt_path = (point.state, point.checkpoint) if point is not None else (None, None)
    if ckpt is not None:
        algo = CheckpointLayout.algo(ckpt, ckpt_path or path)  # an older checkpoint migrated, or a clear error
        if algo != builder.name:
            raise ResumeError(f"{ckpt_path} is a checkpoint of {algo!r}, not of {builder.name!r}: resume it with its "
                              f"own config (`reverie train --resume {path}`).")
        try:
            learner.load_state_dict(ckpt)
        except (RuntimeError, KeyError, ValueError) as err:  # torch's size mismatch, a missing entry
            raise CheckpointError(f"{ckpt_path} does not fit the learner this config builds "
                                  f"({str(err).splitlines()[0][:200]}); resume with the run's own config.") from err
        CheckpointLayout.restore_counters(ckpt, state)
        refuse_shorter_total(point, builder.config_class, "run.total_frames", cfg.run.total_frames, state.frames)
        set_rng_state(ckpt["rng"])
        state.discovered = CheckpointLayout.discovered(ckpt)
        log.info("resumed %s at %d frames", path, state.frames)

    with RunScaffold(path, resume=ckpt is not None, config_yaml=config_yaml, total=cfg.run.total_frames,
                     initial=state.frames, progress=cfg.run.progress, command="train", algo=builder.name,
                     resumed_from=ckpt_path, purge_step=state.frames) as run:
        state.run_dir = run.path
        writer = run.writer
        if cfg.runtime.num_actors > 0:
            from agents.runtime.ray_runtime import init_ray

            init_ray(cfg.runtime.ray_address, niceness=cfg.runtime.actor_niceness)  # before any shared service
        setup = builder.actor_setup(cfg, distributed=cfg.runtime.num_actors > 0)
        state.setup = setup
        if setup.close is not None:
            run.add_cleanup(setup.close)
        shared = CheckpointLayout.shared_actor_state(ckpt) if ckpt is not None else None
        if setup.set_state is not None and shared is not None:
            setup.set_state(shared)
        runtime = make_runtime(cfg, setup)
        state.runtime = runtime
        run.add_cleanup(runtime.close)
        if ckpt is not None and CheckpointLayout.actor_states(ckpt):
            runtime.set_actor_states(CheckpointLayout.actor_states(ckpt))

        def checkpoint(keep: int = cfg.run.keep_checkpoints) -> Path:
            payload = CheckpointLayout.payload(
                builder.name, learner.state_dict(), state, rng_state(), config_yaml, state.discovered,
                runtime.actor_states(), setup.get_state() if setup.get_state is not None else None)
            return save_checkpoint(run.path / "checkpoints", state.frames, payload, keep=keep)

        run.on_interrupt(checkpoint)  # Ctrl-C / SIGTERM: a last checkpoint, then the interrupt goes on
        run.on_error(lambda: checkpoint(cfg.run.keep_checkpoints + 1))  # any other error: keep the older ones
        runtime.publish(learner.get_weights(), state.updates)
        slack = cfg.runtime.max_ahead_chunks * runtime.steps_per_chunk * runtime.num_actors
        every = cfg.run.checkpoint_every_frames
        next_ckpt = (state.frames // every + 1) * every
        next_log = state.frames + cfg.run.log_every_frames
        rates, window, lags = Rates(state.frames), _Window(), []
        updates_at_log = state.updates
        actor_scalars: dict[str, float] = {}
        stop = False
        while not stop:
            run.check_interrupt()  # a SIGINT / SIGTERM stops the run here, between steps
            # --- rate limiter: how many updates the data allows, how far actors may run ahead ---------------
            due = learner.updates_due(state)
            collecting = state.steps < state.total_steps
            if not collecting and due <= 0:
                break  # all frames collected and the updates they owe done: the ratio holds to the end
            budget = learner.collect_allowance(state) + slack if collecting else 0
            if collecting and due <= 0 and budget < runtime.steps_per_chunk:
                # Neither an update nor a chunk would be due, and nothing would ever change that: e.g. a learner
                # resumed without its data. One more chunk is always allowed then, so a run moves from any state.
                budget = runtime.steps_per_chunk
            outputs: list[ActorOutput] = runtime.poll(state.frames, budget, block=due <= 0) if collecting else []

            # --- experience into the learner ---------------------------------------------------------------
            for out in outputs:
                learner.ingest(out)
                state.steps += out.env_steps
                if out.weights_version >= 0:
                    lags.append(state.updates - out.weights_version)
                _log_episodes(state, out, writer)
                actor_scalars.update(out.extras)
            if outputs:
                run.advance(state.frames, **({"ret": f"{np.mean(state.returns[-20:]):.1f}"} if state.returns else {}),
                            upd=state.updates)
                for hook in hooks:
                    try:
                        hook(state)
                    except StopRun:
                        stop = True

            # --- one learner update (then back to harvesting chunks, so actors never wait long) ------------
            if due > 0:
                window.add(learner.update(state))
                state.updates += 1
                if state.updates % cfg.runtime.publish_every_updates == 0:
                    runtime.publish(learner.get_weights(), state.updates)

            # --- summaries and checkpoints -----------------------------------------------------------------
            if state.frames >= next_log:
                wall, _, seconds = rates.measure(state.frames)
                # Every rate is per second of wall clock; the CPU figure has its own tag.
                writer.add_scalar("charts/frames_per_s", wall, state.frames)
                writer.add_scalar("charts/steps_per_s", wall / state.frame_skip, state.frames)
                writer.add_scalar("charts/updates_per_s", (state.updates - updates_at_log) / seconds, state.frames)
                writer.add_scalar("charts/actor_restarts", runtime.restarts, state.frames)
                if lags:
                    writer.add_scalar("charts/policy_lag", float(np.mean(lags)), state.frames)
                for tag, value in {**learner.scalars(), **window.flush()}.items():
                    writer.add_scalar(tag, value, state.frames)
                for key, value in actor_scalars.items():
                    writer.add_scalar(key if "/" in key else f"charts/{key}", value, state.frames)
                for tag, union in state.discovered.items():
                    writer.add_scalar(tag, len(union), state.frames)
                updates_at_log, lags = state.updates, []
                next_log = state.frames + cfg.run.log_every_frames
            if state.frames >= next_ckpt:
                checkpoint()
                next_ckpt += every
        checkpoint()
        if cfg.run.eval_episodes > 0:
            result = builder.evaluate(cfg, learner.get_weights(), cfg.run.eval_episodes, seed=cfg.run.seed + 99991)
            writer.add_scalar("eval/mean_return", result.mean, state.frames)
            writer.add_scalar("eval/std_return", result.std, state.frames)
    return state


def _log_episodes(state: TrainState, out: ActorOutput, writer: Any) -> None:
    """Games that ended in ``out``: returns, lengths, tracker statistics and discoveries (unioned over actors)."""
    episode_stats = out.episode_stats or [{}] * len(out.episode_returns)
    for ret, length, extra in zip(out.episode_returns, out.episode_lengths, episode_stats):
        state.episodes += 1
        state.returns.append(ret)
        writer.add_scalar("charts/episodic_return", ret, state.frames)
        writer.add_scalar("charts/episodic_length", length, state.frames)
        for tag, value in extra.items():
            writer.add_scalar(tag, value, state.frames)
    for tag, items in out.discovered.items():
        union = state.discovered.setdefault(tag, set())
        if not union.issuperset(items):
            union.update(items)
            writer.add_scalar(tag, len(union), state.frames)
