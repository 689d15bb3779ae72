"""Pictures of STRAW's plans, written into the run directory when a ``straw`` run ends (people look at these, not
at numbers):

- ``replanning_heatmap.png`` (the paper's Fig. 3a; maze games only): one fixed maze, every free cell as a start;
  the colour of a cell is how often the agent re-planned when it stood there;
- ``plans.gif``: one game, each frame beside the action plan A_t (the first columns of each action row, its
  softmax over actions, and the value row) and the commitment plan c_t, with the gate of the step;
- ``gate_strip.png`` (the paper's Fig. 4): the game's first frames in a row and, under the whole game, the gate
  of every step (dark: re-plan, light: follow the plan).

The agent samples its actions as in training (``agent.eval_greedy`` picks the most probable instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from agents.straw.config import StrawConfig
from agents.straw.network import STRAWNetwork

if TYPE_CHECKING:
    from agents.actor_critic.actor import ACPolicy
from worldmodels.common.atomic import atomic_write

#: Plan columns a picture shows (the next steps; the plan is 500 long, its far end is mostly empty).
SHOWN_COLUMNS = 40


@dataclass
class Trace:
    """What one game looked like to the planner, step by step."""

    frames: list[np.ndarray] = field(default_factory=list)
    """RGB pictures of the observations, uint8 ``[H, W, 3]``."""
    plans: list[np.ndarray] = field(default_factory=list)
    """A_t after each step, ``[|A| + 1, T]``."""
    commits: list[np.ndarray] = field(default_factory=list)
    """c_t after each step, ``[T]``."""
    gates: list[bool] = field(default_factory=list)
    """Whether the step re-planned."""
    positions: list[tuple[int, int]] = field(default_factory=list)
    """The agent's cell at each step (maze only)."""


def _network(cfg: StrawConfig, weights: dict[str, torch.Tensor], spec: Any) -> STRAWNetwork:
    network = cfg.straw_network(spec.obs_shape, spec.num_actions, spec.obs_high)
    network.load_state_dict(weights)
    return network.eval().requires_grad_(False)


def _policy(network: STRAWNetwork, seed: int, greedy: bool) -> ACPolicy:
    """The actor's sampling policy around ``network`` (its state, ``policy.state``, holds the plans)."""
    from agents.actor_critic.actor import ACPolicy

    return ACPolicy(network, seed, greedy=greedy)


def _act(policy: ACPolicy, obs: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of N envs as the actor takes it: actions and the gates the step applied (bool ``[N]``)."""
    actions, extras = policy.act(obs, 0, starts)
    return actions, (extras["input_gate"] > 0.5) | starts


def record_game(cfg: StrawConfig, weights: dict[str, torch.Tensor], seed: int = 0, max_steps: int = 400) -> Trace:
    """Play one game of ``cfg.env.game`` and record the plans at every step (at most ``max_steps``)."""
    from agents.runtime.algorithm import env_spec
    from agents.runtime.config import make_actor_env
    from envs import is_maze, observation_to_rgb

    env = make_actor_env(cfg.env, seed, num_envs=1)
    try:
        spec = env_spec(env)
        policy = _policy(_network(cfg, weights, spec), seed, bool(cfg.agent.eval_greedy))
        obs, _ = env.reset(seed=seed)
        starts = np.ones(1, bool)
        trace = Trace()
        scale = 16 if max(spec.frame_shape[-2:]) <= 16 else 2
        for _ in range(max_steps):
            actions, applied = _act(policy, obs, starts)
            assert policy.state is not None
            state = policy.state
            if is_maze(cfg.env.game):
                from envs import maze_to_rgb

                trace.frames.append(maze_to_rgb(obs[0], scale))
            else:
                trace.frames.append(observation_to_rgb(obs[0], spec.stack, spec.frame_shape, scale))
            trace.plans.append(state["plan"][0].numpy().copy())
            trace.commits.append(state["commit"][0].numpy().copy())
            trace.gates.append(bool(applied[0]))
            obs, _, terminated, truncated, _ = env.step(actions)
            starts = np.zeros(1, bool)
            if terminated[0] or truncated[0]:
                break
        return trace
    finally:
        env.close()


def _colour(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``values`` ``[H, W]`` as viridis RGB uint8 ``[H, W, 3]`` on the range [lo, hi]."""
    from matplotlib import colormaps

    scaled = np.clip((values - lo) / max(hi - lo, 1e-8), 0.0, 1.0)
    return (colormaps["viridis"](scaled)[..., :3] * 255).astype(np.uint8)


def plan_panel(plan: np.ndarray, commit: np.ndarray, gate: bool, height: int, num_actions: int) -> np.ndarray:
    """The plans of one step as a picture ``[height, W, 3]``: the softmax over actions of the first
    :data:`SHOWN_COLUMNS` columns (one row per action), the value row, the commitment plan, and a bar that is red
    on a re-planning step."""
    cols = min(SHOWN_COLUMNS, plan.shape[1])
    logits = plan[:num_actions, :cols]
    probs = np.exp(logits - logits.max(axis=0, keepdims=True))
    probs /= probs.sum(axis=0, keepdims=True)
    value = plan[num_actions:, :cols]
    rows = [_colour(probs, 0.0, 1.0), np.zeros((1, cols, 3), np.uint8),
            _colour(value, float(value.min()) - 1e-3, float(value.max()) + 1e-3), np.zeros((1, cols, 3), np.uint8),
            _colour(commit[None, :cols], 0.0, 1.0)]
    grid = np.concatenate(rows, axis=0)
    cell = max(1, height // grid.shape[0])
    picture = np.repeat(np.repeat(grid, cell, axis=0), cell, axis=1)
    bar = np.zeros((cell, picture.shape[1], 3), np.uint8)
    bar[:] = (220, 40, 40) if gate else (60, 60, 60)
    return np.concatenate([bar, picture], axis=0)


def _side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    height = max(left.shape[0], right.shape[0])

    def pad(x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, height - x.shape[0]), (0, 0), (0, 0)))

    return np.concatenate([pad(left), np.full((height, 8, 3), 255, np.uint8), pad(right)], axis=1)


