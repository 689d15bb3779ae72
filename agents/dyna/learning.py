"""The Dyna learner: DQN's replay learner, a world model learned online from the same replay, and MBPO's
branched rollouts (or SimPLe's imagined games) as extra training data (Sutton 1991; Janner et al. 2019).

The world model is behind :class:`agents.dyna.models.DynaWorldModel` (fit on real transitions, one-step score,
branch): the grid model on MinAtar, the video predictor on Atari, whose input is the replay's 4-frame stack (the
Q-network's observation); an imagined Atari transition keeps that stack and the new frame, and the Q-network's next
observation is the stack shifted by one (:func:`agents.dyna.models.next_observation`). Below, "the model" is either.

Each learner update (due at DQN's rate: one per ``agent.update_period`` real agent steps, after
``agent.learning_starts_frames``):

1. the world model takes ``dyna.model_updates_per_learner_update`` Adam steps (at every
   ``dyna.model_update_every``-th learner update), each on ``dyna.model_batch_size`` real transitions sampled from
   the replay (``agent.n_step = 1``: a replay transition is ``(s, a, r, s')`` with
   ``discount == 0`` at a game over, which is the model's ``terminal``; ``r`` is the reward DQN learns, clipped if
   ``agent.clip_rewards``, so imagined rewards come in the same units); with ``world_model.context > 1`` from a
   second replay of the same chunks whose observations are histories (:class:`agents.dyna.history.HistoryReplay`);
2. once the model has trained on ``dyna.model_warmup_transitions`` transitions, it imagines under the current
   Q-network's epsilon-greedy policy (DQN's own :class:`~agents.dqn.actor.EpsilonGreedyPolicy` on a copy of the
   online network), and the imagined transitions go into the imagined FIFO buffer:

   - ``dyna.scheme: mbpo``: ``dyna.rollouts_per_update`` real observations sampled from the replay, each rolled
     ``dyna.rollout_k`` steps through the model (:func:`worldmodels.grid.branched_rollouts`; steps after an
     imagined game over dropped);
   - ``dyna.scheme: simple``: an :class:`envs.ImaginedEnv` of ``dyna.rollouts_per_update`` imagined games on the
     model, started from real observations sampled from the replay, advanced ``dyna.rollout_k`` steps (its NextStep
     autoreset steps, which start a new game, are not transitions and are dropped; a game cut at
     ``dyna.imagined_episode_steps`` is truncated, so its last transition bootstraps);
3. ``dyna.q_updates_per_learner_update`` DQN steps, each on ``agent.batch_size`` real transitions sampled by DQN's
   own sampler (prioritised or not, with its importance weights) and ``round(dyna.imagined_ratio *
   agent.batch_size)`` imagined ones drawn uniformly, concatenated into one batch for DQN's update
   (:meth:`agents.dqn.learning.DQNLearner.step`: the Double DQN / Huber loss, the optimiser, the target copies).

How DQN is reused (composition, DQN unchanged): the learner holds a :class:`~agents.dqn.learning.DQNReplayLearner`
and delegates ingestion, the rate limiter, weights and checkpointing of the replay and networks to it. Its
``update`` only samples its own replay, so while no imagined transition exists the Dyna update *is* that update;
afterwards the Dyna update draws the real part with DQN's ``take_batch``, appends the imagined part, calls DQN's
core step, and hands the batch back with DQN's ``finish_batch``, which writes the real part's priorities
(imagined transitions have importance weight 1 and no priority; with ``agent.mc_mix > 0`` their Monte Carlo return
is unknown, NaN, so their target is the plain one-step target).

An imagined transition is one-step: return = the model's reward, discount = ``gamma`` (0 at an imagined game over),
next observation = the imagined frame.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from agents.dqn.actor import EpsilonGreedyPolicy
from agents.dqn.learning import DQNReplayLearner
from agents.dyna.config import DynaConfig, world_model_family
from agents.dyna.history import HistoryReplay
from agents.dyna.imagined import TransitionRing
from agents.dyna.models import DynaWorldModel, make_world_model, next_observation
from agents.dyna.pictures import ImaginationGifs
from agents.runtime.algorithm import Scalars
from envs import ImaginedEnv


class DynaLearner:
    """DQN's replay learner trained on real and imagined transitions (see the module docstring); a
    :class:`agents.runtime.algorithm.Learner`.

    :param num_actions: size of the action space. :param obs_shape: one observation (MinAtar: ``(C, 10, 10)``).
    :param frame_shape: one stored frame (MinAtar: the observation). :param stack: frames per observation (1).
    :param frame_skip: emulator frames per agent step (1 on MinAtar).
    :param cfg: the run's :class:`agents.dyna.config.DynaConfig`. :param device: where the networks live.
    """

    def __init__(self, num_actions: int, obs_shape: tuple[int, ...], frame_shape: tuple[int, ...], stack: int,
                 frame_skip: int, cfg: DynaConfig, device: torch.device | None = None) -> None:
        _check_observations(cfg, tuple(obs_shape), tuple(frame_shape), stack)
        self.cfg = cfg
        self.stack, self.frame_skip = int(stack), int(frame_skip)
        self.dqn = DQNReplayLearner(num_actions, obs_shape, frame_shape, stack, frame_skip, cfg, device)
        self.device = self.dqn.device
        d = cfg.dyna
        # Several DQN steps per learner update: the target is still copied every agent.target_update_frames frames.
        self.dqn.core.target_update_period *= d.q_updates_per_learner_update
        # The world model of the env's family behind one protocol (agents/dyna/models.py): grid or video.
        self.world: DynaWorldModel = make_world_model(cfg, tuple(frame_shape), num_actions, self.device)
        self.model, self.trainer = self.world.model, self.world.trainer
        context = self.world.context
        # The world model's real data: DQN's replay (whose Atari observations are already the video model's context),
        # or with a grid model's histories a replay of its own fed the same chunks.
        self.history = (HistoryReplay(cfg.replay.capacity, max(1, cfg.runtime.num_actors), context, frame_shape,
                                      seed=cfg.run.seed + 5) if context > 1 and stack == 1 else None)
        # Imagined transitions as the Q-network reads them (Atari: the stack and the new frame, 5 frames each).
        self.imagined = TransitionRing(d.imagined_capacity, frame_shape, seed=cfg.run.seed + 1, obs_frames=stack)
        self.holdout = TransitionRing(d.holdout_size, frame_shape, seed=cfg.run.seed + 2, obs_frames=context)
        # DQN's epsilon-greedy rule on a CPU copy of the online network (the policy freezes the network it is given).
        self.policy = EpsilonGreedyPolicy(copy.deepcopy(self.dqn.core.online).cpu(), cfg, actor_id=0,
                                          seed=cfg.run.seed + 3, fixed_epsilon=d.rollout_epsilon)
        self._env: ImaginedEnv | None = None  # "simple": the imagined games (built at the first imagining)
        self._env_obs = np.zeros(0, np.uint8)
        self._env_restarting = np.zeros(d.rollouts_per_update, bool)
        self._env_rng = np.random.default_rng(cfg.run.seed + 4)  # seeds each ImaginedEnv built (after a resume too)
        self.num_imagined = 0
        """Valid imagined transitions made so far (the buffer keeps the newest ``dyna.imagined_capacity``)."""
        self.model_transitions = 0
        """Real transitions the world model has trained on (updates x batch, with repeats)."""
        self._rate_from = (time.perf_counter(), 0)
        self.gifs = ImaginationGifs(cfg) if d.gif_every_frames > 0 else None  # imagination/step_<frames>.gif

    # --- the runtime's side, delegated to DQN -------------------------------------------------------------------
    def ingest(self, output: Any) -> None:
        self.dqn.ingest(output)
        chunk = output.payload if self.history is None else self.history.add(output.payload)
        self.holdout.add(_chunk_transitions(chunk, self.world.context))

    def updates_due(self, counters: Any) -> int:
        return self.dqn.updates_due(counters)

    def collect_allowance(self, counters: Any) -> int:
        return self.dqn.collect_allowance(counters)

    def get_weights(self) -> dict[str, torch.Tensor]:
        return self.dqn.get_weights()

    @property
    def warmed_up(self) -> bool:
        """The world model has trained on ``dyna.model_warmup_transitions`` real transitions: imagination starts."""
        return self.model_transitions >= self.cfg.dyna.model_warmup_transitions

    # --- one update ------------------------------------------------------------------------------------------
    def update(self, counters: Any) -> Scalars:
        d = self.cfg.dyna
        self.dqn.sampler.replay_idle()  # a batch sampled ahead (replay.prefetch) is done reading the replay
        scalars: dict[str, Any] = {}
        rounds = d.model_updates_per_learner_update if counters.updates % d.model_update_every == 0 else 0
        for _ in range(rounds):
            scalars.update(self.world.fit(self._real(d.model_batch_size)))
            self.model_transitions += d.model_batch_size
        if self.warmed_up:
            self.model.eval()
            try:
                if self.cfg.dyna.scheme == "simple":
                    self._play_imagined_games(counters)
                else:
                    self._imagine(counters)
            finally:
                self.model.train()
        if self.gifs is not None:
            self.gifs.maybe_write(counters, self.model, self.dqn.core.online)
        if len(self.imagined) == 0 or d.imagined_ratio == 0:
            for _ in range(d.q_updates_per_learner_update):
                scalars.update(self.dqn.update(counters))  # DQN's own update, untouched
            return scalars
        for _ in range(d.q_updates_per_learner_update):
            scalars.update(self._mixed_step(counters))
        return scalars

    def _imagine(self, counters: Any) -> None:
        """Branch ``dyna.rollouts_per_update`` rollouts of ``dyna.rollout_k`` steps from replayed real states."""
        d = self.cfg.dyna
        starts = self._real(d.rollouts_per_update)["obs"]
        self.policy.set_weights(self.dqn.core.get_weights())
        frames = counters.frames

        def act(obs: np.ndarray) -> np.ndarray:
            return self.policy.act(obs, frames)[0]

        batch = self.world.branch(starts, act, d.rollout_k)
        self.imagined.add(batch.transitions())
        self.num_imagined += batch.num_valid

    def _real(self, n: int) -> dict[str, np.ndarray]:
        """``n`` real one-step transitions sampled from the replay, as the world model reads them: ``obs`` uint8
        ``[n, C, H, W]`` (histories ``[n, context, C, H, W]`` with ``world_model.context > 1``; Atari: the stacks
        ``[n, 4, 84, 84]``), ``actions``, ``rewards``, ``next_obs`` the next observation's newest frame (MinAtar
        ``[n, C, H, W]``, Atari ``[n, 84, 84]``), ``terminals`` (discount 0)."""
        if self.history is not None:
            return self.history.sample(n)
        real = self.dqn.replay.sample(n, mc_returns=False)
        next_obs = real.next_obs if self.stack == 1 else real.next_obs[:, -1]
        return {"obs": real.obs, "actions": real.actions, "rewards": real.returns, "next_obs": next_obs,
                "terminals": real.discounts == 0}

    def _real_starts(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` real observations sampled from the replay, as ImaginedEnv's start windows ``[n, context, C, H, W]``
        (Atari: the stacks ``[n, 4, 84, 84]``; the replay's own generator draws them; ``rng`` is ImaginedEnv's,
        unused)."""
        obs = self._real(n)["obs"]
        return obs if self.history is not None or self.stack > 1 else obs[:, None]

    def _play_imagined_games(self, counters: Any) -> None:
        """Advance the imagined games ``dyna.rollout_k`` steps (SimPLe's scheme, see the module docstring)."""
        d = self.cfg.dyna
        if self._env is None:
            self._env = ImaginedEnv(self.model, self._real_starts, num_envs=d.rollouts_per_update,
                                    stack=self.stack, max_episode_steps=d.imagined_episode_steps,
                                    frame_skip=self.frame_skip, seed=int(self._env_rng.integers(2**31)))
            self._env_obs, _ = self._env.reset()
            self._env_restarting[:] = False
        self.policy.set_weights(self.dqn.core.get_weights())
        for _ in range(d.rollout_k):
            obs = self._env_obs
            actions = self.policy.act(obs, counters.frames)[0]
            next_obs, rewards, terminated, truncated, _ = self._env.step(actions)
            live = ~self._env_restarting  # a NextStep autoreset step starts a new game: not a transition
            newest = next_obs if self.stack == 1 else next_obs[:, -1]  # the ring keeps the next stack's new frame
            self.imagined.add({"obs": obs[live], "actions": actions[live], "rewards": rewards[live],
                               "next_obs": newest[live], "terminals": terminated[live]})
            self.num_imagined += int(live.sum())
            self._env_restarting = terminated | truncated
            self._env_obs = next_obs

    def _mixed_step(self, counters: Any) -> Scalars:
        """One DQN step on ``agent.batch_size`` real transitions (DQN's sampler) and the imagined share."""
        agent = self.cfg.agent
        real = self.dqn.take_batch(counters)
        im = self.imagined.sample(round(self.cfg.dyna.imagined_ratio * agent.batch_size))
        dev = self.device

        def cat(real_part: torch.Tensor, imagined_part: np.ndarray) -> torch.Tensor:
            return torch.cat([real_part, torch.as_tensor(imagined_part).to(dev, real_part.dtype)])

        n_im = len(im["actions"])
        discounts = agent.gamma * (~im["terminals"]).astype(np.float32)
        mc = None
        if real.mc_returns is not None:
            mc = cat(real.mc_returns, np.full(n_im, np.nan, np.float32))
        stats = self.dqn.core.step(cat(real.obs, im["obs"]), cat(real.actions, im["actions"]),
                                   cat(real.returns, im["rewards"]), cat(real.discounts, discounts),
                                   cat(real.next_obs, next_observation(im["obs"], im["next_obs"], self.stack)),
                                   cat(real.weights, np.ones(n_im, np.float32)),
                                   mc)
        self.dqn.finish_batch(real, stats.td_abs)  # priorities for the real rows only
        return {"losses/td_loss": stats.loss, "losses/q_values": stats.q_mean}

    # --- logging -------------------------------------------------------------------------------------------------
    def scalars(self) -> dict[str, float]:
        """Replay and imagined-buffer sizes, imagined transitions (total and per second since the last call), and
        the world model's one-step scores on the recent real transitions beside copy-last."""
        now = time.perf_counter()
        since, made = self._rate_from
        self._rate_from = (now, self.num_imagined)
        out = {**self.dqn.scalars(), "worldmodel/imagined_transitions": float(self.num_imagined),
               "worldmodel/imagined_per_s": (self.num_imagined - made) / max(now - since, 1e-9),
               "worldmodel/imagined_buffer_size": float(len(self.imagined)),
               "worldmodel/trained_transitions": float(self.model_transitions)}
        if len(self.holdout):
            out.update(self.world.score(self.holdout.contents()))
        return {k: float(v) for k, v in out.items()}

    # --- checkpoints -----------------------------------------------------------------------------------------
    @staticmethod
    def checkpoint_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The actor weights (the online Q-network) in a checkpoint of this learner."""
        return DQNReplayLearner.checkpoint_weights(ckpt)

    def state_dict(self) -> dict[str, Any]:
        """DQN's entries (``learner``: networks and optimiser; ``replay`` with ``replay.save_in_checkpoint``), the world
        model with its optimiser (``world_model``) and Dyna's own (``dyna``: counts, the imagination policy's
        generator, the held-out window, and with ``replay.save_in_checkpoint`` the imagined buffer)."""
        own: dict[str, Any] = {"num_imagined": self.num_imagined, "model_transitions": self.model_transitions,
                               "policy_rng": self.policy.rng.bit_generator.state,
                               "env_rng": self._env_rng.bit_generator.state,
                               "holdout": self.holdout.state_dict()}
        if self.cfg.replay.save_in_checkpoint:
            own["imagined"] = self.imagined.state_dict()
            if self.history is not None:
                own["history"] = self.history.state_dict()
        return {**self.dqn.state_dict(), "world_model": self.world.state_dict(), "dyna": own}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from a checkpoint: without a saved imagined buffer (``replay.save_in_checkpoint: false``) it starts
        empty and refills from the restored model at the next updates. With ``dyna.scheme: simple`` the imagined
        games in progress are not saved: new ones start from real states at the next update.

        :raises ValueError: the state's world model was made for another observation shape or action count
            (checked before anything is restored: DQN's networks would fail with torch's size mismatch)."""
        self.world.check_compatible(state["world_model"])
        self.dqn.load_state_dict(state)
        self.world.load_state_dict(state["world_model"])
        own = state["dyna"]
        self.num_imagined = int(own["num_imagined"])
        self.model_transitions = int(own["model_transitions"])
        self.policy.rng.bit_generator.state = own["policy_rng"]
        self._env_rng.bit_generator.state = own["env_rng"]
        self._env = None
        self.holdout.load_state_dict(own["holdout"])
        if "imagined" in own:
            self.imagined.load_state_dict(own["imagined"])
        if self.history is not None and "history" in own:
            self.history.load_state_dict(own["history"])
        self._rate_from = (time.perf_counter(), self.num_imagined)


