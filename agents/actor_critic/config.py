"""Every setting of an actor-critic run (A2C, PPO, IMPALA), in one typed tree of dataclasses.

One learner, three objectives, selected by ``agent.loss``:

- ``a2c``: synchronous advantage actor-critic (Mnih et al. 2016, A3C made synchronous as in OpenAI Baselines):
  n-step returns over the unroll (``gae_lambda = 1``), RMSProp, one update per batch of unrolls;
- ``ppo``: the clipped surrogate of Schulman et al. (2017) with GAE, several epochs of minibatches over each batch
  (CleanRL's ``ppo_atari.py`` settings are the ``ppo_pong`` preset);
- ``impala``: asynchronous actors, V-trace off-policy correction (Espeholt et al. 2018, Sec. 4.1).

The defaults are A2C on Atari as OpenAI Baselines and Stable-Baselines3 run it (16 envs, 5-step unrolls, RMSProp
7e-4, entropy 0.01); presets in ``configs/`` change them. Units: ``*_frames`` fields count emulator frames (agent
steps x the env's frame skip); ``unroll_length`` counts vector-env steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agents.exploration import BonusChoice
from agents.runtime.config import AtariPresetChoice, EnvConfig, RunConfig, RuntimeConfig, validate_common
from worldmodels.common.checks import Choice, require_positive, require_range

if TYPE_CHECKING:
    from agents.actor_critic.core import PolicyCore


class ACLossChoice(Choice):
    a2c = "a2c"
    ppo = "ppo"
    impala = "impala"


class CoreChoice(Choice):
    ff = "ff"
    lstm = "lstm"


class TorsoChoice(Choice):
    auto = "auto"
    a3c = "a3c"
    nature = "nature"
    minatar = "minatar"


class ACOptimizerChoice(Choice):
    rmsprop = "rmsprop"
    rmsprop_tf = "rmsprop_tf"
    adam = "adam"


class StreamsChoice(Choice):
    one = "one"
    two = "two"


class ReductionChoice(Choice):
    mean = "mean"
    sum = "sum"


#: Objectives whose actors all collect one unroll on the same weights before each update (on-policy).
SYNCHRONOUS_LOSSES = ("a2c", "ppo")


@dataclass
class ACNetworkConfig:
    torso: TorsoChoice = TorsoChoice.auto
    """Conv torso: "a3c" (Mnih et al. 2016: 16 8x8/4, 32 4x4/2), "nature" (Mnih et al. 2015), "minatar" (16 3x3/1)
    or "auto" (a3c for 84x84 frames, minatar for 10x10)."""
    hidden: int = 256
    """Units of the fully connected layer after the torso (A3C: 256; Nature CNN / CleanRL: 512)."""
    core: CoreChoice = CoreChoice.ff
    """"ff": policy and value heads on the hidden layer; "lstm": an LSTM between them (A3C LSTM; its state lives
    in the actor, is reset at episode starts, and the learner re-runs each unroll from its stored first state)."""
    lstm_size: int = 256
    """Units of the LSTM (core "lstm")."""
    orthogonal_init: bool = True
    """Orthogonal initialisation (Saxe et al. 2014) as OpenAI Baselines, CleanRL and SB3 initialise their actor-critics:
    gain sqrt(2) for the torso and fc layers, 0.01 for the policy head (a near-uniform first policy), 1 for the value
    head, zero biases. False keeps PyTorch's default initialisation."""
    prev_action_reward: bool = False
    """Feed the previous action (one-hot) and clipped reward into the LSTM, as STRAW's LSTM baseline does (core
    "lstm" only; zero at the first step of a game)."""