def write_plans_gif(trace: Trace, num_actions: int, path: Path, fps: int = 6) -> Path:
    """``plans.gif``: every step's frame beside its plans (:func:`plan_panel`), written atomically."""
    import imageio.v2 as imageio
    from numpy.typing import ArrayLike

    frames: list[ArrayLike] = [_side_by_side(f, plan_panel(p, c, g, f.shape[0], num_actions))
              for f, p, c, g in zip(trace.frames, trace.plans, trace.commits, trace.gates)]
    atomic_write(path, lambda fh: imageio.mimwrite(fh, frames, format="GIF", duration=1000 / fps, loop=0))
    return path


def write_gate_strip(trace: Trace, path: Path, shown: int = 12) -> Path:
    """``gate_strip.png`` (Fig. 4): the first ``shown`` frames, and the gate of every step of the game under them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(shown, len(trace.frames))
    fig = plt.figure(figsize=(1.2 * n, 2.6))
    for i in range(n):
        ax = fig.add_axes((i / n, 0.36, 1 / n, 0.56))
        ax.imshow(trace.frames[i], interpolation="nearest")
        ax.set_axis_off()
        if trace.gates[i]:
            ax.set_title("re-plan", fontsize=7, color="#c02020")
    strip = fig.add_axes((0.02, 0.17, 0.96, 0.12))
    strip.imshow(np.asarray(trace.gates, float)[None], aspect="auto", cmap="Greys", vmin=-0.3, vmax=1.0,
                 interpolation="nearest")
    strip.set_yticks([])
    strip.set_xlabel(f"step (dark: re-plan; {np.mean(trace.gates):.0%} of {len(trace.gates)} steps)", fontsize=7)
    strip.tick_params(labelsize=6)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
    return path


def replanning_heatmap(cfg: StrawConfig, weights: dict[str, torch.Tensor], path: Path, seed: int = 0,
                       ) -> Path:
    """``replanning_heatmap.png`` (Fig. 3a): one maze (drawn with ``seed``), a game from every free cell to its
    goal, and per cell the share of the steps taken there that re-planned.

    :raises ValueError: the game is not a maze.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.runtime.algorithm import env_spec
    from envs import MazeVector, is_maze

    if not is_maze(cfg.env.game):
        raise ValueError(f"the re-planning heatmap needs a maze game (env.game=maze/...), not {cfg.env.game}")
    probe = MazeVector(cfg.env.game, num_envs=1, seed=seed)
    first, _ = probe.reset(seed=seed)
    walls, goal_map = first[0, 0].astype(bool), first[0, 2].astype(bool)
    goal = tuple(int(v) for v in np.argwhere(goal_map)[0])
    probe.close()
    starts_cells = [tuple(int(v) for v in c) for c in np.argwhere(~walls) if tuple(c) != goal]
    env = MazeVector(cfg.env.game, num_envs=len(starts_cells), seed=seed)
    try:
        spec = env_spec(env)
        policy = _policy(_network(cfg, weights, spec), seed, bool(cfg.agent.eval_greedy))
        env.reset(seed=seed)
        obs = None
        for i, cell in enumerate(starts_cells):
            obs = env.place(i, walls, (cell[0], cell[1]), (goal[0], goal[1]))
        assert obs is not None
        n = walls.shape[0]
        visits, replans = np.zeros((n, n)), np.zeros((n, n))
        starts = np.ones(len(starts_cells), bool)
        live = np.ones(len(starts_cells), bool)
        for _ in range(env.settings.max_steps):
            actions, applied = _act(policy, obs, starts)
            where = np.argwhere(obs[:, 1] > 0)  # (env, row, col) of each agent
            for e, r, c in where:
                if live[e]:
                    visits[r, c] += 1
                    replans[r, c] += applied[e]
            obs, _, terminated, truncated, _ = env.step(actions)
            starts = np.zeros_like(starts)
            live &= ~(terminated | truncated)
            if not live.any():
                break
    finally:
        env.close()
    rate = np.where(visits > 0, replans / np.maximum(visits, 1), np.nan)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    shown = ax.imshow(np.ma.masked_invalid(rate), cmap="magma", vmin=0.0, vmax=1.0)
    ax.imshow(np.where(walls, 1.0, np.nan), cmap="Blues", vmin=0.0, vmax=1.2)
    ax.scatter([goal[1]], [goal[0]], marker="*", s=160, c="#30c040", edgecolors="white")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("share of steps that re-planned, per cell\n(blue: walls, star: goal; a game from every cell)",
                 fontsize=8)
    fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, path)


def write_pictures(cfg: StrawConfig, weights: dict[str, torch.Tensor], out_dir: Path, seed: int = 0) -> list[Path]:
    """Every picture of this module that fits the game, into ``out_dir``; returns their paths."""
    from envs import is_maze

    out_dir = Path(out_dir)
    trace = record_game(cfg, weights, seed=seed)
    num_actions = trace.plans[0].shape[0] - 1
    paths = [write_plans_gif(trace, num_actions, out_dir / "plans.gif"),
             write_gate_strip(trace, out_dir / "gate_strip.png")]
    if is_maze(cfg.env.game):
        paths.append(replanning_heatmap(cfg, weights, out_dir / "replanning_heatmap.png", seed=seed))
    return paths
