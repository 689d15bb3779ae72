"""Every setting of a Dyna run: DQN's tree (:class:`agents.dqn.config.DQNConfig`: env, network, agent, replay,
exploration, runtime, run) plus the world model's section and a ``dyna`` section for imagination, selected by
``algo: dyna``. The env's family picks the world model (:func:`world_model_family`): MinAtar's grids the grid model
(``world_model``: :class:`worldmodels.grid.GridWorldModelConfig`; presets ``dyna_minatar``, ``dyna_freeway``),
Atari's frames the video predictor (``video_model``: :class:`worldmodels.video.online.OnlineVideoConfig`; preset
``dyna_atari``, which needs ``agent.clip_rewards``, a feedforward model with the reward head, and
``video_model.context`` equal to the env's stack of 4).

Dyna (Sutton 1991): the agent learns from real experience and from experience its own model imagines. The scheme
default is MBPO's (Janner et al. 2019, Sec. 4): short rollouts of ``dyna.rollout_k`` imagined steps, branched
from real states sampled out of the replay, under the current Q-network's epsilon-greedy policy; the imagined
transitions go to their own FIFO buffer and each learner batch mixes them with real ones. ``dyna.scheme: simple``
plays imagined games from real starts in an :class:`envs.ImaginedEnv` instead (Kaiser et al. 2019, SimPLe).

What the DQN settings mean here:

- ``agent.batch_size`` real transitions per DQN step (sampled as DQN samples them, prioritised or not), beside
  ``round(dyna.imagined_ratio * agent.batch_size)`` imagined ones (uniform from the imagined buffer);
- ``agent.update_period`` real agent steps per learner update (DQN's rate limiter, unchanged); each learner update
  trains the world model, branches rollouts, then runs ``dyna.q_updates_per_learner_update`` DQN steps;
- ``agent.n_step`` must be 1: the world model learns one-step transitions from the same replay, and imagined
  transitions are one-step too (each transition carries its own discount, so n = 1 everywhere is consistent).

``world_model.context > 1`` (Freeway's hidden timers want 4): DQN's replay keeps one frame per observation, so the
learner keeps a second replay of the same chunks whose observations are the last ``context`` frames
(:mod:`agents.dyna.history`); the world model trains on and imagines from those histories, the Q-network still
reads one frame.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from agents.dqn.config import DQNConfig
from agents.dqn.config import validate as validate_dqn
from agents.runtime.config import RunConfig
from worldmodels.common.checks import Choice, require_positive
from worldmodels.grid import GridWorldModelConfig
from worldmodels.grid import validate as validate_grid_model
from worldmodels.video.online import OnlineVideoConfig
from worldmodels.video.online import validate as validate_video_model


class SchemeChoice(Choice):
    """How imagined experience is made: ``mbpo``, k-step rollouts branched from replayed real states (Janner et al.
    2019); ``simple``, imagined episodes from real starts in an :class:`envs.ImaginedEnv` (Kaiser et al. 2019)."""

    mbpo = "mbpo"
    simple = "simple"


@dataclass
class DynaSettings:
    scheme: SchemeChoice = SchemeChoice.mbpo
    """How imagined experience is made (after warm-up, at each learner update; both add up to
    ``rollouts_per_update * rollout_k`` imagined transitions per update):

    - "mbpo" (Janner et al. 2019): ``rollouts_per_update`` real states sampled from the replay, each rolled
      ``rollout_k`` steps through the model, fresh rollouts at every update;
    - "simple" (Kaiser et al. 2019, SimPLe): an :class:`envs.ImaginedEnv` of ``rollouts_per_update`` imagined games
      on the model, each started from a real state sampled from the replay and played until an imagined game over
      or ``imagined_episode_steps`` steps (then restarted from another real state); each update plays ``rollout_k``
      more steps of every game. Ours: the games go on across updates while the model keeps learning (SimPLe
      alternates whole phases), and a resumed run starts new imagined games (as the actors start new real ones)."""
    rollout_k: int = 2
    """k: imagined steps per rollout ("mbpo": each branched rollout's length, MBPO's k; steps after an imagined game
    over are dropped, and longer rollouts compound the model's errors) or per update ("simple": steps every imagined
    game advances at each learner update). >= 1."""
    rollouts_per_update: int = 8
    """"mbpo": real states sampled from the replay to branch a rollout from, at each learner update; "simple": the
    imagined games played side by side (the ImaginedEnv's envs)."""
    imagined_episode_steps: int = 50
    """"simple" only: an imagined game is cut (truncated, bootstrapped) after this many steps (SimPLe: 50); an
    imagined game over ends it sooner."""
    imagined_ratio: float = 1.0
    """Imagined transitions per real transition in each DQN batch: a batch holds ``agent.batch_size`` real ones and
    ``round(imagined_ratio * agent.batch_size)`` imagined ones (>= 0; 0 trains the world model but the Q-network
    on real data only, plain DQN). MBPO's 95 % imagined batches are ratio 19."""
    q_updates_per_learner_update: int = 1
    """DQN gradient steps per learner update, each on a fresh mixed batch (MBPO's G, its many policy updates per
    real step). The target network is still copied every ``agent.target_update_frames`` real frames."""
    model_updates_per_learner_update: int = 1
    """World-model Adam updates per learner update, each on ``model_batch_size`` real transitions sampled from the
    replay (the world-model update rate)."""
    model_update_every: int = 1
    """Learner updates between world-model training rounds (each round is ``model_updates_per_learner_update``
    Adam steps): 1 trains at every learner update; larger trains less often. On the CPU the model's Adam step is
    most of a Dyna update's cost (measured on MinAtar Breakout with the dyna_minatar sizes: ~32 of ~45 ms)."""
    model_batch_size: int = 64
    """Real transitions per world-model update."""
    model_warmup_transitions: int = 100_000
    """No imagined data until the world model has trained on this many real transitions (updates x
    ``model_batch_size``, with repeats): until then the Q-network learns from real batches alone, exactly as DQN.
    0: imagine from the first update."""
    imagined_capacity: int = 50_000
    """Imagined transitions kept (a FIFO of their own, as MBPO keeps; the oldest, imagined by an older model and
    policy, go first). Must hold at least one update's rollouts."""
    rollout_epsilon: float | None = None
    """Epsilon of the imagination policy (epsilon-greedy on the current Q-network). None: the actors' schedule at
    the run's current frames (``exploration.*``; with the "apex" schedule, actor 0's)."""
    holdout_size: int = 256
    """Recent real transitions (the newest of each ingested chunk, before the model trains on them) kept to score
    the model's one-step accuracy at each log (``worldmodel/one_step_cell_error`` beside copy-last)."""
    gif_every_frames: int = 0
    """Real frames between pictures of the imagination (0: none). Every that many frames the learner plays a short
    real segment of a game in an env of its own (seeded apart from the actors and evaluation; the current
    Q-network, epsilon-greedy with epsilon 0.05) and writes ``imagination/step_<frames>.gif`` into the run
    directory: the real frames beside the world model's open-loop rollout from the same start under the same
    actions, and where they differ (:mod:`agents.dyna.pictures`), so one can watch the imagination improve."""
    gif_steps: int = 20
    """Steps of each picture's segment (fewer where the real game ends first)."""


@dataclass
class DynaConfig(DQNConfig):
    """DQN's settings plus the world model and imagination. The world model is seeded with ``run.seed +
    world_model.seed``, so runs of other seeds get other models."""

    algo: str = "dyna"
    """Algorithm: selects this schema (``reverie train`` reads it first)."""
    world_model: GridWorldModelConfig = field(default_factory=GridWorldModelConfig)
    """The grid world model (MinAtar's 0/1 channels): sizes, optimiser, sampling (``worldmodels/grid/config.py``).
    Used on MinAtar only."""
    video_model: OnlineVideoConfig = field(default_factory=OnlineVideoConfig)
    """The video predictor (Atari's 84x84 grey frames): sizes, optimiser, seed (``worldmodels/video/online.py``;
    the preset ``dyna_atari`` sets video_cpu_ff's network). Used on Atari only; seeded with ``run.seed +
    video_model.seed``."""
    dyna: DynaSettings = field(default_factory=DynaSettings)
    run: RunConfig = field(default_factory=lambda: RunConfig(name="dyna"))


#: Env families with a world model the agent can learn: MinAtar's grids (``worldmodels/grid``, the ``world_model``
#: settings) and Atari's frames (``worldmodels/video``, the ``video_model`` settings).
WORLD_MODEL_FAMILIES = ("minatar/", "atari")


def world_model_family(game: str) -> str | None:
    """``"grid"`` for a MinAtar game, ``"video"`` for an Atari game ale-py can load, None for any other env."""
    if game.startswith("minatar/"):
        return "grid"
    if "/" in game and not game.startswith("ALE/"):
        return None  # the maze, toy envs
    from envs.names import resolve_game

    try:
        resolve_game(game)
    except ValueError:
        return None
    return "video"


def validate(cfg: DynaConfig) -> None:
    """DQN's checks, then the world model's and imagination's.

    :raises ValueError: naming the key, the bad value and what would be valid.
    """
    if cfg.algo != "dyna":
        raise ValueError(f"algo={cfg.algo!r}: this is the Dyna config; select another algorithm's schema with algo.")
    validate_dqn(dataclasses.replace(cfg, algo="dqn"))  # DQN's own checks, on the DQN part of the tree
    family = world_model_family(cfg.env.game)
    if family is None:
        raise ValueError(f"env.game={cfg.env.game!r} has no world model the dyna agent can learn: MinAtar's grids "
                         f"(worldmodels/grid) and Atari's frames (worldmodels/video) have one. Set "
                         f"env.game=minatar/<game> (breakout, space_invaders, freeway, asterix, seaquest) or an "
                         f"Atari game (the dyna_atari preset), or train a model-free agent (algo=dqn) on this game.")
    if cfg.agent.n_step != 1:
        raise ValueError(f"agent.n_step={cfg.agent.n_step}: the dyna agent needs agent.n_step=1. Its world model "
                         f"learns one-step transitions from the replay, and its imagined transitions are one-step.")
    if cfg.exploration.bonus != "none":
        raise ValueError(f"exploration.bonus={cfg.exploration.bonus}: the world model's reward head predicts the "
                         f"game's integer rewards, not a bonus added to them; set exploration.bonus=none.")
    try:
        validate_grid_model(cfg.world_model)
    except ValueError as err:  # the grid model's messages begin with the bare key
        raise ValueError(f"world_model.{err}") from err
    if family == "video":
        _validate_atari(cfg)
    d = cfg.dyna
    if str(d.scheme) not in SchemeChoice.__members__:
        raise ValueError(f"dyna.scheme={d.scheme!r}: choose one of {', '.join(SchemeChoice.__members__)}.")
    for key in ("rollout_k", "rollouts_per_update", "imagined_episode_steps", "q_updates_per_learner_update",
                "model_updates_per_learner_update", "model_update_every", "model_batch_size", "imagined_capacity",
                "holdout_size", "model_warmup_transitions", "gif_every_frames", "gif_steps"):
        value = getattr(d, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"dyna.{key}={value!r} must be an int.")
    if d.rollout_k < 1:
        raise ValueError(f"dyna.rollout_k={d.rollout_k} must be at least 1: the imagined steps of each branched "
                         f"rollout (MBPO's k; 1 to 5 is typical on MinAtar).")
    if not (math.isfinite(d.imagined_ratio) and d.imagined_ratio >= 0):
        raise ValueError(f"dyna.imagined_ratio={d.imagined_ratio} must be a finite number >= 0: imagined transitions "
                         f"per real one in each DQN batch (0: real batches only).")
    require_positive({"dyna.rollouts_per_update": d.rollouts_per_update,
                      "dyna.imagined_episode_steps": d.imagined_episode_steps,
                      "dyna.q_updates_per_learner_update": d.q_updates_per_learner_update,
                      "dyna.model_updates_per_learner_update": d.model_updates_per_learner_update,
                      "dyna.model_update_every": d.model_update_every,
                      "dyna.model_batch_size": d.model_batch_size, "dyna.holdout_size": d.holdout_size,
                      "dyna.gif_steps": d.gif_steps})
    if d.gif_every_frames < 0:
        raise ValueError(f"dyna.gif_every_frames={d.gif_every_frames} must be 0 (no pictures) or more: real frames "
                         f"between the GIFs of an imagined rollout beside the real one.")
    if d.model_warmup_transitions < 0:
        raise ValueError(f"dyna.model_warmup_transitions={d.model_warmup_transitions} must be 0 or more.")
    per_update = d.rollouts_per_update * d.rollout_k
    if d.imagined_capacity < per_update:
        raise ValueError(f"dyna.imagined_capacity={d.imagined_capacity} cannot hold one update's rollouts "
                         f"(dyna.rollouts_per_update x dyna.rollout_k = {per_update}); raise it to at least that.")
    if d.rollout_epsilon is not None and not 0.0 <= d.rollout_epsilon <= 1.0:
        raise ValueError(f"dyna.rollout_epsilon={d.rollout_epsilon} must lie in [0, 1], or be null for the actors' "
                         f"schedule.")


def _validate_atari(cfg: DynaConfig) -> None:
    """What the video world model needs of an Atari run (see ``configs/dyna_atari.yaml``)."""
    validate_video_model(cfg.video_model)
    v = cfg.video_model
    if not cfg.agent.clip_rewards:
        raise ValueError("agent.clip_rewards=false: on Atari the video world model predicts the reward's sign "
                         "(-1, 0, +1), so the real rewards DQN learns must be clipped to match; set "
                         "agent.clip_rewards=true.")
    if not v.reward_head:
        raise ValueError("video_model.reward_head=false: imagined steps need the head's reward and game over; set "
                         "video_model.reward_head=true.")
    if v.architecture != "feedforward":
        raise ValueError(f"video_model.architecture={v.architecture}: the dyna agent trains the video model on "
                         f"one-step windows of the replay's observations, which a feedforward model reads whole; "
                         f"set video_model.architecture=feedforward.")
    if v.context != 4:
        raise ValueError(f"video_model.context={v.context}: the video model reads the Q-network's observation, "
                         f"the env's stack of 4 frames; set video_model.context=4.")
    if cfg.env.colour or v.channels != 1:
        raise ValueError(f"env.colour={cfg.env.colour}, video_model.channels={v.channels}: the dyna agent's video "
                         f"model predicts grey frames; set env.colour=false and video_model.channels=1.")
    if cfg.dyna.gif_every_frames:
        raise ValueError(f"dyna.gif_every_frames={cfg.dyna.gif_every_frames}: the pictures of the imagination draw "
                         f"MinAtar's grids only; set dyna.gif_every_frames=0 on Atari (reverie imagine scores and "
                         f"draws video models).")
