"""The algorithm seam: what an algorithm hands the runtime (Acme's builder idea, kept small).

An algorithm is one folder under ``agents/`` (``config.py``, ``networks.py``, ``actor.py``, ``learning.py``,
``builder.py``, ``train.py``). Its ``builder.py`` defines a :class:`Builder`; its ``train.py`` calls
:func:`agents.runtime.loop.run_training` with it. The generic loop (rate limiter, ingestion, logging, checkpoints,
signals, cleanup) never names an algorithm, and nothing in ``agents/runtime`` imports an algorithm folder.

    actors (local or Ray):  make_parts(cfg, actor_id) -> env, policy, adder, trackers   --ActorOutput-->
    driver:                 learner.ingest(output); learner.updates_due(counters) x learner.update(counters)
                            learner.get_weights() --publish--> actors
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from agents.runtime.actor import ActorOutput, PartsFn


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

    def update(self, counters: Counters) -> dict[str, float]:
        """One update; scalars to log, by TensorBoard tag (``losses/...``) or bare name (logged as ``losses/<name>``),
        averaged over the logging window."""

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

    def prepare(self, cfg: Any) -> None:
        """Driver-side checks and fix-ups before any actor starts (e.g. a model file exists; paths made absolute)."""

    def actor_setup(self, cfg: Any, distributed: bool) -> ActorSetup:
        """The parts function actors build ``(env, policy, adder, trackers)`` with (inside their own process),
        and any shared service (started here, in Ray mode)."""

    def make_learner(self, cfg: Any, spec: EnvSpec, device: Any) -> Learner:
        """The learner, on ``device`` (a ``torch.device``)."""

    def evaluate(self, cfg: Any, weights: Any, episodes: int, seed: int,
                 record: list[np.ndarray] | None = None) -> EvalResult:
        """Play ``episodes`` evaluation games with ``weights`` (what :meth:`Learner.get_weights` returned); if
        ``record`` is a list, append the observations of the first game to it (for a video)."""

    def checkpoint_weights(self, ckpt: dict[str, Any]) -> Any:
        """The actor weights stored in a checkpoint (for ``reverie evaluate``)."""
