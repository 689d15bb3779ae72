"""DQN's acting side: an epsilon-greedy policy batched over the vector env, and the n-step adder.

The policy evaluates Q(s, .) for all N envs in one forward pass (one torch thread per actor process); the
Q-values travel to the adder so that priorities are computed on the actor, as in Ape-X (Horgan et al. 2018,
Sec. 3), without a second network evaluation.

Exploration bonus (``exploration.bonus``: Bellemare et al. 2016; Ostrovski et al. 2017; Burda et al. 2018): the
adder scores the whole newest observation the env returns with a :class:`~worldmodels.protocols.NoveltySource`
(a :class:`~worldmodels.density.PseudoCount` over CTS or a PixelCNN, or :class:`~worldmodels.density.RND`) and adds
its bonus (``beta / sqrt(N + 0.01)``, or ``beta`` times RND's error) to the clipped extrinsic reward before the
n-step (and Monte Carlo) return: ``r + bonus`` as in the papers. What is scored depends on the env family
(:func:`envs.novelty.novelty_input`): Atari's newest frame at 42x42 and 8 levels (no second emulator call), or the
whole ``[C, n, n]`` grid of MinAtar and the maze (one symbol per cell for a pseudo-count); a family a source cannot
score is refused when the actor is built, naming ``exploration.bonus``.

- Reset frames: the first frame of every game (at ``reset`` and on a NextStep autoreset step) is learned by the
  density model, since the agent sees it, but its bonus is dropped: no transition ends in it, and it must not
  be credited to the game that just ended.
- Density per actor (``exploration.shared_density: false``, the default): each actor process owns one model
  that learns the frames of all its envs in env order (A3C+ had one per thread). Shared (``true``, Ray mode): a
  :class:`DensityServer` Ray actor holds one model for all actors; each vector step is one round trip to it, and
  that one process learns every frame in turn (CTS: about 1 ms each), which caps all actors together. Measured
  here (2 actors x 8 envs, Montezuma, CTS, actors running free on 2 cores): 800-870 agent steps/s shared vs
  1000-1090 per actor. In training the learner sets the pace (about 120 steps/s), so both are fast enough.
- Checkpoints: each actor's density model (``NStepAdder.state_dict``) and the shared server's are saved with
  every checkpoint and restored on resume (actor i from actor i's state), so a resumed run keeps its counts. A
  restarted actor (Ray) starts with a fresh model. A CTS model is 10.9 MB after 100k frames (`reverie bench
  density`): that much travels to the driver per actor at every checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from agents.dqn.config import DQNConfig, ExplorationConfig
from agents.dqn.networks import QNetwork
from agents.exploration import BonusStats, NoveltyScorer
from agents.replay.nstep import NStepBuilder
from agents.runtime.algorithm import ActorParts, EpisodeTracker, env_spec
from agents.runtime.config import actor_seed, env_trackers, make_actor_env
from envs import newest_frames
from envs.novelty import NoveltyInput, env_family, last_counts, make_novelty_source, novelty_input

if TYPE_CHECKING:
    from worldmodels.density import PseudoCount
    from worldmodels.protocols import NoveltySource


def linear_epsilon(frames: int, exploration: ExplorationConfig, learning_starts_frames: int = 0) -> float:
    """Dopamine's schedule: eps_start until learning starts, then linear to eps_end over eps_decay_frames."""
    progress = (frames - learning_starts_frames) / max(1, exploration.eps_decay_frames)
    progress = min(max(progress, 0.0), 1.0)
    return exploration.eps_start + progress * (exploration.eps_end - exploration.eps_start)


def apex_epsilon(actor_id: int, num_actors: int, exploration: ExplorationConfig) -> float:
    """Ape-X (Horgan et al. 2018, Sec. 4.1): eps_i = eps_base ** (1 + alpha * i / (N - 1))."""
    if num_actors <= 1:
        return exploration.eps_base
    return exploration.eps_base ** (1.0 + exploration.apex_alpha * actor_id / (num_actors - 1))


