"""The algorithm seam: what an algorithm hands the runtime (Acme's builder idea, kept small).

An algorithm is one folder under ``agents/`` (``config.py``, ``networks.py``, ``actor.py``, ``learning.py``,
``builder.py``, ``train.py``). Its ``builder.py`` defines a :class:`Builder`; its ``train.py`` calls
:func:`agents.runtime.loop.run_training` with it. The generic loop (rate limiter, ingestion, logging, checkpoints,
signals, cleanup) never names an algorithm, and nothing in ``agents/runtime`` imports an algorithm folder.

    actors (local or Ray):  make_parts(cfg, actor_id) -> ActorParts(env, policy, adder, trackers) --ActorOutput-->
    driver:                 learner.ingest(output); learner.updates_due(counters) x learner.update(counters)
                            learner.get_weights() --publish--> actors

Every contract of the seam is written here, so a newcomer reads one file, never a grep:

- the acting side: :class:`Policy`, :class:`Adder`, :class:`EpisodeTracker`, the :class:`ActorParts` a
  :data:`PartsFn` builds, and the :class:`ActorOutput` chunks actors return;
- the optional hooks, each a ``runtime_checkable`` protocol tested with ``isinstance``: :class:`LogsScalars`,
  :class:`ObservesRewards`, :class:`Stateful` (parts saved in checkpoints), :class:`DrawsPictures` (builders);
- the driver's side: :class:`Learner`, :class:`Builder`, :class:`EnvSpec`, :class:`Counters`;
- the checkpoint's layout: :class:`CheckpointLayout`.

The actor-critic learner's own seam, the policy cores it trains (feed-forward, LSTM, STRAW), is
:class:`agents.actor_critic.core.PolicyCore`: only the actor-critic folder and the algorithms built on it see it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch


class Policy(Protocol):
    """Maps a batch of observations to actions. ``extras`` carry what the adder needs (e.g. Q-values, logits).

    A recurrent policy keeps its own state and resets it where ``starts`` is True.
    """

    def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:param obs: uint8 ``[N, *obs_shape]`` (``[N, 4, 84, 84]`` on Atari).
        :param frames: global emulator frames (for schedules).
        :param starts: bool ``[N]``, True where ``obs`` is the first observation of a game (the
            :class:`EnvActor` always passes it; None, from a direct caller, means "no game starts here").
        :return: int64 actions ``[N]`` and extras (arrays with leading dim N)."""

    def set_weights(self, weights: Any) -> None:
        """Load weights published by the learner."""


@runtime_checkable
class ActsPerEnv(Protocol):
    """A policy that may say it acts on each env alone: with ``acts_per_env`` True, its action for an env depends
    on that env's observation only (no state across steps, no per-env settings such as Ape-X's epsilons), so acting
    on a group of envs is acting on all of them and keeping the group's rows. An actor on a split env
    (``env.splits > 1``) then acts on one group while the others emulate (double-buffered sampling,
    :class:`agents.runtime.actor.EnvActor`)."""

    acts_per_env: bool


class Adder(Protocol):
    """Turns vector-env steps into the learner's payload."""

    def reset(self, obs: np.ndarray) -> None:
        """First observations ``[N, 4, 84, 84]`` of N new episodes."""

    def add(self, actions: np.ndarray, extras: dict[str, np.ndarray], rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, next_obs: np.ndarray, info: dict[str, Any]) -> None:
        """One vector-env step (NextStep autoreset semantics, see ``envs``); ``info["game_over"]`` says
        which envs reset on the next step (a life-loss terminal does not)."""

    def flush(self) -> Any:
        """Everything ready since the last flush."""


