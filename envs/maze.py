"""The STRAW maze (Vezhnevets et al. 2016, "Strategic Attentive Writer for Learning Macro-Actions", Sec. 5.3): random
walls, a start and a goal in an n x n grid, fully observed, with the API of the other vector envs of :mod:`envs`.

The game. An episode is one new maze: each cell is a wall or free; the agent starts on a free cell and must reach
the goal cell with the 4 moves ``UP, RIGHT, DOWN, LEFT`` (:data:`ACTION_MEANINGS`). Rewards, with ``r`` the
``step_reward`` setting (0.01):

- a move onto a free cell: ``-r``; the agent moves;
- a move into a wall or off the grid (the grid's edge is a wall): ``-2r``; the agent stays;
- the move onto the goal: ``+r`` (instead of ``-r``) and the episode ends (``terminated``);
- after ``max_steps`` (100) steps without the goal the episode is cut (``truncated``, not ``terminated``: the state
  is not terminal, a learner should bootstrap from it).

So a maze whose goal lies d moves away by the shortest path has the optimal return ``r * (2 - d)`` when
``d <= max_steps``, else ``-r * max_steps`` (:func:`optimal_return`); every maze's d comes from a breadth-first search
when the maze is drawn, and is reported on every step (``info["shortest_path"]``, ``info["optimal_return"]``) so
that the agent's return can be logged beside it (:class:`MazeTracker`).

The observation is uint8 ``[3, n, n]`` per env, values 0/1 (*not* pixels, like MinAtar's channels): channel 0 the
walls, 1 the agent, 2 the goal (on the last step of a solved maze the agent and the goal share a cell).

The mazes (our generator; the paper does not describe its own): every cell is a wall with probability
``wall_density`` (0.3, below site percolation's threshold of about 0.41 walls, so a large open region exists) and the
agent starts on a uniformly random free cell. A breadth-first search from the start finds the start's 4-connected
region of free cells; the maze is kept if that region holds more than half of the free cells (and at least 2),
else drawn again, and every free cell outside it (the pockets the agent could never reach) is made a wall. So every
free cell the agent sees is reachable, every maze is solvable by construction, and the start is uniform over its
region. Two ways to place the goal:

- ``maze/<n>``: a uniformly random free cell other than the start;
- ``maze/<n>/curriculum`` (the paper's curriculum): the end of a random walk of L moves from the start over free
  cells, where L = ``curriculum_start + curriculum_steps // curriculum_every`` (paper: from 2, +1 every 2M agent
  steps). The walk is non-backtracking (it turns back only at a dead end: our choice, the paper says "random walk";
  at L = 2 a plain walk returns to the start with probability 1 / (free neighbours of the cell it stepped to)); if
  it ends on the start, the goal is the last other cell it visited. The goal is then at most L moves from the start.

``curriculum_steps`` counts the agent steps this vector env has taken (all sub-envs, autoreset steps excluded)
since it was built. It is a plain attribute: to drive the curriculum by a run's global step count (several actors;
a resumed run), set it, e.g. ``env.curriculum_steps = global_agent_steps`` before a chunk; :meth:`MazeVector.state_dict`
and :meth:`MazeVector.load_state_dict` save and restore it.

Names and settings. ``make_env`` takes ``maze/<n>`` and ``maze/<n>/curriculum``; settings (:data:`SETTINGS`) come
either as ``make_env`` keyword arguments or in the name after a colon, so that a run's ``env.game`` alone says
everything (``reverie train a2c_minatar env.game=maze/15/curriculum:curriculum_every=100000``)::

    maze/11                                             # 11 x 11, goal anywhere reachable
    maze/15/curriculum                                  # the paper's curriculum: L from 2, +1 every 2M steps
    maze/15/curriculum:curriculum_every=100000,step_reward=0.1
    maze/11:wall_density=0.2,max_steps=50
    maze/21:layout_seed=0,sparse=true                   # the sparse-reward maze for exploration (below)

The sparse-reward maze (``sparse=true``), a hard exploration problem (issue 24): the goal is the free cell farthest
from the start by the shortest path (ties: the first in row-major order), the only reward is ``+1`` on reaching it
(no step reward, no wall penalty: ``step_reward`` is not used), and the step cap defaults to ``n^2`` (441 for
n = 21) instead of 100. With ``layout_seed=k`` every episode of every env plays the one maze drawn from seed k.
``maze/21:layout_seed=0,sparse=true`` has 322 free cells and its goal 31 moves from the start; a uniformly random
policy reaches it within the 441-step cap in about 1 episode in 100 (18 of 2048 episodes, 0.9%, seed 0, measured
in ``tests/unit/test_sparse_maze.py``; about 5% with a cap of 882), so epsilon-greedy and entropy-driven agents
rarely see a reward. ``sparse`` does not combine with the curriculum (which places the goal by a walk).

:class:`MazeVector` follows :class:`envs.toy.CatchVectorEnv` and :class:`envs.minatar.MinAtarVector` to the letter:
NextStep autoreset (the step after an episode ended ignores that env's action and returns the first observation of a
new maze with reward 0, terminated and truncated False), ``reset(seed=..., options={"reset_mask": ...})``, ``stack =
1``, ``frame_skip = 1`` (frame counters count agent steps), ``frame_shape = (3, n, n)``, and info ``env_id``,
``lives`` (always 0), ``frame_number``, ``episode_frame_number``, ``raw_reward`` (= the reward) and ``game_over``
(= terminated or truncated), plus ``shortest_path``, ``optimal_return`` and ``curriculum_length`` of each env's
current maze. All randomness comes from one numpy Generator seeded by ``seed`` / ``reset(seed=...)``; mazes are drawn
vectorised over the envs that reset in a step. :class:`MazeEnv` is the single Gymnasium env.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.vector import reset_mask

PREFIX = "maze/"
CURRICULUM = "curriculum"
ACTION_MEANINGS = ("UP", "RIGHT", "DOWN", "LEFT")
UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
# Row and column change of each action, in ACTION_MEANINGS order; rows grow downwards.
_DROW = np.array([-1, 0, 1, 0], dtype=np.int64)
_DCOL = np.array([0, 1, 0, -1], dtype=np.int64)
_REVERSE = np.array([DOWN, LEFT, UP, RIGHT], dtype=np.int64)
WALLS, AGENT, GOAL = 0, 1, 2
MIN_SIZE = 3
#: Draws of one maze before :func:`generate_mazes` gives up (only a ``wall_density`` near 1 gets there).
MAX_DRAWS = 1000
#: Settings ``make_env("maze/...", **overrides)`` and the name's ``:key=value`` part accept, with their types.
SETTINGS: dict[str, type] = {
    "step_reward": float, "wall_density": float, "max_steps": int, "curriculum_start": int, "curriculum_every": int,
    "layout_seed": int, "sparse": bool,
}
_CURRICULUM_SETTINGS = ("curriculum_start", "curriculum_every")
_GRAMMAR = "maze/<n>[/curriculum][:key=value,...]"


@dataclass(frozen=True)
class MazeSettings:
    """Everything that defines a maze game (see the module docstring). Build it with :func:`maze_settings`, which
    parses a game name and validates.

    :param size: n, the grid is n x n cells.
    :param curriculum: place the goal by a random walk of the curriculum's length L (else anywhere reachable).
    :param step_reward: r: -r per move, -2r into a wall, +r onto the goal.
    :param wall_density: probability that a cell is drawn as a wall (before unreachable pockets are filled).
    :param max_steps: agent steps after which an episode is truncated.
    :param curriculum_start: L of the first mazes (curriculum only).
    :param curriculum_every: agent steps per +1 of L (curriculum only).
    :param layout_seed: -1: a new maze every episode (the paper); k >= 0: every episode plays the one maze (walls,
        start and goal) drawn from seed k, a fixed maze (for tests that a planner solves a maze).
    :param sparse: the sparse-reward maze (module docstring): goal farthest from the start, reward +1 there only,
        step cap :func:`sparse_max_steps` unless ``max_steps`` is given.
    """

    size: int
    curriculum: bool = False
    step_reward: float = 0.01
    wall_density: float = 0.3
    max_steps: int = 100
    curriculum_start: int = 2
    curriculum_every: int = 2_000_000
    layout_seed: int = -1
    sparse: bool = False

    @property
    def game(self) -> str:
        """The canonical game name: ``maze/<n>[/curriculum]`` and the settings that differ from the defaults."""
        name = f"{PREFIX}{self.size}" + (f"/{CURRICULUM}" if self.curriculum else "")
        default = MazeSettings(self.size, self.curriculum, sparse=self.sparse,
                               max_steps=sparse_max_steps(self.size) if self.sparse else 100)

        def text(value: Any) -> str:
            return str(value).lower() if isinstance(value, bool) else str(value)

        changed = [f"{k}={text(getattr(self, k))}" for k in SETTINGS
                   if getattr(self, k) != getattr(default, k) or k == "sparse" and self.sparse]
        return name + (":" + ",".join(changed) if changed else "")

    def walk_length(self, curriculum_steps: int) -> int:
        """The curriculum's L after ``curriculum_steps`` agent steps (0 without the curriculum)."""
        if not self.curriculum:
            return 0
        return self.curriculum_start + int(curriculum_steps) // self.curriculum_every