@dataclass
class ACAgentConfig:
    loss: ACLossChoice = ACLossChoice.a2c
    """Objective: "a2c", "ppo" or "impala" (see the module docstring)."""
    gamma: float = 0.99
    """Discount per agent step."""
    unroll_length: int = 5
    """T: vector-env steps per unroll; the returns bootstrap from the value of the unroll's last observation
    (A2C's n in its n-step return: 5; CleanRL's PPO: 128; IMPALA on Atari: 20)."""
    gae_lambda: float = 1.0
    """lambda of the advantage estimate of a2c and ppo (Schulman et al. 2016): 1 is the n-step return to the
    unroll's end (A2C); CleanRL's PPO uses 0.95. V-trace has its own trace cut, ``vtrace_c_bar``."""
    lr: float = 7e-4
    """Learning rate at the start of the run (A2C: 7e-4; PPO: 2.5e-4; IMPALA: 6e-4)."""
    anneal_lr: bool = True
    """Anneal the learning rate linearly to 0 over ``run.total_frames`` (A3C, CleanRL, IMPALA all do)."""
    optimizer: ACOptimizerChoice = ACOptimizerChoice.rmsprop_tf
    """"rmsprop_tf" (A2C and IMPALA: RMSProp as TensorFlow defines it, which Baselines' A2C and IMPALA were tuned with:
    squared-gradient average starting at 1, epsilon inside the square root; see ``worldmodels/common/optim.py``),
    "rmsprop" (PyTorch's) or "adam" (PPO). One set of statistics for all actors' data: A3C's shared RMSProp."""
    optimizer_eps: float = 1e-5
    """epsilon of the optimiser (Baselines' A2C and CleanRL's PPO: 1e-5; IMPALA: 0.01; A3C: 0.1)."""
    loss_reduction: ReductionChoice = ReductionChoice.mean
    """How the per-step losses combine: "mean" over the batch's steps (Baselines' A2C, CleanRL's PPO) or "sum" over
    them (IMPALA's scalable_agent and TorchBeast, whose learning rate and epsilon assume gradients T x B times as
    large as a mean's)."""
    rmsprop_alpha: float = 0.99
    """RMSProp's squared-gradient decay (A2C and IMPALA: 0.99)."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip (A2C, PPO: 0.5; IMPALA: 40); 0 disables it."""
    value_coef: float = 1.0
    """Weight c of the value loss ``0.5 * mean((target - V)^2)`` in ``pg + c * value - entropy_coef * entropy``.
    Stable-Baselines3 and Baselines drop the 0.5, so their ``vf_coef`` x is our ``2x`` (A2C's 0.5 is our 1.0);
    CleanRL keeps it (PPO's 0.5 is our 0.5); IMPALA's baseline cost 0.5 is our 0.5 (its loss keeps the 0.5)."""
    entropy_coef: float = 0.01
    """Weight of the policy's entropy bonus (A2C, PPO, IMPALA on Atari: 0.01)."""
    clip_rewards: bool = True
    """Clip rewards to [-1, 1] in the actor (all three papers on Atari)."""
    clip_advantages: bool = False
    """Clip the policy-gradient advantage to [-1, 1] (STRAW, Vezhnevets et al. 2016, does)."""
    normalize_advantages: bool = False
    """Normalise advantages to zero mean and unit std per minibatch (CleanRL's PPO does; A2C and IMPALA do not)."""
    ppo_epochs: int = 4
    """PPO: passes over each batch."""
    ppo_minibatches: int = 4
    """PPO: minibatches per pass (of steps for a feed-forward core, of whole env columns for an LSTM)."""
    ppo_clip: float = 0.1
    """PPO: epsilon of the clipped ratio (CleanRL's Atari setting: 0.1)."""
    ppo_clip_value: bool = True
    """PPO: clip the value update around the values the batch was collected with (CleanRL: on)."""
    vtrace_rho_bar: float = 1.0
    """IMPALA: truncation rho-bar of the importance weights in the value targets and the policy gradient."""
    vtrace_c_bar: float = 1.0
    """IMPALA: truncation c-bar of the trace coefficients."""
    batch_chunks: int = 2
    """IMPALA: actor chunks per learner batch (a chunk holds ``env.num_envs`` unrolls; the paper's batch is 32
    unrolls). A2C and PPO learn from one chunk per actor, collected on the same weights."""
    eval_greedy: bool = False
    """Evaluate with the most probable action instead of sampling from the policy."""


