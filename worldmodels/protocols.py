"""The interfaces through which generative models plug into agents and environments.

They are :class:`typing.Protocol` classes (structural typing): a class satisfies one by having the
methods, with no inheritance from this module. All are ``runtime_checkable``, so
``isinstance(obj, DensityModel)`` works, though it checks only that the methods exist, not their
signatures.

Units and conventions shared by every implementation:

- Frames are ``uint8`` until a network's first layer. A density model's frames are already
  quantised to ``num_levels`` levels (see :func:`worldmodels.density.preprocess_frames`).
- Log probabilities are natural logarithms (nats) of the probability of a whole frame, returned as
  ``float64`` so that the tiny differences between ``log p`` before and after an update (the
  prediction gain of a pseudo-count) are not lost to rounding.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["DensityModel", "NoveltySource", "WorldModel", "Representation"]


@runtime_checkable
class DensityModel(Protocol):
    """A density model over quantised frames, learning online (Bellemare et al. 2016, Sec. 3).

    Used by :class:`worldmodels.density.PseudoCount` to turn each new frame into an exploration
    bonus. Implementations: :class:`worldmodels.density.CTS`,
    :class:`worldmodels.density.PixelCNNDensity`.
    """

    def update(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score, learn from, and re-score each frame, in order.

        :param frames: uint8 ``[B, H, W]``, already quantised (values in ``[0, num_levels)``).
            Frame ``b`` is scored by the model that has learned frames ``0..b-1`` of this batch.
        :return: ``(log_p_before, log_p_after)``, each float64 ``[B]`` in nats: ``log rho(x_b)``,
            the log probability of frame ``b`` just before the model learns from it, and
            ``log rho'(x_b)``, the recoding log probability just after.
        """
        ...

    def log_prob(self, frames: np.ndarray) -> np.ndarray:
        """Score frames without learning.

        :param frames: uint8 ``[B, H, W]``, quantised.
        :return: float64 ``[B]``, log probability of each frame in nats.
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the model, as numpy arrays (or tensors) keyed by name."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the model from :meth:`state_dict`'s output; later results are identical."""
        ...


@runtime_checkable
class NoveltySource(Protocol):
    """Anything that turns observations into an exploration bonus while learning from them.

    What a pseudo-count (a :class:`DensityModel` inside :class:`worldmodels.density.PseudoCount`: CTS, PixelCNN) and
    Random Network Distillation (:class:`worldmodels.density.RND`) share, and all that the actors and the Gymnasium
    bonus wrappers (``envs.wrappers``) consume. The input is what :func:`envs.novelty.novelty_input` makes of an
    env family's observations for this kind of source:

    - pseudo-counts: uint8 ``[B, H, W]`` quantised frames (values in ``[0, num_levels)``): Atari's newest frame at
      42x42 and 8 levels, or one categorical symbol per cell of a MinAtar or maze grid;
    - RND: ``[B, C, H, W]`` (uint8 or float32): Atari's newest 84x84 frame as one channel, a grid's 0/1 channels.
    """

    def step(self, observations: np.ndarray) -> np.ndarray:
        """Score a batch, then learn from it (in order, as each source documents).

        :param observations: ``[B, ...]`` in the source's input format (above).
        :return: float64 ``[B]``, the intrinsic reward of each observation, >= 0 and finite: a pseudo-count's
            ``beta / sqrt(N + 0.01)`` (at most ``10 beta``), RND's ``beta`` times the predictor's mean squared error
            (squared units of the random target's features).
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything the source has learned (counts, networks, optimiser, normalisers, random generators)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; the bonuses that follow are identical to an uninterrupted run's."""
        ...


@runtime_checkable
class WorldModel(Protocol):
    """An action-conditional model of frames that can be rolled forward in imagination.

    ``state`` is whatever the model carries between steps (for example a recurrent hidden state and
    the last frames); callers treat it as opaque.
    """

    def initial(self, frames: np.ndarray, actions: np.ndarray | None = None) -> Any:
        """Build the rollout state from real context.

        :param frames: uint8 ``[B, T, H, W]`` (or ``[B, T, C, H, W]``): the last ``T`` real frames.
        :param actions: int64 ``[B, T]`` actions taken between those frames, or ``None`` for models
            that need none.
        :return: the model's opaque state for a batch of ``B`` rollouts.
        """
        ...

    def step(self, state: Any, action: np.ndarray) -> tuple[Any, np.ndarray]:
        """Advance every rollout by one action.

        :param state: as returned by :meth:`initial` or a previous :meth:`step`.
        :param action: int64 ``[B]``.
        :return: ``(next_state, frame)`` with ``frame`` uint8 ``[B, H, W]`` (or ``[B, C, H, W]``),
            the predicted next frame.
        """
        ...

    def imagine(self, context_frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Roll out open-loop under a given action sequence.

        :param context_frames: uint8 ``[B, T0, H, W]``, the real frames to start from.
        :param actions: int64 ``[B, T]``.
        :return: uint8 ``[B, T, H, W]``, the predicted frames after each action.
        """
        ...

    def loss(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Training losses on a batch of real trajectories.

        :param batch: at least ``"frames"`` (uint8 ``[B, T, ...]``) and ``"actions"`` (int64 ``[B, T]``).
        :return: named scalar losses; ``"loss"`` is the one to minimise (per-pixel mean, in nats for
            likelihood losses or squared pixel error otherwise, as each model documents).
        """
        ...


@runtime_checkable
class Representation(Protocol):
    """Maps frames to vectors, for episodic control (random projection, Gaussian or binary VAE)."""

    @property
    def dim(self) -> int:
        """Length of the embedding vector."""
        ...

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Embed a batch of frames.

        :param frames: uint8 ``[B, H, W]`` (or ``[B, C, H, W]`` for stacked frames).
        :return: float32 ``[B, dim]``.
        """
        ...
