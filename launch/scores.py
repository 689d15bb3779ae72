"""Published Atari yardsticks: random/human scores and Dopamine's DQN and Rainbow learning curves.

The data are copies shipped in ``launch/data/`` (see its README for sources and licences). Our own results
always come from our own runs; these tables only put them in context.

Game names are accepted in the spellings people use (``"Pong"``, ``"pong"``, ``"ALE/Pong-v5"``,
``"PongNoFrameskip-v4"``, ``"MontezumaRevenge"``, ``"montezuma_revenge"``) and reduced to the snake_case ALE
ROM id by :func:`snake_case_game`.
"""

from __future__ import annotations

import csv
import difflib
import functools
import re
from importlib import resources

import numpy as np

__all__ = [
    "FRAMES_PER_ITERATION",
    "dopamine_agents",
    "dopamine_curve",
    "dopamine_games",
    "human_normalized",
    "load_dopamine",
    "load_random_human",
    "snake_case_game",
]

#: Emulator frames in one Dopamine iteration (250k agent steps at frame skip 4).
FRAMES_PER_ITERATION = 1_000_000

_RANDOM_HUMAN_CSV = "atari_random_human.csv"
_DOPAMINE_CSV = "dopamine_dqn.csv"

# Gymnasium ids wrap the ROM name: "ALE/Pong-v5", "PongNoFrameskip-v4", "BreakoutDeterministic-v4".
_ID_SUFFIX = re.compile(r"(NoFrameskip|Deterministic)?(-ram)?-v\d+$")
# CamelCase boundaries: "MontezumaRevenge" -> "Montezuma_Revenge", "UpNDown" -> "Up_N_Down".
_CAMEL_LOWER_UPPER = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_CAMEL_UPPER_WORD = re.compile(r"(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case_game(name: str) -> str:
    """Reduce a game name to its snake_case ALE ROM id.

    ``"ALE/Pong-v5" -> "pong"``, ``"MontezumaRevenge" -> "montezuma_revenge"``,
    ``"ms-pacman" -> "ms_pacman"``.
    Names that are not Atari ids (``"toy/catch"``) pass through lower-cased; callers look them up and get
    "not found", never a wrong game.

    :param name: a game name or Gymnasium env id.
    :return: the snake_case name (lower case, words joined by ``_``).
    """
    s = name.strip()
    if s.startswith("ALE/"):
        s = s[len("ALE/") :]
    s = _ID_SUFFIX.sub("", s)
    s = _CAMEL_LOWER_UPPER.sub("_", s)
    s = _CAMEL_UPPER_WORD.sub("_", s)
    s = re.sub(r"[\s\-]+", "_", s).lower()
    return re.sub(r"_+", "_", s).strip("_")


def _data_text(filename: str) -> str:
    # importlib.resources works for editable installs, wheels and zipped packages alike.
    return resources.files("launch").joinpath("data").joinpath(filename).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _random_human() -> dict[str, tuple[float, float]]:
    rows = csv.DictReader(_data_text(_RANDOM_HUMAN_CSV).splitlines())
    return {row["game"]: (float(row["random"]), float(row["human"])) for row in rows}


def load_random_human() -> dict[str, tuple[float, float]]:
    """Random-agent and human scores of the 57 Atari games.

    :return: a new dict ``snake_case game -> (random score, human score)``, both in game points (float).
    """
    return dict(_random_human())


def human_normalized(game: str, score: float) -> float | None:
    """Human-normalised score ``(score - random) / (human - random)``: 0 is random play, 1 is human level.

    :param game: any spelling accepted by :func:`snake_case_game` (``"Pong"``, ``"ALE/Pong-v5"``, ...).
    :param score: an episode return (or a mean of returns) in game points.
    :return: the normalised score, or ``None`` for games without published random/human scores
        (e.g. ``"toy/catch"``).
    """
    entry = _random_human().get(snake_case_game(game))
    if entry is None:
        return None
    random, human = entry
    return (float(score) - random) / (human - random)


def random_return(game: str, episodes: int = 100, seed: int = 0) -> float | None:
    """The mean return of uniformly random play: the published random-agent score for Atari games in the table;
    for MinAtar and ``toy/catch`` measured here over ``episodes`` games (a second or two: these envs are cheap;
    MinAtar's sticky actions and episode ends as in training). None for an Atari game without a published score.
    """
    if not (game.startswith("minatar/") or game.startswith("toy/")):
        entry = _random_human().get(snake_case_game(game))
        return None if entry is None else entry[0]
    from envs import make_env

    env = make_env(game, num_envs=min(episodes, 16), seed=seed)
    rng = np.random.default_rng(seed)
    n, actions = env.num_envs, int(env.single_action_space.n)
    env.reset(seed=seed)
    running = np.zeros(n)
    finished: list[float] = []
    while len(finished) < episodes:
        _, rewards, _, _, info = env.step(rng.integers(0, actions, n))
        running += info["raw_reward"]
        for i in np.flatnonzero(info["game_over"]):
            finished.append(running[i])
            running[i] = 0.0
    env.close()
    return float(np.mean(finished[:episodes]))


def _squash(name: str) -> str:
    # Dopamine spells games without separators ("montezumarevenge"); compare names in that form.
    return snake_case_game(name).replace("_", "")


@functools.lru_cache(maxsize=1)
def _dopamine() -> dict[tuple[str, str], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Parse the Dopamine CSV once: ``(snake_case game, agent) -> run -> (iterations, values)``."""
    by_squashed = {_squash(g): g for g in _random_human()}
    rows: dict[tuple[str, str], dict[int, list[tuple[int, float]]]] = {}
    for row in csv.DictReader(_data_text(_DOPAMINE_CSV).splitlines()):
        # All 12 Dopamine games are Atari-57 games, so each maps to its snake_case ALE id.
        game = by_squashed.get(row["game"], row["game"])
        runs = rows.setdefault((game, row["agent"]), {})
        runs.setdefault(int(row["run"]), []).append((int(row["iteration"]), float(row["value"])))
    out: dict[tuple[str, str], dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for key, runs in rows.items():
        out[key] = {}
        for run, points in sorted(runs.items()):
            points.sort()
            iterations = np.array([p[0] for p in points], dtype=np.int64)
            values = np.array([p[1] for p in points], dtype=np.float64)
            # Cached and shared between callers: make accidental in-place edits fail loudly.
            iterations.flags.writeable = False
            values.flags.writeable = False
            out[key][run] = (iterations, values)
    return out


def dopamine_games() -> list[str]:
    """Games (snake_case ALE ids) with a published Dopamine curve, sorted."""
    return sorted({game for game, _ in _dopamine()})


def dopamine_agents() -> list[str]:
    """Agents with published curves in the shipped data (``["DQN", "Rainbow"]``)."""
    return sorted({agent for _, agent in _dopamine()})


def load_dopamine(game: str, agent: str = "DQN") -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Dopamine's published training curves for one game and agent.

    Iteration ``i`` covers emulator frames ``[i, i + 1) * FRAMES_PER_ITERATION``; its value is the mean
    return of the training episodes that ended in it (sticky actions 0.25, no life-loss terminal).

    :param game: any spelling accepted by :func:`snake_case_game`.
    :param agent: ``"DQN"`` or ``"Rainbow"`` (case-insensitive).
    :return: ``run (seed index) -> (iterations int64 [T], values float64 [T])``, sorted by iteration;
        the arrays are read-only views of cached data (copy them to modify).
    :raises ValueError: for a game or agent without data; the message lists those that have data.
    """
    agents = {a.lower(): a for a in dopamine_agents()}
    canonical_agent = agents.get(agent.strip().lower())
    if canonical_agent is None:
        known = sorted(agents.values())
        raise ValueError(f"No Dopamine baseline for agent {agent!r}; available agents: {known}")
    name = snake_case_game(game)
    data = _dopamine().get((name, canonical_agent))
    if data is None:
        games = dopamine_games()
        close = difflib.get_close_matches(name, games, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"No published Dopamine {canonical_agent} curve for game {game!r} (read as {name!r}).{hint} "
            f"Games with a baseline: {', '.join(games)}."
        )
    return dict(data)


def dopamine_curve(
    game: str, agent: str = "DQN", max_frames: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dopamine's curve summarised over its runs, placed on the emulator-frame axis.

    :param game: any spelling accepted by :func:`snake_case_game`.
    :param agent: ``"DQN"`` or ``"Rainbow"``.
    :param max_frames: keep only the iterations that start at or before this many frames (to compare with a
        shorter run); None keeps all.
    :return: ``(frames, mean, low, high)``, float64 [T] each: the iteration centre ``(i + 0.5) * 1M`` in
        emulator frames, and the mean, minimum and maximum over runs of the iteration's mean return.
    :raises ValueError: as :func:`load_dopamine`.
    """
    runs = list(load_dopamine(game, agent).values())
    length = min(iterations.size for iterations, _ in runs)  # all runs have 199 iterations; be safe anyway
    iterations = runs[0][0][:length]
    values = np.stack([v[:length] for _, v in runs])  # [runs, T]
    if max_frames is not None:
        keep = iterations * FRAMES_PER_ITERATION <= max_frames
        iterations, values = iterations[keep], values[:, keep]
    frames = (iterations + 0.5) * float(FRAMES_PER_ITERATION)
    return frames, values.mean(axis=0), values.min(axis=0), values.max(axis=0)
