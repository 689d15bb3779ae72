"""The config sections every algorithm on the runtime shares: ``env``, ``runtime`` and ``run``.

An algorithm's config (``agents/<algo>/config.py``) is a dataclass with a top-level ``algo`` key, these three
sections, and its own (``network``, ``agent``, ...). ``reverie train`` reads ``algo`` from the stacked presets and
overrides first, then validates everything against that algorithm's schema (``launch.config``).

Units: ``*_frames`` fields count emulator frames (agent steps x the env's frame skip: 4 on Atari, 1 on MinAtar and
``toy/catch``... see ``envs``), the unit of published Atari curves (Dopamine's iteration is 1M frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worldmodels.common.checks import Choice, require_positive
from worldmodels.common.device import DeviceChoice

if TYPE_CHECKING:
    from agents.runtime.algorithm import EpisodeTracker


class AtariPresetChoice(Choice):
    machado = "machado"
    nature = "nature"


class BackendChoice(Choice):
    ale_vector = "ale_vector"
    gymnasium = "gymnasium"


@dataclass
class EnvConfig:
    game: str = "Pong"
    """ALE game ("Pong", "pong" or "ALE/Pong-v5"), a MinAtar game ("minatar/breakout", ...; Young & Tian 2019), or
    "toy/catch", the tiny deterministic pixel env."""
    preset: AtariPresetChoice = AtariPresetChoice.machado
    """Atari protocol: "machado" (sticky actions 0.25, no life-loss terminal, 108k-frame cap) or "nature". The frame
    skip is the preset's (4 on Atari); MinAtar (no frame skip, its own sticky actions 0.1) and toy/catch ignore it."""
    num_envs: int = 16
    """Emulators per actor, stepped as one vector env; the policy runs batched across them."""
    num_threads: int = 1
    """ALE worker threads per actor's vector env (per group with ``splits > 1``)."""
    splits: int = 1
    """Atari on the "ale_vector" backend: each actor's ``num_envs`` envs as this many groups that step
    asynchronously, each in its own emulator thread (:class:`envs.vector.SplitVector`). With 2, a policy that acts
    on each env alone (a feed-forward actor-critic core) acts on one group while the other emulates: Sample
    Factory's double-buffered sampling (Petrenko et al. 2020, Sec. 3.1), ours, not the papers' agents. Same games,
    same actions, same unrolls as 1 (a test checks it); other policies step all groups at once (their emulators
    still run side by side). 1: one synchronous vector env. ``num_envs`` must divide by it. MinAtar, the maze,
    toy/catch and the "gymnasium" backend step in Python, one vector env whatever this says (as ``num_threads``)."""
    backend: BackendChoice = BackendChoice.ale_vector
    """Atari vector env: "ale_vector" (ale-py's C++ AtariVectorEnv, fastest, no RAM access) or "gymnasium" (a
    gymnasium SyncVectorEnv of single ale-py envs, same API plus ``info["ram"]`` uint8 [N, 128]; needed for the
    Montezuma's Revenge room metrics). Only "ale_vector" applies to ``toy/catch`` and MinAtar."""
    colour: bool = False
    """Atari only: RGB frames, observations uint8 ``[S, 84, 84, 3]`` (STRAW's Atari input, Vezhnevets et al. 2016,
    Sec. 5.4), which the networks' torsos fold into 3 S channels; False: luminance frames ``[S, 84, 84]``. Needs the
    "ale_vector" backend."""


