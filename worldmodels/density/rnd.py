"""Random Network Distillation: novelty as the error of a network trained to imitate a fixed random one.

Burda, Edwards, Storkey and Klimov (2018), "Exploration by Random Network Distillation":

- **Sec. 2.2** (the bonus): a *target* network ``f: O -> R^k`` is initialised at random and never trained; a
  *predictor* network ``f_hat`` is trained by gradient descent to minimise ``||f_hat(x) - f(x)||^2`` on the
  observations the agent sees. The intrinsic reward of an observation is that prediction error: it is large on
  observations unlike those the predictor has been trained on, and falls as they become familiar. Like the
  papers' code we use the mean over the ``k`` features (``mean_j (f_hat_j(x) - f_j(x))^2``), not the sum.
- **Sec. 2.3** (normalisation): the input of both networks is whitened per dimension by a running mean and standard
  deviation and clipped to ``[-5, 5]``; the statistics are initialised by a random agent's observations before
  training (:meth:`RND.init_normalizer`, an explicit call) and keep updating with every batch scored. The other
  half of Sec. 2.3, dividing the intrinsic reward by a running standard deviation of the intrinsic *return*,
  belongs to the agent (it needs the discount): not done here.
- **Sec. 2.4 and App. A** (architecture and the paper's settings, :class:`RNDConfig`'s defaults): on 84x84 Atari
  frames (the newest frame only), the target is three convolutions (32 8x8 stride 4, 64 4x4 stride 2, 64 3x3
  stride 1, leaky ReLU) and a linear layer to ``k = 512`` features; the predictor has the same convolutions and
  then two ReLU layers of 512 and a linear layer to 512. Weights orthogonal (gain sqrt 2), biases 0. Adam with
  learning rate 1e-4. The predictor is trained on a random 25% of the experience (the paper's "proportion of
  experience used for training predictor", 0.25; a per-observation mask as in their code).

How we call it (this module's choices, not the paper's):

- :meth:`RND.step` takes one batch of observations and, in this order: normalises them with the statistics as they
  stand, scores them with the predictor as it stands (the bonus, float64 ``[B]``), takes one Adam step on the masked
  squared error of the same normalised batch, and then updates the running statistics with the batch. The paper
  scores a rollout and then takes several epochs of minibatch steps over it; we take one step per call, so the
  predictor learns online, observation by observation, as the density models do.
- Grid observations (MinAtar ``[C, 10, 10]``, the maze ``[3, n, n]``) are too small for the 8x8 stride-4 convolution:
  for inputs under 36 pixels on a side the convolutions are three padded 3x3 layers (32, 64, 64 channels; the second
  of stride 2 on grids of 8 cells or more, the third on grids of 15 or more; ``conv="small"``, chosen automatically by
  ``conv="auto"``), which flatten to fewer features than the paper's 3136 on every grid up to 28x28. The rest
  (feature size, predictor head, optimiser) is the paper's.
- ``beta`` scales the error into the returned bonus (1 by default: the raw error).
- Without :meth:`RND.init_normalizer` the statistics start from the first batch scored.

Everything a resumed run needs is in :meth:`RND.state_dict`: both networks, Adam's state, the running statistics,
the mask's random generator and the counters; :meth:`RND.load_state_dict` restores them so that the next bonuses are
identical to an uninterrupted run's (tested).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from worldmodels.common.checks import require_number, require_range

__all__ = ["RND", "RNDConfig", "RunningMeanStd"]

#: Inputs at least this many pixels on both sides get the paper's Atari convolutions under ``conv="auto"``.
_NATURE_MIN_SIDE = 36



@dataclass
class RNDConfig:
    """RND's sizes and optimiser; the defaults are Burda et al. (2018, App. A) unless marked as ours."""

    input_shape: tuple[int, int, int] = (1, 84, 84)
    """``(channels, height, width)`` of one observation as the networks take it (the paper: the newest 84x84 frame)."""
    feature_dim: int = 512
    """k, the size of the target's (and predictor's) output."""
    predictor_hidden: int = 512
    """Width of the predictor's two extra ReLU layers."""
    conv: Literal["auto", "nature", "small"] = "auto"
    """Convolutions: "nature" (the paper's 8x8/4, 4x4/2, 3x3/1), "small" (ours: 3x3/1 twice, for grids), "auto"
    ("nature" when both sides are at least 36 pixels)."""
    learning_rate: float = 1e-4
    """Adam's learning rate for the predictor."""
    update_proportion: float = 0.25
    """Fraction of the scored observations the predictor trains on (a random mask per observation)."""
    obs_clip: float = 5.0
    """Normalised inputs are clipped to ``[-obs_clip, obs_clip]``."""
    beta: float = 1.0
    """Scale of the bonus: ``beta * error`` (ours; the agent weighs the intrinsic stream itself)."""
    seed: int = 0
    """Seeds both networks' initial weights and the training mask."""

    def validate(self) -> None:
        """:raises ValueError/TypeError: a setting that cannot work, naming it and what would."""
        shape = tuple(self.input_shape)
        if len(shape) != 3:
            raise ValueError(f"rnd.input_shape={shape} must be (channels, height, width)")
        for i, side in enumerate(shape):
            require_number(f"rnd.input_shape[{i}]", side, integer=True)
            if side < 1:
                raise ValueError(f"rnd.input_shape={shape} must have every side >= 1")
        for key in ("feature_dim", "predictor_hidden"):
            value = require_number(f"rnd.{key}", getattr(self, key), integer=True)
            if value < 1:
                raise ValueError(f"rnd.{key}={int(value)} must be at least 1 (a zero-sized network predicts nothing; "
                                 f"the paper: 512)")
        require_number("rnd.learning_rate", self.learning_rate)
        require_range("rnd.learning_rate", self.learning_rate, 0.0, math.inf, low_open=True, high_open=True,
                      hint="Adam's step size, the paper: 1e-4")
        require_number("rnd.update_proportion", self.update_proportion)
        require_range("rnd.update_proportion", self.update_proportion, 0.0, 1.0, low_open=True,
                      hint="the fraction of observations the predictor trains on, the paper: 0.25")
        require_number("rnd.obs_clip", self.obs_clip)
        require_range("rnd.obs_clip", self.obs_clip, 0.0, math.inf, low_open=True, hint="the paper: 5")
        require_number("rnd.beta", self.beta)
        require_range("rnd.beta", self.beta, 0.0, math.inf, high_open=True,
                      hint="the bonus scale, a finite number >= 0; 1 gives the raw error")
        if self.conv not in ("auto", "nature", "small"):
            raise ValueError(f"rnd.conv={self.conv!r} must be 'auto', 'nature' or 'small'")
        if self.resolved_conv() == "nature" and min(shape[1:]) < _NATURE_MIN_SIDE:
            raise ValueError(f"rnd.conv='nature' needs inputs of at least {_NATURE_MIN_SIDE}x{_NATURE_MIN_SIDE}, got "
                             f"{shape[1]}x{shape[2]}; use conv='small' or 'auto'")

    def resolved_conv(self) -> str:
        if self.conv != "auto":
            return self.conv
        return "nature" if min(self.input_shape[1:]) >= _NATURE_MIN_SIDE else "small"


