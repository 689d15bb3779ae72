"""The actor-critic acting side: a policy that samples from its logits (carrying an LSTM state when it has one)
and the trajectory adder that cuts vector-env steps into fixed-length unrolls.

An unroll (:class:`Unroll`) holds, for each of B envs, T steps and what a learner needs to re-run them: the T + 1
observations (the last one is the bootstrap observation), the episode-start mask, the actions, the behaviour
policy's logits (V-trace's and PPO's denominator), the clipped rewards, discounts and episode ends, a mask of the
NextStep autoreset steps (which the learner leaves out, exactly as the n-step adder skips them), and, for an LSTM,
the recurrent state entering step 0. Frames stay uint8 until the network.

Consecutive unrolls of one env overlap by one observation: unroll k's bootstrap observation is unroll k + 1's
first, so every step is learned from once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from agents.actor_critic.config import ActorCriticConfig
from agents.actor_critic.core import PolicyCore, State
from agents.exploration import BonusStats, NoveltyScorer, make_scorer, random_play_inputs
from agents.runtime.algorithm import ActorParts, EpisodeTracker, env_spec
from agents.runtime.config import actor_seed, env_trackers, make_actor_env


@dataclass
class Unroll:
    """T steps of B envs, time-major. Built by :class:`TrajectoryAdder`; several concatenate along B."""

    obs: np.ndarray
    """uint8 ``[T + 1, B, *obs_shape]``: the observation each step acted in, then the bootstrap observation."""
    starts: np.ndarray
    """bool ``[T + 1, B]``: the observation is the first of a game (an LSTM state is zeroed there)."""
    actions: np.ndarray
    """int64 ``[T, B]``."""
    logits: np.ndarray
    """float32 ``[T, B, A]``: the behaviour policy's logits."""
    rewards: np.ndarray
    """float32 ``[T, B]``: clipped if ``agent.clip_rewards``; 0 on autoreset steps."""
    discounts: np.ndarray
    """float32 ``[T, B]``: gamma, or 0 where the step terminated the episode (and on autoreset steps)."""
    carry: np.ndarray
    """float32 ``[T, B]``: 1 where the return continues into the next step, 0 where an episode ended (terminated
    or truncated) and on autoreset steps (see :mod:`agents.actor_critic.returns`)."""
    valid: np.ndarray
    """bool ``[T, B]``: False on NextStep autoreset steps (the env only reset; the learner masks them out)."""
    state: dict[str, np.ndarray] = field(default_factory=dict)
    """The recurrent state entering step 0, each ``[B, ...]`` (empty for a feed-forward core)."""
    values: np.ndarray | None = None
    """float32 ``[T, B]``: the behaviour policy's values V(x_t) (PPO's GAE and value clipping use them: on-policy
    they are the learner's, so it need not run the batch through the network once more); None if not recorded."""
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    """The core's per-step :meth:`~agents.actor_critic.core.PolicyCore.step_inputs`, each ``[T + 1, B, ...]``
    (entry T: the bootstrap step's, drawn when step T - 1 was acted); empty for the feed-forward and LSTM cores."""
    int_rewards: np.ndarray | None = None
    """float32 ``[T, B]``: the exploration bonus of step t's next observation, raw (the learner normalises it), with
    ``exploration.streams: two``; non-episodic, an autoreset step carries the bonus of the new game's first frame.
    None without an intrinsic stream. ``values`` are then ``[T, B, 2]`` (extrinsic, intrinsic)."""

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])

    @property
    def batch(self) -> int:
        return int(self.actions.shape[1])

    @staticmethod
    def concat(unrolls: list[Unroll]) -> Unroll:
        """Unrolls of equal length side by side: B is the sum of theirs."""
        if len(unrolls) == 1:
            return unrolls[0]
        cat = {name: np.concatenate([getattr(u, name) for u in unrolls], axis=1)
               for name in ("obs", "starts", "actions", "logits", "rewards", "discounts", "carry", "valid")}
        state = {k: np.concatenate([u.state[k] for u in unrolls], axis=0) for k in unrolls[0].state}
        values = None
        if all(u.values is not None for u in unrolls):
            values = np.concatenate([u.values for u in unrolls if u.values is not None], axis=1)
        inputs = {k: np.concatenate([u.inputs[k] for u in unrolls], axis=1) for k in unrolls[0].inputs}
        int_rewards = None
        if all(u.int_rewards is not None for u in unrolls):
            int_rewards = np.concatenate([u.int_rewards for u in unrolls if u.int_rewards is not None], axis=1)
        return Unroll(**cat, state=state, values=values, inputs=inputs, int_rewards=int_rewards)