class EpisodeTracker(Protocol):
    """Statistics beside the adder: per game, per chunk, and discoveries that the driver unions over actors.

    Tags are TensorBoard tags (``"charts/intrinsic_return"``, ``"explore/rooms_visited"``).
    """

    def on_reset(self, info: dict[str, Any]) -> None:
        """After ``env.reset()``, with its info."""

    def on_step(self, info: dict[str, Any], live: np.ndarray) -> None:
        """After each vector step (after the adder saw it). ``live``: bool [N], False for autoreset steps."""

    def end_episode(self, env_index: int) -> dict[str, float]:
        """Env ``env_index``'s game ended at the last step: its statistics (tag -> value); start a new game."""

    def flush(self) -> tuple[dict[str, float], dict[str, list[int]]]:
        """Per-chunk scalars (tag -> value) and the items first seen since the last flush (tag of the driver's
        running count -> items)."""


@dataclass
class ActorParts:
    """What an algorithm's parts function builds inside each actor's process (DESIGN 3b)."""

    env: Any
    """The vector env (an :mod:`envs` vector env: ``single_observation_space``, ``frame_skip``, ``stack``...)."""
    policy: Policy
    adder: Adder
    trackers: list[EpisodeTracker] = field(default_factory=list)
    """Statistics beside the adder; the env family's own (:func:`agents.runtime.config.env_trackers`: the maze's
    optimal return, Montezuma's rooms) and any of the algorithm's (DQN's bonus statistics)."""


#: Builds one actor's :class:`ActorParts` inside the actor's process. Must be pickleable by reference (a
#: module-level function, or a functools.partial of one) and take the algorithm's config and the actor index.
PartsFn = Callable[[Any, int], ActorParts]


@dataclass
class ActorOutput:
    """One chunk of acting, as returned to the driver."""

    actor_id: int
    payload: Any
    env_steps: int
    """Agent steps taken in this chunk, summed over the vector env (reset steps excluded)."""
    episode_returns: list[float] = field(default_factory=list)
    """Raw game scores (unclipped) of games that ended in this chunk."""
    episode_lengths: list[int] = field(default_factory=list)
    """Their lengths in agent steps."""
    seconds: float = 0.0
    """Wall time the chunk took in the actor."""
    extras: dict[str, float] = field(default_factory=dict)
    """Scalars for logging, e.g. the actor's epsilon; a key with a "/" is a full TensorBoard tag
    (``explore/pseudo_count_mean``), other keys are logged under ``charts/``."""
    episode_stats: list[dict[str, float]] = field(default_factory=list)
    """Per game that ended in this chunk (aligned with ``episode_returns``): tracker statistics, tag -> value."""
    discovered: dict[str, list[int]] = field(default_factory=dict)
    """Items this actor saw for the first time during this chunk, keyed by the TensorBoard tag of the run's
    running count (``{"explore/rooms_total": [2]}``); the driver unions them over actors."""
    weights_version: int = -1
    """The learner update count of the weights this chunk was collected with (-1: initial weights never
    published); the learner's count minus this is the policy lag (V-trace needs it)."""


# --- optional hooks: a part that has one of these methods gets it called; isinstance() is the test ------------
@runtime_checkable
class LogsScalars(Protocol):
    """A policy with scalars to log per chunk (DQN's epsilon, MFEC's memory size)."""

    def log_scalars(self, frames: int) -> dict[str, float]:
        """Scalars by name (``charts/<name>``) or full tag, at ``frames`` global emulator frames."""


@runtime_checkable
class ObservesRewards(Protocol):
    """A policy that takes each step's rewards (a recurrent core fed the previous reward): the actor-critic adder
    calls it in training, :func:`agents.runtime.evaluate.play_games` in evaluation."""

    def observe_rewards(self, rewards: np.ndarray) -> None:
        """The rewards ``[N]`` of the step just taken."""


@runtime_checkable
class Stateful(Protocol):
    """A part with a state a resumed run needs (an env's curriculum position, an adder's density model, a
    tracker's rooms): :meth:`EnvActor.get_state` saves every part that has one, in the checkpoint's
    ``actor_states``."""

    def state_dict(self) -> Any:
        """The state, picklable."""

    def load_state_dict(self, state: Any) -> Any:
        """Restore what :meth:`state_dict` returned."""