@dataclass
class ACExplorationConfig:
    """An exploration bonus for the actor-critic family (A2C, PPO, IMPALA, and STRAW with ``streams: one``).

    Each actor scores the newest observation of every step with its own novelty source (:mod:`agents.exploration`,
    the env family's input of :mod:`envs.novelty`), then learns it. What the bonus then does, ``streams``:

    - ``"one"``, A3C+ (Bellemare et al. 2016, Sec. 5 and App. B): the bonus ``beta / sqrt(N + 0.01)`` is added to the
      clipped extrinsic reward of the step, and the sum is the reward of the one return A2C learns (``beta`` 0.01 for
      A3C+); an autoreset step's frame is learned but its bonus dropped, as in DQN. The sum is not clipped again:
      our reading (a public A3C+ re-implementation clips it; with beta 0.01 the bonus is at most 0.1, so the two
      differ only on steps whose clipped reward is 1, where clipping would drop the bonus);
    - ``"two"``, RND's design (Burda et al. 2018, Sec. 2.3-2.4): the network has a second value head for the intrinsic
      return, with its own discount ``intrinsic_gamma``; the intrinsic stream is non-episodic unless
      ``intrinsic_episodic`` (a game over neither ends its return nor drops the bonus of the next game's first frame:
      the autoreset step is an intrinsic transition); the intrinsic rewards are divided by a running standard deviation
      of their discounted return (``normalize_intrinsic``); the policy follows ``extrinsic_coef * A_E + intrinsic_coef
      * A_I``, and the value loss sums both heads'. It serves the pseudo-count bonuses as well (an option).
    """

    bonus: BonusChoice = BonusChoice.none
    """"none", "cts" (Bellemare et al. 2016), "pixelcnn" (Ostrovski et al. 2017: prediction gain decayed by
    0.1 n^-1/2), or "rnd" (Burda et al. 2018). A family the source cannot score is refused (a pseudo-count on MinAtar
    Seaquest's 10 channels)."""
    beta: float = 0.01
    """Bonus scale: ``beta / sqrt(N + 0.01)`` for a pseudo-count (A3C+: 0.01), ``beta`` times RND's error."""
    streams: StreamsChoice = StreamsChoice.two
    """"one": the bonus joins the reward (A3C+); "two": a second value head and return for it (RND)."""
    intrinsic_gamma: float = 0.99
    """Discount of the intrinsic return, per agent step (``streams: two``; RND: 0.99, with 0.999 extrinsic)."""
    intrinsic_episodic: bool = False
    """``streams: two``: True cuts the intrinsic return at every game over as the extrinsic one is (RND: False)."""
    normalize_intrinsic: bool = True
    """``streams: two``: divide intrinsic rewards by a running std of their discounted return (RND, Sec. 2.3)."""
    extrinsic_coef: float = 2.0
    """``streams: two``: weight of the extrinsic advantage in the policy's advantage (RND: 2)."""
    intrinsic_coef: float = 1.0
    """``streams: two``: weight of the intrinsic advantage (RND: 1)."""
    rnd_init_steps: int = 64
    """RND: vector steps of uniformly random play whose observations initialise its input statistics, in each actor
    before it acts (Sec. 2.3; the paper played 50 x 128 steps of 128 envs, ours is smaller for cost). These frames
    are not counted in the run's frames. 0: the statistics start from the first batch scored."""


@dataclass
class ActorCriticConfig:
    algo: str = "actor_critic"
    """Algorithm: selects this schema (``reverie train`` reads it first)."""
    env: EnvConfig = field(default_factory=lambda: EnvConfig(preset=AtariPresetChoice.nature))
    network: ACNetworkConfig = field(default_factory=ACNetworkConfig)
    agent: ACAgentConfig = field(default_factory=ACAgentConfig)
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(chunk_steps=5, max_ahead_chunks=0,
                                                                         publish_every_updates=1))
    run: RunConfig = field(default_factory=lambda: RunConfig(name="actor_critic"))
    exploration: ACExplorationConfig = field(default_factory=ACExplorationConfig)

    def build_network(self, obs_shape: tuple[int, ...], num_actions: int, input_divisor: float | None = None,
                      ) -> PolicyCore:
        """The policy core this config trains (the learner's and each actor's copy): the feed-forward or LSTM
        network. An algorithm built on this learner with another :class:`~agents.actor_critic.core.PolicyCore`
        (STRAW) overrides this in its config class: the hook through which the actor-critic code builds networks
        it does not import.

        :param input_divisor: what uint8 observations are divided by (the env's ``EnvSpec.obs_high``).
        """
        from agents.actor_critic.networks import ActorCriticNetwork

        return ActorCriticNetwork(obs_shape, num_actions, self.network, input_divisor,
                                  value_heads=2 if two_streams(self) else 1)


def two_streams(cfg: ActorCriticConfig) -> bool:
    """An intrinsic reward stream with its own value head (a bonus with ``exploration.streams: two``)."""
    return cfg.exploration.bonus != "none" and cfg.exploration.streams == "two"


def is_synchronous(cfg: ActorCriticConfig) -> bool:
    """A2C and PPO: every actor collects one unroll per env on the same weights, then one update."""
    return str(cfg.agent.loss) in SYNCHRONOUS_LOSSES