class EpsilonGreedyPolicy:
    """Acts epsilon-greedily on a local copy of the online Q-network.

    :param network: the Q-network (weights replaced by :meth:`set_weights`).
    :param cfg: full training config (for the epsilon schedule).
    :param actor_id: index of this actor.
    :param seed: seeds the exploration RNG.
    :param fixed_epsilon: if set, overrides the schedule (evaluation).
    """

    def __init__(self, network: QNetwork, cfg: DQNConfig, actor_id: int, seed: int,
                 fixed_epsilon: float | None = None) -> None:
        self.network = network.eval().requires_grad_(False)
        self.cfg = cfg
        self.actor_id = actor_id
        self.rng = np.random.default_rng(seed)
        self.fixed_epsilon = fixed_epsilon
        self.num_actions = network.num_actions

    def epsilon(self, frames: int) -> float:
        if self.fixed_epsilon is not None:
            return self.fixed_epsilon
        if self.cfg.exploration.schedule == "apex":
            return apex_epsilon(self.actor_id, max(1, self.cfg.runtime.num_actors), self.cfg.exploration)
        return linear_epsilon(frames, self.cfg.exploration, self.cfg.agent.learning_starts_frames)

    def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:param obs: uint8 ``[N, *obs_shape]``. :param starts: unused (no recurrent state).
        :return: actions int64 ``[N]``, ``{"q": float32 [N, A]}``."""
        with torch.inference_mode():
            q = self.network(torch.from_numpy(obs)).numpy()
        # The one epsilon-greedy rule (training, informed exploration, evaluation, ``reverie collect``): a coin
        # flip per env, then the exploring action, drawn in that order from this policy's RNG every step.
        explore = self.rng.random(len(q)) < self.epsilon(frames)
        actions = np.where(explore, self.exploring_actions(obs, explore), q.argmax(axis=1))
        return actions.astype(np.int64), {"q": q}

    def exploring_actions(self, obs: np.ndarray, explore: np.ndarray) -> np.ndarray:
        """Actions ``[N]`` for exploring steps (used where ``explore``, bool ``[N]``, is True): uniformly random
        here; informed exploration overrides this."""
        return self.rng.integers(0, self.num_actions, len(explore))

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.network.load_state_dict(weights)

    def log_scalars(self, frames: int) -> dict[str, float]:
        return {"epsilon": self.epsilon(frames)}


def make_pseudo_count(bonus: str, beta: float) -> PseudoCount:
    """The papers' bonus machinery: ``"cts"`` (Bellemare et al. 2016, raw prediction gain) or ``"pixelcnn"``
    (Ostrovski et al. 2017, prediction gain decayed by ``0.1 n^-1/2``), on 42x42 frames of 8 levels."""
    from envs.wrappers import make_density_model

    if bonus not in ("cts", "pixelcnn"):
        raise ValueError(f"exploration.bonus={bonus!r} has no density model; choose 'cts' or 'pixelcnn'")
    # Imported here: actors without a bonus (and `reverie collect` workers) need neither numba nor the models.
    from worldmodels.density import PseudoCount, ostrovski_gain_decay

    decay = ostrovski_gain_decay(0.1) if bonus == "pixelcnn" else None
    return PseudoCount(make_density_model(bonus), beta=beta, prediction_gain_decay=decay)


class DensityServer:
    """One novelty source shared by all actors (``exploration.shared_density: true``); run as a Ray actor.

    The source is built on the first :meth:`score`, from the actors' :class:`~envs.novelty.NoveltyInput` (the
    server does not know the env); a state loaded before that is applied when it is built.

    :param bonus: "cts", "pixelcnn" or "rnd". :param beta: bonus scale.
    """

    def __init__(self, bonus: str, beta: float) -> None:
        self.bonus, self.beta = bonus, beta
        self.source: NoveltySource | None = None
        self._pending: dict[str, Any] | None = None
        self._frames = 0

    def score(self, inputs: np.ndarray, spec: NoveltyInput | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Learn ``inputs`` (the source's input, [B, ...]) in order; return (bonus, pseudo-count) float64 [B]."""
        if self.source is None:
            self.source = (make_novelty_source(self.bonus, spec, self.beta) if spec is not None
                           else make_pseudo_count(self.bonus, self.beta))
            if self._pending is not None:
                self.source.load_state_dict(self._pending)
                self._pending = None
        bonus = self.source.step(inputs)
        self._frames += len(inputs)
        return bonus, last_counts(self.source, len(inputs))

    def num_frames(self) -> int:
        """Observations the source has learned, a restored state's included (its ``num_updates``)."""
        state = self._pending if self.source is None else self.source
        if state is None:
            return 0
        counted = state.get("num_updates") if isinstance(state, dict) else getattr(state, "num_updates", None)
        return int(np.asarray(counted)) if counted is not None else self._frames

    def state_dict(self) -> dict[str, Any]:
        if self.source is None:
            return self._pending or {}
        return self.source.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.source is None:
            self._pending = state
        else:
            self.source.load_state_dict(state)


