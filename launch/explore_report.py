"""``reverie explore-report RUN...``: what an exploration bonus did in a run, read from its TensorBoard scalars.

The figures a comparison of bonus agents against their bonus-free twins needs (issue 24), per run, at the run's
own frames:

- ``frames``: the last frame a game ended at (the run's length as its curves show it);
- on a maze (``maze/goal_reached`` per game): ``first_goal_frame`` (frames until a game first reached the goal; None
  if none did), ``goals`` (games that reached it) and ``goal_rate_last`` (the share of the games ending in the last
  ``window_frames`` that reached it);
- on Montezuma's Revenge (``explore/rooms_total``): ``rooms_total``, the rooms the run has seen;
- ``return_last``: mean game score over the games ending in the last ``window_frames``;
- with a bonus: ``intrinsic_reward_first`` / ``intrinsic_reward_last`` (``explore/intrinsic_reward_mean``, the
  bonus per step: does it decay?), ``pseudo_count_first`` / ``pseudo_count_last`` (``explore/pseudo_count_mean``:
  how fast the counts grow) and, for a two-stream agent, ``intrinsic_return_std_last`` (what its intrinsic rewards
  are divided by).

Compare runs only at equal frames: the report prints each run's frames so that a reader can check.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from launch.plot import read_scalars, scalar_tags

__all__ = ["exploration_summary", "format_exploration_table"]


def _first_last(run_dir: Path, tag: str, tags: list[str]) -> tuple[float | None, float | None]:
    if tag not in tags:
        return None, None
    _, values = read_scalars(run_dir, tag)
    return (float(values[0]), float(values[-1])) if len(values) else (None, None)


def exploration_summary(run_dir: str | Path, window_frames: int = 100_000) -> dict[str, Any]:
    """The figures of the module docstring for one run.

    :param run_dir: a run directory (TensorBoard event files directly inside it).
    :param window_frames: the trailing window, in frames, of ``goal_rate_last`` and ``return_last``.
    :raises FileNotFoundError: no run or no event files there. :raises ValueError: no game ended in the run, or
        ``window_frames`` < 1.
    """
    if window_frames < 1:
        raise ValueError(f"--window-frames {window_frames}: give a window of at least 1 frame")
    run = Path(run_dir)
    tags = scalar_tags(run)
    if "charts/episodic_return" not in tags:
        raise ValueError(f"run {run} has no finished game (no charts/episodic_return): nothing to report yet")
    steps, returns = read_scalars(run, "charts/episodic_return")
    frames = int(steps[-1])
    recent = steps > frames - window_frames
    out: dict[str, Any] = {"run": str(run), "frames": frames, "games": int(len(returns)),
                           "return_last": float(returns[recent].mean())}
    if "maze/goal_reached" in tags:
        goal_steps, reached = read_scalars(run, "maze/goal_reached")
        hit = reached > 0
        out["first_goal_frame"] = int(goal_steps[np.argmax(hit)]) if hit.any() else None
        out["goals"] = int(hit.sum())
        out["goal_rate_last"] = float(hit[goal_steps > frames - window_frames].mean())
    if "explore/rooms_total" in tags:
        out["rooms_total"] = _first_last(run, "explore/rooms_total", tags)[1]
    out["intrinsic_reward_first"], out["intrinsic_reward_last"] = _first_last(
        run, "explore/intrinsic_reward_mean", tags)
    out["pseudo_count_first"], out["pseudo_count_last"] = _first_last(run, "explore/pseudo_count_mean", tags)
    out["intrinsic_return_std_last"] = _first_last(run, "explore/intrinsic_return_std", tags)[1]
    return out


def format_exploration_table(rows: Sequence[dict[str, Any]], window_frames: int) -> str:
    """One line per run of :func:`exploration_summary`'s figures ("-" where a run has none)."""

    def f(value: Any, digits: int = 3) -> str:
        if value is None:
            return "-"
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:.{digits}g}"

    window = f"last {window_frames:,} frames"
    header = ("run", "frames", "games", f"return ({window})", "first goal at", "goals", f"goal rate ({window})",
              "rooms", "bonus/step first -> last", "pseudo-count first -> last")
    lines = [header]
    for r in rows:
        lines.append((Path(r["run"]).name, f(r["frames"]), f(r["games"]), f(r["return_last"]),
                      f(r.get("first_goal_frame")), f(r.get("goals")), f(r.get("goal_rate_last")),
                      f(r.get("rooms_total")),
                      f"{f(r['intrinsic_reward_first'])} -> {f(r['intrinsic_reward_last'])}",
                      f"{f(r['pseudo_count_first'])} -> {f(r['pseudo_count_last'])}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