class RunningMeanStd:
    """Per-dimension running mean and variance (Chan et al.'s parallel update), float64.

    :param shape: shape of one observation.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 0.0

    def update(self, batch: np.ndarray) -> None:
        """Fold a batch ``[B, *shape]`` into the statistics."""
        batch = np.asarray(batch, np.float64)
        n = batch.shape[0]
        if n == 0:
            return
        mean, var = batch.mean(axis=0), batch.var(axis=0)
        if self.count == 0:
            self.mean, self.var, self.count = mean, var, float(n)
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        m2 = self.var * self.count + var * n + delta**2 * (self.count * n / total)
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": np.array(self.count, np.float64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = np.array(state["mean"], np.float64)
        self.var = np.array(state["var"], np.float64)
        self.count = float(np.asarray(state["count"]))


def _convs(config: RNDConfig, activation: type[nn.Module]) -> nn.Sequential:
    channels = config.input_shape[0]
    if config.resolved_conv() == "nature":
        return nn.Sequential(
            nn.Conv2d(channels, 32, 8, stride=4), activation(),
            nn.Conv2d(32, 64, 4, stride=2), activation(),
            nn.Conv2d(64, 64, 3, stride=1), activation(),
            nn.Flatten(),
        )  # fmt: skip
    # Three padded 3x3 convolutions, the second of stride 2 on grids of 8 cells or more and the third on grids of 15
    # or more: MinAtar's 10x10 ends at 64 x 5 x 5 = 1600 features, the 21x21 maze at 64 x 6 x 6 = 2304 (the paper's
    # flattened size on 84x84 is 3136). Two padded stride-1 layers (our first version) left 64 x 21 x 21 = 28224
    # features on the maze: a 15M-parameter predictor whose Adam step cost 175 ms per batch of 8 grids.
    side = min(config.input_shape[1:])
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, stride=1, padding=1), activation(),
        nn.Conv2d(32, 64, 3, stride=2 if side >= 8 else 1, padding=1), activation(),
        nn.Conv2d(64, 64, 3, stride=2 if side >= 15 else 1, padding=1), activation(),
        nn.Flatten(),
    )  # fmt: skip


def _flat_size(body: nn.Module, shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(body(torch.zeros(1, *shape)).shape[1])


def _init(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(layer.weight, gain=math.sqrt(2))
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def build_networks(config: RNDConfig) -> tuple[nn.Module, nn.Module]:
    """The target (fixed) and predictor networks of :class:`RND`, seeded by ``config.seed``."""
    shape = tuple(config.input_shape)
    assert len(shape) == 3
    k, h = config.feature_dim, config.predictor_hidden
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        body = _convs(config, nn.LeakyReLU)
        target = nn.Sequential(body, nn.Linear(_flat_size(body, shape), k))
        pbody = _convs(config, nn.LeakyReLU)
        predictor = nn.Sequential(
            pbody, nn.Linear(_flat_size(pbody, shape), h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, k)
        )
        _init(target)
        _init(predictor)
    target.requires_grad_(False)
    return target, predictor


class RND:
    """Random Network Distillation novelty source; satisfies :class:`worldmodels.protocols.NoveltySource`.

    ``bonus = rnd.step(obs)`` scores a batch (float or uint8 ``[B, C, H, W]`` matching ``config.input_shape``; a
    ``[B, H, W]`` batch is read as one channel), learns from it and returns ``beta * mean_j (f_hat_j - f_j)^2`` per
    observation, float64 ``[B]`` (squared units of the target's features, which are O(1) by construction).

    :param config: sizes and optimiser, defaults the paper's; validated here.
    """

    def __init__(self, config: RNDConfig | None = None) -> None:
        config = config or RNDConfig()
        config.validate()
        shape = tuple(int(side) for side in config.input_shape)
        self.config = replace(config, input_shape=(shape[0], shape[1], shape[2]))
        self.target, self.predictor = build_networks(self.config)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=self.config.learning_rate)
        self.normalizer = RunningMeanStd(self.config.input_shape)
        self._rng = np.random.default_rng(self.config.seed)
        self.num_updates = 0  # observations scored
        self.num_trained = 0  # observations the predictor trained on
        self.last_loss = float("nan")
        self.last_bonus = np.zeros(0, np.float64)

    # ------------------------------------------------------------------ NoveltySource
    def __call__(self, observations: np.ndarray) -> np.ndarray:
        return self.step(observations)

    def step(self, observations: np.ndarray) -> np.ndarray:
        """Score, then learn from, a batch; see the class docstring and the module's order of operations."""
        x = self._as_batch(observations)
        if self.normalizer.count == 0:
            self.normalizer.update(x)
        inputs = self._normalise(x)
        target = self.target(inputs)
        errors = (self.predictor(inputs) - target).pow(2).mean(dim=1)
        bonus = self.config.beta * errors.detach().double().numpy()
        mask = torch.from_numpy(self._rng.random(x.shape[0]) < self.config.update_proportion).float()
        if mask.sum() > 0:
            loss = (errors * mask).sum() / mask.sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.last_loss = float(loss.detach())
        self.normalizer.update(x)
        self.num_updates += x.shape[0]
        self.num_trained += int(mask.sum())
        self.last_bonus = bonus
        return bonus

    def score(self, observations: np.ndarray) -> np.ndarray:
        """The bonus of each observation, float64 ``[B]``, without learning or updating the statistics."""
        x = self._as_batch(observations)
        with torch.no_grad():
            inputs = self._normalise(x)
            errors = (self.predictor(inputs) - self.target(inputs)).pow(2).mean(dim=1)
        return self.config.beta * errors.double().numpy()

    def init_normalizer(self, observations: np.ndarray) -> None:
        """Fold random-play observations (``[B, C, H, W]``) into the input statistics before training (Sec. 2.3)."""
        self.normalizer.update(self._as_batch(observations))

    def state_dict(self) -> dict[str, Any]:
        """Both networks, Adam's state, the input statistics, the mask's generator and the counters."""
        return {
            "config": asdict(self.config),
            "target": {k: v.detach().clone() for k, v in self.target.state_dict().items()},
            "predictor": {k: v.detach().clone() for k, v in self.predictor.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "normalizer": self.normalizer.state_dict(),
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "num_updates": np.array(self.num_updates, np.int64),
            "num_trained": np.array(self.num_trained, np.int64),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        config = dict(state["config"])
        config["input_shape"] = tuple(config["input_shape"])
        if RNDConfig(**config) != self.config:
            raise ValueError(f"state was saved from RND({config}) but this model has {asdict(self.config)}; build "
                             "the RND with the saved config")
        self.target.load_state_dict(state["target"])
        self.predictor.load_state_dict(state["predictor"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.normalizer.load_state_dict(state["normalizer"])
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.num_updates = int(np.asarray(state["num_updates"]))
        self.num_trained = int(np.asarray(state["num_trained"]))

    # ------------------------------------------------------------------ helpers
    def _as_batch(self, observations: np.ndarray) -> np.ndarray:
        x = np.asarray(observations)
        shape = self.config.input_shape
        if x.ndim == 3 and shape[0] == 1:
            x = x[:, None]
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f"RND takes observations [B, {', '.join(map(str, shape))}] (rnd.input_shape), got "
                             f"shape {x.shape}")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError("RND observations must be finite; got NaN or inf")
        return x

    def _normalise(self, x: np.ndarray) -> torch.Tensor:
        std = np.sqrt(self.normalizer.var + 1e-8)
        white = np.clip((x - self.normalizer.mean) / std, -self.config.obs_clip, self.config.obs_clip)
        return torch.from_numpy(white.astype(np.float32))

