"""``reverie iterations RUN_DIR ...``: runs' training returns per Dopamine iteration (1M emulator frames), beside
Dopamine's published DQN at the same iterations and the human-normalised scores (``(score - random) / (human -
random)``, the shipped Atari-57 table), as one markdown table.

An iteration's value is the mean return of the training games that ended in it, as Dopamine reports its curves
(``launch/data/README.md``), so a run of the Machado protocol (sticky actions, full games) compares with Dopamine's
at equal frames. Runs that are not Atari (MinAtar) get their returns only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from launch.plot import config_game, read_scalars
from launch.scores import FRAMES_PER_ITERATION, human_normalized, load_dopamine


def iteration_means(run_dir: Path | str, iterations: int) -> list[float | None]:
    """Mean ``charts/episodic_return`` of the games that ended in each of the first ``iterations`` iterations
    (None where none ended, or where the run stopped before the iteration's end: a partial iteration is not the
    same measurement)."""
    frames, returns = read_scalars(run_dir, "charts/episodic_return")
    # How far the run got: the frame rate is logged every run.log_every_frames, whether games end or not.
    reached = max(frames.max(initial=0), read_scalars(run_dir, "charts/frames_per_s")[0].max(initial=0))
    out: list[float | None] = []
    for i in range(iterations):
        inside = (frames >= i * FRAMES_PER_ITERATION) & (frames < (i + 1) * FRAMES_PER_ITERATION)
        finished = reached >= (i + 1) * FRAMES_PER_ITERATION - FRAMES_PER_ITERATION // 100
        out.append(float(returns[inside].mean()) if inside.any() and finished else None)
    return out


def dopamine_means(game: str, iterations: int, agent: str = "DQN") -> list[float | None]:
    """Dopamine's published ``agent`` at each of the first ``iterations`` iterations, averaged over its runs (None
    for a game without a curve)."""
    try:
        runs = load_dopamine(game, agent)
    except ValueError:
        return [None] * iterations
    values = [v[:iterations] for _, v in runs.values()]
    return [float(np.mean([v[i] for v in values])) for i in range(iterations)]


def _cell(score: float | None, game: str) -> str:
    if score is None:
        return "-"
    hns = human_normalized(game, score) if not game.startswith(("minatar/", "toy/", "maze/")) else None
    return f"{score:,.1f}" + (f" ({100 * hns:.1f}%)" if hns is not None else "")


def iterations_table(run_dirs: list[Path], iterations: int = 2, agent: str = "DQN") -> str:
    """The markdown table of the module docstring, one row per run."""
    heads = [f"{i + 1}M frames" for i in range(iterations)]
    lines = ["| run | game | " + " | ".join(heads) + f" | Dopamine {agent}: " + " / ".join(heads) + " |",
             "|---|---|" + "---|" * iterations + "---|"]
    for run in run_dirs:
        game = config_game(run) or "?"
        ours = iteration_means(run, iterations)
        theirs = dopamine_means(game, iterations, agent)
        published = " / ".join(_cell(v, game) for v in theirs) if any(v is not None for v in theirs) else "-"
        lines.append(f"| {run.name} | {game} | " + " | ".join(_cell(v, game) for v in ours) + f" | {published} |")
    lines.append("Scores: mean return of the training games that ended in each million frames (human-normalised "
                 "in brackets).")
    return "\n".join(lines)


def cmd_iterations(args: argparse.Namespace) -> int:
    print(iterations_table([Path(r) for r in args.run_dirs], args.iterations, args.agent))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``iterations`` to the ``reverie`` subparsers."""
    p = sub.add_parser("iterations", help="runs' returns per 1M frames beside Dopamine's and human-normalised",
                       description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dirs", nargs="+", help="run directories")
    p.add_argument("--iterations", type=int, default=2, help="iterations (millions of frames) to report")
    p.add_argument("--agent", default="DQN", help="Dopamine agent to set beside (DQN or Rainbow)")
    p.set_defaults(func=cmd_iterations)
