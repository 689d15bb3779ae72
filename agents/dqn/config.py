"""Every setting of a DQN run, in one typed tree of dataclasses.

The defaults reproduce Dopamine's DQN on Atari (Castro et al. 2018; the ``dqn_pong`` preset) except where a
field says otherwise. YAML presets in ``configs/`` override these defaults; ``key=value`` on the command line
overrides the presets. Unknown keys and wrong types are rejected by ``launch.config`` (via OmegaConf
structured configs), so no setting can silently do nothing.

Units: ``*_frames`` fields count emulator frames (agent steps x the env's frame skip: 4 on Atari, 1 on MinAtar),
the unit of published Atari curves (Dopamine's iteration is 1M frames). ``update_period`` counts agent steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agents.exploration import BonusChoice
from agents.runtime.config import EnvConfig, RunConfig, RuntimeConfig, validate_common
from worldmodels.common.checks import Choice, require_positive, require_range


class LossChoice(Choice):
    huber = "huber"
    mse = "mse"


class OptimizerChoice(Choice):
    adam = "adam"
    rmsprop = "rmsprop"
    rmsprop_torch = "rmsprop_torch"


class ScheduleChoice(Choice):
    linear = "linear"
    apex = "apex"


class StrategyChoice(Choice):
    epsilon_greedy = "epsilon_greedy"
    informed = "informed"


@dataclass
class NetworkConfig:
    dueling: bool = False
    """Dueling head (Wang et al. 2016) instead of the single linear head of Nature DQN."""
    hidden: int = 512
    """Width of the fully connected layer after the Nature CNN torso."""


@dataclass
class AgentConfig:
    gamma: float = 0.99
    """Discount per agent step."""
    n_step: int = 1
    """Steps in the bootstrapped return (1 in Dopamine's DQN; 3 in Ape-X and Rainbow)."""
    double: bool = True
    """Double DQN target (van Hasselt et al. 2016): online network picks a', target network values it."""
    loss: LossChoice = LossChoice.huber
    """TD loss: "huber" (Dopamine, equivalent to Nature's error clipping) or "mse"."""
    lr: float = 6.25e-5
    """Adam learning rate (Dopamine: 6.25e-5)."""
    adam_eps: float = 1.5e-4
    """Adam epsilon (Dopamine: 1.5e-4)."""
    optimizer: OptimizerChoice = OptimizerChoice.adam
    """"adam"; "rmsprop": DeepMind's centred RMSProp of Nature DQN (decay 0.95, 0.01 inside the square root,
    averages from 0; ``worldmodels.common.optim``); "rmsprop_torch": PyTorch's centred RMSprop with the same numbers
    (0.01 outside the root, ten times larger steps at small gradients), as MinAtar's DQN example runs it."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip; 0 disables it."""
    batch_size: int = 32
    """Transitions per learner update."""
    update_period: int = 4
    """Agent steps per learner update: the replay ratio (1 update of batch 32 per 4 steps in Dopamine)."""
    target_update_frames: int = 32_000
    """Frames between copies of the online network into the target network (Dopamine: 8000 steps)."""
    learning_starts_frames: int = 80_000
    """Frames collected before the first update (Dopamine: 20k steps)."""
    clip_rewards: bool = True
    """Clip rewards to [-1, 1] in the actor before the n-step return (Dopamine and Nature both do). An
    exploration bonus is added after clipping, as in Bellemare et al. (2016)."""
    mc_mix: float = 0.0
    """Mixed Monte Carlo return (Bellemare et al. 2016, Sec. 5; Ostrovski et al. 2017, Sec. 4): the target is
    ``(1 - mc_mix) * (n-step Double DQN target) + mc_mix * (Monte Carlo return of the transition's episode)``.
    0 (default) is plain DQN; both papers used 0.1 with the exploration bonus (the CTS presets do). With
    mc_mix > 0 actors hold each transition until its episode ends (the Monte Carlo return is known only then)."""


@dataclass
class ReplayConfig:
    capacity: int = 1_000_000
    """Transitions kept; each frame is stored once (1M transitions of 84x84 take about 7.5 GB)."""
    prioritized: bool = False
    """Proportional prioritised replay (Schaul et al. 2016); Dopamine's DQN samples uniformly."""
    alpha: float = 0.6
    """Priority exponent."""
    beta_start: float = 0.4
    """Initial importance-sampling exponent, annealed linearly to 1 over the run."""
    save_in_checkpoint: bool = False
    """Write the replay contents with each checkpoint so a resumed run needs no refill (large on Atari)."""
    prefetch: bool = False
    """Sample the next batch in a worker thread while the current update runs, gathering it into a preallocated
    (pinned, on CUDA) buffer and copying it to the device meanwhile (``agents/replay/prefetch.py``). It is then drawn
    before the current update writes its priorities and before the newest chunks are ingested: one update staler,
    as Ape-X's learner is. False samples each batch when its update starts (the exact algorithm; both are
    deterministic for a fixed seed)."""


@dataclass
class ExplorationConfig:
    schedule: ScheduleChoice = ScheduleChoice.linear
    """"linear": every actor decays epsilon from eps_start to eps_end over eps_decay_frames (Dopamine);
    "apex": actor i of N keeps eps_base ** (1 + apex_alpha * i / (N - 1)) (Horgan et al. 2018)."""
    eps_start: float = 1.0
    """Initial epsilon of the linear schedule."""
    eps_end: float = 0.01
    """Final epsilon of the linear schedule (Dopamine: 0.01)."""
    eps_decay_frames: int = 1_000_000
    """Frames over which epsilon decays linearly (Dopamine: 250k steps)."""
    eps_base: float = 0.4
    """Ape-X base epsilon."""
    apex_alpha: float = 7.0
    """Ape-X exponent spread."""
    eval_eps: float = 0.001
    """Epsilon of `reverie evaluate` (Dopamine's evaluation epsilon)."""
    bonus: BonusChoice = BonusChoice.none
    """Exploration bonus added to the (clipped) reward in the actor: "none", "cts" (Bellemare et al. 2016),
    "pixelcnn" (Ostrovski et al. 2017, prediction gain decayed by 0.1 n^-1/2), both ``beta / sqrt(N + 0.01)``, or
    "rnd" (Burda et al. 2018: ``beta`` times the predictor's error; the paper's settings, without its intrinsic
    reward normalisation, which belongs to a two-stream agent). Each actor scores the whole newest observation as
    its env family needs (envs/novelty.py: Atari's newest frame at 42x42 and 8 levels; MinAtar's and the maze's
    whole grid); a family the bonus cannot score (a pseudo-count on MinAtar Seaquest's 10 channels) is refused."""
    beta: float = 0.05
    """Bonus scale (Bellemare et al. 2016 used 0.05 for DQN; the bonus is at most 10 * beta per step)."""
    shared_density: bool = False
    """False: each actor owns its density model, which learns the frames of that actor's envs (as A3C+ had one
    model per thread). True: one model in a Ray actor learns every actor's frames (a Ray round trip per vector
    step, and that one process caps the frames per second of all actors together; in local mode the single
    actor's model is already the only one)."""
    strategy: StrategyChoice = StrategyChoice.epsilon_greedy
    """What an exploring step does (it happens with probability epsilon, on the schedule above):
    "epsilon_greedy", a uniformly random action; or "informed" (Oh et al. 2015, Sec. 4.3; agents/dqn/informed.py),
    the action whose next frame, as predicted by ``world_model``, is least like the env's last ``informed_history``
    frames (kernel visit count). Evaluation is always epsilon-greedy with ``eval_eps``."""
    world_model: str = ""
    """Run directory or checkpoint of a trained world model (``reverie fit-world-model``) of the same game and action
    set, loaded with ``worldmodels.video.load_world_model`` inside each actor. Required by, and only used by,
    strategy "informed"."""
    informed_history: int = 20
    """d: frames of each env's recent trajectory the visit count sums over (the paper: 20)."""
    informed_sigma: float = 100.0
    """sigma of the kernel exp(-sum_j min(max((x_j - y_j)^2 - delta, 0), 1) / sigma) (the paper: 100)."""
    informed_delta: float = 0.0
    """delta of that kernel: squared per-pixel differences below it count as equal (the paper: 0)."""
    informed_pixel_scale: float = 255.0
    """Pixels enter the kernel on the [0, informed_pixel_scale] scale: 255 (grey levels) makes the kernel's sum a
    count of differing pixels, our reading of the paper; 1 is the [0, 1] scale (see agents/dqn/informed.py)."""


@dataclass
class DQNConfig:
    algo: str = "dqn"
    """Algorithm: selects this schema (``reverie train`` reads it first)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(name="dqn"))


def validate(cfg: DQNConfig) -> None:
    """Check the values OmegaConf's type checks cannot: ranges and impossible sizes (choices are Enums, which
    OmegaConf checks itself).

    Checks that need files are left to the start of training: ``exploration.world_model`` must exist and fit
    ``env.game`` and its action set (:func:`agents.dqn.informed.load_informed_world_model`, called by ``train``).

    :raises ValueError: naming the key, the bad value and what would be valid.
    """
    if cfg.algo != "dqn":
        raise ValueError(f"algo={cfg.algo!r}: this is the DQN config; select another algorithm's schema with algo.")
    validate_common(cfg.env, cfg.runtime, cfg.run)
    require_positive({
        "agent.n_step": cfg.agent.n_step, "agent.batch_size": cfg.agent.batch_size,
        "agent.update_period": cfg.agent.update_period, "replay.capacity": cfg.replay.capacity,
    })
    require_range("agent.gamma", cfg.agent.gamma, 0.0, 1.0, low_open=True)
    require_range("agent.mc_mix", cfg.agent.mc_mix, 0.0, 1.0, hint="0: plain DQN; the papers used 0.1")
    if not (cfg.exploration.beta >= 0.0 and math.isfinite(cfg.exploration.beta)):
        raise ValueError(f"exploration.beta={cfg.exploration.beta} must be a finite number >= 0 (the papers: 0.05).")
    ex = cfg.exploration
    if ex.bonus != "none" and cfg.env.game.startswith("minatar/"):
        # Up front rather than when the actors are built: a pseudo-count cannot score Seaquest's 10 channels.
        from envs.minatar import CHANNELS, GRID
        from envs.novelty import novelty_input

        name = cfg.env.game.split("/", 1)[1]
        if name in CHANNELS:  # an unknown game is refused where its env is made
            novelty_input("minatar", str(ex.bonus), (CHANNELS[name], GRID, GRID), key="exploration.bonus")
    for key, eps in (("exploration.eps_start", ex.eps_start), ("exploration.eps_end", ex.eps_end),
                     ("exploration.eps_base", ex.eps_base), ("exploration.eval_eps", ex.eval_eps)):
        require_range(key, eps, 0.0, 1.0)
    if ex.strategy == "informed":
        if not ex.world_model:
            raise ValueError("exploration.strategy='informed' needs exploration.world_model: the run directory or "
                             "checkpoint of a world model trained on env.game (reverie fit-world-model).")
        if ex.informed_history < 1:
            raise ValueError(f"exploration.informed_history={ex.informed_history} must be at least 1 (the paper: 20).")
        if not (ex.informed_sigma > 0.0 and math.isfinite(ex.informed_sigma)):
            raise ValueError(f"exploration.informed_sigma={ex.informed_sigma} must be a finite number > 0 "
                             "(the paper: 100).")
        if not (ex.informed_pixel_scale > 0.0 and math.isfinite(ex.informed_pixel_scale)):
            raise ValueError(f"exploration.informed_pixel_scale={ex.informed_pixel_scale} must be a finite number > 0 "
                             f"(255: grey levels, our reading of the paper; 1: the [0, 1] scale).")
        if not (ex.informed_delta >= 0.0 and math.isfinite(ex.informed_delta)):
            raise ValueError(f"exploration.informed_delta={ex.informed_delta} must be a finite number >= 0 "
                             "(the paper: 0).")
    num_shards = max(1, cfg.runtime.num_actors)
    per_chunk = cfg.env.num_envs * cfg.runtime.chunk_steps
    if cfg.replay.capacity // num_shards < 4 * per_chunk:
        raise ValueError(
            f"replay.capacity={cfg.replay.capacity} is too small: each of the {num_shards} replay shards needs "
            f"room for at least 4 chunks of env.num_envs x runtime.chunk_steps = {per_chunk} transitions; "
            f"raise replay.capacity to at least {4 * per_chunk * num_shards}."
        )
    if cfg.agent.batch_size > cfg.replay.capacity:
        raise ValueError(
            f"agent.batch_size={cfg.agent.batch_size} exceeds replay.capacity={cfg.replay.capacity}."
        )