class NStepAdder:
    """Clips rewards (if configured), adds the exploration bonus (if any) and feeds
    :class:`agents.replay.nstep.NStepBuilder` with the newest frame of each observation, so replay receives
    each frame once.

    :param builder: the n-step (and Monte Carlo) transition builder.
    :param clip_rewards: clip extrinsic rewards to [-1, 1] (before the bonus is added).
    :param pseudo_count: a local :class:`~worldmodels.protocols.NoveltySource` (a pseudo-count or RND), or None.
    :param density_server: a Ray actor handle of a :class:`DensityServer` (shared model), or None.
    :param novelty: what the source scores of a batch of observations (:func:`envs.novelty.novelty_input`); None:
        Atari's newest frame at 42x42, 8 levels (``preprocess_frames(obs[:, -1])``).
    """

    def __init__(self, builder: NStepBuilder, clip_rewards: bool, pseudo_count: NoveltySource | None = None,
                 density_server: Any = None, novelty: NoveltyInput | None = None) -> None:
        if pseudo_count is not None and density_server is not None:
            raise ValueError("give the adder a local pseudo_count or a shared density_server, not both")
        self.builder = builder
        self.clip_rewards = clip_rewards
        self.pseudo_count = pseudo_count
        has_bonus = pseudo_count is not None or density_server is not None
        self.scorer = NoveltyScorer(pseudo_count, novelty, density_server) if has_bonus else None
        self.stats: BonusStats | None = BonusStats(builder.num_envs) if has_bonus else None
        self._resetting = np.zeros(builder.num_envs, bool)

    @property
    def novelty(self) -> NoveltyInput | None:
        """What the source scores of the observations (None: no bonus, or Atari's pre-family default)."""
        return self.scorer.novelty if self.scorer is not None else None

    def _newest(self, obs: np.ndarray) -> np.ndarray:
        """The newest frame of each observation: ``[N, 84, 84]`` of Atari's ``[N, 4, 84, 84]``; all of MinAtar's
        ``[N, C, 10, 10]`` (one frame per observation)."""
        return newest_frames(obs, self.builder.stack, self.builder.frame_shape)

    def _score(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bonus and pseudo-count float64 [N] of the newest observations ``obs`` [N, ...] (learned in order)."""
        assert self.scorer is not None, "the adder scores frames only with a bonus"
        return self.scorer.score(obs)

    def reset(self, obs: np.ndarray) -> None:
        self.builder.reset(self._newest(obs))
        self._resetting[:] = False
        if self.stats is not None:
            self._score(obs)  # the first frames are seen, hence learned; no reward carries their bonus
            self.stats.frames_learned += len(obs)

    def add(self, actions: np.ndarray, extras: dict[str, np.ndarray], rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, next_obs: np.ndarray, info: dict[str, Any]) -> None:
        rewards = np.asarray(rewards, dtype=np.float32)
        if self.clip_rewards:
            rewards = np.clip(rewards, -1.0, 1.0)
        if self.stats is not None:
            bonus, counts = self._score(next_obs)
            live = ~self._resetting  # an autoreset step's frame starts a new game: learned, bonus dropped
            rewards = rewards + np.where(live, bonus, 0.0).astype(np.float32)
            self.stats.record(bonus, counts, live)
        game_over = info.get("game_over")
        self.builder.step(actions, extras.get("q"), rewards, terminated, truncated, self._newest(next_obs),
                          game_over=game_over)
        ended = np.asarray(terminated | truncated if game_over is None else game_over, bool)
        self._resetting = ended & ~self._resetting

    def flush(self) -> Any:
        return self.builder.flush()

    def state_dict(self) -> dict[str, Any]:
        """This actor's density model (empty without a local one); the n-step builder's open transitions are not
        saved (a resumed run starts new games)."""
        return {"pseudo_count": self.pseudo_count.state_dict()} if self.pseudo_count is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.pseudo_count is not None and "pseudo_count" in state:
            self.pseudo_count.load_state_dict(state["pseudo_count"])


def make_dqn_parts(cfg: DQNConfig, actor_id: int, density_server: Any = None) -> ActorParts:
    """Build one actor's vector env, policy, adder and episode trackers (runs inside the actor's process).

    :param density_server: name (or handle) of the Ray actor holding the shared :class:`DensityServer`
        (``exploration.shared_density``), bound with ``functools.partial`` by the driver; None builds a density
        model in this actor if a bonus is set. A name keeps the actor's constructor arguments small (Ray cannot
        guarantee restarts of actors whose arguments live in the object store, as a handle's do).

    The policy is epsilon-greedy, or with ``exploration.strategy == "informed"`` an
    :class:`~agents.dqn.informed.InformedExplorationPolicy` whose world model is loaded here from
    ``exploration.world_model``.

    Trackers: the bonus statistics if a bonus is set, then the env family's (:func:`agents.runtime.config.env_trackers`:
    rooms visited on Montezuma's Revenge with the ``gymnasium`` backend).
    """
    seed = actor_seed(cfg.run, actor_id)
    env = make_actor_env(cfg.env, seed)
    spec = env_spec(env)
    with torch.random.fork_rng(devices=[]):  # seeded init that leaves the process's generator alone (local mode)
        torch.manual_seed(seed)
        network = QNetwork(spec.num_actions, obs_shape=spec.obs_shape, hidden=cfg.network.hidden,
                           dueling=cfg.network.dueling)
    policy: EpsilonGreedyPolicy
    if cfg.exploration.strategy == "informed":
        # Loaded here, in the actor's own process: Ray actors get the config (the path), never the model.
        from agents.dqn.informed import InformedExplorationPolicy, load_informed_world_model

        policy = InformedExplorationPolicy(network, load_informed_world_model(cfg), cfg, actor_id, seed)
    else:
        policy = EpsilonGreedyPolicy(network, cfg, actor_id, seed)
    # seed=None: the builder's incarnation id must differ after an actor restart or a resume (the replay
    # tells a restarted actor from a duplicated chunk by it); it never influences training.
    builder = NStepBuilder(cfg.env.num_envs, n=cfg.agent.n_step, gamma=cfg.agent.gamma, actor_id=actor_id,
                           seed=None, mc_returns=cfg.agent.mc_mix > 0, stack=spec.stack,
                           frame_shape=spec.frame_shape)
    ex = cfg.exploration
    if isinstance(density_server, str):
        import ray

        density_server = ray.get_actor(density_server)
    source: NoveltySource | None = None
    novelty = None
    if ex.bonus != "none":
        # Refuses a family the source cannot score (MinAtar Seaquest's 10 channels for a pseudo-count), naming the key.
        novelty = novelty_input(env_family(cfg.env.game), str(ex.bonus), spec.obs_shape, key="exploration.bonus")
        if density_server is None:
            source = make_novelty_source(str(ex.bonus), novelty, ex.beta, seed=seed)
    adder = NStepAdder(builder, cfg.agent.clip_rewards, pseudo_count=source,
                       density_server=density_server if ex.bonus != "none" else None, novelty=novelty)
    trackers: list[EpisodeTracker] = [] if adder.stats is None else [adder.stats]
    return ActorParts(env, policy, adder, trackers + env_trackers(cfg.env))
