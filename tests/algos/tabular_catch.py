"""A test-only algorithm on the runtime seam: tabular Q-learning on ``toy/catch``.

It shares nothing with DQN but the runtime: its own config, policy, adder (one-step transitions of discrete
states, no replay), learner (a Q-table updated one ingested chunk at a time) and evaluator. If it trains through
``agents.runtime.loop.run_training`` in local and Ray mode, the seam is not shaped around DQN.

The state is read off the newest frame: (ball row, ball column, paddle column), 7 x 7 x 7 = 343 states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from agents.runtime.algorithm import ActorParts, ActorSetup, EnvSpec, EvalResult
from agents.runtime.config import EnvConfig, RunConfig, RuntimeConfig, validate_common
from envs import make_env
from envs.toy import BALL_PIXEL, PADDLE_PIXEL

CELLS = 7
CELL = 84 // CELLS
NUM_STATES = CELLS ** 3


@dataclass
class TabularAgentConfig:
    lr: float = 0.5
    """Step size of the Q-learning update."""
    gamma: float = 0.9
    """Discount per step."""
    epsilon: float = 0.1
    """Exploration rate of the actors (evaluation is greedy)."""


@dataclass
class TabularConfig:
    algo: str = "tabular_catch"
    env: EnvConfig = field(default_factory=lambda: EnvConfig(game="toy/catch", num_envs=4))
    agent: TabularAgentConfig = field(default_factory=TabularAgentConfig)
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(chunk_steps=16, publish_every_updates=1))
    run: RunConfig = field(default_factory=lambda: RunConfig(name="tabular", total_frames=8000,
                                                             log_every_frames=1000, checkpoint_every_frames=4000))


def state_index(obs: np.ndarray) -> np.ndarray:
    """int64 ``[N]`` state ids of uint8 observations ``[N, S, 84, 84]`` (their newest frames)."""
    cells = obs[:, -1, CELL // 2::CELL, CELL // 2::CELL]  # one pixel per cell: [N, 7, 7]
    flat = cells.reshape(len(obs), -1)
    ball = flat.argmax(axis=1)  # the ball (255) is the brightest cell
    ball = np.where(flat.max(axis=1) == BALL_PIXEL, ball, 0)
    bottom = cells[:, -1, :]
    paddle = np.argmax((bottom == PADDLE_PIXEL) | (bottom == BALL_PIXEL), axis=1)
    return (ball // CELLS) * CELLS * CELLS + (ball % CELLS) * CELLS + paddle


class TabularPolicy:
    """Epsilon-greedy on a copy of the learner's Q-table."""

    def __init__(self, num_actions: int, epsilon: float, seed: int) -> None:
        self.table = np.zeros((NUM_STATES, num_actions))
        self.epsilon = epsilon
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, frames: int, starts: np.ndarray | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        s = state_index(obs)
        explore = self.rng.random(len(s)) < self.epsilon
        actions = np.where(explore, self.rng.integers(0, self.table.shape[1], len(s)), self.table[s].argmax(1))
        return actions.astype(np.int64), {"state": s}

    def set_weights(self, weights: np.ndarray) -> None:
        self.table = np.array(weights)


class TransitionAdder:
    """One-step transitions ``(s, a, r, terminal, s')`` of live steps (autoreset steps skipped)."""

    def __init__(self, num_envs: int) -> None:
        self._s = np.zeros(num_envs, np.int64)
        self._resetting = np.zeros(num_envs, bool)
        self._rows: list[np.ndarray] = []

    def reset(self, obs: np.ndarray) -> None:
        self._s = state_index(obs)

    def add(self, actions: np.ndarray, extras: dict[str, np.ndarray], rewards: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, next_obs: np.ndarray, info: dict[str, Any]) -> None:
        s_next = state_index(next_obs)
        live = ~self._resetting
        ended = np.asarray(terminated | truncated)
        rows = np.stack([self._s, actions, np.asarray(rewards, np.float64), terminated, s_next], 1)[live]
        self._rows.append(rows.astype(np.float64))
        self._s = s_next
        self._resetting = ended & live

    def flush(self) -> np.ndarray:
        out = np.concatenate(self._rows) if self._rows else np.zeros((0, 5))
        self._rows = []
        return out