def _chunk_transitions(chunk: Any, context: int = 1) -> dict[str, np.ndarray]:
    """The transitions of a replay chunk (:class:`agents.replay.nstep.Chunk` of one-step transitions) whose frames
    all travel in it: recent real transitions, most of them not yet trained on. ``obs`` is the newest frame
    ``[N, C, H, W]``, or with ``context > 1`` the history ``[N, context, C, H, W]`` (the chunk's ``obs_ids`` then
    hold ``context`` ids, as :meth:`agents.dyna.history.HistoryReplay.add` writes them; -1 is the zero frame)."""
    first, frames = int(chunk.first_frame_id), chunk.frames
    obs_ids, next_ids = chunk.obs_ids[:, -context:] - first, chunk.next_ids[:, -1] - first
    padding = chunk.obs_ids[:, -context:] == -1
    inside = (obs_ids >= 0) & (obs_ids < len(frames))
    keep = (inside | padding).all(axis=1) & inside[:, -1] & (next_ids >= 0) & (next_ids < len(frames))
    padded = np.concatenate([frames, np.zeros((1, *frames.shape[1:]), frames.dtype)])  # row -1: the zero frame
    obs = padded[np.where(padding, -1, obs_ids)[keep]]
    return {"obs": obs[:, -1] if context == 1 else obs, "actions": chunk.actions[keep],
            "rewards": chunk.returns[keep], "next_obs": frames[next_ids[keep]], "terminals": chunk.discounts[keep] == 0}


def _check_observations(cfg: DynaConfig, obs_shape: tuple[int, ...], frame_shape: tuple[int, ...], stack: int) -> None:
    """The env's observations are what its family's world model reads: one channels-first frame (MinAtar's grids),
    or a stack of ``video_model.context`` grey frames (Atari).

    :raises ValueError: naming the observations and the fix."""
    if world_model_family(cfg.env.game) == "video":
        context = cfg.video_model.context
        if len(frame_shape) == 2 and stack == context and obs_shape == (stack, *frame_shape):
            return
        raise ValueError(f"the dyna agent's video world model reads the last {context} grey frames (Atari's "
                         f"[{context}, 84, 84] stacks); this env gives observations {obs_shape} of {stack} frame(s) "
                         f"{frame_shape}. Set video_model.context to the env's stack and env.colour=false.")
    if stack != 1 or len(frame_shape) != 3 or obs_shape != frame_shape:
        raise ValueError(f"the dyna agent's world model reads one channels-first frame per observation "
                         f"(MinAtar's [C, 10, 10]); this env gives observations {obs_shape} of {stack} "
                         f"frame(s) {frame_shape}. Set env.game=minatar/<game>.")
