"""DQN training, top to bottom: the one loop to read to see how Reverie trains an agent.

    actors (local or Ray) --chunks of n-step transitions + priorities--> replay --batches--> learner
          ^------------------------- weights, one ray.put per publication ---------------------'

The loop holds the configured replay ratio (``agent.update_period`` agent steps per update) with a rate
limiter: actors may run at most ``runtime.max_ahead_chunks`` chunks ahead of the learner, and the learner
never updates faster than the data allows. Algorithms that come later (actor-critic, episodic control) reuse
``agents.runtime`` (EnvActor, LocalRuntime/RayRuntime, checkpoints) and bring their own adder and learner.
"""

from __future__ import annotations

import functools
import logging
import random
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agents.dqn.actor import DensityServer, make_dqn_parts
from agents.dqn.config import TrainConfig, validate
from agents.dqn.evaluate import evaluate_policy
from agents.dqn.learning import DQNLearner
from agents.runtime.actor import ActorOutput
from agents.runtime.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from agents.runtime.local import LocalRuntime
from agents.runtime.replay import PrioritizedReplay
from envs import make_env

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Counters of a run (saved in checkpoints) plus live objects hooks may inspect."""

    steps: int = 0
    """Agent steps collected into replay (all actors, all envs)."""
    updates: int = 0
    """Learner updates done."""
    episodes: int = 0
    """Games finished."""
    returns: list[float] = field(default_factory=list)
    """Raw score of every finished game, in order of arrival."""
    discovered: dict[str, set[int]] = field(default_factory=dict)
    """Union over actors of what their trackers discovered, by TensorBoard tag (``explore/rooms_total``: rooms)."""
    runtime: Any = None
    """The LocalRuntime / RayRuntime (hooks may inspect or kill actors)."""
    replay: Any = None
    """The replay (hooks may inspect its contents)."""
    frame_skip: int = 4

    @property
    def frames(self) -> int:
        return self.steps * self.frame_skip


Hook = Callable[[TrainState], None]


class RunExistsError(FileExistsError):
    """A run directory that holds a run already."""


class StopTraining(Exception):
    """Raised by a hook to end training early and cleanly (final checkpoint written, actors closed)."""


def prepare_run_dir(cfg: TrainConfig, run_dir: str | Path | None, resume: bool) -> Path:
    """The run's directory; a new run never writes into one that already holds a run."""
    path = Path(run_dir) if run_dir else Path(cfg.run.runs_dir) / cfg.run.name
    if resume:
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(f"cannot resume: {path} holds no run (no config.yaml).")
        return path
    if path.exists() and any(path.iterdir()):
        raise RunExistsError(f"run directory {path} already exists; pass --resume {path} to continue it, or "
                             f"choose a new name (run.name=... or --run-dir ...).")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _num_actions(cfg: TrainConfig) -> int:
    env = make_env(cfg.env.game, preset=cfg.env.preset, num_envs=1, seed=0)
    n = int(env.single_action_space.n)
    env.close()
    return n


def make_runtime(cfg: TrainConfig) -> Any:
    """Local mode for ``num_actors == 0``, else Ray actors (starting or joining Ray).

    With ``exploration.shared_density`` in Ray mode, a :class:`DensityServer` Ray actor is started first and its
    handle bound into every actor's parts function; it is ``runtime.density_server`` (killed by :func:`train`).
    """
    steps_per_chunk = cfg.runtime.chunk_steps * cfg.env.num_envs
    if cfg.runtime.num_actors == 0:
        return LocalRuntime(make_dqn_parts, cfg, seed=cfg.run.seed + 1000, chunk_steps=cfg.runtime.chunk_steps,
                            torch_threads=cfg.runtime.torch_threads)
    import ray

    from agents.runtime.ray_runtime import RayRuntime, init_ray

    init_ray(cfg.runtime.ray_address)
    parts_fn: Any = make_dqn_parts
    server = None
    if cfg.exploration.bonus != "none" and cfg.exploration.shared_density:
        # num_cpus=0: on a small machine a reserved CPU would keep an actor from being placed; the server's
        # work (about 1 ms per CTS frame) then competes with the actors for cores.
        name = f"reverie-density-{uuid.uuid4().hex[:12]}"  # unique: several runs may share a cluster
        server = ray.remote(num_cpus=0, max_restarts=0)(DensityServer).options(name=name).remote(
            cfg.exploration.bonus, cfg.exploration.beta)
        parts_fn = functools.partial(make_dqn_parts, density_server=name)
    runtime = RayRuntime(parts_fn, cfg, cfg.runtime.num_actors, seed=cfg.run.seed,
                         chunk_steps=cfg.runtime.chunk_steps, steps_per_chunk=steps_per_chunk,
                         torch_threads=cfg.runtime.torch_threads, max_restarts=cfg.runtime.max_actor_restarts)
    runtime.density_server = server
    return runtime