class ACPolicy:
    """Samples actions from the network's softmax policy (or takes the most probable one) for N envs at once.

    :param network: the actor's copy of the network (weights replaced by :meth:`set_weights`).
    :param seed: seeds the sampling (Gumbel-max on a numpy generator: deterministic for a fixed seed).
    :param greedy: take the argmax of the logits (evaluation with ``agent.eval_greedy``).
    :param clip_rewards: clip the rewards :meth:`observe_rewards` gets to [-1, 1] (``agent.clip_rewards``), so that the
        LSTM's previous-reward input is the same in training (the adder's clipped rewards) and in evaluation (raw).

    ``extras`` of :meth:`act`: ``logits`` float32 ``[N, A]``, ``values`` float32 ``[N]`` and, for an LSTM,
    ``state_<name>`` (the state entering the step, before the reset at game starts) for the adder to store at each
    unroll's start; for each of the core's :meth:`~agents.actor_critic.core.PolicyCore.step_inputs`,
    ``input_<name>`` (this step's, from the state entering it) and ``next_input_<name>`` (the next step's, from the
    state leaving it).
    """

    def __init__(self, network: PolicyCore, seed: int, greedy: bool = False,
                 clip_rewards: bool = False) -> None:
        self.network = network.eval().requires_grad_(False)
        self.clip_rewards = clip_rewards
        self.rng = np.random.default_rng(seed)
        self.greedy = greedy
        self.state: State | None = None
        # A feed-forward core acts on each env alone (ActsPerEnv): an actor on a split env may act on one group
        # of envs while the others emulate. A recurrent core keeps per-env state across steps: it may not.
        self.acts_per_env = not network.recurrent

    def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = obs.shape[0]
        if self.state is None:
            self.state = self.network.initial_state(n)
        starts_t = torch.from_numpy(np.zeros(n, bool) if starts is None else np.asarray(starts, bool))
        extras = {f"state_{k}": v.numpy().copy() for k, v in self.state.items()}
        extras.update({f"input_{k}": v.numpy().copy() for k, v in self.network.step_inputs(self.state).items()})
        with torch.inference_mode():
            logits_t, values_t, new_state = self.network.step(torch.from_numpy(obs), self.state, starts_t)
        logits = logits_t.numpy()
        if self.greedy:
            actions = logits.argmax(axis=1)
        else:  # Gumbel-max: argmax(logits + Gumbel noise) is a sample of softmax(logits)
            actions = (logits - np.log(-np.log(self.rng.random(logits.shape)))).argmax(axis=1)
        actions = actions.astype(np.int64)
        if "prev_action" in new_state:
            new_state["prev_action"] = torch.from_numpy(actions)
        extras.update({f"next_input_{k}": v.numpy().copy() for k, v in self.network.step_inputs(new_state).items()})
        self.state = new_state
        extras["logits"] = logits.astype(np.float32)
        extras["values"] = values_t.numpy().astype(np.float32)
        return actions, extras

    def observe_rewards(self, rewards: np.ndarray) -> None:
        """The rewards ``[N]`` of the step just taken: the next step's previous-reward input (clipped if
        ``clip_rewards``). The trajectory adder calls it in training, :func:`agents.runtime.evaluate.play_games` in
        evaluation."""
        if self.state is not None and "prev_reward" in self.state:
            rewards = np.asarray(rewards, np.float32)
            if self.clip_rewards:
                rewards = np.clip(rewards, -1.0, 1.0)
            self.state["prev_reward"] = torch.from_numpy(rewards)

    def set_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.network.load_state_dict(weights)