def sparse_max_steps(size: int) -> int:
    """The sparse maze's default step cap, ``n^2``: a walk to any cell many times over for a directed agent."""
    return size * size


def is_maze(game: str) -> bool:
    """Whether ``game`` names a maze (``"maze/..."``); :func:`maze_settings` says whether the name is valid."""
    return game.startswith(PREFIX)


def _parse_value(key: str, text: str, game: str) -> float | int | bool:
    if SETTINGS[key] is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"maze setting {key}={text!r} in {game!r} must be true or false")
        return text.lower() in ("true", "1")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"maze setting {key}={text!r} in {game!r} is not a number") from None
    if SETTINGS[key] is int:
        if not value.is_integer():
            raise ValueError(f"maze setting {key}={text!r} in {game!r} must be an integer")
        return int(value)
    return value


def maze_settings(game: str, **overrides: Any) -> MazeSettings:
    """Parse and validate a maze game name (``maze/<n>[/curriculum][:key=value,...]``) and keyword overrides.

    :param game: e.g. ``"maze/11"``, ``"maze/15/curriculum"``, ``"maze/15/curriculum:curriculum_every=100000"``.
    :param overrides: settings of :data:`SETTINGS`, as ``make_env`` keywords; a setting may be given in the name or
        as a keyword, not both.
    :raises ValueError: naming the bad part and the valid ones: not ``maze/<n>``, n < 3, an unknown variant or
        setting, a curriculum setting without ``/curriculum``, a value out of range.
    """
    if not is_maze(game):
        raise ValueError(f"{game!r} is not a maze game; maze games are named {_GRAMMAR}, e.g. 'maze/11'")
    path, _, options = game[len(PREFIX):].partition(":")
    size_text, _, variant = path.partition("/")
    if variant not in ("", CURRICULUM):
        raise ValueError(f"unknown maze variant {variant!r} in {game!r}; maze games are 'maze/<n>' (goal anywhere "
                         f"reachable) or 'maze/<n>/{CURRICULUM}' (goal by a random walk of growing length)")
    if not size_text.isdigit() or int(size_text) < MIN_SIZE:
        raise ValueError(f"maze size {size_text!r} in {game!r} must be an integer >= {MIN_SIZE} "
                         f"(the grid is n x n), e.g. 'maze/11'")
    named: dict[str, Any] = {}
    for item in filter(None, options.split(",")) if options else ():
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"maze setting {item!r} in {game!r} must be key=value ({_GRAMMAR})")
        if key not in SETTINGS:
            raise ValueError(f"unknown maze setting {key!r} in {game!r}; valid settings: {list(SETTINGS)}")
        if key in named:
            raise ValueError(f"maze setting {key!r} is given twice in {game!r}")
        named[key] = _parse_value(key, text.strip(), game)
    for key in overrides:
        if key not in SETTINGS:
            raise ValueError(f"unknown maze setting(s) {key!r}; valid settings: {list(SETTINGS)}")
        if key in named:
            raise ValueError(f"maze setting {key!r} is given both in the game name {game!r} and as a keyword; "
                             "give it once")
    values = {**named, **overrides}
    curriculum = variant == CURRICULUM
    stray = [k for k in _CURRICULUM_SETTINGS if k in values and not curriculum]
    if stray:
        raise ValueError(f"{stray} apply only to the curriculum: use 'maze/{size_text}/{CURRICULUM}'")
    for key, kind in SETTINGS.items():
        if key not in values:
            continue
        value = values[key]
        if kind is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"maze setting {key} must be true or false, got {value!r}")
            values[key] = bool(value)
            continue
        ok = isinstance(value, Real) and not isinstance(value, bool)
        if kind is int and not (ok and float(value).is_integer()):  # 1e5 and 100000.0 are ints
            raise ValueError(f"maze setting {key} must be an integer, got {value!r}")
        if not ok:
            raise ValueError(f"maze setting {key} must be a number, got {value!r}")
        values[key] = kind(value)
    if values.get("sparse") and curriculum:
        raise ValueError(f"sparse=true places the goal farthest from the start and the curriculum by a random walk: "
                         f"use 'maze/{size_text}:sparse=true' or the curriculum without it")
    if values.get("sparse") and "max_steps" not in values:
        values["max_steps"] = sparse_max_steps(int(size_text))
    settings = MazeSettings(int(size_text), curriculum, **values)
    if not settings.step_reward > 0:
        raise ValueError(f"step_reward must be > 0 (the r of -r per move), got {settings.step_reward!r}")
    if not 0.0 <= settings.wall_density < 1.0:
        raise ValueError(f"wall_density must be in [0, 1), got {settings.wall_density!r}")
    for key in ("max_steps", "curriculum_start", "curriculum_every"):
        if getattr(settings, key) < 1:
            raise ValueError(f"{key} must be a positive integer, got {getattr(settings, key)!r}")
    if settings.layout_seed < -1:
        raise ValueError(f"layout_seed must be -1 (a new maze every episode) or a seed >= 0, got "
                         f"{settings.layout_seed!r}")
    return settings