def make_parts(cfg: TabularConfig, actor_id: int) -> ActorParts:
    seed = cfg.run.seed + 1000 * (actor_id + 1)
    env = make_env(cfg.env.game, num_envs=cfg.env.num_envs, seed=seed)
    policy = TabularPolicy(int(env.single_action_space.n), cfg.agent.epsilon, seed)
    return ActorParts(env, policy, TransitionAdder(cfg.env.num_envs))


class TabularLearner:
    """Q-learning, one sweep over each ingested chunk; at most two chunks wait for it."""

    def __init__(self, num_actions: int, cfg: TabularConfig) -> None:
        self.table = np.zeros((NUM_STATES, num_actions))
        self.cfg = cfg
        self.pending: list[np.ndarray] = []

    def ingest(self, output: Any) -> None:
        self.pending.append(output.payload)

    def updates_due(self, counters: Any) -> int:
        return len(self.pending)

    def collect_allowance(self, counters: Any) -> int:
        return 0 if len(self.pending) >= 2 else counters.total_steps

    def update(self, counters: Any) -> dict[str, float]:
        rows = self.pending.pop(0)
        a_cfg, errors = self.cfg.agent, []
        for s, a, r, terminal, s_next in rows:
            target = r + (0.0 if terminal else a_cfg.gamma * self.table[int(s_next)].max())
            error = target - self.table[int(s), int(a)]
            self.table[int(s), int(a)] += a_cfg.lr * error
            errors.append(error * error)
        return {"td_error_sq": float(np.mean(errors)) if errors else 0.0}

    def get_weights(self) -> np.ndarray:
        return self.table.copy()

    def scalars(self) -> dict[str, float]:
        return {"charts/states_visited": float((self.table != 0).any(axis=1).sum())}

    def state_dict(self) -> dict[str, Any]:
        return {"table": torch.from_numpy(self.table.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.table = state["table"].numpy().copy()


def evaluate(cfg: TabularConfig, weights: np.ndarray, episodes: int, seed: int,
             record: list[np.ndarray] | None = None) -> EvalResult:
    """Greedy play: ``episodes`` games, each env's first game."""
    env = make_env(cfg.env.game, num_envs=episodes, seed=seed)
    obs, _ = env.reset(seed=seed)
    total, lengths, done = np.zeros(episodes), np.zeros(episodes, np.int64), np.zeros(episodes, bool)
    while not done.all():
        if record is not None and not done[0]:
            record.append(obs[0].copy())
        obs, rewards, term, trunc, info = env.step(weights[state_index(obs)].argmax(1))
        total += np.where(done, 0.0, rewards)
        lengths += ~done
        done |= np.asarray(info["game_over"])
    env.close()
    return EvalResult(total.tolist(), lengths.tolist())


class TabularBuilder:
    name = "tabular_catch"
    config_class = TabularConfig

    def validate(self, cfg: TabularConfig) -> None:
        validate_common(cfg.env, cfg.runtime, cfg.run)

    def prepare(self, cfg: TabularConfig) -> TabularConfig:
        return cfg

    def actor_setup(self, cfg: TabularConfig, distributed: bool) -> ActorSetup:
        return ActorSetup(make_parts)

    def make_learner(self, cfg: TabularConfig, spec: EnvSpec, device: Any) -> TabularLearner:
        return TabularLearner(spec.num_actions, cfg)

    def evaluate(self, cfg: TabularConfig, weights: np.ndarray, episodes: int, seed: int,
                 record: list[np.ndarray] | None = None) -> EvalResult:
        return evaluate(cfg, weights, episodes, seed, record)

    def checkpoint_weights(self, ckpt: dict[str, Any]) -> np.ndarray:
        return ckpt["table"].numpy()


BUILDER = TabularBuilder()