class TrajectoryAdder:
    """Cuts vector-env steps into unrolls of ``unroll_length`` steps per env; :meth:`flush` returns the finished
    ones as one :class:`Unroll` (None if none finished).

    :param num_envs: N. :param unroll_length: T. :param obs_shape: one observation. :param num_actions: A.
    :param gamma: discount per step.
    :param clip_rewards: clip rewards to [-1, 1] before storing them.
    :param on_rewards: called with each step's stored rewards ``[N]`` (the LSTM's previous-reward input).
    :param scorer: the exploration bonus's novelty source (``exploration.bonus``), or None.
    :param streams: with a scorer, "one" adds the bonus to the clipped reward (A3C+; dropped on autoreset steps),
        scoring every step; "two" stores it apart as :attr:`Unroll.int_rewards` (RND's intrinsic stream), scoring
        each finished unroll in one batch.
    :param intrinsic_episodic: ``streams`` "two": drop the bonus on autoreset steps too (an episodic intrinsic stream).
    """

    def __init__(self, num_envs: int, unroll_length: int, obs_shape: tuple[int, ...], num_actions: int,
                 gamma: float, clip_rewards: bool, on_rewards: Callable[[np.ndarray], None] | None = None,
                 scorer: NoveltyScorer | None = None, streams: str = "one", intrinsic_episodic: bool = False,
                 ) -> None:
        n, t = num_envs, unroll_length
        self.num_envs, self.unroll_length, self.gamma = n, t, gamma
        self.clip_rewards = clip_rewards
        self.on_rewards = on_rewards
        self.scorer = scorer
        self.stats = BonusStats(n) if scorer is not None else None
        self.two_streams = scorer is not None and streams == "two"
        self.intrinsic_episodic = intrinsic_episodic
        self.int_rewards = np.zeros((t, n), np.float32)
        self.obs = np.zeros((t + 1, n, *obs_shape), np.uint8)
        self.starts = np.zeros((t + 1, n), bool)
        self.actions = np.zeros((t, n), np.int64)
        self.logits = np.zeros((t, n, num_actions), np.float32)
        self.values = np.zeros((t, n, 2) if self.two_streams else (t, n), np.float32)
        self._has_values = True
        self.rewards = np.zeros((t, n), np.float32)
        self.discounts = np.zeros((t, n), np.float32)
        self.carry = np.zeros((t, n), np.float32)
        self.valid = np.zeros((t, n), bool)
        self._state0: dict[str, np.ndarray] = {}
        self.inputs: dict[str, np.ndarray] = {}  # [T + 1, N, ...] per replay input, allocated on first sight
        self._t = 0
        self._resetting = np.zeros(n, bool)
        self._done: list[Unroll] = []

    def reset(self, obs: np.ndarray) -> None:
        """New games in every env: the unroll in progress is dropped."""
        self.obs[0] = obs
        self.starts[0] = True
        self._t = 0
        self._resetting[:] = False
        if self.scorer is not None and self.stats is not None:
            self.scorer.score(obs)  # the first frames are seen, hence learned; no reward carries their bonus
            self.stats.frames_learned += len(obs)

    def add(self, actions: np.ndarray, extras: dict[str, np.ndarray], rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, next_obs: np.ndarray, info: dict[str, Any]) -> None:
        t = self._t
        if t == 0:
            self._state0 = {k[len("state_"):]: v.copy() for k, v in extras.items() if k.startswith("state_")}
        for key, value in extras.items():
            if key.startswith("next_input_"):
                name = key[len("next_input_"):]
                if name not in self.inputs:
                    self.inputs[name] = np.zeros((self.unroll_length + 1, *value.shape), value.dtype)
                    self.inputs[name][t] = extras[f"input_{name}"]
                self.inputs[name][t + 1] = value  # the next step's: entry T is the bootstrap step's
        valid = ~self._resetting  # a NextStep autoreset step only resets its env
        rewards = np.asarray(rewards, np.float32)
        if self.clip_rewards:
            rewards = np.clip(rewards, -1.0, 1.0)
        rewards = np.where(valid, rewards, 0.0).astype(np.float32)
        if self.scorer is not None and self.stats is not None and not self.two_streams:
            # A3C+: r + bonus, scored every step because the reward (the LSTM's next previous-reward input) carries
            # it; an autoreset step's frame is learned but earns nothing (no action led there).
            bonus, counts = self.scorer.score(next_obs)
            self.stats.record(bonus, counts, valid)
            rewards = (rewards + np.where(valid, bonus, 0.0)).astype(np.float32)
        if self.on_rewards is not None:
            self.on_rewards(rewards)
        terminated = np.asarray(terminated, bool)
        ended = terminated | np.asarray(truncated, bool)
        self.actions[t] = actions
        self.logits[t] = extras["logits"]
        if "values" in extras:
            self.values[t] = extras["values"]
        else:  # a policy that does not report values: the learner computes them
            self._has_values = False
        self.rewards[t] = rewards
        self.discounts[t] = np.where(valid & ~terminated, self.gamma, 0.0)
        self.carry[t] = valid & ~ended
        self.valid[t] = valid
        # The observation a reset step returns is the first of a new game; only at game over (not at a life-loss
        # terminal) does the env reset on the next step.
        self.starts[t + 1] = self._resetting
        game_over = np.asarray(info.get("game_over", ended), bool)
        self._resetting = game_over & valid
        self.obs[t + 1] = next_obs
        self._t += 1
        if self._t == self.unroll_length:
            if self.two_streams:
                self._score_unroll()
            self._done.append(Unroll(self.obs.copy(), self.starts.copy(), self.actions.copy(), self.logits.copy(),
                                     self.rewards.copy(), self.discounts.copy(), self.carry.copy(),
                                     self.valid.copy(), self._state0,
                                     self.values.copy() if self._has_values else None,
                                     {k: v.copy() for k, v in self.inputs.items()},
                                     self.int_rewards.copy() if self.two_streams else None))
            self._has_values = True
            self.obs[0] = self.obs[-1]
            self.starts[0] = self.starts[-1]
            for v in self.inputs.values():
                v[0] = v[-1]
            self._t = 0

    def _score_unroll(self) -> None:
        """RND's order (Burda et al. 2018, Alg. 1): the intrinsic rewards of a whole unroll are scored in one batch,
        its ``T x N`` next observations in time-major order, and the source then learns them (RND: one predictor
        step per unroll, as the paper updates after each rollout; a pseudo-count learns them one by one in the order
        per-step scoring would). Only the learner reads them. Non-episodic: the autoreset step's bonus (the new game's
        first frame) counts too. The bonus statistics are recorded here too, so a game that ends inside an unroll
        has its last steps' bonuses counted in the next game's ``charts/intrinsic_return`` (at most T steps'
        worth; the run's ``explore/intrinsic_reward_mean`` is exact)."""
        assert self.scorer is not None and self.stats is not None
        t, n = self.unroll_length, self.num_envs
        frames = self.obs[1:].reshape(t * n, *self.obs.shape[2:])
        bonus, counts = self.scorer.score(frames)
        bonus, counts = bonus.reshape(t, n), counts.reshape(t, n)
        for step in range(t):
            self.stats.record(bonus[step], counts[step], self.valid[step])
        kept = self.valid if self.intrinsic_episodic else np.ones_like(self.valid)
        self.int_rewards[:] = np.where(kept, bonus, 0.0)

    def flush(self) -> Unroll | None:
        """The unrolls finished since the last flush, side by side (the open one stays)."""
        if not self._done:
            return None
        out, self._done = Unroll.concat(self._done), []
        return out

    def state_dict(self) -> dict[str, Any]:
        """This actor's novelty source (empty without a bonus); the open unroll is not saved (a resumed run starts
        new games)."""
        return {"novelty": self.scorer.state_dict()} if self.scorer is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scorer is not None and "novelty" in state:
            self.scorer.load_state_dict(state["novelty"])


