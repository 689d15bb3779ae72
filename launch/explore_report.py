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

``--visits OUT.png`` (maze runs): where each run's final policy goes. :func:`maze_visits` plays games of the run's
maze with its newest checkpoint (the policy as it acts in training, sampled) and counts the games that entered each
cell; :func:`draw_visits` draws one panel per run, walls grey, the share of games that reached each cell in colour
(log scale), start and goal marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from launch.plot import read_many, save_png

__all__ = ["draw_visits", "exploration_summary", "format_exploration_table", "maze_visits"]


#: The tags the report reads.
_TAGS = ("charts/episodic_return", "maze/goal_reached", "explore/rooms_total", "explore/intrinsic_reward_mean",
         "explore/pseudo_count_mean", "explore/intrinsic_return_std")


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
    logged = read_many(run, _TAGS)  # the event files are read once

    def first_last(tag: str) -> tuple[float | None, float | None]:
        values = logged[tag][1] if tag in logged else np.zeros(0)
        return (float(values[0]), float(values[-1])) if len(values) else (None, None)

    if "charts/episodic_return" not in logged:
        raise ValueError(f"run {run} has no finished game (no charts/episodic_return): nothing to report yet")
    steps, returns = logged["charts/episodic_return"]
    frames = int(steps[-1])
    recent = steps > frames - window_frames
    out: dict[str, Any] = {"run": str(run), "frames": frames, "games": int(len(returns)),
                           "return_last": float(returns[recent].mean())}
    if "maze/goal_reached" in logged:
        goal_steps, reached = logged["maze/goal_reached"]
        hit = reached > 0
        out["first_goal_frame"] = int(goal_steps[np.argmax(hit)]) if hit.any() else None
        out["goals"] = int(hit.sum())
        out["goal_rate_last"] = float(hit[goal_steps > frames - window_frames].mean())
    if "explore/rooms_total" in logged:
        out["rooms_total"] = first_last("explore/rooms_total")[1]
    out["intrinsic_reward_first"], out["intrinsic_reward_last"] = first_last("explore/intrinsic_reward_mean")
    out["pseudo_count_first"], out["pseudo_count_last"] = first_last("explore/pseudo_count_mean")
    out["intrinsic_return_std_last"] = first_last("explore/intrinsic_return_std")[1]
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


def maze_visits(run_dir: str | Path, games: int = 16, seed: int = 12345) -> dict[str, Any]:
    """The cells a maze run's newest checkpoint visits in ``games`` games (one picture per run only for a maze of one
    fixed layout, ``layout_seed=...``; on random mazes the walls drawn are the first game's).

    :return: ``visits`` float64 ``[n, n]`` (the share of games that entered each cell), ``walls`` bool ``[n, n]``,
        ``start`` and ``goal`` (row, col), ``frames`` (trained), ``goal_rate`` (share of the games that reached it).
    :raises ValueError: not a maze run, or ``games`` < 1.
    """
    from agents.registry import get_builder
    from agents.runtime.algorithm import CheckpointLayout
    from agents.runtime.loop import probe_env
    from envs.maze import AGENT, GOAL, WALLS
    from launch.config import load_run_config

    if games < 1:
        raise ValueError(f"--visit-games {games}: play at least 1 game")
    cfg, ckpt, _ = load_run_config(None, str(run_dir))
    if not str(cfg.env.game).startswith("maze/"):
        raise ValueError(f"run {run_dir} plays {cfg.env.game}, not a maze: --visits draws maze runs only")
    builder = get_builder(cfg.algo)
    weights = builder.checkpoint_weights(ckpt)
    entered: list[np.ndarray] = []  # per game, bool [n, n]: the cells the agent stood on
    first: list[np.ndarray] = []
    reached = 0
    for game in range(games):
        frames: list[np.ndarray] = []
        result = builder.evaluate(cfg, weights, 1, seed=seed + game, record=frames)
        reached += int(result.returns[0] > 0)
        stood = np.stack(frames)[:, AGENT] > 0  # [steps, n, n]
        entered.append(np.asarray(stood.any(axis=0)))
        first = first or frames[:1]
    visits = np.mean(np.stack(entered), axis=0, dtype=np.float64)
    start = np.argwhere(first[0][AGENT] > 0)[0]
    goal = np.argwhere(first[0][GOAL] > 0)
    return {"run": str(run_dir), "visits": visits, "walls": first[0][WALLS] > 0,
            "start": tuple(int(x) for x in start), "goal": tuple(int(x) for x in goal[0]) if len(goal) else None,
            "frames": CheckpointLayout.steps(ckpt) * probe_env(cfg).frame_skip, "goal_rate": reached / games}


def draw_visits(maps: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """One panel per :func:`maze_visits` result, written to ``out`` (PNG, atomically); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 3.6), dpi=120, squeeze=False)
    image = None
    for ax, m in zip(axes[0], maps):
        shown = np.ma.masked_where(m["visits"] <= 0, m["visits"])
        ax.imshow(np.where(m["walls"], 0.6, 1.0), cmap="gray", vmin=0, vmax=1)
        image = ax.imshow(shown, cmap="viridis", norm=LogNorm(vmin=1.0 / 64, vmax=1.0))
        ax.plot(m["start"][1], m["start"][0], "ws", markersize=5, markeredgecolor="k")
        if m["goal"] is not None:
            ax.plot(m["goal"][1], m["goal"][0], "r*", markersize=11, markeredgecolor="k")
        ax.set_title(f"{Path(m['run']).name}\n{m['frames']:,} frames, goal in {m['goal_rate']:.0%}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="share of games entering the cell")
    return save_png(fig, Path(out))