def validate(cfg: ActorCriticConfig, algo: str = "actor_critic") -> None:
    """Check the values OmegaConf's type checks cannot: ranges, impossible sizes, and the runtime settings the
    synchronous objectives depend on.

    :param algo: the ``algo`` this schema belongs to (an algorithm built on this learner passes its own).
    :raises ValueError: naming the key, the bad value and what would be valid.
    """
    if cfg.algo != algo:
        raise ValueError(f"algo={cfg.algo!r}: this is the actor-critic config; select another algorithm's schema "
                         "with algo.")
    validate_common(cfg.env, cfg.runtime, cfg.run)
    a, n = cfg.agent, cfg.network
    require_positive({
        "agent.unroll_length": a.unroll_length, "agent.ppo_epochs": a.ppo_epochs,
        "agent.ppo_minibatches": a.ppo_minibatches, "agent.batch_chunks": a.batch_chunks,
        "network.hidden": n.hidden, "network.lstm_size": n.lstm_size,
    })
    require_range("agent.gamma", a.gamma, 0.0, 1.0, low_open=True)
    require_range("agent.gae_lambda", a.gae_lambda, 0.0, 1.0)
    for key, value in (("agent.lr", a.lr), ("agent.optimizer_eps", a.optimizer_eps),
                       ("agent.ppo_clip", a.ppo_clip), ("agent.vtrace_rho_bar", a.vtrace_rho_bar),
                       ("agent.vtrace_c_bar", a.vtrace_c_bar)):
        if not (value > 0.0 and math.isfinite(value)):
            raise ValueError(f"{key}={value} must be a finite number > 0.")
    for key, value in (("agent.max_grad_norm", a.max_grad_norm), ("agent.value_coef", a.value_coef),
                       ("agent.entropy_coef", a.entropy_coef)):
        if not (value >= 0.0 and math.isfinite(value)):
            raise ValueError(f"{key}={value} must be a finite number >= 0.")
    require_range("agent.rmsprop_alpha", a.rmsprop_alpha, 0.0, 1.0, low_open=True)
    rt = cfg.runtime
    if rt.chunk_steps % a.unroll_length != 0:
        raise ValueError(f"runtime.chunk_steps={rt.chunk_steps} must be a multiple of agent.unroll_length="
                         f"{a.unroll_length}: actors send whole unrolls (set runtime.chunk_steps={a.unroll_length}).")
    if is_synchronous(cfg):
        if rt.chunk_steps != a.unroll_length:
            raise ValueError(f"agent.loss={a.loss}: every actor sends one unroll per env per update, so "
                             f"runtime.chunk_steps={rt.chunk_steps} must equal agent.unroll_length={a.unroll_length}.")
        if rt.max_ahead_chunks != 0:
            raise ValueError(f"agent.loss={a.loss} is on-policy: actors must not run ahead of the learner "
                             f"(runtime.max_ahead_chunks={rt.max_ahead_chunks}); set runtime.max_ahead_chunks=0.")
        if rt.publish_every_updates != 1:
            raise ValueError(f"agent.loss={a.loss} is on-policy: every update's weights must reach the actors "
                             f"(runtime.publish_every_updates={rt.publish_every_updates}); set it to 1.")
    if str(a.loss) == "ppo" and a.loss_reduction != "mean":
        raise ValueError(f"agent.loss_reduction={a.loss_reduction} applies to a2c and impala; PPO averages over each "
                         "minibatch (CleanRL): set agent.loss_reduction=mean.")
    validate_exploration(cfg, algo)
    if str(a.loss) == "ppo":
        batch = max(1, rt.num_actors) * cfg.env.num_envs * (a.unroll_length if n.core == "ff" else 1)
        unit = "steps" if n.core == "ff" else "env columns (an LSTM learns from whole unrolls)"
        if a.ppo_minibatches > batch:
            raise ValueError(f"agent.ppo_minibatches={a.ppo_minibatches} exceeds the {batch} {unit} of a batch; "
                             f"lower it or raise env.num_envs.")


def validate_exploration(cfg: ActorCriticConfig, algo: str = "actor_critic") -> None:
    """The ``exploration`` section: scales, discount and weights that can work, and a core that can take the stream.

    :raises ValueError: naming the key, the bad value and the fix.
    """
    ex = cfg.exploration
    if ex.bonus == "none":
        return
    for key, value in (("exploration.beta", ex.beta), ("exploration.extrinsic_coef", ex.extrinsic_coef),
                       ("exploration.intrinsic_coef", ex.intrinsic_coef)):
        if not (value >= 0.0 and math.isfinite(value)):
            raise ValueError(f"{key}={value} must be a finite number >= 0 (a negative weight rewards the opposite of "
                             "what the bonus measures).")
    if not (0.0 <= ex.intrinsic_gamma < 1.0):
        raise ValueError(f"exploration.intrinsic_gamma={ex.intrinsic_gamma} must lie in [0, 1): a non-episodic "
                         "intrinsic return never ends, so a discount of 1 or more makes it infinite (RND: 0.99).")
    if ex.rnd_init_steps < 0:
        raise ValueError(f"exploration.rnd_init_steps={ex.rnd_init_steps} must be >= 0 (0: no random play).")
    if ex.streams == "two" and algo != "actor_critic":
        raise ValueError(f"exploration.streams=two needs a second value head, which the {algo} core does not have "
                         "(its values come from its plan); use exploration.streams=one (A3C+: the bonus joins the "
                         "reward).")
