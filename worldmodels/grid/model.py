"""``GridWorldModel``: an action-conditional model of MinAtar-style grids of 0/1 object channels, a WorldModel.

What each part follows, and what is ours:

- **Action-conditional next-frame prediction** (Oh, Guo, Lee, Lewis and Singh 2015, "Action-Conditional Video
  Prediction using Deep Networks in Atari Games"): the next observation is predicted from the current one and the
  action, and rolled forward by feeding predictions back. Ours: the network. A MinAtar frame is a 10x10 grid, so
  there is no encoder-decoder bottleneck: every 3x3 convolution keeps the grid size ("same" padding), the action
  enters as one-hot planes beside the input channels (where it moves the player) and modulates each residual block
  by FiLM (a per-channel scale and shift computed from the action; Perez et al. 2018), and the output layer reads
  the features together with the current frame, so copying a still object is a single weight; it starts as a
  confident copy of the current frame (MinAtar grids are sparse and mostly still), so training begins at the
  copy-last baseline instead of at "every cell 0.5".
- **Output distribution** (ours): one Bernoulli per cell and channel, logits ``[B, C, H, W]``. MinAtar's channels
  are independent 0/1 maps of object kinds (player, ball, trail, brick, ...), and several objects can share a cell
  (a ball over a trail, a diver under an enemy), so a categorical over "what is in this cell" would be wrong in
  form; a per-cell, per-channel Bernoulli is the exact form of the data. The loss is the binary cross-entropy in
  nats, summed over channels and averaged over cells and transitions.
- **Reward and game-over heads** (Kaiser et al. 2019, SimPLe, Sec. 4: the world model predicts the reward and the
  end of the game, so that it can stand in for the environment, here through :class:`envs.ImaginedEnv`). Ours: the
  reward is a categorical over the integers ``0..max_reward``, not a regression. MinAtar rewards are small
  non-negative integers, mostly 0 and sometimes 1 (Seaquest's surfacing bonus reaches 10). A squared-error regression
  is pulled to the mean (a +1 that happens 5% of the time is predicted as 0.05 everywhere and rounds to 0), while a
  categorical keeps each value's probability: the most likely value scores accuracy, the expectation gives an
  unbiased reward for a learner, and a sample keeps the environment's randomness. SimPLe, too, treats the reward as
  a classification (of the clipped reward into three classes). The game over is one Bernoulli logit. Both heads read
  the flattened features of the whole grid (a game over depends on distant cells: the ball and the paddle).

A rollout's state is the last ``cfg.context`` frames (real at the start, imagined after), so
:class:`envs.ImaginedEnv` can restart any env by splicing in its new frames. With ``context = 1`` (the default) the
model is Markov in MinAtar's observation, whose trail channels already show motion (which is why MinAtar stacks no
frames); but MinAtar hides some timers (Freeway's cars and chicken, Space Invaders' aliens), and a few past frames,
stacked as input channels (ours, as Oh et al.'s feedforward model stacks its k frames), reveal their phase.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.common.atomic import atomic_write
from worldmodels.common.optim import clipped_step
from worldmodels.grid.config import GridWorldModelConfig, SamplingChoice, validate

FORMAT = "reverie-grid-world-model-v1"
#: The initial frame head (see :meth:`GridWorldModel._start_as_copy_last`): logit = COPY_WEIGHT * cell + EMPTY_LOGIT.
COPY_WEIGHT, EMPTY_LOGIT = 4.0, -3.0
#: The key under which a checkpoint file holds a model's :meth:`GridWorldModel.export`.
CHECKPOINT_KEY = "grid_world_model"


@dataclass
class GridState:
    """What an imagined rollout carries between steps (callers treat ``frames`` as opaque; the arrays are the step's
    outcome, as :class:`envs.ImaginedEnv` reads them).

    :ivar frames: float ``[B, context, C, H, W]`` of 0/1 values: the last ``context`` frames, oldest first, the
        newest being the current observation (real at the start, imagined after).
    :ivar reward: float32 ``[B]``: the reward of the last step, in game points: the expectation under the predicted
        categorical ("mode" sampling) or a sample from it ("sample"); 0 before any step.
    :ivar terminal: float32 ``[B]``: the game-over probability of the last step ("mode") or a 0/1 sample of it
        ("sample"), so that ``terminal > threshold`` decides a game over either way; 0 before any step.
    :ivar reward_mean: float32 ``[B]``: the expected reward, whatever the sampling.
    :ivar terminal_prob: float32 ``[B]``: the predicted game-over probability, whatever the sampling.
    """

    frames: torch.Tensor
    reward: np.ndarray
    terminal: np.ndarray
    reward_mean: np.ndarray
    terminal_prob: np.ndarray

    @property
    def batch_size(self) -> int:
        return len(self.reward)


class FiLMBlock(nn.Module):
    """A residual block of two 3x3 "same" convolutions whose hidden features are scaled and shifted per channel by
    the action (FiLM): ``[B, K, H, W], [B, A] -> [B, K, H, W]``.

    The modulation starts at the identity (zero weights), so an untrained block is a plain residual block and the
    action enters only through the input planes until the gradient says otherwise.
    """

    def __init__(self, channels: int, num_actions: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(num_actions, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(action)[:, :, None, None].chunk(2, dim=1)
        h = F.relu(self.conv1(x))
        h = h * (1.0 + scale) + shift
        return F.relu(x + self.conv2(h))


class GridWorldModel(nn.Module):
    """Predicts the next grid observation, the reward and the game over from the current observation and action;
    satisfies :class:`worldmodels.protocols.WorldModel` and drives :class:`envs.ImaginedEnv` (see the module
    docstring for the design).

    Attributes read by :class:`envs.ImaginedEnv`: ``context`` (``cfg.context``), ``frame_shape`` (``(C, H, W)``),
    ``num_actions``, ``obs_high`` (1: observations are 0/1 channels, not pixels) and ``game``.

    :param cfg: sizes, optimiser and sampling settings (validated here).
    :param obs_shape: ``(C, H, W)`` of the env's observations (MinAtar: ``(C, 10, 10)``).
    :param num_actions: the env's action count (MinAtar: 6).
    :param game: the env the model is for, e.g. ``"minatar/breakout"`` (recorded to name it in errors).
    """

    obs_high = 1
    reward_values: torch.Tensor  # buffer float [max_reward + 1]: the reward of each class, 0..max_reward

    def __init__(self, cfg: GridWorldModelConfig, obs_shape: tuple[int, ...], num_actions: int,
                 game: str = "") -> None:
        super().__init__()
        validate(cfg)
        shape = tuple(int(s) for s in obs_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"obs_shape={tuple(obs_shape)} must be channels-first (C, H, W) with positive sizes "
                             f"(MinAtar: (C, 10, 10)).")
        if isinstance(num_actions, bool) or int(num_actions) < 1:
            raise ValueError(f"num_actions={num_actions!r} must be a positive int (the env's action count).")
        self.cfg, self.game = cfg, game
        self.frame_shape: tuple[int, int, int] = (shape[0], shape[1], shape[2])
        self.channels = shape[0]
        self.num_actions = int(num_actions)
        self.context = cfg.context
        c, h, w = self.frame_shape
        k = cfg.hidden_channels
        # Weights drawn from cfg.seed without disturbing torch's global generator (the caller's other randomness).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.stem = nn.Conv2d(c * cfg.context + self.num_actions, k, 3, padding=1)
            self.blocks = nn.ModuleList(FiLMBlock(k, self.num_actions) for _ in range(cfg.res_blocks))
            self.frame_head = nn.Conv2d(k + c, c, 1)
            self._start_as_copy_last()
            self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(k * h * w, cfg.head_hidden), nn.ReLU())
            self.reward_head = nn.Linear(cfg.head_hidden, cfg.max_reward + 1)
            self.terminal_head = nn.Linear(cfg.head_hidden, 1)
        self.register_buffer("reward_values", torch.arange(cfg.max_reward + 1, dtype=torch.float32),
                             persistent=False)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def _start_as_copy_last(self) -> None:
        """Start the frame head near copy-last: each channel's logit reads its own cell of the newest frame with weight
        ``COPY_WEIGHT`` and a bias of ``EMPTY_LOGIT`` (an occupied cell stays on with probability 0.73, an empty one
        turns on with 0.047), the features' weights kept small. Ours: MinAtar grids are sparse and mostly still, so
        this is where a trained model ends up for most cells; starting there spares the first hundreds of updates
        the model would spend learning that empty cells stay empty (from a 0.5 everywhere start)."""
        with torch.no_grad():
            c, k = self.channels, self.cfg.hidden_channels
            self.frame_head.weight[:, k:] = COPY_WEIGHT * torch.eye(c)[:, :, None, None]
            bias = self.frame_head.bias
            assert bias is not None  # Conv2d's default bias=True
            bias.fill_(EMPTY_LOGIT)

    # ------------------------------------------------------------------------------------------- conversions
    @property
    def device(self) -> torch.device:
        return self.stem.weight.device

    def _tensor(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
        if x.ndim in (4, 5) and tuple(x.shape[-3:]) == self.frame_shape and x.numel() and float(x.max()) > 1:
            raise ValueError(f"observations hold values up to {float(x.max()):g}; a grid world model reads 0/1 "
                             f"object channels (MinAtar's), not pixels.")
        return x

    def history_in(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The model's input history: float ``[B, context, C, H, W]`` of 0/1 values on the model's device.

        :param frames: uint8 (or float) ``[B, T, C, H, W]``, the last T frames, oldest first (the last ``context``
            are used; with ``T < context`` zeros are put in front, as before an episode's first frame); or
            ``[B, C, H, W]`` for a model with ``context = 1``.
        :raises ValueError: a shape this model was not built for, or values above 1 (pixels, not 0/1 channels).
        """
        x = self._tensor(frames)
        if x.ndim == 4 and self.context == 1:
            x = x[:, None]
        if x.ndim != 5 or tuple(x.shape[2:]) != self.frame_shape or x.shape[1] < 1:
            want = "[B, C, H, W] or [B, T, C, H, W]" if self.context == 1 else "[B, T, C, H, W] (T >= 1 frames)"
            raise ValueError(f"observations of shape {tuple(x.shape)} do not fit this world model, built for frames "
                             f"({', '.join(map(str, self.frame_shape))}) of {self.game or 'its env'} and reading the "
                             f"last {self.context}: give {want} of the env it was trained on.")
        x = x[:, -self.context:].to(self.device, torch.float32)
        if x.shape[1] < self.context:
            pad = x.new_zeros(x.shape[0], self.context - x.shape[1], *self.frame_shape)
            x = torch.cat([pad, x], dim=1)
        return x

    def frame_in(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (or float) ``[B, C, H, W]`` -> float ``[B, C, H, W]`` of 0/1 values on the model's device.

        :raises ValueError: a shape this model was not built for, or values above 1.
        """
        x = self._tensor(frames)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.frame_shape:
            raise ValueError(f"frames of shape {tuple(x.shape)} do not fit this world model, built for "
                             f"[B, {', '.join(map(str, self.frame_shape))}] ({self.game or 'its env'}).")
        return x.to(self.device, torch.float32)

    def one_hot(self, action: np.ndarray | torch.Tensor) -> torch.Tensor:
        """int ``[B]`` -> float ``[B, A]``. :raises ValueError: an action outside ``[0, num_actions)``."""
        a = torch.as_tensor(np.asarray(action) if not isinstance(action, torch.Tensor) else action)
        if a.dtype.is_floating_point or a.dtype == torch.bool or a.ndim != 1:
            raise ValueError(f"actions must be ints of shape [B], got {a.dtype} {tuple(a.shape)}.")
        a = a.to(torch.int64)
        if a.numel() and (int(a.min()) < 0 or int(a.max()) >= self.num_actions):
            raise ValueError(f"actions must lie in [0, {self.num_actions}); got values from {int(a.min())} to "
                             f"{int(a.max())}.")
        return F.one_hot(a, self.num_actions).float().to(self.device)

    # ------------------------------------------------------------------------------------------- network
    def forward(self, history: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One prediction, differentiable.

        :param history: float ``[B, context, C, H, W]`` of 0/1 values, the last frames, the newest being the current
            observation.
        :param action: float ``[B, A]``, one-hot.
        :return: ``(frame_logits [B, C, H, W], reward_logits [B, max_reward + 1], terminal_logit [B])``: the
            Bernoulli logits of every cell of the next observation, the logits of the reward's categorical over
            ``0..max_reward`` and the game-over logit.
        """
        b, _, _, h, w = history.shape
        planes = action[:, :, None, None].expand(b, self.num_actions, h, w)
        x = F.relu(self.stem(torch.cat([history.flatten(1, 2), planes], dim=1)))
        for block in self.blocks:
            x = block(x, action)
        frame_logits = self.frame_head(torch.cat([x, history[:, -1]], dim=1))
        z = self.trunk(x)
        return frame_logits, self.reward_head(z), self.terminal_head(z)[:, 0]

    @torch.no_grad()
    def predict(self, obs: np.ndarray | torch.Tensor, action: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """The predicted distributions of one step, without gradients.

        :param obs: uint8 ``[B, C, H, W]`` (0/1), or histories ``[B, T, C, H, W]`` (see :meth:`history_in`).
        :param action: int ``[B]``.
        :return: ``cell_prob`` float ``[B, C, H, W]`` (probability that each cell of the next observation is 1),
            ``reward_prob`` float ``[B, max_reward + 1]``, ``reward_mean`` float ``[B]`` (game points),
            ``terminal_prob`` float ``[B]``.
        """
        frame_logits, reward_logits, terminal_logit = self(self.history_in(obs), self.one_hot(action))
        reward_prob = reward_logits.softmax(dim=1)
        return {"cell_prob": torch.sigmoid(frame_logits), "reward_prob": reward_prob,
                "reward_mean": reward_prob @ self.reward_values, "terminal_prob": torch.sigmoid(terminal_logit)}

    # ------------------------------------------------------------------------------ WorldModel protocol
    def initial(self, frames: np.ndarray, actions: np.ndarray | None = None) -> GridState:
        """The rollout state of real observations.

        :param frames: uint8 ``[B, T, C, H, W]``, the last real frames (see :meth:`history_in`: the last ``context``
            are used, zero-padded in front if fewer), or ``[B, C, H, W]`` for a model with ``context = 1``.
        :param actions: unused (the frames alone are the model's state).
        """
        history = self.history_in(frames)
        zeros = np.zeros(history.shape[0], np.float32)
        return GridState(history, zeros, zeros.copy(), zeros.copy(), zeros.copy())

    @torch.no_grad()
    def step(self, state: GridState, action: np.ndarray,
             generator: torch.Generator | None = None) -> tuple[GridState, np.ndarray]:
        """Advance every rollout by one action.

        :param state: from :meth:`initial` or an earlier :meth:`step`.
        :param action: int64 ``[B]``.
        :param generator: a CPU generator for "sample" sampling (default: the model's own, seeded by ``cfg.seed``).
        :return: ``(next_state, frame)``: ``frame`` uint8 ``[B, C, H, W]`` of 0/1, each cell its more likely value
            ("mode": probability > 0.5) or a Bernoulli sample ("sample"); ``next_state.reward`` and
            ``next_state.terminal`` describe this step (see :class:`GridState`).
        """
        if len(action) != state.batch_size:  # before torch's concatenation error
            raise ValueError(f"{len(action)} actions for {state.batch_size} rollouts: give one action per rollout.")
        frame_logits, reward_logits, terminal_logit = self(state.frames, self.one_hot(action))
        cell_prob = torch.sigmoid(frame_logits)
        reward_prob = reward_logits.softmax(dim=1)
        reward_mean = reward_prob @ self.reward_values
        terminal_prob = torch.sigmoid(terminal_logit)
        if self.cfg.sampling == SamplingChoice.sample:
            g = self.generator if generator is None else generator
            # Uniforms drawn on the CPU: a CPU generator gives the same rollouts wherever the model lives.
            frame = torch.rand(cell_prob.shape, generator=g).to(self.device) < cell_prob
            reward = self.reward_values[torch.multinomial(reward_prob.cpu(), 1, generator=g)[:, 0].to(self.device)]
            terminal = (torch.rand(terminal_prob.shape, generator=g).to(self.device) < terminal_prob).float()
        else:
            frame, reward, terminal = cell_prob > 0.5, reward_mean, terminal_prob
        frames = torch.cat([state.frames[:, 1:], frame.float()[:, None]], dim=1)

        def host(t: torch.Tensor) -> np.ndarray:
            return t.float().cpu().numpy().astype(np.float32)

        new = GridState(frames, host(reward), host(terminal), host(reward_mean), host(terminal_prob))
        return new, frame.to(torch.uint8).cpu().numpy()

    def imagine(self, context_frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Open-loop rollout under a given action sequence (each prediction is the next step's input).

        :param context_frames: uint8 ``[B, T0, C, H, W]`` (the last frame starts the rollout; see :meth:`initial`) or
            ``[B, C, H, W]`` for a model with ``context = 1``.
        :param actions: int64 ``[B, T]``; ``actions[:, t]`` leads to the frame ``[:, t]`` of the result.
        :return: uint8 ``[B, T, C, H, W]``, drawn as ``cfg.sampling`` says.
        """
        acts = np.asarray(actions)
        state = self.initial(context_frames)
        if acts.ndim != 2 or acts.shape[0] != state.batch_size:
            raise ValueError(f"actions must be [B, T] with B = {state.batch_size}, got shape {acts.shape}.")
        frames = []
        for t in range(acts.shape[1]):
            state, frame = self.step(state, acts[:, t])
            frames.append(frame)
        if not frames:
            return np.zeros((state.batch_size, 0, *self.frame_shape), np.uint8)
        return np.stack(frames, axis=1)

    def loss(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Training losses on real transitions, teacher-forced (one step from each real observation).

        :param batch: either transitions: ``obs`` uint8 ``[B, C, H, W]`` (with ``context > 1``: histories
            ``[B, T, C, H, W]``, the newest frame last, see :meth:`history_in`), ``actions`` int64 ``[B]``,
            ``next_obs`` uint8 ``[B, C, H, W]``, and optionally ``rewards`` float ``[B]`` (game points) and
            ``terminals`` bool ``[B]`` (``next_obs`` ended the game); or windows, as :mod:`worldmodels.data` stores
            them: ``frames`` uint8 ``[B, T, C, H, W]``, ``actions`` int64 ``[B, T]`` (the action at frame t leads to
            frame t + 1), optionally ``rewards`` ``[B, T]`` (of that action) and ``terminals`` ``[B, T]`` (frame t
            ended the game), giving ``B * (T - context)`` transitions (each with its ``context`` real frames).
        :return: tensors ``loss`` (what to minimise: ``obs_nats + reward_loss_weight * reward_nats +
            terminal_loss_weight * terminal_nats``), ``obs_nats`` (binary cross-entropy of the next observation in
            nats per cell, summed over channels, averaged over cells and transitions), ``reward_nats`` and
            ``terminal_nats`` (cross-entropies in nats per transition; 0 when the batch has no rewards/terminals),
            and the float ``reward_clipped`` (fraction of rewards that were not an integer in ``0..max_reward``,
            rounded and clipped into it).
        """
        obs, actions, next_obs, rewards, terminals = self._transitions(batch, self.context)
        frame_logits, reward_logits, terminal_logit = self(self.history_in(obs), self.one_hot(actions))
        target = self.frame_in(next_obs)
        obs_nats = F.binary_cross_entropy_with_logits(frame_logits, target, reduction="none").sum(1).mean()
        zero = obs_nats.new_zeros(())
        reward_nats, terminal_nats, clipped = zero, zero, 0.0
        if rewards is not None:
            r = torch.as_tensor(np.asarray(rewards), dtype=torch.float32).to(self.device)
            classes = r.round().clamp(0, self.cfg.max_reward)
            clipped = float((classes != r).float().mean()) if r.numel() else 0.0
            reward_nats = F.cross_entropy(reward_logits, classes.long())
        if terminals is not None:
            over = torch.as_tensor(np.asarray(terminals)).to(self.device, torch.float32)
            terminal_nats = F.binary_cross_entropy_with_logits(terminal_logit, over)
        loss = obs_nats + self.cfg.reward_loss_weight * reward_nats + self.cfg.terminal_loss_weight * terminal_nats
        return {"loss": loss, "obs_nats": obs_nats, "reward_nats": reward_nats, "terminal_nats": terminal_nats,
                "reward_clipped": clipped}

    @staticmethod
    def _transitions(batch: dict[str, Any], context: int) -> tuple[Any, Any, Any, Any, Any]:
        """``(obs, actions, next_obs, rewards | None, terminals | None)`` of a transition or window batch; from
        windows, ``obs`` are histories ``[N, context, C, H, W]`` (transitions from frame ``context - 1`` on)."""
        if "next_obs" in batch:
            return batch["obs"], batch["actions"], batch["next_obs"], batch.get("rewards"), batch.get("terminals")
        if "frames" not in batch:
            raise ValueError(f"a world-model batch needs obs/actions/next_obs (transitions) or frames/actions "
                             f"(windows); got keys {sorted(batch)}.")
        frames = np.asarray(batch["frames"])
        if frames.ndim != 5 or frames.shape[1] <= context:
            raise ValueError(f"frames must be [B, T, C, H, W] with T > context = {context}, got shape {frames.shape}.")
        first, steps = context - 1, frames.shape[1] - context  # transitions t = first .. first + steps - 1

        def flat(x: Any, offset: int) -> np.ndarray:
            a = np.asarray(x)[:, first + offset: first + offset + steps]
            return a.reshape(-1, *a.shape[2:])

        history = np.stack([frames[:, first - j: first - j + steps] for j in reversed(range(context))], axis=2)
        rewards = None if batch.get("rewards") is None else flat(batch["rewards"], 0)
        terminals = None if batch.get("terminals") is None else flat(batch["terminals"], 1)
        return (history.reshape(-1, *history.shape[2:]), flat(batch["actions"], 0), flat(frames, 1), rewards,
                terminals)

    # ------------------------------------------------------------------------------------------- persistence
    def export(self) -> dict[str, Any]:
        """Everything needed to rebuild the model: weights, config, observation shape, action count, game, and the
        sampling generator's state (so a restored model samples the rollouts the original would have)."""
        config = {k: v.value if isinstance(v, Enum) else v for k, v in asdict(self.cfg).items()}
        return {"format": FORMAT, "config": config, "obs_shape": list(self.frame_shape),
                "num_actions": self.num_actions, "game": self.game,
                "weights": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()},
                "generator": self.generator.get_state()}

    @classmethod
    def from_export(cls, state: dict[str, Any], *, obs_shape: tuple[int, ...] | None = None,
                    num_actions: int | None = None, where: str = "the world-model checkpoint") -> GridWorldModel:
        """Rebuild a model from :meth:`export`'s output, checked against the env it is meant for.

        :param obs_shape: the env's observation shape ``(C, H, W)``; None skips the check.
        :param num_actions: the env's action count; None skips the check.
        :param where: names the checkpoint in error messages.
        :raises ValueError: not a grid world model, or made for another observation shape or action count (the
            message names both and the fix).
        """
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{where} is not a grid world model (format {found!r}, expected {FORMAT!r}).")
        check_compatible(state, obs_shape, num_actions, where)
        cfg = GridWorldModelConfig(**{**state["config"], "sampling": SamplingChoice(state["config"]["sampling"])})
        model = cls(cfg, tuple(state["obs_shape"]), int(state["num_actions"]), game=state.get("game", ""))
        model.load_state_dict(state["weights"])
        if "generator" in state:
            model.generator.set_state(state["generator"])
        return model


def check_compatible(state: dict[str, Any], obs_shape: tuple[int, ...] | None, num_actions: int | None,
                     where: str = "the world-model checkpoint") -> None:
    """Refuse a grid world model (an :meth:`GridWorldModel.export`) made for other observations or actions.

    :raises ValueError: naming what the model was made for, what the env has, and the fix.
    """
    saved_shape = tuple(int(s) for s in state["obs_shape"])
    saved_actions = int(state["num_actions"])
    shape_ok = obs_shape is None or tuple(int(s) for s in obs_shape) == saved_shape
    actions_ok = num_actions is None or int(num_actions) == saved_actions
    if shape_ok and actions_ok:
        return
    game = state.get("game") or "an unnamed env"
    env_shape = saved_shape if obs_shape is None else tuple(int(s) for s in obs_shape)
    env_actions = saved_actions if num_actions is None else int(num_actions)
    raise ValueError(
        f"{where} was trained on {game}: observations {saved_shape} and {saved_actions} actions, but this env has "
        f"observations {env_shape} and {env_actions} actions. Give a world model trained on this env's game, or "
        f"leave the checkpoint out to learn a new one from scratch.")


def save_grid_world_model(path: str | Path, model: GridWorldModel, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.export()`` (and ``extra`` entries, e.g. a trainer's optimiser) as a Reverie checkpoint file,
    atomically (a crash mid-write never leaves a truncated file); :func:`load_grid_world_model` reads it back."""
    path = Path(path)
    state = {"format": "reverie-checkpoint-v1", CHECKPOINT_KEY: model.export(), **(extra or {})}
    atomic_write(path, lambda f: torch.save(state, f))
    return path


def export_in_checkpoint(ckpt: dict[str, Any]) -> dict[str, Any] | None:
    """The :meth:`GridWorldModel.export` inside a checkpoint's contents: :func:`save_grid_world_model`'s
    ``grid_world_model`` entry, or a world-model agent's ``world_model`` entry (a :class:`GridModelTrainer` state,
    whose ``model`` is the export); None if it holds neither (a video model's ``world_model`` is not one)."""
    trainer = ckpt.get("world_model")
    for state in (ckpt.get(CHECKPOINT_KEY), trainer.get("model") if isinstance(trainer, dict) else None):
        if isinstance(state, dict) and state.get("format") == FORMAT:
            return state
    return None


def load_grid_world_model(source: str | Path | dict[str, Any], *, obs_shape: tuple[int, ...] | None = None,
                          num_actions: int | None = None) -> GridWorldModel:
    """A grid world model from a checkpoint file, a run directory (its newest valid checkpoint), or an export dict,
    checked against the env it will imagine (pass the env's ``single_observation_space.shape`` and action count).

    :raises ValueError: the checkpoint holds no grid world model, or one made for another observation shape or
        action count (the message names both and the fix).
    :raises worldmodels.common.checkpoint.CheckpointError: no checkpoint there, or a corrupt one.
    """
    if isinstance(source, dict):
        state, where = source, "the world-model state"
    else:
        from worldmodels.common.checkpoint import load_latest

        path, ckpt = load_latest(source)
        where = str(path)
        found = export_in_checkpoint(ckpt)
        if found is None:
            raise ValueError(f"{path} holds no grid world model (no {CHECKPOINT_KEY!r} entry, nor a world-model "
                             f"agent's 'world_model'): give a checkpoint written by "
                             f"worldmodels.grid.save_grid_world_model or by a world-model agent's run (algo=dyna).")
        state = found
    state = state.get(CHECKPOINT_KEY, state) if isinstance(state, dict) else state
    return GridWorldModel.from_export(state, obs_shape=obs_shape, num_actions=num_actions, where=where)


class GridModelTrainer:
    """Fits a :class:`GridWorldModel` to real transitions, one Adam update per :meth:`train_step`.

    :param model: the model to train (its ``cfg`` gives the learning rate, Adam's epsilon, the gradient clip and
        the loss weights).
    """

    def __init__(self, model: GridWorldModel) -> None:
        self.model = model
        cfg = model.cfg
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        self.updates = 0

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One Adam update on a batch of real transitions (or windows; see :meth:`GridWorldModel.loss`).

        :param batch: ``obs`` uint8 ``[B, C, H, W]`` (histories ``[B, T, C, H, W]`` with ``context > 1``),
            ``actions`` int64 ``[B]``, ``rewards`` float32 ``[B]``, ``next_obs`` uint8 ``[B, C, H, W]``,
            ``terminals`` bool ``[B]``.
        :return: floats ``loss``, ``obs_nats``, ``reward_nats``, ``terminal_nats`` (nats, before the update),
            ``reward_clipped`` (fraction), ``grad_norm`` (before clipping) and ``updates`` (count after this one).
        """
        out = self.model.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = clipped_step(self.optimizer, self.model.parameters(), self.model.cfg.max_grad_norm)
        self.updates += 1
        scalars = {key: float(out[key].detach()) for key in ("loss", "obs_nats", "reward_nats", "terminal_nats")}
        return {**scalars, "reward_clipped": float(out["reward_clipped"]), "grad_norm": grad_norm,
                "updates": float(self.updates)}

    def state_dict(self) -> dict[str, Any]:
        """The model's export, the optimiser's state and the update count: a restored trainer continues exactly."""
        return {"model": self.model.export(), "optimizer": self.optimizer.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output into this trainer's model (which must have the same shapes).

        :raises ValueError: the saved model was made for other observations or actions.
        """
        saved = state["model"]
        check_compatible(saved, self.model.frame_shape, self.model.num_actions, "the trainer state")
        self.model.load_state_dict(saved["weights"])
        if "generator" in saved:
            self.model.generator.set_state(saved["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
