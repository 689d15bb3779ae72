"""``reverie bench straw``: what STRAW costs on one core, beside its baselines, and whether the maze keeps up.

Measured in one run, one after the other, each on one torch thread, in local mode (acting and learning in one
process, as the maze presets train):

- the maze's vector env alone (16 envs, random actions): agent steps/s of ``maze/11`` and ``maze/15/curriculum``;
- training throughput (agent steps/s of wall clock, acting and learning together, after the first update) of the
  maze presets: the feed-forward and LSTM baselines (``lstm_maze``), STRAW (``straw_maze``: plans of 100
  columns), STRAW with the paper's 500 columns, and STRAWe (``strawe_maze``);
- ``env_share``: the env's part of a training step (training steps/s over env steps/s): small means the learner,
  not the env, is the bottleneck.

With ``--atari`` the same for the Atari presets (Sec. 5.4's network on colour frames): Frostbite's vector env alone
(16 envs, grey and colour frames), then the feed-forward and LSTM baselines (``lstm_atari``), STRAW and STRAWe
(``strawe_atari``, T = 500), and the hours 10M frames take at each rate.
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
#: The same for the Atari presets (Frostbite, colour frames, T = 500).
ATARI_RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ff": ("lstm_atari", ("network.core=ff", "network.prev_action_reward=false")),
    "lstm": ("lstm_atari", ()),
    "straw": ("strawe_atari", ("straw.noisy=false",)),
    "strawe": ("strawe_atari", ()),
}
#: name -> (game, make_env settings) of the Atari env measurements.
ATARI_ENVS: dict[str, tuple[str, dict[str, Any]]] = {
    "Frostbite, grey": ("Frostbite", {}),
    "Frostbite, colour": ("Frostbite", {"grayscale": False}),
}


def env_steps_per_s(game: str, seconds: float, num_envs: int = 16, **settings: Any) -> float:
    """Agent steps/s of a vector env alone (``make_env(game, **settings)``), random actions."""
    from envs import make_env

    env = make_env(game, num_envs=num_envs, seed=0, **settings)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    actions = rng.integers(0, int(env.single_action_space.n), (1024, num_envs))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[steps % 1024])
        steps += 1
    env.close()
    return steps * num_envs / (time.perf_counter() - start)


def run_straw_bench(seconds: float = 20.0, names: Sequence[str] | None = None, atari: bool = False) -> dict[str, Any]:
    """The figures of the module docstring: ``env`` (game -> steps/s) and ``train`` (name -> steps/s, learner busy
    fraction, env share; on Atari also ``hours_per_10m_frames``).

    :param names: which runs of ``STRAW_RUNS`` (``ATARI_RUNS`` with ``atari``); None: all.
    """
    import torch

    from agents.registry import get_builder
    from launch.bench.ac import NEVER, measure_ours
    from launch.config import load_config, peek_algo

    torch.set_num_threads(1)
    runs = ATARI_RUNS if atari else STRAW_RUNS
    if atari:
        env = {label: env_steps_per_s(game, min(seconds, 5.0), **settings)
               for label, (game, settings) in ATARI_ENVS.items()}
        reference = env["Frostbite, colour"]
    else:
        env = {game: env_steps_per_s(game, min(seconds, 5.0)) for game in MAZE_GAMES}
        reference = env["maze/11"]
    train: dict[str, dict[str, float]] = {}
    for name in runs if names is None else names:
        preset, overrides = runs[name]
        cfg = load_config(get_builder(peek_algo([preset])).config_class, [preset], [
            "run.progress=false", "run.eval_episodes=0", f"run.total_frames={NEVER}",
            f"run.checkpoint_every_frames={NEVER}", f"run.log_every_frames={NEVER}", *overrides])
        figures = measure_ours(cfg, seconds)
        figures["env_share"] = figures["steps_per_s"] / reference
        if atari:  # 4 emulator frames per agent step
            figures["hours_per_10m_frames"] = 10e6 / (4 * figures["steps_per_s"]) / 3600
        train[name] = figures
    return {"seconds": seconds, "atari": atari, "env": env, "train": train}


def format_straw_table(result: dict[str, Any]) -> str:
    atari = bool(result.get("atari"))
    lines = [f"{'Atari' if atari else 'maze'} vector env alone (16 envs, random actions):"]
    lines += [f"  {game:<22} {rate:>12,.0f} steps/s" for game, rate in result["env"].items()]
    base = result["train"].get("ff", {}).get("steps_per_s")
    lines.append(f"training, local mode, one thread ({result['seconds']:.0f} s each):")
    hours = f" {'h / 10M frames':>15}" if atari else ""
    lines.append(f"  {'run':<12} {'steps/s':>9} {'vs ff':>7} {'learner busy':>13} {'env share':>10}{hours}")
    for name, f in result["train"].items():
        ratio = f"{f['steps_per_s'] / base:.2f}x" if base else "n/a"
        hours = f" {f['hours_per_10m_frames']:>15.1f}" if atari else ""
        lines.append(f"  {name:<12} {f['steps_per_s']:>9,.0f} {ratio:>7} {f['learner_busy_fraction']:>13.0%} "
                     f"{f['env_share']:>10.1%}{hours}")
    return "\n".join(lines)