@runtime_checkable
class DrawsPictures(Protocol):
    """A builder with pictures of what it learnt (STRAW's plans), drawn by ``reverie train`` after a run."""

    def pictures(self, cfg: Any, weights: Any, out_dir: Path) -> list[Path]:
        """Write pictures of the policy with ``weights`` into ``out_dir``; the files written."""


@dataclass
class EnvSpec:
    """What the driver knows of the env before any actor starts (built once from a 1-env instance)."""

    obs_shape: tuple[int, ...]
    """One observation: ``(4, 84, 84)`` on Atari (4 stacked frames), ``(C, 10, 10)`` on MinAtar."""
    num_actions: int
    frame_skip: int
    """Emulator frames per agent step (4 on Atari, 1 on MinAtar): ``frames = agent steps x frame_skip``."""
    stack: int
    """Frames per observation (4 on Atari, 1 on MinAtar)."""
    frame_shape: tuple[int, ...]
    """One frame: ``(84, 84)`` on Atari, ``(C, 10, 10)`` on MinAtar; ``obs_shape`` is ``stack`` of them."""
    obs_high: float = 255.0
    """The observation space's largest value: 255 for pixels, 1 for MinAtar's and the maze's 0/1 channels (what a
    network divides its uint8 input by)."""


def env_spec(env: Any) -> EnvSpec:
    """The :class:`EnvSpec` of a built vector env (which it leaves open): every vector env of :mod:`envs` says how
    its observation splits into frames (``stack``, ``frame_shape``) and its ``frame_skip``."""
    space = env.single_observation_space
    return EnvSpec(tuple(int(d) for d in space.shape), int(env.single_action_space.n), int(env.frame_skip),
                   int(env.stack), tuple(int(d) for d in env.frame_shape), float(space.high.max()))


@dataclass
class Counters:
    """A run's counters (saved in checkpoints); learners read them to pace themselves."""

    steps: int = 0
    """Agent steps collected (all actors, all envs)."""
    updates: int = 0
    """Learner updates done."""
    episodes: int = 0
    """Games finished."""
    frame_skip: int = 4
    total_steps: int = 0
    """Agent steps the run collects in all (``run.total_frames // frame_skip``)."""

    @property
    def frames(self) -> int:
        return self.steps * self.frame_skip


Scalars = Mapping[str, "float | torch.Tensor"]
"""What :meth:`Learner.update` returns: scalars by tag, each a Python float or a 0-dim tensor on any device. Return
tensors rather than ``float(t)`` / ``t.item()``: each of those waits for the device (a host sync per update on a
GPU); the loop's log window sums tensors on their device and reads them with one ``.tolist()`` per window."""


class Learner(Protocol):
    """The driver's side of an algorithm: consumes what adders produce, updates, gives weights.

    DQN keeps a replay and updates at a fixed replay ratio; an on-policy learner consumes unrolls as they come;
    a non-parametric learner (episodic control) inserts into its memory.
    """

    def ingest(self, output: ActorOutput) -> None:
        """Take one chunk of acting (``output.payload`` is what the algorithm's adder flushed;
        ``output.weights_version`` the weights it was collected with)."""

    def updates_due(self, counters: Counters) -> int:
        """How many updates the data ingested so far allows now (0: collect more first)."""

    def collect_allowance(self, counters: Counters) -> int:
        """Agent steps the actors may still collect before the learner must catch up (the rate limiter; the loop
        adds ``runtime.max_ahead_chunks`` chunks per actor of slack)."""

    def update(self, counters: Counters) -> Scalars:
        """One update; scalars to log, by TensorBoard tag (``losses/...``) or bare name (logged as ``losses/<name>``),
        averaged over the logging window. A value may be a 0-dim tensor on the learner's device: the loop sums it
        there and reads it once per log window, so an update need not wait for the device (see :data:`Scalars`)."""

    def get_weights(self) -> Any:
        """What actors need to act (a CPU state dict), published with one ``ray.put``."""

    def scalars(self) -> dict[str, float]:
        """Learner state worth a chart at each log (``charts/replay_size``), by full tag."""

    def state_dict(self) -> dict[str, Any]:
        """Everything to resume: its keys are merged into the checkpoint's top level."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from a loaded checkpoint (the whole checkpoint dict)."""