@dataclass
class RuntimeConfig:
    num_actors: int = 0
    """0: local mode (actor and learner in one process, no Ray, deterministic).
    >= 1: that many Ray actors, the learner in the driver."""
    ray_address: str | None = None
    """Ray cluster to join ("auto" or "host:port"); None starts a local Ray instance."""
    chunk_steps: int = 8
    """Vector-env steps an actor takes per chunk sent to the learner (chunk = chunk_steps x num_envs agent steps)."""
    max_ahead_chunks: int = 2
    """Rate limiter slack: how many chunks per actor the actors may run ahead of what the learner allows."""
    publish_every_updates: int = 50
    """Learner updates between weight publications (one ray.put each)."""
    torch_threads: int = 1
    """Torch threads per actor process (one per process on a shared machine; more slows everything)."""
    learner_threads: int = 1
    """Torch threads of the learner (driver) process."""
    max_actor_restarts: int = 5
    """How often Ray restarts a dead actor before the run fails."""
    actor_cpus: float = 1.0
    """CPUs Ray reserves for each actor; fractions (0.5) place more actors than cores. Reserving a whole CPU per
    actor is what places actors across the nodes of a cluster."""
    actor_niceness: int = 0
    """Unix niceness of Ray actor processes (Ray's own default for workers is 15, which starves actors doing real
    work beside any other process, the learner included). 0 runs them like the driver; raise it to favour the
    learner on a crowded machine."""
    device: DeviceChoice = DeviceChoice.auto
    """Where the learner runs: "auto" (CUDA if torch sees a GPU, else the CPU), "cpu" or "cuda" (an error where there
    is none). Actors act on the CPU."""


#: The settings a resumed run may change (``--resume RUN key=value``): how long it runs and how often it logs,
#: checkpoints and evaluates, where the run is named and which Ray cluster it joins. Everything else is what the
#: checkpoint was trained with (see :mod:`worldmodels.common.resume`).
RESUME_SAFE_KEYS = ("run.total_frames", "run.checkpoint_every_frames", "run.keep_checkpoints", "run.log_every_frames",
                    "run.eval_episodes", "run.progress", "run.name", "run.runs_dir", "runtime.ray_address")


@dataclass
class RunConfig:
    name: str = "run"
    """Run name: the run directory is runs_dir/name unless --run-dir is given."""
    runs_dir: str = "runs"
    """Parent folder of run directories."""
    seed: int = 0
    """Seeds torch, numpy, the envs and every actor (actor i uses seed + 1000 * (i + 1))."""
    total_frames: int = 10_000_000
    """Emulator frames to train for."""
    checkpoint_every_frames: int = 1_000_000
    """Frames between atomic checkpoints (a last one is always written at the end, on Ctrl-C or on SIGTERM)."""
    keep_checkpoints: int = 3
    """Checkpoints kept on disk (oldest deleted first)."""
    log_every_frames: int = 10_000
    """Frames between scalar summaries (episode returns are logged as episodes end)."""
    eval_episodes: int = 0
    """Episodes of an evaluation at the end of training (Machado protocol on Atari; 0: none)."""
    progress: bool = True
    """Show a progress bar with frames/s."""


def validate_common(env: EnvConfig, runtime: RuntimeConfig, run: RunConfig) -> None:
    """Checks of the shared sections that OmegaConf's type checks cannot make.

    :raises ValueError: naming the key, the bad value and what would be valid.
    """
    require_positive({
        "env.num_envs": env.num_envs, "env.num_threads": env.num_threads,
        "runtime.chunk_steps": runtime.chunk_steps, "runtime.publish_every_updates": runtime.publish_every_updates,
        "runtime.torch_threads": runtime.torch_threads, "runtime.learner_threads": runtime.learner_threads,
        "runtime.actor_cpus": runtime.actor_cpus,
        "run.total_frames": run.total_frames, "run.checkpoint_every_frames": run.checkpoint_every_frames,
        "run.log_every_frames": run.log_every_frames, "run.keep_checkpoints": run.keep_checkpoints,
    })
    if runtime.num_actors < 0:
        raise ValueError(f"runtime.num_actors={runtime.num_actors} must be 0 (local mode) or more.")
    if runtime.max_ahead_chunks < 0:
        raise ValueError(f"runtime.max_ahead_chunks={runtime.max_ahead_chunks} must be 0 or more.")
    if not -20 <= runtime.actor_niceness <= 19:
        raise ValueError(f"runtime.actor_niceness={runtime.actor_niceness} must lie in [-20, 19] (Unix niceness; "
                         "0 runs actors like the driver).")
    if run.eval_episodes < 0:
        raise ValueError(f"run.eval_episodes={run.eval_episodes} must be 0 (no evaluation) or more.")
    if env.game.startswith(OWN_VECTOR_ENVS) and env.backend != "ale_vector":
        raise ValueError(f"env.backend={env.backend!r} applies to Atari games only; {env.game} has its own "
                         "vector env: leave env.backend at 'ale_vector'.")
    if env.colour and env.game.startswith(OWN_VECTOR_ENVS):
        raise ValueError(f"env.colour=true applies to Atari games only; {env.game} has its own observations: "
                         "leave env.colour at false.")
    if env.splits < 1 or (splits_envs(env) and env.num_envs % env.splits):
        raise ValueError(f"env.splits={env.splits} must be 1 or more and divide env.num_envs={env.num_envs} (the "
                         "envs are split into groups of equal size).")
    if env.colour and env.backend != "ale_vector":
        raise ValueError(f"env.colour=true needs env.backend='ale_vector' (ale-py's vector env makes the RGB "
                         f"frames), got {env.backend!r}.")