# ------------------------------------------------------------------------------------------- drawing mazes
def _dilate(mask: np.ndarray) -> np.ndarray:
    """``mask`` (bool [K, n, n]) grown by one cell in the 4 directions."""
    out = mask.copy()
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    out[:, :, 1:] |= mask[:, :, :-1]
    out[:, :, :-1] |= mask[:, :, 1:]
    return out


def shortest_paths(free: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Breadth-first search from each maze's start: moves from ``start`` to every cell.

    :param free: bool [K, n, n], True on free cells.
    :param start: int [K, 2], (row, column) of each start (a free cell).
    :returns: int32 [K, n, n]: the fewest moves from the start to each cell, -1 where unreachable (walls included).
    """
    k = len(free)
    dist = np.full(free.shape, -1, dtype=np.int32)
    frontier = np.zeros(free.shape, dtype=bool)
    frontier[np.arange(k), start[:, 0], start[:, 1]] = True
    reached = frontier.copy()
    d = 0
    # One layer of all K searches per pass: as many passes as the farthest reachable cell is away.
    while frontier.any():
        dist[frontier] = d
        frontier = _dilate(frontier) & free & ~reached
        reached |= frontier
        d += 1
    return dist


def _random_cells(rng: np.random.Generator, allowed: np.ndarray) -> np.ndarray:
    """A uniformly random allowed cell of each maze: int64 [K, 2] (row, column); ``allowed`` bool [K, n, n]."""
    k, n, _ = allowed.shape
    # The largest of K x n x n uniform draws over the allowed cells is a uniform choice among them.
    scores = np.where(allowed, rng.random(allowed.shape), -1.0).reshape(k, n * n)
    flat = scores.argmax(axis=1)
    return np.stack([flat // n, flat % n], axis=1)


def _walk(rng: np.random.Generator, free: np.ndarray, start: np.ndarray, length: int) -> np.ndarray:
    """End cells (int64 [K, 2]) of non-backtracking random walks of ``length`` moves from ``start`` over ``free``;
    a walk that ends on its start gives the last other cell it visited (see the module docstring)."""
    k, n, _ = free.shape
    index = np.arange(k)
    pos = start.copy()
    last_off = start.copy()
    came = np.full(k, -1, dtype=np.int64)  # the direction of the previous move (-1: none yet)
    for _ in range(length):
        rows = pos[:, :1] + _DROW
        cols = pos[:, 1:] + _DCOL
        inside = (rows >= 0) & (rows < n) & (cols >= 0) & (cols < n)
        can = inside & free[index[:, None], rows.clip(0, n - 1), cols.clip(0, n - 1)]
        forward = can & (np.arange(4) != np.where(came >= 0, _REVERSE[came], -1)[:, None])
        can = np.where(forward.any(axis=1, keepdims=True), forward, can)  # at a dead end, turn back
        move = np.where(can, rng.random((k, 4)), -1.0).argmax(axis=1)
        pos = pos + np.stack([_DROW[move], _DCOL[move]], axis=1)
        came = move
        off = (pos != start).any(axis=1)
        last_off[off] = pos[off]
    return np.where((pos == start).all(axis=1, keepdims=True), last_off, pos)


class Mazes(NamedTuple):
    """K mazes: ``walls`` bool [K, n, n], ``start`` and ``goal`` int64 [K, 2] (row, column), ``distance`` int64 [K]
    (moves of the shortest path from start to goal, >= 1)."""

    walls: np.ndarray
    start: np.ndarray
    goal: np.ndarray
    distance: np.ndarray


def generate_mazes(rng: np.random.Generator, count: int, size: int, wall_density: float,
                   walk_length: int = 0, farthest: bool = False) -> Mazes:
    """Draw ``count`` solvable mazes as the module docstring says, vectorised over the mazes.

    :param rng: the source of every random choice.
    :param count: K. :param size: n.
    :param wall_density: probability of a wall per cell, in [0, 1).
    :param walk_length: L > 0: the goal ends a random walk of L moves from the start (the curriculum); 0: the goal is
        a uniformly random free cell other than the start.
    :param farthest: the goal is the free cell farthest from the start (the first in row-major order of those), as
        the sparse maze has it; the same random draws as without it, so the walls and start do not change.
    :raises RuntimeError: no maze kept in :data:`MAX_DRAWS` draws (lower ``wall_density``).
    """
    free = np.zeros((count, size, size), dtype=bool)
    start = np.zeros((count, 2), dtype=np.int64)
    dist = np.zeros((count, size, size), dtype=np.int32)
    todo = np.arange(count)
    for _ in range(MAX_DRAWS):
        drawn = rng.random((len(todo), size, size)) >= wall_density
        drawn[:, 0, 0] |= ~drawn.any(axis=(1, 2))  # an all-wall draw gets one free cell, and is then rejected
        cells = _random_cells(rng, drawn)
        # One search from the start finds its region (dist >= 0) and every distance the goal needs. Given the
        # walls, the start is uniform over the free cells, so over the region too when the maze is kept.
        reach = shortest_paths(drawn, cells)
        region = (reach >= 0).sum(axis=(1, 2))
        keep = (2 * region > drawn.sum(axis=(1, 2))) & (region >= 2)
        kept = todo[keep]
        free[kept] = reach[keep] >= 0  # the pockets outside the start's region become walls
        start[kept] = cells[keep]
        dist[kept] = reach[keep]
        todo = todo[~keep]
        if not len(todo):
            break
    else:
        raise RuntimeError(f"no {size}x{size} maze kept in {MAX_DRAWS} draws at wall_density={wall_density} (the "
                           "start's region must hold most free cells, and 2 or more); lower wall_density")
    index = np.arange(count)
    if farthest:
        flat = dist.reshape(count, -1).argmax(axis=1)
        goal = np.stack([flat // size, flat % size], axis=1).astype(np.int64)
    elif walk_length > 0:
        goal = _walk(rng, free, start, walk_length)
    else:
        others = free.copy()
        others[index, start[:, 0], start[:, 1]] = False
        goal = _random_cells(rng, others)
    return Mazes(~free, start, goal, dist[index, goal[:, 0], goal[:, 1]].astype(np.int64))


def optimal_return(distance: np.ndarray | int, step_reward: float, max_steps: int, sparse: bool = False
                   ) -> np.ndarray:
    """The best return of a maze whose goal is ``distance`` moves away: ``r * (2 - d)`` (d - 1 moves at -r, the last
    at +r) if ``d <= max_steps``, else ``-r * max_steps`` (moving without touching a wall until the cut). Sparse: 1
    if ``d <= max_steps``, else 0.

    :param distance: int [K] (or one int), shortest-path moves, >= 1. :returns: float64 [K] (or a 0-d array).
    """
    d = np.asarray(distance, dtype=np.float64)
    if sparse:
        return np.where(d <= max_steps, 1.0, 0.0)
    return np.where(d <= max_steps, step_reward * (2.0 - d), -step_reward * max_steps)


# ------------------------------------------------------------------------------------------- the game state
class _MazeCore:
    """State and dynamics of N maze games, vectorised with numpy (callers draw the mazes)."""

    def __init__(self, num_envs: int, settings: MazeSettings) -> None:
        n = settings.size
        self.settings = settings
        self.walls = np.zeros((num_envs, n, n), dtype=bool)
        self.pos = np.zeros((num_envs, 2), dtype=np.int64)
        self.goal = np.zeros((num_envs, 2), dtype=np.int64)
        self.distance = np.ones(num_envs, dtype=np.int64)
        self.optimal = np.zeros(num_envs, dtype=np.float64)
        self.walk_length = np.zeros(num_envs, dtype=np.int32)
        self.steps = np.zeros(num_envs, dtype=np.int64)  # agent steps of the current episode
        # Walls and goal channels of each env's observation; the agent is drawn on a copy every step.
        self.static = np.zeros((num_envs, 3, n, n), dtype=np.uint8)
        self.index = np.arange(num_envs)

    def load(self, where: np.ndarray, mazes: Mazes, walk_length: int) -> None:
        """Start new episodes on ``mazes`` (K of them) in the envs ``where`` (int [K])."""
        s = self.settings
        self.walls[where] = mazes.walls
        self.pos[where] = mazes.start
        self.goal[where] = mazes.goal
        self.distance[where] = mazes.distance
        self.optimal[where] = optimal_return(mazes.distance, s.step_reward, s.max_steps, s.sparse)
        self.walk_length[where] = walk_length
        self.steps[where] = 0
        self.static[where] = 0
        self.static[where, WALLS] = mazes.walls
        self.static[where, GOAL, mazes.goal[:, 0], mazes.goal[:, 1]] = 1

    def move(self, actions: np.ndarray, live: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Move the agents where ``live`` (bool [N]); returns reward float64 [N], terminated and truncated bool [N]."""
        s, n = self.settings, self.settings.size
        row = self.pos[:, 0] + _DROW[actions]
        col = self.pos[:, 1] + _DCOL[actions]
        inside = (row >= 0) & (row < n) & (col >= 0) & (col < n)
        blocked = ~inside | self.walls[self.index, row.clip(0, n - 1), col.clip(0, n - 1)]
        moves = live & ~blocked
        self.pos[moves, 0] = row[moves]
        self.pos[moves, 1] = col[moves]
        reached = moves & (self.pos == self.goal).all(axis=1)
        reward = np.where(blocked, -2.0 * s.step_reward, -s.step_reward)
        reward[reached] = s.step_reward
        if s.sparse:  # the only reward is the goal's
            reward = reached.astype(np.float64)
        reward[~live] = 0.0
        self.steps += live
        truncated = live & ~reached & (self.steps >= s.max_steps)
        return reward, reached, truncated

    def observe(self) -> np.ndarray:
        """A new uint8 [N, 3, n, n] observation array."""
        obs = self.static.copy()
        obs[self.index, AGENT, self.pos[:, 0], self.pos[:, 1]] = 1
        return obs

    def place(self, index: int, walls: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> None:
        """Start a new episode of env ``index`` on a hand-made maze (for tests and pictures).

        :raises ValueError: ``walls`` not bool [n, n]; start or goal off the grid, on a wall, equal, or not
            connected.
        """
        n = self.settings.size
        walls = np.asarray(walls)
        if walls.shape != (n, n) or walls.dtype != np.bool_:
            raise ValueError(f"walls must be a bool array of shape ({n}, {n}), got {walls.dtype} {walls.shape}")
        cells = np.array([start, goal], dtype=np.int64)
        if cells.shape != (2, 2) or cells.min() < 0 or cells.max() >= n or walls[cells[:, 0], cells[:, 1]].any():
            raise ValueError(f"start {start} and goal {goal} must be free cells of the {n}x{n} grid")
        if (cells[0] == cells[1]).all():
            raise ValueError(f"start and goal must differ, got {start} for both")
        distance = shortest_paths(~walls[None], cells[:1])[0, cells[1, 0], cells[1, 1]]
        if distance < 0:
            raise ValueError(f"goal {goal} cannot be reached from start {start} in this maze")
        self.load(np.array([index]), Mazes(walls[None], cells[:1], cells[1:], np.array([distance])), 0)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _settings_of(game: str | MazeSettings) -> MazeSettings:
    return game if isinstance(game, MazeSettings) else maze_settings(game)


class MazeVector(VectorEnv):
    """N maze games with the API and semantics of :class:`envs.minatar.MinAtarVector` (see the module docstring).

    - ``reset(seed=int | None, options={"reset_mask": bool [N]} | None) -> (obs uint8 [N, 3, n, n], info)``: new
      mazes in all envs (or the masked ones); a seed re-seeds the Generator that draws every maze.
    - ``step(actions int [N] in [0, 4)) -> (obs, reward float32 [N], terminated bool [N], truncated bool [N], info)``;
      after ``terminated[i]`` or ``truncated[i]`` the next step ignores ``actions[i]`` and returns env i's first
      observation of a new maze with reward 0. Every call returns a new obs array.

    :param game: a maze name (``"maze/11"``, ``"maze/15/curriculum:curriculum_every=100000"``) or its
        :class:`MazeSettings`.
    :param num_envs: N.
    :param seed: seeds the mazes (also what the first ``reset()`` without a seed plays).
    """

    stack = 1
    frame_skip = 1
    single_observation_space: gym.spaces.Box
    single_action_space: gym.spaces.Discrete

    def __init__(self, game: str | MazeSettings = "maze/11", num_envs: int = 8, seed: int = 0) -> None:
        self.settings = _settings_of(game)
        self.num_envs = _positive_int("num_envs", num_envs)
        self.game = self.settings.game
        n = self.settings.size
        self.frame_shape = (3, n, n)
        self.single_observation_space = gym.spaces.Box(0, 1, self.frame_shape, np.uint8)
        self.single_action_space = gym.spaces.Discrete(len(ACTION_MEANINGS))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
        self.core = _MazeCore(num_envs, self.settings)
        # Agent steps the curriculum has counted (see the module docstring); set it to drive L from outside.
        self.curriculum_steps = 0
        self._rng = np.random.default_rng(seed)
        self._obs = self.core.observe()
        self._needs_reset = np.ones(num_envs, dtype=bool)  # a step before any reset starts games
        self._frame_number = np.zeros(num_envs, dtype=np.int32)
        self._episode_frame = np.zeros(num_envs, dtype=np.int32)
        self._env_id = np.arange(num_envs, dtype=np.int32)
        self._lives = np.zeros(num_envs, dtype=np.int32)

    @property
    def curriculum_length(self) -> int:
        """The L the next mazes' goals are walked with (0 without the curriculum)."""
        return self.settings.walk_length(self.curriculum_steps)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to go on with the same curriculum: ``{"curriculum_steps": int}``."""
        return {"curriculum_steps": int(self.curriculum_steps)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the mazes already drawn are kept; the next ones use the restored L)."""
        self.curriculum_steps = int(state["curriculum_steps"])

    def _new_mazes(self, mask: np.ndarray) -> None:
        where = np.flatnonzero(mask)
        if len(where):
            s, length = self.settings, self.curriculum_length
            if s.layout_seed >= 0:  # the one fixed maze, drawn from its own seed whatever the env's seed
                one = generate_mazes(np.random.default_rng(s.layout_seed), 1, s.size, s.wall_density, length,
                                     farthest=s.sparse)
                mazes = Mazes(*(np.repeat(field, len(where), axis=0) for field in one))
            else:
                mazes = generate_mazes(self._rng, len(where), s.size, s.wall_density, length, farthest=s.sparse)
            self.core.load(where, mazes, length)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """New mazes in all envs (or in those of ``options["reset_mask"]``); see the class docstring."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        mask = reset_mask(options, self.num_envs)
        self._new_mazes(mask)
        self._episode_frame[mask] = 0
        if seed is not None:  # like ale-py, a seeded reset restarts the frame counter
            self._frame_number[mask] = 0
        self._needs_reset[mask] = False
        # Envs outside the mask keep (and report) their current observation, as in ale-py.
        obs = self._obs.copy()
        obs[mask] = self.core.observe()[mask]
        self._obs = obs
        zeros = np.zeros(self.num_envs, dtype=bool)
        return obs, self._info(np.zeros(self.num_envs), zeros)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every env; see the class docstring."""
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= len(ACTION_MEANINGS):
            raise ValueError(f"actions must be ints in [0, {len(ACTION_MEANINGS)}) ({', '.join(ACTION_MEANINGS)}) "
                             f"of shape ({self.num_envs},), got {a}")
        resetting = self._needs_reset
        live = ~resetting
        reward, terminated, truncated = self.core.move(a.astype(np.int64), live)
        self.curriculum_steps += int(live.sum())
        self._new_mazes(resetting)
        self._episode_frame = np.where(resetting, 0, self._episode_frame + 1).astype(np.int32)
        self._frame_number += 1
        self._needs_reset = terminated | truncated
        obs = self.core.observe()
        self._obs = obs
        return obs, reward.astype(np.float32), terminated, truncated, self._info(reward, self._needs_reset)

    def place(self, index: int, walls: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> np.ndarray:
        """Start a new episode of env ``index`` on a hand-made maze (for tests and pictures of a fixed maze).

        :param walls: bool [n, n]. :param start, goal: (row, column) of free, connected, distinct cells.
        :returns: the observations [N, 3, n, n] with env ``index``'s new first one (also what ``step`` goes on from).
        :raises ValueError: as :meth:`_MazeCore.place`.
        """
        self.core.place(index, walls, start, goal)
        self._needs_reset[index] = False
        self._episode_frame[index] = 0
        obs = self._obs.copy()
        obs[index] = self.core.observe()[index]
        self._obs = obs
        return obs

    def _info(self, raw_reward: np.ndarray, game_over: np.ndarray) -> dict[str, Any]:
        core = self.core
        return {
            "env_id": self._env_id.copy(),
            "lives": self._lives.copy(),
            "frame_number": self._frame_number.copy(),
            "episode_frame_number": self._episode_frame.copy(),
            "raw_reward": raw_reward.astype(np.float64),
            "game_over": game_over.copy(),
            "shortest_path": core.distance.astype(np.int32),
            "optimal_return": core.optimal.copy(),
            "curriculum_length": core.walk_length.copy(),
        }


class MazeEnv(gym.Env):
    """One maze game as a Gymnasium env (passes ``gymnasium.utils.env_checker.check_env``): obs uint8 [3, n, n],
    actions Discrete(4), the rewards of the module docstring; info as :class:`MazeVector`'s without ``env_id``.

    Mazes come from ``self.np_random`` (seeded by ``reset(seed=...)``; the first reset without a seed uses the
    constructor's ``seed``). The curriculum counts this env's own steps (``curriculum_steps``, settable).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    stack = 1
    frame_skip = 1
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Discrete

    def __init__(self, game: str | MazeSettings = "maze/11", seed: int = 0, render_mode: str | None = None) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.settings = _settings_of(game)
        self.game = self.settings.game
        n = self.settings.size
        self.frame_shape = (3, n, n)
        self.observation_space = gym.spaces.Box(0, 1, self.frame_shape, np.uint8)
        self.action_space = gym.spaces.Discrete(len(ACTION_MEANINGS))
        self.core = _MazeCore(1, self.settings)
        self.curriculum_steps = 0
        self._default_seed: int | None = seed
        self._done = True
        self._frame_number = 0
        self._obs = self.core.observe()[0]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """A new maze; the first reset without a seed uses the constructor's ``seed``."""
        if seed is None and self._default_seed is not None:
            seed = self._default_seed
        self._default_seed = None
        super().reset(seed=seed)
        if seed is not None:  # like ale-py, a seeded reset restarts the frame counter
            self._frame_number = 0
        s = self.settings
        length = s.walk_length(self.curriculum_steps)
        rng = np.random.default_rng(s.layout_seed) if s.layout_seed >= 0 else self.np_random  # a fixed maze
        self.core.load(np.zeros(1, np.int64), generate_mazes(rng, 1, s.size, s.wall_density, length,
                                                                       farthest=s.sparse), length)
        self._done = False
        self._obs = self.core.observe()[0]
        return self._obs.copy(), self._info(0.0)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("MazeEnv.step() called after the episode ended; call reset() first")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, 4) ({', '.join(ACTION_MEANINGS)}), got {action!r}")
        reward, terminated, truncated = self.core.move(np.array([int(action)]), np.ones(1, dtype=bool))
        self.curriculum_steps += 1
        self._frame_number += 1
        self._done = bool(terminated[0] or truncated[0])
        self._obs = self.core.observe()[0]
        r = float(reward[0])
        return self._obs.copy(), r, bool(terminated[0]), bool(truncated[0]), self._info(r)

    def render(self) -> np.ndarray | None:
        """The current maze as RGB uint8 [16n, 16n, 3] (:func:`maze_to_rgb`) in render_mode "rgb_array", else None."""
        return maze_to_rgb(self._obs) if self.render_mode == "rgb_array" else None

    def _info(self, raw_reward: float) -> dict[str, Any]:
        core = self.core
        return {
            "lives": 0,
            "frame_number": self._frame_number,
            "episode_frame_number": int(core.steps[0]),
            "raw_reward": raw_reward,
            "game_over": self._done,
            "shortest_path": int(core.distance[0]),
            "optimal_return": float(core.optimal[0]),
            "curriculum_length": int(core.walk_length[0]),
        }


# ------------------------------------------------------------------------------------------- pictures and logs
#: Colours of :func:`maze_to_rgb`, as in the paper's Fig. 1: corridors black, walls blue, agent red, goal green.
PALETTE = {"free": (0, 0, 0), "walls": (40, 80, 220), "agent": (230, 40, 40), "goal": (40, 200, 60)}


def maze_to_rgb(obs: np.ndarray, scale: int = 16) -> np.ndarray:
    """One maze observation as a picture in the paper's colours (:data:`PALETTE`): uint8 ``[n * scale, n * scale, 3]``.

    (:func:`envs.observation_to_rgb` draws mazes too, in its generic channel colours: walls red, agent green, goal
    blue.) Where the agent stands on the goal, it is drawn over it.

    :param obs: uint8 [3, n, n] (walls, agent, goal). :param scale: pixel repeat per axis.
    """
    if obs.ndim != 3 or obs.shape[0] != 3:
        raise ValueError(f"a maze observation is [3, n, n] (walls, agent, goal), got shape {tuple(obs.shape)}")
    rgb = np.zeros((*obs.shape[1:], 3), np.uint8)
    rgb[:] = PALETTE["free"]
    for channel, name in ((WALLS, "walls"), (GOAL, "goal"), (AGENT, "agent")):
        rgb[obs[channel] > 0] = PALETTE[name]
    return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


class MazeTracker:
    """Per finished maze, the optimal return beside the agent's: an ``EpisodeTracker`` of
    :mod:`agents.runtime.actor` (it matches the protocol; ``envs`` does not import ``agents``).

    Per game (TensorBoard tags): ``maze/optimal_return`` (the BFS optimum of that maze), ``maze/return_gap``
    (optimal minus the agent's return, >= 0), ``maze/goal_reached`` (1 or 0) and ``maze/shortest_path`` (moves).
    Per chunk: ``maze/curriculum_length``, the mean L of the envs' current mazes (curriculum games only).
    """

    def __init__(self) -> None:
        self._optimal = np.zeros(0)
        self._distance = np.zeros(0, np.int64)
        self._walk = np.zeros(0, np.int32)
        self._return = np.zeros(0)
        self._reached = np.zeros(0, bool)

    def _read(self, info: dict[str, Any]) -> None:
        # On a game's last step the env still holds the finished maze (the next step draws a new one).
        self._optimal = np.asarray(info["optimal_return"], np.float64).copy()
        self._distance = np.asarray(info["shortest_path"], np.int64).copy()
        self._walk = np.asarray(info["curriculum_length"], np.int32).copy()

    def on_reset(self, info: dict[str, Any]) -> None:
        """After ``env.reset()``: the mazes' optima; returns start at 0."""
        self._read(info)
        self._return = np.zeros(len(self._optimal))
        self._reached = np.zeros(len(self._optimal), dtype=bool)

    def on_step(self, info: dict[str, Any], live: np.ndarray) -> None:
        """After each vector step; ``live`` False on autoreset steps."""
        self._read(info)
        reward = np.asarray(info["raw_reward"], np.float64)
        self._return += np.where(live, reward, 0.0)
        self._reached |= live & (reward > 0)  # only the goal pays a positive reward

    def end_episode(self, env_index: int) -> dict[str, float]:
        """Env ``env_index``'s maze ended at the last step: its statistics; start counting the next."""
        i = env_index
        stats = {"maze/optimal_return": float(self._optimal[i]),
                 "maze/return_gap": float(self._optimal[i] - self._return[i]),
                 "maze/goal_reached": float(self._reached[i]), "maze/shortest_path": float(self._distance[i])}
        self._return[i] = 0.0
        self._reached[i] = False
        return stats

    def flush(self) -> tuple[dict[str, float], dict[str, list[int]]]:
        """The curriculum's mean L over the envs' current mazes (nothing without the curriculum)."""
        walking = self._walk[self._walk > 0]
        return ({"maze/curriculum_length": float(walking.mean())} if len(walking) else {}), {}