def make_network(cfg: ActorCriticConfig, obs_shape: tuple[int, ...], num_actions: int,
                 input_divisor: float | None = None) -> PolicyCore:
    """The network the config trains (its class's ``build_network``: STRAW's config builds a planning core);
    ``input_divisor``: the env's ``EnvSpec.obs_high``."""
    return cfg.build_network(obs_shape, num_actions, input_divisor)


def make_ac_parts(cfg: ActorCriticConfig, actor_id: int) -> ActorParts:
    """Build one actor's vector env, policy, trajectory adder and the env family's episode trackers
    (:func:`agents.runtime.config.env_trackers`); runs inside the actor's process. With ``exploration.bonus`` the
    adder gets this actor's own novelty source (RND's input statistics first set by ``exploration.rnd_init_steps``
    of random play on this env) and the bonus statistics join the trackers."""
    seed = actor_seed(cfg.run, actor_id)
    env = make_actor_env(cfg.env, seed)
    spec = env_spec(env)
    with torch.random.fork_rng(devices=[]):  # seeded init that leaves the process's generator alone (local mode)
        torch.manual_seed(seed)
        network = make_network(cfg, spec.obs_shape, spec.num_actions, spec.obs_high)
    if cfg.runtime.num_actors > 0:
        # A Ray actor's own process: a core's acting draws from torch's global generator (STRAW's gates and noise)
        # follow this actor's seed, not torch's default one that every worker process starts with. In local mode
        # (num_actors 0) the process is the learner's too, and its generator is left alone.
        torch.manual_seed(seed)
    policy = ACPolicy(network, seed, clip_rewards=cfg.agent.clip_rewards)
    ex = cfg.exploration
    scorer = None
    if ex.bonus != "none":
        # Refuses a family the source cannot score (a pseudo-count on MinAtar Seaquest's 10 channels), naming the key.
        scorer = make_scorer(str(ex.bonus), ex.beta, cfg.env.game, spec.obs_shape, seed)
        if ex.bonus == "rnd" and ex.rnd_init_steps > 0:
            from worldmodels.density.rnd import RND

            assert isinstance(scorer.source, RND)
            scorer.source.init_normalizer(random_play_inputs(env, scorer, ex.rnd_init_steps, seed))
    adder = TrajectoryAdder(cfg.env.num_envs, cfg.agent.unroll_length, spec.obs_shape, spec.num_actions,
                            cfg.agent.gamma, cfg.agent.clip_rewards, on_rewards=policy.observe_rewards,
                            scorer=scorer, streams=str(ex.streams), intrinsic_episodic=ex.intrinsic_episodic)
    trackers: list[EpisodeTracker] = [adder.stats] if adder.stats is not None else []
    return ActorParts(env, policy, adder, trackers + env_trackers(cfg.env))
