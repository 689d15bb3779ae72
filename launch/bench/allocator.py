"""``reverie bench allocator``: glibc's allocator settings side by side on real training work.

glibc reads its settings only when a process starts, so each measurement runs in a fresh process
(``python -m launch.bench.allocator WORKLOAD SECONDS``) started with one of three environments:

- ``glibc default``: neither variable set (glibc adapts its thresholds itself);
- ``1 MB threshold``: ``MALLOC_MMAP_THRESHOLD_=1000000``, what this project set until it measured this;
- ``tuned``: :data:`worldmodels.common.allocator.TUNED`, what ``reverie`` applies now.

Workloads, each on one torch thread, measured from the first update for ``seconds`` of wall-clock:

- ``dqn_update``: the DQN learner alone on Atari (Nature CNN, batch 32 from a replay filled by our actor on
  Pong); unit: updates;
- ``dqn_train``: DQN training on Pong in local mode (actor, 16 emulators and learner in one process, the
  ``dqn_pong`` replay ratio of one update per 4 agent steps); unit: agent steps;
- ``minatar_train``: DQN training on MinAtar Breakout in local mode (``dqn_minatar``: small tensors, one update
  per agent step); unit: agent steps;
- ``video_update``: the ``video_cpu_ff`` world model's updates in its first stage (1-step objective, batch 32 of
  random 84x84 frames); unit: predicted frames.

Figures per workload and setting: work per CPU-second of the measuring process (the comparison that other jobs on
the machine disturb least), the kernel's share of that CPU time, page faults per unit of work, and the process's
peak resident memory (what keeping freed blocks costs). Settings alternate within each of ``rounds`` rounds, in a
rotated order, so that a change in the machine's load falls on all of them.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from typing import Any

from worldmodels.common.allocator import TUNED

#: name -> the allocator variables of that setting.
SETTINGS: dict[str, dict[str, str]] = {
    "glibc default": {},
    "1 MB threshold": {"MALLOC_MMAP_THRESHOLD_": "1000000"},
    "tuned": dict(TUNED),
}
WORKLOADS: dict[str, str] = {
    "dqn_update": "updates",
    "dqn_train": "agent steps",
    "minatar_train": "agent steps",
    "video_update": "predicted frames",
}


def _usage() -> tuple[float, float, int]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime, u.ru_stime, u.ru_minflt


def _measure(step: Any, seconds: float) -> dict[str, float]:
    """Call ``step()`` (returning units of work) for ``seconds`` after 3 warm-up calls (outside the span, as
    training is measured from its first update); the span's units, wall and CPU seconds and page faults."""
    from launch.bench.throughput import _timed

    for _ in range(3):
        step()
    cpu0, sys0, flt0 = _usage()
    elapsed, units = _timed(seconds, step, warmup=0)
    cpu1, sys1, flt1 = _usage()
    return {"units": float(units), "elapsed": elapsed, "cpu_s": cpu1 - cpu0, "sys_s": sys1 - sys0,
            "minflt": float(flt1 - flt0)}