def _close_runtime(runtime: Any) -> None:
    runtime.close()
    server = getattr(runtime, "density_server", None)
    if server is not None:
        import ray

        ray.kill(server)


def train(cfg: TrainConfig, run_dir: str | Path | None = None, resume: bool = False,
          hooks: Sequence[Hook] = (), config_yaml: str | None = None) -> TrainState:
    """Train a DQN agent as configured; returns the final counters.

    :param cfg: the merged config.
    :param run_dir: where to write (default ``runs_dir/name``).
    :param resume: continue the run in ``run_dir`` from its newest checkpoint.
    :param hooks: called with the live :class:`TrainState` after every collected batch of chunks; a hook may
        raise :class:`StopTraining` to end the run early (used by benchmarks).
    :param config_yaml: the config as YAML, saved as ``config.yaml``.
    """
    validate(cfg)
    if cfg.exploration.strategy == "informed":
        from agents.dqn.informed import load_informed_world_model

        # Fail here, before any actor starts, if the world model is missing or fits another game; actors (Ray
        # workers may start in another directory) get the absolute path.
        load_informed_world_model(cfg)
        cfg.exploration.world_model = str(Path(cfg.exploration.world_model).resolve())
    path = prepare_run_dir(cfg, run_dir, resume)
    if config_yaml is not None:
        (path / "config.yaml").write_text(config_yaml)
    torch.set_num_threads(cfg.runtime.learner_threads)
    random.seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)

    frame_skip = cfg.env.frame_skip
    learning_starts = cfg.agent.learning_starts_frames // frame_skip
    period = cfg.agent.update_period
    learner = DQNLearner(_num_actions(cfg), cfg.agent, cfg.network,
                         target_update_period=cfg.agent.target_update_frames // (frame_skip * period),
                         seed=cfg.run.seed)
    replay = PrioritizedReplay(cfg.replay.capacity, num_shards=max(1, cfg.runtime.num_actors),
                               alpha=cfg.replay.alpha, beta=cfg.replay.beta_start,
                               prioritized=cfg.replay.prioritized, seed=cfg.run.seed)
    state = TrainState(frame_skip=frame_skip, replay=replay)
    if resume:
        ckpt = load_checkpoint(find_checkpoint(path))
        learner.load_state_dict(ckpt["learner"])
        state.steps, state.updates, state.episodes = ckpt["steps"], ckpt["updates"], ckpt["episodes"]
        set_rng_state(ckpt["rng"])
        if "replay" in ckpt:
            replay.load_state_dict(ckpt["replay"])
        state.discovered = {tag: set(items) for tag, items in ckpt.get("discovered", {}).items()}
        log.info("resumed %s at %d frames", path, state.frames)

    def checkpoint() -> Path:
        payload = {"learner": learner.state_dict(), "steps": state.steps, "updates": state.updates,
                   "episodes": state.episodes, "rng": rng_state(), "config": config_yaml,
                   "discovered": {tag: sorted(items) for tag, items in state.discovered.items()}}
        if cfg.replay.save_in_checkpoint:
            payload["replay"] = replay.state_dict()
        return save_checkpoint(path / "checkpoints", state.frames, payload, keep=cfg.run.keep_checkpoints)

    writer = SummaryWriter(log_dir=str(path))
    runtime = make_runtime(cfg)
    state.runtime = runtime
    runtime.publish(learner.get_weights())
    slack = cfg.runtime.max_ahead_chunks * runtime.steps_per_chunk * runtime.num_actors
    total_steps = cfg.run.total_frames // frame_skip
    next_ckpt = (state.frames // cfg.run.checkpoint_every_frames + 1) * cfg.run.checkpoint_every_frames
    next_log = state.frames + cfg.run.log_every_frames
    window = {"t": time.perf_counter(), "frames": state.frames, "updates": state.updates, "loss": [], "q": []}
    actor_scalars: dict[str, float] = {}
    bar = tqdm(total=cfg.run.total_frames, initial=state.frames, unit="frame", unit_scale=True,
               disable=not cfg.run.progress, dynamic_ncols=True, desc=path.name)

    # SIGTERM (e.g. a cluster scheduler) is handled like Ctrl-C: write a last checkpoint, then stop.
    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous_sigterm = signal.signal(signal.SIGTERM, _terminate)
    stop = False
    try:
        while not stop:
            # --- rate limiter: how many updates the data allows, how far actors may run ahead -----------
            target_updates = max(0, state.steps - learning_starts) // period
            due = target_updates - state.updates if len(replay) >= cfg.agent.batch_size else 0
            collecting = state.steps < total_steps
            if not collecting and due <= 0:
                break  # all frames collected and the updates they owe done: the ratio holds to the end
            budget = learning_starts + state.updates * period + slack - state.steps if collecting else 0
            outputs: list[ActorOutput] = runtime.poll(state.frames, budget, block=due <= 0) if collecting else []

            # --- experience into replay ---------------------------------------------------------------
            for out in outputs:
                replay.add(out.payload)
                state.steps += out.env_steps
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
                actor_scalars.update(out.extras)
            if outputs:
                bar.update(min(state.frames, cfg.run.total_frames) - bar.n)
                if state.returns:
                    bar.set_postfix(ret=f"{np.mean(state.returns[-20:]):.1f}", upd=state.updates, refresh=False)
                for hook in hooks:
                    try:
                        hook(state)
                    except StopTraining:
                        stop = True

            # --- one learner update (then back to harvesting chunks, so actors never wait long) -------
            if due > 0:
                beta = cfg.replay.beta_start + (1 - cfg.replay.beta_start) * min(1.0, state.steps / total_steps)
                batch = replay.sample(cfg.agent.batch_size, beta=beta)
                stats = learner.step(
                    torch.from_numpy(batch.obs), torch.from_numpy(batch.actions), torch.from_numpy(batch.returns),
                    torch.from_numpy(batch.discounts), torch.from_numpy(batch.next_obs),
                    torch.from_numpy(batch.weights), torch.from_numpy(batch.mc_returns))
                if cfg.replay.prioritized:
                    replay.update_priorities(batch.indices, stats.td_abs, batch.generations)
                state.updates += 1
                window["loss"].append(stats.loss)
                window["q"].append(stats.q_mean)
                if state.updates % cfg.runtime.publish_every_updates == 0:
                    runtime.publish(learner.get_weights())

            # --- summaries and checkpoints ------------------------------------------------------------
            if state.frames >= next_log:
                now = time.perf_counter()
                dt = max(now - window["t"], 1e-9)
                fps = (state.frames - window["frames"]) / dt
                writer.add_scalar("charts/frames_per_s", fps, state.frames)
                writer.add_scalar("charts/steps_per_s", fps / frame_skip, state.frames)
                writer.add_scalar("charts/updates_per_s", (state.updates - window["updates"]) / dt, state.frames)
                writer.add_scalar("charts/replay_size", len(replay), state.frames)
                writer.add_scalar("charts/actor_restarts", runtime.restarts, state.frames)
                for key, value in actor_scalars.items():
                    writer.add_scalar(key if "/" in key else f"charts/{key}", value, state.frames)
                for tag, union in state.discovered.items():
                    writer.add_scalar(tag, len(union), state.frames)
                if window["loss"]:
                    writer.add_scalar("losses/td_loss", float(np.mean(window["loss"])), state.frames)
                    writer.add_scalar("losses/q_values", float(np.mean(window["q"])), state.frames)
                window = {"t": now, "frames": state.frames, "updates": state.updates, "loss": [], "q": []}
                next_log = state.frames + cfg.run.log_every_frames
            if state.frames >= next_ckpt:
                checkpoint()
                next_ckpt += cfg.run.checkpoint_every_frames
    except KeyboardInterrupt:
        bar.close()
        saved = checkpoint()
        log.warning("interrupted at %d frames; last checkpoint %s", state.frames, saved)
        _close_runtime(runtime)
        writer.close()
        signal.signal(signal.SIGTERM, previous_sigterm)
        raise
    signal.signal(signal.SIGTERM, previous_sigterm)
    bar.close()
    checkpoint()
    _close_runtime(runtime)
    if cfg.run.eval_episodes > 0:
        result = evaluate_policy(cfg, learner.get_weights(), cfg.run.eval_episodes, seed=cfg.run.seed + 99991)
        writer.add_scalar("eval/mean_return", result.mean, state.frames)
        writer.add_scalar("eval/std_return", result.std, state.frames)
    writer.close()
    return state
