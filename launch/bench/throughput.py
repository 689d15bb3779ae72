"""``reverie bench throughput``: where the time of a DQN run goes, measured side by side in one run.

(a) raw vector-env steps/s with random actions (ale-py's vector env, one emulator thread);
(b) our actor pipeline steps/s: the same env size, batched Q-network inference on one torch thread,
    epsilon-greedy, n-step transitions with actor-side priorities into replay, no learning;
(c) learner updates/s at batch 32 (Double DQN, Nature CNN), sampled from that replay;
(d) full training on Ray (2 actors, learner in the driver) at the preset's replay ratio: agent steps/s and the
    learner's updates/s during it;
(e) Stable-Baselines3's DQN at the same replay ratio (1 update of batch 32 per 4 agent steps), if installed
    (``pip install -e .[bench]``);
(f) DQN on MinAtar Breakout with the ``dqn_minatar`` preset (1 update of batch 32 per agent step, so the learner
    sets the pace): agent steps/s of full training in local mode and on Ray with 2 actors.

(a) and (b) run in this process pinned to one core, one after the other. (c) and (d) use the preset's
``runtime.learner_threads``; (d) and (e) run the same algorithm (the dqn_pong preset is Dopamine's DQN: plain
max target, uniform replay, as SB3's DQN). Ratios printed: (b)/(a), the learner's rate during training over
(c), and (d)/(e).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np
import torch


def _timed(seconds: float, step: Any, warmup: int = 3) -> tuple[float, int]:
    """Call ``step()`` (returning a count) for ``seconds``; return (elapsed, count) after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        count += step()
    return time.perf_counter() - start, count


def bench_config(game: str, num_actors: int) -> Any:
    """The measured configuration: the dqn_pong preset with Double DQN, prioritised replay and a small replay
    (capacity does not change speed; it keeps the benchmark's memory small)."""
    from agents.dqn.config import DQNConfig
    from launch.config import load_config

    return load_config(DQNConfig, ["dqn_pong"], [
        f"env.game={game}", "replay.capacity=100000", "agent.learning_starts_frames=8000",
        "exploration.schedule=apex", f"runtime.num_actors={num_actors}", "run.progress=false",
        "run.eval_episodes=0", "run.total_frames=1000000000", "run.checkpoint_every_frames=1000000000",
    ])


class one_core:
    """Pin this process (and the threads it starts meanwhile, e.g. ALE's) to one core, so that (a) and (b) are
    measured on the same number of cores whatever the machine has."""

    def __enter__(self) -> None:
        self.saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(self.saved)})

    def __exit__(self, *exc: object) -> None:
        os.sched_setaffinity(0, self.saved)


def measure_raw_env(cfg: Any, seconds: float) -> float:
    from envs import make_env

    env = make_env(cfg.env.game, preset=cfg.env.preset, num_envs=cfg.env.num_envs, seed=0, num_threads=1)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    n = int(env.single_action_space.n)

    def step() -> int:
        env.step(rng.integers(0, n, cfg.env.num_envs))
        return cfg.env.num_envs

    elapsed, count = _timed(seconds, step)
    env.close()
    return count / elapsed


def measure_actor(cfg: Any, seconds: float) -> tuple[float, Any, int]:
    """(b): EnvActor (the class Ray actors run) feeding a replay in this process.

    :return: steps/s, the filled replay, the number of actions."""
    from agents.dqn.actor import EpsilonGreedyPolicy, make_dqn_parts
    from agents.replay.buffer import PrioritizedReplay
    from agents.runtime.actor import EnvActor

    actor = EnvActor(0, make_dqn_parts, cfg, seed=0, torch_threads=1)
    replay = PrioritizedReplay(cfg.replay.capacity, num_shards=1, alpha=cfg.replay.alpha, prioritized=True)

    def step() -> int:
        out = actor.run(cfg.runtime.chunk_steps, frames=10**9)
        replay.add(out.payload)
        return out.env_steps

    elapsed, count = _timed(seconds, step, warmup=2)
    actor.close()
    assert isinstance(actor.policy, EpsilonGreedyPolicy)  # what make_dqn_parts builds (informed is a subclass)
    return count / elapsed, replay, actor.policy.num_actions


