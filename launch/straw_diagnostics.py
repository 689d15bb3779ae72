"""``python -m launch.straw_diagnostics RUN_DIR [--unrolls N] [--init] [key=value ...]``: where a STRAW run's gradient
comes from and how good its critic is on committed steps (:mod:`agents.straw.diagnostics`).

``--curve FRAMES`` prints instead what the run logged, as the mean over the games (or updates) in its first and last
FRAMES frames: return, goal rate and return gap (mazes), committed fraction and macro-action length (README's
tables are such windows)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from agents.straw.diagnostics import format_breakdown, gradient_breakdown

#: The tags ``--curve`` summarises, in the order printed.
CURVE_TAGS = ("charts/episodic_return", "maze/goal_reached", "maze/return_gap", "charts/committed_fraction",
              "charts/macro_action_length")


def curve_windows(run_dir: Path, window: int) -> dict[str, tuple[float, float]]:
    """The mean of each of :data:`CURVE_TAGS` that the run logged over its first and its last ``window`` frames.

    :returns: ``{tag: (first, last)}`` (NaN for an empty window).
    """
    from launch.plot import read_many

    out = {}
    for tag, (steps, values) in read_many(run_dir, CURVE_TAGS).items():
        first, last = values[steps <= steps.min() + window], values[steps > steps.max() - window]
        out[tag] = (float(np.mean(first)) if len(first) else float("nan"),
                    float(np.mean(last)) if len(last) else float("nan"))
    return out


def main(argv: list[str] | None = None) -> int:
    from agents.registry import get_builder
    from launch.config import load_config
    from worldmodels.common.checkpoint import load_latest

    parser = argparse.ArgumentParser(description="STRAW's gradient per loss term and network part, and its critic's "
                                     "error on committed and re-planning steps",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a STRAW run directory (its newest valid checkpoint), or one of "
                                                   "its checkpoint files")
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value), e.g. straw.commit_init_centre=4")
    parser.add_argument("--unrolls", type=int, default=20, help="unrolls to average over")
    parser.add_argument("--init", action="store_true", help="a freshly initialised network, not the checkpoint's")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--curve", type=int, default=0, metavar="FRAMES",
                        help="print the run's logged curves, first vs last FRAMES frames, instead of the gradients")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    run = args.run_dir.parent.parent if args.run_dir.is_file() else args.run_dir  # RUN/checkpoints/FILE
    if args.curve > 0:
        windows = curve_windows(run, args.curve)
        print(json.dumps(windows) if args.json else "\n".join(
            f"{tag:<28} first {a:8.3f}  last {b:8.3f}" for tag, (a, b) in windows.items()))
        return 0
    config = run / "config.yaml"
    if not config.is_file():
        parser.error(f"{run} holds no config.yaml: give the directory of a STRAW run or one of its checkpoints")
    cfg = load_config(get_builder("straw").config_class, [config], ["run.progress=false", *args.overrides])
    weights = None
    if not args.init:
        _, state = load_latest(args.run_dir)
        weights = get_builder("straw").checkpoint_weights(state)
    result = gradient_breakdown(cfg, weights, args.unrolls)
    print(json.dumps(result) if args.json else format_breakdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
