"""``reverie bench throughput --algo a2c|ppo|impala``: actor-critic training throughput, ours beside SB3's.

Measured in one run, one after the other, each on one torch thread:

- ``a2c`` and ``ppo``: our full training loop (``agents.actor_critic.train.train``, local mode, presets
  ``a2c_pong`` / ``ppo_pong``), then Stable-Baselines3's A2C / PPO with the same settings on the same env (the
  ``reverie sb3`` adapter, :mod:`launch.sb3_runs`): same envs, unroll length, batch, epochs and minibatches, the
  same network architecture built the way SB3 builds its ``NatureCNN`` (a plain channels-first ``nn.Sequential``;
  our torsos' channels-last input is one of the things measured).
  Agent steps per second of wall clock, acting and learning together; the ratio ours / SB3 (target >= 1.3).
  Where the preset splits its envs (``env.splits: 2``, double-buffered sampling: the policy acts on one group
  while the other emulates), ours is measured a second time with ``env.splits=1`` (one synchronous vector env,
  as SB3 steps it): what the sampler adds, in the same run.
- ``impala``: preset ``impala_pong`` with its 2 Ray actors: agent steps/s and the learner's busy fraction (the
  share of wall time spent inside ``learner.update``).

Every measurement starts after the first update (start-up, Ray, first compilation of kernels excluded) and runs
for ``seconds``; ours and SB3's both count from the end of a collection to the end of a collection, so each
measures whole (collect, update) cycles. Runs are throw-away (a temporary directory; no progress bar, no
evaluation, no checkpoint or log inside the window).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import torch

from agents.actor_critic.config import ActorCriticConfig

#: Algorithms of this benchmark and the preset each runs.
AC_PRESETS = {"a2c": "a2c_pong", "ppo": "ppo_pong", "impala": "impala_pong"}
NEVER = str(10**13)  # frames: a run that never ends, checkpoints or logs by itself


def ac_bench_config(algo: str, game: str = "pong", overrides: Sequence[str] = ()) -> ActorCriticConfig:
    """The preset of ``algo`` on ``game``, without anything that would stop or slow the measured window."""
    from launch.config import load_config

    if algo not in AC_PRESETS:
        raise ValueError(f"unknown actor-critic algorithm {algo!r}; choose one of {list(AC_PRESETS)}")
    return load_config(ActorCriticConfig, [AC_PRESETS[algo]], [
        f"env.game={game}", "run.progress=false", "run.eval_episodes=0", f"run.total_frames={NEVER}",
        f"run.checkpoint_every_frames={NEVER}", f"run.log_every_frames={NEVER}", *overrides,
    ])


def measure_ours(cfg: ActorCriticConfig, seconds: float) -> dict[str, float]:
    """Our training loop (of ``cfg.algo``: actor-critic or STRAW) for ``seconds`` after its first update: agent
    steps/s and the learner's busy fraction
    (seconds inside ``learner.update`` over wall seconds; the learner adds them up in ``_busy``, which only its
    log, switched off here, resets)."""
    from agents.registry import get_builder
    from agents.runtime.loop import StopTraining, run_training

    marks: dict[str, float] = {}

    def hook(state: Any) -> None:
        now = time.perf_counter()
        if "t0" not in marks:
            if state.updates >= 1:
                marks.update(t0=now, steps0=state.steps, busy0=state.learner._busy)
            return
        elapsed = now - marks["t0"]
        if elapsed >= seconds:
            marks.update(elapsed=elapsed, steps=state.steps - marks["steps0"],
                         busy=state.learner._busy - marks["busy0"])
            raise StopTraining

    with tempfile.TemporaryDirectory() as tmp:
        run_training(get_builder(cfg.algo), cfg, run_dir=os.path.join(tmp, "bench"), hooks=[hook])
    if "elapsed" not in marks:
        raise RuntimeError("the training run ended before the measurement did")
    return {"steps_per_s": marks["steps"] / marks["elapsed"], "learner_busy_fraction": marks["busy"] / marks["elapsed"],
            "seconds": marks["elapsed"]}


def measure_sb3(cfg: ActorCriticConfig, seconds: float) -> float | None:
    """SB3's A2C / PPO with ``cfg``'s settings on our env (:mod:`launch.sb3_runs`) for ``seconds`` after its first
    update: agent steps/s; None if SB3 is not installed (``pip install -e .[bench]``)."""
    try:
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.logger import Logger
    except ImportError:
        return None
    from launch.sb3_runs import NO_SB3_DUMPS, make_model, make_sb3_env
    from worldmodels.common.device import resolve_device

    class Clock(BaseCallback):
        """Marks the end of the second collection (the first update done), then stops after ``seconds``."""

        def __init__(self) -> None:
            super().__init__()
            self.rollouts = 0
            self.t0 = self.steps0 = 0.0
            self.rate: float | None = None

        def _on_rollout_end(self) -> None:
            self.rollouts += 1
            now = time.perf_counter()
            if self.rollouts == 2:
                self.t0, self.steps0 = now, float(self.model.num_timesteps)
            elif self.rollouts > 2 and self.rate is None and now - self.t0 >= seconds:
                self.rate = (self.model.num_timesteps - self.steps0) / (now - self.t0)

        def _on_step(self) -> bool:
            return self.rate is None

    torch.set_num_threads(1)
    env = make_sb3_env(cfg)
    try:
        model = make_model(cfg, env, resolve_device(cfg.runtime.device))
        model.set_logger(Logger(folder=None, output_formats=[]))
        clock = Clock()
        model.learn(total_timesteps=10**12, callback=clock, log_interval=NO_SB3_DUMPS)
    finally:
        env.close()
    return clock.rate


def expand_algos(algos: Sequence[str]) -> list[str]:
    """``--algo`` values in order, "all" standing for a2c, ppo and impala, each once."""
    out: list[str] = []
    for algo in algos:
        for name in (list(AC_PRESETS) if algo == "all" else [algo]):
            if name not in out:
                out.append(name)
    return out


def run_ac_bench(algos: Sequence[str], seconds: float = 20.0, game: str = "pong") -> dict[str, dict[str, Any]]:
    """Measure each algorithm of ``algos`` (a2c, ppo, impala); see the module docstring.

    :return: per algorithm, ``steps_per_s`` and, for a2c and ppo, ``sb3_steps_per_s`` and ``ratio_vs_sb3`` (None
        without SB3), for impala ``learner_busy_fraction``; and the measured setting (``num_envs``,
        ``unroll_length``, ``num_actors``, ``seconds``, ``cores``).
    """
    torch.set_num_threads(1)
    result: dict[str, dict[str, Any]] = {}
    for algo in expand_algos(algos):
        cfg = ac_bench_config(algo, game)
        ours = measure_ours(cfg, seconds)
        row: dict[str, Any] = {"steps_per_s": ours["steps_per_s"]}
        if algo == "impala":
            row["learner_busy_fraction"] = ours["learner_busy_fraction"]
        else:
            # The preset's sampler, then (if it splits its envs) ours stepping them synchronously as SB3 does: what
            # the double-buffered sampling adds, measured in the same run.
            sync = (measure_ours(ac_bench_config(algo, game, ["env.splits=1"]), seconds)["steps_per_s"]
                    if cfg.env.splits > 1 else None)
            sb3 = measure_sb3(cfg, seconds)
            row.update(sync_steps_per_s=sync, sb3_steps_per_s=sb3,
                       ratio_vs_sb3=(ours["steps_per_s"] / sb3) if sb3 else None,
                       sync_ratio_vs_sb3=(sync / sb3) if sb3 and sync else None,
                       learner_busy_fraction=ours["learner_busy_fraction"])
        row.update(game=game, num_envs=cfg.env.num_envs, splits=cfg.env.splits, unroll_length=cfg.agent.unroll_length,
                   num_actors=cfg.runtime.num_actors, seconds=seconds, cores=os.cpu_count())
        result[algo] = row
    return result


def format_ac_table(result: dict[str, dict[str, Any]]) -> str:
    """The figures of :func:`run_ac_bench` as a table."""

    def f(x: float | None, unit: str = "", digits: int = 1) -> str:
        return "n/a (pip install -e .[bench])" if x is None else f"{x:,.{digits}f}{unit}"

    rows = [("algorithm (preset)", "ours", "ours, synchronous", "SB3", "ours / SB3 [>= 1.3]", "synchronous / SB3",
             "learner busy")]
    for algo, r in result.items():
        setting = (f"{algo} ({AC_PRESETS[algo]}, {r['num_envs']} envs"
                   + (f" in {r['splits']} groups" if r.get("splits", 1) > 1 else "") + f" x {r['unroll_length']}"
                   + (f", {r['num_actors']} Ray actors)" if r["num_actors"] else ")"))
        busy = r.get("learner_busy_fraction")
        sync = r.get("sync_steps_per_s")
        rows.append((setting, f(r["steps_per_s"], " steps/s"),
                     "-" if sync is None else f(sync, " steps/s"),
                     "-" if algo == "impala" else f(r.get("sb3_steps_per_s"), " steps/s"),
                     "-" if algo == "impala" else f(r.get("ratio_vs_sb3"), "x", digits=2),
                     "-" if r.get("sync_ratio_vs_sb3") is None else f(r.get("sync_ratio_vs_sb3"), "x", digits=2),
                     "-" if busy is None else f"{100 * busy:.0f}%"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    first = next(iter(result.values()), {})
    head = (f"reverie bench throughput (actor-critic): {first.get('game', '?')}, {first.get('cores', '?')} cores, one "
            f"torch thread each, {first.get('seconds', 0):.0f} s per measurement")
    return "\n".join([head, "-" * len(head), lines[0], *lines[1:]])
