"""``reverie bench throughput --algo a2c|ppo|impala [--bonus ...]``: actor-critic training throughput, ours beside
SB3's, and what an exploration bonus costs ours.

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

- ``--bonus cts|pixelcnn|rnd`` (repeatable; none by default): after the bonus-free measurement of our loop, our
  loop again with each bonus (config section ``exploration``), same preset, game and seconds, each with its paper's
  design: ``cts`` and ``pixelcnn`` with ``streams: one`` (A3C+: the pseudo-count bonus joins the reward), ``rnd``
  with ``streams: two`` (RND's second value head and intrinsic return). Agent steps/s and the ratio to the
  bonus-free steps/s of the same run; the goal (issue 24) is that a bonus keeps at least 0.7x of them with CTS or
  PixelCNN, 0.85x with RND (the cost of scoring and learning every new frame, and for RND the second head).
  ``bonus: none`` is the reference row, never measured twice. RND's initialisation of its input statistics
  (``exploration.rnd_init_steps`` of random play) falls before the first update, outside the window.

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
#: Exploration bonuses ``--bonus`` measures and the value streams each runs with: its paper's design (A3C+ adds a
#: pseudo-count bonus to the reward, RND learns its own return on a second value head).
BONUS_STREAMS = {"cts": "one", "pixelcnn": "one", "rnd": "two"}
#: Goal per bonus (issue 24): the least share of the bonus-free agent steps/s our loop keeps with it.
BONUS_GOALS = {"cts": 0.7, "pixelcnn": 0.7, "rnd": 0.85}


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


def expand_bonuses(bonuses: Sequence[str]) -> list[str]:
    """``--bonus`` values in order, each once, without ``none`` (the bonus-free loop is always measured)."""
    out: list[str] = []
    for bonus in bonuses:
        if bonus != "none" and bonus not in BONUS_STREAMS:
            raise ValueError(f"unknown exploration bonus {bonus!r}; choose among none, {', '.join(BONUS_STREAMS)}")
        if bonus != "none" and bonus not in out:
            out.append(bonus)
    return out


def measure_bonuses(algo: str, game: str, seconds: float, bonuses: Sequence[str],
                    none_steps_per_s: float) -> dict[str, dict[str, Any]]:
    """Our loop of ``algo`` with each exploration bonus of ``bonuses`` (cts, pixelcnn, rnd) for ``seconds``:
    ``steps_per_s`` (agent steps/s), ``ratio_vs_none`` (over ``none_steps_per_s``, the bonus-free agent steps/s of
    the same run) and the ``streams`` it ran with."""
    out: dict[str, dict[str, Any]] = {}
    for bonus in expand_bonuses(bonuses):
        streams = BONUS_STREAMS[bonus]
        # Only the bonus and its streams change: the preset's beta and discounts do not change what a step costs.
        cfg = ac_bench_config(algo, game, [f"exploration.bonus={bonus}", f"exploration.streams={streams}"])
        rate = measure_ours(cfg, seconds)["steps_per_s"]
        out[bonus] = {"steps_per_s": rate, "ratio_vs_none": rate / none_steps_per_s, "streams": streams}
    return out


def run_ac_bench(algos: Sequence[str], seconds: float = 20.0, game: str = "pong",
                 bonuses: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Measure each algorithm of ``algos`` (a2c, ppo, impala); see the module docstring.

    :param bonuses: exploration bonuses (none, cts, pixelcnn, rnd) to measure our loop with as well; None (the
        default) measures none and adds no ``bonuses`` entry.
    :return: per algorithm, ``steps_per_s`` and, for a2c and ppo, ``sb3_steps_per_s`` and ``ratio_vs_sb3`` (None
        without SB3), for impala ``learner_busy_fraction``; and the measured setting (``num_envs``,
        ``unroll_length``, ``num_actors``, ``seconds``, ``cores``); with ``bonuses``, ``bonuses``: per bonus
        ``steps_per_s``, ``ratio_vs_none`` and ``streams`` (:func:`measure_bonuses`).
    """
    torch.set_num_threads(1)
    if bonuses is not None:
        expand_bonuses(bonuses)  # an unknown name fails before the first measurement, not minutes into the run
    result: dict[str, dict[str, Any]] = {}
    for algo in expand_algos(algos):
        cfg = ac_bench_config(algo, game)
        ours = measure_ours(cfg, seconds)
        row: dict[str, Any] = {"steps_per_s": ours["steps_per_s"]}
        if bonuses is not None:
            # Right after the bonus-free loop, so that both see the machine in the same state.
            row["bonuses"] = measure_bonuses(algo, game, seconds, bonuses, ours["steps_per_s"])
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
    table = "\n".join([head, "-" * len(head), lines[0], *lines[1:]])
    bonus_table = format_bonus_table(result)
    return f"{table}\n\n{bonus_table}" if bonus_table else table


def format_bonus_table(result: dict[str, dict[str, Any]]) -> str:
    """The ``bonuses`` figures of :func:`run_ac_bench` as a table: per algorithm the bonus-free reference row, then
    each bonus with its ratio to it and the goal; "" where no algorithm was measured with ``bonuses``."""
    streams_label = {"one": "one (A3C+)", "two": "two (RND)"}
    rows = [("algorithm", "bonus", "streams", "ours", "vs none", "goal")]
    for algo, r in result.items():
        if "bonuses" not in r:
            continue
        rows.append((algo, "none", "-", f"{r['steps_per_s']:,.1f} steps/s", "1.00x", "-"))
        for bonus, b in r["bonuses"].items():
            goal = BONUS_GOALS[bonus]
            rows.append((algo, bonus, streams_label.get(b["streams"], b["streams"]), f"{b['steps_per_s']:,.1f} steps/s",
                         f"{b['ratio_vs_none']:.2f}x",
                         f"[>= {goal:g}] " + ("met" if b["ratio_vs_none"] >= goal else "missed")))
    if len(rows) == 1:
        return ""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    head = "exploration bonus: our loop's agent steps/s with each bonus against none, same preset, game and seconds"
    return "\n".join([head, "-" * len(head), *lines])