#: Game-name prefixes of envs with their own vector env (``env.backend`` applies to Atari games only).
OWN_VECTOR_ENVS = ("toy/", "minatar/", "maze/")


def actor_seed(run: RunConfig, actor_id: int) -> int:
    """The seed of actor ``actor_id``'s envs, policy and network (``run.seed + 1000 * (actor_id + 1)``)."""
    return run.seed + 1000 * (actor_id + 1)


def env_overrides(env: EnvConfig) -> dict[str, Any]:
    """The ``make_env`` settings the ``env`` section adds to its preset: the Atari backend and colour, for Atari games
    only (MinAtar, the maze and toy/catch have their own vector envs and observations)."""
    if env.game.startswith(OWN_VECTOR_ENVS):
        return {}
    return {"backend": str(env.backend), **({"grayscale": False} if env.colour else {})}


def splits_envs(env: EnvConfig) -> bool:
    """Whether ``env.splits`` groups the envs: Atari games on the "ale_vector" backend (ale-py's emulators run in
    their own threads), with ``splits > 1``; the other envs step in Python as one vector env."""
    return env.splits > 1 and not env.game.startswith(OWN_VECTOR_ENVS) and str(env.backend) == "ale_vector"


def make_actor_env(env: EnvConfig, seed: int, num_envs: int | None = None) -> Any:
    """One actor's vector env as the ``env`` section says (``num_envs`` envs, default ``env.num_envs``)."""
    from envs import make_env

    n = env.num_envs if num_envs is None else num_envs
    if not splits_envs(env) or n % env.splits:  # a 1-env probe (or a count that does not split) is one vector env
        return make_env(env.game, preset=env.preset, num_envs=n, seed=seed, num_threads=env.num_threads,
                        **env_overrides(env))
    from envs.vector import SplitVector

    size = n // env.splits
    # Group k seeded with seed + k * size: env i's games are those of one vector env seeded with seed.
    return SplitVector([make_env(env.game, preset=env.preset, num_envs=size, seed=seed + k * size,
                                 num_threads=env.num_threads, **env_overrides(env)) for k in range(env.splits)])


def env_trackers(env: EnvConfig) -> list[EpisodeTracker]:
    """The episode trackers of the env family (:class:`agents.runtime.algorithm.EpisodeTracker` s), for every
    algorithm alike; the one place they are attached. Parts functions put them beside their own trackers.

    - the maze (``maze/...``): :class:`envs.MazeTracker`, each maze's optimal return beside the agent's;
    - Montezuma's Revenge with ``env.backend: gymnasium`` (the only backend that exposes the RAM):
      :class:`envs.montezuma.RoomTracker`, the rooms visited per game and over the run.
    """
    from envs import MazeTracker, is_maze, resolve_game
    from envs.montezuma import RoomTracker, is_montezuma

    if is_maze(env.game):
        return [MazeTracker()]
    if (not env.game.startswith(OWN_VECTOR_ENVS) and str(env.backend) == "gymnasium"
            and is_montezuma(resolve_game(env.game))):
        return [RoomTracker(env.num_envs)]
    return []