def learner_step(cfg: Any, replay: Any, num_actions: int) -> Any:
    """One learner update of batch 32 sampled from ``replay`` (Double DQN, Nature CNN), as a callable returning 1."""
    from agents.dqn.learning import DQNLearner

    learner = DQNLearner(num_actions, cfg.agent, cfg.network, target_update_period=2000)

    def step() -> int:
        b = replay.sample(32)
        stats = learner.step(torch.from_numpy(b.obs), torch.from_numpy(b.actions), torch.from_numpy(b.returns),
                             torch.from_numpy(b.discounts), torch.from_numpy(b.next_obs),
                             torch.from_numpy(b.weights))
        replay.update_priorities(b.indices, stats.td_abs.double().numpy(), b.generations)
        return 1

    return step


def measure_learner(cfg: Any, replay: Any, num_actions: int, seconds: float) -> float:
    elapsed, count = _timed(seconds, learner_step(cfg, replay, num_actions))
    return count / elapsed


def minatar_config(num_actors: int) -> Any:
    """The ``dqn_minatar`` preset on Breakout, local (0 actors) or on Ray; learning starts at 5000 steps."""
    from agents.dqn.config import DQNConfig
    from launch.config import load_config

    return load_config(DQNConfig, ["dqn_minatar"], [
        f"runtime.num_actors={num_actors}", "runtime.actor_cpus=0.5", "run.progress=false", "run.eval_episodes=0",
        "run.total_frames=1000000000", "run.checkpoint_every_frames=1000000000",
    ])


def training_marks(cfg: Any, seconds: float) -> dict[str, float]:
    """The real ``train()`` (on Ray, or local with 0 actors), measured from the first update for ``seconds``.

    :return: ``elapsed`` (wall s), ``steps`` (agent steps), ``updates``, and this process's ``cpu_s``, ``sys_s``
        (kernel part of ``cpu_s``) and ``minflt`` (page faults) over the same span. The last three count all
        threads of this process (the learner and, in local mode, the actor and its emulators), not Ray workers.
    """
    import resource

    from agents.dqn.train import StopTraining, train

    marks: dict[str, Any] = {}

    def hook(state: Any) -> None:
        if "t0" not in marks:
            if state.updates > 0:
                marks.update(t0=time.perf_counter(), steps0=state.steps, updates0=state.updates,
                             usage0=resource.getrusage(resource.RUSAGE_SELF))
            return
        elapsed = time.perf_counter() - marks["t0"]
        if elapsed >= seconds:
            u0, u1 = marks["usage0"], resource.getrusage(resource.RUSAGE_SELF)
            marks.update(elapsed=elapsed, steps=state.steps - marks["steps0"],
                         updates=state.updates - marks["updates0"],
                         cpu_s=(u1.ru_utime + u1.ru_stime) - (u0.ru_utime + u0.ru_stime),
                         sys_s=u1.ru_stime - u0.ru_stime, minflt=u1.ru_minflt - u0.ru_minflt)
            raise StopTraining

    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, run_dir=os.path.join(tmp, "bench"), hooks=[hook])
    return {k: float(marks[k]) for k in ("elapsed", "steps", "updates", "cpu_s", "sys_s", "minflt")}


def measure_training(cfg: Any, seconds: float) -> tuple[float, float]:
    """(d): agent steps/s and learner updates/s of the real ``train()``; see :func:`training_marks`."""
    m = training_marks(cfg, seconds)
    return m["steps"] / m["elapsed"], m["updates"] / m["elapsed"]


def measure_sb3(game: str, seconds: float) -> float | None:
    """(e): SB3's DQN with its Atari wrappers, one env, one torch thread, 1 update of batch 32 per 4 steps."""
    try:
        from stable_baselines3 import DQN
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack
    except ImportError:
        return None
    from envs.names import display_name, resolve_game

    env = VecFrameStack(make_atari_env(f"{display_name(resolve_game(game))}NoFrameskip-v4", n_envs=1, seed=0),
                        n_stack=4)
    learning_starts = 2000

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == learning_starts + 100:
                self.t0, self.s0 = time.perf_counter(), self.num_timesteps
            if self.num_timesteps > learning_starts + 100 and time.perf_counter() - self.t0 >= seconds:
                self.rate = (self.num_timesteps - self.s0) / (time.perf_counter() - self.t0)
                return False
            return True

    clock = Clock()
    model = DQN("CnnPolicy", env, buffer_size=100_000, learning_starts=learning_starts, batch_size=32,
                train_freq=4, gradient_steps=1, target_update_interval=8000, device="cpu", seed=0, verbose=0)
    model.learn(total_timesteps=10**9, callback=clock)
    env.close()
    return float(clock.rate)