def measure_workload(workload: str, seconds: float) -> dict[str, float]:
    """Run ``workload`` in this process for ``seconds``; see the module docstring.

    :return: ``units``, ``elapsed`` (wall s), ``cpu_s``, ``sys_s`` and ``minflt`` over the measured span, and
        ``max_rss_mb``, this process's peak resident memory so far.
    """
    import torch

    from launch.bench.throughput import bench_config, learner_step, measure_actor, minatar_config, training_marks

    torch.set_num_threads(1)
    if workload == "dqn_update":
        cfg = bench_config("pong", 0)
        _, replay, num_actions = measure_actor(cfg, 2.0)
        m = _measure(learner_step(cfg, replay, num_actions), seconds)
    elif workload in ("dqn_train", "minatar_train"):
        cfg = bench_config("pong", 0) if workload == "dqn_train" else minatar_config(0)
        t = training_marks(cfg, seconds)
        m = {"units": t["steps"], "elapsed": t["elapsed"], "cpu_s": t["cpu_s"], "sys_s": t["sys_s"],
             "minflt": t["minflt"]}
    elif workload == "video_update":
        import numpy as np

        from launch.bench.video import video_train_step
        from launch.config import load_config
        from worldmodels.video import VideoFitConfig, VideoPredictor

        fit = load_config(VideoFitConfig, ["video_cpu_ff"])
        stage = fit.optim.phases[0]
        model = VideoPredictor(fit.model, num_actions=6)
        video_step = video_train_step(model, fit.model, stage.batch_size, stage.steps, 6, np.random.default_rng(0))

        def step() -> int:
            video_step()
            return stage.batch_size * stage.steps

        m = _measure(step, seconds)
    else:
        raise ValueError(f"unknown workload {workload!r}; choose from {sorted(WORKLOADS)}")
    m["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return m


def _run_worker(workload: str, seconds: float, setting: dict[str, str]) -> dict[str, float]:
    """One measurement in a fresh process whose environment carries ``setting`` and no other allocator variable."""
    env = {k: v for k, v in os.environ.items() if k not in TUNED and k != "MALLOC_TOP_PAD_"}
    env.update(setting)
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run([sys.executable, "-m", "launch.bench.allocator", workload, str(seconds)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench allocator: the {workload} worker failed:\n{out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_allocator_bench(seconds: float = 20.0, rounds: int = 2,
                        workloads: list[str] | None = None) -> dict[str, Any]:
    """Measure every workload under every setting, ``rounds`` times each; see the module docstring.

    :return: ``{"workloads": {w: {setting: figures}}, "ratios": {w: {...}}, ...}`` where figures are
        ``per_cpu_s`` (units per CPU-second), ``per_s`` (units per wall second), ``sys_share``,
        ``faults_per_unit`` and ``max_rss_mb`` (the largest over the rounds), summed over rounds before dividing.
    """
    if rounds < 1 or seconds <= 0:
        raise ValueError(f"bench allocator needs --rounds >= 1 and --seconds > 0 (got {rounds} and {seconds}).")
    names = workloads or list(WORKLOADS)
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; choose from {sorted(WORKLOADS)}")
    settings = list(SETTINGS)
    result: dict[str, Any] = {"workloads": {}, "ratios": {}, "seconds": seconds, "rounds": rounds,
                              "unit": {w: WORKLOADS[w] for w in names}, "settings": SETTINGS}
    for w in names:
        runs: dict[str, list[dict[str, float]]] = {s: [] for s in settings}
        for r in range(rounds):
            for s in settings[r % len(settings):] + settings[:r % len(settings)]:
                runs[s].append(_run_worker(w, seconds, SETTINGS[s]))
        figures = {}
        for s, ms in runs.items():
            units, cpu, wall = (sum(m[k] for m in ms) for k in ("units", "cpu_s", "elapsed"))
            figures[s] = {"per_cpu_s": units / cpu, "per_s": units / wall,
                          "sys_share": sum(m["sys_s"] for m in ms) / cpu,
                          "faults_per_unit": sum(m["minflt"] for m in ms) / units,
                          "max_rss_mb": max(m["max_rss_mb"] for m in ms)}
        result["workloads"][w] = figures
        tuned = figures["tuned"]["per_cpu_s"]
        result["ratios"][w] = {"tuned_over_1mb": tuned / figures["1 MB threshold"]["per_cpu_s"],
                               "tuned_over_default": tuned / figures["glibc default"]["per_cpu_s"]}
    return result


def format_allocator_table(r: dict[str, Any]) -> str:
    lines = [f"reverie bench allocator: {r['seconds']:.0f} s x {r['rounds']} rounds per cell, one torch thread, "
             f"fresh process per measurement",
             "| workload | setting | per CPU-second | per wall second | kernel share | page faults per unit "
             "| peak RSS (MB) |",
             "|---|---|---|---|---|---|---|"]
    for w, figures in r["workloads"].items():
        for s, f in figures.items():
            lines.append(f"| {w} ({r['unit'][w]}) | {s} | {f['per_cpu_s']:,.1f} | {f['per_s']:,.1f} | "
                         f"{f['sys_share']:.2f} | {f['faults_per_unit']:,.0f} | {f['max_rss_mb']:,.0f} |")
    lines.append("")
    for w, ratio in r["ratios"].items():
        lines.append(f"{w}: tuned / 1 MB threshold = {ratio['tuned_over_1mb']:.2f}x, "
                     f"tuned / glibc default = {ratio['tuned_over_default']:.2f}x (work per CPU-second)")
    return "\n".join(lines)


if __name__ == "__main__":  # the worker: python -m launch.bench.allocator WORKLOAD SECONDS
    print(json.dumps(measure_workload(sys.argv[1], float(sys.argv[2]))))
