"""``reverie bench straw``: what STRAW costs on one core, beside its baselines, and whether the maze keeps up.

Measured in one run, one after the other, each on one torch thread, in local mode (acting and learning in one
process, as the maze presets train):

- the maze's vector env alone (16 envs, random actions): agent steps/s of ``maze/11`` and ``maze/15/curriculum``;
- training throughput (agent steps/s of wall clock, acting and learning together, after the first update) of the
  maze presets: the feed-forward and LSTM baselines (``lstm_maze``), STRAW (``straw_maze``: plans of 100
  columns), STRAW with the paper's 500 columns, and STRAWe (``strawe_maze``);
- ``env_share``: the env's part of a training step (training steps/s over env steps/s): small means the learner,
  not the env, is the bottleneck.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

#: name -> (preset, overrides) of the training measurements.
STRAW_RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ff": ("lstm_maze", ("network.core=ff", "network.prev_action_reward=false")),
    "lstm": ("lstm_maze", ()),
    "straw": ("straw_maze", ()),
    "straw_t500": ("straw_maze", ("straw.plan_len=500",)),
    "strawe": ("strawe_maze", ()),
}
MAZE_GAMES = ("maze/11", "maze/15/curriculum")


def env_steps_per_s(game: str, seconds: float, num_envs: int = 16) -> float:
    """Agent steps/s of the maze's vector env alone, random actions."""
    from envs import make_env

    env = make_env(game, num_envs=num_envs, seed=0)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    actions = rng.integers(0, 4, (1024, num_envs))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[steps % 1024])
        steps += 1
    env.close()
    return steps * num_envs / (time.perf_counter() - start)


def run_straw_bench(seconds: float = 20.0, names: Sequence[str] = tuple(STRAW_RUNS)) -> dict[str, Any]:
    """The figures of the module docstring: ``env`` (game -> steps/s) and ``train`` (name -> steps/s, learner busy
    fraction, env share)."""
    import torch

    from agents.registry import get_builder
    from launch.bench_ac import NEVER, measure_ours
    from launch.config import load_config, peek_algo

    torch.set_num_threads(1)
    env = {game: env_steps_per_s(game, min(seconds, 5.0)) for game in MAZE_GAMES}
    train: dict[str, dict[str, float]] = {}
    for name in names:
        preset, overrides = STRAW_RUNS[name]
        cfg = load_config(get_builder(peek_algo([preset])).config_class, [preset], [
            "run.progress=false", "run.eval_episodes=0", f"run.total_frames={NEVER}",
            f"run.checkpoint_every_frames={NEVER}", f"run.log_every_frames={NEVER}", *overrides])
        figures = measure_ours(cfg, seconds)
        figures["env_share"] = figures["steps_per_s"] / env["maze/11"]
        train[name] = figures
    return {"seconds": seconds, "env": env, "train": train}


def format_straw_table(result: dict[str, Any]) -> str:
    lines = ["maze vector env alone (16 envs, random actions):"]
    lines += [f"  {game:<22} {rate:>12,.0f} steps/s" for game, rate in result["env"].items()]
    base = result["train"].get("ff", {}).get("steps_per_s")
    lines.append(f"training, local mode, one thread ({result['seconds']:.0f} s each):")
    lines.append(f"  {'run':<12} {'steps/s':>9} {'vs ff':>7} {'learner busy':>13} {'env share':>10}")
    for name, f in result["train"].items():
        ratio = f"{f['steps_per_s'] / base:.2f}x" if base else "n/a"
        lines.append(f"  {name:<12} {f['steps_per_s']:>9,.0f} {ratio:>7} {f['learner_busy_fraction']:>13.0%} "
                     f"{f['env_share']:>10.1%}")
    return "\n".join(lines)