@dataclass
class EvalResult:
    """Evaluation games' raw scores and lengths (agent steps)."""

    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


@dataclass
class ActorSetup:
    """How actors are built for one run: the parts function, and any service the actors share (a density
    server, an episodic memory) with its checkpoint state and cleanup."""

    parts_fn: PartsFn
    close: Callable[[], None] | None = None
    get_state: Callable[[], Any] | None = None
    set_state: Callable[[Any], None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Builder(Protocol):
    """What an algorithm hands the generic loop; one module-level instance per algorithm (``BUILDER``)."""

    name: str
    """The ``algo`` key that selects it."""
    @property
    def config_class(self) -> type:
        """Its config dataclass (with ``algo``, ``env``, ``runtime``, ``run`` and its own sections); read-only, so
        a class attribute ``config_class = MyConfig`` matches (a plain attribute would have to be exactly ``type``)."""

    def validate(self, cfg: Any) -> None:
        """Checks OmegaConf's types cannot make. :raises ValueError: naming the key."""

    def prepare(self, cfg: Any) -> Any:
        """Driver-side checks before any actor starts (e.g. a model file exists), and the config the run uses: ``cfg``
        itself, or a copy with fix-ups (e.g. paths made absolute), never ``cfg`` changed in place. The loop saves
        what this returns as ``config.yaml`` and builds the learner and the actors with it."""

    def actor_setup(self, cfg: Any, distributed: bool) -> ActorSetup:
        """The parts function actors build their :class:`ActorParts` with (inside their own process), and any
        shared service (started here, in Ray mode)."""

    def make_learner(self, cfg: Any, spec: EnvSpec, device: Any) -> Learner:
        """The learner, on ``device`` (a ``torch.device``)."""

    def evaluate(self, cfg: Any, weights: Any, episodes: int, seed: int,
                 record: list[np.ndarray] | None = None) -> EvalResult:
        """Play ``episodes`` evaluation games with ``weights`` (what :meth:`Learner.get_weights` returned); if
        ``record`` is a list, append the observations of the first game to it (for a video)."""

    def checkpoint_weights(self, ckpt: dict[str, Any]) -> Any:
        """The actor weights stored in a checkpoint (for ``reverie evaluate``), as :meth:`Learner.get_weights` gave
        them: the learner class reads them from its own entry (:meth:`CheckpointLayout.learner_state`)."""


class CheckpointLayout:
    """The layout of a run's checkpoint, owned here: one dict, written by the loop
    (:func:`agents.runtime.loop.run_training`, with :func:`worldmodels.common.checkpoint.save_checkpoint`) and read
    through these methods by the loop, the builders and the command line, never by indexing it elsewhere.

    Top-level keys:

    - ``algo``: the :attr:`Builder.name` that wrote it (checkpoints from before the algorithm seam lack it:
      :meth:`migrate`);
    - ``steps``, ``updates``, ``episodes``: the run's :class:`Counters`;
    - ``rng``: the Python, numpy and torch generator states; ``config``: the run's config as YAML;
    - ``discovered``: what trackers discovered, by tag (sorted lists); ``actor_states``: each actor's
      :meth:`~agents.runtime.actor.EnvActor.get_state`; ``shared_actor_state``: :attr:`ActorSetup.get_state`'s, if any;
    - the learner's :meth:`Learner.state_dict` keys, merged at the top level: ``learner`` (weights, optimiser; its
      inside is the learner's own, read by its builder's :meth:`Builder.checkpoint_weights` through
      :meth:`learner_state`) and any other of its own (DQN's ``replay``).
    """

    ALGO = "algo"
    LEARNER = "learner"

    @staticmethod
    def payload(algo: str, learner_state: Mapping[str, Any], counters: Counters, rng: Any, config_yaml: str,
                discovered: Mapping[str, set[int]], actor_states: Any, shared_actor_state: Any = None,
                ) -> dict[str, Any]:
        """The dict a checkpoint saves (``shared_actor_state`` None: the run has no shared service state)."""
        payload = {CheckpointLayout.ALGO: algo, **learner_state, "steps": counters.steps,
                   "updates": counters.updates, "episodes": counters.episodes, "rng": rng, "config": config_yaml,
                   "discovered": {tag: sorted(items) for tag, items in discovered.items()},
                   "actor_states": actor_states}
        if shared_actor_state is not None:
            payload["shared_actor_state"] = shared_actor_state
        return payload

    @staticmethod
    def migrate(ckpt: dict[str, Any], path: Path | str) -> dict[str, Any]:
        """Bring an older checkpoint to this layout, in place; the one place that knows older layouts.

        A checkpoint without ``algo`` comes from before the algorithm seam, when DQN was the only agent: one whose
        ``learner`` holds DQN's networks (``online``, ``target``) is DQN's, and gets ``algo: dqn``. Any other
        without ``algo`` is not a run's checkpoint this code can tell.

        :raises worldmodels.common.checkpoint.CheckpointError: naming the file and the fix.
        """
        if CheckpointLayout.ALGO in ckpt:
            return ckpt
        learner = ckpt.get(CheckpointLayout.LEARNER)
        if isinstance(learner, Mapping) and {"online", "target"} <= set(learner):
            ckpt[CheckpointLayout.ALGO] = "dqn"
            return ckpt
        from worldmodels.common.checkpoint import CheckpointError

        raise CheckpointError(
            f"{path} names no algorithm (no 'algo' key) and is not a DQN checkpoint from before the key existed: "
            "it was not written by `reverie train`, or by a version that cannot be told apart. If you know which "
            "algorithm wrote it, add the key: ckpt = torch.load(PATH, weights_only=False); ckpt['algo'] = "
            "'<dqn|actor_critic|straw|mfec>'; torch.save(ckpt, PATH).")

    @staticmethod
    def algo(ckpt: dict[str, Any], path: Path | str) -> str:
        """The algorithm that wrote the checkpoint (migrating an older one, see :meth:`migrate`)."""
        return str(CheckpointLayout.migrate(ckpt, path)[CheckpointLayout.ALGO])

    @staticmethod
    def learner_state(ckpt: Mapping[str, Any]) -> Any:
        """The learner's own entry (``learner``), whose inside its learner defines.

        :raises KeyError: the checkpoint has none (naming the keys it has)."""
        if CheckpointLayout.LEARNER not in ckpt:
            raise KeyError(f"the checkpoint holds no '{CheckpointLayout.LEARNER}' entry (it has: {sorted(ckpt)})")
        return ckpt[CheckpointLayout.LEARNER]

    @staticmethod
    def restore_counters(ckpt: Mapping[str, Any], counters: Counters) -> None:
        """Set ``counters``' steps, updates and episodes to the checkpoint's."""
        counters.steps, counters.updates, counters.episodes = (int(ckpt["steps"]), int(ckpt["updates"]),
                                                               int(ckpt["episodes"]))

    @staticmethod
    def steps(ckpt: Mapping[str, Any]) -> int:
        """Agent steps the run had collected (``frames = steps x frame_skip``)."""
        return int(ckpt["steps"])

    @staticmethod
    def discovered(ckpt: Mapping[str, Any]) -> dict[str, set[int]]:
        """What the run's trackers had discovered, by tag (empty for a checkpoint without it)."""
        return {tag: set(items) for tag, items in ckpt.get("discovered", {}).items()}

    @staticmethod
    def actor_states(ckpt: Mapping[str, Any]) -> list[Any]:
        """Each actor's saved state (empty: none saved)."""
        return list(ckpt.get("actor_states") or [])

    @staticmethod
    def shared_actor_state(ckpt: Mapping[str, Any]) -> Any:
        """The shared service's saved state (None: the run had none)."""
        return ckpt.get("shared_actor_state")