def run_throughput_bench(seconds: float = 20.0, game: str = "pong", num_actors: int = 2,
                         include_sb3: bool = True) -> dict[str, Any]:
    """Run (a)-(e) and return the figures; see the module docstring."""
    cfg = bench_config(game, num_actors)
    torch.set_num_threads(1)
    with one_core():
        raw = measure_raw_env(cfg, seconds)
        actor, replay, num_actions = measure_actor(cfg, seconds)
    # The learner runs with the preset's thread count, as it does in training (its process is the driver).
    torch.set_num_threads(cfg.runtime.learner_threads)
    learner = measure_learner(cfg, replay, num_actions, seconds)
    del replay
    train_steps, train_updates = measure_training(cfg, seconds * 2)
    torch.set_num_threads(1)  # SB3 as the brief measured it: one torch thread
    sb3 = measure_sb3(game, seconds * 2) if include_sb3 else None
    minatar_local, _ = measure_training(minatar_config(0), seconds)
    minatar_ray, _ = measure_training(minatar_config(num_actors), seconds)
    return {
        "game": game, "num_envs": cfg.env.num_envs, "num_actors": num_actors, "cores": os.cpu_count(),
        "learner_threads": cfg.runtime.learner_threads, "double_dqn": cfg.agent.double,
        "seconds_per_measurement": seconds,
        "raw_env_steps_per_s": raw,
        "actor_steps_per_s": actor,
        "actor_over_raw": actor / raw,
        "learner_updates_per_s": learner,
        "train_steps_per_s": train_steps,
        "train_learner_updates_per_s": train_updates,
        "train_learner_over_standalone": train_updates / learner,
        "sb3_steps_per_s": sb3,
        "train_over_sb3": (train_steps / sb3) if sb3 else None,
        "minatar_dqn_local_steps_per_s": minatar_local,
        "minatar_dqn_ray_steps_per_s": minatar_ray,
    }


def format_throughput_table(r: dict[str, Any]) -> str:
    def f(x: float | None, unit: str = "") -> str:
        return "n/a (pip install -e .[bench])" if x is None else f"{x:,.1f}{unit}"

    rows = [
        ("(a) raw vector env, random actions", f(r["raw_env_steps_per_s"], " steps/s")),
        ("(b) actor pipeline (policy + replay)", f(r["actor_steps_per_s"], " steps/s")),
        ("(c) learner, batch 32", f(r["learner_updates_per_s"], " updates/s")),
        (f"(d) Ray training, {r['num_actors']} actors", f(r["train_steps_per_s"], " steps/s")),
        ("    learner during training", f(r["train_learner_updates_per_s"], " updates/s")),
        ("(e) Stable-Baselines3 DQN", f(r["sb3_steps_per_s"], " steps/s")),
        ("ratio (b)/(a)          [target >= 0.5]", f(r["actor_over_raw"], "x")),
        ("ratio learner in training / (c) [>= 0.85]", f(r["train_learner_over_standalone"], "x")),
        ("ratio (d)/(e)          [target >= 1.3]", f(r["train_over_sb3"], "x")),
        ("(f) MinAtar Breakout DQN, local mode", f(r.get("minatar_dqn_local_steps_per_s"), " steps/s")),
        (f"    MinAtar Breakout DQN, Ray {r['num_actors']} actors",
         f(r.get("minatar_dqn_ray_steps_per_s"), " steps/s")),
    ]
    width = max(len(a) for a, _ in rows)
    head = (f"reverie bench throughput: {r['game']}, {r['num_envs']} envs per actor, {r['cores']} cores, "
            f"learner {r['learner_threads']} torch threads, {r['seconds_per_measurement']:.0f} s per measurement")
    return "\n".join([head, "-" * len(head)] + [f"{a:<{width}}  {b}" for a, b in rows])
