"""Settings of :class:`worldmodels.grid.model.GridWorldModel` and its trainer, one documented dataclass.

The observation shape ``(C, H, W)`` and the action count are *not* settings: they come from the env the model is
built for and are recorded in every export, so a model can never be silently paired with another game's data (see
:func:`worldmodels.grid.model.load_grid_world_model`).
"""

from __future__ import annotations

from dataclasses import dataclass

from worldmodels.common.checks import Choice, require_nonnegative, require_positive, require_range


class SamplingChoice(Choice):
    """How :meth:`GridWorldModel.step` turns predicted distributions into an imagined step."""

    mode = "mode"
    sample = "sample"


@dataclass
class GridWorldModelConfig:
    """Sizes, optimiser and imagination settings of the grid world model (MinAtar-style 0/1 channel grids)."""

    context: int = 1
    """Real frames the model reads: the newest and the ``context - 1`` before it, stacked as input channels (oldest
    first; zeros before an episode's first frame). 1: the model is Markov in MinAtar's observation. MinAtar hides
    timers (Freeway's cars move every 1-5 steps on a hidden counter, the chicken every 3; Space Invaders' aliens
    on a timer), so one frame does not fix the next; ``context`` frames reveal the phase of timers up to that long.
    With ``context > 1`` training batches and rollout starts carry histories ``[B, T, C, H, W]``."""
    hidden_channels: int = 32
    """Feature maps of the convolutional body (every 3x3 convolution keeps the grid size, padding "same"). 32 trains
    at a few thousand updates per CPU-minute on 10x10 grids."""
    res_blocks: int = 2
    """Residual blocks after the stem, each two 3x3 convolutions with a FiLM modulation by the action. The stem and
    two blocks stack five 3x3 convolutions: an 11x11 receptive field, so every cell sees the whole 10x10 grid."""
    head_hidden: int = 64
    """Units of the MLP that reads the flattened features for the reward and game-over heads (both need global
    information: a ball far from the paddle, the last brick)."""
    max_reward: int = 10
    """The reward head is a categorical over the integers ``0..max_reward``. MinAtar's rewards are non-negative
    integers: +1 per brick, enemy or crossing, and Seaquest's surfacing bonus ``oxygen * 10 // 200`` <= 10. A larger
    observed reward is clipped into the top class for training (the trainer reports how often)."""
    lr: float = 1e-3
    """Adam learning rate of :class:`worldmodels.grid.model.GridModelTrainer`."""
    adam_eps: float = 1e-8
    """Adam's epsilon."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip of each update (0 disables)."""
    reward_loss_weight: float = 1.0
    """Weight of the reward head's cross-entropy (nats per transition) in the total loss."""
    terminal_loss_weight: float = 1.0
    """Weight of the game-over head's binary cross-entropy (nats per transition) in the total loss."""
    sampling: SamplingChoice = SamplingChoice.mode
    """How an imagined step is drawn from the predicted distributions: "mode" takes each cell's more likely value
    (probability > 0.5), the expected reward and the game-over probability (thresholded by whoever consumes it);
    "sample" draws every cell from its Bernoulli, the reward from its categorical and the game over from its
    Bernoulli, with the model's seeded generator (imagination that keeps the environment's randomness, e.g. where
    an enemy spawns)."""
    seed: int = 0
    """Seeds the weight initialisation (without touching torch's global generator) and the sampling generator."""


def validate(cfg: GridWorldModelConfig) -> None:
    """Check the values a dataclass cannot: ranges and choices.

    :raises ValueError: naming the key, the bad value and what would be valid.
    """
    if str(cfg.sampling) not in SamplingChoice.__members__:
        raise ValueError(f"sampling={cfg.sampling!r}: choose one of {', '.join(SamplingChoice.__members__)}.")
    for key in ("context", "hidden_channels", "head_hidden", "res_blocks", "max_reward", "seed"):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}={value!r} must be an int.")
    require_positive({"context": cfg.context, "hidden_channels": cfg.hidden_channels, "head_hidden": cfg.head_hidden,
                      "max_reward": cfg.max_reward, "lr": cfg.lr, "adam_eps": cfg.adam_eps})
    require_nonnegative({"res_blocks": cfg.res_blocks, "max_grad_norm": cfg.max_grad_norm,
                         "reward_loss_weight": cfg.reward_loss_weight,
                         "terminal_loss_weight": cfg.terminal_loss_weight})
    require_range("lr", cfg.lr, 0.0, 1.0, low_open=True, hint="Adam's step size; 1e-3 is the default")
